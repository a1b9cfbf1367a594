"""One exception type for bad user input: the CLI prints its one-line message and exits 2."""


class NmaccelError(ValueError):
    """Bad input or configuration; the message says what to do."""


class ToolMissingError(NmaccelError):
    """An external tool (yosys, nextpnr, verilator, ...) is not installed."""


def require(cond, msg):
    """Raise NmaccelError(msg) unless cond (Gemmini-style require)."""
    if not cond:
        raise NmaccelError(msg)
