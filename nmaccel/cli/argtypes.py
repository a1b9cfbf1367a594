"""argparse types and parser for the one CLI error contract: a bad number is refused at parse
time with one line naming the fix (exit 2), never accepted silently."""
import argparse
import math
import sys

from nmaccel.arch.config import M_GROUP_MAX, HostLink
from nmaccel.errors import NmaccelError


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one stderr line (no usage dump), exit 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}; see `{self.prog} --help`\n")
        sys.exit(2)


def _int(text):
    try:
        return int(text, 0) if text.strip().lower().startswith(("0x", "0b", "0o")) else int(text)
    except (ValueError, AttributeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def int_range(lo=None, hi=None, what="value"):
    """An argparse type: an integer in [lo, hi] (either bound optional)."""
    def parse(text):
        v = _int(text)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            span = (f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"in {lo}..{hi}")
            raise argparse.ArgumentTypeError(f"{what} {v} out of range: use an integer {span}")
        return v
    parse.__name__ = what
    return parse


def positive_float(what="value"):
    """An argparse type: a finite float > 0 (rejects nan, inf, 0, negatives)."""
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"{what} {text} must be a finite number > 0")
        return v
    parse.__name__ = what
    return parse


seed = int_range(0, 2 ** 63 - 1, "seed")
positive = int_range(1, None, "count")
non_negative = int_range(0, None, "value")


def _m_max(text):
    return int_range(2, M_GROUP_MAX, "m_max (largest N:M group the packed format and hardware support)")(text)


m_max = _m_max


def host_link(text):
    """An argparse type: a HostLink pattern 'in=ON/PERIOD,out=ON/PERIOD' (or 'ideal')."""
    try:
        return HostLink.parse(text)
    except NmaccelError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
