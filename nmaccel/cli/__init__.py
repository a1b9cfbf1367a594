"""`nmaccel` console script: the argparse front end. One module per subcommand group in this
package (pack: pack/inspect/storage, sim, export, synth) defines `register_cli(subparsers)`,
adding parsers whose `func(args) -> int` runs the command; library modules hold no CLI code. Bad input raises NmaccelError: one line on stderr, exit 2.
"""
import argparse
import importlib
import sys

from nmaccel.errors import NmaccelError

SUBCOMMAND_MODULES = [
    "nmaccel.cli.pack",
    "nmaccel.cli.sim",
    "nmaccel.cli.export",
    "nmaccel.cli.synth",
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="nmaccel",
        description="N:M sparse INT4/INT8 matmul accelerator toolkit (pack, golden, PyRTL, Verilog, synthesis)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:   # feature not built yet
                continue
            raise
        if hasattr(mod, "register_cli"):
            mod.register_cli(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NmaccelError as exc:
        print(f"nmaccel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
