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
