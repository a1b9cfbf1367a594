"""Build cache (nmaccel.verilog.buildcache) and tool runner (tools.run_tool): stamp written last
and checked, corrupt entries rebuilt with a notice, one build per key at a time, temporaries
removed, every subprocess under a timeout."""
import multiprocessing
import os
import sys
import time

import pytest

from nmaccel.errors import ToolFailedError, ToolMissingError
from nmaccel.verilog import tools
from nmaccel.verilog.buildcache import STAMP, cache_key, cached_build, check_entry


def _builder(log, delay=0.0, fail=False):
    def build(work):
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(delay)
        if fail:
            raise ToolFailedError("compiler exploded", "tail")
        (work / "obj").mkdir()
        (work / "obj" / "sim").write_bytes(b"\x7fELF binary " * 100)
    return build


def _leftovers(root):
    return [p for p in os.listdir(root) if p.endswith(".nmtmp")]


def test_build_once_then_cached(tmp_path):
    log = tmp_path / "log"
    key = cache_key("module m;", "-O2", "Verilator 5")
    e1, cached1, _ = cached_build(tmp_path / "c", key, _builder(log), ["obj/sim"])
    e2, cached2, _ = cached_build(tmp_path / "c", key, _builder(log), ["obj/sim"])
    assert (cached1, cached2) == (False, True) and e1 == e2 and log.read_text() == "built\n"
    assert check_entry(e1, ["obj/sim"]) is None and (e1 / STAMP).is_file()
    assert cache_key("module m;", "-O2", "Verilator 5") != cache_key("module m;", "-O2", "Verilator 6")


@pytest.mark.parametrize("damage", ["truncate", "delete_stamp", "garble_stamp", "delete_product"])
def test_corrupt_entry_rebuilt_with_notice(tmp_path, capsys, damage):
    log = tmp_path / "log"
    entry, _, _ = cached_build(tmp_path / "c", "k", _builder(log), ["obj/sim"])
    sim = entry / "obj" / "sim"
    if damage == "truncate":
        sim.write_bytes(sim.read_bytes()[:10])
    elif damage == "delete_stamp":
        (entry / STAMP).unlink()
    elif damage == "garble_stamp":
        (entry / STAMP).write_text("{not json")
    else:
        sim.unlink()
    capsys.readouterr()
    entry2, cached, _ = cached_build(tmp_path / "c", "k", _builder(log), ["obj/sim"])
    err = capsys.readouterr().err
    assert not cached and log.read_text() == "built\nbuilt\n"
    assert len(err.strip().splitlines()) == 1 and "corrupt" in err and "rebuilding" in err
    assert check_entry(entry2, ["obj/sim"]) is None and not _leftovers(tmp_path / "c")


def test_failed_build_leaves_nothing(tmp_path):
    with pytest.raises(ToolFailedError):
        cached_build(tmp_path / "c", "k", _builder(tmp_path / "log", fail=True), ["obj/sim"])
    assert sorted(os.listdir(tmp_path / "c")) == ["k.lock"]


def _concurrent(root, log):
    cached_build(root, "k", _builder(log, delay=1.0), ["obj/sim"])


def test_lock_one_build_at_a_time(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_concurrent, args=(tmp_path / "c", tmp_path / "log")) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert (tmp_path / "log").read_text() == "built\n"


def test_stale_temp_of_killed_build_swept(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    stale = root / f".k.{dead}.x.nmtmp"
    (stale / "obj").mkdir(parents=True)
    cached_build(root, "k", _builder(tmp_path / "log"), ["obj/sim"])
    assert not stale.exists()


def test_run_tool_timeout_missing_and_failure():
    with pytest.raises(ToolFailedError, match="timed out after 1 s"):
        tools.run_tool([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1, what="sleeper")
    with pytest.raises(ToolMissingError, match="install it"):
        tools.run_tool(["/nonexistent/verilator"], timeout=5, what="verilator")
    with pytest.raises(ToolFailedError) as ei:
        tools.run_tool([sys.executable, "-c", "import sys; print('line1'); sys.exit(3)"], timeout=30, what="tool")
    assert str(ei.value) == "tool failed (exit 3)" and ei.value.log_tail == "line1"


def test_log_tail_shortens_tracebacks_and_names_wasm_oom():
    log = ("yosys starting\nTraceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
           "    boom()\nwasmtime._error.WasmtimeError: failed to mmap memory: Cannot allocate memory\n")
    assert tools.log_tail(log) == "yosys starting\nwasmtime._error.WasmtimeError: failed to mmap memory: Cannot allocate memory"
    assert "ran out of memory" in tools._known_cause(log)
