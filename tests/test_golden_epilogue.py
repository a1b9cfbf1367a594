"""Integer helpers and the requantization epilogue, against independent Python-int references."""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nmaccel.errors import NmaccelError
from nmaccel.golden import intops
from nmaccel.golden.epilogue import (add_bias, apply_multiplier, epilogue, epilogue_float,
                                     epilogue_stages, multiplier_value, quantize_multiplier, relu)


def _ref_round(q, mode):
    """Fraction q rounded with the named mode, in plain Python."""
    if mode == "floor":
        return math.floor(q)
    if mode == "trunc":
        return math.trunc(q)
    if mode == "half_up":
        return math.floor(q + Fraction(1, 2))
    if mode == "half_away":
        return int(math.copysign(math.floor(abs(q) + Fraction(1, 2)), q))
    return round(q)   # Fraction.__round__ is half-even


# ---- wrap / saturate ---------------------------------------------------------------------------
def test_wrap_known_and_vs_numpy_casts(rng):
    assert intops.wrap(128, 8) == -128
    assert intops.wrap(-129, 8) == 127
    assert intops.wrap(256, 8, signed=False) == 0
    assert intops.wrap(-1, 4, signed=False) == 15
    assert intops.wrap(7, 4) == 7 and intops.wrap(8, 4) == -8
    x = rng.integers(-(1 << 40), 1 << 40, size=2000)
    for bits, dt in [(8, np.int8), (16, np.int16), (32, np.int32)]:
        np.testing.assert_array_equal(intops.wrap(x, bits), x.astype(dt))
        np.testing.assert_array_equal(intops.wrap(x, bits, signed=False), x.astype(dt.__name__.replace("int", "uint")))


def test_wrap_beyond_int64():
    big = np.array([(1 << 70) + 5, -(1 << 70) - 3], dtype=object)
    np.testing.assert_array_equal(intops.wrap(big, 8), np.array([5, -3], dtype=object))
    assert intops.wrap(1 << 63, 64) == -(1 << 63)


def test_saturate_bounds():
    x = np.array([-200, -129, -128, -127, 0, 126, 127, 128, 300])
    np.testing.assert_array_equal(intops.saturate(x, 8), [-128, -128, -128, -127, 0, 126, 127, 127, 127])
    np.testing.assert_array_equal(intops.saturate(x, 4), [-8, -8, -8, -8, 0, 7, 7, 7, 7])
    np.testing.assert_array_equal(intops.saturate(x, 8, signed=False), [0, 0, 0, 0, 0, 126, 127, 128, 255])


def test_rejects_floats():
    with pytest.raises(NmaccelError, match="integer"):
        intops.wrap(np.array([1.5]), 8)
    with pytest.raises(NmaccelError, match="shift must be >= 0"):
        intops.round_shift(5, -1)
    with pytest.raises(NmaccelError, match="unknown rounding mode"):
        intops.round_shift(5, 1, mode="nearest")


# ---- round_shift ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", intops.ROUND_MODES)
def test_round_shift_vs_fraction(mode, rng):
    s = rng.integers(0, 21, size=600)
    base = rng.integers(-(1 << 30), 1 << 30, size=600)
    # exact +-half-LSB cases and their neighbours, plus random values
    half = np.where(s > 0, 1 << np.maximum(s - 1, 0), 0)
    k = rng.integers(-50, 50, size=600)
    ties = (k << s) + half
    x = np.concatenate([base, ties, ties - 1, ties + 1, -ties])
    ss = np.concatenate([s, s, s, s, s])
    got = intops.round_shift(x, ss, mode)
    want = [_ref_round(Fraction(int(a), 1 << int(b)), mode) for a, b in zip(x, ss)]
    np.testing.assert_array_equal(got, np.array(want, dtype=np.int64))


@settings(derandomize=True, max_examples=150, deadline=None)
@given(x=st.integers(-(1 << 100), 1 << 100), s=st.integers(0, 90), mode=st.sampled_from(intops.ROUND_MODES))
def test_round_shift_property_any_width(x, s, mode):
    assert int(intops.round_shift(np.array([x], dtype=object), s, mode)[0]) == _ref_round(Fraction(x, 1 << s), mode)
    if abs(x) < (1 << 40) and s < 40:
        assert int(intops.round_shift(x, s, mode)) == _ref_round(Fraction(x, 1 << s), mode)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(x=st.integers(-(1 << 70), 1 << 70), bits=st.integers(1, 66), signed=st.booleans())
def test_wrap_saturate_property(x, bits, signed):
    lo, hi = intops.int_range(bits, signed)
    w = int(intops.wrap(np.array([x], dtype=object), bits, signed)[0])
    assert lo <= w <= hi and (w - x) % (1 << bits) == 0
    s = int(intops.saturate(np.array([x], dtype=object), bits, signed)[0])
    assert s == min(max(x, lo), hi)
    if lo <= x <= hi:
        assert w == x == s


def test_round_shift_known_half_lsb():
    x = np.array([3, -3, 5, -5, 1, -1])
    np.testing.assert_array_equal(intops.round_shift(x, 1, "half_up"), [2, -1, 3, -2, 1, 0])
    np.testing.assert_array_equal(intops.round_shift(x, 1, "half_away"), [2, -2, 3, -3, 1, -1])
    np.testing.assert_array_equal(intops.round_shift(x, 1, "half_even"), [2, -2, 2, -2, 0, 0])
    np.testing.assert_array_equal(intops.round_shift(x, 1, "floor"), [1, -2, 2, -3, 0, -1])
    np.testing.assert_array_equal(intops.round_shift(x, 1, "trunc"), [1, -1, 2, -2, 0, 0])
    np.testing.assert_array_equal(intops.round_shift(x, 0), x)


def test_round_shift_per_channel_and_wide():
    x = np.array([[100, 100, 100]])
    np.testing.assert_array_equal(intops.round_shift(x, np.array([0, 2, 4])), [[100, 25, 6]])
    big = np.array([(1 << 80) + (1 << 19), -(1 << 80)], dtype=object)
    got = intops.round_shift(big, 20)
    assert got[0] == (1 << 60) + 1 and got[1] == -(1 << 60)
    # 0-d inputs past int64 stay exact through every stage
    assert int(epilogue(np.array(1 << 40), np.array(1 << 30), np.array(70))) == 1
    assert int(intops.saturate(np.array(1 << 70, dtype=object), 8)) == 127


# ---- quantize_multiplier ----------------------------------------------------------------------
@pytest.mark.parametrize("mult_bits", [8, 16, 32])
def test_quantize_multiplier_range_and_error(mult_bits, rng):
    real = np.exp(rng.uniform(np.log(1e-7), np.log(2.0 ** (mult_bits - 2)), size=500))
    m, s = quantize_multiplier(real, mult_bits)
    assert np.all(m >= 1 << (mult_bits - 2)) and np.all(m < 1 << (mult_bits - 1))
    assert np.all(s >= 0)
    rel = np.abs(multiplier_value(m, s) - real) / real
    assert rel.max() <= 2.0 ** -(mult_bits - 1)


def test_quantize_multiplier_known():
    m, s = quantize_multiplier(0.5, 32)          # TFLite: 2^30, right shift 31
    assert (int(m), int(s)) == (1 << 30, 31)
    m, s = quantize_multiplier(0.75, 16)
    assert (int(m), int(s)) == (3 << 13, 15)
    m, s = quantize_multiplier(1.0 - 2.0 ** -20, 16)   # rounds up to 1.0: renormalized
    assert (int(m), int(s)) == (1 << 14, 14)
    m, s = quantize_multiplier(0.0)
    assert (int(m), int(s)) == (0, 0)
    m, s = quantize_multiplier(2.0 ** -70, 16)      # below max_shift: clamped, flushes to 0
    assert (int(m), int(s)) == (0, 62)
    with pytest.raises(NmaccelError, match="too large"):
        quantize_multiplier(2.0 ** 15, 16)
    with pytest.raises(NmaccelError, match="NaN"):
        quantize_multiplier(np.nan)
    with pytest.raises(NmaccelError, match=">= 0"):
        quantize_multiplier(-0.1)


# ---- epilogue ---------------------------------------------------------------------------------------
def _ref_epilogue(acc, bias, m, s, relu_on, out_bits):
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    out = np.empty(acc.shape, dtype=np.int64)
    for idx in np.ndindex(acc.shape):
        o = idx[-1]
        v = math.floor(Fraction((int(acc[idx]) + int(bias[o])) * int(m[o]), 1 << int(s[o])) + Fraction(1, 2))
        if relu_on:
            v = max(v, 0)
        out[idx] = min(max(v, lo), hi)
    return out


@pytest.mark.parametrize("relu_on", [False, True])
@pytest.mark.parametrize("out_bits", [4, 8, 16])
def test_epilogue_vs_python_reference(relu_on, out_bits, rng):
    T, C = 7, 11
    acc = rng.integers(-(1 << 31), 1 << 31, size=(T, C))
    acc[0] = rng.integers(-3000, 3000, size=C)             # some values near zero
    bias = rng.integers(-(1 << 20), 1 << 20, size=C)
    real = np.exp(rng.uniform(np.log(1e-9), np.log(0.5), size=C))
    m, s = quantize_multiplier(real, 32)
    got = epilogue(acc, m, s, bias=bias, relu=relu_on, out_bits=out_bits)
    np.testing.assert_array_equal(got, _ref_epilogue(acc, bias, m, s, relu_on, out_bits))


def test_epilogue_known_answers_half_lsb_and_saturation():
    m, s = np.array([1]), np.array([1])                      # real = 0.5
    acc = np.array([[3], [-3], [1], [-1], [254], [255], [256], [-256], [-257], [-258]])
    got = epilogue(acc, m, s).ravel()
    # 1.5 -> 2, -1.5 -> -1 (half_up), 0.5 -> 1, -0.5 -> 0, 127 -> 127, 127.5 -> 128 -> sat 127,
    # -128 -> -128, -128.5 -> -128, -129 -> sat -128
    np.testing.assert_array_equal(got, [2, -1, 1, 0, 127, 127, 127, -128, -128, -128])
    np.testing.assert_array_equal(epilogue(acc, m, s, mode="half_away").ravel()[:4], [2, -2, 1, -1])
    np.testing.assert_array_equal(epilogue(acc, m, s, relu=True).ravel()[:4], [2, 0, 1, 0])
    # INT4 output bounds -8 / 7
    np.testing.assert_array_equal(epilogue(np.array([[14], [15], [-16], [-17]]), m, s, out_bits=4).ravel(),
                                  [7, 7, -8, -8])


def test_epilogue_raw_int32_and_stages():
    acc = np.array([[(1 << 31) - 10, -(1 << 31) + 5, 7]])
    bias = np.array([20, -10, -7])
    np.testing.assert_array_equal(epilogue(acc, None, None, bias=bias, out_bits=32),
                                  [[(1 << 31) - 1, -(1 << 31), 0]])
    m, s = quantize_multiplier(np.array([0.25, 0.5, 0.001]), 16)
    st = epilogue_stages(acc, m, s, bias=bias, relu_on=True)
    np.testing.assert_array_equal(st["biased"], add_bias(acc, bias))
    np.testing.assert_array_equal(st["product"], apply_multiplier(st["biased"], m))
    np.testing.assert_array_equal(st["shifted"], intops.round_shift(st["product"], s, "half_up"))
    np.testing.assert_array_equal(st["relu"], relu(st["shifted"]))
    np.testing.assert_array_equal(st["out"], intops.saturate(st["relu"], 8))


def test_epilogue_bad_bias():
    with pytest.raises(NmaccelError, match="bias out of the 32-bit"):
        epilogue(np.zeros((1, 1), dtype=np.int64), np.array([1]), np.array([0]), bias=np.array([1 << 31]))
    with pytest.raises(NmaccelError, match="integer"):
        epilogue(np.zeros((1, 1)), np.array([1]), np.array([0]))


@pytest.mark.parametrize("mult_bits", [12, 16, 32])
def test_epilogue_vs_float_reference_tolerance(mult_bits, rng):
    """Documented tolerance: equal unless within the multiplier error of a tie, then off by <= 1."""
    T, C = 64, 16
    acc = rng.integers(-(1 << 24), 1 << 24, size=(T, C))
    bias = rng.integers(-(1 << 16), 1 << 16, size=C)
    real = np.exp(rng.uniform(np.log(1e-7), np.log(1e-4), size=C))
    m, s = quantize_multiplier(real, mult_bits)
    got = epilogue(acc, m, s, bias=bias)
    ref = epilogue_float(acc, real, bias=bias)
    diff = np.abs(got - ref)
    assert diff.max() <= 1
    v = (acc + bias) * real
    near_tie = np.abs(v - np.floor(v) - 0.5) <= np.abs(acc + bias) * np.abs(real - multiplier_value(m, s)) + 1e-9
    assert np.all(diff[~near_tie] == 0)
    assert np.count_nonzero(diff == 0) > 0.9 * diff.size


@pytest.mark.parametrize("n_keep,m_group,bits,quantizer", [(2, 4, 4, "uniform"), (1, 4, 2, "uniform"),
                                                           (4, 4, 8, "uniform"), (2, 8, 4, "lloyd-max")])
def test_quantized_linear_vs_float(n_keep, m_group, bits, quantizer, rng):
    from nmaccel.golden.epilogue import quantize_bias, quantized_linear, quantized_linear_float
    from nmaccel.golden.groupscale import group_scaled_gemm
    from nmaccel.pack import pack_weights
    w = (rng.standard_normal((48, 200)) * 0.05).astype(np.float32)
    p = pack_weights(w, n_keep=n_keep, m_group=m_group, bits=bits, group_size=64, quantizer=quantizer)
    x = rng.integers(-128, 128, size=(16, 200)).astype(np.int8)
    x_scale, bias = 0.02, rng.standard_normal(48) * 0.1
    y_scale = np.abs((x * x_scale) @ p.dequantize().T.astype(np.float64) + bias).max() / 100
    for relu_on in (False, True):
        st = quantized_linear(p, x, x_scale, y_scale, bias=bias, relu=relu_on)
        np.testing.assert_array_equal(st["acc"], group_scaled_gemm(p, x, st["params"]))
        np.testing.assert_array_equal(st["out"], epilogue(st["acc"], st["mantissa"], st["shift"],
                                                          bias=st["bias_q"], relu=relu_on))
        ref = quantized_linear_float(p, x, x_scale, y_scale, bias=bias, relu=relu_on)
        assert st["params"].exact
        diff = np.abs(st["out"] - ref)
        assert diff.max() <= 1 and np.count_nonzero(diff) <= 0.01 * diff.size
        assert st["out"].min() >= (0 if relu_on else -128) and st["out"].max() <= 127
    with pytest.raises(NmaccelError, match="bias does not fit INT32"):
        quantize_bias(np.full(48, 1e6), x_scale, st["params"])
