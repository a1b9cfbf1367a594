"""`nmaccel` console script: the argparse front end. One module per subcommand group in this
package (pack: pack/inspect/storage, compress, profile/plan/compile/run, sim, export, synth) defines `register_cli(subparsers)`,
adding parsers whose `func(args) -> int` runs the command; library modules hold no CLI code.

The error contract (docs/RELIABILITY.md):
- bad input (NmaccelError, argparse): one line on stderr naming the fix, exit 2;
- a tool that ran and failed (ToolFailedError): one line, then the tool's log tail, exit 1;
- anything else (a bug, an unexpected OS error): one line naming the exception, exit 1;
- `--debug` (before the command) re-raises, so Python prints the traceback;
- SIGINT exits 130, SIGTERM/SIGHUP 128 + signal, after removing temporary files.
"""
import importlib
import sys

from nmaccel.cli.argtypes import OneLineParser
from nmaccel.errors import NmaccelError, ToolFailedError
from nmaccel.fileio import Terminated, cleanup_on_signals

SUBCOMMAND_MODULES = [
    "nmaccel.cli.pack",
    "nmaccel.cli.compress",
    "nmaccel.cli.sim",
    "nmaccel.cli.export",
    "nmaccel.cli.synth",
    "nmaccel.cli.plan",
    "nmaccel.cli.demo",
    "nmaccel.cli.sweep",
]


def build_parser():
    parser = OneLineParser(
        prog="nmaccel",
        description="N:M sparse INT4/INT8 matmul accelerator toolkit (pack, golden, PyRTL, Verilog, synthesis)")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of any error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
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
        names = ", ".join(sorted(parser._subparsers._group_actions[0].choices))
        print(f"nmaccel: error: choose a command ({names}); see `nmaccel --help`", file=sys.stderr)
        return 2
    prog = f"nmaccel {args.command}"
    try:
        with cleanup_on_signals():
            return int(args.func(args) or 0)
    except Terminated as exc:
        print(f"{prog}: terminated by signal {exc.signum}; no partial output was left", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no partial output was left", file=sys.stderr)
        return 130
    except ToolFailedError as exc:
        if args.debug:
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        if exc.log_tail:
            print(exc.log_tail.rstrip(), file=sys.stderr)
        return 1
    except NmaccelError as exc:
        if args.debug:
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print(f"{prog}: error: out of memory: use smaller sizes (--tokens, --rows/--cols) or a machine "
              "with more memory", file=sys.stderr)
        return 1
    except Exception as exc:     # a bug or an unexpected OS error: one line, traceback with --debug
        if args.debug:
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(rerun with `nmaccel --debug ...` for the traceback and report it)", file=sys.stderr)
        return 1


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
