"""Design-space sweeps: `nmaccel sweep grid.yaml` over array size, N:M, bits, target.

A grid file (YAML) names axes (lists; the sweep is their Cartesian product) and settings:

    array: [2x2, 4x4]        # rows x cols of the systolic array
    nm: ["2:4", "4:4"]       # N:M the point runs (N == M: dense)
    bits: [8, 4]             # weight bits: 8 -> INT8-only array, 4 -> INT8 + INT4 array
    target: [ecp5]           # synthesis target (nmaccel.verilog.synth.TARGETS)
    pe: [nm]                 # lanes:largest group elaborated per PE ("n_max:m_max"), or "nm" =
                             # exactly the point's N:M (a fixed-N:M array)
    pipeline: [false]        # every PE pipeline register on / off
    jobs: [model, synth]     # per point: model (cycle model), rtl (PyRTL top cycles, checked
                             # against the model and golden outputs), synth (Yosys), pnr (+nextpnr fmax)
    shape: [16, 64, 64]      # GEMM T, K, N_out the cycles are counted on
    block: array             # what is synthesized: top | array | pe
    device: null             # nextpnr device (ecp5: 85k; ice40: up5k / hx8k)
    freq: 200                # nextpnr target MHz
    seed: 1                  # nextpnr and weight seed
    t_max: 64                # top: array steps per job
    host_bits: 64            # top: host word width

Jobs are independent tasks: one synthesis per distinct piece of hardware (points that differ only
in the runtime N:M share it) and one simulation per point. They run on a local process pool
(default) or, with `--cluster ADDRESS`, on a Dask distributed cluster through its
concurrent.futures executor (docs/SWEEP.md says why Dask). Every finished task is cached in
OUT/cache/ as JSON keyed by a hash of its parameters; re-running a sweep resumes from them.
A point whose hardware does not fit the device, or whose N:M the PE cannot run, is recorded with
its status and message; the sweep goes on. Results: OUT/sweep.csv, OUT/sweep.json (with
provenance) and OUT/pareto.png.
"""
import concurrent.futures as cf
import csv
import hashlib
import itertools
import json
import math
import numbers
import os
import re
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyrtl
import yaml

from nmaccel.arch.config import ArrayConfig, RuntimeConfig, TopConfig, pipeline_options, window_groups
from nmaccel.errors import NmaccelError, require
from nmaccel.golden import cyclemodel as cm
from nmaccel.pack import pack_weights
from nmaccel.provenance import provenance
from nmaccel.run.runner import reference, run_gemm
from nmaccel.verilog import export, synth
from nmaccel.verilog.synth import DEVICES, TARGETS
from nmaccel.progress import bar as tqdm

AXES = ("array", "nm", "bits", "target", "pe", "pipeline")
JOBS = ("model", "rtl", "synth", "pnr")
BLOCKS = ("top", "array", "pe")
DEFAULTS = {"array": ["4x4"], "nm": ["2:4"], "bits": [8], "target": ["ecp5"], "pe": ["nm"],
            "pipeline": [False], "jobs": ["model"], "shape": [16, 64, 64], "block": "array",
            "device": None, "freq": 200.0, "seed": 1, "t_max": 64, "host_bits": 64}
SETTINGS = tuple(k for k in DEFAULTS if k not in AXES)
CACHE_VERSION = 1
CSV_COLUMNS = ("array", "nm", "bits", "target", "pe", "pipeline", "status", "cycles",
               "utilization", "rtl_cycles", "lut", "ff", "dsp", "bram", "fmax_mhz",
               "latency_us", "message")


# ---- grid -----------------------------------------------------------------------------------
def _pair(text, sep, what, example):
    m = re.fullmatch(rf"\s*(\d+)\s*{re.escape(sep)}\s*(\d+)\s*", str(text))
    require(m is not None, f"grid: {what} {text!r} is not of the form {example}")
    return int(m.group(1)), int(m.group(2))


def _check_axis(key, value):
    if key == "array":
        r, c = _pair(value, "x", "array", "'4x4'")
        require(1 <= r <= 64 and 1 <= c <= 64, f"grid: array {value!r}: use rows, cols in 1..64")
        return f"{r}x{c}"
    if key in ("nm", "pe"):
        if key == "pe" and value == "nm":
            return "nm"
        n, m = _pair(value, ":", key, "'2:4'")
        require(1 <= n <= m and m >= 1, f"grid: {key} {value!r}: need 1 <= N <= M")
        return f"{n}:{m}"
    if key == "bits":
        require(value in (4, 8) and not isinstance(value, bool),
                f"grid: bits {value!r}: use 8 (INT8) or 4 (INT4)")
        return int(value)
    if key == "target":
        require(value in TARGETS, f"grid: target {value!r}: use one of {', '.join(TARGETS)}")
        return value
    require(isinstance(value, bool), f"grid: pipeline {value!r}: use true or false")
    return value


@dataclass(frozen=True)
class Grid:
    axes: dict
    jobs: tuple
    shape: tuple
    block: str
    device: object
    freq: float
    seed: int
    t_max: int
    host_bits: int

    def points(self):
        keys = list(AXES)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.axes[k] for k in keys))]


def parse_grid(data, source="grid"):
    """Validate a grid mapping (as loaded from YAML) into a Grid; bad input -> NmaccelError."""
    require(isinstance(data, dict), f"{source}: expected a mapping of parameters, got "
            f"{type(data).__name__}")
    known = AXES + SETTINGS
    for k in data:
        require(k in known, f"{source}: unknown parameter {k!r}: use one of {', '.join(known)}")
    cfg = {**DEFAULTS, **data}
    axes = {}
    for k in AXES:
        vals = cfg[k] if isinstance(cfg[k], list) else [cfg[k]]
        require(len(vals) > 0, f"{source}: {k} is an empty list: give at least one value")
        checked = [_check_axis(k, v) for v in vals]
        require(len(set(checked)) == len(checked), f"{source}: {k} repeats a value")
        axes[k] = tuple(checked)
    jobs = cfg["jobs"] if isinstance(cfg["jobs"], list) else [cfg["jobs"]]
    for j in jobs:
        require(j in JOBS, f"{source}: unknown job {j!r}: use some of {', '.join(JOBS)}")
    if "pnr" in jobs and "synth" not in jobs:
        jobs = [*jobs, "synth"]
    shape = cfg["shape"]
    require(isinstance(shape, list) and len(shape) == 3 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape),
        f"{source}: shape {shape!r}: use [T, K, N_out], positive ints")
    require(cfg["block"] in BLOCKS, f"{source}: block {cfg['block']!r}: use one of {', '.join(BLOCKS)}")
    for k in ("seed", "t_max", "host_bits"):
        v = cfg[k]
        require(isinstance(v, int) and not isinstance(v, bool) and v >= (2 if k == "t_max" else 0),
                f"{source}: {k} {v!r}: use a non-negative int" + (" >= 2" if k == "t_max" else ""))
    require(isinstance(cfg["freq"], (int, float)) and cfg["freq"] > 0,
            f"{source}: freq {cfg['freq']!r}: use a positive MHz")
    require(cfg["device"] is None or isinstance(cfg["device"], str),
            f"{source}: device {cfg['device']!r}: use a device name such as 85k")
    if "pnr" in jobs:
        bad = [t for t in axes["target"] if t not in DEVICES]
        require(not bad, f"{source}: job pnr needs a place-and-route target (ecp5, ice40), not "
                f"{', '.join(bad)}: drop pnr or those targets")
    return Grid(axes=axes, jobs=tuple(dict.fromkeys(jobs)), shape=tuple(shape), block=cfg["block"],
                device=cfg["device"], freq=float(cfg["freq"]), seed=cfg["seed"], t_max=cfg["t_max"],
                host_bits=cfg["host_bits"])


def load_grid(path):
    path = Path(path)
    require(path.is_file(), f"grid file {path} not found: give a YAML grid (see docs/SWEEP.md)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NmaccelError(f"{path} is not valid YAML ({first}): fix the syntax") from None
    return parse_grid(data, source=path.name)


# ---- tasks ------------------------------------------------------------------------------------
def _hw_spec(grid, point):
    """The elaborated hardware of a point (independent of its runtime N:M except via pe='nm')."""
    r, c = _pair(point["array"], "x", "array", "'4x4'")
    pe = point["nm"] if point["pe"] == "nm" else point["pe"]
    n_max, m_max = _pair(pe, ":", "pe", "'4:8'")
    m_max = max(m_max, 2)                       # ArrayConfig needs m_max >= 2 (1:1 runs on 1:2)
    modes = ("int8", "int4") if point["bits"] == 4 else ("int8",)
    return {"rows": r, "cols": c, "n_max": n_max, "m_max": m_max, "modes": modes,
            "pipeline": point["pipeline"]}


def _runtime(point):
    n, m = _pair(point["nm"], ":", "nm", "'2:4'")
    return ("int4" if point["bits"] == 4 else "int8"), n, m


def _array_config(hw):
    return ArrayConfig(rows=hw["rows"], cols=hw["cols"], n_max=hw["n_max"], m_max=hw["m_max"],
                       modes=tuple(hw["modes"]), double_buffer=True,
                       **pipeline_options(hw["pipeline"]))


def _top_sizes(grid, hw, nms):
    """TopConfig sizes holding the grid's GEMM for every runtime N:M this hardware runs."""
    T, K, N = grid.shape
    kts = [1]
    for n, m in nms:
        if n <= hw["n_max"] and m <= hw["m_max"]:
            win = window_groups(n, m, hw["n_max"], hw["m_max"]) * m
            kts.append(-(-(-(-K // m) * m) // (hw["rows"] * win)))
    return {"t_max": grid.t_max, "k_tiles_max": max(kts), "n_tiles_max": -(-N // hw["cols"]),
            "host_bits": grid.host_bits}


def _top_config(hw, sizes):
    return TopConfig(array=_array_config(hw), **sizes)


def _key(kind, spec):
    blob = json.dumps({"v": CACHE_VERSION, "kind": kind, **spec}, sort_keys=True, default=list)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


_BUILD_LOCK = threading.Lock()      # PyRTL's working block is process-global


def synth_task(spec):
    """Synthesize one piece of hardware; {'status': ok | does_not_fit | error, resources...}."""
    hw, block, target = spec["hw"], spec["block"], spec["target"]
    t0 = time.perf_counter()
    try:
        with _BUILD_LOCK, tempfile.TemporaryDirectory(prefix="nmaccel_sweep_") as tmp:
            pyrtl.reset_working_block()
            kw = dict(rows=hw["rows"], cols=hw["cols"], n_max=hw["n_max"], m_max=hw["m_max"],
                      modes=tuple(hw["modes"]), pipeline=hw["pipeline"])
            if block == "top":
                kw.update(spec["sizes"])
            name = export.build_block(block, **kw)
            path = Path(tmp) / f"{name}.v"
            export.export_verilog(path, module_name=name, port_description=False)
            rep = synth.synthesize(path, name, target, pnr=spec["pnr"], device=spec["device"],
                                   freq_mhz=spec["freq"], seed=spec["seed"])
    except NmaccelError as exc:
        msg = str(exc).splitlines()[0]
        status = "does_not_fit" if "too large" in msg else "error"
        return {"status": status, "message": msg, "seconds": round(time.perf_counter() - t0, 1)}
    return {"status": "ok", "device": rep.get("device"),
            **{k: rep.get(k) for k in ("lut", "ff", "carry", "dsp", "bram", "lutram", "fmax_mhz")},
            "seconds": round(time.perf_counter() - t0, 1)}


def sim_task(spec):
    """Cycle model (and PyRTL top cycles with 'rtl') of one point's GEMM."""
    hw, (mode, n, m) = spec["hw"], spec["runtime"]
    t0 = time.perf_counter()
    try:
        p = _top_config(hw, spec["sizes"])
        a = p.array
        rt = RuntimeConfig(mode, n, m).check(a)
        shape = tuple(spec["shape"])
        cycles = cm.cycles(shape, a, rt, p)
        out = {"status": "ok", "cycles": cycles,
               "utilization": round(cm.utilization(shape, a, rt, cycles), 4)}
        if spec["rtl"]:
            out.update(_rtl_cycles(spec, p, rt, cycles))
    except NmaccelError as exc:
        return {"status": "invalid", "message": str(exc).splitlines()[0],
                "seconds": round(time.perf_counter() - t0, 1)}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _rtl_cycles(spec, p, rt, model_cycles):
    T, K, N = spec["shape"]
    rng = np.random.default_rng(spec["seed"])
    w = rng.standard_normal((N, K)).astype(np.float32)
    x = rng.integers(-128, 128, size=(T, K))
    packed = pack_weights(w, n_keep=rt.n_keep, m_group=rt.m_group, bits=4 if rt.mode == "int4" else 8)
    with _BUILD_LOCK:
        res = run_gemm(packed, x, p.array, top_cfg=p)
    if res.cycles != model_cycles or not np.array_equal(res.outputs, reference(packed, x)):
        return {"status": "error", "rtl_cycles": res.cycles,
                "message": f"RTL disagrees: {res.cycles} cycles vs model {model_cycles}, outputs "
                           f"{'equal' if np.array_equal(res.outputs, reference(packed, x)) else 'differ'}"}
    return {"rtl_cycles": res.cycles}


@dataclass(frozen=True)
class Task:
    key: str
    kind: str          # synth | sim
    spec: dict


def plan(grid):
    """(points, tasks): each point with the keys of its sim / synth tasks; distinct tasks."""
    points, tasks = [], {}
    nms = [_pair(v, ":", "nm", "'2:4'") for v in grid.axes["nm"]]
    for pt in grid.points():
        hw = _hw_spec(grid, pt)
        pt_nms = nms if pt["pe"] != "nm" else [_pair(pt["nm"], ":", "nm", "")]
        sizes = _top_sizes(grid, hw, pt_nms)
        entry = {"point": pt, "sim": None, "synth": None}
        if {"model", "rtl"} & set(grid.jobs):
            spec = {"hw": hw, "sizes": sizes, "runtime": _runtime(pt), "shape": list(grid.shape),
                    "rtl": "rtl" in grid.jobs, "seed": grid.seed}
            entry["sim"] = _key("sim", spec)
            tasks.setdefault(entry["sim"], Task(entry["sim"], "sim", spec))
        if "synth" in grid.jobs:
            spec = {"hw": hw, "block": grid.block, "target": pt["target"], "pnr": "pnr" in grid.jobs,
                    "device": grid.device, "freq": grid.freq, "seed": grid.seed,
                    "sizes": sizes if grid.block == "top" else None}
            entry["synth"] = _key("synth", spec)
            tasks.setdefault(entry["synth"], Task(entry["synth"], "synth", spec))
        points.append(entry)
    return points, list(tasks.values())


def run_task(task):
    return synth_task(task.spec) if task.kind == "synth" else sim_task(task.spec)


# ---- executors --------------------------------------------------------------------------------
def connect(address, timeout=10):
    """A Dask distributed client for `address`; unreachable -> NmaccelError naming the fix."""
    try:
        from distributed import Client       # lazy: heavy (Dask), only for --cluster
    except ImportError:
        raise NmaccelError("--cluster needs Dask distributed: pip install 'dask[distributed]'") from None
    try:
        return Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise NmaccelError(
            f"cannot reach a Dask scheduler at {address} ({type(exc).__name__}): start one with "
            f"'dask scheduler' and workers with 'dask worker {address} --nthreads 1', or drop "
            "--cluster to run on local processes") from None


class _Executor:
    """A concurrent.futures executor: local processes, or a Dask client's executor."""

    def __init__(self, workers=None, cluster=None, timeout=10):
        self.client = None
        if cluster:
            self.client = connect(cluster, timeout)
            self.pool = self.client.get_executor(pure=False)
        else:
            self.pool = cf.ProcessPoolExecutor(max_workers=workers or os.cpu_count())

    def __enter__(self):
        return self.pool

    def __exit__(self, *exc):
        interrupted = exc[0] is not None
        if self.client is None:
            self.pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
        else:
            self.pool.shutdown(wait=not interrupted)
            self.client.close()


# ---- results ----------------------------------------------------------------------------------
def _write_json(path, obj):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=list))
    os.replace(tmp, path)


def _row(entry, results):
    pt = dict(entry["point"])
    row = {**pt, "status": "ok", "message": ""}
    for kind in ("sim", "synth"):
        key = entry[kind]
        if key is None:
            continue
        res = results[key]
        row.update({k: v for k, v in res.items() if k not in ("status", "message", "seconds")})
        if res["status"] != "ok" and row["status"] == "ok":
            row["status"], row["message"] = res["status"], res.get("message", "")
    if row.get("cycles") and row.get("fmax_mhz"):
        row["latency_us"] = round(row["cycles"] / row["fmax_mhz"], 3)
    return row


def pareto_front(rows, x, y):
    """Rows not dominated in (x, y), both minimized; rows missing either are left out."""
    pts = sorted((r for r in rows if r.get(x) is not None and r.get(y) is not None),
                 key=lambda r: (r[x], r[y]))
    front, best = [], float("inf")
    for r in pts:
        if r[y] < best:
            front.append(r)
            best = r[y]
    return front


def _finite(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _padded(vals, *, log):
    """Axis limits around `vals` that are finite and never zero-width (one point is fine)."""
    lo, hi = min(vals), max(vals)
    if log:
        return lo / 2, hi * 2
    pad = max(abs(hi - lo) * 0.1, abs(hi) * 0.05, 1.0)
    return lo - pad, hi + pad


def plot(rows, path, area="lut"):
    """Pareto plot: area vs cycles (colour: fmax), and area vs latency at fmax when measured."""
    import matplotlib                        # lazy: heavy, needed only for the plot
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if r["status"] == "ok" and _finite(r.get(area)) and _finite(r.get("cycles"))]
    lat = [r for r in ok if _finite(r.get("latency_us"))]
    panels = [("cycles", "cycles")] + ([("latency_us", "latency at fmax (us)")] if lat else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (ykey, ylabel) in zip(axes[0], panels):
        sel = [r for r in ok if _finite(r.get(ykey)) and r[ykey] > 0]
        has_f = [r for r in sel if _finite(r.get("fmax_mhz"))]
        no_f = [r for r in sel if not _finite(r.get("fmax_mhz"))]
        if has_f:
            sc = ax.scatter([r[area] for r in has_f], [r[ykey] for r in has_f],
                            c=[r["fmax_mhz"] for r in has_f], cmap="viridis", zorder=3)
            fig.colorbar(sc, ax=ax, label="fmax (MHz)")
        if no_f:
            ax.scatter([r[area] for r in no_f], [r[ykey] for r in no_f], c="tab:blue", zorder=3,
                       label="no fmax (synthesis only)")
        front = pareto_front(sel, area, ykey)
        ax.step([r[area] for r in front], [r[ykey] for r in front], where="post", c="tab:red",
                label="Pareto front")
        for r in front:
            ax.annotate(f"{r['array']} {r['nm']} b{r['bits']}", (r[area], r[ykey]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"area ({area})")
        ax.set_ylabel(ylabel)
        if sel:             # explicit finite limits: autoscaling one point flaked in parallel CI runs
            ax.set_yscale("log")
            xlo, xhi = _padded([r[area] for r in sel], log=False)
            ax.set_xlim(xlo, xhi)
            # fixed ticks: MaxNLocator's NaN step ("arange: cannot compute length") flaked in
            # parallel test runs even with finite limits
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(
                [round(v) for v in (xlo + (xhi - xlo) * i / 4 for i in range(5))]))
            ax.set_ylim(*_padded([r[ykey] for r in sel], log=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if not ok:              # nothing to draw (e.g. model-only sweeps have no area): a note, no axes
        for ax in axes[0]:
            ax.axis("off")
        axes[0][0].text(0.5, 0.5, "no point with area and cycles", ha="center", transform=axes[0][0].transAxes)
    fig.suptitle("nmaccel sweep: area vs cycles vs fmax")
    # fixed margins: tight_layout's trial layout sometimes shrank an axes to nothing and its tick
    # locator failed (seen only in parallel test runs)
    fig.subplots_adjust(left=0.1, right=0.95, bottom=0.12, top=0.88, wspace=0.35)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _prepare_out(out):
    out = Path(out)
    require(not out.is_symlink(), f"output {out} is a symlink: give a plain directory")
    require(not out.exists() or out.is_dir(), f"output {out} exists and is not a directory: "
            "give a new or existing sweep directory")
    (out / "cache").mkdir(parents=True, exist_ok=True)
    return out


def run_sweep(grid, out, *, workers=None, cluster=None, timeout=10, progress=True, argv=None):
    """Run (or resume) a sweep; return {'rows', 'computed', 'cached', 'paths'}."""
    points, tasks = plan(grid)
    out = _prepare_out(out)
    cache = out / "cache"
    results, todo = {}, []
    for t in tasks:
        f = cache / f"{t.key}.json"
        if f.is_file():
            try:
                results[t.key] = json.loads(f.read_text())["result"]
                continue
            except (ValueError, KeyError):
                pass                   # a damaged cache entry is recomputed
        todo.append(t)
    cached = len(tasks) - len(todo)
    if todo:
        # synthesis first (long), then simulations
        todo.sort(key=lambda t: t.kind != "synth")
        with _Executor(workers, cluster, timeout) as pool, \
                tqdm(total=len(tasks), initial=cached, desc="sweep", unit="job",
                     quiet=not progress) as bar:
            futs = {pool.submit(run_task, t): t for t in todo}
            for fut in cf.as_completed(futs):
                t = futs[fut]
                try:
                    res = fut.result()
                except Exception as exc:      # a crashed job is recorded, the sweep goes on
                    res = {"status": "error", "message": f"{type(exc).__name__}: {exc}".splitlines()[0]}
                results[t.key] = res
                if res.get("status") != "error" or "RTL disagrees" in res.get("message", ""):
                    _write_json(cache / f"{t.key}.json", {"task": asdict(t), "result": res})
                bar.update(1)
    rows = [_row(e, results) for e in points]
    prov = provenance(argv)
    paths = {"csv": out / "sweep.csv", "json": out / "sweep.json", "png": out / "pareto.png"}
    _write_json(paths["json"], {"provenance": prov, "grid": asdict(grid), "rows": rows,
                                "tasks": {"total": len(tasks), "cached": cached,
                                          "computed": len(todo)}})
    tmp = paths["csv"].with_name("sweep.csv.tmp")
    with open(tmp, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        wr.writeheader()
        for r in rows:
            wr.writerow({k: r.get(k, "") for k in CSV_COLUMNS})
    os.replace(tmp, paths["csv"])
    plot(rows, paths["png"])
    return {"rows": rows, "computed": len(todo), "cached": cached, "paths": paths}
