"""Fused output epilogue: accumulator -> bias -> fixed-point scale -> rounding shift -> ReLU ->
saturate, bit-exact with `nmaccel.golden.epilogue.epilogue` (rounding "half_up").

Pipeline (one result per cycle, latency `EPILOGUE_LATENCY` = 6 cycles, `valid` travels along):
  1. s = acc + bias                     max(acc_bits, bias_bits) + 1 bits, exact
  2. s_hi * mult, s_lo * mult_lo        two registered partial products (s_lo: 16 low bits,
                                        mult_lo: the mantissa's low mult_bits - 1 bits)
  2b. p = s * mult                      = (s_hi * mult << 16) + s_lo * mult_lo
                                          - (mult < 0 ? s_lo << (mult_bits - 1) : 0), exact
  3. t = p >>> (shift - 1)              barrel shifter alone (t = p for shift 0)
  4. r = (t + 1) >>> 1                  = (p + 2^(shift-1)) >> shift, golden half_up; r = p for 0
  5. y = saturate(relu ? max(r, 0) : r) to out_bits (scaled) or raw_bits (raw)
Raw mode (`out_mode` = 1) is golden ``mult=None``: it forces mult = 1, shift = 0 and saturates
to raw_bits (INT32 accumulator + bias). The output port is raw_bits wide, sign-extended.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyrtl

from nmaccel.arch.config import EPILOGUE_LATENCY, OUT_MODE_RAW, EpilogueConfig
from nmaccel.errors import require
from nmaccel.hdl.signed import sadd, sext

_LO_BITS = 16                 # low part of the sum: an unsigned 16 x 15 partial product


@dataclass
class Epilogue:
    """Bundle: `out` (raw_bits, signed, registered), `out_valid`, `latency`."""

    cfg: EpilogueConfig
    out: pyrtl.WireVector
    out_valid: pyrtl.WireVector
    latency: int


def _reg(w, name):
    r = pyrtl.Register(len(w), name=name)
    r.next <<= w
    return r


def _saturate(x, lo, hi, bits):
    """Clamp signed `x` to the constants [lo, hi] and return it as `bits` wide."""
    n = max(len(x), bits)
    x = sext(x, n)
    lo_c = pyrtl.Const(lo, bitwidth=n, signed=True)
    hi_c = pyrtl.Const(hi, bitwidth=n, signed=True)
    y = pyrtl.select(pyrtl.signed_lt(x, lo_c), lo_c,
                     pyrtl.select(pyrtl.signed_gt(x, hi_c), hi_c, x))
    return y[:bits]


@dataclass
class EpilogueHead:
    """Stage 1 registers: `s` (sum_bits, signed acc + bias), `mult` (mult_bits, 1 in raw mode),
    `shift` (shift_bits, 0 in raw mode), `ctl` = concat(valid, relu, raw)."""

    s: pyrtl.WireVector
    mult: pyrtl.WireVector
    shift: pyrtl.WireVector
    ctl: pyrtl.WireVector


@dataclass
class EpilogueProduct:
    """Stage 2 registers: `p` (product_bits, signed s * mult, exact), `shift_m1` (shift - 1,
    shift_bits, mod 2^shift_bits), `shift0` (shift == 0), `ctl` (as the head's)."""

    p: pyrtl.WireVector
    shift_m1: pyrtl.WireVector
    shift0: pyrtl.WireVector
    ctl: pyrtl.WireVector


def make_epilogue_head(name, cfg: EpilogueConfig, acc, mult, shift, bias, relu, out_mode,
                       valid) -> EpilogueHead:
    """Stage 1 (1 cycle): s = acc + bias (sum_bits, exact); raw mode (`out_mode` = 1) forces
    mult = 1 and shift = 0. Ports as `make_epilogue`'s."""
    raw = out_mode == OUT_MODE_RAW
    s1 = _reg(pyrtl.signed_add(sext(acc, cfg.acc_bits), sext(bias, cfg.bias_bits))
              [:cfg.sum_bits], f"{name}.s1_sum")
    m1 = _reg(pyrtl.select(raw, pyrtl.Const(1, bitwidth=cfg.mult_bits), sext(mult, cfg.mult_bits)),
              f"{name}.s1_mult")
    sh1 = _reg(pyrtl.select(raw, pyrtl.Const(0, bitwidth=cfg.shift_bits),
                            shift.zero_extended(cfg.shift_bits)), f"{name}.s1_shift")
    ctl1 = _reg(pyrtl.concat(valid, relu, raw), f"{name}.s1_ctl")
    return EpilogueHead(s=s1, mult=m1, shift=sh1, ctl=ctl1)


def make_epilogue_product(name, cfg: EpilogueConfig, head: EpilogueHead) -> EpilogueProduct:
    """Stages 2a, 2b (2 cycles): p = s * mult from two DSP-sized partial products, exact;
    shift - 1 and shift == 0 precomputed for the tail; ctl delayed alongside."""
    s1, m1, sh1, ctl1 = head.s, head.mult, head.shift, head.ctl
    # stage 2a: two registered partial products (each one DSP multiply, no adder after it):
    # s = hi * 2^L + lo with lo = s[:L] unsigned; shift - 1 and shift == 0 for stage 3
    # the low part is an unsigned multiply by the mantissa's low mult_bits - 1 bits (a
    # zero-extended signed one costs Yosys a second MULT18X18D); a negative mantissa (outside
    # EpilogueConfig.check_params, but every port value is specified) subtracts lo << (mb - 1)
    L = min(_LO_BITS, cfg.sum_bits - 2)      # the signed high part keeps >= 2 bits
    mb = cfg.mult_bits
    mu = m1[:mb - 1]
    pl = _reg(s1[:L] * mu, f"{name}.s2_plo")
    cl = _reg(pyrtl.select(m1[-1], s1[:L], pyrtl.Const(0, bitwidth=L)), f"{name}.s2_lo_corr")
    ph = _reg(pyrtl.signed_mult(s1[L:], m1), f"{name}.s2_phi")
    sm2 = _reg((sh1 - 1)[:cfg.shift_bits], f"{name}.s2_shift_m1")
    z2a = _reg(sh1 == 0, f"{name}.s2a_shift0")
    ctl2a = _reg(ctl1, f"{name}.s2a_ctl")

    # stage 2b: exact signed product p = (hi * m << L) + lo * m
    pbits = cfg.product_bits
    hi_lo = sadd(pyrtl.concat(ph, pyrtl.Const(0, bitwidth=L)), pl.zero_extended(len(pl) + 1), pbits)
    corr = pyrtl.concat(cl, pyrtl.Const(0, bitwidth=mb - 1)).zero_extended(pbits)
    p2 = _reg((hi_lo - corr)[:pbits], f"{name}.s2_prod")      # mod 2^pbits: p fits pbits signed
    sm2 = _reg(sm2, f"{name}.s2b_shift_m1")
    z2 = _reg(z2a, f"{name}.s2_shift0")
    ctl2 = _reg(ctl2a, f"{name}.s2_ctl")
    return EpilogueProduct(p=p2, shift_m1=sm2, shift0=z2, ctl=ctl2)


def make_epilogue_tail(name, cfg: EpilogueConfig, prod: EpilogueProduct):
    """Stages 3, 4, 5 (3 cycles): r = (p + 2^(shift-1)) >> shift (half_up; p when shift is 0),
    ReLU, saturate to out_bits (scaled, sign-extended to raw_bits) or raw_bits (raw).
    Returns (out, out_valid), both registered."""
    p2, sm2, z2, ctl2 = prod.p, prod.shift_m1, prod.shift0, prod.ctl
    # stage 3: arithmetic shift by shift - 1 (barrel shifter only)
    pb = cfg.product_bits
    t3 = _reg(pyrtl.select(z2, p2, pyrtl.shift_right_arithmetic(p2, sm2)), f"{name}.s3_t")
    z3 = _reg(z2, f"{name}.s3_shift0")
    ctl3a = _reg(ctl2, f"{name}.s3a_ctl")

    # stage 4: half_up rounding (+1, >> 1; shifts >= product_bits give 0, as in the golden model)
    t1 = pyrtl.signed_add(t3, pyrtl.Const(1, signed=True))   # pb + 1 bits
    rounded = pyrtl.shift_right_arithmetic(t1, 1)[:pb]
    r3 = _reg(pyrtl.select(z3, t3, rounded), f"{name}.s3_shifted")
    ctl3 = _reg(ctl3a, f"{name}.s3_ctl")

    # stage 5: relu, saturate to out_bits (scaled) or raw_bits (raw)
    v3, relu3, raw3 = ctl3[2], ctl3[1], ctl3[0]
    neg = r3[-1]
    r4 = pyrtl.select(relu3 & neg, pyrtl.Const(0, bitwidth=pb), r3)
    lo_o, hi_o = -(1 << (cfg.out_bits - 1)), (1 << (cfg.out_bits - 1)) - 1
    lo_r, hi_r = -(1 << (cfg.raw_bits - 1)), (1 << (cfg.raw_bits - 1)) - 1
    y = pyrtl.select(raw3, _saturate(r4, lo_r, hi_r, cfg.raw_bits),
                     sext(_saturate(r4, lo_o, hi_o, cfg.out_bits), cfg.raw_bits))
    return _reg(y, f"{name}.out"), _reg(v3, f"{name}.out_valid")


def make_epilogue(name, cfg: EpilogueConfig, acc, mult, shift, bias, relu, out_mode,
                  valid=None) -> Epilogue:
    """One output channel's epilogue (instantiate one per output lane): head -> product -> tail.

    Ports (signed unless noted): `acc` (<= acc_bits), `mult` (mult_bits, mantissa >= 0),
    `shift` (shift_bits, unsigned), `bias` (<= bias_bits), `relu` (1), `out_mode` (1: 0 scaled
    to out_bits, 1 raw to raw_bits), `valid` (1, optional). Output `out` (raw_bits, signed):
    golden ``epilogue(acc, mult, shift, bias, relu, out_bits)`` (scaled) or
    ``epilogue(acc, None, None, bias, relu, raw_bits)`` (raw), `EPILOGUE_LATENCY` cycles later.
    """
    require(len(acc) <= cfg.acc_bits, f"{name}: acc is {len(acc)} bits, cfg.acc_bits={cfg.acc_bits}")
    require(len(bias) <= cfg.bias_bits, f"{name}: bias is {len(bias)} bits, cfg.bias_bits={cfg.bias_bits}")
    require(len(mult) <= cfg.mult_bits, f"{name}: mult is {len(mult)} bits, cfg.mult_bits={cfg.mult_bits}")
    require(len(shift) <= cfg.shift_bits, f"{name}: shift is {len(shift)} bits, cfg.shift_bits={cfg.shift_bits}")
    require(len(relu) == 1 and len(out_mode) == 1, f"{name}: relu and out_mode must be 1 bit")
    if valid is None:
        valid = pyrtl.Const(1, bitwidth=1)
    head = make_epilogue_head(name, cfg, acc, mult, shift, bias, relu, out_mode, valid)
    out, out_valid = make_epilogue_tail(name, cfg, make_epilogue_product(name, cfg, head))
    return Epilogue(cfg=cfg, out=out, out_valid=out_valid, latency=EPILOGUE_LATENCY)
