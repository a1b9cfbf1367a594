"""Progress bars follow one rule everywhere (nmaccel.progress): drawn only when stdout is a TTY
and the user did not ask for --quiet; `cmd > log 2>&1` gets no bar."""
import ast
import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nmaccel import progress

ROOT = Path(__file__).resolve().parent.parent


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


@pytest.mark.parametrize("tty, quiet, drawn", [(True, False, True), (True, True, False),
                                               (False, False, False), (False, True, False)])
def test_rule(monkeypatch, tty, quiet, drawn):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", _Stream(tty))
    monkeypatch.setattr(sys, "stderr", err)
    assert progress.enabled(quiet) is drawn
    assert list(progress.bar(range(3), quiet=quiet, desc="work")) == [0, 1, 2]
    assert ("work: 100%" in err.getvalue()) is drawn


def test_closed_or_odd_stdout_means_no_bar():
    closed = io.StringIO()
    closed.close()
    assert not progress.enabled(stream=closed) and not progress.enabled(stream=object())


def test_every_bar_goes_through_the_helper():
    """No nmaccel module but nmaccel/progress.py imports tqdm (so no bar escapes the rule)."""
    offenders = []
    for path in (ROOT / "nmaccel").rglob("*.py"):
        if path.name == "progress.py" and path.parent.name == "nmaccel":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for m in mods if m.split(".")[0] == "tqdm"]
    assert offenders == []


def _sweep(tmp_path, name, tty, *extra):
    """`nmaccel sweep` on a tiny cycle-model grid; stdout a pty (tty) or a log file; returns stderr."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"array": ["2x2"], "nm": ["2:4", "4:4"], "bits": [8], "pe": ["4:8"],
                                    "jobs": ["model"], "shape": [8, 32, 8]}))
    argv = [sys.executable, "-m", "nmaccel", "sweep", str(grid), "-o", str(tmp_path / name),
            "--workers", "1", *extra]
    env = {**os.environ, "COLUMNS": "100"}
    if tty:
        master, slave = pty.openpty()
        try:
            p = subprocess.run(argv, stdout=slave, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
        finally:
            os.close(slave)
            os.close(master)
        assert p.returncode == 0, p.stderr
        return p.stderr
    log = tmp_path / f"{name}.log"
    with open(log, "w") as f:
        p = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=300)
    assert p.returncode == 0, log.read_text()
    return log.read_text()


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_cli_bar_only_on_a_tty_and_not_with_quiet(tmp_path):
    assert "sweep: 100%" in _sweep(tmp_path, "tty", True)         # a terminal: the bar is drawn
    assert "sweep:" not in _sweep(tmp_path, "tty_q", True, "-q")   # --quiet: none
    logged = _sweep(tmp_path, "log", False)                        # `> log 2>&1`: none
    assert "sweep:" not in logged and "\r" not in logged and "%|" not in logged
