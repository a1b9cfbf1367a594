"""Output epilogue: integer accumulator -> INT8 (or raw INT32), stage by stage.

Hardware order and widths (acc_bits A, multiplier mantissa bits B, output bits O):
  1. add_bias:        s = acc + bias              A-bit acc + 32-bit bias, exact in max(A,32)+1 bits
  2. apply_multiplier p = s * mantissa            exact, (max(A,32)+1) + B bits (mantissa >= 0)
  3. round_shift:     r = (p + 2^(shift-1)) >> shift   rounding "half_up" (ties toward +inf)
  4. relu (optional): r = max(r, 0)
  5. saturate:        y = clamp(r, -2^(O-1), 2^(O-1)-1)
The real per-channel scale `real` is represented as mantissa * 2^-shift by `quantize_multiplier`
(TFLite/gemmlowp style: mantissa in [2^(B-2), 2^(B-1)), i.e. a B-bit signed positive number).
Float reference: `epilogue_float`; see its docstring for the tolerance. `quantized_linear` chains
the group-scaled GEMM and this epilogue into a whole INT8 linear layer.
"""
import numpy as np

from nmaccel.errors import require
from nmaccel.golden import intops
from nmaccel.golden.gemm import check_activations
from nmaccel.golden.groupscale import group_scaled_gemm, groupscale_params

MAX_SHIFT = 62


def quantize_multiplier(real, mult_bits=16, max_shift=MAX_SHIFT):
    """real (> 0 scalar or array) -> (mantissa, shift) int64 arrays, real ~= mantissa * 2^-shift.

    mantissa = round_half_up(q * 2^(mult_bits-1)) for real = q * 2^e, q in [0.5, 1) (a carry to
    2^(mult_bits-1) renormalizes), shift = mult_bits - 1 - e; relative error <= 2^-(mult_bits-1).
    Multipliers so small that shift would exceed `max_shift` keep shift = max_shift and a smaller
    (possibly 0) mantissa. real == 0 gives (0, 0). Needs real < 2^(mult_bits-1) (shift >= 0).
    """
    require(2 <= int(mult_bits) <= 53, f"mult_bits must be in [2, 53], got {mult_bits}")
    r = np.asarray(real, dtype=np.float64)
    require(np.all(np.isfinite(r)), "multiplier must be finite; check the scales for NaN/inf")
    require(np.all(r >= 0), "multiplier must be >= 0; scales must be positive")
    q, e = np.frexp(r)
    top = 1 << (int(mult_bits) - 1)
    mant = np.floor(q * top + 0.5).astype(np.int64)
    carry = mant == top
    mant = np.where(carry, mant // 2, mant)
    e = e.astype(np.int64) + carry
    shift = (int(mult_bits) - 1) - e
    require(not np.any((r > 0) & (shift < 0)),
            f"multiplier too large for a {mult_bits}-bit mantissa (needs real < 2^{mult_bits - 1}); "
            "raise the output scale")
    tiny = shift > max_shift
    if np.any(tiny):
        mant = np.where(tiny, np.floor(np.ldexp(r, max_shift) + 0.5).astype(np.int64), mant)
        shift = np.where(tiny, max_shift, shift)
    zero = r == 0
    mant = np.where(zero, 0, mant)
    shift = np.where(zero, 0, shift)
    return mant.astype(np.int64), shift.astype(np.int64)


def multiplier_value(mantissa, shift):
    """The real number mantissa * 2^-shift (float64, exact for mantissa < 2^53)."""
    return np.ldexp(np.asarray(mantissa, dtype=np.float64), -np.asarray(shift, dtype=np.int64))


def add_bias(acc, bias=None, bias_bits=32):
    """Stage 1: acc + bias (per-channel bias along the last axis), exact. bias must fit bias_bits."""
    acc = intops.as_int(acc, "accumulator")
    if bias is None:
        return acc
    bias = intops.check_fits(bias, bias_bits, True, "bias")
    return intops.add_exact(acc, bias)


def apply_multiplier(x, mantissa):
    """Stage 2: x * mantissa (per-channel along the last axis), exact."""
    m = intops.as_int(mantissa, "multiplier mantissa")
    require(m.size == 0 or int(m.min()) >= 0, "multiplier mantissa must be >= 0")
    return intops.mul_exact(x, m)


def relu(x):
    """Stage 4: max(x, 0)."""
    x = intops.as_int(x, "relu input")
    return np.maximum(x, 0)


def epilogue_stages(acc, mult, shift, bias=None, relu_on=False, out_bits=8, mode="half_up"):
    """All intermediates of `epilogue` as a dict (keys: biased, product, shifted, relu, out)."""
    st = {"biased": add_bias(acc, bias)}
    if mult is None:
        st["product"] = st["biased"]
        st["shifted"] = st["biased"]
    else:
        st["product"] = apply_multiplier(st["biased"], mult)
        st["shifted"] = intops.round_shift(st["product"], shift, mode)
    st["relu"] = relu(st["shifted"]) if relu_on else st["shifted"]
    st["out"] = intops.saturate(st["relu"], out_bits, signed=True).astype(np.int64)
    return st


def epilogue(acc, mult, shift, bias=None, relu=False, out_bits=8, mode="half_up"):
    """Accumulator (T, out) -> saturated `out_bits` integers (int64 array).

    y = saturate(relu?(round_shift((acc + bias) * mult, shift, mode)), out_bits). `mult`, `shift`
    and `bias` broadcast along the last (channel) axis. mult=None skips scaling (raw output:
    out_bits=32 gives the INT32 accumulator + bias, saturated).
    """
    return epilogue_stages(acc, mult, shift, bias, relu, out_bits, mode)["out"]


def epilogue_float(acc, real, bias=None, relu=False, out_bits=8):
    """Float reference: saturate(relu?(round_half_up((acc + bias) * real)), out_bits).

    Tolerance vs `epilogue(acc, *quantize_multiplier(real, B), ...)` with mode "half_up": equal,
    except where (acc + bias) * real lies within |acc + bias| * |real - mantissa*2^-shift|
    (<= |acc + bias| * real * 2^-(B-1)) of a rounding tie; there they differ by at most 1.
    """
    s = np.asarray(intops.add_exact(acc, bias if bias is not None else 0), dtype=np.float64)
    y = np.floor(s * np.asarray(real, dtype=np.float64) + 0.5)
    if relu:
        y = np.maximum(y, 0)
    lo, hi = intops.int_range(out_bits, True)
    return np.clip(y, lo, hi).astype(np.int64)


def quantize_bias(bias, x_scale, params, bias_bits=32):
    """Float bias (out,) -> integer bias in accumulator LSBs of a group-scaled GEMM.

    One accumulator LSB of channel o is worth x_scale * params.acc_scale[o]; rounding half-up.
    Raises NmaccelError if a value does not fit bias_bits (lower frac_bits or the bias).
    """
    b = np.asarray(bias, dtype=np.float64)
    require(np.all(np.isfinite(b)), "bias must be finite; check the checkpoint for NaN/inf")
    q = np.floor(b / (float(x_scale) * params.acc_scale) + 0.5)
    lo, hi = intops.int_range(bias_bits, True)
    require(np.all((q >= lo) & (q <= hi)),
            f"bias does not fit INT{bias_bits} at this accumulator scale; use a smaller frac_bits")
    return q.astype(np.int64)


def quantized_linear(packed, x_q, x_scale, y_scale, bias=None, relu=False, out_bits=8,
                     frac_bits=16, mult_bits=16, mode="half_up"):
    """Whole integer linear layer as the hardware runs it; returns dict of every stage.

    acc = group_scaled_gemm(packed, x_q, groupscale_params(packed, frac_bits)); per-channel
    real multiplier x_scale * acc_scale[o] / y_scale -> quantize_multiplier(mult_bits); integer
    bias = quantize_bias(bias); out = epilogue(acc, mantissa, shift, bias, relu, out_bits).
    Float reference: `quantized_linear_float`; tolerance documented there.
    """
    require(float(x_scale) > 0 and float(y_scale) > 0, "x_scale and y_scale must be > 0")
    params = groupscale_params(packed, frac_bits)
    acc = group_scaled_gemm(packed, x_q, params)
    mant, shift = quantize_multiplier(float(x_scale) * params.acc_scale / float(y_scale), mult_bits)
    bias_q = None if bias is None else quantize_bias(bias, x_scale, params)
    st = epilogue_stages(acc, mant, shift, bias_q, relu, out_bits, mode)
    st.update(acc=acc, params=params, mantissa=mant, shift=shift, bias_q=bias_q)
    return st


def quantized_linear_float(packed, x_q, x_scale, y_scale, bias=None, relu=False, out_bits=8):
    """Float reference of `quantized_linear`: clamp(round_half_up(((x_q*x_scale) @ W.T + bias)
    / y_scale)) with W = packed.dequantize(), in float64.

    Tolerance: |quantized_linear - this| <= 1 LSB where the group scales are exact
    (params.exact) and mult_bits >= 16; 0 except near a rounding tie.
    """
    x = check_activations(x_q, packed.in_features).astype(np.float64) * float(x_scale)
    y = x @ packed.dequantize().astype(np.float64).T
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    y = np.floor(y / float(y_scale) + 0.5)
    if relu:
        y = np.maximum(y, 0)
    lo, hi = intops.int_range(out_bits, True)
    return np.clip(y, lo, hi).astype(np.int64)
