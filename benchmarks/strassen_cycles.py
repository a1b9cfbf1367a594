"""Strassen block mode: where it pays and where it does not.

    python benchmarks/strassen_cycles.py [--array 4x4] [--n-max 4] [--tokens 8 32 64] [--json PATH]

1. Cycles, same hardware (one elaborated StrassenTileConfig, runtime strassen on / off): a real
   MiniLM weight slice (2 * cols outputs x 2 * rows * n_max K, dense INT8) times seeded INT8
   activations (T tokens), simulated as 8 plain block products and as 7 Strassen products;
   outputs must equal x @ w.T, cycles must equal the golden formula. Ratio plain / Strassen
   -> 8/7 = 1.143 once t = T/2 >= 2 * rows + cols - 2 (weights load under the stream).
2. Multipliers: $mul cells of the elaborated tile vs a plain 8-bit INT8 array of the same size
   (same count, 9x9 instead of 8x8 bits), and multiplier-cycles per blocked problem (7/8).
3. Where it does not pay (real MiniLM layer 0 query weight, 2:4 pruned): pre-added weight
   blocks lose the N:M structure (`strassen_nm_report`) and INT4 range (`strassen_bit_growth`,
   and the measured fraction of pre-added INT4 weights outside [-8, 7]).
4. With --synth: Yosys ECP5 cells of the tile (array + pre-adders + muxes + t_max rows of
   Strassen and plain accumulators) vs the plain INT8 array alone.
"""
import argparse
import time

import numpy as np
import pyrtl
from tabulate import tabulate

from nmaccel.golden import strassen_tile as gst
from nmaccel.golden.strassen import strassen_bit_growth
from nmaccel.hdl.array import make_array_top
from nmaccel.arch.config import ArrayConfig
from nmaccel.arch.config import StrassenTileConfig
from nmaccel.hdl.strassen_tile import make_strassen_tile_top
from nmaccel.run.strassen_tile import run_strassen_tile
from nmaccel.models.loaders import load_weights
from nmaccel.pack import pack_weights
from nmaccel.pack.strassen import strassen_nm_report, strassen_weight_blocks
from nmaccel.provenance import write_result

LAYER = "encoder.layer.0.attention.self.query.weight"


def _muls(build):
    block = pyrtl.Block()
    with pyrtl.set_working_block(block):
        build()
    return sorted((len(n.args[0]), len(n.args[1])) for n in block.logic if n.op == "*")


def cycles_table(rows, cols, n_max, token_list, w_layer):
    t_max = max(-(-T // 2) for T in token_list)
    cfg = StrassenTileConfig(rows=rows, cols=cols, n_max=n_max, t_max=t_max)
    k = 2 * cfg.lanes
    pw = pack_weights(w_layer[:2 * cols, :k], n_keep=4, m_group=4, bits=8)
    wi = pw.int_weights()
    rng = np.random.default_rng(0)
    out = []
    for T in token_list:
        x = rng.integers(-128, 128, size=(T, k))
        x[0, 0], x[-1, -1] = -128, 127
        ref = x.astype(np.int64) @ wi.astype(np.int64).T
        res = {}
        for st in (False, True):
            t0 = time.perf_counter()
            r = run_strassen_tile(x, wi, cfg, strassen=st)
            res[st] = dict(cycles=r.cycles, exact=bool(np.array_equal(r.outputs, ref)),
                           formula=gst.strassen_tile_cycles(cfg, T, st), sim_s=time.perf_counter() - t0)
        t = -(-T // 2)
        out.append(dict(tokens=T, t=t, plain=res[False]["cycles"], strassen=res[True]["cycles"],
                        ratio=res[False]["cycles"] / res[True]["cycles"], ideal=8 / 7,
                        no_bubble=t >= 2 * rows + cols - 2,
                        formula_ok=all(v["cycles"] == v["formula"] for v in res.values()),
                        exact=all(v["exact"] for v in res.values())))
    return cfg, out


def multiplier_report(cfg):
    a = cfg.array
    tile = _muls(lambda: make_strassen_tile_top(cfg))
    plain = _muls(lambda: make_array_top(ArrayConfig(rows=a.rows, cols=a.cols, n_max=a.n_max, m_max=a.m_max,
                                                     modes=("int8",), double_buffer=True)))
    per_block = a.rows * a.cols * a.n_max
    return dict(tile_muls=len(tile), tile_mul_width=sorted(set(tile)), plain_muls=len(plain),
                plain_mul_width=sorted(set(plain)), strassen_block_products=7, plain_block_products=8,
                mult_cycles_ratio=7 / 8, multipliers_per_product=per_block)


def loss_report(w_layer):
    out = {}
    for bits in (8, 4):
        pw = pack_weights(w_layer, n_keep=2, m_group=4, bits=bits)
        wi = pw.int_weights()
        nm = strassen_nm_report(wi, 2, 4)
        ops = strassen_weight_blocks(wi, 1)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        outside = sum(int(np.count_nonzero((o < lo) | (o > hi))) for o in ops) / sum(o.size for o in ops)
        g = strassen_bit_growth(8, bits)
        out[f"2:4 INT{bits}"] = dict(density=nm["density"], density_after=nm["density_after"],
                                     nm_violation_fraction=nm["nm_violation_fraction"],
                                     w_operand_bits=g["w_operand_bits"], w_fits=g["w_fits"],
                                     act_operand_bits=g["act_operand_bits"],
                                     outside_range_fraction=outside)
    return out


def synth_report(cfg):
    import tempfile
    from pathlib import Path

    from nmaccel.verilog.export import export_verilog
    from nmaccel.verilog.synth import synthesize
    a = cfg.array
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, build in (("strassen_tile", lambda: make_strassen_tile_top(cfg)),
                            ("plain_array", lambda: make_array_top(ArrayConfig(
                                rows=a.rows, cols=a.cols, n_max=a.n_max, m_max=a.m_max, modes=("int8",),
                                double_buffer=True)))):
            block = pyrtl.Block()
            with pyrtl.set_working_block(block):
                build()
                path = Path(d) / f"{name}.v"
                export_verilog(str(path), block=block, module_name=name)
            r = synthesize(str(path), name, "ecp5")
            out[name] = {k: r[k] for k in ("lut", "ff", "carry", "dsp")}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", default="4x4", help="rows x cols of the array (default 4x4)")
    ap.add_argument("--n-max", type=int, default=4, help="lanes per PE (block K = rows * n_max)")
    ap.add_argument("--tokens", type=int, nargs="+", default=[8, 32, 64], help="T per problem (2 blocks of T/2)")
    ap.add_argument("--synth", action="store_true", help="also synthesize tile and plain array (Yosys ECP5)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    rows, cols = (int(v) for v in args.array.lower().split("x"))
    w = load_weights("minilm")[LAYER]
    t0 = time.perf_counter()
    cfg, cyc = cycles_table(rows, cols, args.n_max, args.tokens, w)
    print(f"1. cycles on one {rows}x{cols} array (n_max={args.n_max}, 9-bit operands, double-buffered), "
          f"MiniLM {LAYER} slice {2 * cols}x{2 * cfg.lanes}, dense INT8:")
    print(tabulate([[c["tokens"], c["t"], c["plain"], c["strassen"], f"{c['ratio']:.3f}", f"{c['ideal']:.3f}",
                     c["no_bubble"], c["formula_ok"], c["exact"]] for c in cyc],
                   headers=["T", "t=T/2", "plain 8 products", "Strassen 7", "plain/Strassen", "ideal",
                            "t>=2R+C-2", "cycles==formula", "bit-exact"]))
    mul = multiplier_report(cfg)
    a = cfg.array
    print(f"\n2. multipliers: tile {mul['tile_muls']} $mul cells {mul['tile_mul_width']} (operands "
          f"{a.act_bits}x{a.weight_bits}) vs plain INT8 array {mul['plain_muls']} {mul['plain_mul_width']} "
          f"(8x8; PyRTL signed_mult sign-extends both operands to the product width, one 18x18 DSP "
          f"either way); block products 7 vs 8: multiplier-cycles per blocked problem "
          f"x{mul['mult_cycles_ratio']:.3f}")
    loss = loss_report(w)
    print(f"\n3. where it does not pay: MiniLM {LAYER} ({w.shape[0]}x{w.shape[1]}) pruned 2:4:")
    print(tabulate([[k, f"{v['density']:.3f}", f"{v['density_after']:.3f}", f"{v['nm_violation_fraction']:.3f}",
                     v["w_operand_bits"], v["w_fits"], f"{v['outside_range_fraction']:.3f}"]
                    for k, v in loss.items()],
                   headers=["weights", "density", "pre-added density", "groups breaking 2:4",
                            "weight operand bits", "fits", "outside INT range"]))
    syn = None
    if args.synth:
        syn = synth_report(cfg)
        print(f"\n4. Yosys ECP5, t_max={cfg.t_max}:")
        print(tabulate([[k, v["lut"], v["ff"], v["carry"], v["dsp"]] for k, v in syn.items()],
                       headers=["design", "LUT4", "FF", "CCU2C", "MULT18X18D"]))
    best = max(c["ratio"] for c in cyc)
    print(f"\nStrassen pays for dense INT8 (x{best:.3f} cycles here, ideal 8/7 = 1.143, multipliers 9x9 "
          f"instead of 8x8); it does not pay for N:M or INT4 weights: pre-added blocks are ~dense "
          f"(2:4 halves the steps, x2 > x1.143) and need {loss['2:4 INT4']['w_operand_bits']} bits "
          f"(INT4 token packing, x2, is lost).   [{time.perf_counter() - t0:.1f} s]")
    if args.json:
        write_result(args.json, dict(array=args.array, n_max=args.n_max, cycles=cyc, multipliers=mul, losses=loss, synth=syn))
    return 0 if all(c["exact"] and c["formula_ok"] for c in cyc) else 1


if __name__ == "__main__":
    raise SystemExit(main())
