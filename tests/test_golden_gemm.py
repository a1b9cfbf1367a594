"""Packed GEMM and group-scale golden models vs dense int64 numpy, scipy.sparse and loops."""
import importlib

import numpy as np
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.golden import groupscale as GS
from nmaccel.golden import intops
from nmaccel.pack import PackedWeights, pack_weights

# nmaccel.golden.gemm is the function (re-exported); the module is in sys.modules
G = importlib.import_module("nmaccel.golden.gemm")

NM = [(1, 2), (2, 4), (1, 4), (3, 8), (4, 8), (2, 8), (4, 4)]
SHAPES = [(1, 5, 13), (6, 9, 40), (3, 16, 130)]          # (T, out, K); K not a multiple of M
VARIANTS = [("uniform", False, "group"), ("uniform", True, "channel"), ("lloyd-max", False, "tensor"),
            ("lloyd-max", False, "group"), ("uniform", False, "tensor")]


def random_packed(rng, out, k, n_keep, m_group, bits, quantizer="uniform", asym=False,
                  granularity="channel", group_size=None, edge=False, scale_range=(0.01, 0.1)):
    """PackedWeights with random codes (edge=True: only the extreme codes) and FP16 scales."""
    kp = -(-k // m_group) * m_group
    ng = kp // m_group
    order = np.argsort(rng.random((out, ng, m_group)), axis=2)
    mask = np.zeros((out, ng, m_group), dtype=bool)
    np.put_along_axis(mask, order[:, :, :n_keep], True, axis=2)
    mask = mask.reshape(out, kp)
    if granularity == "group":
        group_size = group_size or 2 * m_group
    rows = 1 if granularity == "tensor" else out
    cols = -(-kp // group_size) if granularity == "group" else 1
    scales = np.exp(rng.uniform(*np.log(scale_range), size=(rows, cols)))
    zp = codebook = None
    if quantizer == "lloyd-max" or asym:
        lo, hi = 0, (1 << bits) - 1
    else:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    codes = rng.choice([lo, hi], size=(out, kp)) if edge else rng.integers(lo, hi + 1, size=(out, kp))
    if asym:
        zp = rng.integers(0, 1 << bits, size=(rows, cols))
    if quantizer == "lloyd-max":
        codebook = rng.integers(-128, 128, size=(rows, cols, 1 << bits))
        if edge:
            codebook = rng.choice([-128, 127], size=codebook.shape)
    return PackedWeights.from_dense_codes(
        codes, mask, in_features=k, n_keep=n_keep, m_group=m_group, bits=bits, quantizer=quantizer,
        granularity=granularity, group_size=group_size, scales=scales, zero_points=zp, codebook=codebook)


def random_x(rng, t, k, edge=False):
    if edge:
        return rng.choice(np.array([-128, 127], dtype=np.int8), size=(t, k))
    return rng.integers(-128, 128, size=(t, k)).astype(np.int8)


def dense_ref(packed, x):
    return x.astype(np.int64) @ packed.int_weights().T.astype(np.int64)


def loop_group_ref(packed, x, params):
    """acc = sum_g (x[:, g] @ w[:, g].T) * mult[:, g], one int64 matmul per scale group."""
    w = packed.int_weights(padded=True).astype(np.int64)
    xp = np.zeros((x.shape[0], packed.k_padded), dtype=np.int64)
    xp[:, :packed.in_features] = x
    gc = packed.scale_group_cols
    acc = np.zeros((x.shape[0], packed.out_features), dtype=np.int64)
    for g in range(packed.n_scale_groups):
        sl = slice(g * gc, (g + 1) * gc)
        acc += (xp[:, sl] @ w[:, sl].T) * params.mult[:, g]
    return acc


@pytest.mark.parametrize("n_keep,m_group", NM)
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_gemm_sweep(n_keep, m_group, bits, rng):
    for i, (t, out, k) in enumerate(SHAPES):
        quantizer, asym, gran = VARIANTS[(i + bits + n_keep) % len(VARIANTS)]
        for edge in (False, True):
            p = random_packed(rng, out, k, n_keep, m_group, bits, quantizer, asym, gran, edge=edge)
            x = random_x(rng, t, k, edge)
            ref = dense_ref(p, x)
            y = G.gemm(p, x)
            assert y.dtype == np.int64 and y.shape == (t, out)
            np.testing.assert_array_equal(y, ref)
            np.testing.assert_array_equal(G.gemm_csr(p, x), ref)
            np.testing.assert_array_equal(G.gemm_gather(p, x, chunk=4), ref)
            np.testing.assert_array_equal(G.gemm(G.prepare(p), x), ref)
            # group scales: hardware stages == fast path == per-group loop
            params = GS.groupscale_params(p)
            acc = GS.group_scaled_gemm(p, x, params)
            np.testing.assert_array_equal(acc, GS.group_scaled_gemm(p, x, params, method="partial"))
            np.testing.assert_array_equal(acc, loop_group_ref(p, x, params))
            err = np.abs(acc * params.acc_scale[None] - GS.group_scaled_float(p, x))
            assert np.all(err <= GS.group_scaled_error_bound(p, x, params))
            widths = GS.groupscale_widths(p, params)
            lo = -(1 << (widths["acc_bits"] - 1))
            assert lo <= acc.min() and acc.max() < -lo


def test_gemm_plan_dtypes_and_bound_matters(rng):
    # 2:4 INT4, K=4096: every partial sum < 2^24 -> float32 BLAS is exact
    p4 = random_packed(rng, 8, 4096, 2, 4, 4)
    assert G.prepare(p4).dtype == np.float32
    # dense INT8, large same-sign products: sums reach 2^26, float32 over all K would round;
    # the plan uses float32 on K tiles of 1024 (1024 * 127 * 128 < 2^24) summed in float64
    codes = rng.integers(100, 128, size=(8, 4000))
    p8 = PackedWeights.from_dense_codes(codes, np.ones_like(codes, bool), in_features=4000, n_keep=1,
                                        m_group=1, bits=8, scales=np.ones((8, 1)))
    plan = G.prepare(p8)
    assert plan.method == "float32 K-tiles of 1024"
    x = rng.integers(100, 128, size=(4, 4000)).astype(np.int8)
    x[0] = rng.choice(np.array([-128, 127], dtype=np.int8), size=4000)
    ref = dense_ref(p8, x)
    np.testing.assert_array_equal(G.gemm(plan, x), ref)
    np.testing.assert_array_equal(G.gemm(plan, x[:1]), ref[:1])
    naive32 = (x.astype(np.float32) @ p8.int_weights().T.astype(np.float32)).astype(np.int64)
    assert np.any(naive32 != ref)
    # INT16 activations: no tile is small enough -> float64 BLAS, still exact
    plan16 = G.prepare(p8, a_bits=16)
    assert plan16.method == "float64"
    x16 = rng.integers(-(1 << 15), 1 << 15, size=(3, 4000)).astype(np.int16)
    np.testing.assert_array_equal(plan16(x16), x16.astype(np.int64) @ p8.int_weights().T.astype(np.int64))
    # all -128 activations times all -128 weights: K * 2^14 exactly
    codes = np.full((2, 4096), -128)
    pw = PackedWeights.from_dense_codes(codes, np.ones_like(codes, bool), in_features=4096, n_keep=1,
                                        m_group=1, bits=8, scales=np.ones((2, 1)))
    y = G.gemm(pw, np.full((3, 4096), -128, dtype=np.int8))
    np.testing.assert_array_equal(y, np.full((3, 2), 4096 * 16384))


def test_gemm_acc_bits_check(rng):
    p = random_packed(rng, 4, 4096, 2, 4, 4)             # 2048 products of INT4 x INT8
    x = random_x(rng, 2, 4096)
    np.testing.assert_array_equal(G.gemm(p, x, acc_bits=23), dense_ref(p, x))   # 2048 * 2^10 = 2^21
    with pytest.raises(NmaccelError, match=r"use acc_bits >= 23 or tile K <= 4092"):
        G.gemm(p, x, acc_bits=22)
    pa = random_packed(rng, 4, 64, 4, 4, 4, asym=True)   # code - zero point needs 5 bits
    assert G.weight_operand_bits(pa) == 5
    with pytest.raises(NmaccelError, match="use acc_bits >= 19"):
        G.gemm(pa, random_x(rng, 1, 64), acc_bits=18)


def test_float32_k_tile_vs_brute_force(rng):
    for k in (1, 63, 65, 1000, 4096, 5000):
        for hi in (8, 128, 4096):
            w = rng.integers(-hi, hi, size=(3, k))
            want, kt = None, G.MIN_K_TILE
            while kt <= max(G.MIN_K_TILE, 1 << (k - 1).bit_length()):
                wp = np.zeros((3, -(-k // kt) * kt), dtype=np.int64)
                wp[:, :k] = np.abs(w)
                if 128 * wp.reshape(3, -1, kt).sum(axis=2).max() > 1 << 24:
                    break
                want, kt = kt, kt * 2
            assert G.float32_k_tile(w, 128) == want, (k, hi)


def test_int_matmul_wide_paths(rng):
    x = rng.integers(-128, 128, size=(3, 50))
    for hi in (1 << 47, 1 << 58):          # int64 path, then Python-int path
        w = rng.integers(-hi, hi, size=(4, 50))
        want = x.astype(object) @ w.T.astype(object)
        got = G.int_matmul(x, w)
        assert G.exact_dtype(G.dot_bound(128, w)) is None
        np.testing.assert_array_equal(got, want)


def test_gemm_bad_input(rng):
    p = random_packed(rng, 4, 10, 2, 4, 4)
    with pytest.raises(NmaccelError, match="K=11 but the weights have in_features=10"):
        G.gemm(p, np.zeros((2, 11), dtype=np.int8))
    with pytest.raises(NmaccelError, match="integer"):
        G.gemm(p, np.zeros((2, 10), dtype=np.float32))
    with pytest.raises(NmaccelError, match="out of the 8-bit"):
        G.gemm(p, np.full((2, 10), 200, dtype=np.int16))
    with pytest.raises(NmaccelError, match="2-D"):
        G.gemm_csr(p, np.zeros(10, dtype=np.int8))
    params = GS.groupscale_params(random_packed(rng, 5, 10, 2, 4, 4))
    with pytest.raises(NmaccelError, match="recompute groupscale_params"):
        GS.group_scaled_gemm(p, np.zeros((1, 10), dtype=np.int8), params)
    with pytest.raises(NmaccelError, match="frac_bits"):
        GS.groupscale_params(p, frac_bits=8)


def test_groupscale_exact_and_rounded(rng):
    # scales within 2^(F-11) of the row max are exact; a wide range is rounded
    p = random_packed(rng, 6, 256, 2, 4, 4, granularity="group", group_size=32, scale_range=(0.02, 0.1))
    params = GS.groupscale_params(p, frac_bits=16)
    assert params.exact
    s = np.asarray(p.scales, dtype=np.float64)
    np.testing.assert_array_equal(params.mult * params.acc_scale[:, None], s)
    assert params.mult.max() < 1 << 16 and params.mult_bits <= 16
    wide = random_packed(rng, 6, 256, 2, 4, 4, granularity="group", group_size=32, scale_range=(1e-4, 1.0))
    pw = GS.groupscale_params(wide, frac_bits=12)
    assert not pw.exact
    x = random_x(rng, 5, 256)
    acc = GS.group_scaled_gemm(wide, x, pw)
    np.testing.assert_array_equal(acc, loop_group_ref(wide, x, pw))
    bound = GS.group_scaled_error_bound(wide, x, pw)
    err = np.abs(acc * pw.acc_scale[None] - GS.group_scaled_float(wide, x))
    assert np.all(err <= bound) and bound.max() > 1e-6
    # widths of 2:4 INT4 g128: 64 nonzero products per group -> 18-bit partial sums
    p128 = random_packed(rng, 4, 512, 2, 4, 4, granularity="group", group_size=128)
    par128 = GS.groupscale_params(p128)
    w128 = GS.groupscale_widths(p128, par128)
    assert w128["partial_bits"] == 18
    mmax = int(par128.mult.max())
    assert w128["product_bits"] == intops.bits_for_range(-64 * 1016 * mmax, 64 * 1024 * mmax)
    assert w128["acc_bits"] == intops.bits_for_range(-4 * 64 * 1016 * mmax, 4 * 64 * 1024 * mmax)


def test_groupscale_zero_and_subnormal_scales(rng):
    codes = rng.integers(-8, 8, size=(3, 64))
    scales = np.array([[0.0, 0.0], [2.0 ** -20, 3 * 2.0 ** -24], [65504.0, 4096.0]])   # FP16 extremes
    p = PackedWeights.from_dense_codes(codes, np.ones_like(codes, bool), in_features=64, n_keep=4,
                                       m_group=4, bits=4, granularity="group", group_size=32,
                                       scales=scales)
    params = GS.groupscale_params(p, frac_bits=16)
    assert params.exact
    np.testing.assert_array_equal(params.mult * params.acc_scale[:, None], scales)
    np.testing.assert_array_equal(params.mult[0], [0, 0])
    x = random_x(rng, 4, 64)
    acc = GS.group_scaled_gemm(p, x, params)
    np.testing.assert_array_equal(acc, loop_group_ref(p, x, params))
    np.testing.assert_array_equal(acc * params.acc_scale[None], GS.group_scaled_float(p, x))
    # 2^17 between a row's scales is beyond 2^(16-11): rounded, flagged
    p.scales[2] = [65504.0, 0.5]
    assert not GS.groupscale_params(p, frac_bits=16).exact
    assert GS.groupscale_params(p, frac_bits=28).exact


@pytest.mark.models
def test_minilm_layer_exact():
    from nmaccel.models import loaders as models
    w = models.load_weights("minilm")["encoder.layer.0.attention.self.query.weight"]
    rng = np.random.default_rng(1234)
    x = random_x(rng, 8, w.shape[1])
    for kwargs in (dict(n_keep=2, m_group=4, bits=4, group_size=128),
                   dict(n_keep=4, m_group=4, bits=8),
                   dict(n_keep=2, m_group=8, bits=4, group_size=64, quantizer="lloyd-max")):
        p = pack_weights(w, **kwargs)
        ref = dense_ref(p, x)
        np.testing.assert_array_equal(G.gemm(p, x), ref)
        np.testing.assert_array_equal(G.gemm_csr(p, x), ref)
        params = GS.groupscale_params(p)
        acc = GS.group_scaled_gemm(p, x, params)
        np.testing.assert_array_equal(acc, loop_group_ref(p, x, params))
        err = np.abs(acc * params.acc_scale[None] - GS.group_scaled_float(p, x))
        assert np.all(err <= GS.group_scaled_error_bound(p, x, params))
