"""CLI: pack / inspect / storage, and bad input -> one-line error, exit 2, no partial file."""
import json
import subprocess
import sys

import numpy as np
import pytest

from nmaccel.cli import main
from nmaccel.pack.format import PackedWeights


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nmaccel.cli", *args], capture_output=True, text=True)


@pytest.fixture
def npy_weight(tmp_path, rng):
    path = tmp_path / "w.npy"
    np.save(path, rng.standard_normal((16, 40)).astype(np.float32))
    return path


def test_pack_inspect_round_trip(tmp_path, npy_weight, capsys):
    out = tmp_path / "w.nmpack"
    assert main(["pack", str(npy_weight), "--nm", "2:4", "--bits", "4", "--group-size", "8", "-o", str(out)]) == 0
    pw = PackedWeights.load(out)
    assert (pw.n_keep, pw.m_group, pw.bits, pw.granularity, pw.group_size) == (2, 4, 4, "group", 8)
    assert pw.shape == (16, 40)
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["N:M"] == "2:4"
    assert float(rep["bits / weight"]) == pytest.approx(pw.bits_per_weight(), abs=1e-4)


@pytest.mark.models
def test_storage_table_on_default_real_layer(capsys):
    assert main(["storage", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    rows = {r["config"]: r["bits_per_weight"] for r in res["rows"]}
    assert rows["dense FP16"] == 16
    assert rows["2:4 INT4 g128"] == pytest.approx(3.125)   # 2 + 1 index + 16/128 scale
    assert rows["2:4 INT4 g128"] <= 3.13


@pytest.mark.parametrize("args,msg", [
    (["--nm", "5:4"], "n_keep"),
    (["--nm", "2:32"], "m_group"),
    (["--nm", "two"], "N:M"),
    (["--bits", "3"], "bits"),
    (["--method", "oracle"], "method"),
    (["--quantizer", "kmeans"], "quantizer"),
    (["--group-size", "6"], "group"),
])
def test_pack_bad_input_exit_2_no_output(tmp_path, npy_weight, args, msg):
    out = tmp_path / "bad.nmpack"
    r = run_cli("pack", str(npy_weight), *args, "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["w.npy"]


def test_pack_nan_weights(tmp_path):
    w = np.ones((4, 8), np.float32)
    w[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", w)
    r = run_cli("pack", str(tmp_path / "nan.npy"), "-o", str(tmp_path / "o.nmpack"))
    assert r.returncode == 2 and "NaN" in r.stderr
    assert not (tmp_path / "o.nmpack").exists()


def test_inspect_corrupt_file(tmp_path, npy_weight):
    out = tmp_path / "w.nmpack"
    assert main(["pack", str(npy_weight), "-o", str(out), "--group-size", "0"]) == 0
    out.write_bytes(out.read_bytes()[:-7])
    r = run_cli("inspect", str(out))
    assert r.returncode == 2 and ("checksum" in r.stderr or "truncated" in r.stderr)
    r = run_cli("inspect", str(tmp_path / "missing.nmpack"))
    assert r.returncode == 2 and "no such packed file" in r.stderr


def test_wrong_calibration_width(tmp_path, npy_weight):
    np.save(tmp_path / "calib.npy", np.ones((10, 41), np.float32))
    r = run_cli("pack", str(npy_weight), "--method", "wanda", "--calibration", str(tmp_path / "calib.npy"),
                "-o", str(tmp_path / "o.nmpack"))
    assert r.returncode == 2 and "calibration" in r.stderr


def test_sim_host_link(capsys):
    """--host-link stalls the top's host port: cycles grow and stay == the cycle model; bad
    patterns and the tile backend are refused with one line, exit 2."""
    base = ("sim", "--backend", "golden", "--tokens", "4", "--array", "2x2", "--json")
    assert main([*base]) == 0
    ideal = json.loads(capsys.readouterr().out)
    assert main([*base, "--host-link", "in=1/3,out=2/3"]) == 0
    slow = json.loads(capsys.readouterr().out)
    assert slow["host_link"] == "in=1/3,out=2/3" and slow["cycles"] == slow["model_cycles"] > ideal["cycles"]
    for bad in (["--host-link", "in=3/2"], ["--backend", "tile", "--host-link", "in=1/2"]):
        try:
            rc = main(["sim", *bad])
        except SystemExit as e:
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2 and "host" in err.lower() and len(err.strip().splitlines()) == 1
