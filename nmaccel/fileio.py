"""Atomic file writes: a temporary file in the target's folder, then os.replace (no partial files)."""
import os
import tempfile


def atomic_write(path, data):
    """Write bytes or str to `path` atomically; on any failure the target is untouched."""
    path = os.fspath(path)
    mode = "wb" if isinstance(data, (bytes, bytearray)) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
