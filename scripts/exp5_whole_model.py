"""Experiment 5: whole-model Pareto, SmolLM2-135M perplexity vs tokens/s on the measured top, for
uniform configurations (every linear layer the same N:M / bits, masks by magnitude, Wanda and
SparseGPT) and for the planner's outputs at several budgets.

    python scripts/exp5_whole_model.py --profile PROFILE.json [--whole-model benchmarks/results/whole_model.json]
        [--methods magnitude,wanda,sparsegpt] [--sparse-bits 8,4] [--tokens 512] [--work DIR]

PROFILE.json: `nmaccel profile smollm2 -o PROFILE.json` (the planner rows' profile; its target top,
calibration text and prefill T are used for the uniform rows too). Every uniform row is
`nmaccel.plan.policy.uniform` -> `compile` -> `run --backend golden` on the held-out prose
(nmaccel/data/heldout_en.txt, never calibration), exactly the path of benchmarks/whole_model.py;
the planner rows are read from that benchmark's JSON (same profile, same text, same top).
tokens/s at the top's measured fmax count the planned linears only (host float work is not
counted), cycles from the validated cycle model. Writes benchmarks/results/exp5_whole_model.{json,md,png}.
Finished uniform rows are cached as JSON in --work: a re-run resumes.
"""
import argparse
import json
import os
import time

from _exp import md_table, pyplot, write_results

from nmaccel.plan.compiler import compile_program, load_program
from nmaccel.plan.policy import uniform
from nmaccel.plan.profile import config, load_profile
from nmaccel.plan.runner import run_program
from nmaccel.fileio import atomic_write


def uniform_configs(methods, sparse_bits=(8, 4)):
    """(label, config) of the uniform rows: dense baselines, then per mask method each N:M x bits."""
    out = [("dense INT8", config(1, 1, 8)), ("dense INT4 g128", config(1, 1, 4, group_size=128))]
    for meth in methods:
        for n, m in ((2, 4), (4, 8)):
            for bits in sparse_bits:
                if bits == 8 and meth == "sparsegpt":
                    continue            # SparseGPT's joint quantization is run at INT4 only
                c = config(n, m, bits, group_size=128 if bits == 4 else None, method=meth)
                out.append((f"{n}:{m} INT{bits}{' g128' if bits == 4 else ''} {meth}", c))
    return out


def run_uniform(prof, profile_path, label, cfg, work, tokens, programs):
    tag = cfg["name"].replace("/", "_").replace(":", "-")
    cache = os.path.join(work, f"row_{tag}.json")
    if os.path.isfile(cache):
        row = json.load(open(cache))
        row["predicted_ppl_ratio"] = uniform(prof, cfg)["predicted"]["ppl_ratio"]   # from the current profile
        return row
    t0 = time.time()
    plan_path, prog = os.path.join(work, f"plan_{tag}.json"), os.path.join(work, f"prog_{tag}")
    plan = uniform(prof, cfg)
    atomic_write(plan_path, json.dumps(plan, indent=1))
    if not os.path.exists(os.path.join(prog, "manifest.json")):
        compile_program(prof["model"]["spec"], plan_path, prog, reuse=programs, progress=False)
    programs.append(prog)
    r = run_program(load_program(prog), backend="golden", n_tokens=tokens, progress=False)
    row = {"kind": "uniform", "label": label, "config": cfg["name"], "method": cfg["method"],
           "predicted_ppl_ratio": plan["predicted"]["ppl_ratio"],
           **{k: r[k] for k in ("ppl", "dense_ppl", "dense_int8_ppl", "ppl_ratio_vs_float", "ppl_ratio_vs_dense_int8",
                                "speedup_vs_dense_int8", "speedup_vs_dense_int8_decode", "tokens_per_s_prefill",
                                "tokens_per_s_decode", "bits_per_weight", "fmax_mhz", "text_tokens")},
           "energy_uj_per_token_decode": [r["energy_uj_per_token"]["decode_dram_low"],
                                          r["energy_uj_per_token"]["decode_dram_high"]],
           "wall_s": round(time.time() - t0, 1)}
    atomic_write(cache, json.dumps(row, indent=1))
    print(json.dumps(row), flush=True)
    return row


def planner_rows(path):
    doc = json.load(open(path))
    rows = []
    for r in doc["rows"]:
        rows.append({"kind": "planner", "label": f"plan {r['budget']}", "config": r["layers_by_config"],
                     "method": "wanda (planner configurations)", "predicted_ppl_ratio": r["predicted_ppl_ratio"],
                     "ppl": r["ppl"], "ppl_ratio_vs_float": r["ppl_ratio_vs_float"],
                     "ppl_ratio_vs_dense_int8": r["ppl_ratio_vs_dense_int8"],
                     "speedup_vs_dense_int8": r["speedup_vs_dense_int8_prefill"],
                     "speedup_vs_dense_int8_decode": r["speedup_vs_dense_int8_decode"],
                     "tokens_per_s_prefill": r["tokens_per_s_prefill"], "tokens_per_s_decode": r["tokens_per_s_decode"],
                     "bits_per_weight": r["bits_per_weight"], "energy_uj_per_token_decode": r["energy_uj_per_token_decode"]})
    return rows, {"file": os.path.relpath(path), "command": doc.get("command"), "commit": doc.get("commit")}


def pareto(rows, x, y):
    """Rows not dominated: higher x (tokens/s) and lower y (perplexity ratio)."""
    front, best = [], float("inf")
    for r in sorted(rows, key=lambda r: (-r[x], r[y])):
        if r[y] < best:
            front.append(r)
            best = r[y]
    return front


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--whole-model", default="benchmarks/results/whole_model.json",
                    help="benchmarks/whole_model.py output with the planner rows ('' to leave them out)")
    ap.add_argument("--methods", default="magnitude,wanda,sparsegpt")
    ap.add_argument("--sparse-bits", default="8,4", help="weight bits of the N:M rows")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--work", default="exp5_work")
    ap.add_argument("--out-dir", help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)
    prof = load_profile(args.profile)
    os.makedirs(args.work, exist_ok=True)
    programs, rows = [], []
    for label, cfg in uniform_configs(args.methods.split(","), [int(b) for b in args.sparse_bits.split(",")]):
        rows.append(run_uniform(prof, args.profile, label, cfg, args.work, args.tokens, programs))
    src = None
    if args.whole_model:
        prow, src = planner_rows(args.whole_model)
        rows += prow
    for phase, key in (("prefill", "tokens_per_s_prefill"), ("decode", "tokens_per_s_decode")):
        for r in pareto(rows, key, "ppl_ratio_vs_float"):
            r[f"pareto_{phase}"] = True
    base = rows[0]
    headers = ["configuration", "kind", "PPL", "x float", "x dense INT8", "predicted x", "tok/s prefill",
               "x prefill", "tok/s decode", "x decode", "bits/w", "Pareto (prefill, decode)"]
    body = [[r["label"], r["kind"], r["ppl"], r["ppl_ratio_vs_float"], r["ppl_ratio_vs_dense_int8"],
             r["predicted_ppl_ratio"] if r["predicted_ppl_ratio"] is not None else "-",
             r["tokens_per_s_prefill"], r["speedup_vs_dense_int8"], r["tokens_per_s_decode"],
             r["speedup_vs_dense_int8_decode"], r["bits_per_weight"],
             ", ".join(p for p in ("prefill", "decode") if r.get(f"pareto_{p}")) or "-"] for r in rows]
    md = ["# Experiment 5: whole-model Pareto (SmolLM2-135M, perplexity vs tokens/s on the measured top)", "",
          "**Claims:** neither source document gives a whole-model accuracy figure. The DAQKF note says "
          "its SPAQ lookup table picks each layer's bit width 'based on the sparsity percentage and the "
          "desired accuracy trade-off' (no number); the N:M + INT4 co-design paper claims a 1.29x "
          "end-to-end latency reduction vs dense GPU baselines, with no perplexity.", "",
          f"**Hardware:** the {prof['target']['rows']}x{prof['target']['cols']} top (pipeline "
          f"'{prof['target']['pipeline']}') at its measured fmax {base['fmax_mhz']:.1f} MHz; cycles from the "
          f"validated cycle model; prefill T = {prof['prefill_tokens']}, decode T = 1. tokens/s count the "
          "planned linears only (norms, attention, embeddings and LM head run in float on the host, not "
          "counted). **Perplexity:** golden integer pipeline (INT8 activations per token) on "
          f"{base['text_tokens']} held-out English tokens; dense float PPL {base['dense_ppl']:.3f}, dense "
          f"INT8 {base['dense_int8_ppl']:.3f}. Masks: magnitude (no data), Wanda and SparseGPT calibrated on "
          f"the profile's {prof['calibration']['calibration_tokens'][1]} pydoc tokens. 'predicted x' is the "
          "planner's additive sensitivity model (measured per layer type on pydoc text): compare it with "
          "the measured column.", "",
          md_table(body, headers, floatfmt=".4g")]
    if src:
        md += ["", f"Planner rows from `{src['file']}` (`{src['command']}`, commit {str(src['commit'])[:10]})."]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    marks = {"magnitude": "v", "wanda": "o", "sparsegpt": "s", "rtn": "D"}
    for ax, (phase, key) in zip(axes, (("prefill", "tokens_per_s_prefill"), ("decode", "tokens_per_s_decode"))):
        for meth, mk in marks.items():
            sel = [r for r in rows if r["kind"] == "uniform" and r["method"] == meth]
            if sel:
                ax.scatter([r[key] for r in sel], [r["ppl_ratio_vs_float"] for r in sel], marker=mk,
                           label=f"uniform, {meth}" if meth != "rtn" else "uniform dense")
        pl = [r for r in rows if r["kind"] == "planner"]
        if pl:
            ax.scatter([r[key] for r in pl], [r["ppl_ratio_vs_float"] for r in pl], marker="*", s=120,
                       c="tab:red", label="planner (budgets)")
        front = sorted((r for r in rows if r.get(f"pareto_{phase}")), key=lambda r: r[key])
        ax.plot([r[key] for r in front], [r["ppl_ratio_vs_float"] for r in front], "k--", lw=0.8,
                label="Pareto front")
        for r in rows:
            ax.annotate(r["label"].replace(" g128", ""), (r[key], r["ppl_ratio_vs_float"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel(f"tokens/s, {phase} (linears on the top at fmax)")
        ax.set_ylabel("perplexity / dense float (held-out)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Exp 5: SmolLM2-135M whole-model Pareto")
    return write_results("exp5_whole_model", {"profile": {"file": args.profile, "commit": prof.get("commit"),
                                                          "calibration": prof["calibration"],
                                                          "target": prof["target"]},
                                              "planner_source": src, "rows": rows},
                         md, fig, args.out_dir)


if __name__ == "__main__":
    raise SystemExit(main())
