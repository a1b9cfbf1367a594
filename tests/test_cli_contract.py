"""The CLI error contract beyond the bad-input matrix: python -m nmaccel, --debug, tool failures
exit 1 with a log tail, internal errors one line, SIGTERM exit code; ANSI Verilog ports."""
import os
import subprocess
import sys

import pytest

from nmaccel import cli
from nmaccel.errors import ToolFailedError
from nmaccel.verilog.export import parse_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT}


def test_python_dash_m_runs():
    p = subprocess.run([sys.executable, "-m", "nmaccel", "inspect", "/nonexistent.nmpack"],
                       capture_output=True, text=True, env=ENV)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no such packed file" in p.stderr


def test_debug_shows_traceback():
    p = subprocess.run([sys.executable, "-m", "nmaccel", "--debug", "inspect", "/nonexistent.nmpack"],
                       capture_output=True, text=True, env=ENV)
    assert p.returncode == 1 and "Traceback" in p.stderr and "NmaccelError" in p.stderr


def _fake_command(exc):
    def register(sub):
        q = sub.add_parser("boom")
        q.set_defaults(func=lambda args: (_ for _ in ()).throw(exc))
    return register


@pytest.mark.parametrize("exc, rc, first", [
    (ToolFailedError("yosys failed (exit 3)", "ERROR: line 1\nERROR: line 2"), 1, "yosys failed (exit 3)"),
    (ZeroDivisionError("division by zero"), 1, "internal error: ZeroDivisionError"),
    (MemoryError(), 1, "out of memory"),
])
def test_failures_exit_1(monkeypatch, capsys, exc, rc, first):
    build = cli.build_parser

    def parser():
        p = build()
        _fake_command(exc)(_Sub(p))
        return p
    monkeypatch.setattr(cli, "build_parser", parser)
    assert cli.main(["boom"]) == rc
    err = capsys.readouterr().err.strip().splitlines()
    assert first in err[0] and "Traceback" not in "\n".join(err)
    if isinstance(exc, ToolFailedError):
        assert err[1:] == ["ERROR: line 1", "ERROR: line 2"]
    else:
        assert len(err) == 1


class _Sub:
    """add_parser on the parser's existing subparsers action."""
    def __init__(self, parser):
        self.action = parser._subparsers._group_actions[0]

    def add_parser(self, name):
        return self.action.add_parser(name)


def test_sigterm_exit_code_and_no_temp(tmp_path):
    code = ("import os, signal, sys; from nmaccel import cli, fileio\n"
            "def slow(args):\n"
            "    with fileio.open_output(sys.argv[1]) as f:\n"
            "        f.write(b'half'); os.kill(os.getpid(), signal.SIGTERM)\n"
            "p = cli.build_parser; \n"
            "def bp():\n"
            "    q = p(); s = q._subparsers._group_actions[0].add_parser('slow'); s.set_defaults(func=slow); return q\n"
            "cli.build_parser = bp; sys.exit(cli.main(['slow']))\n")
    out = tmp_path / "o.bin"
    out.write_bytes(b"old")
    p = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=ENV)
    assert p.returncode == 128 + 15 and "terminated" in p.stderr and p.stderr.count("\n") == 1
    assert out.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["o.bin"]


def test_ansi_ports_parsed():
    name, ports, _ = parse_module("module f(input clk, input wire [7:0] a, b,\n output reg signed [3:0] y);\nendmodule\n")
    assert name == "f" and [(p.name, p.direction, p.width) for p in ports] == [
        ("clk", "input", 1), ("a", "input", 8), ("b", "input", 8), ("y", "output", 4)]
    with pytest.raises(Exception, match="inout"):
        parse_module("module g(inout [1:0] z);\nendmodule\n")
