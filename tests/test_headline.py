"""The README headline table and docs/RESULTS.md are exactly what scripts/headline.py generates
from benchmarks/results/*.json; every result file's provenance record is complete."""
import importlib.util
import json
from pathlib import Path

import pytest

from nmaccel import provenance

REPO = Path(__file__).resolve().parent.parent


def _headline():
    spec = importlib.util.spec_from_file_location("headline", REPO / "scripts" / "headline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_headline_is_generated():
    h = _headline()
    text = (REPO / "README.md").read_text()
    assert text == h.render_readme(text), "README headline table is stale: run python scripts/headline.py"
    assert (REPO / "docs" / "RESULTS.md").read_text() == h.results_md(), \
        "docs/RESULTS.md is stale: run python scripts/headline.py"


def test_check_fails_on_edited_table(tmp_path, monkeypatch):
    h = _headline()
    text = (REPO / "README.md").read_text()
    edited = text.replace(h.END, "| typed-in | row | 9.99x | nowhere |\n" + h.END)
    readme = tmp_path / "README.md"
    readme.write_text(edited)
    results = tmp_path / "RESULTS.md"
    results.write_text(h.results_md())
    monkeypatch.setattr(h, "README", readme)
    monkeypatch.setattr(h, "RESULTS_MD", results)
    monkeypatch.setattr(h, "REPO", tmp_path)
    assert h.main(["--check"]) == 1
    assert h.main([]) == 0 and h.main(["--check"]) == 0
    assert "typed-in" not in readme.read_text()


def test_rows_label_model_and_rtl():
    rows = _headline().headline_rows()
    kinds = {r[1].split(",")[0] for r in rows}
    assert all(r[3] and (REPO / "benchmarks" / "results" / r[3]).exists() for r in rows)
    assert not any("MACs per DSP" in r[0] for r in rows)
    if (REPO / "benchmarks/results/top_cycles.json").exists():
        assert {"RTL (PyRTL)", "cycle model only (not simulated)"} <= kinds


def test_write_result_records_provenance(tmp_path):
    out = tmp_path / "r.json"
    provenance.write_result(out, {"x": 1}, argv=["bench.py", "--json", str(out)])
    doc = json.loads(out.read_text())
    p = doc["provenance"]
    assert doc["x"] == 1 and p["command"].endswith(f"bench.py --json {out}")
    assert p["tools"]["PyRTL"] and p["tools"]["numpy"] and p["machine"]["cpus"] >= 1 and p["date_utc"]
    assert p["commit"] is None or len(p["commit"].split("+")[0]) == 40
    provenance.write_result(out, [{"a": 1}], argv=["b"])
    doc = json.loads(out.read_text())
    assert provenance.rows_of(doc) == [{"a": 1}] and "provenance" in doc
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]     # no temporary left behind


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "benchmarks" / "results").glob("*.json")))
def test_result_file_is_strict_json(name):
    json.loads((REPO / "benchmarks" / "results" / name).read_text(),
               parse_constant=lambda c: pytest.fail(f"{name} holds {c}"))


def test_fpga_study_rows(tmp_path, monkeypatch):
    """fpga_study.json (benchmarks/fpga_study.py layout) gives resource rows per top and GMAC/s
    rows per product mode, with its run records as provenance."""
    h = _headline()
    doc = {"runs": [{"part": "pnr", "command": "python benchmarks/fpga_study.py --part pnr", "commit": "c0ffee",
                     "dirty": False, "date_utc": "2026-12-05", "machine": "x86_64 2 cpus", "versions": {}}],
           "tops": {}, "cycles": {},
           "table": [{"top": "product", "mode": "2:4 INT4", "lut": 11, "ff": 12, "dsp": 13, "bram": 14, "io": 133,
                      "fmax_mhz": 50.0, "seeds": 1, "cycles source S": "verilator", "GMAC/s S": 5.0,
                      "x dense INT8 (device) S": 2.0, "x per DSP S": 1.5, "x per kLUT S": 1.25},
                     {"top": "dense", "mode": "dense INT8", "lut": 21, "ff": 22, "dsp": 23, "bram": 24, "io": 133,
                      "fmax_mhz": 60.0, "seeds": 1, "GMAC/s S": 2.5}]}
    (tmp_path / "fpga_study.json").write_text(json.dumps(doc))
    monkeypatch.setattr(h, "RESULTS", tmp_path)
    rows = h.fpga_rows()
    assert [r[0] for r in rows] == ["ECP5-85k product top", "ECP5-85k dense top", "ECP5-85k product top, 2:4 INT4"]
    assert "13 MULT18X18D" in rows[0][2] and "fmax 50.0 MHz" in rows[0][2]
    assert "2.0x the dense INT8 top per device, 1.5x per DSP" in rows[2][2] and "verilator" in rows[2][2]
    assert "commit c0ffee" in h.provenance_line(doc)
