"""Golden twin of the processing element (nmaccel.hdl.pe): lane weights, lane products, PE step.

Integer numpy, mirroring the hardware equations step by step (every register width wrapped).
`array_cfg` is an nmaccel.arch.config.ArrayConfig (or a view of one with more rows / cols);
this module never imports nmaccel.hdl.
"""
import numpy as np

from nmaccel.golden.codebook import codebook_decode
from nmaccel.golden.decoder import nm_decode
from nmaccel.golden.intops import wrap


def lane_weight(code, keep, table, codebook, array_cfg):
    """Column-top load decode twin: weight stored in a lane (0 when keep is 0)."""
    code = np.asarray(code, dtype=np.int64)
    v = (codebook_decode(table, code, array_cfg.codebook_bits) if codebook
         else wrap(code, array_cfg.weight_bits))
    return np.where(np.asarray(keep, dtype=bool), v, 0)


def pe_products(array_cfg, w, a_lo, a_hi, int4):
    """Per-lane products of one PE: returns (lo, hi) sums' terms, mirroring nmaccel.hdl.pe.

    w (n_max,), a_lo / a_hi (..., n_max) selected activations of tokens A / B.
    INT8: lo = w * a_lo, hi = 0. INT4: b = wrap((a_hi << S) + a_lo), P = wrap(w * b),
    lo = sext(P[S-1:0]), hi = (P >> S) + P[S-1].
    """
    w = np.asarray(w, dtype=np.int64)
    S = array_cfg.pack_shift
    if int4:
        b = wrap(a_hi * (1 << S) + a_lo, array_cfg.operand_bits)
    else:
        b = np.asarray(a_lo, dtype=np.int64)
    prod = wrap(w * b, array_cfg.mult_bits)
    if not int4:
        return prod, np.zeros_like(prod)
    lo = wrap(prod & ((1 << S) - 1), S)
    hi = wrap((prod >> S) + ((prod >> (S - 1)) & 1), array_cfg.mult_bits - S)
    return lo, hi


def pe_step(array_cfg, w, idx, x, psum_in, int4, dense):
    """PE twin: x (..., tokens_per_step, m_max) windows, psum_in (..., tokens_per_step).

    Returns psum_out (..., tokens_per_step) = wrap(psum_in + sum of lane terms, acc_bits).
    """
    x = np.asarray(x, dtype=np.int64)
    a = nm_decode(x, idx, dense, array_cfg.m_max)                       # (..., tok, n_max)
    a_hi = a[..., 1, :] if array_cfg.has_int4 else np.zeros_like(a[..., 0, :])
    lo, hi = pe_products(array_cfg, w, a[..., 0, :], a_hi, int4)
    out = np.array(psum_in, dtype=np.int64, copy=True)
    out[..., 0] = wrap(out[..., 0] + lo.sum(axis=-1), array_cfg.acc_bits)
    if array_cfg.has_int4:
        out[..., 1] = wrap(out[..., 1] + hi.sum(axis=-1), array_cfg.acc_bits)
    return out
