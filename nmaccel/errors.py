"""One exception type for bad user input: the CLI prints its one-line message and exits 2."""
import os


class NmaccelError(ValueError):
    """Bad input or configuration; the message says what to do."""


class ToolMissingError(NmaccelError):
    """An external tool (yosys, nextpnr, verilator, ...) is not installed."""


def require(cond, msg):
    """Raise NmaccelError(msg) unless cond (Gemmini-style require)."""
    if not cond:
        raise NmaccelError(msg)


class ToolFailedError(NmaccelError):
    """An external tool ran and failed (not the user's input): the CLI prints the one-line
    message, then the tool's log tail, and exits 1."""

    def __init__(self, msg, log_tail=""):
        super().__init__(msg)
        self.log_tail = log_tail


def available_memory() -> int:
    """Bytes of memory this process may still allocate (MemAvailable, else physical pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def require_memory(nbytes, what, fix, fraction=0.5):
    """Refuse, with the estimate, work whose arrays need more than `fraction` of available memory."""
    avail = available_memory()
    if nbytes > fraction * avail:
        raise NmaccelError(f"{what} needs about {_human(nbytes)} of memory, {_human(avail)} is available: {fix}")


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
