"""fmax pipelining options (pipeline_operand, pipeline_dsp, pipeline_sum) and the carry-light INT4 packing:
RTL == golden bit for bit, cycles == formula / cycle model, with every option combination."""
import itertools
from dataclasses import replace

import numpy as np
import pyrtl
import pytest

from nmaccel import golden
from nmaccel.golden import array as ga
from nmaccel.golden import gemm
from nmaccel.arch.config import TopConfig
from nmaccel.arch.config import ArrayConfig
from nmaccel.arch.config import RuntimeConfig
from nmaccel.golden.intops import wrap
from nmaccel.hdl.pe import make_pe_top, packed_operand
from nmaccel.run.runner import reference, run_gemm
from nmaccel.run.sim import run_tile, run_tiles
from nmtest import random_packed

FLAGS = ("pipeline_mux", "pipeline_operand", "pipeline_dsp", "pipeline_product", "pipeline_sum")
COMBOS = [dict(zip(FLAGS, bits)) for bits in itertools.product((False, True), repeat=len(FLAGS))]


def test_pipeline_stages_counts_every_flag():
    for combo in COMBOS:
        cfg = ArrayConfig(rows=2, cols=3, **combo)
        assert cfg.pipeline_stages == sum(combo.values())
        assert cfg.latency == 2 + 3 - 1 + sum(combo.values())
    with pytest.raises(Exception, match="pipeline_sum"):
        ArrayConfig(pipeline_sum=1)


def test_packed_operand_equals_full_add_exhaustive():
    """concat + a_hi decrement == (a_hi << S) + a_lo (INT4) / sext(a_lo) (INT8), every INT8 pair."""
    pyrtl.reset_working_block()
    cfg = ArrayConfig(rows=1, cols=1)
    int4 = pyrtl.Input(1, "int4")
    a_lo, a_hi = pyrtl.Input(cfg.act_bits, "a_lo"), pyrtl.Input(cfg.act_bits, "a_hi")
    out = pyrtl.Output(cfg.operand_bits, "b")
    out <<= packed_operand(cfg, int4, a_lo, a_hi)
    a = np.arange(-128, 128)
    lo, hi = (v.ravel() for v in np.meshgrid(a, a, indexing="ij"))
    sim = pyrtl.FastSimulation()
    for mode in (0, 1):
        sim.step_multiple({"int4": [mode] * lo.size, "a_lo": list(lo & 255), "a_hi": list(hi & 255)})
    got = wrap(np.array(sim.tracer.trace["b"], dtype=np.int64), cfg.operand_bits)
    np.testing.assert_array_equal(got[:lo.size], lo)
    np.testing.assert_array_equal(got[lo.size:], (hi << cfg.pack_shift) + lo)


def _tile_check(rng, cfg, mode, bits, n, m, T):
    k = cfg.rows * cfg.window(n, m)
    pw = random_packed(rng, cfg.cols, k, n, m, bits, "lloyd-max" if mode == "codebook" else "uniform")
    x = rng.integers(-128, 128, size=(T, k))
    x[0] = -128
    res = run_tile(pw, x, cfg, simulator="fast")
    np.testing.assert_array_equal(res.outputs, gemm(pw, x))
    plan = ga.load_plan(pw, cfg)
    np.testing.assert_array_equal(ga.array_tile(cfg, plan, x), gemm(pw, x))
    assert res.cycles == ga.tile_cycles(cfg, T, mode == "int4")
    assert res.cycles == 1 + cfg.rows + (-(-T // 2) if mode == "int4" else T) + cfg.latency


@pytest.mark.parametrize("ci", range(len(COMBOS)))
def test_tile_all_pipeline_combos(rng, ci):
    cfg = ArrayConfig(rows=2, cols=2, n_max=2, m_max=4, **COMBOS[ci])
    for (mode, bits), (n, m) in [(("int4", 4), (1, 2)), (("int8", 8), (2, 4)), (("codebook", 4), (2, 2))]:
        _tile_check(rng, cfg, mode, bits, n, m, int(rng.integers(3, 8)))


@pytest.mark.parametrize("combo", [dict(pipeline_operand=True), dict(pipeline_sum=True),
                                   dict(pipeline_dsp=True), dict(zip(FLAGS, [True] * len(FLAGS)))])
def test_tile_default_shape_new_flags(rng, combo):
    """4 lanes, m_max 8, 3 x 2: INT4 with the full N:M sweep."""
    cfg = ArrayConfig(rows=3, cols=2, **combo)
    for n, m in [(1, 2), (2, 4), (3, 8), (4, 4)]:
        _tile_check(rng, cfg, "int4", 4, n, m, 5)


@pytest.mark.parametrize("combo", [dict(pipeline_operand=True), dict(pipeline_sum=True),
                                   dict(pipeline_dsp=True), dict(zip(FLAGS, [True] * len(FLAGS)))])
def test_double_buffer_with_new_flags(rng, combo):
    """Weights swapped mid-stream stay aligned with their steps through the new registers."""
    cfg = ArrayConfig(rows=2, cols=3, n_max=2, m_max=4, double_buffer=True, **combo)
    n, m = 2, 4
    k = cfg.rows * cfg.window(n, m)
    tiles = [(random_packed(rng, cfg.cols, k, n, m, 4, "uniform"), rng.integers(-128, 128, (T, k)))
             for T in (12, 2, 9)]
    res = run_tiles(tiles, cfg, simulator="fast")
    for (pw, x), y in zip(tiles, res.outputs):
        np.testing.assert_array_equal(y, gemm(pw, x))
    assert res.cycles == ga.tile_schedule(cfg, [-(-x.shape[0] // 2) for _, x in tiles])[2]


@pytest.mark.parametrize("combo,db", [
    (dict(pipeline_operand=True, pipeline_dsp=True, pipeline_sum=True), True),
    (dict(zip(FLAGS, [True] * len(FLAGS))), True),
    (dict(zip(FLAGS, [True] * len(FLAGS))), False),       # single weight register: load_gap
    (dict(pipeline_operand=True), False)])
def test_top_run_gemm_cycles_match_model(rng, combo, db):
    """Small top on the pyrtl backend (several K and N tiles): outputs == reference,
    cycles == golden.cycles."""
    a = ArrayConfig(rows=2, cols=2, n_max=2, m_max=4, modes=("int8", "int4"), **combo)
    p = TopConfig(array=a, t_max=4, k_tiles_max=4, n_tiles_max=4, host_bits=32, double_buffer=db)
    for mode, bits, n, m in [("int4", 4, 1, 2), ("int8", 8, 2, 4)]:
        k = 2 * a.rows * a.window(n, m)
        packed = random_packed(rng, 3, k, n, m, bits, "uniform")
        x = rng.integers(-128, 128, size=(5, k))
        res = run_gemm(packed, x, a, top_cfg=p, backend="pyrtl")
        np.testing.assert_array_equal(res.outputs, reference(packed, x))
        assert res.cycles == res.model_cycles
        assert res.cycles == golden.cycles((5, k, 3), a, RuntimeConfig(mode, n, m), top_cfg=p)


@pytest.mark.parametrize("combo", [dict(pipeline_dsp=True), dict(pipeline_dsp=True, pipeline_operand=True,
                                                                 pipeline_sum=True, dsp_width=25)])
def test_int8_only_and_wide_dsp(rng, combo):
    """pipeline_dsp where the operand fits the DSP (INT8-only build, or dsp_width >= operand)."""
    modes = ("int8",) if "dsp_width" not in combo else ("int8", "int4")
    cfg = ArrayConfig(rows=2, cols=2, n_max=2, m_max=4, modes=modes, **combo)
    for (mode, bits), (n, m) in [(("int8", 8), (1, 2)), (("int8", 8), (2, 2))] + \
            ([(("int4", 4), (2, 4))] if "int4" in modes else []):
        _tile_check(rng, cfg, mode, bits, n, m, 6)


@pytest.mark.tools
def test_ecp5_pe_all_flags_fmax(tmp_path):
    """One PE with every pipeline flag places on ECP5-85k well above the unpipelined 41-43 MHz
    (benchmarks/fmax_study.py: ~129 MHz, seed 1) and still uses one MULT18X18D per lane."""
    from nmaccel.verilog import export, synth
    pyrtl.reset_working_block()
    cfg = ArrayConfig(rows=1, cols=1, modes=("int8", "int4"), **dict(zip(FLAGS, [True] * len(FLAGS))))
    make_pe_top(cfg)
    export.export_verilog(tmp_path / "pe.v", module_name="pe", port_description=False)
    rep = synth.synthesize(tmp_path / "pe.v", "pe", "ecp5", pnr=True, freq_mhz=250)
    assert rep["dsp"] == cfg.n_max
    assert rep["fmax_mhz"] > 110


@pytest.mark.tools
@pytest.mark.parametrize("extra", [{}, dict(modes=("int8",), n_max=3, m_max=6)])
def test_all_flags_array_lint_clean(tmp_path, extra):
    from nmaccel.verilog import export
    from nmaccel.hdl.array import make_array_top
    pyrtl.reset_working_block()
    make_array_top(ArrayConfig(rows=2, cols=2, **dict(zip(FLAGS, [True] * len(FLAGS))), **extra))
    export.export_verilog(tmp_path / "arr.v", module_name="arr", port_description=False)
    assert export.lint(tmp_path / "arr.v") == []
