"""Resource study: dense INT8 array vs the width-adjustable N:M array at equal rows x cols x lanes.

Arrays (all weight-stationary, `lanes` multipliers per PE, registered weights and partial sums):
  dense   a naive INT8 array built here: lane l multiplies activation l (no index mux, no INT4)
  wa      nmaccel.hdl array, modes int8+int4, n_max = m_max = lanes (token-packed INT4, no N:M)
  nm      nmaccel.hdl array, modes int8+int4, n_max = lanes, m_max = 2 * lanes (N:M muxes)

Reports LUT / FF / carry / DSP per array and target (DSP synthesis and LUT-only synthesis) and
the LUT-only cost of the N:M selection per multiplier lane: (LUT(nm) - LUT(wa)) / LUT(wa).
Throughput per DSP / per kLUT is not computed here from a formula: benchmarks/fpga_study.py
measures dense-equivalent GMAC/s of whole tops from RTL cycles at each top's placed fmax.

    python benchmarks/synth_study.py --rows 4 --cols 4 --lanes 4 --targets ecp5,xcup [--pnr]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyrtl

from nmaccel.verilog import export, synth
from nmaccel.provenance import write_result


def build_dense_array(rows, cols, lanes, acc_bits):
    """Naive weight-stationary INT8 array: PE(r, c) holds `lanes` INT8 weights (shifted in from
    the top on w_load), multiplies them with the row's `lanes` activations (passed right one PE
    per cycle) and adds the products to the partial sum from above."""
    x_in = [pyrtl.Input(8 * lanes, f"x_in_{r}") for r in range(rows)]
    w_in = [pyrtl.Input(8 * lanes, f"w_in_{c}") for c in range(cols)]
    w_load = pyrtl.Input(1, "w_load")
    x_row = list(x_in)
    w_col = list(w_in)
    psum = [pyrtl.Const(0, bitwidth=acc_bits) for _ in range(cols)]
    for r in range(rows):
        for c in range(cols):
            w = pyrtl.Register(8 * lanes, f"dense.w{r}_{c}")
            w.next <<= pyrtl.select(w_load, w_col[c], w)
            w_col[c] = w
            x = x_row[r]
            terms = [pyrtl.signed_mult(w[8 * i:8 * i + 8], x[8 * i:8 * i + 8]).sign_extended(acc_bits)
                     for i in range(lanes)]
            s = psum[c].sign_extended(acc_bits)
            for t in terms:
                s = pyrtl.signed_add(s, t)[:acc_bits]
            p = pyrtl.Register(acc_bits, f"dense.p{r}_{c}")
            p.next <<= s
            psum[c] = p
            if c + 1 < cols:
                xr = pyrtl.Register(8 * lanes, f"dense.x{r}_{c}")
                xr.next <<= x
                x_row[r] = xr
    for c in range(cols):
        o = pyrtl.Output(acc_bits, f"y_out_{c}")
        o <<= psum[c]


def export_design(kind, args, path):
    pyrtl.reset_working_block()
    if kind == "dense":
        from nmaccel.arch.config import ArrayConfig
        acc = ArrayConfig(rows=args.rows, cols=args.cols, n_max=args.lanes, m_max=args.lanes,
                          modes=("int8",)).acc_bits
        build_dense_array(args.rows, args.cols, args.lanes, acc)
    else:
        m_max = args.lanes if kind == "wa" else 2 * args.lanes
        export.build_block("array", rows=args.rows, cols=args.cols, n_max=args.lanes, m_max=m_max,
                           modes=("int8", "int4"), pipeline=args.pipeline)
    export.export_verilog(path, module_name=f"study_{kind}", port_description=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--targets", default="ecp5,xcup")
    ap.add_argument("--pipeline", action="store_true", help="pipelined mux/product in the hdl arrays")
    ap.add_argument("--pnr", action="store_true", help="also place and route on ECP5 (fmax)")
    ap.add_argument("--json", help="write all reports here")
    args = ap.parse_args(argv)
    targets = args.targets.split(",")
    reports = []
    pes = args.rows * args.cols
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("dense", "wa", "nm"):
            v = Path(tmp) / f"{kind}.v"
            export_design(kind, args, v)
            for tgt in targets:
                for dsp in (True, False):
                    t0 = time.perf_counter()
                    pnr = args.pnr and tgt == "ecp5" and dsp
                    r = synth.synthesize(v, f"study_{kind}", tgt, dsp=dsp, pnr=pnr)
                    r.update(kind=kind, dsp_inference=dsp, wall_s=round(time.perf_counter() - t0, 1))
                    reports.append(r)
                    print(f"{kind:5s} {tgt:6s} dsp={int(dsp)} lut={r['lut']} ff={r['ff']} "
                          f"carry={r['carry']} dsp_cells={r['dsp']} fmax={r['fmax_mhz']} "
                          f"({r['wall_s']} s)", file=sys.stderr, flush=True)
    from tabulate import tabulate
    rows = []
    for tgt in targets:
        by = {(r["kind"], r["dsp_inference"]): r for r in reports if r["target"] == tgt}
        for kind in ("dense", "wa", "nm"):
            rd, rl = by[(kind, True)], by[(kind, False)]
            rows.append([tgt, kind, rd["dsp"], rd["lut"], rd["carry"], rl["lut"], rl["carry"],
                         rd.get("fmax_mhz") or "-"])
        wa, nm = by[("wa", False)], by[("nm", False)]
        lanes = pes * args.lanes
        over = (nm["lut"] - wa["lut"]) / wa["lut"]
        print(f"{tgt}: LUT-only N:M selection overhead per multiplier lane: "
              f"({nm['lut']} - {wa['lut']}) / {wa['lut']} = {100 * over:.1f}% "
              f"({(nm['lut'] - wa['lut']) / lanes:.1f} LUT per lane)")
    print(tabulate(rows, headers=("target", "array", "DSP", "LUT (dsp)", "carry (dsp)", "LUT (nodsp)",
                                  "carry (nodsp)", "fmax MHz"),
                   tablefmt="github"))
    if args.json:
        write_result(args.json, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
