"""Simulation driver of the systolic array: `run_tile`, `run_gemm`.

`run_tile(packed, x_q, cfg)` (and `run_tiles` for back-to-back tiles) lays a weight tile onto the array (golden `load_plan`), builds the
cycle-by-cycle input stream (config load, weight load, activation steps, drain), simulates the
PyRTL array and returns the int64 outputs (T, out), which must equal `nmaccel.golden.gemm`.

Simulators: "compiled" (default) pyrtl.CompiledSimulation driven through its C kernel with the
whole input stream in one call (numpy-packed input limbs; works around CompiledSimulation.run
recording step 0's outputs for every step), "fast" pyrtl.FastSimulation, "python"
pyrtl.Simulation. Elaborated simulators are cached per (ArrayConfig, simulator): a new tile,
N:M or mode only reloads the runtime registers and weights (no re-elaboration).

`run_gemm` is nmaccel.run.runner.run_gemm (a whole GEMM on the accelerator top). The `nmaccel sim`
command lives in nmaccel.cli.sim.
"""
import ctypes
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyrtl
import pyrtl.compilesim as cs

from nmaccel.arch import layout
from nmaccel.arch.config import MODE_CODE, ArrayConfig
from nmaccel.arch.layout import to_signed
from nmaccel.errors import require
from nmaccel.golden import array as ga
from nmaccel.golden.gemm import check_activations
from nmaccel.hdl.array import input_widths, make_array_top, output_widths
from nmaccel.run import runner as top_runner

SIMULATORS = ("compiled", "fast", "python")
MODEL_SUFFIXES = (".safetensors", ".gguf", ".npy", ".npz")
_CACHE = OrderedDict()
_CACHE_SIZE = 6
IDLE_TAIL = 8     # idle cycles simulated after the scheduled end of a job


@dataclass
class TileResult:
    outputs: np.ndarray         # int64 (T, out)
    cycles: int
    simulator: str
    cycles_per_second: float
    mode: str
    n_keep: int
    m_group: int
    elaboration_s: float = 0.0


def input_stream(cfg, plans, x_list):
    """Per-port values for every cycle of a job of one or more tiles, as uint64 limbs.

    Cycle 0: config load. Tile j (schedule: golden `tile_schedule`): weight rows rows-1 .. 0 on
    cycles load_start[j] .. + rows - 1 (codebooks loaded on the first, and again whenever a
    column's table changes), w_swap (double-buffered arrays) on stream_start[j] - 1, steps from
    stream_start[j]. Returns (dict port -> limbs (cycles, n), output start cycle per tile, steps
    per tile).
    """
    xs_list = [ga.activation_steps(p, x, cfg) for p, x in zip(plans, x_list)]
    steps = [xs.shape[0] for xs in xs_list]
    ls, ss, ncyc = ga.tile_schedule(cfg, steps)
    widths = input_widths(cfg)
    s = {port: np.zeros((ncyc, -(-w // 64)), dtype=np.uint64) for port, w in widths.items()}
    plan0 = plans[0]
    s["cfg_load"][0], s["cfg_mode"][0] = 1, MODE_CODE[plan0.mode]
    s["cfg_n_keep"][0], s["cfg_m_group"][0] = plan0.n_keep, plan0.m_group
    pe_word, cb_word = layout.pe_word_layout(cfg), layout.codebook_layout(cfg)
    R, C = cfg.rows, cfg.cols
    nbytes = s["x_in_0"].shape[1] * 8
    for plan, xs, l0, t0, n in zip(plans, xs_list, ls, ss, steps):
        words = pe_word.to_words(64, lane={k: v.reshape(R * C, -1) for k, v in
                                           (("code", plan.codes), ("index", plan.index),
                                            ("keep", plan.keep.astype(np.int64)))}).reshape(R, C, -1)
        tabs = (None if plan.tables is None else
                cb_word.to_words(64, entry=plan.tables.reshape(R * C, -1)).reshape(R, C, -1))
        prev = None
        for i in range(cfg.rows):
            r, t = cfg.rows - 1 - i, l0 + i
            s["w_load"][t] = 1
            for c in range(cfg.cols):
                s[f"w_in_{c}"][t] = words[r, c]
            if tabs is not None:
                if prev is None or not np.array_equal(tabs[r], prev):
                    s["cb_load"][t] = 1
                    for c in range(cfg.cols):
                        s[f"cb_in_{c}"][t] = tabs[r, c]
                    prev = tabs[r]
        if cfg.double_buffer:
            s["w_swap"][t0 - 1] = 1
        s["in_valid"][t0:t0 + n] = 1
        # element k of row r = activation k of every token (token A lowest): little-endian bytes
        raw = np.zeros((n, cfg.rows, nbytes), dtype=np.uint8)
        raw[:, :, :cfg.m_max * cfg.tokens_per_step] = \
            (xs.transpose(0, 1, 3, 2) & 0xFF).astype(np.uint8).reshape(n, cfg.rows, -1)
        limbs = raw.view("<u8")
        for r in range(cfg.rows):
            s[f"x_in_{r}"][t0:t0 + n] = limbs[:, r]
    return s, [t0 + cfg.latency for t0 in ss], steps


class _gcc_o0:
    """Compile CompiledSimulation's C at -O0: 3x faster gcc, same kernel speed (measured 4x4)."""

    class _Shim:
        def __init__(self, real):
            self.real = real

        def check_call(self, args, **kw):
            return self.real.check_call(["-O0" if a == "-O1" else a for a in args], **kw)

        def __getattr__(self, name):
            return getattr(self.real, name)

    def __enter__(self):
        self.cs, self.real = cs, cs.subprocess
        cs.subprocess = self._Shim(self.real)

    def __exit__(self, *exc):
        self.cs.subprocess = self.real


class _Runner:
    """An elaborated array with one simulator, reusable across tile jobs."""

    def __init__(self, cfg, simulator, trace=False):
        require(simulator in SIMULATORS, f"unknown simulator {simulator!r}: use one of {SIMULATORS}")
        self.cfg, self.simulator = cfg, simulator
        t = time.perf_counter()
        self.block = pyrtl.Block()
        with pyrtl.set_working_block(self.block):
            make_array_top(cfg)
            if simulator == "compiled":
                pyrtl.optimize()    # ~30% fewer nets: shorter C compile (no gain for "fast")
            outs = [w for w in self.block.wirevector_subset(pyrtl.Output)]
            if simulator == "compiled":
                keep = outs if trace else [w for w in outs if w.name == "out_valid"]
                tracer = pyrtl.SimulationTrace(wires_to_track=keep + (
                    list(self.block.wirevector_subset(pyrtl.Input)) if trace else []), block=self.block)
                with _gcc_o0():
                    self.sim = pyrtl.CompiledSimulation(tracer=tracer, block=self.block)
            else:
                tracer = pyrtl.SimulationTrace(block=self.block) if trace else \
                    pyrtl.SimulationTrace(wires_to_track=outs, block=self.block)
                cls = pyrtl.FastSimulation if simulator == "fast" else pyrtl.Simulation
                self.sim = cls(tracer=tracer, block=self.block)
        self.elaboration_s = time.perf_counter() - t
        self.trace = trace

    def run(self, stream, ncyc):
        """Simulate ncyc cycles of `stream` (port -> uint64 limbs); returns port -> values (ncyc,)."""
        if self.simulator == "compiled" and not self.trace:
            return self._run_compiled(stream, ncyc)
        outs = {p: np.zeros(ncyc, dtype=object) for p in output_widths(self.cfg)}
        ints = {}
        for name, limbs in stream.items():
            v = limbs[:, -1].astype(object)
            for i in reversed(range(limbs.shape[1] - 1)):
                v = (v << 64) | limbs[:, i].astype(object)
            ints[name] = [int(a) for a in v]
        for t in range(ncyc):
            self.sim.step({n: ints[n][t] for n in ints})
            for p in outs:
                outs[p][t] = self.sim.inspect(p)
        return outs

    def _run_compiled(self, stream, ncyc):
        sim = self.sim
        in_len, out_len = sim._inputs_array_length, sim._outputs_array_length
        ins = np.zeros((ncyc, in_len), dtype=np.uint64)
        for name, limbs in stream.items():
            md = sim._inputs_metadata[name]
            ins[:, md.start:md.start + md.length] = limbs[:, :md.length]
        outs_arr = np.zeros((ncyc, out_len), dtype=np.uint64)
        ptr = ctypes.POINTER(ctypes.c_uint64)
        sim._sim_run_all.argtypes = [ctypes.c_uint64, ptr, ptr]
        sim._sim_run_all(ncyc, ins.ctypes.data_as(ptr), outs_arr.ctypes.data_as(ptr))
        res = {}
        for name in output_widths(self.cfg):
            md = sim._outputs_metadata[name]
            v = np.zeros(ncyc, dtype=object)
            for limb in reversed(range(md.length)):
                v = (v << 64) | outs_arr[:, md.start + limb].astype(object)
            res[name] = v
        return res


def get_runner(cfg, simulator="compiled"):
    """Cached elaborated array + simulator for (cfg, simulator)."""
    key = (cfg, simulator)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    runner = _Runner(cfg, simulator)
    _CACHE[key] = runner
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return runner


def run_tile(packed, x_q, cfg, *, simulator="compiled", trace=None, mode=None):
    """Simulate one weight tile on the array `cfg`: outputs (T, out) int64 and cycle count.

    `packed` must fit the array (out <= cols, K <= rows * window); `x_q` INT8 (T, in).
    `trace`: a path or text file to write a VCD of the run (every wire with "fast"/"python",
    ports only with "compiled"). Bad input raises NmaccelError before simulation starts.
    """
    res = run_tiles([(packed, x_q)], cfg, simulator=simulator, trace=trace, mode=mode)
    return TileResult(outputs=res.outputs[0], cycles=res.cycles, simulator=res.simulator,
                      cycles_per_second=res.cycles_per_second, mode=res.mode, n_keep=res.n_keep,
                      m_group=res.m_group, elaboration_s=res.elaboration_s)


def run_tiles(tiles, cfg, *, simulator="compiled", trace=None, mode=None):
    """Simulate tiles [(packed, x_q), ...] back to back (schedule: golden `tile_schedule`).

    More than one tile needs a double-buffered array (ArrayConfig(double_buffer=True)): the next
    tile's weights load while the current one streams. All tiles share one mode and N:M (the
    runtime registers). Returns a TileResult whose `.outputs` is the list of per-tile outputs.
    """
    require(isinstance(cfg, ArrayConfig), f"cfg must be an ArrayConfig, got {type(cfg).__name__}")
    require(simulator in SIMULATORS, f"unknown simulator {simulator!r}: use one of {', '.join(SIMULATORS)}")
    require(len(tiles) >= 1, "no tiles to run")
    require(len(tiles) == 1 or cfg.double_buffer,
            f"{len(tiles)} back-to-back tiles need a double-buffered array: "
            "use ArrayConfig(double_buffer=True) or run them one by one")
    plans, xs = [], []
    for packed, x_q in tiles:
        x = check_activations(x_q, packed.in_features, cfg.act_bits)
        require(x.shape[0] >= 1, "no tokens: x_q needs at least one row")
        plans.append(ga.load_plan(packed, cfg, mode))
        xs.append(x)
    key = (plans[0].mode, plans[0].n_keep, plans[0].m_group)
    require(all((p.mode, p.n_keep, p.m_group) == key for p in plans),
            "back-to-back tiles must share one mode and N:M (the runtime registers): "
            "split the job where the configuration changes")
    stream, _, steps = input_stream(cfg, plans, xs)
    # Run past the scheduled end (idle inputs) so late outputs are seen: cycles are measured from
    # the array's out_valid, never taken from the length of the stream.
    ncyc = len(stream["cfg_load"]) + cfg.latency + IDLE_TAIL
    stream = {k: np.concatenate([v, np.zeros((ncyc - len(v), v.shape[1]), dtype=v.dtype)])
              for k, v in stream.items()}
    runner = _Runner(cfg, simulator, trace=True) if trace is not None else get_runner(cfg, simulator)
    t = time.perf_counter()
    outs = runner.run(stream, ncyc)
    dt = time.perf_counter() - t
    valid = np.nonzero(np.asarray(outs["out_valid"], dtype=np.int64))[0]
    if valid.size != sum(steps):
        raise RuntimeError(f"the array raised out_valid on {valid.size} cycles, expected {sum(steps)} "
                           f"(one per activation step): first at {valid.tolist()[:8]}")
    results, at = [], 0
    for plan, x, n, (packed, _) in zip(plans, xs, steps, tiles):
        cyc = valid[at:at + n]
        at += n
        cols = [to_signed(np.asarray(outs[f"y_out_{c}"][cyc], dtype=object), cfg.acc_bits)
                for c in range(cfg.cols)]
        y = np.stack(cols, axis=1)
        if plan.int4:
            yb = np.stack([to_signed(np.asarray(outs[f"y_out_b_{c}"][cyc], dtype=object),
                                   cfg.acc_bits) for c in range(cfg.cols)], axis=1)
            y = np.stack([y, yb], axis=1).reshape(n * 2, cfg.cols)
        results.append(y[:x.shape[0], :packed.out_features].astype(np.int64))
    measured = int(valid[-1]) + 1          # the last sums leave the array on cycle measured - 1
    if trace is not None:
        top_runner.write_vcd(runner.sim.tracer, trace)
    return TileResult(outputs=results, cycles=measured, simulator=simulator,
                      cycles_per_second=ncyc / dt if dt > 0 else float("inf"),
                      mode=plans[0].mode, n_keep=plans[0].n_keep, m_group=plans[0].m_group,
                      elaboration_s=runner.elaboration_s)


def run_gemm(packed, x_q, array_cfg, **kw):
    """`nmaccel.run.runner.run_gemm`: a whole GEMM on the accelerator top."""
    return top_runner.run_gemm(packed, x_q, array_cfg, **kw)
