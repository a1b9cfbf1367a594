"""`nmaccel demo` end to end on a small configuration; its report is checked against its own
artefacts: speed-up = ratio of the reported cycles, bits/weight = the packed file's accounting,
resources / fmax = Yosys' stat and nextpnr's report; CLI error paths exit 2 with one line."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from nmaccel.cli import main
from nmaccel.pack import PackedWeights
from nmaccel.verilog import synth

pytestmark = [pytest.mark.tools, pytest.mark.models]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    vcd = out.parent / "top.vcd"
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", "--tokens", "8", "--out", str(out), "--json", "--vcd", str(vcd),
                   "--vcd-cycles", "100:160"])
    assert rc == 0
    return json.loads(buf.getvalue()), out, vcd


def test_runs_are_exact_and_speedup_is_the_cycle_ratio(demo):
    r, out, _ = demo
    assert r["all_exact"] and len(r["runs"]) == 4
    for run in r["runs"]:
        assert run["outputs == golden"] and run["mismatches"] == 0 and run["cycles == model"]
    by = {(x["backend"], "dense" if "dense" in x["run"] else "sparse"): x["cycles"] for x in r["runs"]}
    assert by[("pyrtl", "sparse")] == by[("verilator", "sparse")] == r["cycles"]["sparse"]
    assert by[("pyrtl", "dense")] == by[("verilator", "dense")] == r["cycles"]["dense_int8"]
    assert r["cycles"]["speedup_vs_dense_int8"] == r["cycles"]["dense_int8"] / r["cycles"]["sparse"]
    assert r["cycles"]["speedup_vs_dense_int8"] > 1.0


def test_storage_is_the_packed_files_accounting(demo):
    r, out, _ = demo
    for key, path in zip(("sparse", "dense"), r["artefacts"]["packed"]):
        pk = PackedWeights.load(path)
        n = pk.out_features * pk.in_features
        assert r["storage"][key]["bits"] == pk.storage_bits()
        assert r["storage"][key]["bits_per_weight"] == pk.storage_bits() / n
        assert r["storage"][key]["x_smaller_than_fp16"] == 16 * n / pk.storage_bits()
    sp = PackedWeights.load(r["artefacts"]["packed"][0])
    assert (sp.n_keep, sp.m_group, sp.bits, sp.group_size) == (2, 4, 4, 128)


def test_resources_and_fmax_are_the_tool_reports(demo):
    """After place and route every resource row is the synthesis report's count against the
    device's capacity (LUT / FF / DSP / BRAM from Yosys' stat.json, IO = the exported port bits
    against the package's user pins), in report.json, report.md and the plot's data alike; the
    placed BEL counts and fmax are nextpnr's report.json."""
    r, out, _ = demo
    syn = r["synthesis"]
    assert syn["pnr"] and syn["device"] == "85k"
    cells = synth._parse_stat(out / "synth" / "stat.json")
    counts = synth.classify(cells, "ecp5")
    cap = synth.CAPACITY[("ecp5", "85k")]
    ports = json.loads(Path(r["artefacts"]["ports"]).read_text())["ports"]
    io = sum(p["width"] for p in ports)                     # clk and rst included
    assert {"clk", "rst"} <= {p["name"] for p in ports} and r["top"]["io_pins"] == io
    expect = {**{k: [counts[k], cap[k]] for k in ("lut", "ff", "dsp", "bram")}, "io": [io, synth.PINS[("ecp5", "85k")]]}
    assert syn["resources_vs_device"] == expect
    for k in ("lut", "ff", "dsp", "bram"):
        assert syn[k] == counts[k]
    fmax, util, _ = synth._parse_report(out / "synth" / "report.json")
    assert syn["fmax_mhz"] == min(f for f in fmax.values() if f)
    assert syn["nextpnr_utilization"] == {k: list(v) for k, v in util.items()}
    # what nextpnr placed is what Yosys mapped (one BEL per DSP / block RAM / FF cell)
    assert util["MULT18X18D"][0] == counts["dsp"] and util["DP16KD"][0] == counts["bram"]
    assert util["TRELLIS_FF"][0] == counts["ff"]
    md = (out / "report.md").read_text()
    for k, (used, c) in expect.items():
        assert f"| {used} / {c} ({100 * used / c:.1f}%)" in md, k
    assert f"{syn['fmax_mhz']:.1f} MHz" in md
    log = (out / "synth" / "nextpnr.log").read_text()
    assert syn["seconds"]["pnr_stages"] == synth.pnr_stages(log)
    assert set(syn["seconds"]["pnr_stages"]) == {"place_heap", "place_sa", "route"}
    th = r["throughput"]
    assert th["dense_equivalent_gmac_per_s_at_fmax"] == pytest.approx(
        th["dense_equivalent_macs"] / r["cycles"]["sparse"] * syn["fmax_mhz"] / 1e3)


def test_report_files_and_artefacts(demo):
    r, out, vcd = demo
    assert json.loads((out / "report.json").read_text())["cycles"] == r["cycles"]
    md = (out / "report.md").read_text()
    assert f"{r['cycles']['speedup_vs_dense_int8']:.3f}x" in md and f"{r['synthesis']['lut']}" in md
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    v = Path(r["artefacts"]["verilog"]).read_text()
    assert "module nmaccel_top" in v
    core = Path(r["artefacts"]["fusesoc_core"]).read_text()
    assert core.startswith("CAPI=2:") and "nmaccel_top.v" in core and "toplevel: nmaccel_top" in core
    assert {Path(p).name for p in r["artefacts"]["memory_images"]} >= {"values.memh", "indices.memh"}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.")]     # staging removed
    text = vcd.read_text()
    assert re.findall(r"^#\d+$", text, re.M) == [f"#{10 * t}" for t in range(61)]   # 60 cycles + end mark (PyRTL: 10 time units a cycle)
    for sig in ("in_valid", "accept", "out_valid", "top_s_step"):
        assert re.search(rf"\$var wire \d+ {sig} ", text), sig


@pytest.mark.parametrize("argv, msg", [
    (["--nm", "5:4"], "N must be between 1 and M"),
    (["--array", "2"], "--array"),
    (["--vcd-cycles", "9:3"], "--vcd-cycles"),
    (["--vcd", "t.vcd", "--vcd-backend", "verilator"], "drop --no-verilator"),
    (["--layer", "encoder.layer.0.nope"], "no MiniLM linear layer"),
])
def test_bad_input_exits_2_without_output(tmp_path, capsys, argv, msg):
    out = tmp_path / "o"
    assert main(["demo", "--no-pnr", "--no-verilator", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("keep")
    assert main(["demo", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err and f.read_text() == "keep"


def test_sqnr():
    from nmaccel.run.demo import sqnr_db
    a = np.array([3.0, 4.0])
    assert sqnr_db(a, a) == float("inf")
    assert sqnr_db(a, a * 0.9) == pytest.approx(20.0)
