"""Quality of pruning + quantization on real weights, measured in one run.

MiniLM (all-MiniLM-L6-v2): mean over the 36 encoder linears of the weight SQNR and of the output
SQNR (dB) on held-out activations (numpy BERT forward, nmaccel.models.bert). SmolLM2-135M: perplexity on held-out
English prose (nmaccel/data/heldout_en.txt; calibration = pydoc_data.topics, never the eval
text), its ratio to dense PPL of the same run, and the mean per-layer output SQNR on held-out
activations of the dense model. Calibrated methods (wanda, sparsegpt) compress both models layer
by layer (sequential calibration, as SparseGPT) unless --one-shot. SQNR = 10 log10(|ref|^2 / |err|^2).

    python benchmarks/quality.py [--quick] [--json PATH] [--configs a,b] [--damp 0.1]

--quick: 1 decoder block / 1 MiniLM layer compressed, 256 eval and calibration tokens (< 2 min).
Results are written to --json after every configuration; --resume skips finished ones, --merge
takes finished rows of runs with the same settings (e.g. configurations run in parallel), and
--variants lists runs with other calibration settings (--damp, --calib-tokens, --one-shot,
--skip-first, --clip-tokens) in a second table. benchmarks/results/quality.json was made with
scripts/quality_full.sh.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
from tabulate import tabulate

from nmaccel.models import loaders as models
from nmaccel.models.bert import MiniLM
from nmaccel.errors import NmaccelError
from nmaccel.models.llama import Llama
from nmaccel.pack import pack_weights, prune

G = 128
# name: (pack_weights kwargs or None for dense, needs calibration, description)
CONFIGS = {
    "dense": (None, False, "GGUF weights as shipped (Q4_1 before packaging), float32"),
    "int8-channel": (dict(n_keep=1, m_group=1, bits=8, granularity="channel"), False, "INT8 per channel, RTN"),
    "int4-g128": (dict(n_keep=1, m_group=1, bits=4, group_size=G), False, "INT4 g128, RTN"),
    "lloyd-max-4b-g128": (dict(n_keep=1, m_group=1, bits=4, group_size=G, quantizer="lloyd-max"), False,
                          "Lloyd-Max 4-bit codebook per g128 group"),
    "2:4-magnitude": ("prune", False, "2:4 magnitude, no quantization"),
    "2:4-wanda": ("prune", True, "2:4 wanda, no quantization"),
    "2:4-sparsegpt": ("prune", True, "2:4 SparseGPT (OBS reconstruction), no quantization"),
    "2:4+int4-magnitude": (dict(n_keep=2, m_group=4, bits=4, group_size=G, method="magnitude"), False, ""),
    "2:4+int4-wanda": (dict(n_keep=2, m_group=4, bits=4, group_size=G, method="wanda"), True, ""),
    "2:4+int4-sparsegpt": (dict(n_keep=2, m_group=4, bits=4, group_size=G, method="sparsegpt"), True,
                           "SparseGPT + GPTQ-style joint quantization"),
    "2:4+int4-sparsegpt-rtn": (dict(n_keep=2, m_group=4, bits=4, group_size=G, method="sparsegpt",
                                    error_compensation=False), True, "SparseGPT, then round-to-nearest INT4"),
    "4:8+int4-magnitude": (dict(n_keep=4, m_group=8, bits=4, group_size=G, method="magnitude"), False, ""),
    "4:8+int4-wanda": (dict(n_keep=4, m_group=8, bits=4, group_size=G, method="wanda"), True, ""),
    "4:8+int4-sparsegpt": (dict(n_keep=4, m_group=8, bits=4, group_size=G, method="sparsegpt"), True, ""),
}
SMOL_FIELDS = ("smollm2_ppl", "smollm2_out_sqnr_db", "seconds")
MINI_FIELDS = ("minilm_w_sqnr_db", "minilm_out_sqnr_db", "minilm_seconds")
TARGETS = {"2:4+int4-sparsegpt": 2.5, "4:8+int4-sparsegpt": 1.8}
QUICK_CONFIGS = ["dense", "int8-channel", "int4-g128", "2:4+int4-magnitude", "2:4+int4-wanda",
                 "2:4+int4-sparsegpt"]


def compress_weight(name, w, x, cfg, damp):
    """float32 (out, in) weight after the configuration (dequantized PackedWeights)."""
    kwargs, needs_cal, _ = CONFIGS[cfg]
    if kwargs is None:
        return w
    if kwargs == "prune":
        method = cfg.split("-", 1)[1]
        wp, _ = prune(w, n_keep=2, m_group=4, method=method, calibration=x if needs_cal else None, damp=damp)
        return wp[:, :w.shape[1]].astype(np.float32)
    kw = dict(kwargs)
    if needs_cal:
        kw["calibration"] = x
        if kw.get("method") == "sparsegpt":
            kw["damp"] = damp
    return pack_weights(w, **kw).dequantize()


def sqnr_db(ref, err):
    return float(10 * np.log10(np.sum(np.square(ref, dtype=np.float64)) / max(np.sum(np.square(err, dtype=np.float64)), 1e-300)))


def minilm_eval(mini, cfg, names, calib_seqs, heldout_x, damp, sequential):
    """(mean weight SQNR, mean output SQNR on held-out activations) over the MiniLM linears."""
    if cfg == "dense":
        return float("inf"), float("inf")
    if CONFIGS[cfg][1]:
        model = mini.compress(calib_seqs, lambda n, w, x: compress_weight(n, w, x, cfg, damp),
                              sequential=sequential, names=names)
        new = {n: model.weights[n] for n in names}
    else:
        new = {n: compress_weight(n, mini.weights[n], None, cfg, damp) for n in names}
    wsq = [sqnr_db(mini.weights[n], mini.weights[n] - new[n]) for n in names]
    osq = [sqnr_db(heldout_x[n] @ mini.weights[n].T, heldout_x[n] @ (mini.weights[n] - new[n]).T) for n in names]
    return float(np.mean(wsq)), float(np.mean(osq))


def clip_rows(x, quantile):
    """Scale rows of x whose L2 norm exceeds the given quantile of row norms down to it."""
    norms = np.linalg.norm(x, axis=1)
    cap = np.quantile(norms, quantile)
    return x * np.minimum(1.0, cap / np.maximum(norms, 1e-30))[:, None].astype(x.dtype)


def smollm2_eval(base, cfg, names, calib, evals, heldout_x, damp, sequential, skip_first=0, clip=None):
    needs_cal = CONFIGS[cfg][1]
    b, t = calib.shape

    def transform(n, w, x):
        x = x.reshape(b, t, -1)[:, skip_first:].reshape(-1, x.shape[-1])
        if clip is not None:
            x = clip_rows(x, clip)
        return compress_weight(n, w, x, cfg, damp)
    if cfg == "dense":
        model = base
    elif needs_cal:
        model = base.compress(calib, transform, sequential=sequential, names=names)
    else:
        model = base.with_linears({n: compress_weight(n, base.weights[n], None, cfg, damp) for n in names})
    ppl = model.perplexity(evals, ctx=256)
    if cfg == "dense":
        return ppl, float("inf")
    osq = [sqnr_db(x @ base.weights[n].T, x @ (base.weights[n] - model.weights[n]).T)
           for n, x in heldout_x.items()]
    return ppl, float(np.mean(osq))


def windows(ids, n_tokens, ctx):
    """(n_tokens // ctx, ctx) windows spread evenly over ids (deterministic)."""
    n = max(1, n_tokens // ctx)
    starts = np.linspace(0, len(ids) - ctx, n).astype(int)
    return np.stack([ids[s:s + ctx] for s in starts])


def _finite(obj):
    """JSON-safe copy: +-inf / NaN floats (e.g. SQNR of the unchanged dense model) -> None."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def atomic_json(path, obj):
    obj = _finite(obj)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def fmt(v, spec):
    if v is None or v == float("inf"):
        return "-"
    return format(v, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 block, 256 tokens, fewer configs (< 2 min)")
    ap.add_argument("--json", help="write results (after every configuration) to this JSON file")
    ap.add_argument("--resume", action="store_true", help="skip configurations already in --json with the same settings")
    ap.add_argument("--configs", help=f"comma list from: {','.join(CONFIGS)}")
    ap.add_argument("--damp", type=float, default=0.1, help="SparseGPT relative Hessian damping (default 0.1)")
    ap.add_argument("--calib-tokens", type=int, default=None, help="calibration tokens (default 1024; quick 256)")
    ap.add_argument("--eval-tokens", type=int, default=None, help="held-out tokens (default all ~1.1k; quick 256)")
    ap.add_argument("--blocks", type=int, default=None, help="compress only the first N decoder blocks")
    ap.add_argument("--merge", nargs="*", default=[], help="also take finished rows from these JSON files "
                    "(same settings), e.g. from runs of other --configs in parallel")
    ap.add_argument("--variants", nargs="*", default=[],
                    help="JSON files of runs with other settings (damping, calibration size, one-shot): "
                    "their rows are listed in a second table with PPL ratios to their own dense run")
    ap.add_argument("--skip-first", type=int, default=0,
                    help="leave the first N positions of every calibration window out of the calibration "
                    "activations (position 0 is an attention sink whose massive activations dominate Hessians)")
    ap.add_argument("--clip-tokens", type=float, default=None,
                    help="scale calibration rows whose L2 norm exceeds this quantile of the layer's row "
                    "norms down to it (e.g. 0.99), so a few massive-activation tokens cannot dominate H")
    ap.add_argument("--one-shot", action="store_true", help="calibrate every layer on dense-model inputs")
    args = ap.parse_args(argv)

    cfgs = args.configs.split(",") if args.configs else (QUICK_CONFIGS if args.quick else list(CONFIGS))
    bad = [c for c in cfgs if c not in CONFIGS]
    if bad:
        raise NmaccelError(f"unknown configuration(s) {bad}: use names from {list(CONFIGS)}")
    if "dense" not in cfgs:
        cfgs = ["dense"] + cfgs
    calib_tokens = args.calib_tokens or (256 if args.quick else 1024)
    blocks = args.blocks if args.blocks is not None else (1 if args.quick else None)
    ctx = 256

    t0 = time.time()
    mini, wp = MiniLM.builtin()
    mini_names = [n for n in models.linear_layers(mini.weights) if n.startswith("encoder.")]
    if args.quick:
        mini_names = [n for n in mini_names if n.startswith("encoder.layer.0.")]
    mini_cal_ids = np.array(wp.encode(models.calibration_text(), max_len=10 ** 9)[1:-1])
    mini_calib = list(windows(mini_cal_ids, calib_tokens, 128))
    mini_heldout_x = mini.collect_inputs(
        [wp.encode(para) for para in models.heldout_text().split("\n\n") if para.strip()], mini_names)
    base = Llama.from_gguf("smollm2")
    tok = models.gguf_tokenizer("smollm2")
    names = base.linear_names()
    if blocks is not None:
        names = [n for n in names if int(n.split(".")[1]) < blocks]
    eval_ids = np.array(tok.encode(models.heldout_text()))
    if args.eval_tokens or args.quick:
        eval_ids = eval_ids[:args.eval_tokens or 256]
    calib = windows(np.array(tok.encode(models.calibration_text())), calib_tokens, ctx)
    heldout_x = base.collect_inputs(eval_ids[:ctx][None, :], names)
    print(f"loaded models and data in {time.time() - t0:.1f} s; {len(names)} SmolLM2 linears, "
          f"{len(mini_names)} MiniLM linears, {eval_ids.size} eval tokens, {calib.size} calibration tokens",
          file=sys.stderr)

    settings = dict(quick=args.quick, damp=args.damp, calib_tokens=int(calib.size), eval_tokens=int(eval_ids.size),
                    smollm2_linears=len(names), minilm_linears=len(mini_names),
                    sequential=not args.one_shot, ctx=ctx)
    if args.skip_first:
        settings["skip_first"] = args.skip_first
    if args.clip_tokens is not None:
        settings["clip_tokens"] = args.clip_tokens
    mini_settings = dict(damp=args.damp, calib_tokens=int(sum(map(len, mini_calib))),
                         heldout_tokens=int(next(iter(mini_heldout_x.values())).shape[0]),
                         linears=len(mini_names), sequential=not args.one_shot)
    result = {"settings": settings, "minilm_settings": mini_settings, "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
              f"python {platform.python_version()}, numpy {np.__version__}", "rows": {}}
    sources = ([args.json] if args.resume and args.json else []) + list(args.merge)
    result["merged_from"] = [os.path.basename(p) for p in args.merge]
    for src in sources:
        if os.path.exists(src):
            with open(src) as fh:
                old = json.load(fh)
            for key, fields in (("settings", SMOL_FIELDS), ("minilm_settings", MINI_FIELDS)):
                if old.get(key) == (settings if key == "settings" else mini_settings):
                    for k, v in old.get("rows", {}).items():
                        if k in cfgs and all(f in v for f in fields):
                            result["rows"].setdefault(k, {}).update({f: v[f] for f in fields})
    for cfg in cfgs:
        row = result["rows"].setdefault(cfg, {"description": CONFIGS[cfg][2]})
        if not all(f in row for f in MINI_FIELDS):
            t1 = time.time()
            wsq, osq = minilm_eval(mini, cfg, mini_names, mini_calib, mini_heldout_x, args.damp, not args.one_shot)
            row.update(minilm_w_sqnr_db=wsq, minilm_out_sqnr_db=osq, minilm_seconds=round(time.time() - t1, 1))
            print(f"{cfg}: MiniLM weight SQNR {wsq:.2f} dB, output SQNR {osq:.2f} dB "
                  f"({time.time() - t1:.0f} s)", file=sys.stderr)
        if not all(f in row for f in SMOL_FIELDS):
            t1 = time.time()
            ppl, osq = smollm2_eval(base, cfg, names, calib, eval_ids, heldout_x, args.damp, not args.one_shot,
                                    args.skip_first, args.clip_tokens)
            row.update(smollm2_ppl=ppl, smollm2_out_sqnr_db=osq, seconds=round(time.time() - t1, 1))
            print(f"{cfg}: ppl {ppl:.2f} ({time.time() - t1:.0f} s)", file=sys.stderr)
        if args.json:
            atomic_json(args.json, result)

    dense = result["rows"]["dense"]["smollm2_ppl"]
    table = []
    for cfg in cfgs:
        r = result["rows"][cfg]
        r["ppl_ratio"] = r["smollm2_ppl"] / dense
        tgt = TARGETS.get(cfg) if len(names) == len(base.linear_names()) else None  # whole model only
        r["target_ratio"] = tgt
        r["target_met"] = None if tgt is None else bool(r["ppl_ratio"] <= tgt)
        table.append([cfg, fmt(r["minilm_w_sqnr_db"], ".2f"), fmt(r["minilm_out_sqnr_db"], ".2f"),
                      fmt(r["smollm2_out_sqnr_db"], ".2f"),
                      f"{r['smollm2_ppl']:.2f}", f"{r['ppl_ratio']:.2f}x",
                      "" if tgt is None else f"<= {tgt}x: {'met' if r['target_met'] else 'NOT met'}",
                      f"{r['seconds']:.0f}"])
    print(tabulate(table, headers=["config", "MiniLM W-SQNR dB", "MiniLM out-SQNR dB", "SmolLM2 out-SQNR dB", "PPL",
                                   "PPL / dense", "target", "SmolLM2 s"]))
    print(f"SmolLM2 settings: {json.dumps(settings)}\nMiniLM settings: {json.dumps(mini_settings)}")
    if args.variants:
        result["variants"] = variant_rows(args.variants, settings)
        print("\nCalibration variants (ratio to the dense PPL of the same run):")
        print(tabulate([[v["config"], v["settings"], f"{v['smollm2_ppl']:.2f}", f"{v['ppl_ratio']:.2f}x"]
                        for v in result["variants"]], headers=["config", "settings vs main run", "PPL", "PPL / dense"]))
    if args.json:
        atomic_json(args.json, result)
    return 0


def variant_rows(paths, main_settings):
    """Rows of other runs, labelled by how their settings differ from the main run."""
    out = []
    for path in paths:
        with open(path) as fh:
            run = json.load(fh)
        st, rows = run.get("settings", {}), run.get("rows", {})
        if "dense" not in rows or "smollm2_ppl" not in rows["dense"]:
            raise NmaccelError(f"{path} has no dense row: run it with the benchmark first")
        diff = ", ".join(f"{k}={st[k]}" for k in sorted(st) if main_settings.get(k) != st[k]) or "same"
        for cfg, r in rows.items():
            if cfg != "dense" and "smollm2_ppl" in r:
                out.append(dict(config=cfg, settings=diff, smollm2_ppl=r["smollm2_ppl"],
                                ppl_ratio=r["smollm2_ppl"] / rows["dense"]["smollm2_ppl"], source=os.path.basename(path)))
    return out


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NmaccelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
