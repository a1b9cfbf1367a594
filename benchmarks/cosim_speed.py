"""Co-simulation speed: the same exported PyRTL design on Verilator vs pyrtl simulators.

Builds the nmaccel.hdl systolic array (rows x cols, default 8 x 8), drives it with a seeded
random stimulus (weights loaded, then random activations / runtime config), and prints simulated
cycles per second for Verilator (build time separate) and pyrtl.FastSimulation, their ratio, and
checks the outputs equal cycle for cycle on the PyRTL-simulated prefix.

    python benchmarks/cosim_speed.py --rows 8 --cols 8 --cycles 2000000
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyrtl

from nmaccel.verilog import cosim, export


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--cycles", type=int, default=2_000_000)
    ap.add_argument("--pyrtl-cycles", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    pyrtl.reset_working_block()
    export.build_block("array", rows=args.rows, cols=args.cols)
    block = pyrtl.working_block()
    with tempfile.TemporaryDirectory() as tmp:
        exp = export.export_verilog(Path(tmp) / "arr.v", module_name="speed_array",
                                    port_description=False)
        t0 = time.perf_counter()
        model = cosim.build_verilator(exp)
        build_s = time.perf_counter() - t0
    n = args.cycles
    stim = {}
    for p in exp.inputs:
        if p.name in ("clk", "rst"):
            continue
        if p.width > 62:
            words = (p.width + 61) // 62
            base = rng.integers(0, 1 << 62, (min(n, 4096), words))
            vals = np.array([sum(int(v) << (62 * i) for i, v in enumerate(row)) % (1 << p.width)
                             for row in base], dtype=object)
            stim[p.name] = np.resize(vals, n)
        elif p.name.startswith("cfg_load"):
            stim[p.name] = (np.arange(n) == 0).astype(np.int64)
        else:
            stim[p.name] = rng.integers(0, 1 << p.width, n)
    res = model.run(stim)
    ver_cps = res.cycles_run / res.seconds
    k = args.pyrtl_cycles
    head = {key: v[:k] for key, v in stim.items()}
    sim = pyrtl.FastSimulation(tracer=pyrtl.SimulationTrace(block=block), block=block)
    v2p = {p.name: p.pyrtl_name for p in exp.ports}
    t0 = time.perf_counter()
    for c in range(k):
        sim.step({v2p[name]: int(v[c]) for name, v in head.items()})
    py_s = time.perf_counter() - t0
    for p in exp.outputs:
        np.testing.assert_array_equal(np.array(sim.tracer.trace[p.pyrtl_name], dtype=object),
                                      np.array([int(v) for v in res.outputs[p.name][:k]], dtype=object),
                                      err_msg=p.name)
    py_cps = k / py_s
    print(f"{args.rows}x{args.cols} array: Verilator {ver_cps / 1e6:.2f} M cycles/s "
          f"({res.cycles_run} cycles in {res.seconds:.2f} s; build {build_s:.1f} s"
          f"{' cached' if model.cached else ''}), pyrtl.FastSimulation {py_cps / 1e3:.2f} k cycles/s "
          f"({k} cycles), ratio {ver_cps / py_cps:.0f}x; outputs equal on the first {k} cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
