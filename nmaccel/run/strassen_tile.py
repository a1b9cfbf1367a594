"""Simulation driver of the Strassen block-mode tile (nmaccel.hdl.strassen_tile): `run_strassen_tile`
builds the per-cycle port values of one job (`tile_stream`), simulates the elaborated tile (one
cached at a time) and returns its outputs and measured cycles; golden twin
nmaccel.golden.strassen_tile."""
import time
from dataclasses import dataclass

import numpy as np
import pyrtl

from nmaccel.arch import layout
from nmaccel.arch.config import COMBINER_LATENCY, PREADD_LATENCY, StrassenTileConfig
from nmaccel.errors import require
from nmaccel.golden import array as ga
from nmaccel.golden import strassen_tile as gst
from nmaccel.golden.gemm import check_activations
from nmaccel.hdl.strassen_tile import QUADS, input_widths, make_strassen_tile_top
from nmaccel.pack.strassen import pad_to, padded_shape, quadrants

SIMULATORS = ("fast", "python")


@dataclass
class StrassenTileResult:
    outputs: np.ndarray     # int64 (T, out)
    cycles: int             # measured: last product into the combiner + COMBINER_LATENCY
    products: int
    strassen: bool
    cycles_per_second: float


def tile_stream(cfg, x, w, strassen):
    """Per-cycle input values {port: [int] * cycles} of one job, and (t, k, n, ncyc).

    Schedule: golden `tile_schedule` of P back-to-back array tiles of t steps; quadrant rows
    go in PREADD_LATENCY cycles before their array step.
    """
    A = cfg.array
    t, k, n = gst.check_fits(cfg, x.shape, w.shape)
    ops = gst.operands(x, w, strassen)
    ls, ss, total = ga.tile_schedule(A, [t] * len(ops))
    ncyc = total + COMBINER_LATENCY
    s = {p: [0] * ncyc for p in input_widths(cfg)}
    s["cfg_load"][0], s["cfg_strassen"][0] = 1, int(strassen)
    xq = quadrants(pad_to(np.asarray(x, dtype=np.int64), padded_shape(x.shape, 1)))
    pe_word = layout.pe_word_layout(A)
    quad_row = layout.quad_row_layout(cfg)
    for j, (_, wop, _) in enumerate(ops):
        plan = gst.block_plan(cfg, wop)
        for i in range(A.rows):
            cyc = ls[j] + i
            s["w_load"][cyc] = 1
            for c in range(A.cols):
                r = A.rows - 1 - i
                s[f"w_in_{c}"][cyc] = pe_word.encode(lane={"code": plan.codes[r, c], "index": plan.index[r, c],
                                                           "keep": plan.keep[r, c].astype(np.int64)})
        s["w_swap"][ss[j] - 1] = 1
        for i in range(t):
            cyc = ss[j] + i - PREADD_LATENCY
            assert s["in_valid"][cyc] == 0
            s["in_valid"][cyc], s["prod_idx"][cyc], s["tok"][cyc] = 1, j, i
            s["first"][cyc] = int(j == 0)
            for q, blk in zip(QUADS, xq):
                row = np.zeros(cfg.lanes, dtype=np.int64)
                row[:k] = blk[i]
                s[f"a{q}_in"][cyc] = quad_row.encode(x=row)
    return s, (t, k, n, ncyc)


_CACHE = {}
IDLE_TAIL = 8     # idle cycles simulated after the scheduled end of a job


def _simulator(cfg, simulator):
    require(simulator in SIMULATORS, f"unknown simulator {simulator!r}: use one of {SIMULATORS}")
    key = (cfg, simulator)
    if key not in _CACHE:
        block = pyrtl.Block()
        with pyrtl.set_working_block(block):
            make_strassen_tile_top(cfg)
        _CACHE.clear()      # one elaborated tile at a time
        _CACHE[key] = (block, pyrtl.FastSimulation if simulator == "fast" else pyrtl.Simulation)
    return _CACHE[key]


def run_strassen_tile(x_q, w_int, cfg, *, strassen=True, simulator="fast"):
    """Simulate one job y = x_q @ w_int.T on the tile; same hardware for strassen on and off.

    x_q: INT8 (T, K); w_int: INT8 integer weights (out, K) (e.g. `PackedWeights.int_weights()`).
    Returns a StrassenTileResult (outputs int64 (T, out), measured cycles).
    """
    require(isinstance(cfg, StrassenTileConfig),
            f"cfg must be a StrassenTileConfig, got {type(cfg).__name__}")
    w = np.asarray(w_int)
    require(w.ndim == 2 and w.dtype.kind in "iu", "w_int must be a 2-D integer array (out, K): quantize first")
    lo, hi = -(1 << (cfg.weight_bits - 1)), (1 << (cfg.weight_bits - 1)) - 1
    require(w.size == 0 or (int(w.min()) >= lo and int(w.max()) <= hi),
            f"weights span [{w.min()}, {w.max()}], outside INT{cfg.weight_bits} [{lo}, {hi}]: "
            "use 8-bit symmetric quantization")
    x = check_activations(x_q, w.shape[1], cfg.act_bits)
    stream, (t, k, n, ncyc) = tile_stream(cfg, x, w.astype(np.int64), strassen)
    ncyc += IDLE_TAIL          # idle inputs past the schedule: a late product is seen, not cut off
    stream = {p: v + [0] * IDLE_TAIL for p, v in stream.items()}
    block, cls = _simulator(cfg, simulator)
    with pyrtl.set_working_block(block):
        tracer = pyrtl.SimulationTrace(
            wires_to_track=list(block.wirevector_subset(pyrtl.Output)), block=block)
        sim = cls(tracer=tracer, block=block)
        names = list(stream)
        t0 = time.perf_counter()
        valid = []
        for cyc in range(ncyc):
            sim.step({p: stream[p][cyc] for p in names})
            valid.append(sim.inspect("out_valid"))
        dt = time.perf_counter() - t0
        blocks = []
        out_row = layout.block_row_layout(cfg)
        for q in QUADS:
            rows = [out_row.decode(sim.inspect(f"c{q}_out_{i}"))["y"][:n] for i in range(t)]
            blocks.append(np.array(rows, dtype=np.int64).reshape(t, n))
    on = np.nonzero(valid)[0]
    if on.size != t * gst.n_products(strassen):
        raise RuntimeError(f"the array raised out_valid on {on.size} cycles, expected "
                           f"{t * gst.n_products(strassen)} ({gst.n_products(strassen)} products x {t} steps)")
    cycles = int(on[-1]) + 1 + COMBINER_LATENCY
    y = np.block([[blocks[0], blocks[1]], [blocks[2], blocks[3]]])
    return StrassenTileResult(outputs=y[:x.shape[0], :w.shape[0]], cycles=cycles,
                              products=gst.n_products(strassen), strassen=bool(strassen),
                              cycles_per_second=ncyc / dt if dt > 0 else float("inf"))
