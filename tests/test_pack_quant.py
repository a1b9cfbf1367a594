"""Quantization: uniform INT2/4/8 grids (symmetric, zero-point), scales, Lloyd-Max, activations.

Float tolerances appear only where a float reference (the original weights) is compared with
its quantized version: the error bounds hold in exact arithmetic, the slack (1e-9 relative)
covers float64 rounding of w / scale.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from safetensors import safe_open

from nmaccel.models import loaders as models
from nmaccel.errors import NmaccelError
from nmaccel.pack import PackedWeights, quantize_activations, quantize_weights
from nmaccel.pack.prune import nm_mask, pad_k
from nmaccel.pack.quant import fit_lloyd_max, fit_uniform, fp16_ceil, symmetric_qrange

BITS = (2, 4, 8)
GRANS = [("tensor", None), ("channel", None), ("group", 32), ("group", 24)]


def heavy(rng, shape):
    return rng.standard_t(3, size=shape)


def minilm(name, rows=None):
    with safe_open(str(models.builtin_path("minilm")), "np") as f:
        w = f.get_tensor(name).astype(np.float64)
    return w if rows is None else w[:rows]


def _packed(w, mask, grid, codes, m_group):
    return PackedWeights.from_dense_codes(
        np.where(mask, codes, 0), mask, in_features=w.shape[1], n_keep=int(mask[0, :m_group].sum()),
        m_group=m_group, bits=grid.bits, quantizer=grid.quantizer, granularity=grid.granularity,
        group_size=grid.group_size, scales=grid.scales, zero_points=grid.zero_points,
        codebook=grid.codebook)


def test_fp16_ceil_is_smallest_fp16_not_below(rng):
    x = np.concatenate([rng.uniform(1e-6, 1e4, 2000), [1.0, 0.5, 65504.0, 1e-7]])
    h = fp16_ceil(x)
    assert h.dtype == np.float32
    np.testing.assert_array_equal(h.astype(np.float16).astype(np.float32), h)
    assert np.all(h.astype(np.float64) >= x)
    below = np.nextafter(h.astype(np.float16), np.float16(0)).astype(np.float64)
    assert np.all(below < x)
    with pytest.raises(NmaccelError, match="overflows FP16"):
        fp16_ceil(np.array([70000.0]))


@pytest.mark.parametrize("bits", BITS)
def test_symmetric_grid_known_answer(bits):
    w = np.array([[-3.0, 1.0, 0.25, 2.0], [0.5, -0.5, 0.0, 0.1]])
    grid = fit_uniform(w, bits=bits, granularity="channel", symmetric=True)
    half = (1 << (bits - 1)) - 0.5
    np.testing.assert_array_equal(grid.scales[:, 0], fp16_ceil(np.array([3.0, 0.5]) / half))
    codes = grid.quantize(w)
    lo, hi = symmetric_qrange(bits)
    # scale rounded up to FP16: -max|w| sits at or just inside -(2^(b-1) - 0.5)
    assert codes[0, 0] in (lo, lo + 1)
    assert abs(-3.0 - codes[0, 0] * float(grid.scales[0, 0])) <= grid.scales[0, 0] / 2
    assert codes.min() >= lo and codes.max() <= hi
    if bits == 4:   # GPTQ grid: scale = 2 max|w| / 15 (0.4 -> next FP16 up), codes -8..7
        assert grid.scales[0, 0] == np.nextafter(np.float16(0.4), np.float16(1))
        np.testing.assert_array_equal(codes[0], [-7, 2, 1, 5])


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("gran,gs", GRANS)
@pytest.mark.parametrize("symmetric", [True, False])
def test_round_trip_error_bound_and_scale_shapes(rng, bits, gran, gs, symmetric):
    m_group = 4
    w = pad_k(heavy(rng, (12, 70)), m_group)
    mask = nm_mask(np.abs(w), 2, m_group)
    wk = np.where(mask, w, 0.0)
    grid, codes = quantize_weights(wk, mask, bits=bits, granularity=gran, group_size=gs,
                                   symmetric=symmetric)
    kp = w.shape[1]
    shape = {"tensor": (1, 1), "channel": (12, 1), "group": (12, -(-kp // (gs or 1)))}[gran]
    assert grid.scales.shape == shape and grid.scales.dtype == np.float32
    np.testing.assert_array_equal(grid.scales.astype(np.float16).astype(np.float32), grid.scales)
    deq = grid.dequantize(codes)
    s = grid._per_col(grid.scales.astype(np.float64), np.arange(kp))
    err = np.abs(np.where(mask, wk - deq, 0.0))
    assert np.all(err <= s / 2 * (1 + 1e-9))
    if symmetric:
        lo, hi = symmetric_qrange(bits)
    else:
        lo, hi = 0, (1 << bits) - 1
        assert grid.zero_points.shape == shape and grid.zero_points.dtype == np.int16
        assert grid.zero_points.min() >= 0 and grid.zero_points.max() <= hi
    assert codes[mask].min() >= lo and codes[mask].max() <= hi
    # the packed format sees the same integers; pruned positions stay exactly 0
    pw = _packed(w[:, :70], mask, grid, codes, m_group)
    iw = pw.int_weights(padded=True)
    np.testing.assert_array_equal(iw, np.where(mask, grid.int_values(codes), 0))
    np.testing.assert_array_equal(pw.dequantize()[~mask[:, :70]], 0.0)


def test_scales_ignore_pruned_weights(rng):
    w = heavy(rng, (6, 16))
    mask = nm_mask(np.abs(w), 2, 4)
    spiked = w.copy()
    spiked[~mask] = 1e3           # huge values at pruned positions
    for gran, gs in GRANS:
        a = fit_uniform(np.where(mask, w, 0), mask, bits=4, granularity=gran, group_size=gs)
        b = fit_uniform(spiked, mask, bits=4, granularity=gran, group_size=gs)
        np.testing.assert_array_equal(a.scales, b.scales)
        la = fit_lloyd_max(w, mask, bits=2, granularity=gran, group_size=gs)
        lb = fit_lloyd_max(spiked, mask, bits=2, granularity=gran, group_size=gs)
        np.testing.assert_array_equal(la.codebook, lb.codebook)
        np.testing.assert_array_equal(la.scales, lb.scales)


def test_asymmetric_beats_symmetric_on_one_sided_weights(rng):
    w = np.abs(heavy(rng, (16, 128))) + 0.5
    for bits in BITS:
        errs = []
        for sym in (True, False):
            grid, codes = quantize_weights(w, bits=bits, symmetric=sym)
            errs.append(np.mean((w - grid.dequantize(codes)) ** 2))
        assert errs[1] < errs[0] / (1.8 if bits == 2 else 3.5)   # ~2.3x at INT2, ~4x above


def test_all_zero_unit_gets_scale_one():
    w = np.zeros((2, 8))
    w[1, 4] = 2.0
    grid, codes = quantize_weights(w, bits=4, granularity="group", group_size=4)
    np.testing.assert_array_equal(grid.scales, [[1, 1], [1, np.float32(0.266845703125)]])  # 2/7.5 up to FP16
    np.testing.assert_array_equal(grid.dequantize(codes)[0], 0.0)


def test_scale_overflow_raises():
    with pytest.raises(NmaccelError, match="overflows FP16"):
        quantize_weights(np.full((2, 4), 1e6), bits=2)


@pytest.mark.parametrize("bad,match", [
    (dict(bits=3), "bits=3"),
    (dict(bits=4, granularity="row"), "unknown granularity"),
    (dict(bits=4, granularity="channel", group_size=64), "only applies to granularity='group'"),
    (dict(bits=4, group_size=0), "positive integer"),
    (dict(bits=4, quantizer="kmeans"), "unknown quantizer"),
    (dict(bits=4, quantizer="lloyd-max", symmetric=False), "uniform quantizer only"),
])
def test_bad_quantizer_arguments(bad, match):
    with pytest.raises(NmaccelError, match=match):
        quantize_weights(np.ones((2, 8)), **bad)


# ---------------------------------------------------------------- Lloyd-Max

@pytest.mark.models
@pytest.mark.parametrize("name,rows", [("encoder.layer.0.attention.self.query.weight", 96),
                                       ("encoder.layer.0.output.dense.weight", 48)])
@pytest.mark.parametrize("gran,gs", [("channel", None), ("group", 128)])
def test_lloyd_max_beats_uniform_on_real_weights(name, rows, gran, gs):
    w = minilm(name, rows)
    mask = nm_mask(np.abs(w), 2, 4)
    for bits in BITS:
        grid, codes = quantize_weights(np.where(mask, w, 0), mask, bits=bits, quantizer="lloyd-max",
                                       granularity=gran, group_size=gs)
        ugrid, ucodes = quantize_weights(np.where(mask, w, 0), mask, bits=bits, granularity=gran,
                                         group_size=gs)
        uniform_mse = np.mean((w - ugrid.dequantize(ucodes))[mask] ** 2)
        lloyd_mse = np.mean((w - grid.dequantize(codes))[mask] ** 2)
        # the reported MSE is that of the stored INT8 codebook
        np.testing.assert_allclose(grid.stats["mse"], lloyd_mse, rtol=1e-9)
        np.testing.assert_allclose(grid.stats["uniform_mse"], uniform_mse, rtol=1e-9)
        assert lloyd_mse <= uniform_mse
        if bits < 8:   # heavy tails: a real gain, not just the uniform fallback
            assert lloyd_mse < 0.8 * uniform_mse
            assert grid.stats["uniform_units"] < grid.stats["units"] / 2
        for key in ("history", "history_quantile_init"):
            h = np.array(grid.stats[key])
            assert len(h) > (bits < 8) and np.all(np.diff(h) <= 1e-9 * h[0])   # float64 sums
        assert grid.stats["mse"] >= grid.stats["float_mse"] * (1 - 1e-9) or bits == 8
        assert grid.codebook.dtype == np.int8
        assert grid.codebook.shape == grid.scales.shape + (1 << bits,)
        assert np.all(np.diff(grid.codebook.astype(int), axis=-1) >= 0)
        # packed dequantize matches and pruned weights are not revived
        pw = _packed(w, mask, grid, codes, 4)
        assert codes.max() < (1 << bits) and codes.min() >= 0
        np.testing.assert_array_equal(pw.dequantize()[~mask], 0.0)
        np.testing.assert_array_equal(pw.int_weights(), np.where(mask, grid.int_values(codes), 0))


def test_lloyd_max_finds_clusters(rng):
    centers = np.array([-1.0, -0.3, 0.2, 0.9])
    w = centers[rng.integers(0, 4, size=(8, 64))] + rng.normal(0, 1e-3, size=(8, 64))
    grid, codes = quantize_weights(w, bits=2, quantizer="lloyd-max")
    deq = grid.dequantize(codes)
    s = grid.scales.astype(np.float64)
    # every weight lands on its own cluster's level, up to INT8 rounding of the level
    assert np.all(np.abs(w - deq) <= s / 2 + 3e-3)
    assert grid.stats["uniform_units"] == 0
    assert grid.stats["mse"] < 0.01 * grid.stats["uniform_mse"]


# ---------------------------------------------------------------- activations

@pytest.mark.parametrize("gran", ["tensor", "token"])
def test_quantize_activations(rng, gran):
    x = rng.normal(size=(10, 33)) * rng.uniform(0.1, 10, size=(10, 1))
    q, s = quantize_activations(x, granularity=gran)
    assert q.dtype == np.int8 and q.shape == x.shape
    assert s.shape == ((10, 1) if gran == "token" else (1, 1)) and s.dtype == np.float32
    np.testing.assert_array_equal(s.astype(np.float16).astype(np.float32), s)
    assert np.all(np.abs(x - q * s.astype(np.float64)) <= s / 2 * (1 + 1e-9))
    assert q.min() == -128 or q.max() == 127 or gran == "tensor"
    # a calibrated (smaller) scale saturates instead of wrapping
    q2, s2 = quantize_activations(x, granularity=gran, scale=np.full(s.shape, s.min() / 4))
    np.testing.assert_array_equal(q2[x > 0][np.abs(x[x > 0]) > 200 * s.min()], 127)
    assert q2.min() >= -128


@pytest.mark.parametrize("x,kw,match", [
    (np.ones(5), {}, "2-D"),
    (np.full((2, 2), np.nan), {}, "NaN"),
    (np.ones((2, 2)), {"granularity": "channel"}, "unknown activation granularity"),
    (np.ones((2, 2)), {"scale": -1.0}, "finite and > 0"),
    (np.ones((2, 2)), {"granularity": "token", "scale": np.ones(3)}, "shape"),
])
def test_quantize_activations_bad_input(x, kw, match):
    with pytest.raises(NmaccelError, match=match):
        quantize_activations(x, **kw)


# ---------------------------------------------------------------- property test


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data(), bits=st.sampled_from(BITS), symmetric=st.booleans(),
       gran=st.sampled_from(GRANS), nm=st.sampled_from([(1, 2), (2, 4), (3, 8), (4, 4)]))
def test_property_round_trip_bound(data, bits, symmetric, gran, nm):
    n_keep, m_group = nm
    shape = (data.draw(st.integers(1, 5)), data.draw(st.integers(1, 40)))
    w = data.draw(arrays(np.float64, shape, elements=st.floats(-1e3, 1e3, allow_subnormal=False)))
    wp = pad_k(w, m_group)
    mask = nm_mask(np.abs(w), n_keep, m_group)
    gs = gran[1] and m_group * 3
    grid, codes = quantize_weights(np.where(mask, wp, 0), mask, bits=bits, granularity=gran[0],
                                   group_size=gs, symmetric=symmetric)
    s = grid._per_col(grid.scales.astype(np.float64), np.arange(wp.shape[1]))
    err = np.abs(np.where(mask, wp - grid.dequantize(codes), 0.0))
    assert np.all(err <= s / 2 * (1 + 1e-9))
