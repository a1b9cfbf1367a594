"""Experiment 3: sparsity sweep 0/10/30/50/70% vs static-INT8 dense on the same top (source claim,
DAQKF design note: 1.44x-2.47x speedup, 0.82-2.80 samples/W).

    python scripts/exp3_sparsity.py [--fmax-json PATH] [--tokens 64] [--methods magnitude,wanda]

1. Mapping. An unstructured sparsity s is not something an N:M array can skip. Each s maps to the
   N:M pattern the measured top runs fastest among those that prune *at most* s (n_keep <= n_max,
   m_group <= m_max of the elaborated PE, 1 - n/m <= s); among equally fast patterns the one that
   prunes least, then the larger M (finer masks lose less accuracy: 4:8 beat 2:4 in
   benchmarks/results/quality.json). Speed is the validated cycle model's, not a formula.
2. Latency at fmax: SmolLM2-135M's 210 linear layers (shapes from its GGUF) for T tokens on the top
   whose fmax was measured (fpga_study.json if committed, else fmax_study.json; recorded), in
   static INT8 (the baseline: dense INT8) and with the mapped N:M in INT8 and in INT4.
3. Energy (MODELLED, not measured): multiplier operations x (INT8 mult 0.2 pJ + INT32 add 0.1 pJ)
   + host-stream bits x DRAM 1300 pJ / 64 bit (Horowitz, ISSCC 2014, 45 nm); FPGA static power and
   fabric are not modelled. An INT4 multiplier operation carries two products.
4. SmolLM2-135M perplexity on held-out prose (nmaccel/data/heldout_en.txt) with every linear pruned
   to the mapped N:M (magnitude; Wanda calibrated on 512 tokens of pydoc text) and quantized INT8
   per channel / INT4 g128 (g125 for 4:5: a scale group holds whole N:M groups), ratio to the
   dense float model of the same run.
   INT4 timing counts no group-scale records (the top elaborated without group scales).
Writes benchmarks/results/exp3_sparsity.{json,md,png}.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from _exp import gemm_time, md_table, measured_array, measured_fmax, pyplot, sized_top, write_results

SPARSITIES = (0.0, 0.1, 0.3, 0.5, 0.7)
CLAIM = {0.0: (1.44, 0.82), 0.1: (1.56, 1.15), 0.3: (1.87, 1.78), 0.5: (2.16, 2.31), 0.7: (2.47, 2.80)}
PJ = {"mult8": 0.2, "add32": 0.1, "dram_per_bit": 1300 / 64}


def map_sparsity(s, p, shape):
    """(n, m, cycles) of the fastest N:M the top runs with sparsity <= s (ties: larger m)."""
    from nmaccel.arch.config import window_groups
    a = p.array
    best = None
    for m in range(1, a.m_max + 1):
        for n in range(1, min(m, a.n_max) + 1):
            if 1 - n / m > s + 1e-9 or window_groups(n, m, a.n_max, a.m_max) < 1:
                continue
            nn, mm = (a.n_max, a.n_max) if n == m else (n, m)      # dense runs as n_max:n_max
            cyc = gemm_time(shape, p, "int8", nn, mm, 1.0)["cycles"]
            key = (cyc, -n / m, -m)             # fastest; then prune least; then larger M
            if best is None or key < best[0]:
                best = (key, nn, mm)
    return best[1], best[2]


def energy_pj(useful_macs, products_per_op, host_bytes):
    ops = useful_macs / products_per_op
    return ops * (PJ["mult8"] + PJ["add32"]) + host_bytes * 8 * PJ["dram_per_bit"]


def smol_ppl(patterns, methods, calib_tokens=512, ctx=256):
    from nmaccel.models import loaders as models
    from nmaccel.models.llama import Llama
    from nmaccel.pack import pack_weights
    base = Llama.from_gguf("smollm2")
    tok = models.gguf_tokenizer("smollm2")
    ids = np.array(tok.encode(models.heldout_text()))
    cal = np.array(tok.encode(models.calibration_text()))
    n = max(1, calib_tokens // ctx)
    starts = np.linspace(0, len(cal) - ctx, n).astype(int)
    calib = np.stack([cal[s:s + ctx] for s in starts])
    names = base.linear_names()
    t0 = time.perf_counter()
    dense = base.perplexity(ids, ctx=ctx)
    out = {"dense float": {"ppl": dense, "ratio": 1.0, "seconds": round(time.perf_counter() - t0, 1)}}
    print(f"dense float PPL {dense:.3f}", flush=True)
    for (nk, mg) in patterns:
        # INT4 scale groups of 128 weights, shortened to a multiple of M (4:5 -> 125) so that no N:M
        # group straddles two scale groups
        g4 = 128 - 128 % mg if nk != mg else 128
        for bits, kw in ((8, dict(bits=8, granularity="channel")), (4, dict(bits=4, group_size=g4))):
            for method in (methods if nk != mg else ["magnitude"]):
                label = f"{'dense' if nk == mg else f'{nk}:{mg}'} INT{bits} {method if nk != mg else ''}".strip()
                t0 = time.perf_counter()
                args = dict(n_keep=1 if nk == mg else nk, m_group=1 if nk == mg else mg, **kw)
                if method == "magnitude" or nk == mg:
                    model = base.with_linears({nm: pack_weights(base.weights[nm], **args).dequantize()
                                               for nm in names})
                else:
                    model = base.compress(calib, lambda nm, w, x: pack_weights(
                        w, method=method, calibration=x, **args).dequantize(), sequential=True)
                ppl = model.perplexity(ids, ctx=ctx)
                out[label] = {"ppl": ppl, "ratio": ppl / dense, "n_keep": nk, "m_group": mg, "bits": bits,
                              "method": method, "seconds": round(time.perf_counter() - t0, 1)}
                print(f"{label}: PPL {ppl:.3f} ({ppl / dense:.2f}x), {out[label]['seconds']} s", flush=True)
    return out, {"eval_tokens": int(ids.size), "calib_tokens": int(calib.size), "ctx": ctx}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fmax-json", help="results file with the top's measured fmax")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per inference (prefill)")
    ap.add_argument("--methods", default="magnitude,wanda", help="pruning methods for the perplexity")
    ap.add_argument("--no-ppl", action="store_true", help="skip the SmolLM2 perplexity runs")
    ap.add_argument("--ppl-from", help="reuse the perplexity rows of an earlier exp3_sparsity.json (they do "
                    "not depend on the hardware; its commit and command are recorded)")
    ap.add_argument("--out-dir", help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)
    from nmaccel.models.llama import Llama
    fm = measured_fmax(args.fmax_json)
    a = measured_array(fm)
    f = fm["fmax_mhz"]
    base = Llama.from_gguf("smollm2")
    shapes = [(args.tokens, base.weights[n].shape[1], base.weights[n].shape[0]) for n in base.linear_names()]
    p = sized_top(a, shapes)
    distinct = sorted(set(shapes))
    count = {s: shapes.count(s) for s in distinct}
    probe = max(distinct, key=lambda s: s[1] * s[2])

    def model_run(mode, nk, mg):
        cyc = byt = macs = 0
        for s in distinct:
            r = gemm_time(s, p, mode, nk, mg, f)
            cyc += count[s] * r["cycles"]
            byt += count[s] * r["bytes"]
            macs += count[s] * s[0] * s[1] * s[2] * nk / mg
        sec = cyc / (f * 1e6)
        e = energy_pj(macs, 2 if mode == "int4" else 1, byt)
        return {"cycles": cyc, "ms": 1e3 * sec, "host_MB": byt / 1e6, "energy_mJ": e * 1e-9,
                "inferences_per_J": 1 / (e * 1e-12)}

    baseline = model_run("int8", a.n_max, a.n_max)
    rows = []
    patterns = []
    for s in SPARSITIES:
        nk, mg = map_sparsity(s, p, probe)
        patterns.append((nk, mg))
        for mode in ("int8", "int4"):
            r = model_run(mode, nk, mg)
            rows.append({"sparsity": s, "nm": "dense" if nk == mg else f"{nk}:{mg}",
                         "nm_sparsity": 1 - nk / mg, "mode": mode.upper(), **r,
                         "speedup": baseline["cycles"] / r["cycles"],
                         "energy_gain": baseline["energy_mJ"] / r["energy_mJ"],
                         "claim_speedup": CLAIM[s][0], "claim_samples_per_W": CLAIM[s][1]})
    if args.ppl_from:          # perplexity does not depend on the hardware: reuse an earlier run's
        old = json.loads(Path(args.ppl_from).read_text())
        need = {("dense" if nk == mg else f"{nk}:{mg}") for nk, mg in patterns}
        have = {k.split()[0] for k in old["ppl"]}
        if not need <= have:
            raise SystemExit(f"--ppl-from {args.ppl_from} has no perplexity for {sorted(need - have)}: "
                             "run without --ppl-from")
        ppl = old["ppl"]
        ppl_meta = {"reused_from": args.ppl_from, "reused_commit": old["provenance"]["commit"],
                    "reused_command": old["provenance"]["command"], **old["ppl_settings"]}   # the run that measured them
    else:
        ppl, ppl_meta = ({}, {}) if args.no_ppl else smol_ppl(sorted(set(patterns)), args.methods.split(","))
    for r in rows:
        nm = r["nm"]
        for meth in args.methods.split(","):
            key = f"{nm} {r['mode']} {meth if nm != 'dense' else ''}".strip()
            if key in ppl:
                r[f"ppl_ratio_{meth}"] = ppl[key]["ratio"]
    src = fm["row"]
    headers = ["sparsity", "N:M run", "N:M sparsity", "mode", "ms at fmax", "x vs static INT8",
               "claim x", "energy mJ (modelled)", "x energy", "claim samples/W"] + [
        f"PPL / dense ({m})" for m in args.methods.split(",")] if not args.no_ppl else None
    headers = headers or ["sparsity", "N:M run", "N:M sparsity", "mode", "ms at fmax", "x vs static INT8",
                          "claim x", "energy mJ (modelled)", "x energy", "claim samples/W"]
    body = [[f"{r['sparsity']:.0%}", r["nm"], f"{r['nm_sparsity']:.1%}", r["mode"], r["ms"], r["speedup"],
             r["claim_speedup"], r["energy_mJ"], r["energy_gain"], r["claim_samples_per_W"]]
            + ([r.get(f"ppl_ratio_{m}", "-") for m in args.methods.split(",")] if not args.no_ppl else [])
            for r in rows]
    mapping = [[f"{s:.0%}", "dense" if nk == mg else f"{nk}:{mg}", f"{1 - nk / mg:.1%}"]
               for s, (nk, mg) in zip(SPARSITIES, patterns)]
    md = ["# Experiment 3: sparsity sweep vs static-INT8 dense on the same top", "",
          "**Claims (DAQKF design note, unverified; 'Virtex UltraScale+', no public implementation):** "
          + ", ".join(f"{s:.0%}: {c[0]}x, {c[1]} samples/W" for s, c in CLAIM.items()) + ".", "",
          f"**Hardware:** the {src.get('shape')} top (n_max {a.n_max}, m_max {a.m_max}, pipeline "
          f"'{src.get('config')}') at its **measured fmax {f:.1f} MHz** (`{fm['source']}`). Workload: the "
          f"{len(shapes)} linear layers of SmolLM2-135M at T = {args.tokens} tokens; cycles from the "
          "validated cycle model. Baseline: dense static INT8 on the same top "
          f"({baseline['ms']:.4g} ms, {baseline['energy_mJ']:.4g} mJ modelled).", "",
          "**Mapping** (fastest N:M on this PE that prunes at most the requested sparsity; among equally fast ones the least pruning, then the larger M):", "",
          md_table(mapping, ["requested sparsity", "N:M the top runs", "its sparsity"]), "",
          md_table(body, headers, floatfmt=".4g"), "",
          "Energy is MODELLED (45 nm ASIC constants, Horowitz ISSCC 2014: INT8 mult 0.2 pJ, INT32 add "
          "0.1 pJ, DRAM 1300 pJ / 64 bit), no FPGA power measurement; the host stream dominates it. "
          "10% sparsity maps to dense: no N:M pattern with n_keep <= 4, m_group <= 8 prunes <= 10% and "
          "runs faster. This PE's sparsity speedup saturates at 2x (window <= m_max = 8 vs dense 4), so "
          "70% maps to the same 4:8 as 50%: pruning more would lose accuracy and gain no cycles."]
    if ppl:
        md += ["", f"SmolLM2-135M perplexity (dense float {ppl['dense float']['ppl']:.3f}; "
               f"{ppl_meta['eval_tokens']} held-out tokens, ctx {ppl_meta['ctx']}; Wanda calibrated on "
               f"{ppl_meta['calib_tokens']} off-domain tokens, sequential"
               + (f"; reused from `{ppl_meta['reused_from']}`, made at commit {ppl_meta['reused_commit'][:10]} by "
                  f"`{ppl_meta['reused_command']}`" if "reused_from" in ppl_meta else "") + "):", "",
               md_table([[k, v["ppl"], v["ratio"], v["seconds"]] for k, v in ppl.items()],
                        ["configuration", "PPL", "x dense", "seconds"], floatfmt=".4g")]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, mk in (("INT8", "o"), ("INT4", "s")):
        sel = [r for r in rows if r["mode"] == mode]
        ax.plot([100 * r["sparsity"] for r in sel], [r["speedup"] for r in sel], marker=mk,
                label=f"ours: mapped N:M {mode} (measured fmax, cycle model)")
    ax.plot([100 * s for s in SPARSITIES], [CLAIM[s][0] for s in SPARSITIES], "r--", marker="x",
            label="claim (DAQKF note)")
    ax.set_xlabel("requested sparsity (%)")
    ax.set_ylabel("x vs static dense INT8")
    ax.set_title(f"Exp 3: sparsity sweep, SmolLM2 linears T={args.tokens}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return write_results("exp3_sparsity", {"claims": {str(k): v for k, v in CLAIM.items()}, "fmax": fm,
                                            "energy_pj": PJ, "baseline": baseline, "mapping": mapping,
                                            "rows": rows, "ppl": ppl, "ppl_settings": ppl_meta},
                          md, fig, args.out_dir)


if __name__ == "__main__":
    raise SystemExit(main())
