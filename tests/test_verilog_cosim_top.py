"""Dedicated Verilator harness of the accelerator top (nmaccel.verilog.cosim_top) behind
run_gemm(backend="verilator"): outputs == golden, cycles == PyRTL == cycle model, cached builds,
clear errors for missing tools / stalls."""
import numpy as np
import pytest

from nmaccel.arch.config import ArrayConfig, RuntimeConfig, TopConfig
from nmaccel.errors import NmaccelError, ToolMissingError
from nmaccel.golden import cyclemodel as cm
from nmaccel.golden.top import run_stream
from nmaccel.program.encoder import encode_gemm
from nmaccel.run.runner import reference, run_gemm
from nmaccel.verilog import cosim_top, tools
from nmtest import random_epilogue, random_gemm

# one top with every mode (INT8, INT4, codebook); small so that build + PyRTL stay fast
PALL = TopConfig(array=ArrayConfig(rows=2, cols=2, n_max=4, m_max=4), t_max=4, k_tiles_max=4,
                 n_tiles_max=8, host_bits=32)
# host words wider than 64 bits: VlWide ports in the harness
PWIDE = TopConfig(array=ArrayConfig(rows=1, cols=4, n_max=2, m_max=2, modes=("int8",)), t_max=2,
                  k_tiles_max=4, n_tiles_max=4, host_bits=80)
CASES = [("int8", 4, 4, 8, "uniform"), ("int8", 2, 4, 8, "uniform"), ("int4", 2, 4, 4, "uniform"),
         ("int4", 1, 2, 4, "uniform"), ("codebook", 2, 4, 4, "lloyd-max")]


@pytest.mark.tools
@pytest.mark.parametrize("mode,nk,mg,bits,q", CASES)
def test_verilator_equals_golden_and_pyrtl(rng, mode, nk, mg, bits, q):
    """Per mode, epilogue off / on: Verilator outputs == golden, words == PyRTL and protocol
    twin, cycles == PyRTL cycles == nmaccel.golden.cycles."""
    packed, x = random_gemm(rng, nk, mg, bits, q, PALL)
    for ep in (None, random_epilogue(rng, packed.out_features)):
        rv = run_gemm(packed, x, PALL.array, top_cfg=PALL, epilogue=ep, backend="verilator")
        rp = run_gemm(packed, x, PALL.array, top_cfg=PALL, epilogue=ep, backend="pyrtl")
        np.testing.assert_array_equal(rv.outputs, reference(packed, x, ep))
        assert rv.mode == mode
        assert rv.out_words == rp.out_words == run_stream(PALL, encode_gemm(packed, x, PALL, ep).words)
        T, K = x.shape
        model = cm.cycles((T, K, packed.out_features), PALL.array, RuntimeConfig(mode, nk, mg), PALL)
        assert rv.cycles == rp.cycles == model


@pytest.mark.tools
def test_wide_host_words(rng):
    """80-bit host words (VlWide in_data / out_data): equals golden and the cycle model."""
    hi = []
    for nk, mg, with_ep in ((2, 2, False), (1, 2, True)):
        packed, x = random_gemm(rng, nk, mg, 8, "uniform", PWIDE, N=7)
        ep = random_epilogue(rng, packed.out_features) if with_ep else None
        rv = run_gemm(packed, x, PWIDE.array, top_cfg=PWIDE, epilogue=ep, backend="verilator")
        np.testing.assert_array_equal(rv.outputs, reference(packed, x, ep))
        words = encode_gemm(packed, x, PWIDE, ep).words
        assert rv.out_words == run_stream(PWIDE, words)
        assert rv.cycles == rv.model_cycles
        hi += [w >> 64 for w in list(words) + rv.out_words]
    assert any(hi)                       # the upper VlWide words carry data both ways


@pytest.mark.tools
def test_build_cache_hit_and_stall(rng):
    """Second model of the same top comes from the cache; a truncated stream stalls -> error."""
    first = cosim_top.TopVerilatorModel(PALL)
    again = cosim_top.TopVerilatorModel(PALL)
    assert again.cached and again.build_s == 0.0 and again.exe == first.exe
    packed, x = random_gemm(rng, 2, 4, 8, "uniform", PALL, T=3, K=8, N=2)
    prog = encode_gemm(packed, x, PALL)
    words, n_out = prog.words, prog.n_out_words
    assert n_out == sum(j.n_nt * j.n_steps for j in prog.jobs) * PALL.words("out")
    run = again.run(words, n_out, 10000)
    assert run.cycles_run >= run.cycles > 0 and len(run.out_words) == n_out
    with pytest.raises(NmaccelError, match="stalled"):
        again.run(words[:-3], n_out, 2000)
    with pytest.raises(NmaccelError, match=f"sent {n_out} output words, expected {n_out - 1}"):
        again.run(words, n_out - 1, 10000)


@pytest.fixture
def _no_tool(monkeypatch):
    """Pretend some programs are not installed (shutil.which lookups inside nmaccel.verilog.tools)."""
    real = tools.shutil.which

    def hide(*progs):
        monkeypatch.setattr(tools.shutil, "which", lambda p, *a, **k: None if p in progs else real(p))
        tools.find_verilator.cache_clear()
    yield hide
    tools.find_verilator.cache_clear()


def test_missing_verilator(_no_tool, monkeypatch):
    _no_tool("verilator")
    monkeypatch.setattr(tools.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ToolMissingError, match="verilator"):
        cosim_top.TopVerilatorModel(PALL)


def test_missing_cxx(_no_tool):
    _no_tool("g++")
    with pytest.raises(ToolMissingError, match="g\\+\\+"):
        cosim_top.TopVerilatorModel(PALL)


def read_vcd(path):
    """({name: id}, {time: {id: int value}} with every id's value held at every time)."""
    ids, times, cur, now = {}, {}, {}, None
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "$var":
                ids.setdefault(w[4], w[3])
            elif w[0][0] == "#":
                if now is not None:
                    times[now] = dict(cur)
                now = int(w[0][1:])
            elif w[0][0] in "bB":
                cur[w[1]] = int(w[0][1:], 2)
            elif w[0][0] in "01":                     # scalar change: 0<id> / 1<id>
                cur[w[0][1:]] = int(w[0][0])
    if now is not None:
        times[now] = dict(cur)
    return ids, times


@pytest.mark.tools
def test_verilator_vcd_window(rng, tmp_path):
    """Verilator --trace build of the top (the one builder, its own cache key): the VCD holds
    exactly cycles [A, B) (two samples each), only named signals, and its values equal the run's
    output words and, signal by signal and cycle by cycle, the PyRTL trace of the same window."""
    from nmaccel.run.runner import trace_top_vcd
    packed, x = random_gemm(rng, 2, 4, 4, "uniform", PALL)
    prog = encode_gemm(packed, x, PALL)
    words, n_out = prog.words, prog.n_out_words
    plain = cosim_top.TopVerilatorModel(PALL)
    full = plain.run(words, n_out, 100000)
    a = full.cycles_run - cosim_top.TAIL_CYCLES - 30         # the window holds the last output words
    b = a + 40
    traced = cosim_top.TopVerilatorModel(PALL, trace=True)
    assert traced.exe != plain.exe                            # a separate cache entry
    vpath = tmp_path / "v.vcd"
    run = traced.run(words, n_out, 100000, vcd=vpath, window=(a, b))
    assert run.out_words == full.out_words and run.cycles == full.cycles
    ids, times = read_vcd(vpath)
    assert sorted(times) == sorted([10 * c for c in range(b - a)] + [10 * c + 5 for c in range(b - a)])
    assert not [n for n in ids if n.startswith(("tmp", "const_"))]
    assert {"in_data", "in_valid", "in_ready", "out_data", "out_valid", "busy", "top_s_step"} <= set(ids)
    low = [times[10 * c] for c in range(b - a)]
    valid = [c for c in range(b - a) if low[c][ids["out_valid"]]]
    assert valid and full.cycles_run - cosim_top.TAIL_CYCLES - 1 - a == valid[-1]     # last word's cycle
    assert [low[c][ids["out_data"]] for c in valid] == full.out_words[-len(valid):]
    ppath = tmp_path / "p.vcd"
    trace_top_vcd(packed, x, PALL, ppath, (a, b), backend="pyrtl")
    pids, ptimes = read_vcd(ppath)
    common = sorted(set(ids) & set(pids) - {"clk"})
    assert len(common) > 50
    for c in range(b - a):
        for n in common:
            assert low[c][ids[n]] == ptimes[10 * c][pids[n]], (n, a + c)
    with pytest.raises(NmaccelError, match="VCD window"):
        traced.run(words, n_out, 100000, vcd=vpath, window=(5, 5))


@pytest.mark.tools
@pytest.mark.models
def test_default_top_runs_any_shape(rng):
    """The done-when of the buildable-top issue: run_gemm(packed, x, PRODUCT_ARRAY) with no
    layer-specific config runs a 21 x 264 real layer (MiniLM weights, 4:4 INT8) and a
    4096 x 11008 layer (2:4 INT4 g128, K = 11008 > the 2048-entry activation buffer's one-job
    reach at T = 24: two token tiles) on the default (product) top through Verilator, == golden,
    RTL cycles == model."""
    from nmaccel.models import loaders as models
    from nmaccel.arch.config import PRODUCT_ARRAY, PRODUCT_TOP
    from nmaccel.pack import pack_weights
    from nmaccel.run.runner import default_top
    assert default_top(PRODUCT_ARRAY) == TopConfig(array=PRODUCT_ARRAY, **PRODUCT_TOP)
    w = models.load_weights("minilm")["encoder.layer.0.output.dense.weight"][:21, :264]
    cases = [(pack_weights(w, n_keep=4, m_group=4, bits=8), rng.integers(-128, 128, size=(21, 264)), 1),
             (pack_weights(rng.standard_normal((4096, 11008)).astype(np.float32), n_keep=2, m_group=4,
                           bits=4, group_size=128), rng.integers(-128, 128, size=(24, 11008)), 2)]
    for packed, x, n_jobs in cases:
        T, K = x.shape
        rt = RuntimeConfig("int8" if packed.bits == 8 else "int4", packed.n_keep, packed.m_group)
        jobs = cm.job_shapes((T, K, packed.out_features), default_top(PRODUCT_ARRAY), rt.mode,
                             rt.n_keep, rt.m_group)
        assert len(jobs) == n_jobs
        res = run_gemm(packed, x, PRODUCT_ARRAY, backend="verilator")
        np.testing.assert_array_equal(res.outputs, reference(packed, x))
        assert res.cycles == res.model_cycles == cm.cycles((T, K, packed.out_features), PRODUCT_ARRAY, rt,
                                                           default_top(PRODUCT_ARRAY))
