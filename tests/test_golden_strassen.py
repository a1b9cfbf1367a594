"""Exact integer Strassen vs plain matmul; operand bit growth; N:M structure after pre-adding."""
import importlib

import numpy as np
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.golden import intops
from nmaccel.golden.strassen import (activation_blocks, strassen_bit_growth, strassen_gemm,
                                     strassen_matmul)
from nmaccel.pack import PackedWeights, pack_weights
from nmaccel.pack.strassen import pad_to, padded_shape, strassen_nm_report, strassen_weight_blocks

gemm_mod = importlib.import_module("nmaccel.golden.gemm")


@pytest.mark.parametrize("levels", [0, 1, 2, 3])
def test_strassen_equals_matmul(levels, rng):
    shapes = [(1, 13, 7), (5, 16, 9), (8, 40, 16), (3, 33, 1), (12, 64, 20)]
    for t, k, out in shapes if levels < 3 else shapes[:2]:     # 343 products per call at level 3
        for w_bits in (2, 4, 8):
            lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
            x = rng.integers(-128, 128, size=(t, k))
            w = rng.integers(lo, hi + 1, size=(out, k))
            want = x @ w.T
            np.testing.assert_array_equal(strassen_matmul(x, w, levels), want)
            xe = rng.choice([-128, 127], size=(t, k))
            we = rng.choice([lo, hi], size=(out, k))
            np.testing.assert_array_equal(strassen_matmul(xe, we, levels), xe @ we.T)


def test_weight_blocks_shapes_and_values(rng):
    w = rng.integers(-8, 8, size=(9, 13))
    ops = strassen_weight_blocks(w, 1)
    assert len(ops) == 7 and all(o.shape == (5, 7) for o in ops)
    wp = pad_to(w, padded_shape(w.shape, 1))
    b = wp.T                                         # B = w.T (K, out)
    b11, b12, b21, b22 = b[:7, :5], b[:7, 5:], b[7:, :5], b[7:, 5:]
    want = [b11 + b22, b11, b12 - b22, b21 - b11, b22, b11 + b12, b21 + b22]
    for got, wb in zip(ops, want):
        np.testing.assert_array_equal(got, wb.T)
    ops2 = strassen_weight_blocks(w, 2)
    assert len(ops2) == 49 and all(o.shape == (3, 4) for o in ops2)
    # precomputed blocks give the same product
    x = rng.integers(-128, 128, size=(6, 13))
    np.testing.assert_array_equal(strassen_matmul(x, w, 2, wblocks=ops2), x @ w.T)


def test_strassen_packed_equals_gemm(rng):
    w = rng.standard_normal((24, 70)).astype(np.float32)
    x = rng.integers(-128, 128, size=(5, 70)).astype(np.int8)
    for n_keep, m_group, bits in [(2, 4, 4), (1, 2, 2), (4, 4, 8)]:
        p = pack_weights(w, n_keep=n_keep, m_group=m_group, bits=bits)
        ref = gemm_mod.gemm(p, x)
        for levels in (1, 2):
            np.testing.assert_array_equal(strassen_gemm(p, x, levels), ref)
            blocks = strassen_weight_blocks(p.int_weights(), levels)
            np.testing.assert_array_equal(strassen_gemm(p, x, levels, wblocks=blocks), ref)


def test_bit_growth_known_and_tight(rng):
    g = strassen_bit_growth(8, 4, 1)
    assert (g["act_operand_bits"], g["w_operand_bits"]) == (9, 5)
    assert not g["act_fits"] and not g["w_fits"]
    assert (g["multipliers"], g["plain_multipliers"]) == (7, 8)
    assert strassen_bit_growth(8, 8, 2)["act_operand_bits"] == 10
    assert strassen_bit_growth(8, 4, 0)["w_fits"]
    # tight: extreme operands really reach the reported widths
    for levels in (1, 2):
        g = strassen_bit_growth(8, 4, levels)
        x = rng.choice([-128, 127], size=(64, 64))
        a = np.concatenate([o.ravel() for o in activation_blocks(x, levels)])
        assert intops.bits_for_range(a.min(), a.max()) == g["act_operand_bits"]
        w = rng.choice([-8, 7], size=(64, 64))
        ws = np.concatenate([o.ravel() for o in strassen_weight_blocks(w, levels)])
        assert intops.bits_for_range(ws.min(), ws.max()) == g["w_operand_bits"]
        prods = np.concatenate([(ao[:, :, None] * wo.T[None]).ravel() for ao, wo in
                                zip(activation_blocks(x, levels), strassen_weight_blocks(w, levels))])
        assert intops.bits_for_range(prods.min(), prods.max()) <= g["product_bits"]


def test_nm_report_24(rng):
    codes = rng.integers(-8, 8, size=(32, 64))
    codes[codes == 0] = 1
    order = np.argsort(rng.random((32, 16, 4)), axis=2)
    mask = np.zeros((32, 16, 4), dtype=bool)
    np.put_along_axis(mask, order[:, :, :2], True, axis=2)
    p = PackedWeights.from_dense_codes(codes, mask.reshape(32, 64), in_features=64, n_keep=2,
                                       m_group=4, bits=4, scales=np.ones((32, 1)))
    rep = strassen_nm_report(p.int_weights(), 2, 4, levels=1)
    assert rep["density"] == 0.5
    # B11 and B22 are copied unchanged: still 2:4; the sums have ~1 - 0.5^2 = 0.75 density
    assert rep["operand_density"][1] == 0.5 and rep["operand_density"][4] == 0.5
    assert 0.65 < rep["operand_density"][0] < 0.85
    assert rep["density_after"] > 0.6
    assert rep["nm_violation_fraction"] > 0.3


def test_strassen_bad_input(rng):
    w = rng.integers(-8, 8, size=(4, 8))
    with pytest.raises(NmaccelError, match="do not share K"):
        strassen_matmul(np.zeros((2, 7), dtype=np.int64), w)
    with pytest.raises(NmaccelError, match="expected 49 weight blocks"):
        strassen_matmul(np.zeros((2, 8), dtype=np.int64), w, 2, wblocks=strassen_weight_blocks(w, 1))
    with pytest.raises(NmaccelError, match="another shape"):
        strassen_matmul(np.zeros((2, 8), dtype=np.int64), w, 1,
                        wblocks=strassen_weight_blocks(rng.integers(-8, 8, size=(4, 12)), 1))
    with pytest.raises(NmaccelError, match="integers"):
        strassen_weight_blocks(w.astype(np.float32))
    with pytest.raises(NmaccelError, match="n_keep"):
        strassen_nm_report(w, 5, 4)
