"""Whole-model Pareto table: budget -> planned layers by configuration, held-out perplexity,
speedup vs dense INT8 on the same top, tokens/s at the top's measured fmax (prefill / decode),
energy estimate. Every row is plan -> compile -> `run --backend golden` on the held-out text
(nmaccel/data/heldout_en.txt, never used for calibration or sensitivity); the first program also
runs one layer through Verilator (bit-exact and cycle-exact check).

    python benchmarks/whole_model.py --profile PROFILE.json [--budgets ppl:1.1,speedup:2.5]
        [--tokens 512] [--work DIR] [--json benchmarks/results/whole_model.json]
PROFILE.json: `nmaccel profile smollm2 -o PROFILE.json` (its command is recorded from the file).
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import scipy

from nmaccel.fileio import atomic_write
from nmaccel.plan.compiler import compile_program, load_program
from nmaccel.plan.policy import plan_file
from nmaccel.plan.profile import git_commit, load_profile
from nmaccel.plan.runner import run_program

DEFAULT_BUDGETS = "ppl:1.05,ppl:1.10,ppl:1.25,speedup:2.5,speedup:3.5"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--budgets", default=DEFAULT_BUDGETS)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--work", default="whole_model_work")
    ap.add_argument("--rtl-layer", default="blk.0.attn_q.weight")
    ap.add_argument("--json", default="benchmarks/results/whole_model.json")
    args = ap.parse_args(argv)
    prof = load_profile(args.profile)
    os.makedirs(args.work, exist_ok=True)
    rows, programs = [], []
    for i, b in enumerate(args.budgets.split(",")):
        t0 = time.time()
        tag = b.replace(":", "_")
        plan_path, prog = os.path.join(args.work, f"plan_{tag}.json"), os.path.join(args.work, f"prog_{tag}")
        plan = plan_file(args.profile, b, plan_path)
        if not os.path.exists(os.path.join(prog, "manifest.json")):
            compile_program(prof["model"]["spec"], plan_path, prog, reuse=programs, progress=False)
        programs.append(prog)
        rtl = [args.rtl_layer] if i == 0 and args.rtl_layer else []
        r = run_program(load_program(prog), backend="verilator" if rtl else "golden", rtl_layers=rtl,
                        n_tokens=args.tokens, progress=False)
        e = r["energy_uj_per_token"]
        rows.append({
            "budget": b, "layers_by_config": plan["predicted"]["configs"],
            "predicted_ppl_ratio": round(plan["predicted"]["ppl_ratio"], 4),
            "ppl": round(r["ppl"], 3), "ppl_ratio_vs_float": round(r["ppl_ratio_vs_float"], 4),
            "ppl_ratio_vs_dense_int8": round(r["ppl_ratio_vs_dense_int8"], 4),
            "speedup_vs_dense_int8_prefill": round(r["speedup_vs_dense_int8"], 3),
            "speedup_vs_dense_int8_decode": round(r["speedup_vs_dense_int8_decode"], 3),
            "tokens_per_s_prefill": round(r["tokens_per_s_prefill"], 2),
            "tokens_per_s_decode": round(r["tokens_per_s_decode"], 3),
            "energy_uj_per_token_decode": [round(e["decode_dram_low"], 1), round(e["decode_dram_high"], 1)],
            "energy_uj_per_token_prefill": [round(e["prefill_dram_low"], 2), round(e["prefill_dram_high"], 2)],
            "energy_uj_per_token_on_chip_decode": round(e["decode_on_chip"], 2),
            "bits_per_weight": round(r["bits_per_weight"], 3), "rtl_checks": r["rtl_checks"],
            "wall_s": round(time.time() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
        base = r
    doc = {
        "what": "SmolLM2-135M whole model: planned linears on the accelerator top (golden twin, cycle model), "
                "rest in float on the host; perplexity on held-out text",
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        "profile_command": f"nmaccel profile {prof['model']['spec']} -o PROFILE.json (calibration "
                           f"{prof['calibration']['calibration_tokens']}, sensitivity {prof['calibration']['sensitivity_tokens']} tokens, "
                           f"{len(prof['configs'])} configurations, commit {prof.get('commit')})",
        "commit": git_commit(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}, "
                   f"numpy {np.__version__}, scipy {scipy.__version__}",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "heldout_text": "nmaccel/data/heldout_en.txt", "text_tokens": base["text_tokens"], "ctx": base["ctx"],
        "dense_float_ppl": round(base["dense_ppl"], 3), "dense_int8_ppl": round(base["dense_int8_ppl"], 3),
        "dense_int8_tokens_per_s_prefill": round(base["dense_int8_tokens_per_s_prefill"], 2),
        "dense_int8_tokens_per_s_decode": round(base["dense_int8_tokens_per_s_decode"], 3),
        "target": prof["target"], "prefill_tokens": base["prefill_tokens"],
        "fmax_mhz": base["fmax_mhz"], "fmax_source": base["fmax_source"],
        "energy_source": base["energy_source"], "scope": base["scope"],
        "configs": [c["name"] for c in prof["configs"]],
        "rows": rows,
    }
    atomic_write(args.json, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
