"""Quality of whole-model compression, measured on the output of `nmaccel compress` (one code path:
nmaccel.pack.compress_model writes DIR/manifest.json + .nmpack files, this script loads them with
PackedWeights and runs the numpy forward passes).

SmolLM2-135M: perplexity on two held-out texts that no configuration calibrates on:
  "en"   nmaccel/data/heldout_en.txt (English prose shipped with nmaccel)
  "code" Python standard-library source (textwrap, heapq, fractions of the running Python)
and the ratio to the dense model's perplexity. Calibration sources: "self" (text the dense model
generates itself, data-free) and "pydoc" (Python's pydoc topics). MiniLM (all-MiniLM-L6-v2):
mean cosine of the sentence embeddings vs dense over the held-out English paragraphs.

    python benchmarks/quality.py --json PATH [--configs a,b] [--workdir DIR] [--resume]
    python benchmarks/quality.py --list

Every row records the compress settings, the equivalent `nmaccel compress` command, the
calibration source and size, and the compress wall time; the JSON records commit, machine and
this script's command line. benchmarks/results/quality.json is made by scripts/quality_full.sh.
"""
import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
from tabulate import tabulate

from nmaccel.models import loaders as models
from nmaccel.errors import NmaccelError
from nmaccel.pack.compress import compress_model
from nmaccel.pack.manifest import load_layers

CTX = 256
CODE_MODULES = ("textwrap", "heapq", "fractions")
CODE_TOKENS = 1024


def _cfg(model, nm, bits=4, method="sparsegpt", gs=128, quantizer="uniform", calibration="self", **kw):
    n, m = nm
    return dict(model=model, n_keep=n, m_group=m, bits=bits, method=method, group_size=gs,
                quantizer=quantizer, calibration=calibration if method not in ("magnitude",) else None, **kw)


S, M = "smollm2", "minilm"
CONFIGS = {
    "smol-int4-rtn": _cfg(S, (1, 1), method="magnitude"),
    "smol-int4-gptq": _cfg(S, (1, 1), method="gptq"),
    "smol-int4-gptq-pydoc": _cfg(S, (1, 1), method="gptq", calibration="pydoc"),
    "smol-lloyd4-gptq": _cfg(S, (1, 1), method="gptq", quantizer="lloyd-max"),
    "smol-int8-rtn": _cfg(S, (1, 1), bits=8, method="magnitude", gs=None),
    "smol-4:8+int4-magnitude": _cfg(S, (4, 8), method="magnitude"),
    "smol-4:8+int4-wanda": _cfg(S, (4, 8), method="wanda"),
    "smol-4:8+int4-gptq": _cfg(S, (4, 8), method="gptq"),
    "smol-4:8+int4-wanda-obs": _cfg(S, (4, 8), method="wanda-obs"),
    "smol-4:8+int4-sparsegpt": _cfg(S, (4, 8), method="sparsegpt"),
    "smol-4:8+int4-sparsegpt-pydoc": _cfg(S, (4, 8), method="sparsegpt", calibration="pydoc"),
    "smol-2:4+int4-magnitude": _cfg(S, (2, 4), method="magnitude"),
    "smol-2:4+int4-wanda": _cfg(S, (2, 4), method="wanda"),
    "smol-2:4+int4-wanda-obs": _cfg(S, (2, 4), method="wanda-obs"),
    "smol-2:4+int4-sparsegpt": _cfg(S, (2, 4), method="sparsegpt"),
    "smol-2:4+int4-sparsegpt-pydoc": _cfg(S, (2, 4), method="sparsegpt", calibration="pydoc"),
    "smol-2:4+int4-sparsegpt-8k": _cfg(S, (2, 4), method="sparsegpt", calib_tokens=8192),
    "smol-2:4+int4-sparsegpt-damp0.01": _cfg(S, (2, 4), method="sparsegpt", damp=0.01),
    "smol-2:4+int4-sparsegpt-oneshot": _cfg(S, (2, 4), method="sparsegpt", sequential=False),
    "mini-int4-rtn": _cfg(M, (1, 1), method="magnitude"),
    "mini-4:8+int4-magnitude": _cfg(M, (4, 8), method="magnitude"),
    "mini-4:8+int4-sparsegpt": _cfg(M, (4, 8), method="sparsegpt", calibration="pydoc"),
    "mini-4:8+int4-wanda-obs": _cfg(M, (4, 8), method="wanda-obs", calibration="pydoc"),
    "mini-2:4+int4-sparsegpt": _cfg(M, (2, 4), method="sparsegpt", calibration="pydoc"),
}
GOALS = {"smol-int4": 1.15, "smol-4:8+int4": 1.8, "smol-2:4+int4": 2.5, "mini-4:8+int4": 0.98}


def goal_of(name):
    """(goal key, bound) of a configuration: PPL ratio <= bound (SmolLM2), cosine >= bound (MiniLM)."""
    for key, bound in GOALS.items():
        if name.startswith(key + "-"):
            return key, bound
    return None, None


def code_text():
    """Held-out text of another domain: Python standard-library source."""
    import importlib
    return "\n\n".join(inspect.getsource(importlib.import_module(m)) for m in CODE_MODULES)


def cli_command(cfg, out):
    """The `nmaccel compress` command equivalent to a configuration."""
    parts = ["nmaccel compress", cfg["model"], "--nm", f"{cfg['n_keep']}:{cfg['m_group']}", "--bits", str(cfg["bits"]),
             "--group-size", str(cfg["group_size"] or 0), "--method", cfg["method"], "--quantizer", cfg["quantizer"]]
    if cfg.get("calibration"):
        parts += ["--calibration", cfg["calibration"]]
    for k, flag in (("calib_tokens", "--calib-tokens"), ("damp", "--damp")):
        if k in cfg:
            parts += [flag, str(cfg[k])]
    if cfg.get("sequential") is False:
        parts.append("--one-shot")
    return " ".join(parts + ["-o", out])


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
    except OSError:
        return None


class Evaluator:
    """Dense models and held-out data, loaded once."""

    def __init__(self, eval_tokens=None):
        from nmaccel.models.llama import Llama
        from nmaccel.models.bert import MiniLM
        self.llama = Llama.from_gguf("smollm2")
        tok = models.gguf_tokenizer("smollm2")
        en = np.array(tok.encode(models.heldout_text()))
        code = np.array(tok.encode(code_text()))[:CODE_TOKENS]
        if eval_tokens:
            en, code = en[:eval_tokens], code[:eval_tokens]
        self.texts = {"en": en, "code": code}
        self.mini, wp = MiniLM.builtin()
        self.paras = [np.array(wp.encode(p)) for p in models.heldout_text().split("\n\n") if p.strip()]
        self.dense_ppl = {k: self.llama.perplexity(v, ctx=CTX) for k, v in self.texts.items()}
        self.dense_emb = np.stack([self.mini.embed(p) for p in self.paras])

    def evaluate(self, cfg, out_dir):
        packed = load_layers(out_dir)
        new = {n: pw.dequantize() for n, pw in packed.items()}
        if cfg["model"] == "smollm2":
            model = self.llama.with_linears(new)
            r = {}
            for k, ids in self.texts.items():
                r[f"ppl_{k}"] = model.perplexity(ids, ctx=CTX)
                r[f"ratio_{k}"] = r[f"ppl_{k}"] / self.dense_ppl[k]
            return r
        model = self.mini.with_linears(new)
        emb = np.stack([model.embed(p) for p in self.paras])
        cos = np.sum(emb * self.dense_emb, axis=1)
        return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}


def atomic_json(path, obj):
    from nmaccel.fileio import atomic_write
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def table(result):
    rows = []
    for name, r in result["rows"].items():
        key, bound = goal_of(name)
        if "ratio_en" in r:
            val = f"{r['ratio_en']:.3f}x / {r['ratio_code']:.3f}x"
            met = None if bound is None else max(r["ratio_en"], r["ratio_code"]) <= bound
            goal = "" if bound is None else f"<= {bound}x"
        else:
            val = f"cos {r['cosine_mean']:.4f} (min {r['cosine_min']:.4f})"
            met = None if bound is None else r["cosine_mean"] >= bound
            goal = "" if bound is None else f">= {bound}"
        rows.append([name, val, goal, "" if met is None else ("met" if met else "NOT met"),
                     r.get("calibration") or "-", r.get("calibration_tokens") or "-",
                     f"{r['compress_seconds']:.0f}", f"{r.get('compress_cpu_seconds') or 0:.0f}"])
    return tabulate(rows, headers=["config", "PPL/dense en / code (SmolLM2) | cosine (MiniLM)", "goal",
                                   "", "calibration", "tokens", "compress wall s", "CPU s"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="results file (written after every configuration)")
    ap.add_argument("--configs", help="comma list (default: all); --list shows them")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--workdir", default=".nmaccel_cache/quality", help="compress outputs go to WORKDIR/<config>")
    ap.add_argument("--resume", action="store_true", help="keep rows already in --json")
    ap.add_argument("--merge", nargs="*", default=[], help="take finished rows from these JSON files of this script")
    ap.add_argument("--eval-tokens", type=int, default=None, help="cap each held-out text (default: all)")
    args = ap.parse_args(argv)
    if args.list:
        for k, v in CONFIGS.items():
            print(k, cli_command(v, "DIR"))
        return 0
    names = args.configs.split(",") if args.configs else list(CONFIGS)
    bad = [c for c in names if c not in CONFIGS]
    if bad:
        raise NmaccelError(f"unknown configuration(s) {bad}: see --list")
    result = {"rows": {}}
    if args.resume and args.json and os.path.exists(args.json):
        with open(args.json) as f:
            result = json.load(f)
    merged = []
    for path in args.merge:   # rows of runs of this script (e.g. configurations run in parallel)
        with open(path) as f:
            part = json.load(f)
        for k in ("heldout", "heldout_tokens", "ctx", "dense"):
            if k in result and result[k] != part.get(k):
                raise NmaccelError(f"{path} was made with other held-out data ({k}): rerun it")
            result[k] = part.get(k)
        result["rows"].update({k: v for k, v in part["rows"].items() if k in names})
        merged.append({"file": os.path.basename(path), "commit": part.get("commit"), "command": part.get("command")})
    result.update(commit=git_commit(), command="python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
                  machine=f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}, "
                  f"numpy {np.__version__}", goals=GOALS)
    if merged:
        result["merged_from"] = merged
    if all(n in result["rows"] for n in names) and "dense" in result:
        ev = None
    else:
        t0 = time.time()
        ev = Evaluator(args.eval_tokens)
        result.update(heldout={"en": "nmaccel/data/heldout_en.txt", "code": f"Python {platform.python_version()} "
                               f"stdlib source of {', '.join(CODE_MODULES)}, first {CODE_TOKENS} tokens"},
                      heldout_tokens={k: int(v.size) for k, v in ev.texts.items()}, ctx=CTX,
                      dense={"smollm2_ppl": ev.dense_ppl, "minilm_paragraphs": len(ev.paras)})
        print(f"dense PPL {ev.dense_ppl} ({time.time() - t0:.0f} s)", file=sys.stderr)
    for name in names:
        if name in result["rows"]:
            continue
        cfg = CONFIGS[name]
        out = os.path.join(args.workdir, name)
        kw = {k: v for k, v in cfg.items() if k != "model"}
        t1 = time.time()
        doc = compress_model(cfg["model"], out, command=cli_command(cfg, out), **kw)
        row = dict(settings=doc["settings"], command=cli_command(cfg, out),
                   calibration=doc["run"]["calibration_source"],
                   calibration_tokens=doc["run"]["calibration_tokens_used"],
                   compress_seconds=doc["run"]["seconds"], compress_cpu_seconds=doc["run"].get("cpu_seconds"),
                   compress_wall_here=round(time.time() - t1, 1))
        row.update(ev.evaluate(cfg, out))
        key, bound = goal_of(name)
        if bound is not None:
            row["goal"] = bound
            row["goal_met"] = bool(max(row["ratio_en"], row["ratio_code"]) <= bound) if "ratio_en" in row \
                else bool(row["cosine_mean"] >= bound)
        result["rows"][name] = row
        print(f"{name}: {json.dumps({k: v for k, v in row.items() if k not in ('settings', 'command')})}",
              file=sys.stderr, flush=True)
        if args.json:
            atomic_json(args.json, result)
    result["rows"] = {n: result["rows"][n] for n in names if n in result["rows"]}
    print(table(result))
    if args.json:
        atomic_json(args.json, result)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NmaccelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
