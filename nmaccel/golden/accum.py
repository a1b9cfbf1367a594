"""Accumulator width of a K-long integer dot product, exact for worst-case operands: the one
definition (product_range, dot_range, accum_bits, max_k) is nmaccel.arch.config's, which also
sizes the hardware accumulators (ArrayConfig.required_acc_bits); this module adds the check."""
from nmaccel.arch.config import accum_bits, dot_range, max_k, product_range  # noqa: F401
from nmaccel.errors import NmaccelError


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
