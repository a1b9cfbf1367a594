"""Verilator speed of the accelerator top, and the 4096 x 4096 headline measured on RTL.

    python benchmarks/verilator_speed.py [--json PATH] [--quick] [--seed 0]

1. Simulated cycles/s of the Verilator top (nmaccel.verilog.cosim_top: dedicated C++ host harness,
   -O3 --x-assign fast --x-initial fast, g++ -O2) on a 4x4 and an 8x8 top (target >= 1M on 8x8),
   with the PyRTL elaboration + Verilog export time and the Verilator build time apart.
2. Headline: a random 4096 x 4096 weight (seeded), T = 64 tokens, dense INT8 vs 2:4 INT8 vs 2:4
   INT4 on the same 8x8 top, each simulated cycle by cycle by Verilator through
   run_gemm(backend="verilator") and checked against nmaccel.golden.gemm exactly; RTL cycles next
   to nmaccel.golden.cycles, wall times incl. the build (target < 60 s per mode; the build is
   shared: it is counted in the first mode's wall time).
All ratios printed come from this one run. --quick: 1024 x 1024 and smaller speed runs.
"""
import argparse
import os
import platform
import time

import numpy as np
from tabulate import tabulate

from nmaccel.run import runner
from nmaccel.golden import cyclemodel as cm
from nmaccel.golden.gemm import gemm as golden_gemm
from nmaccel.arch.config import TopConfig
from nmaccel.arch.config import ArrayConfig, RuntimeConfig
from nmaccel.pack import pack_weights
from nmaccel.provenance import write_result
from nmaccel.verilog.tools import find_verilator

MODES = [("dense INT8", "int8", 4, 4, 8), ("2:4 INT8", "int8", 2, 4, 8), ("2:4 INT4", "int4", 2, 4, 4)]


def array(n):
    """n x n array with the modes the headline compares (no codebook tables)."""
    return ArrayConfig(rows=n, cols=n, n_max=4, m_max=8, modes=("int8", "int4"))


def top_for(a, K, N, T, host_bits=64):
    """Smallest top that holds a (T, K, N) GEMM in one job (dense: window of 4 columns)."""
    return TopConfig(array=a, host_bits=host_bits, t_max=max(2, T), k_tiles_max=-(-K // (a.rows * 4)),
                     n_tiles_max=-(-N // a.cols))


def run_mode(packed, x, p):
    """run_gemm on Verilator + exact golden check; wall time of every stage."""
    t = time.perf_counter()
    res = runner.run_gemm(packed, x, p.array, top_cfg=p, backend="verilator")
    wall = time.perf_counter() - t
    sim = runner.get_topsim(p, 0, "verilator")
    t = time.perf_counter()
    exact = bool(np.array_equal(res.outputs, golden_gemm(packed, x)))
    check = time.perf_counter() - t
    return res, sim, wall, check


def speed_row(n, K, N, T, rng):
    a = array(n)
    p = top_for(a, K, N, T)
    packed = pack_weights(rng.standard_normal((N, K)).astype(np.float32), n_keep=4, m_group=4, bits=8)
    x = rng.integers(-128, 128, size=(T, K))
    runner._CACHE.clear()
    res, sim, wall, _ = run_mode(packed, x, p)
    lr = sim.last_run
    return {"array": f"{n}x{n}", "GEMM (T,K,N)": f"({T},{K},{N}) dense INT8",
            "cycles_run": lr.cycles_run, "sim_loop_s": round(lr.sim_s, 3),
            "Mcycles/s": round(lr.cycles_run / lr.sim_s / 1e6, 3),
            "outputs_exact": bool(np.array_equal(res.outputs, golden_gemm(packed, x))),
            "cycles == model": res.cycles == res.model_cycles,
            "elaboration_s (PyRTL + Verilog)": round(sim.model.elaboration_s, 2),
            "verilog_MB": round(sim.model.verilog_bytes / 1e6, 2),
            "build_s": round(sim.model.build_s, 1), "build_cached": sim.model.cached,
            "run_gemm wall_s": round(wall, 2)}


def headline(K, N, T, rng, host_bits=64):
    a = array(8)
    p = top_for(a, K, N, T, host_bits)
    w = rng.standard_normal((N, K)).astype(np.float32)
    x = rng.integers(-128, 128, size=(T, K))
    runner._CACHE.clear()
    rows = []
    for label, mode, nk, mg, bits in MODES:
        t0 = time.perf_counter()
        packed = pack_weights(w, n_keep=nk, m_group=mg, bits=bits)
        t_pack = time.perf_counter() - t0
        res, sim, wall, check = run_mode(packed, x, p)
        lr = sim.last_run
        model = cm.cycles((T, K, N), a, RuntimeConfig(mode, nk, mg), p)
        first = not rows
        rows.append({"mode": label, "rtl_cycles": res.cycles, "model_cycles": model,
                     "cycles == model": res.cycles == model,
                     "outputs == golden": bool(np.array_equal(res.outputs, golden_gemm(packed, x))),
                     "Mcycles/s": round(lr.cycles_run / lr.sim_s / 1e6, 3),
                     "build_s": round(sim.model.build_s, 1) if first else 0.0,
                     "elab_s": round(sim.model.elaboration_s, 1) if first else 0.0,
                     "sim_s": round(lr.wall_s, 1), "pack_s": round(t_pack, 1),
                     "golden_s": round(check, 1),
                     "wall_s incl. build": round(t_pack + wall + check, 1)})
    base = rows[0]["rtl_cycles"]
    for r in rows:
        r["speedup vs dense INT8 (RTL)"] = round(base / r["rtl_cycles"], 3)
        r["speedup (model)"] = round(rows[0]["model_cycles"] / r["model_cycles"], 3)
    return p, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write results to this JSON file")
    ap.add_argument("--quick", action="store_true", help="1024 x 1024 headline, small speed runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--host-bits", type=int, default=64,
                    help="headline top's host stream width (an 8x8 top needs 128 for 2:4 INT4 weight words "
                         "to keep up at T=64)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    KN = 1024 if args.quick else 4096
    T = 64
    speed = [speed_row(4, 512 if args.quick else 1024, 256 if args.quick else 1024, T, rng)]
    p, head = headline(KN, KN, T, rng, args.host_bits)
    r0 = head[0]
    speed.append({"array": "8x8", "GEMM (T,K,N)": f"({T},{KN},{KN}) dense INT8 (headline top)",
                  "cycles_run": r0["rtl_cycles"], "Mcycles/s": r0["Mcycles/s"],
                  "elaboration_s (PyRTL + Verilog)": r0["elab_s"], "build_s": r0["build_s"]})
    print(f"Verilator top speed ({find_verilator().version()}, -O3 --x-assign fast --x-initial fast, g++ -O2; "
          f"host {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f})")
    print(tabulate(speed, headers="keys"))
    print(f"\nHeadline: {KN} x {KN} weight, T = {T}, 8x8 top (n_max 4, m_max 8, t_max {p.t_max}, "
          f"k_tiles_max {p.k_tiles_max}, host {p.host_bits} bits), every mode fully simulated by Verilator")
    print(tabulate(head, headers="keys"))
    ok = all(r["outputs == golden"] and r["cycles == model"] for r in head) and \
        all(r.get("outputs_exact", True) and r.get("cycles == model", True) for r in speed)
    eight = head[0]["Mcycles/s"]
    print(f"\nRTL outputs == golden and RTL cycles == model everywhere: {ok}")
    print(f"8x8 top: {eight} M simulated cycles/s (target >= 1): {'met' if eight >= 1 else 'NOT met'}")
    print("wall time incl. build per mode (target < 60 s): "
          + ", ".join(f"{r['mode']} {r['wall_s incl. build']} s" for r in head))
    if args.json:
        write_result(args.json, {"quick": args.quick, "seed": args.seed, "host_bits": args.host_bits,
                                 "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "speed": speed,
                                 "headline": head, "all_exact": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
