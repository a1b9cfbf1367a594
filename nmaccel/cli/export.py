"""`nmaccel export`: Verilog, port description and memory images of a block; the block
arguments shared with `nmaccel synth`."""
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import pyrtl

from nmaccel.cli import argtypes
from nmaccel.errors import require
from nmaccel.fileio import check_output_dir, output_dir
from nmaccel.pack.format import PackedWeights
from nmaccel.verilog.export import (BLOCKS, build_block, build_from_builder, lint, memory_images,
                                    parse_module, port_table, verilog_text)


def add_block_args(p):
    p.add_argument("--block", choices=BLOCKS, default="top",
                   help="which hardware block (default: the accelerator top)")
    p.add_argument("--builder", metavar="MODULE:FUNC",
                   help="instead of --block: a function building any PyRTL design")
    p.add_argument("--rows", type=argtypes.positive, default=None, help="array rows (default: the product top, nmaccel.arch.config.PRODUCT_ARRAY; 4 when other array options are given)")
    p.add_argument("--cols", type=argtypes.positive, default=None, help="array columns (default 4)")
    p.add_argument("--n-max", type=argtypes.positive, default=None, help="lanes per PE (default 4)")
    p.add_argument("--m-max", type=argtypes.m_max, default=None, help="largest N:M group (default 8)")
    p.add_argument("--modes", default=None, help="comma list of int8,int4,codebook (default int8,int4)")
    p.add_argument("--pipeline", action="store_true",
                   help="every PE pipeline register (mux, operand, DSP, partial sum, product)")
    p.add_argument("--t-max", type=argtypes.positive, default=None, help="top: array steps per job")
    p.add_argument("--k-tiles-max", type=argtypes.positive, default=None, help="top: K tiles per job")
    p.add_argument("--n-tiles-max", type=argtypes.positive, default=None, help="top: N tiles per job")
    p.add_argument("--host-bits", type=argtypes.positive, default=None,
                   help="top: host stream width (default 64: 2 * 64 + 6 pins of the ECP5-85k's 205)")
    p.add_argument("--module-name", default=None, help="Verilog module name")


def build_from_args(args):
    """Build the design the CLI arguments name; return its module name."""
    pyrtl.reset_working_block()
    if args.builder:
        name = build_from_builder(args.builder)
    else:
        modes = tuple(m.strip() for m in args.modes.split(",")) if args.modes else None
        name = build_block(args.block, rows=args.rows, cols=args.cols, n_max=args.n_max,
                           m_max=args.m_max, modes=modes, pipeline=args.pipeline or None,
                           t_max=args.t_max, k_tiles_max=args.k_tiles_max,
                           n_tiles_max=args.n_tiles_max, host_bits=getattr(args, "host_bits", None))
    return args.module_name or name


def cmd_export(args):
    inputs = [args.packed] if args.packed else []
    check_output_dir(args.out, inputs)          # before building anything
    if args.packed:
        require(args.word_bits in (8, 16, 32, 64), f"--word-bits {args.word_bits}: use 8, 16, 32 or 64")
    out = Path(args.out)
    name = build_from_args(args)
    text = verilog_text(None, module_name=name, add_reset=not args.no_reset)
    mod, ports, mems = parse_module(text)
    files = {}
    if args.packed:
        require(args.word_bits in (8, 16, 32, 64),
                f"--word-bits {args.word_bits}: use 8, 16, 32 or 64")
        packed = PackedWeights.load(args.packed)
        files.update({out / k: v for k, v in memory_images(packed, args.word_bits).items()})
    vpath = out / f"{mod}.v"
    files[vpath] = text
    desc = {"module": mod, "reset": not args.no_reset,
            "ports": [asdict(p) for p in ports], "memories": [asdict(m) for m in mems]}
    files[out / f"{mod}.ports.json"] = json.dumps(desc, indent=1) + "\n"
    files[out / f"{mod}.ports.md"] = (f"# Ports of `{mod}`\n\nClock `clk` (rising edge)"
                                      + ("" if args.no_reset else
                                         ", synchronous active-high reset `rst`")
                                      + ".\n\n" + port_table(ports) + "\n")
    warnings = []
    if args.lint:
        with tempfile.TemporaryDirectory(prefix="nmaccel_export_") as tmp:
            probe = Path(tmp) / vpath.name
            probe.write_text(text)
            warnings = lint(probe, top=mod)
        require(not warnings, f"verilator lint of {mod}: {len(warnings)} warning(s), first: "
                f"{warnings[0] if warnings else ''}; fix the design or document a waiver in "
                "docs/LINT_WAIVERS.md")
    with output_dir(args.out, inputs, manifest_extra={"command": "export", "module": mod}) as tmp:
        for f, data in files.items():
            (tmp / Path(f).relative_to(out)).write_bytes(data.encode() if isinstance(data, str) else data)
    print(f"wrote {vpath} ({len(ports)} ports, {len(mems)} memories)"
          + (", lint clean" if args.lint else ""))
    for f in sorted(files):
        if f != vpath:
            print(f"wrote {f}")
    return 0


def register_cli(subparsers):
    p = subparsers.add_parser("export", help="write Verilog, port description, memory images",
                              description="Export a hardware block as Verilog (+ port "
                              "description, + $readmemh images of a packed workload).")
    add_block_args(p)
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--packed", help="packed weights file: also write <section>.memh images")
    p.add_argument("--word-bits", type=int, default=32, help="memory image word width")
    p.add_argument("--no-reset", action="store_true", help="omit the synchronous rst port")
    p.add_argument("--lint", action="store_true", help="fail unless verilator -Wall is clean")
    p.set_defaults(func=cmd_export)
