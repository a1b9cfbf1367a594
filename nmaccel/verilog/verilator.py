"""The one Verilator builder and build cache (used by the generic co-simulation harness,
nmaccel.verilog.cosim, and the accelerator top's host harness, nmaccel.verilog.cosim_top).

`build(verilog, harness, top)` compiles Verilog + a C++ main into an executable, cached under
$NMACCEL_CACHE (default ~/.cache/nmaccel)/verilator/<hash of Verilog + harness + Verilator version
+ flags>; a concurrent build of the same key is harmless (first rename wins).

Flags, one set for every build:
  --x-assign 0 --x-initial 0   X values (there are none in PyRTL's netlists; only undriven bits
                                Verilator might introduce) and uninitialized state become 0,
                                deterministically: PyRTL simulation starts every register and
                                memory at 0, so a cycle-exact comparison needs exactly that.
                                `fast` (the top harness's former choice) lets Verilator pick any
                                value and buys no measurable speed on these designs.
  -O3 + C++ -O2 (CXX_OPT)      fast model, moderate g++ time; -Wno-fatal/-lint/-style: PyRTL's
                                Verilog is linted separately (nmaccel.verilog.export.lint).
"""
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nmaccel.errors import NmaccelError
from nmaccel.verilog import tools

FLAGS = ("--cc", "--exe", "--build", "-O3", "--x-assign", "0", "--x-initial", "0",
         "--no-timing", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--prefix", "Vdut")
CXX_OPT = "-O2"
BUILD_TIMEOUT_S = 1800
_VERSIONS = {}


def cache_root():
    return Path(os.environ.get("NMACCEL_CACHE", Path.home() / ".cache" / "nmaccel"))


def version(ver):
    """`verilator --version` (cached per executable and environment)."""
    key = (ver.exe, tuple(sorted(ver.env.items())))
    if key not in _VERSIONS:
        _VERSIONS[key] = ver.version()
    return _VERSIONS[key]


def flags(ver):
    return list(FLAGS) + list(ver.extra_args) + [
        "-CFLAGS", CXX_OPT, "-MAKEFLAGS", f"OPT_FAST={CXX_OPT} OPT_SLOW={CXX_OPT} OPT_GLOBAL={CXX_OPT}"]


@dataclass
class Build:
    exe: Path          # the simulator executable
    build_s: float     # Verilator + g++ seconds (0.0 on a cache hit)
    cached: bool


def build(verilog, harness, top, *, jobs=2):
    """Build (or fetch from the cache) Verilog text `verilog` with C++ main `harness`, top module
    `top`. Raises NmaccelError naming the fix when Verilator or the C++ toolchain is missing or
    the build fails."""
    ver = tools.find_verilator()
    tools.require_cxx_toolchain()
    fl = flags(ver)
    key = hashlib.sha256("\0".join([verilog, harness, version(ver), " ".join(fl)]).encode())
    final = cache_root() / "verilator" / key.hexdigest()[:20]
    exe = final / "obj" / "sim"
    if exe.is_file():
        return Build(exe, 0.0, True)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build_", dir=final.parent))
    try:
        (work / "dut.v").write_text(verilog)
        (work / "harness.cpp").write_text(harness)
        cmd = [ver.exe, *fl, "--build-jobs", str(jobs), "--top-module", top,
               "--Mdir", "obj", "-o", "sim", "harness.cpp", "dut.v"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                                  env={**os.environ, **ver.env}, timeout=BUILD_TIMEOUT_S)
        except FileNotFoundError as exc:
            raise NmaccelError(f"cannot run {ver.exe}: {exc}; install verilator") from exc
        secs = time.perf_counter() - t0
        if proc.returncode != 0 or not (work / "obj" / "sim").is_file():
            raise NmaccelError(f"Verilator build of {top} failed (exit {proc.returncode}); log tail:\n"
                               + tools.log_tail(proc.stdout + proc.stderr))
        try:
            os.rename(work, final)
        except OSError:          # another process finished the same build first
            if not exe.is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return Build(exe, secs, False)
