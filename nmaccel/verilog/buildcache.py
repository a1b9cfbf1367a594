"""A build cache for compiled simulators (Verilator + g++): safe against kills, corruption and
concurrent builds.

- The key covers everything that changes the product: sources, flags, tool versions
  (`cache_key`), the caller passes them all.
- An entry is built in a temporary sibling directory (`.<key>.<pid>.*.nmtmp`), its stamp (sha256
  of every product) written last, then renamed into place: a half build is never an entry.
  SIGTERM/SIGHUP remove the temporary; a SIGKILLed one is swept by the next build.
- On use the stamp is checked against the products; a corrupt entry (no stamp, a product
  missing, changed or truncated) is rebuilt with a one-line notice on stderr.
- An exclusive file lock per key: a second process waits for the first build, then uses it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nmaccel.errors import ToolFailedError
from nmaccel.fileio import _TMP_TAG, cleanup_on_signals, sha256_file, sweep_stale_temps, write_output

STAMP = "nmaccel-stamp.json"


def cache_key(*parts) -> str:
    """20 hex digits of sha256 over every part (sources, flags, tool versions)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def check_entry(entry: Path, products) -> str | None:
    """None if `entry` holds a stamp matching every product, else why not."""
    try:
        stamp = json.loads((entry / STAMP).read_text())
    except FileNotFoundError:
        return "no stamp (interrupted build)"
    except (OSError, ValueError) as exc:
        return f"unreadable stamp ({type(exc).__name__})"
    files = stamp.get("files") if isinstance(stamp, dict) else None
    if not isinstance(files, dict) or set(files) != set(products):
        return "stamp lists other products"
    for rel in products:
        p = entry / rel
        if not p.is_file():
            return f"{rel} missing"
        if sha256_file(p) != files[rel]:
            return f"{rel} changed since it was built"
    return None


@contextlib.contextmanager
def _locked(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def cached_build(root, key, build, products, *, what="build"):
    """(entry directory, cached, build seconds). `build(work_dir)` must create every path in
    `products` (relative) inside work_dir; it runs at most once per key at a time."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key
    with _locked(root / f"{key}.lock"):
        why = check_entry(entry, products) if entry.exists() else "absent"
        if why is None:
            return entry, True, 0.0
        if entry.exists():
            print(f"nmaccel: {what} cache entry {entry} is corrupt ({why}); rebuilding it", file=sys.stderr)
            trash = Path(tempfile.mkdtemp(prefix=f".{key}.{os.getpid()}.", suffix=_TMP_TAG, dir=root))
            os.rename(entry, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        sweep_stale_temps(entry)
        with cleanup_on_signals():
            work = Path(tempfile.mkdtemp(prefix=f".{key}.{os.getpid()}.", suffix=_TMP_TAG, dir=root))
            try:
                t0 = time.perf_counter()
                build(work)
                secs = time.perf_counter() - t0
                missing = [p for p in products if not (work / p).is_file()]
                if missing:
                    raise ToolFailedError(f"{what}: the build finished without {missing}")
                stamp = {"key": key, "what": what, "files": {p: sha256_file(work / p) for p in products}}
                write_output(work / STAMP, json.dumps(stamp, indent=1) + "\n")     # last
                os.rename(work, entry)
                work = None
            finally:
                if work is not None:
                    shutil.rmtree(work, ignore_errors=True)
    return entry, False, secs
