"""CLI: `nmaccel profile`, `nmaccel plan`, `nmaccel compile`, `nmaccel run` (whole-model planning)."""
import json
import os

from tabulate import tabulate

from nmaccel.errors import require
from nmaccel.plan import target as tg
from nmaccel.plan.compiler import compile_program, load_program
from nmaccel.plan.policy import plan_file
from nmaccel.plan.profile import CONFIG_SETS, ModelSource, run_profile
from nmaccel.plan.runner import run_program

QUIET_HELP = "no progress bar (also off when stdout is not a TTY)"


def parse_array(text):
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        r = c = 0
    require(r >= 1 and c >= 1, f"--array {text!r}: use ROWSxCOLS, e.g. 2x2")
    return r, c


def _check_new_file(path):
    require(not os.path.islink(path) and (not os.path.exists(path) or os.path.isfile(path)),
            f"{path} is not a regular file path: choose another -o")


def _cmd_profile(args):
    _check_new_file(args.output)
    target = None
    if args.array or args.pipeline != "all":
        r, c = parse_array(args.array or "2x2")
        src = ModelSource(args.model)
        shapes = {tuple(int(v) for v in src.weight(n).shape) for n in src.linear_names()}
        target = tg.Target.for_shapes([(k, o) for o, k in shapes], rows=r, cols=c, pipeline=args.pipeline)
    prof = run_profile(args.model, args.output, quick=args.quick, n_cal=args.calib_tokens,
                       n_sens=args.sens_tokens, prefill_tokens=args.prefill_tokens, n_blocks=args.blocks,
                       configs=CONFIG_SETS[args.configs] if args.configs else None, jobs=args.jobs,
                       sensitivity=not args.no_sensitivity, target=target, progress=not args.quiet)
    print(f"profiled {len(prof['layers'])} layers x {len(prof['configs'])} configurations of "
          f"{prof['model']['spec']} -> {args.output}")
    return 0


def _cmd_plan(args):
    _check_new_file(args.output)
    plan = plan_file(args.profile, args.budget, args.output, args.phase)
    p = plan["predicted"]
    rows = [(k, v) for k, v in p["configs"].items()]
    print(tabulate(rows, headers=["configuration", "layers"]))
    ppl = "n/a (no sensitivity)" if p["ppl_ratio"] is None else f"{p['ppl_ratio']:.4f}"
    print(f"predicted: ppl ratio {ppl}, speedup prefill {p['speedup_prefill']:.3f}x, "
          f"decode {p['speedup_decode']:.3f}x, min SQNR {p['min_sqnr_db']:.2f} dB -> {args.output}")
    return 0


def _cmd_compile(args):
    path = compile_program(args.model, args.plan, args.output,
                           array=parse_array(args.array) if args.array else None, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def _cmd_run(args):
    text = None
    if args.text:
        require(os.path.isfile(args.text), f"--text {args.text}: no such file; pass a UTF-8 text file")
        with open(args.text, encoding="utf-8", errors="strict") as f:
            text = f.read()
    layers = [s for s in (args.layers or "").split(",") if s]
    res = run_program(load_program(args.program), backend=args.backend, rtl_layers=layers,
                      rtl_tokens=args.rtl_tokens, text=text, n_tokens=args.tokens, fmax_file=args.fmax_file)
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "layers" or args.per_layer}, indent=1))
        return 0
    e = res["energy_uj_per_token"]
    rows = [("perplexity (planned / dense float / dense INT8)",
             f"{res['ppl']:.3f} / {res['dense_ppl']:.3f} / {res['dense_int8_ppl']:.3f}"),
            ("speedup vs dense INT8 (prefill / decode)",
             f"{res['speedup_vs_dense_int8']:.3f}x / {res['speedup_vs_dense_int8_decode']:.3f}x"),
            ("fmax", f"{res['fmax_mhz']:.1f} MHz ({res['fmax_source']['file']})"),
            ("tokens/s (prefill / decode)", f"{res['tokens_per_s_prefill']:.2f} / {res['tokens_per_s_decode']:.3f}"),
            ("array utilization (prefill / decode)",
             f"{res['utilization_prefill']:.1%} / {res['utilization_decode']:.1%}"),
            ("energy uJ/token decode (estimate, DRAM low..high)",
             f"{e['decode_dram_low']:.1f} .. {e['decode_dram_high']:.1f}"),
            ("bits per weight", f"{res['bits_per_weight']:.3f}")]
    print(tabulate(rows, tablefmt="simple"))
    for r in res["rtl_checks"]:
        print(f"RTL {r['backend']} {r['layer']}: outputs equal golden {r['outputs_equal_golden']}, "
              f"cycles {r['rtl_cycles']} (model {r['model_cycles']})")
    return 0


def register_cli(sub):
    p = sub.add_parser("profile", help="SPAQ profile: every linear x every hardware configuration (JSON)")
    p.add_argument("model", help="smollm2, minilm, or a .gguf / .safetensors file")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--quick", action="store_true", help="4 configurations, first 2 blocks, 128 tokens (CI)")
    p.add_argument("--configs", choices=("quick", "default", "full"), default=None)
    p.add_argument("--blocks", type=int, default=None, help="profile only the first N blocks")
    p.add_argument("--calib-tokens", type=int, default=None)
    p.add_argument("--sens-tokens", type=int, default=None)
    p.add_argument("--prefill-tokens", type=int, default=256)
    p.add_argument("--jobs", type=int, default=1, help="worker processes over layers")
    p.add_argument("--no-sensitivity", action="store_true")
    p.add_argument("--array", default=None, help="ROWSxCOLS of the top (default 2x2, the measured top)")
    p.add_argument("--pipeline", default="all", choices=("all", "default"))
    p.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("plan", help="DFKE planner: one configuration per layer under a budget (MILP)")
    p.add_argument("profile")
    p.add_argument("--budget", required=True, help="ppl:1.10 | sqnr:20 | speedup:2.5")
    p.add_argument("--phase", default="prefill", choices=("prefill", "decode"), help="cycles to optimize")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("compile", help="pack a planned model into a program directory")
    p.add_argument("model")
    p.add_argument("plan")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--array", default=None, help="check the plan targets this ROWSxCOLS array")
    p.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("run", help="run a compiled program on the whole model (perplexity, cycles, energy)")
    p.add_argument("program")
    p.add_argument("--backend", default="golden", choices=("golden", "pyrtl", "verilator"))
    p.add_argument("--layers", default=None, help="comma-separated layers to run through the RTL")
    p.add_argument("--rtl-tokens", type=int, default=2)
    p.add_argument("--text", default=None, help="UTF-8 text file (default: the held-out English text)")
    p.add_argument("--tokens", type=int, default=512, help="tokens of the text scored")
    p.add_argument("--fmax-file", default=None, help="results JSON with the top's measured fmax")
    p.add_argument("--json", action="store_true")
    p.add_argument("--per-layer", action="store_true", help="with --json: per-layer cycles")
    p.set_defaults(func=_cmd_run)
