"""Group-wise weight scales in fixed point: what the hardware accumulates.

Scale s[o, g] (FP16, one per output channel o and K group g of `group_cols` padded columns) is
written as s[o, g] = 2^(E_o - F) * m[o, g] with
  E_o   = the exponent with max_g s[o, g] in [2^(E_o-1), 2^E_o)   (per-channel base 2^E_o)
  F     = frac_bits (default 16)
  m     = round_half_up(s * 2^(F - E_o)), an unsigned integer < 2^F when F >= 11.
FP16 has an 11-bit significand, so m is exact (params.exact) whenever every group scale of a
row lies within 2^(F-11) of the row's largest (5 binades for F = 16); otherwise the small
scales are rounded half-up to F fractional bits of the row base (relative error of group g
<= 2^-(F+1) * 2^E_o / s[o, g]).

Hardware (per output (t, o)), widths from `groupscale_widths`:
  1. P[t,o,g] = sum_{k in group g} x[t,k] * w_int[o,k]      exact, partial_bits (accum_bits of a group)
  2. P * m[o,g]                                             exact, product_bits (<= partial_bits + mult_bits)
  3. acc[t,o] = sum_g P * m                                 exact, acc_bits (+ceil(log2 G) growth)
  4. the epilogue scales acc by x_scale * 2^(E_o - F) / y_scale (per-channel quantize_multiplier).
Float reference: acc * 2^(E_o - F) ~= x_q @ packed.dequantize().T (`group_scaled_float`), within
`group_scaled_error_bound` (0 rounding term when exact, plus float64 summation error).
"""
from dataclasses import dataclass

import numpy as np

from nmaccel.arch.config import accum_bits, dot_range
from nmaccel.errors import require
from nmaccel.golden import intops
from nmaccel.golden.gemm import (A_BITS, check_activations, exact_dtype, int_matmul,
                                 weight_operand_bits)


@dataclass(frozen=True)
class GroupScaleParams:
    """Fixed-point group scales: s[o, g] ~= mult[o, g] * 2^(base_exp[o] - frac_bits)."""
    mult: np.ndarray        # (out, n_scale_groups) int64, unsigned values
    base_exp: np.ndarray    # (out,) int64
    frac_bits: int
    group_cols: int         # padded K columns per scale group
    exact: bool             # every mult represents its FP16 scale exactly
    mult_bits: int          # unsigned bits of the largest mult

    @property
    def acc_scale(self):
        """float64 (out,): real value of one accumulator LSB (per unit activation)."""
        return np.ldexp(1.0, self.base_exp - self.frac_bits)


def _row_scales(packed):
    s = np.asarray(packed.scales, dtype=np.float64)
    return np.broadcast_to(s, (packed.out_features, s.shape[1]))


def groupscale_params(packed, frac_bits=16):
    """Per-(channel, group) integer multipliers relative to a per-channel power-of-two base."""
    require(11 <= int(frac_bits) <= 40,
            f"frac_bits={frac_bits}: use 11..40 (FP16 scales have an 11-bit significand)")
    F = int(frac_bits)
    s = _row_scales(packed)
    require(np.all(np.isfinite(s)) and np.all(s >= 0), "scales must be finite and >= 0; repack the weights")
    _, e = np.frexp(s.max(axis=1))
    e = np.where(s.max(axis=1) > 0, e, 0).astype(np.int64)
    scaled = np.ldexp(s, (F - e)[:, None])          # exact: power-of-two scaling
    mult = np.floor(scaled + 0.5).astype(np.int64)
    mx = int(mult.max()) if mult.size else 0
    return GroupScaleParams(mult=mult, base_exp=e, frac_bits=F, group_cols=int(packed.scale_group_cols),
                            exact=bool(np.all(mult == scaled)), mult_bits=max(1, mx.bit_length()))


def _padded(packed, x_q):
    x = check_activations(x_q, packed.in_features)
    G = packed.n_scale_groups
    gc = packed.scale_group_cols
    kk = G * gc
    xp = np.zeros((x.shape[0], kk), dtype=np.int64)
    xp[:, :packed.in_features] = x
    wp = np.zeros((packed.out_features, kk), dtype=np.int64)
    wp[:, :packed.k_padded] = packed.int_weights(padded=True)
    return xp, wp, G, gc


def group_partial_sums(packed, x_q):
    """Stage 1: P[t, o, g] = sum over scale group g of x * w_int, int64 (T, out, G)."""
    xp, wp, G, gc = _padded(packed, x_q)
    T, out = xp.shape[0], wp.shape[0]
    xg = xp.reshape(T, G, gc).transpose(1, 0, 2)     # (G, T, gc)
    wg = wp.reshape(out, G, gc).transpose(1, 2, 0)   # (G, gc, out)
    bound = intops.max_abs(xp) * int(np.abs(wp).reshape(out, G, gc).sum(axis=2).max(initial=0))
    dt = exact_dtype(bound)
    if dt is None:
        p = np.matmul(xg, wg)
    else:
        p = np.matmul(xg.astype(dt), wg.astype(dt)).astype(np.int64)
    return p.transpose(1, 2, 0)


def group_scaled_gemm(packed, x_q, params, method="auto"):
    """acc[t, o] = sum_g P[t, o, g] * mult[o, g], exact int64 (T, out).

    method "partial" follows the hardware stages literally; "auto" uses the equal (integer
    arithmetic is associative) x @ (w_int * mult[o, group(k)]).T through `int_matmul`.
    """
    require(method in ("auto", "partial"), f"unknown method {method!r}; use 'auto' or 'partial'")
    require(params.mult.shape == (packed.out_features, packed.n_scale_groups),
            f"params are for scales {params.mult.shape}, weights have "
            f"{(packed.out_features, packed.n_scale_groups)}; recompute groupscale_params")
    if method == "partial":
        p = group_partial_sums(packed, x_q)
        return intops.mul_exact(p, params.mult[None]).sum(axis=2)
    xp, wp, G, gc = _padded(packed, x_q)
    ws = intops.mul_exact(wp, np.repeat(params.mult, gc, axis=1))
    return int_matmul(xp, ws)


def group_scaled_float(packed, x_q):
    """Float reference in activation-LSB units: x_q @ dequantize().T in float64."""
    x = check_activations(x_q, packed.in_features)
    return x.astype(np.float64) @ packed.dequantize().astype(np.float64).T


def group_scaled_error_bound(packed, x_q, params):
    """Bound on |acc * acc_scale - group_scaled_float| (T, out): multiplier rounding + float64 sums."""
    p = group_partial_sums(packed, x_q).astype(np.float64)
    s = _row_scales(packed)
    err_m = np.abs(params.mult - np.ldexp(s, (params.frac_bits - params.base_exp)[:, None]))
    rounding = (np.abs(p) * err_m[None]).sum(axis=2) * params.acc_scale[None]
    x = np.abs(check_activations(x_q, packed.in_features)).astype(np.float64)
    mag = x @ np.abs(packed.dequantize().astype(np.float64)).T
    fp = 2.0 * packed.in_features * np.finfo(np.float64).eps * mag
    return rounding + fp


def groupscale_widths(packed, params, a_bits=A_BITS):
    """Exact worst-case hardware widths of the group-scale datapath (dict of bits)."""
    nnz = params.group_cols * packed.n_keep // packed.m_group
    wb = weight_operand_bits(packed)
    pb = accum_bits(nnz, wb, a_bits)
    plo, phi = dot_range(nnz, wb, a_bits)
    mmax = int(params.mult.max()) if params.mult.size else 0
    G = params.mult.shape[1]
    return {
        "partial_bits": pb,
        "mult_bits": params.mult_bits,
        "product_bits": intops.bits_for_range(plo * mmax, phi * mmax, True),
        "acc_bits": intops.bits_for_range(G * plo * mmax, G * phi * mmax, True),
    }
