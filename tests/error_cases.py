"""Bad inputs and faults through the CLI, and the contract each must keep (issue 14).

Shared by tests/test_error_matrix.py (CI) and benchmarks/error_matrix.py (which also measures
an older checkout: it imports whichever nmaccel is on PYTHONPATH).

Each case runs `nmaccel.cli.main(argv)` in a forked child of an already-imported process (fast,
and an uncaught exception prints a traceback exactly as the console script would), with a
timeout. The contract checked:
  rc        exit code as expected (2 user error, 0 for the cases that must succeed);
  one_line  an error is exactly one stderr line (no usage dump);
  traceback no "Traceback" anywhere;
  files     every file the user had is byte-identical and keeps its kind (FIFO, char device,
            symlink), no file appears except the declared output (so no temp file is left);
  timeout   the command ends within its time limit.
"""
from __future__ import annotations

import io
import json
import os
import signal
import stat
import struct
import sys
import threading
import time
import traceback
import zlib
from dataclasses import dataclass, field

import numpy as np

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
LONG = "n" * 300


@dataclass
class Case:
    id: str
    argv: list
    rc: int = 2
    outputs: tuple = ()       # paths (relative to the case dir) that may be written (success cases)
    fifo_reader: str = None   # relative FIFO path the parent reads while the command runs
    check: object = None      # extra check(d) -> str | None (a violation)
    timeout: float = 120.0
    umask: int = 0o022


def _char_device(d, name, minor):
    """A char device to write to: a private mknod of /dev/null (1,3) or /dev/full (1,7) when root
    (so a broken writer cannot break the machine's /dev), else the real one."""
    if IS_ROOT:
        p = os.path.join(d, name)
        os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
        return p
    return f"/dev/{name}"


def make_files(d):
    """The user's files every case starts with."""
    rng = np.random.default_rng(14)
    w = rng.standard_normal((16, 32)).astype(np.float32)
    np.save(os.path.join(d, "w.npy"), w)
    np.save(os.path.join(d, "w1.npy"), w[0])
    np.save(os.path.join(d, "w3.npy"), w.reshape(2, 8, 32))
    np.save(os.path.join(d, "wc.npy"), w.astype(np.complex64))
    np.save(os.path.join(d, "ws.npy"), np.array([["a", "b"], ["c", "d"]]))
    np.save(os.path.join(d, "wb.npy"), w > 0)
    np.save(os.path.join(d, "wobj.npy"), np.array([[1, None]], dtype=object), allow_pickle=True)
    np.save(os.path.join(d, "w0.npy"), np.zeros((0, 0), np.float32))
    nan = w.copy()
    nan[0, 0] = np.nan
    np.save(os.path.join(d, "nan.npy"), nan)
    np.save(os.path.join(d, "calib.npy"), rng.standard_normal((8, 32)).astype(np.float32))
    np.save(os.path.join(d, "calib_bad.npy"), rng.standard_normal((8, 7)).astype(np.float32))
    np.save(os.path.join(d, "calib_c.npy"), rng.standard_normal((8, 32)).astype(np.complex64))
    with open(os.path.join(d, "calib.txt"), "w") as f:
        f.write("0.1 0.2 0.3\n")
    raw = open(os.path.join(d, "w.npy"), "rb").read()
    open(os.path.join(d, "trunc.npy"), "wb").write(raw[:100])
    # a .npy header claiming 2**40 x 2**20 floats in a 200-byte file
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1048576), }"
    hdr = hdr + " " * (118 - len(hdr)) + "\n"
    open(os.path.join(d, "huge.npy"), "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    open(os.path.join(d, "w.bin"), "wb").write(b"\x00" * 64)
    open(os.path.join(d, "empty.nmpack"), "wb").write(b"")
    from safetensors.numpy import save_file
    save_file({"a.weight": w, "b.weight": w[:8]}, os.path.join(d, "two.safetensors"))
    open(os.path.join(d, "garbage.safetensors"), "wb").write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    open(os.path.join(d, "garbage.gguf"), "wb").write(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    from nmaccel.pack.format import PackedWeights  # noqa: F401 (same module before and after)
    from nmaccel.pack.api import pack_weights
    packed = pack_weights(w, n_keep=2, m_group=4, bits=4, group_size=16).to_bytes()
    open(os.path.join(d, "packed.nmpack"), "wb").write(packed)
    open(os.path.join(d, "trunc.nmpack"), "wb").write(packed[:len(packed) // 2])
    bad = bytearray(packed)
    bad[len(bad) // 2] ^= 0x40
    open(os.path.join(d, "crc.nmpack"), "wb").write(bytes(bad))
    open(os.path.join(d, "huge.nmpack"), "wb").write(_nmpack_with_header(packed, out_features=1 << 40))
    open(os.path.join(d, "garbage.v"), "w").write("this is not verilog\n")
    os.mkdir(os.path.join(d, "userdir"))
    open(os.path.join(d, "userdir", "thesis.tex"), "w").write("do not delete\n")
    os.symlink("w.npy", os.path.join(d, "link_to_input.nmpack"))
    os.link(os.path.join(d, "w.npy"), os.path.join(d, "hardlink_to_input.nmpack"))
    open(os.path.join(d, "target.nmpack"), "wb").write(b"old target\n")
    os.symlink("target.nmpack", os.path.join(d, "link.nmpack"))
    os.mkfifo(os.path.join(d, "fifo"))
    _char_device(d, "null", 3)
    _char_device(d, "full", 7)


def _nmpack_with_header(packed: bytes, **changes) -> bytes:
    from nmaccel.pack.format import MAGIC
    head = len(MAGIC) + 6
    (hlen,) = struct.unpack("<I", packed[len(MAGIC) + 2:head])
    h = json.loads(packed[head:head + hlen])
    h.update(changes)
    hdr = json.dumps(h).encode()
    body = MAGIC + packed[len(MAGIC):len(MAGIC) + 2] + struct.pack("<I", len(hdr)) + hdr + packed[head + hlen:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def _dev(name):
    return f"{{d}}/{name}" if IS_ROOT else f"/dev/{name}"


def _mode_is(rel, mode):
    def check(d):
        got = stat.S_IMODE(os.stat(os.path.join(d, rel)).st_mode)
        return None if got == mode else f"{rel} created mode {oct(got)}, umask wants {oct(mode)}"
    return check


def _target_written(d):
    p = os.path.join(d, "target.nmpack")
    return None if open(p, "rb").read(4) != b"old " else "symlink target not written"


P = ["pack", "{d}/w.npy"]
O = ["-o", "{d}/out.nmpack"]
S = ["sim", "--backend", "golden"]
E = ["export", "--block", "pe", "--rows", "1", "--cols", "1"]
Y = ["synth", "--target", "ecp5", "--block", "pe"]

CASES = [
    # ---- pack: outputs that must never be destroyed ----------------------------------------
    Case("pack-o-own-input", ["pack", "{d}/w.npy", "-o", "{d}/w.npy"]),
    Case("pack-o-symlink-to-input", P + ["-o", "{d}/link_to_input.nmpack"]),
    Case("pack-o-hardlink-of-input", P + ["-o", "{d}/hardlink_to_input.nmpack"]),
    Case("pack-o-symlink-writes-target", P + ["-o", "{d}/link.nmpack"], rc=0,
         outputs=("target.nmpack",), check=_target_written),
    Case("pack-o-fifo-streamed", P + ["-o", "{d}/fifo"], rc=0, outputs=("fifo",), fifo_reader="fifo"),
    Case("pack-o-char-device", P + ["-o", _dev("null")], rc=0, outputs=("null",)),
    Case("pack-new-file-umask", P + O, rc=0, outputs=("out.nmpack",), check=_mode_is("out.nmpack", 0o644)),
    Case("pack-new-file-umask-027", P + O, rc=0, outputs=("out.nmpack",), umask=0o027,
         check=_mode_is("out.nmpack", 0o640)),
    # ---- pack: output paths ------------------------------------------------------------------
    Case("pack-o-missing-dir", P + ["-o", "{d}/missing/out.nmpack"]),
    Case("pack-o-directory", P + ["-o", "{d}"]),
    Case("pack-o-readonly-fs", P + ["-o", "/proc/nmaccel_out.nmpack"]),
    Case("pack-o-name-too-long", P + ["-o", "{d}/" + LONG + ".nmpack"]),
    Case("pack-o-disk-full", P + ["-o", _dev("full")]),
    Case("pack-o-empty", P + ["-o", ""]),
    Case("pack-no-output", P),
    # ---- pack: weights ----------------------------------------------------------------------
    Case("pack-string-dtype", ["pack", "{d}/ws.npy"] + O),
    Case("pack-complex-dtype", ["pack", "{d}/wc.npy"] + O),
    Case("pack-bool-dtype", ["pack", "{d}/wb.npy"] + O),
    Case("pack-object-pickle", ["pack", "{d}/wobj.npy"] + O),
    Case("pack-1d", ["pack", "{d}/w1.npy"] + O),
    Case("pack-3d", ["pack", "{d}/w3.npy"] + O),
    Case("pack-empty-array", ["pack", "{d}/w0.npy"] + O),
    Case("pack-nan", ["pack", "{d}/nan.npy"] + O),
    Case("pack-truncated-npy", ["pack", "{d}/trunc.npy"] + O),
    Case("pack-huge-npy-header", ["pack", "{d}/huge.npy"] + O),
    Case("pack-missing-weights", ["pack", "{d}/nope.npy"] + O),
    Case("pack-unknown-suffix", ["pack", "{d}/w.bin"] + O),
    Case("pack-weights-directory", ["pack", "{d}"] + O),
    Case("pack-already-packed", ["pack", "{d}/packed.nmpack", "--nm", "2:4"] + O),
    Case("pack-two-tensors-no-layer", ["pack", "{d}/two.safetensors"] + O),
    Case("pack-unknown-layer", ["pack", "{d}/two.safetensors", "--layer", "nope"] + O),
    Case("pack-garbage-safetensors", ["pack", "{d}/garbage.safetensors"] + O),
    Case("pack-garbage-gguf", ["pack", "{d}/garbage.gguf"] + O),
    # ---- pack: options -----------------------------------------------------------------------
    Case("pack-nm-inverted", P + ["--nm", "3:2"] + O),
    Case("pack-nm-text", P + ["--nm", "two:four"] + O),
    Case("pack-nm-too-wide", P + ["--nm", "2:64"] + O),
    Case("pack-nm-zero", P + ["--nm", "0:4"] + O),
    Case("pack-bits-3", P + ["--bits", "3"] + O),
    Case("pack-bits-negative", P + ["--bits", "-4"] + O),
    Case("pack-bits-text", P + ["--bits", "four"] + O),
    Case("pack-group-negative", P + ["--group-size", "-1"] + O),
    Case("pack-group-not-multiple", P + ["--group-size", "6"] + O),
    Case("pack-quantizer-unknown", P + ["--quantizer", "gptq"] + O),
    Case("pack-method-unknown", P + ["--method", "obs"] + O),
    Case("pack-calibration-text", P + ["--method", "wanda", "--calibration", "{d}/calib.txt"] + O),
    Case("pack-calibration-directory", P + ["--method", "wanda", "--calibration", "{d}"] + O),
    Case("pack-calibration-missing", P + ["--method", "wanda", "--calibration", "{d}/nope.npy"] + O),
    Case("pack-calibration-shape", P + ["--method", "wanda", "--calibration", "{d}/calib_bad.npy"] + O),
    Case("pack-calibration-complex", P + ["--method", "wanda", "--calibration", "{d}/calib_c.npy"] + O),
    Case("pack-calibration-pickle", P + ["--method", "wanda", "--calibration", "{d}/wobj.npy"] + O),
    # ---- inspect -----------------------------------------------------------------------------
    Case("inspect-directory", ["inspect", "{d}"]),
    Case("inspect-missing", ["inspect", "{d}/nope.nmpack"]),
    Case("inspect-not-packed", ["inspect", "{d}/w.npy"]),
    Case("inspect-truncated", ["inspect", "{d}/trunc.nmpack"]),
    Case("inspect-checksum", ["inspect", "{d}/crc.nmpack"]),
    Case("inspect-empty", ["inspect", "{d}/empty.nmpack"]),
    Case("inspect-huge-dims", ["inspect", "{d}/huge.nmpack"]),
    Case("inspect-char-device", ["inspect", _dev("null")]),
    # ---- storage -----------------------------------------------------------------------------
    Case("storage-list-missing", ["storage", "--list", "{d}/nope.safetensors"]),
    Case("storage-list-directory", ["storage", "--list", "{d}"]),
    Case("storage-list-string-dtype", ["storage", "--list", "{d}/ws.npy"]),
    Case("storage-string-dtype", ["storage", "{d}/ws.npy"]),
    Case("storage-1d", ["storage", "{d}/w1.npy"]),
    Case("storage-garbage-safetensors", ["storage", "{d}/garbage.safetensors"]),
    Case("storage-garbage-gguf", ["storage", "{d}/garbage.gguf"]),
    Case("storage-unknown-layer", ["storage", "{d}/two.safetensors", "--layer", "nope"]),
    # ---- sim ---------------------------------------------------------------------------------
    Case("sim-seed-negative", S + ["--seed", "-1"]),
    Case("sim-seed-text", S + ["--seed", "x"]),
    Case("sim-tokens-zero", S + ["--tokens", "0"]),
    Case("sim-tokens-negative", S + ["--tokens", "-5"]),
    Case("sim-tokens-huge", S + ["--tokens", str(10 ** 12)]),
    Case("sim-bits-3", S + ["--bits", "3"]),
    Case("sim-nm-text", S + ["--nm", "2:x"]),
    Case("sim-array-zero", S + ["--array", "0x4"]),
    Case("sim-array-form", S + ["--array", "4"]),
    Case("sim-m-max-1000", S + ["--m-max", "1000"]),
    Case("sim-m-max-zero", S + ["--m-max", "0"]),
    Case("sim-n-max-negative", S + ["--n-max", "-1"]),
    Case("sim-backend-unknown", ["sim", "--backend", "spice"]),
    Case("sim-weights-missing", S + ["--weights", "{d}/nope.nmpack"]),
    Case("sim-weights-truncated", S + ["--weights", "{d}/trunc.nmpack"]),
    Case("sim-weights-string-dtype", S + ["--weights", "{d}/ws.npy"]),
    Case("sim-packed-with-layer", S + ["--weights", "{d}/packed.nmpack", "--layer", "x"]),
    Case("sim-packed-with-nm", S + ["--weights", "{d}/packed.nmpack", "--nm", "4:8"]),
    Case("sim-vcd-missing-dir", ["sim", "--weights", "{d}/packed.nmpack", "--vcd", "{d}/missing/t.vcd"]),
    Case("sim-vcd-directory", ["sim", "--weights", "{d}/packed.nmpack", "--vcd", "{d}"]),
    Case("sim-vcd-is-input", ["sim", "--weights", "{d}/packed.nmpack", "--vcd", "{d}/packed.nmpack"]),
    Case("sim-vcd-wrong-backend", S + ["--vcd", "{d}/t.vcd"]),
    Case("sim-simulator-top", S + ["--simulator", "fast"]),
    # ---- export ------------------------------------------------------------------------------
    Case("export-o-is-file", E + ["-o", "{d}/w.npy"]),
    Case("export-o-missing-parent", E + ["-o", "{d}/missing/sub"]),
    Case("export-o-user-dir", E + ["-o", "{d}/userdir"]),
    Case("export-o-readonly-fs", E + ["-o", "/proc/nmaccel_export"]),
    Case("export-o-holds-input", E + ["--packed", "{d}/packed.nmpack", "-o", "{d}"]),
    Case("export-packed-missing", E + ["--packed", "{d}/nope.nmpack", "-o", "{d}/out"]),
    Case("export-packed-truncated", E + ["--packed", "{d}/trunc.nmpack", "-o", "{d}/out"]),
    Case("export-word-bits-7", E + ["--packed", "{d}/packed.nmpack", "--word-bits", "7", "-o", "{d}/out"]),
    Case("export-rows-zero", ["export", "--block", "pe", "--rows", "0", "-o", "{d}/out"]),
    Case("export-m-max-1000", ["export", "--block", "pe", "--m-max", "1000", "-o", "{d}/out"]),
    Case("export-n-max-negative", ["export", "--block", "pe", "--n-max", "-2", "-o", "{d}/out"]),
    Case("export-builder-missing", ["export", "--builder", "nosuch_mod:fn", "-o", "{d}/out"]),
    Case("export-builder-form", ["export", "--builder", "nocolon", "-o", "{d}/out"]),
    Case("export-modes-unknown", E + ["--modes", "int3", "-o", "{d}/out"]),
    Case("export-block-unknown", ["export", "--block", "gpu", "-o", "{d}/out"]),
    Case("export-new-dir", E + ["-o", "{d}/out"], rc=0, outputs=("out",)),
    # ---- synth (all refused before a tool starts) -------------------------------------------
    Case("synth-freq-negative", Y + ["--freq", "-5"]),
    Case("synth-freq-nan", Y + ["--freq", "nan"]),
    Case("synth-freq-inf", Y + ["--freq", "inf"]),
    Case("synth-freq-zero", Y + ["--freq", "0"]),
    Case("synth-device-unknown", Y + ["--device", "xc7a35t"]),
    Case("synth-device-other-target", ["synth", "--target", "ice40", "--block", "pe", "--device", "85k"]),
    Case("synth-target-unknown", ["synth", "--target", "virtex", "--block", "pe"]),
    Case("synth-verilog-missing", ["synth", "--target", "ecp5", "--verilog", "{d}/nope.v"]),
    Case("synth-verilog-directory", ["synth", "--target", "ecp5", "--verilog", "{d}"]),
    Case("synth-verilog-garbage", ["synth", "--target", "ecp5", "--verilog", "{d}/garbage.v"]),
    Case("synth-m-max-1000", ["synth", "--target", "ecp5", "--block", "pe", "--m-max", "1000"]),
    Case("synth-rows-negative", ["synth", "--target", "ecp5", "--block", "pe", "--rows", "-1"]),
    # ---- top level ---------------------------------------------------------------------------
    Case("no-command", []),
    Case("unknown-command", ["frobnicate"]),
    Case("unknown-option", ["pack", "--frobnicate"]),
]


# ---- running a case ----------------------------------------------------------------------------
def _entry(path):
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return ("dir",)
    if stat.S_ISFIFO(st.st_mode):
        return ("fifo",)
    if stat.S_ISCHR(st.st_mode):
        return ("chr", st.st_rdev)
    with open(path, "rb") as f:
        return ("file", zlib.crc32(f.read()), stat.S_IMODE(st.st_mode))


def snapshot(d) -> dict:
    snap = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = os.path.join(root, name)
            snap[os.path.relpath(p, d)] = _entry(p)
    for dev in ("/dev/null", "/dev/full"):
        snap[dev] = _entry(dev)
    return snap


def _fill(argv, d):
    return [a.replace("{d}", d) for a in argv]


def run_cli(argv, timeout, umask=0o022):
    """(rc, stdout, stderr, timed_out) of nmaccel.cli.main(argv) in a forked child."""
    import tempfile
    out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:       # child
        rc = 1
        try:
            os.dup2(out_f.fileno(), 1)
            os.dup2(err_f.fileno(), 2)
            sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
            sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), write_through=True)
            os.umask(umask)
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            from nmaccel.cli import main
            try:
                rc = main(argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            rc = 0 if rc is None else int(rc)
        except BaseException:
            traceback.print_exc()      # what the console script would show
            rc = 1
        finally:
            with_flush = (sys.stdout, sys.stderr)
            for s in with_flush:
                try:
                    s.flush()
                except Exception:
                    pass
            os._exit(rc)
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            timed_out, status = True, 9
            break
        time.sleep(0.02)
    rc = os.waitstatus_to_exitcode(status) if not timed_out else -9
    out_f.seek(0)
    err_f.seek(0)
    return rc, out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace"), timed_out


def run_case(case: Case, d: str) -> dict:
    """Run one case in the prepared directory `d`; returns {violations: [...], rc, stderr}."""
    make_files(d)
    before = snapshot(d)
    reader = None
    got = []
    if case.fifo_reader:
        fifo = os.path.join(d, case.fifo_reader)
        reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
        reader.start()
    rc, out, err, timed_out = run_cli(_fill(case.argv, d), case.timeout, case.umask)
    if reader is not None:
        if reader.is_alive():      # the command never opened the FIFO: release the reader
            fd = os.open(os.path.join(d, case.fifo_reader), os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        reader.join(5)
    after = snapshot(d)
    v = []
    if timed_out:
        v.append("timeout")
    if "Traceback" in err or "Traceback" in out:
        v.append("traceback")
    if rc != case.rc and not timed_out:
        v.append(f"rc {rc} != {case.rc}")
    if "e.g. )" in err:
        v.append("misleading message (empty example)")
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    if case.rc != 0 and rc != 0 and len(lines) != 1:
        v.append(f"{len(lines)} stderr lines")
    allowed = {o for o in case.outputs}
    for rel, ent in before.items():
        top = rel.split(os.sep)[0]
        if rel not in after:
            v.append(f"destroyed {rel}")
        elif top in allowed:
            if after[rel][0] != ent[0] and not (ent[0] == "dir"):
                v.append(f"{rel} changed kind {ent[0]} -> {after[rel][0]}")
        elif after[rel] != ent:
            v.append(f"changed {rel}" + (f" ({ent[0]} -> {after[rel][0]})" if after[rel][0] != ent[0] else ""))
    for rel in after:
        if rel not in before and rel.split(os.sep)[0] not in allowed:
            v.append(f"left {rel}")
    if case.fifo_reader and case.rc == 0 and not (got and got[0]):
        v.append("nothing streamed into the FIFO")
    if case.check is not None and rc == case.rc == 0:
        msg = case.check(d)
        if msg:
            v.append(msg)
    return {"id": case.id, "rc": rc, "violations": v, "stderr": err.strip()[-400:]}
