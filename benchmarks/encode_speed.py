"""Host-stream encoder speed: a 4096 x 4096 2:4 INT4 layer at T=64 for a 128-bit host.

    python benchmarks/encode_speed.py [--size 4096] [--tokens 64] [--host-bits 128] [--repeat 3]
        [--encoder MODULE:FUNC] [--label NAME] [--json benchmarks/results/encode_speed.json]

Packs a seeded random (size x size) weight as 2:4 INT4 g128, sizes a TopConfig for the whole layer
(4x4 array, n_max=4, m_max=8), and times `--encoder` (default nmaccel.program.encoder:encode_gemm,
the one host-stream encoder) on it: best of --repeat runs. The words' count and a SHA-256 of
them are recorded, so runs of different encoders can be checked equal. --json merges this run into
the file under --label (one entry per label: the pre-refactor encoder was measured at its commit
with --encoder nmaccel.verilog.cosim_top:encode_gemm_fast --label before, and
--host-bits 64 --label before_host64, where TopConfig still lived in nmaccel.golden.top), with the commit, tool
versions, machine and the exact command.
"""
import argparse
import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from nmaccel.arch.config import ArrayConfig, TopConfig
from nmaccel.pack import pack_weights


def provenance():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout.strip())
    return {"commit": commit + ("+dirty" if dirty else ""),
            "versions": {"python": platform.python_version(), "numpy": np.__version__},
            "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus, "
                       f"{platform.system()} {platform.release()}".replace("  ", " "),
            "command": " ".join([os.path.relpath(sys.argv[0], root)] + sys.argv[1:])}


def layer_top(a, packed, tokens, host_bits):
    """TopConfig holding the whole layer in one job per token tile (as `nmaccel sim` sizes it)."""
    win = a.window(packed.n_keep, packed.m_group)
    n_kt = -(-packed.k_padded // (a.rows * win))
    n_nt = -(-packed.out_features // a.cols)
    raw = max(32, a.required_acc_bits(n_kt * a.rows * a.m_max))
    return TopConfig(array=a, host_bits=host_bits, t_max=max(2, -(-tokens // 2)), k_tiles_max=n_kt,
                     n_tiles_max=n_nt, raw_bits=raw)


def summarize(data):
    """Per label pair before<suffix> / after<suffix>: speedup and whether the words are equal."""
    runs = data["runs"]
    data["comparisons"] = {
        suffix.lstrip("_") or "host128": {"speedup_after_vs_before": round(runs["before" + suffix]["seconds"]
                                                            / runs["after" + suffix]["seconds"], 2),
                              "same_words": runs["before" + suffix]["words_sha256"]
                              == runs["after" + suffix]["words_sha256"]}
        for suffix in sorted({k[len("before"):] for k in runs if k.startswith("before")})
        if "after" + suffix in runs}
    data.pop("speedup_after_vs_before", None)
    data.pop("same_words", None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--host-bits", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encoder", default="nmaccel.program.encoder:encode_gemm")
    ap.add_argument("--label", default="after")
    ap.add_argument("--json", help="merge the result into this JSON file under --label")
    args = ap.parse_args()
    mod, func = args.encoder.split(":")
    encode = getattr(importlib.import_module(mod), func)
    rng = np.random.default_rng(args.seed)
    w = rng.standard_normal((args.size, args.size)).astype(np.float32)
    x = rng.integers(-128, 128, size=(args.tokens, args.size), dtype=np.int64)
    t = time.perf_counter()
    packed = pack_weights(w, n_keep=2, m_group=4, bits=4, group_size=128)
    pack_s = time.perf_counter() - t
    a = ArrayConfig(rows=4, cols=4, n_max=4, m_max=8)
    top = layer_top(a, packed, args.tokens, args.host_bits)
    best, words = float("inf"), None
    for _ in range(args.repeat):
        t = time.perf_counter()
        res = encode(packed, x, top)         # a Program (older encoders: (words, jobs, mode))
        words, mode = (res.words, res.mode) if hasattr(res, "words") else (res[0], res[2])
        best = min(best, time.perf_counter() - t)
    h = hashlib.sha256()
    nbytes = -(-args.host_bits // 8)
    for wd in words:
        h.update(int(wd).to_bytes(nbytes, "little"))
    res = {"encoder": args.encoder, "seconds": round(best, 3), "repeat": args.repeat,
           "n_words": len(words), "words_sha256": h.hexdigest(), "mode": mode,
           "shape": [args.tokens, args.size, args.size], "host_bits": args.host_bits,
           "pack_seconds": round(pack_s, 3), **provenance()}
    print(json.dumps(res, indent=1))
    if args.json:
        data = {}
        if os.path.exists(args.json):
            with open(args.json) as f:
                data = json.load(f)
        data.setdefault("runs", {})[args.label] = res
        summarize(data)
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
