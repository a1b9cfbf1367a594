"""`nmaccel demo`: the main job end to end on one real layer, with one report.

A real MiniLM layer (default: layer 0's query projection, 384 x 384) fed with its real inputs
(MiniLM's own hidden states on held-out text, quantized to INT8) is

  1. pruned N:M and quantized (default 2:4 + INT4, group 128) and packed;
  2. run through the accelerator top (K/N tiling, host stream, group scales in fixed point) in
     PyRTL and in Verilator: outputs must equal the golden model bit for bit, cycles are measured
     from the top's own handshake (first word accepted .. last output word);
  3. run dense INT8 (per-channel) on the same elaborated top: the cycle baseline;
  4. the top is exported to Verilog (+ the packed layer's $readmemh images, a FuseSoC core) and
     synthesized / placed and routed for the target (Yosys / nextpnr): resources and fmax.

The report (terminal table, report.md, report.json, report.png) gives storage bits/weight
(`PackedWeights.storage_bits`), weight and output SQNR vs float, output error vs the float
layer, cycles and speed-up vs dense INT8 (ratio of the measured cycles), utilization, resources
vs the device, fmax, the dense-equivalent GMAC/s at fmax and where each artefact was written.
"""
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyrtl
from tabulate import tabulate

from nmaccel.arch.config import ArrayConfig, TopConfig
from nmaccel.errors import NmaccelError, require
from nmaccel.fileio import atomic_write
from nmaccel.golden.groupscale import groupscale_params
from nmaccel.hdl.top import make_top_ports
from nmaccel.models.bert import MiniLM
from nmaccel.models.loaders import heldout_text
from nmaccel.pack import pack_weights
from nmaccel.pack.quant import quantize_activations
from nmaccel.progress import bar
from nmaccel.provenance import provenance
from nmaccel.run.runner import reference, run_gemm, trace_top_vcd
from nmaccel.verilog import export, synth
from nmaccel.verilog.export import memory_images

DEFAULT_LAYER = "encoder.layer.0.attention.self.query.weight"
TARGETS = ("ecp5", "ice40")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs. `array` rows x cols of the top's systolic array (n_max lanes, m_max
    largest N:M group per PE); `n_keep:m_group` and `bits` of the packed layer; `tokens` rows of
    real MiniLM activations; `target` FPGA family for synthesis (`pnr`: also place and route)."""
    rows: int = 2
    cols: int = 2
    n_max: int = 4
    m_max: int = 8
    n_keep: int = 2
    m_group: int = 4
    bits: int = 4
    group_size: int = 128
    tokens: int = 16
    layer: str = DEFAULT_LAYER
    target: str = "ecp5"
    pnr: bool = True
    verilator: bool = True
    host_bits: int = 64
    seed: int = 0
    vcd: str = None
    vcd_cycles: tuple = (0, 2000)
    vcd_backend: str = "pyrtl"
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        for f in ("rows", "cols", "n_max", "m_max", "tokens"):
            v = getattr(self, f)
            require(isinstance(v, int) and v >= 1, f"{f}={v!r}: use a positive integer")
        require(1 <= self.n_keep <= self.m_group,
                f"--nm {self.n_keep}:{self.m_group}: N must be between 1 and M (e.g. 2:4)")
        require(self.bits in (4, 8), f"--bits {self.bits}: the demo runs 4 or 8 (INT4 / INT8 weights)")
        require(self.target in TARGETS, f"--target {self.target!r}: use one of {', '.join(TARGETS)}")
        a, b = self.vcd_cycles
        require(0 <= a < b, f"--vcd-cycles {a}:{b}: use A:B with 0 <= A < B")
        require(self.vcd_backend in ("pyrtl", "verilator"),
                f"--vcd-backend {self.vcd_backend!r}: use pyrtl or verilator")
        require(self.vcd_backend != "verilator" or self.verilator,
                "--vcd-backend verilator traces a Verilator run: drop --no-verilator")


def sqnr_db(ref, approx):
    """10 log10(|ref|^2 / |ref - approx|^2) in dB (inf when equal)."""
    ref, approx = np.asarray(ref, np.float64), np.asarray(approx, np.float64)
    err = float(np.sum((ref - approx) ** 2))
    return float("inf") if err == 0 else 10.0 * np.log10(float(np.sum(ref ** 2)) / err)


def layer_inputs(name, tokens):
    """(weight (out, in) float32, activations (tokens, in) float32): the MiniLM layer and its
    real inputs on the held-out text (the first `tokens` WordPiece tokens)."""
    model, tok = MiniLM.builtin()
    if name not in model.linear_names():
        near = [n for n in model.linear_names() if name in n][:3] or model.linear_names()[:3]
        raise NmaccelError(f"no MiniLM linear layer {name!r}: use one of {', '.join(near)} ...")
    ids = tok.encode(heldout_text())[:tokens]
    require(len(ids) == tokens, f"--tokens {tokens}: the held-out text has only {len(ids)} tokens")
    x = model.collect_inputs([ids], [name])[name]
    return model.weights[name], x


def top_config(cfg, packs):
    """One TopConfig that runs every packing in `packs` (sized for the largest K / N tiling)."""
    a = ArrayConfig(rows=cfg.rows, cols=cfg.cols, n_max=cfg.n_max, m_max=cfg.m_max)
    kt = max(-(-p.k_padded // (a.rows * a.window(p.n_keep, p.m_group))) for p in packs)
    nt = max(-(-p.out_features // a.cols) for p in packs)
    t_max = max(2, cfg.tokens)
    probe = TopConfig(array=a, t_max=t_max, k_tiles_max=kt, n_tiles_max=nt, group_scales=True,
                      raw_bits=64, host_bits=cfg.host_bits)
    return a, TopConfig(array=a, t_max=t_max, k_tiles_max=kt, n_tiles_max=nt, group_scales=True,
                        raw_bits=max(32, probe.sum_bits), host_bits=cfg.host_bits)


def float_outputs(packed, acc, x_scale):
    """Real-valued layer outputs the integer sums stand for (group-scaled or per-channel)."""
    if packed.granularity == "group":
        lsb = groupscale_params(packed).acc_scale
    else:
        lsb = np.broadcast_to(np.asarray(packed.scales, np.float64).reshape(-1), (packed.out_features,))
    return np.asarray(acc, np.float64) * lsb[None, :] * float(np.asarray(x_scale).reshape(-1)[0])


class Steps:
    """A tqdm bar over the demo's named steps (quiet: no bar); `.times` records each step's wall time."""

    def __init__(self, names, quiet):
        self.bar = bar(total=len(names), quiet=quiet, unit="step",
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
        self.times, self._t, self._name = {}, None, None

    def start(self, name):
        self._finish()
        self._name, self._t = name, time.perf_counter()
        self.bar.set_description(name)

    def _finish(self):
        if self._name is not None:
            self.times[self._name] = round(time.perf_counter() - self._t, 2)
            self.bar.update(1)
            self._name = None

    def close(self):
        self._finish()
        self.bar.close()


def _run(packed, x_q, a, top, backend):
    group = packed.granularity == "group"
    res = run_gemm(packed, x_q, a, backend=backend, top_cfg=top, group_scales=group)
    ref = reference(packed, x_q, None, group_scales=group)
    return res, ref


def _run_row(label, res, ref):
    return {"run": label, "backend": res.backend, "mode": res.mode, "cycles": int(res.cycles),
            "model_cycles": int(res.model_cycles), "cycles == model": bool(res.cycles == res.model_cycles),
            "outputs == golden": bool(np.array_equal(res.outputs, ref)),
            "mismatches": int(np.count_nonzero(res.outputs != ref)), "utilization": round(float(res.utilization), 4),
            "sim_s": round(res.sim_s, 3)}


def write_images(packed, out):
    """$readmemh images of every packed section (nmaccel.export.memory_images) under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in memory_images(packed).items():
        atomic_write(out / name, text)
        paths.append(str(out / name))
    return paths


def export_top(top, out, name="nmaccel_top"):
    """Elaborate the top with pyrtl ports, write <name>.v (+ .ports.json) and a FuseSoC core."""
    pyrtl.reset_working_block()
    make_top_ports(top)
    text = export.verilog_text(None, module_name=name)
    mod, ports, mems = export.parse_module(text)
    v = out / f"{name}.v"
    files = {v: text,
             out / f"{name}.ports.json": json.dumps({"module": mod, "reset": True,
                                                    "ports": [asdict(p) for p in ports]}, indent=1) + "\n",
             out / f"{name}.core": fusesoc_core(name, [v.name])}
    export.write_files_atomically(files)
    return v, {"io_pins": sum(p.width for p in ports), "ports": len(ports)}


def fusesoc_core(name, files, version="0.1.0"):
    """A FuseSoC CAPI2 core file for the exported Verilog (default target: lint with Verilator)."""
    lines = ["CAPI=2:", f"name: nmaccel:accel:{name}:{version}",
             "description: nmaccel accelerator top exported by nmaccel (PyRTL); clk, synchronous rst", "",
             "filesets:", "  rtl:", "    files:"]
    lines += [f"      - {f}" for f in files]
    lines += ["    file_type: verilogSource", "", "targets:", "  default: &default",
              "    filesets: [rtl]", f"    toplevel: {name}", "  lint:", "    <<: *default",
              "    default_tool: verilator", "    tools:", "      verilator:", "        mode: lint-only", ""]
    return "\n".join(lines)


OWNED = ("rtl", "mem", "synth", "report.json", "report.md", "report.png", "sparse.nmpack", "dense.nmpack")


def _publish(stage, out):
    """Move the staged artefacts into `out` (created if absent); only the names the demo owns
    (OWNED) are replaced, anything else in `out` is left alone."""
    out.mkdir(parents=True, exist_ok=True)
    for name in OWNED:
        src, dst = stage / name, out / name
        if not src.exists():
            continue
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        elif dst.exists() or dst.is_symlink():
            dst.unlink()
        os.replace(src, dst)
    shutil.rmtree(stage, ignore_errors=True)


def check_out(out):
    out = Path(out)
    require(not out.exists() or (out.is_dir() and not out.is_symlink()),
            f"--out {out} exists and is not a directory: pick another path")
    if out.is_dir():
        foreign = [n for n in OWNED if (out / n).exists() and not (out / "report.json").exists()]
        require(not foreign, f"--out {out} holds {foreign[0]} but no earlier demo report: pick an empty "
                "or new directory")
    return out


def run_demo(cfg: DemoConfig, out, *, quiet=False):
    """Run the demo; write report.json / report.md / report.png and the artefacts under `out`
    (built in a staging folder next to it and moved in at the end: no partial output).
    Returns the report dict (artefact paths point into `out`)."""
    out = check_out(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        report = _run_demo(cfg, stage, out, quiet)
        _publish(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return report


def _run_demo(cfg, stage, out, quiet):
    sparse_label = f"{cfg.n_keep}:{cfg.m_group} INT{cfg.bits}" + (f" g{cfg.group_size}" if cfg.bits == 4 else "")
    names = ["load MiniLM layer", f"pack {sparse_label}", "pack dense INT8", f"PyRTL top: {sparse_label}",
             "PyRTL top: dense INT8"]
    if cfg.verilator:
        names += [f"Verilator top: {sparse_label}", "Verilator top: dense INT8"]
    vcd_step = f"VCD trace ({cfg.vcd_backend})"
    if cfg.vcd:
        names.append(vcd_step)
    synth_step = f"synthesize ({cfg.target})" + (" + place and route" if cfg.pnr else "")
    names += ["export Verilog", synth_step]
    steps = Steps(names, quiet)
    t_all = time.perf_counter()
    try:
        steps.start(names[0])
        w, x = layer_inputs(cfg.layer, cfg.tokens)
        x_q, x_scale = quantize_activations(x)
        x_q = x_q.astype(np.int64)
        steps.start(names[1])
        gran = dict(granularity="group", group_size=cfg.group_size) if cfg.bits == 4 else dict(granularity="channel")
        sparse = pack_weights(w, n_keep=cfg.n_keep, m_group=cfg.m_group, bits=cfg.bits, **gran)
        sparse.save(stage / "sparse.nmpack")
        steps.start(names[2])
        dense = pack_weights(w, n_keep=cfg.m_group, m_group=cfg.m_group, bits=8, granularity="channel")
        dense.save(stage / "dense.nmpack")
        a, top = top_config(cfg, [sparse, dense])
        runs = {}
        backends = ["pyrtl"] + (["verilator"] if cfg.verilator else [])
        for be in backends:
            for key, pk in (("sparse", sparse), ("dense", dense)):
                steps.start(f"{'PyRTL' if be == 'pyrtl' else 'Verilator'} top: "
                            f"{sparse_label if key == 'sparse' else 'dense INT8'}")
                runs[(be, key)] = _run(pk, x_q, a, top, be)
        rows = [_run_row(f"{sparse_label if k == 'sparse' else 'dense INT8'}", r, ref)
                for (be, k), (r, ref) in runs.items()]
        vcd_path = None
        if cfg.vcd:
            steps.start(vcd_step)
            vcd_path = trace_top_vcd(sparse, x_q, top, Path(cfg.vcd).resolve(), cfg.vcd_cycles,
                                     group_scales=sparse.granularity == "group", backend=cfg.vcd_backend)
        steps.start("export Verilog")
        vpath, io = export_top(top, stage / "rtl")
        images = write_images(sparse, stage / "mem")
        steps.start(synth_step)
        rep = synth.synthesize(vpath, "nmaccel_top", cfg.target, pnr=cfg.pnr, keep_dir=stage / "synth")
    finally:
        steps.close()
    report = build_report(cfg, w, x, x_q, x_scale, sparse, dense, runs, rows, top, rep, io)
    report["seconds"] = {**steps.times, "total": round(time.perf_counter() - t_all, 1)}
    report["provenance"] = provenance()

    def final(path):
        return str(out / Path(path).relative_to(stage))
    report["artefacts"] = {"verilog": final(vpath), "ports": final(vpath.with_suffix(".ports.json")),
                           "fusesoc_core": final(vpath.with_suffix(".core")),
                           "memory_images": [final(i) for i in images],
                           "packed": [str(out / "sparse.nmpack"), str(out / "dense.nmpack")],
                           "synthesis_reports": [str(out / "synth" / n) for n in ("stat.json", "report.json", "nextpnr.log")
                                                 if (stage / "synth" / n).exists()],
                           "vcd": vcd_path, "report_json": str(out / "report.json"),
                           "report_md": str(out / "report.md"), "plot": str(out / "report.png")}
    write_report(report, stage)
    return report


def build_report(cfg, w, x, x_q, x_scale, sparse, dense, runs, rows, top, rep, io):
    """The report dict: every figure computed here from the runs and the synthesis report."""
    y_float = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T
    fid = {}
    for key, pk in (("sparse", sparse), ("dense", dense)):
        res, _ = runs[("pyrtl", key)]
        y_hw = float_outputs(pk, res.outputs, x_scale)
        fid[key] = {"weight_sqnr_db": round(sqnr_db(w, pk.dequantize()), 2),
                    "output_sqnr_db": round(sqnr_db(y_float, y_hw), 2),
                    "output_rel_rms_error": float(np.sqrt(np.mean((y_hw - y_float) ** 2) / np.mean(y_float ** 2))),
                    "output_max_abs_error": float(np.abs(y_hw - y_float).max())}
    n = sparse.out_features * sparse.in_features
    storage = {k: {"bits": int(pk.storage_bits()), "bits_per_weight": pk.storage_bits() / n,
                   "breakdown_bits": {s: int(v) for s, v in pk.storage_breakdown().items() if v},
                   "x_smaller_than_fp16": 16.0 * n / pk.storage_bits()} for k, pk in (("sparse", sparse), ("dense", dense))}
    cyc = {k: runs[("pyrtl", k)][0].cycles for k in ("sparse", "dense")}
    speedup = cyc["dense"] / cyc["sparse"]
    fmax = rep.get("fmax_mhz")
    macs = cfg.tokens * sparse.in_features * sparse.out_features
    resources = device_resources(rep, io)
    placed = "fmax_by_clock" in rep                  # nextpnr ran: rep["utilization"] is its BEL usage
    bels = {k: list(v) for k, v in rep.get("utilization", {}).items()} if placed else {}
    report = {
        "config": {**{k: v for k, v in asdict(cfg).items() if k != "extra"},
                   "vcd_cycles": list(cfg.vcd_cycles)},
        "layer": {"name": cfg.layer, "shape": [sparse.out_features, sparse.in_features], "tokens": cfg.tokens,
                  "activations": "MiniLM hidden states on nmaccel/data/heldout_en.txt, INT8 per-tensor"},
        "top": {"array": f"{cfg.rows}x{cfg.cols}", "n_max": cfg.n_max, "m_max": cfg.m_max, "t_max": top.t_max,
                "k_tiles_max": top.k_tiles_max, "n_tiles_max": top.n_tiles_max, "host_bits": top.host_bits,
                "group_scales": top.group_scales, "raw_bits": top.raw_bits, **io},
        "storage": storage,
        "fidelity": fid,
        "runs": rows,
        "all_exact": all(r["outputs == golden"] for r in rows),
        "cycles": {"sparse": int(cyc["sparse"]), "dense_int8": int(cyc["dense"]),
                   "speedup_vs_dense_int8": speedup,
                   "utilization_sparse": float(runs[("pyrtl", "sparse")][0].utilization),
                   "utilization_dense": float(runs[("pyrtl", "dense")][0].utilization)},
        "synthesis": {"target": rep["target"], "device": rep.get("device"), "lut": rep["lut"], "ff": rep["ff"],
                      "carry": rep.get("carry"), "dsp": rep["dsp"], "bram": rep["bram"], "lutram": rep.get("lutram"),
                      "fmax_mhz": fmax, "resources_vs_device": resources, "nextpnr_utilization": bels,
                      "seconds": rep.get("seconds"), "pnr": placed},
        "throughput": {"dense_equivalent_macs": macs,
                       "dense_equivalent_gmac_per_s_at_fmax":
                           (macs / cyc["sparse"] * fmax * 1e6 / 1e9) if fmax else None,
                       "dense_int8_gmac_per_s_at_fmax": (macs / cyc["dense"] * fmax * 1e6 / 1e9) if fmax else None},
    }
    return report


def device_resources(rep, io):
    """{lut|ff|dsp|bram|io: [used, device capacity or None]}: LUT / FF / DSP / BRAM are Yosys' cell
    counts of the synthesis report (its device_utilization, identical before and after place and
    route), IO the exported top's port bits (clk and rst included) against the package's user pins."""
    from nmaccel.verilog import synth
    du = rep.get("device_utilization") or {}
    out = {k: [int(rep[k]), du[k][1] if k in du else None] for k in ("lut", "ff", "dsp", "bram")}
    out["io"] = [int(io["io_pins"]), synth.PINS.get((rep["target"], rep.get("device")))]
    return out


def summary_rows(r):
    """(section, figure, value) rows of the report, for the terminal and report.md."""
    s, d = r["storage"]["sparse"], r["storage"]["dense"]
    fs, fd = r["fidelity"]["sparse"], r["fidelity"]["dense"]
    c, syn, th = r["cycles"], r["synthesis"], r["throughput"]
    cfg = r["config"]
    lab = f"{cfg['n_keep']}:{cfg['m_group']} INT{cfg['bits']}"
    rows = [("layer", "MiniLM layer", f"{r['layer']['name']} {r['layer']['shape'][0]}x{r['layer']['shape'][1]}, "
             f"T={r['layer']['tokens']} real tokens"),
            ("layer", "top", f"{r['top']['array']} array (n_max {r['top']['n_max']}, m_max {r['top']['m_max']}), "
             f"t_max {r['top']['t_max']}, k_tiles_max {r['top']['k_tiles_max']}, {r['top']['host_bits']}-bit host, "
             f"{r['top']['io_pins']} IO pins (clk, rst included)"),
            ("storage", f"{lab} bits/weight", f"{s['bits_per_weight']:.3f} ({s['x_smaller_than_fp16']:.2f}x smaller than FP16)"),
            ("storage", "dense INT8 bits/weight", f"{d['bits_per_weight']:.3f} ({d['x_smaller_than_fp16']:.2f}x)"),
            ("fidelity", f"{lab} weight / output SQNR", f"{fs['weight_sqnr_db']:.2f} dB / {fs['output_sqnr_db']:.2f} dB"),
            ("fidelity", "dense INT8 weight / output SQNR", f"{fd['weight_sqnr_db']:.2f} dB / {fd['output_sqnr_db']:.2f} dB"),
            ("fidelity", f"{lab} output error vs float", f"rel. RMS {fs['output_rel_rms_error']:.4f}, "
             f"max |err| {fs['output_max_abs_error']:.4f}")]
    for run in r["runs"]:
        rows.append(("RTL", f"{run['backend']} {run['run']}",
                     f"{run['cycles']:,} cycles (model {run['model_cycles']:,}), outputs == golden: "
                     f"{run['outputs == golden']}, utilization {100 * run['utilization']:.1f}%"))
    rows.append(("RTL", f"speed-up {lab} vs dense INT8", f"{c['speedup_vs_dense_int8']:.3f}x "
                 f"({c['dense_int8']:,} / {c['sparse']:,} measured cycles)"))
    dev = f"{syn['target']} {syn['device'] or ''}".strip()
    what = {"lut": "LUT4 (Yosys)", "ff": "FF (Yosys)", "dsp": "DSP (Yosys)", "bram": "BRAM (Yosys)",
            "io": "IO pins (package user IO)"}
    for k, (used, cap) in syn["resources_vs_device"].items():
        rows.append(("FPGA", f"{what[k]} of {dev}", f"{used}" + (f" / {cap} ({100 * used / cap:.1f}%)" if cap else "")))
    for bel, (used, avail) in sorted(syn["nextpnr_utilization"].items()):
        if used:
            rows.append(("FPGA", f"nextpnr {bel} (placed)", f"{used} / {avail}" + (f" ({100 * used / avail:.1f}%)" if avail else "")))
    rows.append(("FPGA", "fmax (nextpnr)", f"{syn['fmax_mhz']:.1f} MHz" if syn["fmax_mhz"] else "not placed (--no-pnr)"))
    if th["dense_equivalent_gmac_per_s_at_fmax"]:
        rows.append(("FPGA", f"dense-equivalent GMAC/s at fmax ({lab})",
                     f"{th['dense_equivalent_gmac_per_s_at_fmax']:.3f} (dense INT8: {th['dense_int8_gmac_per_s_at_fmax']:.3f})"))
    for k, v in r["artefacts"].items():
        if v:
            rows.append(("files", k, ", ".join(v) if isinstance(v, list) else v))
    return rows


def report_markdown(r):
    return ("# nmaccel demo report\n\n" + tabulate(summary_rows(r), headers=("", "figure", "value"), tablefmt="github")
            + "\n\n## Runs\n\n" + tabulate(r["runs"], headers="keys", tablefmt="github")
            + f"\n\nSeconds per step: {json.dumps(r['seconds'])}\n\n"
            f"Synthesis / place and route seconds: {json.dumps(r['synthesis']['seconds'])}\n\nProvenance: `{json.dumps(r['provenance'])}`\n")


def plot(r, path):
    """Headless PNG: measured cycles per run and resources vs the device."""
    import matplotlib                        # lazy: heavy, needed only for the figure
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    runs = r["runs"]
    ax1.bar([f"{x['backend']}\n{x['run']}" for x in runs], [x["cycles"] for x in runs],
            color=["tab:green" if "dense" not in x["run"] else "tab:gray" for x in runs])
    ax1.set_ylabel("measured cycles")
    ax1.set_title(f"{r['layer']['shape'][0]}x{r['layer']['shape'][1]}, T={r['layer']['tokens']}: "
                  f"{r['cycles']['speedup_vs_dense_int8']:.2f}x vs dense INT8")
    ax1.tick_params(axis="x", labelsize=7)
    ut = r["synthesis"]["resources_vs_device"]
    keys = [k for k in ("lut", "ff", "dsp", "bram", "io") if ut.get(k) and ut[k][1]]
    ax2.bar([k.upper() for k in keys], [100 * ut[k][0] / ut[k][1] for k in keys], color="tab:blue")
    ax2.set_ylabel(f"% of {r['synthesis']['target']} {r['synthesis']['device'] or ''}")
    fm = r["synthesis"]["fmax_mhz"]
    ax2.set_title("resources" + (f", fmax {fm:.1f} MHz" if fm else ""))
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(r, out):
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "report.json", json.dumps(r, indent=1, default=str) + "\n")
    atomic_write(out / "report.md", report_markdown(r))
    plot(r, out / "report.png")
