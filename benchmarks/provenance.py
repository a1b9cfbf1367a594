"""Provenance recorded with every benchmark result: commit, tool versions, machine, command."""
import os
import platform
import subprocess
import sys


def _run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def provenance(tools=()):
    """{commit, dirty, python, numpy, machine, cpus, command, tools{name: version line}}."""
    import numpy as np
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {
        "commit": _run(["git", "-C", root, "rev-parse", "HEAD"]),
        "dirty": bool(_run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"])),
        "python": platform.python_version(), "numpy": np.__version__,
        "machine": f"{platform.system()} {platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "command": " ".join([os.path.relpath(sys.argv[0], root)] + sys.argv[1:]),
        "tools": {t: (_run([t, "--version"]) or "").splitlines()[0] if _run([t, "--version"]) else None
                  for t in tools},
    }
