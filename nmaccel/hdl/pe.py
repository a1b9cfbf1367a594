"""Width-adjustable processing element: n_max lanes, INT8 or token-packed INT4 products.

Packed-operand choice. With N:M sparsity the two output columns a lane could pair up in INT4
mode keep *different* K positions, so they never share one activation; the operand two INT4
products can always share is the stationary weight. In INT4 mode a lane therefore computes two
tokens at once from one multiplier:

    b = (a_hi << S) + a_lo            (S = int4_bits + act_bits = 12, b: act_bits + S + 1 bits;
                                       built carry-light, see packed_operand)
    P = w * b = (w*a_hi) << S + w*a_lo
    lo = sext(P[S-1:0])               (|w*a_lo| <= 1024 < 2**(S-1): no collision)
    hi = (P >>> S) + P[S-1]           (sign correction: the low field borrowed 1 when negative)

In INT8 mode the same multiplier sees b = sext(a_lo): one INT8 x INT8 MAC per lane and cycle.
b is 21 bits; with cfg.dsp_width = 18 (default) the product is split so the only $mul is an
unsigned 7 x 17 (one MULT18X18D / DSP48E2) plus shift-and-add LUT logic (signed.smul_dsp), so
one DSP carries 2 INT4 MACs; a wider dsp_width trades DSPs for LUTs. Measured resources per
option: `python benchmarks/fmax_study.py` (benchmarks/results/fmax_study.json).
`nmaccel.golden.pe.pe_products` mirrors the equation.
"""
import pyrtl

from nmaccel.arch.layout import element_layout, pe_store_layout, stored_lane_layout, window_layout
from nmaccel.hdl.decoder import make_nm_decoder
from nmaccel.hdl.signed import delay, make_io_top, sadd, sext, smul, smul_dsp, smul_shift_add, ssum


def lane_store_bits(cfg):
    """Stored (decoded) lane word: nmaccel.arch.layout.stored_lane_layout (weight | index)."""
    return stored_lane_layout(cfg).bits


def packed_operand(cfg, int4, a_lo, a_hi):
    """Multiplier operand, cfg.operand_bits: (a_hi << S) + a_lo when `int4`, else sext(a_lo).

    Built as concat(a_hi - sign(a_lo), sext(a_lo)[S-1:0]) (equal: a negative a_lo borrows 1
    from the high field), so the only carry chain is the short a_hi decrement, not the whole
    operand.
    """
    S = cfg.pack_shift
    sign = a_lo[cfg.act_bits - 1]
    top_bits = cfg.operand_bits - S
    hi = sadd(a_hi, sign, top_bits)            # a 1-bit `sign` reads as signed: 0 or -1
    return pyrtl.concat(pyrtl.select(int4, hi, sext(sign, top_bits)), sext(a_lo, S))


def split_products(cfg, int4, prod):
    """(lo, hi) of a lane product `prod` (cfg.mult_bits): `int4`: lo = sext(P[S-1:0]) (token A),
    hi = (P >>> S) + P[S-1] (token B, with the sign correction); else lo = P, hi = 0."""
    S = cfg.pack_shift
    lo = pyrtl.select(int4, sext(prod[:S], cfg.mult_bits), prod)
    hi_bits = cfg.mult_bits - S
    hi = sadd(prod[S:], prod[S - 1].zero_extended(hi_bits), hi_bits)
    return lo, pyrtl.select(int4, hi, pyrtl.Const(0, bitwidth=hi_bits))


def _multiply(cfg, w, b, name):
    """Signed w * b as signed.smul_dsp; with cfg.pipeline_dsp, one register stage sits right
    after the DSP multiplier (and its parallel LUT partial products), before the combining adds."""
    if not cfg.pipeline_dsp:
        return smul_dsp(w, b, cfg.dsp_width, name)
    bits = len(w) + len(b)
    if len(b) <= cfg.dsp_width:
        return delay(smul(w, b)[:bits], 1, f"{name}.q")
    n, cut = len(w), cfg.dsp_width - 1    # same split as signed.smul_dsp
    lo = b[:cut]
    core = pyrtl.WireVector(cut + n - 1, name=f"{name}.dsp")
    core <<= w[:n - 1] * lo                                    # unsigned (n-1) x cut: one DSP
    corr = pyrtl.select(w[n - 1], pyrtl.concat(lo, pyrtl.Const(0, bitwidth=n - 1)),
                        pyrtl.Const(0, bitwidth=cut + n - 1))
    p_hi = smul_shift_add(w, b[cut:], bits - cut)
    core, corr, p_hi = (delay(v, 1, f"{name}.q{i}") for i, v in enumerate((core, corr, p_hi)))
    p_lo = (core.zero_extended(bits) - corr.zero_extended(bits))[:bits]   # both >= 0: mod 2**bits
    return sadd(p_lo, pyrtl.concat(p_hi, pyrtl.Const(0, bitwidth=cut)), bits)


def make_pe(name, cfg, rt, x_in, psum_in, w_in, w_load, swap_in=None, forward=True):
    """One PE of the weight-stationary array.

    Ports: `x_in` (cfg.x_bits: m_max elements of tokens_per_step INT8 activations; element k in
    bits [k * E, (k + 1) * E), E = tokens_per_step * act_bits, token A in its low byte),
    `psum_in` (list, one acc_bits partial sum per token), `w_in` (n_max stored lane words:
    weight in bits [0, weight_bits), index above it, lane 0 in the LSBs), `w_load` (1 bit).
    Registers: weights (`w_out`, shifts from `w_in` when `w_load`), activation (`x_out`, one cycle
    after `x_in`; None when `forward` is False, as in the last column), partial sums (`psum_out`).
    With cfg.double_buffer the shifting chain (`w_out`) is a shadow copy and the PE computes with
    active weights, which take the shadow's next value at the clock edge ending a cycle where
    `swap_in` is high; `swap_in` travels with x (`swap_out`, one cycle later), so a swap
    issued with a step's activations takes effect from the next step on, PE by PE.
    Computes psum_out[t] <= psum_in[t] + sum_l product_l[t] where product_l is lane l's weight
    times the activation its index selects (INT8: token A only; INT4: tokens A and B packed).
    Latency x_in -> psum_out: 1 + cfg.pipeline_stages cycles; x_in -> x_out: 1 cycle.
    Runtime inputs from `rt`: `int4`, `dense`.
    """
    store = pe_store_layout(cfg)
    w_reg = pyrtl.Register(store.bits, name=f"{name}.w")
    w_next = pyrtl.select(w_load, w_in, w_reg)
    w_reg.next <<= w_next
    x_reg = None
    if forward:   # the last column forwards nothing (no dead registers in the Verilog)
        x_reg = pyrtl.Register(cfg.x_bits, name=f"{name}.x")
        x_reg.next <<= x_in
    swap_out = None
    if cfg.double_buffer:
        assert swap_in is not None, "double_buffer PE needs swap_in"
        w_act = pyrtl.Register(store.bits, name=f"{name}.w_act")
        w_act.next <<= pyrtl.select(swap_in, w_next, w_act)
        swap_out = delay(swap_in, 1, f"{name}.swap") if forward else None
    else:
        w_act = w_reg

    lanes = store.split(w_act)["lane"]
    weights, indices = [ln["weight"] for ln in lanes], [ln["index"] for ln in lanes]
    elements = window_layout(cfg).split(x_in, nested=False)["elem"]     # whole elements: one mux each
    dec = make_nm_decoder(f"{name}.dec", cfg, rt.dense, elements, indices)
    acts = dec.lanes
    if cfg.pipeline_mux:
        acts = [delay(a, 1, f"{name}.mux{lane}") for lane, a in enumerate(acts)]
        if cfg.double_buffer:   # keep weights aligned with their step across a swap
            weights = [delay(w, 1, f"{name}.wq{lane}") for lane, w in enumerate(weights)]

    elem = element_layout(cfg)
    los, his = [], []
    for lane in range(cfg.n_max):
        tok = elem.split(acts[lane])["tok"]                                # token A, [token B]
        a_lo = tok[0]
        w = weights[lane]
        b = packed_operand(cfg, rt.int4, a_lo, tok[1]) if cfg.has_int4 else a_lo
        if cfg.pipeline_operand:   # the weight moves with its operand (same weight read cycle)
            b = delay(b, 1, f"{name}.opnd{lane}")
            w = delay(w, 1, f"{name}.wop{lane}")
        p = _multiply(cfg, w, b, f"{name}.mul{lane}")[:cfg.mult_bits]
        if cfg.pipeline_product:
            p = delay(p, 1, f"{name}.prod{lane}")
        prod = pyrtl.WireVector(cfg.mult_bits, name=f"{name}.p{lane}")
        prod <<= p
        if cfg.has_int4:
            lo, hi = split_products(cfg, rt.int4, prod)
            his.append(hi)
        else:
            lo = prod
        los.append(lo)

    psum_out = []
    for t, terms in enumerate([los, his][:cfg.tokens_per_step]):
        if cfg.pipeline_sum:   # register after the tree's first level (pairs), the rest after
            pairs = [sadd(terms[i], terms[i + 1], cfg.acc_bits) if i + 1 < len(terms) else
                     sext(terms[i], cfg.acc_bits) for i in range(0, len(terms), 2)]
            terms = [delay(v, 1, f"{name}.sum{t}_{i}") for i, v in enumerate(pairs)]
        tree = ssum(terms, cfg.acc_bits)
        r = pyrtl.Register(cfg.acc_bits, name=f"{name}.psum{t}")
        r.next <<= sadd(psum_in[t], tree, cfg.acc_bits)
        psum_out.append(r)
    return _Bundle(x_out=x_reg, psum_out=psum_out, w_out=w_reg, weights=weights, indices=indices,
                   swap_out=swap_out)


def pe_input_widths(cfg):
    """Port signature of one PE as a top level, inputs {name: width}: the runtime `int4` /
    `dense` bits come in directly (in the array they are runtime registers)."""
    w = {"int4": 1, "dense": 1, "x_in": window_layout(cfg).bits, "w_in": pe_store_layout(cfg).bits, "w_load": 1}
    w.update({f"psum_in_{t}": cfg.acc_bits for t in range(cfg.tokens_per_step)})
    return w


def pe_output_widths(cfg):
    """Port signature of one PE as a top level, outputs {name: width}."""
    w = {f"psum_out_{t}": cfg.acc_bits for t in range(cfg.tokens_per_step)}
    w.update({"x_out": window_layout(cfg).bits, "w_out": pe_store_layout(cfg).bits})
    return w


def make_pe_ports(name, cfg, inputs):
    """make_pe on the ports of pe_input_widths; the bundle's `.outputs` are pe_output_widths'."""
    rt = _Bundle(int4=inputs["int4"], dense=inputs["dense"])
    pe = make_pe(name, cfg, rt, inputs["x_in"], [inputs[f"psum_in_{t}"] for t in range(cfg.tokens_per_step)],
                 inputs["w_in"], inputs["w_load"])
    pe.outputs = {**{f"psum_out_{t}": p for t, p in enumerate(pe.psum_out)},
                  "x_out": pe.x_out, "w_out": pe.w_out}
    return pe


def make_pe_top(cfg, name="pe"):
    """One PE as a top level: pyrtl.Input / pyrtl.Output ports named as its port signature."""
    return make_io_top(make_pe_ports, name, cfg, pe_input_widths(cfg), pe_output_widths(cfg))


class _Bundle:
    def __init__(self, **kw):
        self.__dict__.update(kw)
