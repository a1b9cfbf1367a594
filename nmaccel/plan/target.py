"""The product top a plan targets: array / top elaboration, measured fmax, cycles and activity.

fmax is never computed here: it is read from a committed `benchmarks/results/*.json` file written
by the place-and-route study of that top (row with block "top", the array shape and pipeline
configuration), and the file, row and its top parameters travel with every number derived from it.

Cycles come from the validated cycle model (nmaccel.golden.cyclemodel, equal to the RTL's own
valid-signal count on a sweep of shapes; `nmaccel run --backend pyrtl|verilator` rechecks it per
layer). Activity (host words, array steps, buffer accesses) is counted by the same replay.

Energy is an ESTIMATE: activity counts x a per-operation table (Horowitz, "Computing's energy
problem", ISSCC 2014, 45 nm): INT8 mult 0.2 pJ, INT8 add 0.03 pJ, INT32 add 0.1 pJ, INT32 mult
3.1 pJ, 64-bit access of an 8 KB SRAM 10 pJ, DRAM 1.3-2.6 nJ per 64 bits. Registers, control,
clock tree and the host's float work (norms, attention, embeddings) are not counted.
"""
import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from nmaccel.arch.config import ArrayConfig, RuntimeConfig, TopConfig, pipeline_options
from nmaccel.errors import require
from nmaccel.golden import cyclemodel as cm

REPO = Path(__file__).resolve().parents[2]
FMAX_FILES = ("benchmarks/results/fpga_study.json", "benchmarks/results/fmax_study.json")
# Horowitz ISSCC 2014, 45 nm, pJ per operation
HOROWITZ_PJ = {"int8_mult": 0.2, "int8_add": 0.03, "int32_add": 0.1, "int32_mult": 3.1,
               "sram64_8kb": 10.0, "dram64_low": 1300.0, "dram64_high": 2600.0}
ENERGY_SOURCE = ("estimate: counted activity x Horowitz, ISSCC 2014 (45 nm) per-operation energies; "
                 "registers, control, clock and host float work not counted")


@dataclass(frozen=True)
class Target:
    """What a plan is made for: array shape, pipeline option, top buffer sizes."""
    rows: int = 2
    cols: int = 2
    pipeline: str = "all"          # "all" (every PIPELINE_FLAGS register) or "default" (none)
    t_max: int = 64
    k_tiles_max: int = 192
    n_tiles_max: int = 768
    host_bits: int = 64
    raw_bits: int = 48

    def __post_init__(self):
        require(self.pipeline in ("all", "default"),
                f"pipeline {self.pipeline!r}: use 'all' or 'default' (the fmax study's configurations)")

    @property
    def array(self):
        return ArrayConfig(rows=self.rows, cols=self.cols, **pipeline_options(self.pipeline == "all"))

    @property
    def top(self):
        return TopConfig(array=self.array, host_bits=self.host_bits, t_max=self.t_max,
                         k_tiles_max=self.k_tiles_max, n_tiles_max=self.n_tiles_max,
                         group_scales=True, raw_bits=self.raw_bits)

    def as_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        require(isinstance(d, dict) and set(d) <= set(cls.__dataclass_fields__),
                f"target {d!r} is not a plan target: regenerate the plan")
        return cls(**d)

    @classmethod
    def for_shapes(cls, shapes, **kw):
        """The smallest buffers holding every (K, N_out) of `shapes` at the densest window."""
        t = cls(**kw)
        a = t.array
        tile_k = a.rows * cm.window_groups(1, 1, a.n_max, a.m_max)
        k_t = max(-(-k // tile_k) for k, _ in shapes)
        n_t = max(-(-n // a.cols) for _, n in shapes)
        return cls(**{**t.as_dict(), "k_tiles_max": k_t, "n_tiles_max": n_t})


def fmax(target, path=None):
    """(fmax_mhz, source dict) of the top row matching the target's array and pipeline option."""
    files = [Path(path)] if path else [REPO / f for f in FMAX_FILES]
    shape = f"{target.rows}x{target.cols}"
    for f in files:
        if not f.is_file():
            continue
        rows = json.loads(f.read_text())
        rows = rows if isinstance(rows, list) else rows.get("rows", [])
        for r in rows:
            if r.get("block") == "top" and r.get("shape") == shape and r.get("config") == target.pipeline:
                return float(r["fmax_mhz"]), {
                    "file": str(f.relative_to(REPO)) if f.is_relative_to(REPO) else str(f),
                    "row": {k: r[k] for k in ("block", "shape", "config", "fmax_mhz", "lut", "ff", "dsp")
                            if k in r},
                    "note": "placed-and-routed top of that study (its own TopConfig buffers, see the "
                            "study script); the plan's top has larger buffers (k_tiles_max, n_tiles_max)"}
    require(False, f"no measured fmax for a {shape} top with pipeline {target.pipeline!r} in "
            f"{', '.join(str(f) for f in files)}: run benchmarks/fmax_study.py --blocks top for that "
            "array, or use a measured one (--array 2x2)")


def mode_of(cfg):
    """Array mode that runs a configuration (same rule as nmaccel.golden.array.tile_mode)."""
    if cfg["quantizer"] == "lloyd-max":
        return "codebook"
    return "int4" if cfg["bits"] <= 4 else "int8"


def kt_per_group(cfg, target, K):
    a = target.array
    tile_k = a.rows * cm.window_groups(cfg["n_keep"], cfg["m_group"], a.n_max, a.m_max) * cfg["m_group"]
    n_kt = -(-(-(-K // cfg["m_group"]) * cfg["m_group"]) // tile_k)
    if cfg.get("group_size"):
        require(cfg["group_size"] % tile_k == 0,
                f"group size {cfg['group_size']} splits a K tile of {tile_k} columns: use a multiple of {tile_k}")
        return cfg["group_size"] // tile_k
    return n_kt


def gemm_cycles(cfg, target, T, K, N, activity=None):
    """Modelled cycles of a (T, K, N) GEMM of configuration `cfg` on the target top; `activity`
    (a dict) receives the replay's counts (see nmaccel.golden.cyclemodel.job_cycles)."""
    key = (mode_of(cfg), cfg["n_keep"], cfg["m_group"], kt_per_group(cfg, target, K), target, T, K, N)
    cyc, act = _replay(key)
    if activity is not None:
        for k, v in act.items():
            activity[k] = activity.get(k, 0) + v
    return cyc


@functools.lru_cache(maxsize=4096)
def _replay(key):
    mode, n_keep, m_group, gk, target, T, K, N = key
    rt = RuntimeConfig(mode, n_keep, m_group).check(target.array)
    act = {}
    return cm.cycles((T, K, N), target.array, rt, target.top, kt_per_group=gk, activity=act), act


def energy_pj(activity, target, mode):
    """Energy estimate (pJ) of counted activity: {'compute', 'sram', 'dram_low', 'dram_high'}."""
    a, p, e = target.array, target.top, HOROWITZ_PJ
    tps = 2 if mode == "int4" else 1
    lanes = a.rows * a.cols * a.n_max
    steps = activity.get("steps", 0)
    compute = (steps * lanes * (e["int8_mult"] + tps * e["int32_add"])          # PE products, adds
               + steps * a.cols * tps * e["int32_add"]                          # K-tile accumulation
               + activity.get("gs_steps", 0) * a.cols * tps * e["int32_mult"]   # group-scale products
               + activity.get("out_steps", 0) * a.cols * tps * e["int32_add"])  # epilogue bias add
    words_in = sum(v for k, v in activity.items() if k.startswith("words_") and k != "words_out")
    h64 = p.host_bits / 64
    sram = e["sram64_8kb"] * (
        steps * p.act_tok_bits * tps / 64                        # activation buffer reads
        + (activity.get("words_act", 0) + 2 * activity.get("words_weight", 0)) * h64   # writes (+ stage reads)
        + activity.get("out_steps", 0) * p.out_rec_bits / 64 + activity.get("words_out", 0) * h64)
    link = (words_in + activity.get("words_out", 0)) * h64
    return {"compute": compute, "sram": sram, "dram_low": link * e["dram64_low"],
            "dram_high": link * e["dram64_high"]}
