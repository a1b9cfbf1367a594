"""Experiment 4: LLaMA-7B scaling on the measured accelerator top (claims: 1.29x end-to-end,
1.36x per-token throughput with 2:4 sparsity + INT4).

    python scripts/exp4_llama7b.py [--fmax-json PATH] [--mem-gbps 0.1,0.5,1.6,12.8] [--tokens 1,64]

Per-token latency and throughput of LLaMA-7B's linear layers (32 blocks x q, k, v, o 4096x4096,
gate/up 4096->11008, down 11008->4096; + lm_head 4096->32000 kept dense INT8) on the accelerator
top whose fmax was measured by place and route (benchmarks/results/fpga_study.json if committed,
else the best top of fmax_study.json; the file used is recorded). Cycles come from
nmaccel.golden.cyclemodel, which equals the RTL's valid-signal cycle count on every tested shape
(tests/test_cyclemodel.py, benchmarks/results/top_cycles.json). Roofline: the host port is fed by
a memory of MEM_GBPS GB/s; a GEMM takes max(cycles / fmax, host bytes / bandwidth).
Attention score / softmax / norms are not run by the top and are not counted.
Writes benchmarks/results/exp4_llama7b.{json,md,png}.
"""
import argparse

from _exp import (MODES, gemm_time, md_table, measured_array, measured_fmax, pyplot, sized_top,
                  write_results)

HIDDEN, FFN, LAYERS, VOCAB = 4096, 11008, 32, 32000
BLOCK = [("attn_q", HIDDEN, HIDDEN), ("attn_k", HIDDEN, HIDDEN), ("attn_v", HIDDEN, HIDDEN),
         ("attn_o", HIDDEN, HIDDEN), ("ffn_gate", HIDDEN, FFN), ("ffn_up", HIDDEN, FFN),
         ("ffn_down", FFN, HIDDEN)]           # (name, K in, N out)
CLAIMS = {"end_to_end": 1.29, "per_token_throughput": 1.36}


def parse_list(text, conv):
    return [conv(v) for v in text.split(",") if v.strip()]


def model_time(p, fmax, T, mode, nk, mg, mem):
    """Seconds for one forward of T tokens: 32 blocks in (mode, nk:mg) + dense INT8 lm_head."""
    block = [gemm_time((T, K, N), p, mode, nk, mg, fmax, mem) for _, K, N in BLOCK]
    # lm_head: VOCAB columns in GEMMs of at most n_tiles_max column tiles (the host splits N)
    cap = p.n_tiles_max * p.array.cols
    key = "seconds_roofline"
    head = sum(gemm_time((T, HIDDEN, min(cap, VOCAB - n0)), p, "int8", 4, 4, fmax, mem)[key]
               for n0 in range(0, VOCAB, cap))
    return {"blocks_s": LAYERS * sum(b[key] for b in block), "lm_head_s": head,
            "cycles_blocks": LAYERS * sum(b["cycles"] for b in block),
            "bytes_blocks": LAYERS * sum(b["bytes"] for b in block),
            "per_layer": {n: b for (n, _, _), b in zip(BLOCK, block)}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fmax-json", help="results file with the top's measured fmax")
    ap.add_argument("--mem-gbps", default="0.1,0.5,1.6,12.8",
                    help="memory bandwidths feeding the host port, GB/s (0 = unlimited)")
    ap.add_argument("--tokens", default="1,64", help="tokens per forward (1: decode)")
    ap.add_argument("--host-bits", type=int, default=64, help="host port width of the top")
    ap.add_argument("--out-dir", help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)
    fm = measured_fmax(args.fmax_json)
    a = measured_array(fm)
    f = fm["fmax_mhz"]
    toks = parse_list(args.tokens, int)
    mems = parse_list(args.mem_gbps, float)
    shapes = [(max(toks), K, N) for _, K, N in BLOCK]
    p = sized_top(a, shapes, host_bits=args.host_bits)
    # the same-device baseline: the dense INT8 top at its own measured fmax, when placed
    try:
        fd = measured_fmax(args.fmax_json, top="dense")
        dense_top = (sized_top(measured_array(fd), shapes, host_bits=args.host_bits), fd) if "top" in fd["row"] else None
    except SystemExit:
        dense_top = None
    rows, data = [], []
    for T in toks:
        for mem in mems:
            base = None
            for label, mode, nk, mg in MODES:
                r = model_time(p, f, T, mode, nk, mg, mem or None)
                total = r["blocks_s"] + r["lm_head_s"]
                if base is None:
                    base = r
                    base_total = total
                row = {"tokens": T, "mem_gbps": mem or "unlimited", "config": label,
                       "per_token_ms": 1e3 * total / T, "tokens_per_s": T / total,
                       "blocks_speedup": base["blocks_s"] / r["blocks_s"],
                       "end_to_end_speedup": base_total / total,
                       "cycles_blocks": r["cycles_blocks"], "host_MB_blocks": r["bytes_blocks"] / 1e6}
                if dense_top:
                    dt = model_time(dense_top[0], dense_top[1]["fmax_mhz"], T, "int8", 4, 4, mem or None)
                    row["end_to_end_vs_dense_top"] = (dt["blocks_s"] + dt["lm_head_s"]) / total
                rows.append(row)
                data.append({**row, "per_layer": r["per_layer"]})
    headers = ["T", "mem GB/s", "config", "ms/token", "tokens/s", "x blocks", "x end-to-end",
               "x end-to-end vs dense INT8 top (own fmax)", "block cycles", "host MB (blocks)"]
    body = [[r["tokens"], r["mem_gbps"], r["config"], r["per_token_ms"], r["tokens_per_s"],
             r["blocks_speedup"], r["end_to_end_speedup"], r.get("end_to_end_vs_dense_top", "-"),
             r["cycles_blocks"], r["host_MB_blocks"]]
            for r in rows]
    src = fm["row"]
    md = ["# Experiment 4: LLaMA-7B scaling on the measured accelerator top", "",
          f"**Claims (source, unverified, measured on a GPU):** {CLAIMS['end_to_end']}x end-to-end latency "
          f"and {CLAIMS['per_token_throughput']}x per-token throughput from 2:4 sparsity + INT4.", "",
          f"**Hardware:** the {src.get('shape')} accelerator top (n_max 4, m_max 8, INT8 + INT4, pipeline "
          f"'{src.get('config')}', double-buffered weights, {args.host_bits}-bit host port) at its "
          f"**measured fmax {f:.1f} MHz** (`{fm['source']}`: {src.get('lut')} LUT, {src.get('dsp')} DSP, "
          f"ECP5-85k nextpnr), with the buffers it was placed with ({p.act_depth} activation entries, "
          f"t_max {p.t_max}, k_tiles_max {p.k_tiles_max}): every LLaMA-7B K runs on it, in token tiles where "
          "K tiles x steps exceed the activation buffer. Cycles: nmaccel.golden.cyclemodel (equal to RTL "
          "cycles on every tested shape). Linear layers only (32 blocks + dense INT8 lm_head); "
          "attention scores, softmax and norms are not counted. Speedups are vs dense INT8 on the same "
          "top; `x blocks` excludes the lm_head. The same-device baseline column: the dense INT8 top "
          + (f"({dense_top[1]['row'].get('shape')}, {dense_top[1]['row'].get('dsp')} DSP) at its own measured "
             f"fmax {dense_top[1]['fmax_mhz']:.1f} MHz, same model and host link"
             if dense_top else "(not in the fmax file)") + ".", "",
          md_table(body, headers, floatfmt=".4g"), ""]
    dec = {r["config"]: r for r in rows if r["tokens"] == toks[0] and r["mem_gbps"] == (mems[-1] or "unlimited")}
    if "2:4 INT4" in dec:
        md.append(f"At T={toks[0]}, {mems[-1] or 'unlimited'} GB/s: 2:4 INT4 is "
                  f"**{dec['2:4 INT4']['end_to_end_speedup']:.2f}x** end-to-end and "
                  f"{dec['2:4 INT4']['blocks_speedup']:.2f}x on the blocks vs dense INT8 on this top "
                  f"(claims {CLAIMS['end_to_end']}x / {CLAIMS['per_token_throughput']}x vs a dense GPU "
                  f"baseline); absolute speed is {dec['2:4 INT4']['tokens_per_s']:.3g} tokens/s: a "
                  f"{src.get('shape')} array at {f:.0f} MHz is orders of magnitude below a GPU.")
    plt = pyplot()
    fig, axes = plt.subplots(1, len(toks), figsize=(6 * len(toks), 4), squeeze=False)
    for ax, T in zip(axes[0], toks):
        for label, *_ in MODES:
            sel = [r for r in rows if r["tokens"] == T and r["config"] == label]
            ax.plot([r["mem_gbps"] if r["mem_gbps"] != "unlimited" else 1e3 for r in sel],
                    [r["tokens_per_s"] for r in sel], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("memory bandwidth feeding the host port (GB/s; 1000 = unlimited)")
        ax.set_ylabel("tokens/s (modelled at measured fmax)")
        ax.set_title(f"LLaMA-7B linears, T={T}, {src.get('shape')} top @ {f:.0f} MHz")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return write_results("exp4_llama7b", {"claims": CLAIMS, "fmax": fm, "top": {
        "rows": a.rows, "cols": a.cols, "pipeline_stages": a.pipeline_stages, "host_bits": p.host_bits,
        "t_max": p.t_max, "k_tiles_max": p.k_tiles_max, "n_tiles_max": p.n_tiles_max},
        "rows": data}, md, fig, args.out_dir)


if __name__ == "__main__":
    raise SystemExit(main())
