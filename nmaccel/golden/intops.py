"""Exact integer helpers shared by the golden models and mirrored 1:1 by the hardware.

Every function takes integer numpy arrays (or Python ints) and returns int64 arrays; where a
result could leave the int64 range it is computed with Python integers (dtype=object), never
with floats. Floats are refused: the golden models are integer-only.
"""
import numpy as np

from nmaccel.arch.config import bits_for_range, int_range  # noqa: F401  (defined with the accumulator width)
from nmaccel.errors import NmaccelError, require

ROUND_MODES = ("half_up", "half_away", "half_even", "floor", "trunc")
"""Rounding modes of `round_shift`. Hardware default is "half_up" (add 2^(s-1), then arithmetic
shift right: one constant adder, rounds exact halves toward +inf)."""

_INT64_SAFE = (1 << 62)   # keep every int64 intermediate strictly inside +-2^62


def as_int(x, what="value"):
    """`x` as an int64 array (object array of Python ints if it holds values beyond int64)."""
    arr = np.asarray(x)
    if arr.dtype == object:
        require(all(isinstance(v, (int, np.integer)) for v in arr.flat),
                f"{what} must hold integers; quantize it first")
        return arr
    require(arr.dtype.kind in "iub",
            f"{what} must be an integer array, got dtype {arr.dtype}; quantize it first")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= (1 << 63):
        return arr.astype(object)
    return arr.astype(np.int64, copy=False)


def max_abs(x):
    """Largest |value| of an integer array as a Python int (0 for an empty array)."""
    arr = as_int(x)
    if arr.size == 0:
        return 0
    return max(abs(int(arr.max())), abs(int(arr.min())))


def _widen(*arrays, bound):
    """Switch all arrays to Python-int object arrays if `bound` (a result magnitude) is unsafe."""
    if bound >= _INT64_SAFE:
        return tuple(np.asarray(a).astype(object) for a in arrays)
    return arrays


def wrap(x, bits, signed=True):
    """Two's complement wrap-around of `x` to `bits` bits (what a `bits`-wide register keeps)."""
    lo, _ = int_range(bits, signed)
    arr = as_int(x, "wrap input")
    width = 1 << int(bits)
    arr, = _widen(arr, bound=max(max_abs(arr), width) * 2)
    return np.asarray(((arr - lo) % width) + lo)


def saturate(x, bits, signed=True):
    """Clamp `x` to the `bits`-wide signed (or unsigned) range."""
    lo, hi = int_range(bits, signed)
    arr = as_int(x, "saturate input")
    if arr.dtype == object:
        return np.minimum(np.maximum(np.atleast_1d(arr), lo), hi).reshape(arr.shape)
    if bits >= 64:
        return arr.copy()
    return np.clip(arr, lo, hi)


def round_shift(x, shift, mode="half_up"):
    """Arithmetic right shift of `x` by `shift` >= 0 bits with named rounding (x / 2^shift).

    Modes: "half_up" (default; floor((x + 2^(shift-1)) / 2^shift): ties toward +inf, what a
    constant adder before the shifter gives), "half_away" (ties away from zero, gemmlowp
    RoundingDivideByPOT), "half_even" (banker's), "floor" (plain >>), "trunc" (toward zero).
    `shift` broadcasts (per-channel shifts). shift == 0 returns x unchanged.
    """
    require(mode in ROUND_MODES, f"unknown rounding mode {mode!r}; use one of {ROUND_MODES}")
    arr = as_int(x, "round_shift input")
    s = as_int(shift, "shift")
    require(s.size == 0 or int(s.min()) >= 0,
            "shift must be >= 0; use a left shift (multiply) for negative shifts")
    smax = int(s.max()) if s.size else 0
    shape = np.broadcast_shapes(arr.shape, s.shape)
    arr, s = _widen(np.atleast_1d(arr), np.atleast_1d(s), bound=max_abs(arr) + (1 << smax) + 1)
    if arr.dtype == object:
        s = s.astype(object)
        half = np.frompyfunc(lambda v: (1 << (int(v) - 1)) if v > 0 else 0, 1, 1)(s).astype(object)
    else:
        half = np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)
    if mode == "floor":
        out = arr >> s
    elif mode == "half_up":
        out = (arr + half) >> s
    elif mode == "trunc":
        out = np.where(arr < 0, -((-arr) >> s), arr >> s)
    elif mode == "half_away":
        out = np.where(arr < 0, -((-arr + half) >> s), (arr + half) >> s)
    else:   # half_even
        fl = arr >> s
        rem = arr - (fl << s)
        up = (rem > half) | ((rem == half) & (s > 0) & ((fl & 1) == 1))
        out = fl + up.astype(np.int64)
    return np.asarray(out).reshape(shape)


def mul_exact(a, b):
    """Elementwise (broadcast) product of integer arrays, exact (object dtype past int64)."""
    a, b = as_int(a, "multiplicand"), as_int(b, "multiplier")
    a, b = _widen(a, b, bound=max_abs(a) * max_abs(b))
    return np.asarray(a * b)


def add_exact(a, b):
    """Elementwise (broadcast) sum of integer arrays, exact (object dtype past int64)."""
    a, b = as_int(a, "addend"), as_int(b, "addend")
    a, b = _widen(a, b, bound=max_abs(a) + max_abs(b))
    return np.asarray(a + b)


def check_fits(x, bits, signed=True, what="value"):
    """Raise NmaccelError unless every value of `x` fits `bits` bits (no silent wrap)."""
    lo, hi = int_range(bits, signed)
    arr = as_int(x, what)
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        raise NmaccelError(
            f"{what} out of the {bits}-bit {'signed' if signed else 'unsigned'} range "
            f"[{lo}, {hi}] (got [{int(arr.min())}, {int(arr.max())}]); quantize or clip it first")
    return arr
