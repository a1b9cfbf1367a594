"""CLI: `nmaccel compress MODEL --nm N:M --bits B [--group-size G] [--method ...] -o DIR`."""
import shlex
import time

from tabulate import tabulate

from nmaccel.cli.pack import parse_nm
from nmaccel.pack.compress import compress_model, stderr_progress
from nmaccel.pack.obs import METHODS
from nmaccel.pack.quant import QUANTIZERS


def _command(args):
    """The command line, canonical form (every option spelled out), for the manifest."""
    parts = ["nmaccel", "compress", args.model, "--nm", args.nm, "--bits", str(args.bits),
             "--group-size", str(args.group_size), "--quantizer", args.quantizer]
    for flag, v in (("--method", args.method), ("--calibration", args.calibration),
                    ("--calib-tokens", args.calib_tokens), ("--damp", args.damp)):
        if v is not None:
            parts += [flag, str(v)]
    parts += ["--one-shot"] if args.one_shot else []
    parts += ["--seed", str(args.seed), "-o", args.output]
    return " ".join(shlex.quote(p) for p in parts)


def _cmd_compress(args):
    n_keep, m_group = parse_nm(args.nm)
    t0 = time.time()
    doc = compress_model(
        args.model, args.output, n_keep=n_keep, m_group=m_group, bits=args.bits,
        group_size=args.group_size or None, quantizer=args.quantizer, method=args.method,
        calibration=args.calibration, calib_tokens=args.calib_tokens, damp=args.damp,
        sequential=not args.one_shot, seed=args.seed, resume=not args.no_resume,
        command=_command(args),
        progress=stderr_progress if args.verbose else None)
    s = doc["settings"]
    rows = [("model", doc["model"]["source"]), ("layers", len(doc["layers"])),
            ("N:M", f"{s['n_keep']}:{s['m_group']}"), ("bits / quantizer", f"{s['bits']} {s['quantizer']}"),
            ("group size", s["group_size"] or "per channel"), ("method", s["method"]),
            ("calibration", f"{s['calibration']} ({doc['run']['calibration_tokens_used']} tokens)"
             if s["calibration"] else "none"),
            ("resumed layers", doc["run"]["resumed_layers"]), ("wall time", f"{time.time() - t0:.1f} s")]
    print(tabulate(rows, tablefmt="simple"))
    print(f"wrote {args.output}/manifest.json")
    return 0


def register_cli(sub):
    p = sub.add_parser("compress", help="prune + quantize every linear layer of a model into .nmpack files "
                                        "+ manifest.json")
    p.add_argument("model", help="smollm2, minilm, or a .gguf / .safetensors / .npz file")
    p.add_argument("--nm", default="2:4", help="N:M sparsity along K, e.g. 2:4, 4:8, or 'dense' (default 2:4)")
    p.add_argument("--bits", type=int, default=4, help="weight bits: 2, 4 or 8 (default 4)")
    p.add_argument("--group-size", type=int, default=128, help="scale group along K (default 128; 0 = per channel)")
    p.add_argument("--method", default=None, choices=METHODS,
                   help="per-layer method (default sparsegpt where calibration is possible, else magnitude)")
    p.add_argument("--quantizer", default="uniform", choices=QUANTIZERS)
    p.add_argument("--calibration", default=None,
                   help="'self' (text the dense model generates; Llama default), 'pydoc' (BERT default) "
                        "or a UTF-8 text file")
    p.add_argument("--calib-tokens", type=int, default=None, help="calibration tokens (default 2048)")
    p.add_argument("--damp", type=float, default=None, help="relative Hessian damping (default 0.1)")
    p.add_argument("--one-shot", action="store_true",
                   help="calibrate every layer on dense-model inputs (default: sequential)")
    p.add_argument("--seed", type=int, default=0, help="seed of the self-generated calibration text")
    p.add_argument("--no-resume", action="store_true", help="recompute layers an interrupted run finished")
    p.add_argument("-v", "--verbose", action="store_true", help="per-layer progress on stderr")
    p.add_argument("-o", "--output", required=True, help="output directory (new, empty or a previous compress output)")
    p.set_defaults(func=_cmd_compress)
