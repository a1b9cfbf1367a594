"""The one output writer (nmaccel.fileio): links, FIFOs, devices, inputs, umask, signals, dirs."""
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from nmaccel import fileio
from nmaccel.errors import NmaccelError


def _temps(d):
    return [p for p in os.listdir(d) if p.endswith(fileio._TMP_TAG)]


def test_new_file_honours_umask(tmp_path):
    old = os.umask(0o027)
    try:
        fileio.write_output(tmp_path / "a.bin", b"xyz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o640
    assert (tmp_path / "a.bin").read_bytes() == b"xyz"


def test_existing_file_keeps_its_mode(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    os.chmod(p, 0o604)
    fileio.write_output(p, "new")
    assert p.read_text() == "new" and stat.S_IMODE(os.stat(p).st_mode) == 0o604


def test_symlink_target_written_link_kept(tmp_path):
    target = tmp_path / "real.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    fileio.write_output(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"


def test_dangling_symlink_creates_target(tmp_path):
    link = tmp_path / "link.bin"
    link.symlink_to(tmp_path / "made.bin")
    fileio.write_output(link, b"1")
    assert link.is_symlink() and (tmp_path / "made.bin").read_bytes() == b"1"


def test_fifo_streamed_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    fileio.write_output(fifo, b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and not _temps(tmp_path)


def test_char_device_streamed():
    before = os.stat("/dev/null")
    fileio.write_output("/dev/null", b"discard")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (before.st_ino, before.st_rdev) == (after.st_ino, after.st_rdev)


@pytest.mark.parametrize("case", ["samefile", "hardlink", "symlink"])
def test_refuses_an_input(tmp_path, case):
    inp = tmp_path / "w.npy"
    inp.write_bytes(b"precious")
    out = {"samefile": inp, "hardlink": tmp_path / "h.npy", "symlink": tmp_path / "s.npy"}[case]
    if case == "hardlink":
        os.link(inp, out)
    elif case == "symlink":
        out.symlink_to(inp)
    with pytest.raises(NmaccelError, match="is the input file"):
        fileio.write_output(out, b"junk", inputs=[inp])
    assert inp.read_bytes() == b"precious" and not _temps(tmp_path)


@pytest.mark.parametrize("case, match", [
    ("missing_dir", "does not exist"), ("is_dir", "is a directory"),
    ("long_name", "too long"), ("readonly", "not writable"), ("empty", "empty output")])
def test_user_errors_one_line(tmp_path, case, match, monkeypatch):
    path = {"missing_dir": tmp_path / "nope" / "x.bin", "is_dir": tmp_path,
            "long_name": tmp_path / ("n" * 300), "readonly": tmp_path / "ro" / "x.bin", "empty": ""}[case]
    if case == "readonly":
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o555)
        if os.access(tmp_path / "ro", os.W_OK):   # root ignores modes: make access() say what a user sees
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda p, m: False if str(p).endswith("ro") else real_access(p, m))
    with pytest.raises(NmaccelError, match=match) as ei:
        fileio.write_output(path, b"x")
    assert "\n" not in str(ei.value)


def test_error_midway_keeps_old_and_removes_temp(tmp_path):
    p = tmp_path / "out.bin"
    p.write_bytes(b"old output")
    with pytest.raises(RuntimeError):
        with fileio.open_output(p) as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert p.read_bytes() == b"old output" and not _temps(tmp_path)


def test_enospc_is_one_line(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    p = tmp_path / "out.bin"
    with pytest.raises(NmaccelError, match="no space left") as ei:
        fileio.write_output(p, b"x")
    assert "\n" not in str(ei.value) and not p.exists() and not _temps(tmp_path)


def test_stale_temp_of_dead_process_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".out.bin.{dead}.abc{fileio._TMP_TAG}"
    stale.write_bytes(b"half")
    live = tmp_path / f".out.bin.{os.getpid()}.abc{fileio._TMP_TAG}"
    live.write_bytes(b"in progress")
    fileio.write_output(tmp_path / "out.bin", b"x")
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_mid_write_removes_temp(tmp_path, sig):
    """A child process writing slowly is signalled mid-write: old output whole, no temp left."""
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    code = textwrap.dedent(f"""
        import signal, sys, time
        from nmaccel import fileio
        # a child of nohup inherits SIGHUP ignored (and fileio rightly leaves it so): start from default
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with fileio.open_output({str(out)!r}) as f:
            f.write(b"partial")
            f.flush()
            print("writing", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == b"writing"
    proc.send_signal(sig)
    proc.wait(20)
    assert proc.returncode != 0
    assert out.read_bytes() == b"old" and not _temps(tmp_path)


def test_output_dir_new_and_replace(tmp_path):
    d = tmp_path / "exp"
    with fileio.output_dir(d) as t:
        (t / "a.v").write_text("module a; endmodule\n")
    man = json.loads((d / fileio.MANIFEST_NAME).read_text())
    assert set(man["files"]) == {"a.v"} and not _temps(tmp_path)
    with fileio.output_dir(d) as t:                       # an earlier output: replaced whole
        (t / "b.v").write_text("module b; endmodule\n")
    assert sorted(os.listdir(d)) == ["b.v", fileio.MANIFEST_NAME] and not _temps(tmp_path)


def test_output_dir_refuses_foreign_files(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("do not delete")
    with pytest.raises(NmaccelError, match="did not write"):
        with fileio.output_dir(d) as t:
            (t / "a.v").write_text("x")
    assert (d / "thesis.tex").read_text() == "do not delete" and not _temps(tmp_path)


def test_output_dir_error_keeps_old(tmp_path):
    d = tmp_path / "exp"
    with fileio.output_dir(d) as t:
        (t / "a.v").write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.output_dir(d) as t:
            (t / "a.v").write_text("new half")
            raise RuntimeError("boom")
    assert (d / "a.v").read_text() == "old" and not _temps(tmp_path)


def test_output_dir_refuses_dir_holding_input(tmp_path):
    (tmp_path / "w.nmpack").write_bytes(b"x")
    with pytest.raises(NmaccelError, match="contains the input"):
        fileio.resolve_output_dir(tmp_path, inputs=[tmp_path / "w.nmpack"])


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../x", "", "a\x00b"])
def test_manifest_paths_never_escape(tmp_path, rel):
    with pytest.raises(NmaccelError, match="escapes|outside"):
        fileio.safe_member_path(tmp_path, rel)


def test_manifest_symlink_out_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ln").symlink_to("/etc")
    with pytest.raises(NmaccelError, match="outside"):
        fileio.safe_member_path(tmp_path / "d", "ln/passwd")
    assert fileio.safe_member_path(tmp_path / "d", "sub/ok.bin") == (tmp_path / "d" / "sub" / "ok.bin").resolve()


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs", ".hidden", "a/b:c", "", "x" * 500, "é"])
def test_safe_name(name):
    s = fileio.safe_name(name)
    assert s and len(s) <= 130 and not s.startswith(".") and "/" not in s and s.isascii()
    assert s == fileio.safe_name(name)
    assert fileio.safe_name("layer.0.weight") == "layer.0.weight"
