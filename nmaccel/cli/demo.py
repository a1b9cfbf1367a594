"""`nmaccel demo`: the main job end to end on a real MiniLM layer (library: nmaccel.run.demo)."""
import json

from tabulate import tabulate

from nmaccel.cli.sim import _parse_pair
from nmaccel.errors import NmaccelError
from nmaccel.run.demo import DEFAULT_LAYER, TARGETS, DemoConfig, run_demo, summary_rows

EXAMPLE = """example:
  nmaccel demo                                   # 2:4 INT4 g128 on a 1x1-array top, ECP5-85k
  nmaccel demo --array 2x2 --nm 4:8 --bits 8 --out /tmp/d --vcd /tmp/d/top.vcd --vcd-cycles 0:500
  nmaccel demo --no-pnr --json                   # synthesis only, JSON report on stdout
  nmaccel demo --no-pnr --vcd top.vcd --vcd-cycles 1000:1400 --vcd-backend verilator
"""


def cmd_demo(args):
    rows, cols = _parse_pair(args.array, "x", "--array", "1x1 (rows x cols)")
    n_keep, m_group = _parse_pair(args.nm, ":", "--nm", "2:4 (n_keep:m_group)")
    a, b = _parse_pair(args.vcd_cycles, ":", "--vcd-cycles", "0:2000 (first:last cycle)")
    cfg = DemoConfig(rows=rows, cols=cols, n_max=args.n_max, m_max=args.m_max, n_keep=n_keep, m_group=m_group,
                     bits=args.bits, group_size=args.group_size, tokens=args.tokens, layer=args.layer,
                     target=args.target, pnr=not args.no_pnr, verilator=not args.no_verilator,
                     seed=0, vcd=args.vcd, vcd_cycles=(a, b), vcd_backend=args.vcd_backend)
    quiet = args.quiet or args.json
    report = run_demo(cfg, args.out, quiet=quiet)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(tabulate(summary_rows(report), headers=("", "figure", "value")))
    if not report["all_exact"]:
        raise NmaccelError("RTL outputs differ from the golden model: see the runs in "
                           f"{report['artefacts']['report_md']}")
    return 0


def register_cli(subparsers):
    p = subparsers.add_parser(
        "demo", help="the main job end to end on a real MiniLM layer: pack, RTL vs golden, dense INT8 "
        "baseline, Verilog, synthesis + P&R, one report",
        description=__doc__.split(":", 1)[1].strip() + " Prunes and quantizes the layer, runs it on the "
        "accelerator top in PyRTL and Verilator against the golden model, runs the same layer dense INT8 "
        "on the same top, exports Verilog, synthesizes / places and routes it, and writes report.json, "
        "report.md and report.png under --out.",
        epilog=EXAMPLE, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--array", default="1x1", help="systolic array rows x cols of the top (default 1x1, "
                   "so synthesis and place-and-route stay short)")
    p.add_argument("--n-max", type=int, default=4, help="multiplier lanes per PE (default 4)")
    p.add_argument("--m-max", type=int, default=8, help="largest N:M group per PE (default 8)")
    p.add_argument("--nm", default="2:4", help="N:M sparsity n_keep:m_group (default 2:4)")
    p.add_argument("--bits", type=int, default=4, choices=(4, 8), help="weight bits (default 4, group scales)")
    p.add_argument("--group-size", type=int, default=128, help="INT4 scale group along K (default 128)")
    p.add_argument("--tokens", type=int, default=16, help="real MiniLM tokens through the layer (default 16)")
    p.add_argument("--layer", default=DEFAULT_LAYER, help=f"MiniLM linear layer (default {DEFAULT_LAYER})")
    p.add_argument("--target", default="ecp5", choices=TARGETS, help="FPGA family (default ecp5)")
    p.add_argument("--no-pnr", action="store_true", help="synthesis only: no place and route, no fmax")
    p.add_argument("--no-verilator", action="store_true", help="PyRTL only (skip the Verilator runs)")
    p.add_argument("--vcd", help="write a VCD of the top (the sparse run) to this file")
    p.add_argument("--vcd-cycles", default="0:2000", help="cycle window A:B of --vcd, cycle 0 = the first "
                   "host word offered (default 0:2000)")
    p.add_argument("--vcd-backend", default="pyrtl", choices=("pyrtl", "verilator"),
                   help="simulator that writes --vcd: PyRTL's tracer or a Verilator --trace build (default pyrtl)")
    p.add_argument("--out", default="nmaccel-demo", help="output directory (default ./nmaccel-demo)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars (also off when stdout is not a TTY)")
    p.set_defaults(func=cmd_demo)
    return p
