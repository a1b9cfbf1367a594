"""`nmaccel sweep`: grid validation, local process pool, Dask LocalCluster, resume, per-point verdicts."""
import csv
import json
import math

import pytest
import yaml

from nmaccel.arch.config import ArrayConfig, RuntimeConfig, TopConfig
from nmaccel.cli import main
from nmaccel.errors import NmaccelError
from nmaccel.golden import cyclemodel as cm
from nmaccel.run import sweep

TINY = {"array": ["2x2"], "nm": ["2:4", "4:4", "2:16"], "bits": [8, 4], "pe": ["4:8"],
        "jobs": ["model"], "shape": [8, 32, 8]}


def write_grid(tmp_path, data, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_parameter_is_one_line_error(tmp_path, capsys):
    path = write_grid(tmp_path, {**TINY, "arrays": ["4x4"]})
    with pytest.raises(NmaccelError, match="unknown parameter 'arrays'"):
        sweep.load_grid(path)
    assert main(["sweep", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "use one of" in err
    assert not (tmp_path / "out").exists()          # nothing written for a bad grid


@pytest.mark.parametrize("bad, match", [({"nm": ["4:2"]}, "N <= M"), ({"array": ["4by4"]}, "form"),
                                        ({"bits": [3]}, "bits"), ({"target": ["asic"]}, "target"),
                                        ({"jobs": ["place"]}, "unknown job"),
                                        ({"shape": [1, 2]}, "shape"),
                                        ({"jobs": ["pnr"], "target": ["xc7"]}, "place-and-route")])
def test_bad_values(bad, match):
    with pytest.raises(NmaccelError, match=match):
        sweep.parse_grid({**TINY, **bad})


def expected_cycles(grid, rows, cols, mode, n, m, n_max=4, m_max=8):
    a = ArrayConfig(rows=rows, cols=cols, n_max=n_max, m_max=m_max, double_buffer=True,
                    modes=("int8", "int4") if mode == "int4" else ("int8",))
    T, K, N = grid.shape
    p = TopConfig(array=a, t_max=grid.t_max, k_tiles_max=-(-K // (rows * 4)), n_tiles_max=-(-N // cols),
                  host_bits=grid.host_bits)
    return cm.cycles(grid.shape, a, RuntimeConfig(mode, n, m), p)


def check_tiny(res, grid, out):
    rows = {(r["nm"], r["bits"]): r for r in res["rows"]}
    assert len(rows) == 6
    # 2:16 cannot run on a 4:8 PE: recorded, the sweep went on
    assert rows[("2:16", 8)]["status"] == "invalid" and "m_max" in rows[("2:16", 8)]["message"]
    for nm, n, m in (("2:4", 2, 4), ("4:4", 4, 4)):
        for bits, mode in ((8, "int8"), (4, "int4")):
            r = rows[(nm, bits)]
            assert r["status"] == "ok"
            assert r["cycles"] == expected_cycles(grid, 2, 2, mode, n, m)
    # on a 4-lane PE, 2:4 covers 8 K elements per step: fewer cycles than dense
    assert rows[("2:4", 8)]["cycles"] < rows[("4:4", 8)]["cycles"]
    table = list(csv.DictReader(open(out / "sweep.csv")))
    assert len(table) == 6 and {t["status"] for t in table} == {"ok", "invalid"}
    js = json.loads((out / "sweep.json").read_text())
    assert js["provenance"]["command"] and len(js["rows"]) == 6
    assert (out / "pareto.png").stat().st_size > 1000


def test_local_pool_and_resume(tmp_path):
    grid = sweep.parse_grid(TINY)
    out = tmp_path / "out"
    res = sweep.run_sweep(grid, out, workers=1, progress=False)
    check_tiny(res, grid, out)
    assert res["computed"] == 6 and res["cached"] == 0
    again = sweep.run_sweep(grid, out, workers=1, progress=False)
    assert again["computed"] == 0 and again["cached"] == 6
    assert again["rows"] == res["rows"]
    # an interrupted sweep leaves some jobs uncached: only those run again
    done = sorted((out / "cache").glob("*.json"))
    for f in done[:2]:
        f.unlink()
    (out / "cache" / "damaged.json").write_text("{")
    part = sweep.run_sweep(grid, out, workers=1, progress=False)
    assert part["computed"] == 2 and part["cached"] == 4 and part["rows"] == res["rows"]


def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    grid = sweep.parse_grid(TINY)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        res = sweep.run_sweep(grid, tmp_path / "out", cluster=cluster.scheduler_address,
                              progress=False)
    check_tiny(res, grid, tmp_path / "out")
    assert res["computed"] == 6


def test_unreachable_cluster(tmp_path, capsys):
    path = write_grid(tmp_path, TINY)
    rc = main(["sweep", str(path), "-o", str(tmp_path / "out"), "--cluster", "tcp://127.0.0.1:9",
               "--cluster-timeout", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "cannot reach a Dask scheduler" in err and "dask scheduler" in err


def test_output_must_be_a_directory(tmp_path, capsys):
    path = write_grid(tmp_path, TINY)
    target = tmp_path / "file.txt"
    target.write_text("keep")
    assert main(["sweep", str(path), "-o", str(target)]) == 2
    assert target.read_text() == "keep"


@pytest.mark.tools
def test_synthesis_and_does_not_fit(tmp_path, capsys):
    """iCE40 UP5K has 8 SB_MAC16: a 2x2 array of 2-lane (2:4) PEs fits, of 4-lane PEs does not."""
    path = write_grid(tmp_path, {"array": ["2x2"], "nm": ["2:4", "4:4"], "bits": [8],
                                 "target": ["ice40"], "jobs": ["model", "synth"],
                                 "block": "array", "shape": [8, 32, 8]})
    assert main(["sweep", str(path), "-o", str(tmp_path / "out"), "--workers", "2", "-q"]) == 0
    rows = {r["nm"]: r for r in json.loads((tmp_path / "out" / "sweep.json").read_text())["rows"]}
    assert rows["2:4"]["status"] == "ok" and rows["2:4"]["dsp"] == 8 and rows["2:4"]["lut"] > 0
    assert rows["4:4"]["status"] == "does_not_fit" and "dsp 16/8" in rows["4:4"]["message"]
    assert rows["4:4"]["cycles"] is not None           # the cycle job still ran
    assert "does_not_fit" in capsys.readouterr().out


def test_rtl_job_equals_cycle_model(tmp_path):
    """The 'rtl' job runs the PyRTL top on seeded weights: cycles == model, outputs == golden."""
    grid = sweep.parse_grid({"array": "2x2", "nm": "2:4", "bits": 4, "pe": "4:8", "jobs": ["model", "rtl"],
                             "shape": [6, 40, 6], "t_max": 4})
    (row,) = sweep.run_sweep(grid, tmp_path / "out", workers=1, progress=False)["rows"]
    assert row["status"] == "ok", row["message"]
    assert row["rtl_cycles"] == row["cycles"] == expected_cycles(grid, 2, 2, "int4", 2, 4)


@pytest.mark.parametrize("rows", [
    [{"status": "ok", "lut": 306, "cycles": 187, "fmax_mhz": None}],                   # one point
    [{"status": "ok", "lut": 306, "cycles": 187, "fmax_mhz": 50.0, "latency_us": 3.7},
     {"status": "ok", "lut": 306, "cycles": 187, "fmax_mhz": 50.0, "latency_us": 3.7}],  # two equal
    [{"status": "ok", "lut": float("nan"), "cycles": 9},                                # no finite point
     {"status": "does_not_fit", "cycles": 5}],
])
def test_plot_limits_are_finite(tmp_path, rows):
    """The Pareto plot never autoscales a degenerate axis: its limits are finite and non-empty."""
    import matplotlib.pyplot as plt
    for r in rows:
        r.update(array="2x2", nm="2:4", bits=8)
    seen = []
    real_close = plt.close
    plt.close = lambda fig: seen.append([ax.get_xlim() + ax.get_ylim() for ax in fig.axes]) or real_close(fig)
    try:
        sweep.plot(rows, tmp_path / "p.png")
    finally:
        plt.close = real_close
    assert (tmp_path / "p.png").stat().st_size > 0
    for lims in seen[0]:
        assert all(math.isfinite(v) for v in lims) and lims[0] < lims[1] and lims[2] < lims[3]
