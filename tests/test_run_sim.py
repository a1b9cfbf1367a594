"""run_tile driver (simulators, reconfiguration, bad input) and the `nmaccel sim` command."""
import json

import numpy as np
import pytest

from nmaccel.run import sim
from nmaccel.cli import main
from nmaccel.errors import NmaccelError
from nmaccel.golden import gemm
from nmaccel.arch.config import ArrayConfig, RuntimeConfig
from nmaccel.pack import PackedWeights
from nmtest import random_packed

CFG = ArrayConfig(rows=2, cols=2)


def test_simulators_agree(rng):
    """compiled (batched C kernel), fast and python give the same outputs and cycles."""
    for n, m, bits in [(2, 4, 4), (4, 4, 8), (1, 2, 8)]:
        k = CFG.rows * CFG.window(n, m)
        pw = random_packed(rng, 2, k, n, m, bits)
        x = rng.integers(-128, 128, size=(7, k))
        res = [sim.run_tile(pw, x, CFG, simulator=s) for s in sim.SIMULATORS]
        for r, s in zip(res, sim.SIMULATORS):
            np.testing.assert_array_equal(r.outputs, gemm(pw, x))
            assert r.cycles == res[0].cycles and r.simulator == s and r.cycles_per_second > 0


def test_compiled_batch_equals_stepping(rng):
    """The one-call C kernel path equals CompiledSimulation.step per cycle on every output."""
    pw = random_packed(rng, 2, 16, 2, 4, 4)
    x = rng.integers(-128, 128, size=(6, 16))
    plan = sim.ga.load_plan(pw, CFG)
    stream, _, _ = sim.input_stream(CFG, [plan], [x])
    ncyc = len(stream["cfg_load"])
    batched = sim._Runner(CFG, "compiled").run(stream, ncyc)
    stepped = sim._Runner(CFG, "compiled", trace=True).run(stream, ncyc)
    assert set(batched) == set(stepped)
    for port in batched:
        np.testing.assert_array_equal(np.asarray(batched[port], dtype=object),
                                      np.asarray(stepped[port], dtype=object), err_msg=port)
    assert len(set(np.asarray(batched["y_out_0"]).tolist())) > 2   # not one value for every step


def test_reconfigure_without_reelaboration(rng):
    """One elaborated array runs INT8, INT4, codebook and several N:M back to back."""
    runner = sim.get_runner(CFG, "fast")
    for n, m, bits, q in [(2, 4, 4, "uniform"), (4, 4, 8, "uniform"), (1, 4, 4, "lloyd-max"),
                          (3, 8, 8, "uniform"), (2, 4, 4, "uniform")]:
        k = CFG.rows * CFG.window(n, m)
        pw = random_packed(rng, 2, k, n, m, bits, q)
        x = rng.integers(-128, 128, size=(5, k))
        np.testing.assert_array_equal(sim.run_tile(pw, x, CFG, simulator="fast").outputs, gemm(pw, x))
        assert sim.get_runner(CFG, "fast") is runner


@pytest.mark.parametrize("case,match", [
    ("n_too_big", "n_max"), ("m_too_big", "m_max"), ("mode_missing", "mode"), ("k_too_big", "rows"),
    ("out_too_big", "columns"), ("x_range", "INT8"), ("x_shape", "in_features"), ("x_float", "integer"),
    ("simulator", "simulator"), ("cb_bits", "codebook_bits"), ("asym_range", "range")])
def test_bad_input_raises_before_simulation(rng, case, match, monkeypatch):
    calls = []
    monkeypatch.setattr(sim._Runner, "run", lambda *a: calls.append(a))
    cfg = ArrayConfig(rows=2, cols=2, n_max=2, m_max=4, modes=("int8", "codebook"))
    pw, x = random_packed(rng, 2, 8, 2, 4, 8), rng.integers(-128, 128, size=(3, 8))
    kw = {}
    if case == "n_too_big":
        pw = random_packed(rng, 2, 8, 3, 4, 8)
    elif case == "m_too_big":
        pw = random_packed(rng, 2, 16, 1, 8, 8)
        x = rng.integers(-128, 128, size=(3, 16))
    elif case == "mode_missing":
        pw = random_packed(rng, 2, 8, 2, 4, 4)
    elif case == "k_too_big":
        pw, x = random_packed(rng, 2, 24, 2, 4, 8), rng.integers(-128, 128, size=(3, 24))
    elif case == "out_too_big":
        pw = random_packed(rng, 3, 8, 2, 4, 8)
    elif case == "x_range":
        x[0, 0] = 128
    elif case == "x_shape":
        x = x[:, :7]
    elif case == "x_float":
        x = x.astype(np.float32) + 0.5
    elif case == "simulator":
        kw["simulator"] = "verilator"
    elif case == "cb_bits":
        cfg = ArrayConfig(rows=2, cols=2, n_max=2, m_max=4, codebook_bits=2)
        pw = random_packed(rng, 2, 8, 2, 4, 4, "lloyd-max")
    elif case == "asym_range":
        mask = np.ones((2, 8), dtype=bool)
        pw = PackedWeights.from_dense_codes(np.full((2, 8), 255), mask, in_features=8, n_keep=4,
                                            m_group=4, bits=8, scales=np.ones((2, 1)),
                                            zero_points=np.zeros((2, 1)))
        cfg = ArrayConfig(rows=2, cols=2)
    with pytest.raises(NmaccelError, match=match):
        sim.run_tile(pw, x, cfg, **kw)
    assert not calls


@pytest.mark.parametrize("kw,match", [({"rows": 0}, "rows"), ({"n_max": 9, "m_max": 8}, "n_max"),
                                      ({"modes": ("int4",)}, "modes"), ({"acc_bits": 10}, "acc_bits"),
                                      ({"m_max": 1, "n_max": 1}, "m_max"), ({"cols": 2.0}, "cols"),
                                      ({"k_max": 3, "rows": 2, "n_max": 2}, "k_max"),
                                      ({"pipeline_mux": 1}, "pipeline_mux"),
                                      ({"modes": ("int8", "int8")}, "repeats"), ({"dsp_width": 8}, "dsp_width"),
                                      ({"codebook_bits": 3}, "codebook_bits"), ({"act_bits": 4}, "act_bits")])
def test_array_config_validation(kw, match):
    with pytest.raises(NmaccelError, match=match):
        ArrayConfig(**kw)


def test_array_config_derived_widths():
    cfg = ArrayConfig(rows=4, cols=4, n_max=4, m_max=8)
    assert cfg.k_max == 32 and cfg.acc_bits == (32 * 128 * 128).bit_length() + 1
    assert cfg.idx_bits == 3 and cfg.latency == 7 and cfg.window(2, 4) == 8 and cfg.window(4, 4) == 4
    assert ArrayConfig(k_max=4096).acc_bits == 28
    with pytest.raises(NmaccelError, match="n_max"):
        RuntimeConfig("int8", 8, 8).check(cfg)
    with pytest.raises(NmaccelError, match="n_keep"):
        RuntimeConfig("int8", 3, 2)


def test_vcd_trace(tmp_path, rng):
    pw = random_packed(rng, 2, 4, 2, 4, 8)
    x = rng.integers(-128, 128, size=(2, 4))
    path = tmp_path / "t.vcd"
    res = sim.run_tile(pw, x, ArrayConfig(rows=1, cols=2, n_max=2, m_max=4), simulator="fast", trace=str(path))
    np.testing.assert_array_equal(res.outputs, gemm(pw, x))
    text = path.read_text()
    assert "$enddefinitions" in text and "y_out_0" in text
    with pytest.raises(NmaccelError, match="cannot write"):
        sim.run_tile(pw, x, ArrayConfig(rows=1, cols=2, n_max=2, m_max=4), simulator="fast",
                     trace=str(tmp_path / "missing" / "t.vcd"))
    assert not (tmp_path / "missing").exists()


def test_cli_sim_json(capsys):
    rc = main(["sim", "--nm", "2:4", "--bits", "4", "--array", "2x2", "--tokens", "5", "--simulator",
               "fast", "--json", "--no-pipeline"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["outputs_match"] and out["mismatches"] == 0
    assert out["cycles"] == out["formula_cycles"] == 1 + 2 + 3 + 3
    # default: the product top's array (every pipeline register): more latency, still == formula
    rc = main(["sim", "--nm", "2:4", "--bits", "4", "--array", "2x2", "--tokens", "5", "--simulator",
               "fast", "--json"])
    piped = json.loads(capsys.readouterr().out)
    assert rc == 0 and piped["outputs_match"] and piped["cycles"] == piped["formula_cycles"] > out["cycles"]
    assert out["simulator"] == "fast" and out["cycles_per_second"] > 0 and out["mode"] == "int4"


def test_cli_sim_table_and_packed_file(tmp_path, capsys, rng):
    pw = random_packed(rng, 2, 8, 1, 2, 4, "lloyd-max")
    pw.save(tmp_path / "w.nmw")
    rc = main(["sim", "--weights", str(tmp_path / "w.nmw"), "--array", "2x2", "--tokens", "3",
               "--simulator", "python"])
    out = capsys.readouterr().out
    assert rc == 0 and "outputs_match" in out and "codebook" in out


@pytest.mark.parametrize("argv,match", [(["--nm", "2-4"], "--nm"), (["--array", "4"], "--array"),
                                        (["--nm", "5:4"], "n_keep"), (["--nm", "8:8"], "n_max"),
                                        (["--tokens", "0"], "tokens"), (["--weights", "nope.nmw"], "nope")])
def test_cli_sim_bad_input(capsys, argv, match):
    try:
        rc = main(["sim", "--array", "1x1", "--simulator", "fast"] + argv)
    except SystemExit as exc:      # refused by an argparse type (one line, exit 2)
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1


def test_tile_cycles_are_measured_from_out_valid(rng, monkeypatch):
    """Cycles come from the array's out_valid, not from the stream length: a stream that starts
    two idle cycles late (same schedule otherwise) finishes two cycles later than the formula."""
    from nmaccel.golden import array as ga
    pw = random_packed(rng, 2, CFG.rows * CFG.window(2, 4), 2, 4, 8)
    x = rng.integers(-128, 128, size=(5, pw.in_features))
    formula = ga.tile_cycles(CFG, 5, False)
    assert sim.run_tile(pw, x, CFG).cycles == formula
    real = sim.input_stream

    def late(cfg, plans, xs):
        s, firsts, steps = real(cfg, plans, xs)
        return ({k: np.concatenate([np.zeros((2, v.shape[1]), v.dtype), v]) for k, v in s.items()},
                [f + 2 for f in firsts], steps)
    monkeypatch.setattr(sim, "input_stream", late)
    r = sim.run_tile(pw, x, CFG, simulator="fast")
    np.testing.assert_array_equal(r.outputs, gemm(pw, x))
    assert r.cycles == formula + 2
