"""The one output writer: every file or directory nmaccel writes goes through here.

Files (`write_output`, `open_output`):
- a symlink is resolved and its target is written (the link stays a link);
- a FIFO or character device (``-o /dev/null``) is streamed into, never renamed over;
- any other existing non-regular path (directory, block device, socket) is refused;
- an output that is (samefile) one of the command's inputs is refused;
- a regular file is written to a temporary file in the same directory, fsynced, renamed over the
  target (old output whole until then), and the directory fsynced; a new file gets the user's
  umask (an existing one keeps its mode);
- on any error, SIGTERM or SIGHUP the temporary file is removed; temporaries of a process that
  was SIGKILLed are swept by the next write to the same path.

Directories (`output_dir`): written into a temporary sibling directory, the manifest written last,
then renamed into place in one step (renameat2 RENAME_EXCHANGE when the target exists). An existing
directory is only replaced when it is empty or holds exactly what an earlier nmaccel run wrote
(its manifest lists every file); anything else of the user's is refused, never deleted.

OS errors become NmaccelError with one line naming the fix (missing directory, read-only, disk
full, name too long, ...).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npf

from nmaccel.errors import NmaccelError

MANIFEST_NAME = "nmaccel-manifest.json"
_TMP_TAG = ".nmtmp"
_UMASK_LOCK = threading.Lock()


class Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP turned into an exception so that every `finally` runs (temp files removed)."""

    def __init__(self, signum):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def cleanup_on_signals():
    """While active, SIGTERM and SIGHUP raise Terminated (only where they still have the default
    action and only in the main thread; nested use is a no-op)."""
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                installed[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, old in installed.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _signals_blocked():
    sigs = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def current_umask():
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def os_error_message(exc: OSError, path, what="write") -> str:
    """One line naming the fix for an OSError on `path`."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path)) or "/"
    fixes = {
        errno.ENOENT: f"directory {parent!r} does not exist: create it first or choose another path",
        errno.ENOTDIR: f"a parent of {path!r} is not a directory: choose another path",
        errno.EACCES: "permission denied: choose a writable location",
        errno.EPERM: "operation not permitted: choose a writable location",
        errno.EROFS: "read-only file system: choose a writable location",
        errno.ENOSPC: "no space left on device: free some space or choose another disk",
        errno.EDQUOT: "disk quota exceeded: free some space or choose another disk",
        errno.ENAMETOOLONG: "file name too long: choose a shorter name",
        errno.EISDIR: "is a directory: pass a file name",
        errno.EFBIG: "file too large for this file system: choose another disk",
    }
    if exc.errno == errno.ENOENT and os.path.isdir(parent):
        fixes[errno.ENOENT] = f"files cannot be created in {parent!r}: choose a writable location"
    fix = fixes.get(exc.errno, f"{exc.strerror or exc}: check the path")
    return f"cannot {what} {path!r}: {fix}"


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def resolve_output(path, inputs=()) -> tuple[str, str]:
    """(real path to write, kind) with kind 'file' (regular or new) or 'stream' (FIFO/char device).

    Raises NmaccelError for a directory, a block device, a missing parent directory, a name too
    long, or an output that is one of `inputs`.
    """
    path = os.fspath(path)
    if not path:
        raise NmaccelError("empty output path: pass a file name")
    real = os.path.realpath(path)
    for inp in inputs:
        if inp is not None and _same_file(real, os.fspath(inp)):
            raise NmaccelError(f"output {path!r} is the input file {os.fspath(inp)!r}: "
                               "choose another output name, inputs are never overwritten")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise NmaccelError(os_error_message(exc, path)) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise NmaccelError(f"output {path!r} is a directory: pass a file name inside it")
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
            return real, "stream"
        if not stat.S_ISREG(st.st_mode):
            raise NmaccelError(f"output {path!r} is not a regular file (block device or socket): "
                               "choose a file name")
        return real, "file"
    parent = os.path.dirname(real) or "."
    if len(os.path.basename(real).encode()) > 255 - 40:     # room for the temporary's suffix
        raise NmaccelError(f"cannot write {path!r}: file name too long: choose a shorter name")
    if not os.path.isdir(parent):
        raise NmaccelError(f"cannot write {path!r}: directory {parent!r} does not exist: "
                           "create it first or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NmaccelError(f"cannot write {path!r}: directory {parent!r} is not writable: "
                           "choose a writable location")
    return real, "file"


def check_output(path, inputs=()):
    """Fail early (before any expensive work) if `path` cannot be written; returns the path."""
    resolve_output(path, inputs)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tmp_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}."


def sweep_stale_temps(target) -> list:
    """Remove temporaries `.<name>.<pid>.*.nmtmp` next to `target` left by a dead (SIGKILLed)
    process; returns the removed paths."""
    target = os.fspath(target)
    parent, name = os.path.split(os.path.abspath(target))
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    head = f".{name}."
    for e in entries:
        if not (e.startswith(head) and e.endswith(_TMP_TAG)):
            continue
        pid_text = e[len(head):].split(".", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        p = os.path.join(parent, e)
        with contextlib.suppress(OSError):
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
            removed.append(p)
    return removed


def _fsync_dir(path):
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def open_output(path, mode="wb", inputs=()):
    """Context manager yielding a file object to write `path` by the rules in the module doc."""
    if mode not in ("wb", "w"):
        raise ValueError(f"open_output mode {mode!r}: use 'wb' or 'w'")
    real, kind = resolve_output(path, inputs)
    with cleanup_on_signals():
        if kind == "stream":
            try:
                with open(real, mode) as f:
                    yield f
            except OSError as exc:
                raise NmaccelError(os_error_message(exc, path)) from None
            return
        parent = os.path.dirname(real) or "."
        sweep_stale_temps(real)
        tmp = None
        try:
            try:
                fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(os.path.basename(real)), suffix=_TMP_TAG,
                                           dir=parent)
            except OSError as exc:
                raise NmaccelError(os_error_message(exc, path)) from None
            try:
                old_mode = stat.S_IMODE(os.stat(real).st_mode)
            except FileNotFoundError:
                old_mode = 0o666 & ~current_umask()
            try:
                with os.fdopen(fd, mode) as f:
                    yield f
                    f.flush()
                    os.fchmod(f.fileno(), old_mode)
                    os.fsync(f.fileno())
                os.replace(tmp, real)
                tmp = None
            except OSError as exc:
                raise NmaccelError(os_error_message(exc, path)) from None
            _fsync_dir(parent)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def write_output(path, data, inputs=()):
    """Write bytes or str to `path` (see module doc); returns `path`."""
    mode = "wb" if isinstance(data, (bytes, bytearray, memoryview)) else "w"
    with open_output(path, mode, inputs) as f:
        f.write(data)
    return path


def atomic_write(path, data, inputs=()):
    """Alias of write_output (older name)."""
    return write_output(path, data, inputs)


# ---- output directories ----------------------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a, b) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), a)


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _listing(root: Path) -> list:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def read_manifest(directory) -> dict | None:
    """The manifest an earlier output_dir wrote in `directory`, or None."""
    p = Path(directory) / MANIFEST_NAME
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def _replaceable(directory: Path) -> bool:
    """True when `directory` is empty or holds exactly the files its nmaccel manifest lists."""
    present = _listing(directory)
    if not present:
        return True
    man = read_manifest(directory)
    return man is not None and set(present) == set(man["files"]) | {MANIFEST_NAME}


def resolve_output_dir(path, inputs=()) -> Path:
    """Check an output directory path; returns its real path (refusals as NmaccelError)."""
    path = os.fspath(path)
    if not path:
        raise NmaccelError("empty output directory: pass a directory name")
    real = Path(os.path.realpath(path))
    for inp in inputs:
        if inp is None:
            continue
        inp_real = Path(os.path.realpath(os.fspath(inp)))
        if inp_real == real or real in inp_real.parents:
            raise NmaccelError(f"output directory {path!r} contains the input {os.fspath(inp)!r}: "
                               "choose another output directory")
    if real.exists() and not real.is_dir():
        raise NmaccelError(f"output {path!r} exists and is not a directory: choose a directory name")
    if real.is_dir() and not _replaceable(real):
        raise NmaccelError(f"output directory {path!r} holds files nmaccel did not write: "
                           "choose a new or empty directory (nothing was changed)")
    if len(real.name.encode()) > 255 - 40:
        raise NmaccelError(f"cannot write {path!r}: file name too long: choose a shorter name")
    if not real.parent.is_dir():
        raise NmaccelError(f"cannot write {path!r}: directory {str(real.parent)!r} does not exist: "
                           "create it first or choose another path")
    if not os.access(real.parent, os.W_OK | os.X_OK):
        raise NmaccelError(f"cannot write {path!r}: directory {str(real.parent)!r} is not writable: "
                           "choose a writable location")
    return real


def check_output_dir(path, inputs=()):
    resolve_output_dir(path, inputs)
    return path


def write_manifest(directory, extra=None):
    """Write MANIFEST_NAME listing every file of `directory` (size, sha256); call it last."""
    directory = Path(directory)
    files = {rel: {"bytes": (directory / rel).stat().st_size, "sha256": sha256_file(directory / rel)}
             for rel in _listing(directory) if rel != MANIFEST_NAME}
    doc = {"format": "nmaccel-output-dir", "version": 1, "files": files}
    if extra:
        doc.update(extra)
    write_output(directory / MANIFEST_NAME, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return directory / MANIFEST_NAME


@contextlib.contextmanager
def output_dir(path, inputs=(), manifest_extra=None):
    """Context manager yielding a temporary directory; on success it becomes `path` in one rename
    with a manifest written last. On error or SIGTERM/SIGHUP the temporary is removed and the old
    directory stays as it was."""
    real = resolve_output_dir(path, inputs)
    with cleanup_on_signals():
        sweep_stale_temps(real)
        tmp = old = None
        try:
            try:
                tmp = tempfile.mkdtemp(prefix=_tmp_prefix(real.name), suffix=_TMP_TAG, dir=real.parent)
                os.chmod(tmp, 0o777 & ~current_umask())
            except OSError as exc:
                raise NmaccelError(os_error_message(exc, path)) from None
            yield Path(tmp)
            try:
                write_manifest(tmp, manifest_extra)
                for dirpath, _, _ in os.walk(tmp):
                    _fsync_dir(dirpath)
                if real.is_dir():
                    if not _exchange(tmp, real):          # no renameat2: two renames
                        old = tempfile.mkdtemp(prefix=_tmp_prefix(real.name), suffix=_TMP_TAG,
                                               dir=real.parent)
                        os.rename(real, os.path.join(old, "old"))
                        os.rename(tmp, real)
                        tmp = old
                    # after the swap `tmp` names the old directory
                else:
                    os.rename(tmp, real)
                    tmp = None
            except OSError as exc:
                raise NmaccelError(os_error_message(exc, path)) from None
            _fsync_dir(real.parent)
        finally:
            if tmp is not None:      # signals held: a SIGTERM here must not leave half a tree
                with _signals_blocked():
                    shutil.rmtree(tmp, ignore_errors=True)


def safe_member_path(root, rel) -> Path:
    """`root / rel` for a relative path read from an untrusted manifest: absolute paths, `..`
    components and symlinks leading outside `root` are refused."""
    root = Path(os.path.realpath(root))
    rel_s = os.fspath(rel)
    if not rel_s or os.path.isabs(rel_s) or "\x00" in rel_s or any(part == ".." for part in Path(rel_s).parts):
        raise NmaccelError(f"manifest path {rel_s!r} escapes its directory: "
                           "re-create the directory with nmaccel (only plain relative paths are read)")
    full = Path(os.path.realpath(root / rel_s))
    if full != root and root not in full.parents:
        raise NmaccelError(f"manifest path {rel_s!r} leads outside {str(root)!r} (symlink): "
                           "re-create the directory with nmaccel")
    return full


def safe_name(name: str, max_len=120) -> str:
    """A file name derived from an untrusted tensor name: [A-Za-z0-9._-] only, no leading dot,
    bounded length, never empty; distinct inputs keep distinct outputs via a short hash suffix
    when anything was changed."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:max_len]
    if clean != name or not clean:
        clean = f"{clean or 'tensor'}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return clean


# ---- untrusted input files -------------------------------------------------------------------
REAL_KINDS = "fiu"        # numpy dtype kinds accepted as weights/activations: real floats, ints
DEFLATE_MAX_RATIO = 1032  # deflate cannot expand more than this: bounds a compressed .npz member


def require_real(arr, what, path):
    """NmaccelError unless `arr` holds real floats or integers (no complex, bool, str, object)."""
    dt = np.asarray(arr).dtype if not hasattr(arr, "dtype") else arr.dtype
    if dt.kind not in REAL_KINDS:
        raise NmaccelError(f"{what} in {os.fspath(path)!r} has dtype {dt}: only real floats or integers "
                           "are accepted, convert it (e.g. numpy .real / .astype(np.float32)) and re-save")


def _read_npy_stream(fp, available: int, what: str):
    """One .npy array from the open binary stream `fp` holding at most `available` bytes: the
    header is checked (real dtype, sane shape, data no larger than the bytes present) before a
    single allocation of exactly the claimed size."""
    try:
        version = npf.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npf.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npf.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:   # numpy's header parser raises ValueError, SyntaxError, tokenize.TokenError, ...
        raise NmaccelError(f"cannot read {what} as .npy ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): "
                           "re-save it with numpy.save") from None
    if dtype.kind not in REAL_KINDS or dtype.hasobject or dtype.fields is not None:
        raise NmaccelError(f"{what} has dtype {dtype}: only real floats or integers are accepted, convert "
                           "it (e.g. numpy .real / .astype(np.float32)) and re-save")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise NmaccelError(f"{what}: corrupt .npy header (shape {shape}): re-save it with numpy.save")
    count = 1
    for d in shape:
        count *= d
    nbytes = count * dtype.itemsize
    left = available - fp.tell()
    if nbytes > left:
        raise NmaccelError(f"{what}: the .npy header claims {shape} {dtype} ({nbytes} bytes) but only "
                           f"{max(left, 0)} bytes follow: the file is truncated or corrupt, re-save it")
    data = fp.read(nbytes)
    if len(data) != nbytes:
        raise NmaccelError(f"{what}: truncated .npy data ({len(data)} of {nbytes} bytes): re-save it")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return (arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)).copy()


def read_npy(path):
    """A .npy file as a numpy array (no pickle, allocation bounded by the file size)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fp:
            return _read_npy_stream(fp, os.fstat(fp.fileno()).st_size, repr(path))
    except IsADirectoryError:
        raise NmaccelError(f"{path!r} is a directory: pass a .npy file") from None
    except OSError as exc:
        raise NmaccelError(os_error_message(exc, path, "read")) from None


def read_npz(path) -> dict:
    """Every array of a .npz file {name: array} (no pickle; each member's allocation bounded by its
    size in the archive, at most DEFLATE_MAX_RATIO x its compressed size)."""
    path = os.fspath(path)
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                if info.compress_type != zipfile.ZIP_STORED and \
                        info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 1024:
                    raise NmaccelError(f"{path!r}: member {name!r} claims {info.file_size} bytes from "
                                       f"{info.compress_size} compressed: corrupt archive, re-save it")
                with z.open(info) as fp:
                    out[name] = _read_npy_stream(fp, info.file_size, f"{path!r} member {name!r}")
    except IsADirectoryError:
        raise NmaccelError(f"{path!r} is a directory: pass a .npz file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError,
            RuntimeError, zlib.error) as exc:
        if isinstance(exc, NmaccelError):
            raise
        raise NmaccelError(f"cannot read {path!r} as .npz ({type(exc).__name__}: {exc}): "
                           "re-save it with numpy.savez") from None
    except OSError as exc:
        raise NmaccelError(os_error_message(exc, path, "read")) from None
    return out
