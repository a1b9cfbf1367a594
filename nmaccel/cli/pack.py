"""CLI: `nmaccel pack`, `nmaccel inspect`, `nmaccel storage`."""
import json
import os

import numpy as np
from tabulate import tabulate

from nmaccel.cli import argtypes
from nmaccel.errors import NmaccelError, require
from nmaccel.fileio import check_output, read_npy, require_real
from nmaccel.models import loaders as models
from nmaccel.pack.api import pack_weights
from nmaccel.pack.format import PackedWeights

# (label, pack_weights kwargs or None for FP16); the storage table's rows.
STORAGE_CONFIGS = [
    ("dense FP16", None),
    ("dense INT8 per-channel", dict(n_keep=1, m_group=1, bits=8)),
    ("dense INT4 g128", dict(n_keep=1, m_group=1, bits=4, group_size=128)),
    ("2:4 INT8 per-channel", dict(n_keep=2, m_group=4, bits=8)),
    ("2:4 INT4 g128", dict(n_keep=2, m_group=4, bits=4, group_size=128)),
    ("4:8 INT4 g128", dict(n_keep=4, m_group=8, bits=4, group_size=128)),
    ("dense Lloyd-Max 4-bit per-channel", dict(n_keep=1, m_group=1, bits=4, quantizer="lloyd-max")),
    ("2:4 Lloyd-Max 4-bit per-channel", dict(n_keep=2, m_group=4, bits=4, quantizer="lloyd-max")),
]


def parse_nm(text):
    """'2:4' -> (2, 4); 'dense' -> (1, 1)."""
    if text.strip().lower() == "dense":
        return 1, 1
    try:
        n, m = (int(t) for t in text.split(":"))
    except ValueError:
        raise NmaccelError(f"--nm {text!r} is not N:M: write e.g. --nm 2:4, or --nm dense") from None
    return n, m


def load_layer(weights, layer=None):
    """A 2-D float32 weight from a file or built-in model name, and its name."""
    if weights is None:
        return models.DEFAULT_LAYER, models.default_layer()
    tensors = models.load_weights(weights)
    if layer is None:
        two_d = [k for k, v in tensors.items() if np.ndim(v) == 2]
        require(two_d, f"{weights} holds no 2-D weight matrix (shapes "
                f"{', '.join(str(tuple(np.shape(v))) for v in list(tensors.values())[:3])}): "
                "pass a 2-D (out_features, in_features) array")
        require(len(two_d) == 1, f"{weights} holds {len(two_d)} 2-D tensors: choose one with --layer "
                f"(e.g. {', '.join(two_d[:3])})")
        layer = two_d[0]
    require(layer in tensors, f"layer {layer!r} not in {weights}: list them with `nmaccel storage --list {weights}`")
    w = np.asarray(tensors[layer], dtype=np.float32)
    require(w.ndim == 2 and w.size > 0, f"tensor {layer!r} of {weights} has shape {w.shape}: "
            "pass a non-empty 2-D (out_features, in_features) weight")
    return layer, w


def load_calibration(path, in_features):
    """Float activations (tokens, in_features) for wanda/sparsegpt from a .npy file."""
    require(os.path.isfile(path), f"calibration file {path} not found: pass a .npy of float "
            f"activations (tokens, {in_features})")
    x = read_npy(path)
    require_real(x, "calibration activations", path)
    require(x.ndim == 2 and x.shape[1] == in_features and x.shape[0] >= 1,
            f"calibration {path} has shape {x.shape}: need (tokens, {in_features}) activations")
    return x.astype(np.float32)


def storage_table(w):
    """Rows (config, bits/weight, total KiB, vs FP16) for the STORAGE_CONFIGS, measured by packing w."""
    n = w.size
    rows = []
    for label, kw in STORAGE_CONFIGS:
        bits = 16 * n if kw is None else pack_weights(w, **kw).storage_bits()
        rows.append({"config": label, "bits_per_weight": bits / n, "kib": bits / 8 / 1024,
                     "ratio_vs_fp16": 16 * n / bits})
    return rows


def _cmd_pack(args):
    n_keep, m_group = parse_nm(args.nm)
    inputs = [p for p in (args.weights, args.calibration) if p and os.path.exists(p)]
    check_output(args.output, inputs)              # before any work: never over an input
    name, w = load_layer(args.weights, args.layer)
    calib = load_calibration(args.calibration, w.shape[1]) if args.calibration else None
    pw = pack_weights(w, n_keep=n_keep, m_group=m_group, bits=args.bits, group_size=args.group_size or None,
                      quantizer=args.quantizer, method=args.method, calibration=calib)
    pw.meta.setdefault("layer", name)
    pw.save(args.output, inputs=inputs)
    print(tabulate(pw.report(), tablefmt="simple"))
    print(f"wrote {args.output}")
    return 0


def _cmd_inspect(args):
    pw = PackedWeights.load(args.file)
    if args.json:
        print(json.dumps({k: (v if isinstance(v, (int, float)) else str(v)) for k, v in pw.report()}, indent=1))
    else:
        print(tabulate(pw.report(), tablefmt="simple"))
    return 0


def _cmd_storage(args):
    if args.list:
        for k, v in models.load_weights(args.list).items():
            print(k, tuple(np.shape(v)))
        return 0
    name, w = load_layer(args.weights, args.layer)
    rows = storage_table(w)
    if args.json:
        print(json.dumps({"layer": name, "shape": list(w.shape), "rows": rows}, indent=1))
    else:
        print(f"storage of {name} {w.shape} (measured with PackedWeights.storage_bits)")
        print(tabulate([[r["config"], r["bits_per_weight"], r["kib"], r["ratio_vs_fp16"]] for r in rows],
                       headers=["config", "bits/weight", "KiB", "x smaller than FP16"], floatfmt=".3f"))
    return 0


def register_cli(sub):
    p = sub.add_parser("pack", help="prune + quantize + pack a weight matrix into a .nmpack file")
    p.add_argument("weights", nargs="?", default=None,
                   help="weights file (.safetensors .gguf .npy .npz) or built-in 'minilm'/'smollm2' "
                        "(default: a real MiniLM layer)")
    p.add_argument("--layer", help="tensor name inside the weights file")
    p.add_argument("--nm", default="2:4", help="N:M sparsity, e.g. 2:4, 4:8, or 'dense' (default 2:4)")
    p.add_argument("--bits", type=argtypes.positive, default=4, help="weight bits: 2, 4 or 8 (default 4)")
    p.add_argument("--group-size", type=argtypes.non_negative, default=128,
                   help="scale group along K (default 128; 0 = per channel)")
    p.add_argument("--quantizer", default="uniform", help="uniform or lloyd-max")
    p.add_argument("--method", default="magnitude", help="magnitude, wanda or sparsegpt")
    p.add_argument("--calibration", help=".npy float activations (tokens, in_features) for wanda/sparsegpt")
    p.add_argument("-o", "--output", required=True, help="output .nmpack file")
    p.set_defaults(func=_cmd_pack)

    p = sub.add_parser("inspect", help="print a packed file's report")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("storage", help="bits/weight table (values + metadata + scales) for common formats")
    p.add_argument("weights", nargs="?", default=None, help="weights file or built-in name (default MiniLM layer)")
    p.add_argument("--layer")
    p.add_argument("--list", metavar="WEIGHTS", help="list the 2-D tensors of a weights file and exit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_storage)
