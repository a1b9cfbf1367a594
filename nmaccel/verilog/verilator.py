"""The one Verilator builder and build cache (used by the generic co-simulation harness,
nmaccel.verilog.cosim, and the accelerator top's host harness, nmaccel.verilog.cosim_top).

`build(verilog, harness, top)` compiles Verilog + a C++ main into an executable, cached under
$NMACCEL_CACHE (default ~/.cache/nmaccel)/verilator/<hash of Verilog + harness + Verilator and g++
versions + flags> by nmaccel.verilog.buildcache: stamp written last and checked on every use (a
corrupt entry is rebuilt with a one-line notice), a file lock per key (a concurrent build of the
same key waits and reuses it), temporaries removed on SIGTERM and swept after SIGKILL; the build
runs under a timeout (tools.run_tool).

Flags, one set for every build:
  --x-assign 0 --x-initial 0   X values (there are none in PyRTL's netlists; only undriven bits
                                Verilator might introduce) and uninitialized state become 0,
                                deterministically: PyRTL simulation starts every register and
                                memory at 0, so a cycle-exact comparison needs exactly that.
                                `fast` (the top harness's former choice) lets Verilator pick any
                                value and buys no measurable speed on these designs.
  -O3 + C++ -O2 (CXX_OPT)      fast model, moderate g++ time; -Wno-fatal/-lint/-style: PyRTL's
                                Verilog is linted separately (nmaccel.verilog.export.lint).
  --trace (trace=True only)    the VCD-tracing variant (its harness includes verilated_vcd_c.h);
                                the flags are part of the cache key, so traced and untraced
                                builds of the same design are separate cache entries.
"""
import os
from dataclasses import dataclass
from pathlib import Path

from nmaccel.verilog import tools
from nmaccel.verilog.buildcache import cache_key, cached_build

FLAGS = ("--cc", "--exe", "--build", "-O3", "--x-assign", "0", "--x-initial", "0",
         "--no-timing", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--prefix", "Vdut")
CXX_OPT = "-O2"
BUILD_TIMEOUT_S = tools.BUILD_TIMEOUT_S


def cache_root():
    return Path(os.environ.get("NMACCEL_CACHE", Path.home() / ".cache" / "nmaccel"))


def version(ver):
    """`verilator --version` (cached per executable and environment by tools.tool_version)."""
    return ver.version()


def flags(ver, trace=False):
    return list(FLAGS) + (["--trace"] if trace else []) + list(ver.extra_args) + [
        "-CFLAGS", CXX_OPT, "-MAKEFLAGS", f"OPT_FAST={CXX_OPT} OPT_SLOW={CXX_OPT} OPT_GLOBAL={CXX_OPT}"]


@dataclass
class Build:
    exe: Path          # the simulator executable
    build_s: float     # Verilator + g++ seconds (0.0 on a cache hit)
    cached: bool


def build(verilog, harness, top, *, jobs=2, trace=False):
    """Build (or fetch from the cache) Verilog text `verilog` with C++ main `harness`, top module
    `top` (`trace`: with Verilator --trace, for a harness that writes a VCD). Raises ToolMissingError naming the fix when Verilator or the C++ toolchain is missing,
    ToolFailedError (one line + log tail) when the build fails or times out."""
    ver = tools.find_verilator()
    tools.require_cxx_toolchain()
    fl = flags(ver, trace)
    cxx = tools.tool_version([os.environ.get("CXX", "g++"), "--version"])

    def compile_into(work):
        (work / "dut.v").write_text(verilog)
        (work / "harness.cpp").write_text(harness)
        tools.run_tool([ver.exe, *fl, "--build-jobs", str(jobs), "--top-module", top,
                        "--Mdir", "obj", "-o", "sim", "harness.cpp", "dut.v"], cwd=work,
                       env={**os.environ, **ver.env}, timeout=BUILD_TIMEOUT_S,
                       what=f"Verilator build of {top}")

    entry, cached, secs = cached_build(cache_root() / "verilator",
                                       cache_key(verilog, harness, version(ver), cxx, " ".join(fl)),
                                       compile_into, ["obj/sim"], what=f"Verilator model of {top}")
    return Build(entry / "obj" / "sim", secs, cached)
