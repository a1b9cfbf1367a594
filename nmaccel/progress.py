"""Progress bars: one rule for every command.

A bar is drawn (tqdm, on stderr) only when the user did not ask for quiet (`--quiet` / `-q`, or
a library call with `progress=False`) and stdout is a terminal. `nmaccel ... > log 2>&1`,
pipes, CI and `--json` runs therefore get no bars; every tqdm in nmaccel goes through `bar`.
"""
import sys


def enabled(quiet=False, stream=None):
    """True when progress bars should be drawn: not `quiet` and `stream` (default: the current
    sys.stdout) is a TTY."""
    if quiet:
        return False
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):     # no isatty, or a closed stream
        return False


def bar(iterable=None, *, quiet=False, **kwargs):
    """A tqdm bar on stderr, disabled by the rule of `enabled(quiet)`; tqdm's keywords pass through."""
    from tqdm import tqdm
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, disable=not enabled(quiet), **kwargs)
