"""`nmaccel sim` on whole layers (the accelerator top through run_gemm) and `nmaccel.run.sim.run_gemm`."""
import json

import numpy as np
import pytest

from nmaccel.run import runner, sim
from nmaccel.cli import main
from nmaccel.arch.config import TopConfig
from nmaccel.arch.config import ArrayConfig
from nmaccel.pack import pack_weights

FIELDS = {"cycles", "model_cycles", "outputs_match", "mismatches", "backend", "cycles_per_second",
          "utilization"}


def _cli_json(capsys, argv):
    rc = main(["sim", "--json"] + argv)
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_run_gemm_reexport_is_the_runner(rng):
    a = ArrayConfig(rows=2, cols=2)
    p = TopConfig(array=a, t_max=4, k_tiles_max=4, n_tiles_max=4)
    packed = pack_weights(rng.standard_normal((5, 21)).astype(np.float32), n_keep=2, m_group=4, bits=4)
    x = rng.integers(-128, 128, size=(7, 21))
    res = sim.run_gemm(packed, x, a, top_cfg=p)
    np.testing.assert_array_equal(res.outputs, runner.reference(packed, x))
    assert res.cycles == res.model_cycles and res.backend == "pyrtl"
    assert res.sim_s > 0 and res.cycles_per_second > 0
    gold = sim.run_gemm(packed, x, a, top_cfg=p, backend="golden")
    assert gold.out_words == res.out_words and gold.cycles == res.cycles


def test_cli_whole_packed_layer_pyrtl(tmp_path, capsys, rng):
    """A packed file larger than the array runs whole: K and N tiled on the top."""
    pw = pack_weights(rng.standard_normal((7, 40)).astype(np.float32), n_keep=1, m_group=4, bits=8)
    pw.save(tmp_path / "w.nmw")
    rc, out = _cli_json(capsys, ["--backend", "pyrtl", "--weights", str(tmp_path / "w.nmw"),
                                 "--array", "2x2", "--tokens", "9", "--seed", "3"])
    assert rc == 0 and FIELDS <= set(out)
    assert out["backend"] == "pyrtl" and out["weights"] == "7x40" and out["epilogue"] == "raw"
    assert out["outputs_match"] and out["mismatches"] == 0
    assert out["cycles"] == out["model_cycles"] and 0 < out["utilization"] <= 1
    assert out["cycles_per_second"] > 0


def test_cli_named_layer_epilogue_golden_equals_pyrtl(tmp_path, capsys, rng):
    """--layer picks a layer of a model file; --epilogue: INT8 outputs, same on both backends."""
    w = {"enc.fc1.weight": rng.standard_normal((6, 24)).astype(np.float32),
         "enc.fc2.weight": rng.standard_normal((5, 30)).astype(np.float32)}
    path = tmp_path / "m.npz"
    np.savez(path, **w)
    argv = ["--weights", str(path), "--layer", "enc.fc2.weight", "--nm", "2:4", "--bits", "4",
            "--array", "2x2", "--tokens", "6", "--epilogue", "--relu"]
    outs = {b: _cli_json(capsys, argv + ["--backend", b]) for b in ("golden", "pyrtl")}
    for b, (rc, out) in outs.items():
        assert rc == 0 and out["backend"] == b and out["layer"] == "enc.fc2.weight"
        assert out["weights"] == "5x30" and out["epilogue"] == "int8" and out["mode"] == "int4"
        assert out["outputs_match"] and out["cycles"] == out["model_cycles"]
    assert outs["golden"][1]["cycles"] == outs["pyrtl"][1]["cycles"]


def test_cli_real_minilm_layer_on_the_top(capsys):
    """A whole real MiniLM FFN-out layer (384 x 1536) on a 2x2 top, 4 tokens."""
    rc, out = _cli_json(capsys, ["--backend", "pyrtl", "--layer", "encoder.layer.0.output.dense.weight",
                                 "--array", "2x2", "--tokens", "4", "--epilogue"])
    assert rc == 0 and out["weights"] == "384x1536" and out["outputs_match"]
    assert out["cycles"] == out["model_cycles"]


def test_cli_default_backend_is_the_tile(capsys):
    """Without --backend the command keeps its single-tile behaviour, with the common fields."""
    rc, out = _cli_json(capsys, ["--array", "2x2", "--tokens", "3", "--simulator", "fast"])
    assert rc == 0 and FIELDS <= set(out) and out["backend"] == "tile"
    assert out["cycles"] == out["model_cycles"] == out["formula_cycles"]
    assert out["weights"] == "2x16" and 0 < out["utilization"] <= 1


@pytest.mark.parametrize("argv,match", [
    (["--epilogue"], "--backend"),
    (["--backend", "pyrtl", "--simulator", "fast"], "--simulator"),
    (["--backend", "golden", "--vcd", "t.vcd"], "--vcd"),
    (["--backend", "golden", "--layer", "encoder.layer.0.nope"], "encoder.layer.0"),
])
def test_cli_bad_input(capsys, argv, match):
    rc = main(["sim", "--array", "2x2", "--tokens", "2"] + argv)
    err = capsys.readouterr().err
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1


def test_cli_unknown_backend(capsys):
    with pytest.raises(SystemExit) as exc:          # argparse choices: usage error, exit 2
        main(["sim", "--backend", "gpu"])
    assert exc.value.code == 2 and "backend" in capsys.readouterr().err


def test_cli_layer_with_packed_file_rejected(tmp_path, capsys, rng):
    pw = pack_weights(rng.standard_normal((2, 8)).astype(np.float32), n_keep=2, m_group=4, bits=4)
    pw.save(tmp_path / "w.nmw")
    rc = main(["sim", "--weights", str(tmp_path / "w.nmw"), "--layer", "fc", "--backend", "golden"])
    err = capsys.readouterr().err
    assert rc == 2 and "--layer" in err and len(err.strip().splitlines()) == 1


@pytest.mark.tools
def test_cli_verilator_whole_layer(tmp_path, capsys, rng):
    pw = pack_weights(rng.standard_normal((3, 10)).astype(np.float32), n_keep=2, m_group=2, bits=8)
    pw.save(tmp_path / "w.nmw")
    argv = ["--weights", str(tmp_path / "w.nmw"), "--array", "1x2", "--n-max", "2", "--m-max", "2",
            "--tokens", "3", "--epilogue"]
    rc, out = _cli_json(capsys, argv + ["--backend", "verilator"])
    assert rc == 0 and out["backend"] == "verilator" and out["outputs_match"]
    assert out["cycles"] == out["model_cycles"] and out["cycles_per_second"] > 0
    rc, ref = _cli_json(capsys, argv + ["--backend", "pyrtl"])
    assert rc == 0 and ref["cycles"] == out["cycles"]
