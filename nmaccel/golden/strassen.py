"""Exact integer Strassen (one level or recursive) for y = x @ w.T.

A = x (T, K) and B = w.T (K, out) are split into 2x2 blocks. The weight-side operands
(B11+B22, B11, B12-B22, ...) are precomputed at pack time (`nmaccel.pack.strassen`); the
activation-side operands below are what hardware pre-adders compute:
  A11+A22, A21+A22, A11, A22, A11+A12, A21-A11, A12-A22          (`A_COEF`, over [A11,A12,A21,A22])
and the 7 products M_i recombine as                                  (`C_COEF`, over M1..M7)
  C11 = M1+M4-M5+M7, C12 = M3+M5, C21 = M2+M4, C22 = M1-M2+M3+M6.
Odd shapes: T, K and out are zero-padded to multiples of 2^levels and the result is cropped.
Each level adds one bit to both operands (INT8 activation sums need 9 bits, INT4 weight sums
5 bits): see `strassen_bit_growth`.
"""
import numpy as np

from nmaccel.errors import require
from nmaccel.golden import intops
from nmaccel.golden.gemm import check_activations, int_matmul
from nmaccel.pack.strassen import (W_COEF, pad_to, padded_shape, quadrants,
                                   strassen_weight_blocks)

A_COEF = np.array([
    [1, 0, 0, 1],
    [0, 0, 1, 1],
    [1, 0, 0, 0],
    [0, 0, 0, 1],
    [1, 1, 0, 0],
    [-1, 0, 1, 0],
    [0, 1, 0, -1],
], dtype=np.int64)

C_COEF = np.array([
    [1, 0, 0, 1, -1, 0, 1],
    [0, 0, 1, 0, 1, 0, 0],
    [0, 1, 0, 1, 0, 0, 0],
    [1, -1, 1, 0, 0, 1, 0],
], dtype=np.int64)


def _lin(blocks, row):
    return sum(int(c) * b for c, b in zip(row, blocks) if c)


def activation_blocks(x, levels=1):
    """Pre-added activation operands: 7^levels int64 arrays (T'/2^L, K'/2^L), depth-first order.

    x must already be padded to multiples of 2^levels (see `strassen_matmul`).
    """
    if levels == 0:
        return [x]
    out = []
    q = quadrants(x)
    for row in A_COEF:
        out.extend(activation_blocks(_lin(q, row), levels - 1))
    return out


def combine_products(products, levels=1):
    """Recombine the 7^levels products (depth-first order) into the full (padded) result."""
    if levels == 0:
        return products[0]
    step = len(products) // 7
    m = [combine_products(products[i * step:(i + 1) * step], levels - 1) for i in range(7)]
    c = [_lin(m, row) for row in C_COEF]
    return np.block([[c[0], c[1]], [c[2], c[3]]])


def _strassen_core(x, wblocks, levels, out_features):
    require(int(levels) >= 0, f"Strassen levels must be >= 0, got {levels}")
    require(len(wblocks) == 7 ** levels, f"expected {7 ** levels} weight blocks, got {len(wblocks)}")
    tp, kp = padded_shape(x.shape, levels)
    require(kp >> levels == wblocks[0].shape[1] and wblocks[0].shape[0] << levels >= out_features,
            "weight blocks were built for another shape or level count; rebuild them")
    ablocks = activation_blocks(pad_to(x, (tp, kp)), levels)
    prods = [int_matmul(a, b) for a, b in zip(ablocks, wblocks)]
    return combine_products(prods, levels)[:x.shape[0], :out_features]


def strassen_matmul(x, w_int, levels=1, wblocks=None):
    """Exact x (T, K) @ w_int (out, K).T with `levels` of Strassen; int64 (T, out).

    wblocks: the precomputed `strassen_weight_blocks(w_int, levels)` (computed here if None).
    """
    x = intops.as_int(x, "activations")
    w = intops.as_int(w_int, "weights")
    require(x.ndim == 2 and w.ndim == 2 and x.shape[1] == w.shape[1],
            f"shapes {x.shape} and {w.shape} do not share K")
    require(int(levels) >= 0, f"Strassen levels must be >= 0, got {levels}")
    if wblocks is None:
        wblocks = strassen_weight_blocks(w, levels)
    return _strassen_core(x, wblocks, levels, w.shape[0])


def strassen_gemm(packed, x_q, levels=1, wblocks=None):
    """Strassen version of `nmaccel.golden.gemm(packed, x_q)`; int64 (T, out), identical result.

    wblocks: precomputed `strassen_weight_blocks(packed.int_weights(), levels)` (the weights
    are then not unpacked again).
    """
    x = check_activations(x_q, packed.in_features)
    if wblocks is None:
        wblocks = strassen_weight_blocks(packed.int_weights(), levels)
    return _strassen_core(x, wblocks, levels, packed.out_features)


def _operand_coef(coef, levels):
    c = np.ones((1, 1), dtype=np.int64)
    for _ in range(levels):
        c = np.kron(c, coef)   # row: operand, column: sub-block (Morton order)
    return c


def _operand_ranges(coef, bits):
    """Exact (lo, hi) of every operand row: p blocks added, n subtracted, all independent."""
    lo, hi = intops.int_range(bits, True)
    out = []
    for row in coef:
        p, n = int((row > 0).sum()), int((row < 0).sum())
        out.append((p * lo - n * hi, p * hi - n * lo))
    return out


def strassen_bit_growth(act_bits, w_bits, levels=1):
    """Operand widths after `levels` of Strassen pre-adding (exact, from the +-1 coefficients).

    Returns a dict: `act_operand_bits`, `w_operand_bits` (max over the 7^levels operands),
    `product_bits` (signed product of those), `act_fits` / `w_fits` (operands still fit the
    original width: False means, e.g., INT4 multipliers can no longer take packed INT4 weights),
    `multipliers` (7^levels vs the plain 8^levels block products).
    """
    require(int(levels) >= 0, f"Strassen levels must be >= 0, got {levels}")
    ar = _operand_ranges(_operand_coef(A_COEF, levels), act_bits)
    wr = _operand_ranges(_operand_coef(W_COEF, levels), w_bits)
    ab = max(intops.bits_for_range(lo, hi, True) for lo, hi in ar)
    wb = max(intops.bits_for_range(lo, hi, True) for lo, hi in wr)
    pb = 0
    for (alo, ahi), (wlo, whi) in zip(ar, wr):
        corners = [alo * wlo, alo * whi, ahi * wlo, ahi * whi]
        pb = max(pb, intops.bits_for_range(min(corners), max(corners), True))
    return {
        "levels": int(levels),
        "act_operand_bits": ab,
        "w_operand_bits": wb,
        "product_bits": pb,
        "act_fits": ab <= act_bits,
        "w_fits": wb <= w_bits,
        "multipliers": 7 ** int(levels),
        "plain_multipliers": 8 ** int(levels),
    }
