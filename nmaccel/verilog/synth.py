"""Yosys synthesis and nextpnr place-and-route of exported Verilog; `nmaccel synth`.

Scripts are the versioned templates synth/<target>.ys ({top}, {dsp} filled in). Yosys
`stat -json` gives cell counts, grouped into LUT / FF / carry / DSP / BRAM / LUTRAM per target;
nextpnr's `--report` JSON gives fmax, utilization and the critical path. ECP5 place-and-route is
out of context (no IO buffers: block timing, any port count) on the LFE5U-85F CABGA381; iCE40
on the UP5K (SG48) or HX8K (CT256) with real IOs.
"""
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from nmaccel.errors import NmaccelError, ToolFailedError, require
from nmaccel.verilog import tools

TARGETS = ("generic", "ice40", "ecp5", "xc7", "xcup")
SCRIPT_DIR = Path(__file__).resolve().parent.parent.parent / "synth"

# cell type -> resource class, per target family
_CLASSES = {
    "generic": {"lut": [r"\$lut"], "ff": [r"\$_.*DFF.*", r"\$_DLATCH.*"], "carry": [], "dsp": [],
                "bram": [], "lutram": [], "mux": [], "io": []},
    "ice40": {"lut": ["SB_LUT4"], "ff": [r"SB_DFF.*"], "carry": ["SB_CARRY"], "dsp": ["SB_MAC16"],
              "bram": ["SB_RAM40_4K", "SB_SPRAM256KA"], "lutram": [], "mux": [],
              "io": ["SB_IO", "SB_GB"]},
    "ecp5": {"lut": ["LUT4"], "ff": ["TRELLIS_FF"], "carry": ["CCU2C"],
             "dsp": ["MULT18X18D", "ALU54B"], "bram": ["DP16KD", "PDPW16KD"],
             "lutram": ["TRELLIS_DPR16X4"], "mux": ["PFUMX", "L6MUX21"], "io": []},
    "xilinx": {"lut": [r"LUT[1-6](_2)?", "INV"], "ff": [r"FD[CPRS]E(_1)?", r"LD[CP]E?"],
               "carry": ["CARRY4", "CARRY8"], "dsp": [r"DSP48E[12]"],
               "bram": [r"RAMB(18|36)E[12]"], "lutram": [r"RAM(16|32|64|128|256)X\d.*", r"RAM(32|64)M.*"],
               "mux": [r"MUXF[789]"], "io": [r"[IO]BUF.*", r"BUFG.*"]},
}
_FAMILY = {"generic": "generic", "ice40": "ice40", "ecp5": "ecp5", "xc7": "xilinx", "xcup": "xilinx"}

DEVICES = {
    "ecp5": {"85k": ["--85k", "--package", "CABGA381", "--out-of-context"]},
    "ice40": {"up5k": ["--up5k", "--package", "sg48"], "hx8k": ["--hx8k", "--package", "ct256"]},
}
DEFAULT_DEVICE = {"ecp5": "85k", "ice40": "up5k"}
# Capacities (for a 'too large' verdict before place-and-route).
CAPACITY = {
    ("ecp5", "85k"): {"lut": 83640, "ff": 83640, "dsp": 156, "bram": 208},
    ("ice40", "up5k"): {"lut": 5280, "ff": 5280, "dsp": 8, "bram": 30},
    ("ice40", "hx8k"): {"lut": 7680, "ff": 7680, "dsp": 0, "bram": 32},
}


# User I/O pins of the package (Lattice ECP5 family data sheet FPGA-DS-02012, table 1.1:
# LFE5U-85F in caBGA381: 205). nextpnr-ecp5 places unconstrained IOs on any of the die's 365
# IO sites and does not check this.
PINS = {("ecp5", "85k"): 205}
# DP16KD aspect ratios (width, depth) Yosys maps a memory onto.
_DP16KD = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
# LUT4 per PE / per output column / fixed, fitted to synthesized tops (4x4 all flags 33.5k,
# 8x8 100.5k, 2x2 6.7k LUT4; nmaccel synth): an estimate for refusing early, never reported.
_LUT_PER_PE, _LUT_PER_COL, _LUT_BASE = 1700, 800, 2000


def _dp16kd(depth, width):
    return min(-(-width // w) * -(-depth // d) for w, d in _DP16KD)


def fit_estimate(p, target="ecp5", device="85k"):
    """Resources the accelerator top `p` (TopConfig) needs on `target`/`device`, before synthesis:
    {resource: [estimate, capacity]} for dsp (exact for this PE: one MULT18X18D per lane, two per
    epilogue lane), bram (the three block-RAM buffers, exact), io (2 * host_bits + 5 + clock)
    and lut (fitted estimate)."""
    a = p.array
    lanes = a.cols * a.tokens_per_step
    ob = max(1, (p.t_max - 1).bit_length())
    est = {"dsp": a.rows * a.cols * a.n_max + 2 * lanes,
           "bram": (_dp16kd(p.act_depth, p.act_rec_bits) + _dp16kd(1 << ob, p.acc_bits * lanes)
                    + _dp16kd(1 << ob, p.out_rec_bits)),
           "io": 2 * p.host_bits + 5 + 2,            # + clock and the export's reset
           "lut": _LUT_PER_PE * a.rows * a.cols + _LUT_PER_COL * a.cols + _LUT_BASE}
    cap = dict(CAPACITY.get((target, device), {}))
    if (target, device) in PINS:
        cap["io"] = PINS[(target, device)]
    return {k: [v, cap[k]] for k, v in est.items() if k in cap}


_FIX = {"dsp": "fewer rows / cols or a smaller n_max", "bram": "a smaller t_max or k_tiles_max",
        "io": "a narrower host (host_bits)", "lut": "fewer rows / cols"}


def check_fit(p, target="ecp5", device="85k"):
    """Refuse (NmaccelError) a top that cannot fit the device, naming the estimate and the fix."""
    est = fit_estimate(p, target, device)
    over = {k: v for k, v in est.items() if v[0] > v[1]}
    require(not over, f"a {p.array.rows}x{p.array.cols} top (host {p.host_bits} bits, t_max "
            f"{p.t_max}, k_tiles_max {p.k_tiles_max}) does not fit {target} {device}: " + ", ".join(
                f"{k} {u}/{c} ({100 * u / c:.0f}%): use {_FIX[k]}" for k, (u, c) in over.items()))
    return est


def script_text(target, top, *, dsp=True):
    """The Yosys script for `target` with {top} and {dsp} filled in."""
    require(target in TARGETS, f"unknown synthesis target {target!r}: use one of {', '.join(TARGETS)}")
    require(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top or "") is not None,
            f"top module name {top!r} is not a Verilog identifier")
    path = SCRIPT_DIR / f"{target}.ys"
    require(path.is_file(), f"synthesis script {path} is missing: reinstall nmaccel from the repo")
    if target == "ice40":
        flag = "-dsp" if dsp else ""
    elif target == "generic":
        flag = ""
    else:
        flag = "" if dsp else "-nodsp"
    return path.read_text().format(top=top, dsp=flag)


def classify(cells, target):
    """{class: count} for a {cell type: count} dict (unknown types go to 'other')."""
    classes = _CLASSES[_FAMILY[target]]
    out = {k: 0 for k in classes}
    out["other"] = 0
    for typ, n in cells.items():
        for cls, pats in classes.items():
            if any(re.fullmatch(p, typ) for p in pats):
                out[cls] += n
                break
        else:
            out["other"] += n
    return out


def _parse_stat(path):
    require(path.is_file(), "yosys wrote no stat.json")
    d = json.loads(path.read_text())
    design = d.get("design") or next(iter(d["modules"].values()))
    return dict(design.get("num_cells_by_type", {}))


_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%")


def _parse_util_log(log):
    util = {}
    for line in log.splitlines():
        m = _UTIL_RE.match(line.strip())
        if m:
            util[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return util


_STAGES = (("place_heap", r"HeAP Placer Time: ([\d.]+)s"), ("place_sa", r"SA placement time ([\d.]+)s"),
           ("route", r"Router[12] time ([\d.]+)s"))


def pnr_stages(log):
    """{stage: seconds} nextpnr printed for its placer / router stages (those it ran)."""
    out = {}
    for stage, pat in _STAGES:
        m = re.findall(pat, log)
        if m:
            out[stage] = float(m[-1])
    return out


def _too_large(util):
    return {k: v for k, v in util.items() if v[1] and v[0] > v[1]}


def _parse_report(path):
    rep = json.loads(path.read_text())
    fmax = {clk: v.get("achieved") for clk, v in rep.get("fmax", {}).items()}
    util = {k: (v["used"], v["available"]) for k, v in rep.get("utilization", {}).items()}
    crit = []
    for cp in rep.get("critical_paths", []):
        steps = cp.get("path", [])
        delay = sum(s.get("delay", 0.0) for s in steps)
        crit.append({"from": cp.get("from"), "to": cp.get("to"), "delay_ns": round(delay, 3),
                     "steps": [f"{s.get('type')} {s.get('from', {}).get('cell', '')} -> "
                               f"{s.get('to', {}).get('cell', '')} ({s.get('delay', 0):.2f} ns)"
                               for s in steps]})
    return fmax, util, crit


ROUTERS = ("router1", "router2")


def synthesize(verilog, top, target, *, dsp=True, pnr=False, device=None, freq_mhz=200.0,
               seed=1, timeout=1800, keep_dir=None, router="router1"):
    """Synthesize Verilog file `verilog` (module `top`) for `target`; optionally place and route.

    Returns a report dict: target, top, device, cells {type: n}, lut, ff, carry, dsp, bram,
    lutram, other, fmax_mhz (None without pnr), device_utilization {lut|ff|dsp|bram: [Yosys
    count, device capacity]} (the same with or without pnr), utilization (without pnr: as
    device_utilization; with pnr: nextpnr's {bel: [used, available]}), critical_path,
    seconds {synth, pnr, pnr_stages {place_heap, place_sa, route}}, log_tail (with keep_dir,
    nextpnr's log is kept there as nextpnr.log, written as nextpnr runs). `router`: nextpnr's
    router1 (its default) or router2 (faster on large designs).
    """
    require(target in TARGETS, f"unknown synthesis target {target!r}: use one of {', '.join(TARGETS)}")
    require(router in ROUTERS, f"unknown nextpnr router {router!r}: use one of {', '.join(ROUTERS)}")
    verilog = Path(verilog)
    require(verilog.is_file(), f"Verilog file {verilog} does not exist: export it first "
            "(nmaccel export)")
    if pnr:
        require(target in DEVICES, f"place-and-route is available for ecp5 and ice40, not {target}:"
                " drop --pnr")
        device = device or DEFAULT_DEVICE[target]
        require(device in DEVICES[target], f"unknown {target} device {device!r}: use one of "
                f"{', '.join(DEVICES[target])}")
    elif device is None and target in DEFAULT_DEVICE:
        device = DEFAULT_DEVICE[target]
    elif device is not None:
        require(target in DEVICES and device in DEVICES[target],
                f"unknown {target} device {device!r}: use one of "
                f"{', '.join(DEVICES.get(target, {})) or '(none: drop --device)'}")
    script = script_text(target, top, dsp=dsp)
    report = {"target": target, "top": top, "device": device, "dsp_inference": bool(dsp)}
    with tempfile.TemporaryDirectory(prefix="nmaccel_synth_") as tmp:
        work = Path(keep_dir) if keep_dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(verilog, work / "design.v")
        (work / "synth.ys").write_text(script)
        t0 = time.perf_counter()
        log = tools.run_yowasp("yosys", ["-q", "-l", "yosys.log", "-s", "synth.ys"], work,
                               timeout=timeout, what=f"yosys synthesis ({target})")
        log = (work / "yosys.log").read_text() if (work / "yosys.log").exists() else log
        report["seconds"] = {"synth": round(time.perf_counter() - t0, 2)}
        cells = _parse_stat(work / "stat.json")
        report["cells"] = cells
        report.update(classify(cells, target))
        report["fmax_mhz"] = None
        report["utilization"] = {}
        report["critical_path"] = None
        report["device_utilization"] = {}
        cap = CAPACITY.get((target, device))
        if cap:
            over = {k: (report[k], c) for k, c in cap.items() if report[k] > c}
            report["device_utilization"] = {k: [report[k], c] for k, c in cap.items()}
            report["utilization"] = {k: [report[k], c] for k, c in cap.items()}
            require(not over, f"design too large for {target} {device}: " + ", ".join(
                f"{k} {u}/{c} ({100 * u / c:.0f}%)" for k, (u, c) in over.items()))
        if pnr:
            t1 = time.perf_counter()
            args = [*DEVICES[target][device], "--json", "netlist.json", "--report", "report.json",
                    "--freq", str(freq_mhz), "--timing-allow-fail", "--seed", str(seed),
                    "--router", router, "--log", "nextpnr.log"]
            rc, plog = tools.run_yowasp_raw(f"nextpnr-{target}", args, work, timeout=timeout,
                                            what=f"nextpnr-{target}")
            report["seconds"]["pnr"] = round(time.perf_counter() - t1, 2)
            report["seconds"]["pnr_stages"] = pnr_stages(plog)
            (work / "nextpnr.log").write_text(plog)
            if rc != 0 or not (work / "report.json").is_file():
                over = _too_large(_parse_util_log(plog))
                if over or "no BELs remaining" in plog:
                    util = _parse_util_log(plog)
                    raise NmaccelError(
                        f"design too large for {target} {device}: " + ", ".join(
                            f"{k} {u}/{c}" for k, (u, c) in (over or util).items() if u)
                        + ": use a smaller design or a larger device")
                raise ToolFailedError(f"nextpnr-{target} failed (exit {rc})" + tools._known_cause(plog),
                                      tools.log_tail(plog))
            fmax, util, crit = _parse_report(work / "report.json")
            report["fmax_mhz"] = min((f for f in fmax.values() if f), default=None)
            report["fmax_by_clock"] = fmax
            report["utilization"] = {k: list(v) for k, v in util.items()}
            report["critical_path"] = crit[0] if crit else None
            log = plog
        report["log_tail"] = tools.log_tail(log, 10)
    return report


COLUMNS = ("target", "device", "lut", "ff", "carry", "mux", "dsp", "bram", "lutram", "fmax_mhz")


def table(reports):
    """Resource table (github markdown) of synthesis reports."""
    rows = [[r.get("top")] + [("-" if r.get(c) is None else
                               (f"{r[c]:.1f}" if isinstance(r.get(c), float) else r.get(c)))
                              for c in COLUMNS] for r in reports]
    return tabulate(rows, headers=("top",) + COLUMNS, tablefmt="github")
