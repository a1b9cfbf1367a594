"""Fault injection (issue 14): SIGTERM / SIGKILL at a random moment of a command, then check that
the output is the old one or the complete new one (never half), that SIGTERM left no temporary
file, and that the next (uninterrupted) run succeeds and sweeps what a SIGKILL left.

Shared by tests/test_fault_injection.py (a handful of kills in CI) and
benchmarks/fault_injection.py (>= 50 kills per scenario, results JSON).

A scenario: `prepare(d)` creates the inputs and the OLD output, `argv(d)` is the command that
writes the NEW output, `state(d)` reads the output (bytes of a file, or {name: bytes} of a
directory), `temps(d)` lists temporaries.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):      # not `-m nmaccel`: older checkouts (measured for the "before" figures) lack it
    return [sys.executable, "-c", "import sys; from nmaccel.cli import main; sys.exit(main())", *args]


def _env(d):
    code = os.environ.get("NMACCEL_FAULT_PYTHONPATH", ROOT)     # the checkout under test
    return {**os.environ, "PYTHONPATH": code,
            "NMACCEL_CACHE": os.path.join(d, "cache"), "OPENBLAS_NUM_THREADS": "1"}


def _dir_state(path):
    if not os.path.isdir(path):
        return None
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = zlib.crc32(fh.read())
    return out


def _temps(d):
    """Hidden entries: every temporary any version of the writers made (`.name.*`, `.build_*`);
    the scenarios' own files are never hidden."""
    found = []
    for root, dirs, files in os.walk(d):
        found += [os.path.relpath(os.path.join(root, n), d) for n in dirs + files if n.startswith(".")]
    return found


class PackScenario:
    name = "pack"
    cli = True
    write_window = 0.02       # s after the temporary appears: serialising + fsync + rename
    shape = (512, 2048)

    def prepare(self, d):
        w = np.random.default_rng(14).standard_normal(self.shape).astype(np.float32)
        np.save(os.path.join(d, "w.npy"), w)
        subprocess.run(_cli("pack", os.path.join(d, "w.npy"), "--nm", "4:8", "-o", os.path.join(d, "out.nmpack")),
                       env=_env(d), check=True, capture_output=True, cwd=d)

    def argv(self, d):
        return _cli("pack", os.path.join(d, "w.npy"), "--nm", "2:4", "--bits", "4", "-o", os.path.join(d, "out.nmpack"))

    def state(self, d):
        p = os.path.join(d, "out.nmpack")
        if not os.path.exists(p):
            return None
        with open(p, "rb") as f:
            return zlib.crc32(f.read())

    def temps(self, d):
        return _temps(d)


class ExportScenario:
    name = "export"
    cli = True
    write_window = 0.02

    def prepare(self, d):
        subprocess.run(_cli("export", "--block", "pe", "--rows", "1", "--cols", "1", "-o", os.path.join(d, "out")),
                       env=_env(d), check=True, capture_output=True, cwd=d)

    def argv(self, d):
        return _cli("export", "--block", "array", "--rows", "2", "--cols", "2", "-o", os.path.join(d, "out"))

    def state(self, d):
        return _dir_state(os.path.join(d, "out"))

    def temps(self, d):
        return _temps(d)


class VerilatorBuildScenario:
    """A Verilator build of a small PE into an empty cache, then one run of the model; the state
    is the model's output (the build's product is checked by using it)."""
    name = "verilator-build"
    cli = False       # an API script: Terminated (a KeyboardInterrupt) propagates like Ctrl-C
    write_window = 20.0       # s after the build directory appears: Verilator + g++
    script = ("import sys, numpy as np, pyrtl; from nmaccel.verilog import export, cosim;"
              "pyrtl.reset_working_block();"
              "name = export.build_block('pe', rows=1, cols=1, n_max=2, m_max=4);"
              "m = cosim.build_verilator(module_name=name);"
              "rng = np.random.default_rng(1);"
              "ins = {p.name: rng.integers(0, 1 << min(p.width, 8), 16) for p in m.export.inputs"
              " if p.name not in ('clk', 'rst')};"
              "r = m.run(ins, timeout=60);"
              "sys.stdout.write(repr(sorted((k, np.asarray(v).tolist()) for k, v in r.outputs.items())))")

    def prepare(self, d):
        os.makedirs(os.path.join(d, "cache"), exist_ok=True)
        with open(os.path.join(d, "last_output"), "w") as f:
            f.write("")

    def argv(self, d):
        return [sys.executable, "-c", self.script]

    def state(self, d):
        return None            # checked through run_ok: the next run's output equals the reference

    def temps(self, d):
        return _temps(os.path.join(d, "cache"))


SCENARIOS = {s.name: s for s in (PackScenario(), ExportScenario(), VerilatorBuildScenario())}


def run_ok(scn, d, timeout=900):
    """Run the command uninterrupted; (returncode, stdout, stderr, seconds)."""
    t0 = time.perf_counter()
    p = subprocess.run(scn.argv(d), env=_env(d), capture_output=True, text=True, timeout=timeout, cwd=d)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def reference(scn, workdir):
    """(old state, new state, new stdout, seconds of one uninterrupted run) in a fresh directory."""
    d = os.path.join(workdir, "ref")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    scn.prepare(d)
    old = scn.state(d)
    rc, out, err, secs = run_ok(scn, d)
    if rc != 0:
        raise RuntimeError(f"{scn.name}: reference run failed: {err[-500:]}")
    return old, scn.state(d), out, secs


def _wait_for_temp(scn, d, proc, limit):
    """Poll (1 ms) until a temporary of the output writer exists; False if the run ended first."""
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        if scn.temps(d):
            return True
        time.sleep(0.001)
    return False


def one_kill(scn, workdir, sig, delay, ref, check_next=True, in_write=False):
    """Start the command, send `sig` after `delay` s (in_write: `delay` s after the writer's
    temporary appeared); returns a dict with the verdict."""
    old, new, new_out, _ = ref
    d = os.path.join(workdir, "trial")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    scn.prepare(d)
    proc = subprocess.Popen(scn.argv(d), env=_env(d), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=d)   # cwd: `python -c` puts it first on sys.path
    saw_temp = _wait_for_temp(scn, d, proc, 10 * ref[3] + 60) if in_write else None
    time.sleep(delay)
    finished_before = proc.poll() is not None
    if not finished_before:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return {"signal": sig.name, "delay_s": round(delay, 3), "ok": False, "why": "did not stop"}
    st = scn.state(d)
    why = []
    if st not in (old, new):
        why.append("output is neither the old nor the complete new one")
    left = scn.temps(d)
    if sig == signal.SIGTERM and left:
        why.append(f"SIGTERM left {left}")
    if scn.cli and b"Traceback" in err:
        why.append("traceback on SIGTERM")
    if check_next:
        rc, out, err2, _ = run_ok(scn, d)
        if rc != 0:
            why.append(f"next run failed (rc {rc}): {err2.strip().splitlines()[-1:]}")
        elif scn.state(d) != new or (new is None and out != new_out):
            why.append("next run's output differs from the reference")
        if scn.temps(d):
            why.append(f"temporaries still there after the next run: {scn.temps(d)}")
    return {"signal": sig.name, "when": "in-write" if in_write else "uniform", "saw_temp": saw_temp,
            "delay_s": round(delay, 3), "finished_before_signal": finished_before,
            "returncode": proc.returncode, "output": "old" if st == old else "new" if st == new else "other",
            "left_after_kill": len(left), "ok": not why, "why": "; ".join(why)}


def campaign(scn, workdir, kills, seed=14, check_next=True, log=None, on_progress=None):
    """`kills` kills at uniform random moments of one uninterrupted run's duration, alternating
    SIGTERM and SIGKILL. on_progress(summary) after every kill (partial results)."""
    ref = reference(scn, workdir)
    rng = random.Random(seed)
    rows = []
    for i in range(kills):
        sig = (signal.SIGTERM, signal.SIGKILL)[i % 2]
        in_write = (i // 2) % 2 == 1          # every other pair: inside the write window
        delay = rng.uniform(0.0, scn.write_window) if in_write else rng.uniform(0.0, 1.2 * ref[3])
        row = one_kill(scn, workdir, sig, delay, ref, check_next, in_write)
        rows.append(row)
        if log:
            log(f"{scn.name:16s} {i + 1:3d}/{kills} {row['signal']:7s} {row['when']:8s} +{row['delay_s']:6.3f}s "
                f"-> {row.get('output', '?'):4s} {'ok' if row['ok'] else 'FAIL ' + row['why']}")
        if on_progress:
            on_progress(summary(scn, ref, rows))
    return summary(scn, ref, rows)


def summary(scn, ref, rows):
    return {"scenario": scn.name, "reference_seconds": round(ref[3], 2), "kills": len(rows),
            "survived": sum(r["ok"] for r in rows),
            "old_output": sum(r.get("output") == "old" for r in rows),
            "new_output": sum(r.get("output") == "new" for r in rows),
            "finished_before_signal": sum(bool(r.get("finished_before_signal")) for r in rows),
            "in_write_kills": sum(r.get("when") == "in-write" and bool(r.get("saw_temp")) for r in rows),
            "rows": rows}
