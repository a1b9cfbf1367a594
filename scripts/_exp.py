"""Shared helpers of the experiment scripts (scripts/exp*.py): results files with provenance.

Each experiment writes benchmarks/results/<name>.json (data + provenance: commit, versions,
machine, exact command), <name>.md (tables, our figures beside the source documents' claims,
labelled claims) and <name>.png.
"""
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nmaccel.provenance import provenance  # noqa: E402


def atomic_write(path, text):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def bar_chart(labels, series, claim, claim_label, ylabel, title, figsize=(8, 4)):
    """Grouped bars: one group per label, one bar per {series name: values}, a dashed claim line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series.items()):
        ax.bar([x + k * width for x in range(len(labels))], values, width, label=name)
    ax.axhline(claim, color="tab:red", ls="--", label=claim_label)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels,
                  rotation=30 if len(labels) > 5 else 0, ha="right" if len(labels) > 5 else "center",
                  fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def write_results(name, data, markdown, fig=None, out_dir=None):
    """Write <name>.json / .md / .png under out_dir (default benchmarks/results), print the
    markdown and the paths; return 0 (the script's exit status)."""
    if isinstance(markdown, list):
        markdown = "\n".join(markdown)
    out = Path(out_dir or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance()
    paths = {"json": out / f"{name}.json", "md": out / f"{name}.md", "png": out / f"{name}.png"}
    atomic_write(paths["json"], json.dumps({"provenance": prov, **data}, indent=1, default=str))
    v, m = prov["tools"], prov["machine"]
    footer = (f"\n\n---\nMade by `{prov['command']}` at commit `{prov['commit']}` on "
              f"{m['system']} ({m['cpu']}, {m['cpus']} CPUs, load {m['load_avg_1min']}), "
              f"{prov['date_utc']}; python {v['python']}, PyRTL {v.get('PyRTL')}, numpy {v.get('numpy')}. "
              f"Data: `{paths['json'].name}`.\n")
    if fig is not None:
        fig.savefig(paths["png"], dpi=120, bbox_inches="tight")
        markdown += f"\n\n![{name}]({paths['png'].name})"
    atomic_write(paths["md"], markdown + footer)
    print(markdown)
    print("wrote", *paths.values())
    return 0


def md_table(rows, headers, floatfmt=".3g"):
    from tabulate import tabulate
    return tabulate(rows, headers=headers, tablefmt="github", floatfmt=floatfmt)


def measured_fmax(path=None, top="product"):
    """A placed accelerator top's measured fmax (MHz) and where it came from.

    Order: `path` if given; benchmarks/results/fpga_study.json (the `top` entry of its `tops`:
    'product' or 'dense', median fmax over nextpnr seeds, issue 11) when committed; else the best
    'top' row of benchmarks/results/fmax_study.json. Returns {'fmax_mhz', 'source', 'row'} where
    row describes the top that was placed and routed (row['top'] names an fpga_study top)."""
    candidates = [Path(path)] if path else [RESULTS / "fpga_study.json", RESULTS / "fmax_study.json"]
    for p in candidates:
        if not p.is_file():
            continue
        data = json.loads(p.read_text())
        src = str(p.resolve().relative_to(ROOT)) if p.resolve().is_relative_to(ROOT) else str(p)
        if isinstance(data, dict) and isinstance(data.get("tops"), dict):
            from nmaccel.arch.config import PRODUCT_ARRAY
            if top == "product":                # fpga_study names tops by size
                top = f"product_{PRODUCT_ARRAY.rows}x{PRODUCT_ARRAY.cols}"
            t = data["tops"].get(top)
            if t is None:
                continue
            return {"fmax_mhz": float(t["fmax_median_mhz"]), "source": src,
                    "row": {"top": top, "shape": t["array"].split()[0], "config": "all pipeline flags",
                            "buffers": ", ".join(f"{k} {v}" for k, v in t["top"].items()),
                            **{k: t[k] for k in ("array", "lut", "ff", "dsp", "bram", "io", "fmax_min_mhz")},
                            "seeds": len(t["seeds"])}}
        rows = data if isinstance(data, list) else data.get("rows", [])
        tops = [r for r in rows if isinstance(r, dict) and r.get("block", "top") == "top"
                and r.get("fmax_mhz")]
        if tops:
            best = max(tops, key=lambda r: r["fmax_mhz"])
            return {"fmax_mhz": float(best["fmax_mhz"]), "source": src,
                    "row": {"buffers": "small buffers: t_max 8, k_tiles_max 4",
                            **{k: v for k, v in best.items() if k not in ("critical_path",)}}}
    raise SystemExit(f"no measured fmax of the {top} top: run benchmarks/fpga_study.py --part pnr "
                     "(or pass --fmax-json)")


# ---- the measured accelerator top, timed with the validated cycle model ------------------------
# (label, mode, n_keep, m_group) of the uniform configurations the top runs
MODES = [("dense INT8", "int8", 4, 4), ("dense INT4", "int4", 4, 4), ("2:4 INT8", "int8", 2, 4),
         ("2:4 INT4", "int4", 2, 4), ("4:8 INT4", "int4", 4, 8)]


def measured_array(fm):
    """ArrayConfig of the top whose fmax was measured (fpga_study: PRODUCT_ARRAY / DENSE_ARRAY;
    fmax_study rows: shape 'RxC', config
    'default' | 'all' | pipeline flag names joined by '+'), as elaborated there (n_max 4, m_max 8,
    INT8 + INT4), with the top's double-buffered weights."""
    from dataclasses import replace
    from nmaccel.arch.config import DENSE_ARRAY, PIPELINE_FLAGS, PRODUCT_ARRAY, ArrayConfig
    row = fm["row"]
    if "top" in row:                       # an fpga_study top: its own elaborated array
        if row["top"] == "dense":
            return DENSE_ARRAY
        r, c = (int(v) for v in row["top"].split("_")[1].split("x"))
        return replace(PRODUCT_ARRAY, rows=r, cols=c)
    r, c = (int(v) for v in str(row.get("shape", "2x2")).split("x"))
    conf = row.get("config", "default")
    if conf == "all":
        flags = set(PIPELINE_FLAGS)
    elif conf == "default":
        flags = set()
    else:
        flags = {"pipeline_" + f for f in conf.split("+") if f != "pipeline"} | (
            {"pipeline_mux", "pipeline_product"} if conf.startswith("pipeline") else set())
    return ArrayConfig(rows=r, cols=c, n_max=4, m_max=8, modes=("int8", "int4"), double_buffer=True,
                       **{f: f in flags for f in PIPELINE_FLAGS})


def sized_top(a, shapes, host_bits=64, t_max=None):
    """TopConfig of array `a` as placed (fpga_study): PRODUCT_TOP's buffers and counters, the
    dense INT8 top's DENSE_TOP; a K longer than the activation buffer holds for all tokens runs
    in token tiles (nmaccel.golden.cyclemodel.job_shapes). Every (T, K, N) in shapes must fit."""
    from nmaccel.arch.config import placed_top
    from nmaccel.golden.cyclemodel import job_shapes
    p = placed_top(a, host_bits=host_bits, **({"t_max": t_max} if t_max else {}))
    for shape in shapes:
        job_shapes(shape, p, "int8", min(a.n_max, a.m_max), min(a.n_max, a.m_max))   # refuses what does not fit
    return p


def stream_words(shape, p, mode, n_keep, m_group):
    """Host words the top reads and writes for one GEMM (header, activations, weights, epilogue
    records in; outputs out), from the same job split as nmaccel.golden.cyclemodel."""
    from nmaccel.golden.cyclemodel import job_shapes
    w_in = w_out = 0
    for j in job_shapes(shape, p, mode, n_keep, m_group):
        w_in += (p.words("header") + j.n_kt * j.n_steps * p.words("act", int4=mode == "int4")
                 + j.n_nt * (j.n_kt * p.array.rows * p.words("weight", mode == "codebook")
                             + p.words("epilogue")))
        w_out += j.n_nt * j.n_steps * p.words("out")
    return w_in, w_out


def gemm_time(shape, p, mode, n_keep, m_group, fmax_mhz, mem_gbps=None):
    """Cycles (cycle model), seconds at fmax, host bytes, and the roofline time
    max(cycles / fmax, bytes / mem_gbps) when a memory bandwidth feeding the host port is given."""
    from nmaccel.golden import cyclemodel as cm
    from nmaccel.arch.config import RuntimeConfig
    rt = RuntimeConfig(mode, n_keep, m_group)
    cyc = cm.cycles(shape, p.array, rt, p)
    w_in, w_out = stream_words(shape, p, mode, n_keep, m_group)
    nbytes = (w_in + w_out) * p.host_bits / 8
    t = cyc / (fmax_mhz * 1e6)
    t_roof = max(t, nbytes / (mem_gbps * 1e9)) if mem_gbps else t
    return {"cycles": cyc, "seconds": t, "bytes": nbytes, "seconds_roofline": t_roof,
            "utilization": cm.utilization(shape, p.array, rt, cyc)}
