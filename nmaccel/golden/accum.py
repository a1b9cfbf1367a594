"""Accumulator width of a K-long integer dot product, exact for worst-case operands."""
from nmaccel.errors import NmaccelError, require
from nmaccel.golden.intops import bits_for_range, int_range


def _signs(signed):
    if isinstance(signed, (tuple, list)):
        require(len(signed) == 2, "signed must be a bool or a (w_signed, a_signed) pair")
        return bool(signed[0]), bool(signed[1])
    return bool(signed), bool(signed)


def product_range(w_bits, a_bits, signed=True):
    """(lo, hi) of one product w * a of a `w_bits` and an `a_bits` operand.

    `signed` is a bool for both operands or a (w_signed, a_signed) pair. For two signed operands
    the maximum is (-2^(w-1)) * (-2^(a-1)) = 2^(w+a-2) and the minimum is
    -max(2^(w-1) * (2^(a-1)-1), (2^(w-1)-1) * 2^(a-1)).
    """
    ws, as_ = _signs(signed)
    wlo, whi = int_range(w_bits, ws)
    alo, ahi = int_range(a_bits, as_)
    corners = [wlo * alo, wlo * ahi, whi * alo, whi * ahi]
    return min(corners), max(corners)


def dot_range(k, w_bits, a_bits, signed=True):
    """(lo, hi) of a sum of `k` products (every term independently at its extreme)."""
    require(int(k) >= 0, f"K must be >= 0, got {k}")
    lo, hi = product_range(w_bits, a_bits, signed)
    return int(k) * lo, int(k) * hi


def accum_bits(k, w_bits, a_bits, signed=True):
    """Exact accumulator bits for a `k`-long dot product of worst-case operands.

    Signed result (two's complement) when either operand is signed, else unsigned. E.g.
    INT8 x INT8: one product needs 16 bits (+2^14 = (-128)*(-128) does not fit 15), and
    accum_bits(k, 8, 8) = bits_for_range(k * -16256, k * 16384).
    """
    ws, as_ = _signs(signed)
    lo, hi = dot_range(k, w_bits, a_bits, signed)
    return bits_for_range(lo, hi, signed=ws or as_)


def max_k(acc_bits, w_bits, a_bits, signed=True):
    """Largest K whose worst-case dot product fits `acc_bits` (0 if not even one product)."""
    ws, as_ = _signs(signed)
    alo, ahi = int_range(acc_bits, ws or as_)
    lo, hi = product_range(w_bits, a_bits, signed)
    limits = []
    if hi > 0:
        limits.append(ahi // hi)
    if lo < 0:
        limits.append(alo // lo)   # both negative: floor(alo / lo)
    return min(limits) if limits else 0


def check_accumulator(k, w_bits, a_bits, acc_bits, signed=True):
    """Return accum_bits(k, ...) or raise NmaccelError if it exceeds `acc_bits`.

    The message names the fix: a wider accumulator or a K tile that fits.
    """
    need = accum_bits(k, w_bits, a_bits, signed)
    if need > int(acc_bits):
        kt = max_k(acc_bits, w_bits, a_bits, signed)
        tile = f" or tile K <= {kt}" if kt > 0 else ""
        raise NmaccelError(
            f"a K={k} dot product of {w_bits}-bit weights and {a_bits}-bit activations can "
            f"overflow a {acc_bits}-bit accumulator; use acc_bits >= {need}{tile}")
    return need
