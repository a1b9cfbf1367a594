"""Golden-model speed: exact packed GEMM vs dense numpy of the same integer product.

    python benchmarks/golden_speed.py [--size 4096] [--tokens 64] [--repeat 5] [--json PATH]

Packs a seeded random (size x size) weight as 2:4 INT4 g128 and as dense INT8 (per channel),
then times, in one run: nmaccel.golden.gemm with a prepared plan (weights unpacked once), gemm
including the unpack, gemm_csr (scipy.sparse), and dense numpy `x @ w.T` in float64 and in int64
on pre-converted arrays, and one-level exact Strassen (weight blocks precomputed) on the 2:4
weight, whose operand bit growth and lost N:M structure are printed. Every result is checked
equal to the int64 product. Ratios are
dense time / golden time (> 1: golden is faster). Times are the best of --repeat runs.
"""
import argparse
import importlib
import time

import numpy as np
from tabulate import tabulate

from nmaccel.pack import pack_weights

from nmaccel.golden.strassen import strassen_bit_growth, strassen_gemm
from nmaccel.pack.strassen import strassen_nm_report, strassen_weight_blocks
from nmaccel.provenance import write_result

G = importlib.import_module("nmaccel.golden.gemm")

CONFIGS = [
    ("2:4 INT4 g128", dict(n_keep=2, m_group=4, bits=4, group_size=128)),
    ("dense INT8", dict(n_keep=1, m_group=1, bits=8)),
]


def best_time(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(size, tokens, repeat, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((size, size)).astype(np.float32)
    x = rng.integers(-128, 128, size=(tokens, size)).astype(np.int8)
    rows = []
    for name, kw in CONFIGS:
        p = pack_weights(w, **kw)
        w_int = p.int_weights().astype(np.int64)
        w64, x64 = w_int.astype(np.float64), x.astype(np.float64)
        xi = x.astype(np.int64)
        t_int, ref = best_time(lambda: xi @ w_int.T, max(1, min(repeat, 2)))
        t_f64, yf = best_time(lambda: (x64 @ w64.T), repeat)
        np.testing.assert_array_equal(yf.astype(np.int64), ref)
        plan = G.prepare(p)
        timings = {
            "gemm (prepared plan)": best_time(lambda: G.gemm(plan, x), repeat),
            "gemm (incl. unpack)": best_time(lambda: G.gemm(p, x), max(1, repeat // 2)),
            "gemm_csr (scipy.sparse)": best_time(lambda: G.gemm_csr(p, x), max(1, repeat // 2)),
        }
        rows.append({"config": name, "method": "dense numpy float64", "ms": 1e3 * t_f64,
                     "vs_dense_f64": 1.0, "vs_dense_int64": t_int / t_f64, "blas": "float64"})
        rows.append({"config": name, "method": "dense numpy int64", "ms": 1e3 * t_int,
                     "vs_dense_f64": t_f64 / t_int, "vs_dense_int64": 1.0, "blas": "-"})
        for method, (t, y) in timings.items():
            np.testing.assert_array_equal(y, ref)
            rows.append({"config": name, "method": method, "ms": 1e3 * t,
                         "vs_dense_f64": t_f64 / t, "vs_dense_int64": t_int / t,
                         "blas": plan.method if "gemm (" in method else "-"})
        if kw["n_keep"] < kw["m_group"]:
            blocks = strassen_weight_blocks(p.int_weights(), 1)
            t_s, ys = best_time(lambda: strassen_gemm(p, x, 1, wblocks=blocks), max(1, repeat // 2))
            np.testing.assert_array_equal(ys, ref)
            rows.append({"config": name, "method": "strassen 1 level (7 products)", "ms": 1e3 * t_s,
                         "vs_dense_f64": t_f64 / t_s, "vs_dense_int64": t_int / t_s, "blas": "per product"})
            strassen = {"bit_growth": strassen_bit_growth(8, kw["bits"], 1),
                        "nm": strassen_nm_report(p.int_weights(), kw["n_keep"], kw["m_group"], 1)}
    return rows, strassen


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="out = in features (default 4096)")
    ap.add_argument("--tokens", type=int, default=64, help="activation rows T (default 64)")
    ap.add_argument("--repeat", type=int, default=5, help="timing repeats, best taken (default 5)")
    ap.add_argument("--json", help="write the rows to this JSON file")
    args = ap.parse_args()
    rows, strassen = run(args.size, args.tokens, args.repeat)
    print(f"exact GEMM {args.tokens}x{args.size} @ ({args.size}x{args.size}).T, all results bit-equal")
    print(tabulate([[r["config"], r["method"], r["blas"], r["ms"], r["vs_dense_f64"], r["vs_dense_int64"]]
                    for r in rows],
                   headers=["weights", "method", "exact path", "ms", "x vs dense f64", "x vs dense int64"],
                   floatfmt=".2f"))
    g, nm = strassen["bit_growth"], strassen["nm"]
    print(f"\nStrassen (1 level) on the 2:4 INT4 weight: operands grow to INT{g['act_operand_bits']} "
          f"activations x INT{g['w_operand_bits']} weights ({g['product_bits']}-bit products); "
          f"nonzeros {nm['density']:.3f} -> {nm['density_after']:.3f} after pre-adding, "
          f"{100 * nm['nm_violation_fraction']:.1f}% of 4-runs break 2:4")
    if args.json:
        write_result(args.json, {"size": args.size, "tokens": args.tokens, "rows": rows, "strassen": strassen})


if __name__ == "__main__":
    main()
