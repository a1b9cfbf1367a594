"""Strassen block mode on the PyRTL array (nmaccel.hdl.strassen_tile) vs its golden twin."""
import numpy as np
import pyrtl
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.golden import array as ga
from nmaccel.golden import strassen_tile as gst
from nmaccel.golden.strassen import strassen_bit_growth, strassen_gemm, strassen_matmul
from nmaccel.hdl import strassen_tile as hst
from nmaccel.arch import layout
from nmaccel.arch.config import ArrayConfig, StrassenTileConfig
from nmaccel.run import strassen_tile as rst
from nmaccel.run.strassen_tile import run_strassen_tile


def _check(cfg, x, w):
    """Both modes on one elaborated tile: bit-exact with x @ w.T, Strassen golden and the twin;
    measured cycles equal the formula. Returns {strassen: cycles}."""
    ref = x.astype(np.int64) @ w.astype(np.int64).T
    np.testing.assert_array_equal(strassen_matmul(x, w), ref)
    cycles = {}
    for st in (True, False):
        r = run_strassen_tile(x, w, cfg, strassen=st)
        np.testing.assert_array_equal(r.outputs, ref)
        np.testing.assert_array_equal(gst.strassen_tile(cfg, x, w, st), ref)
        assert r.cycles == gst.strassen_tile_cycles(cfg, x.shape[0], st)
        assert r.products == (7 if st else 8)
        cycles[st] = r.cycles
    return cycles


# ---- ArrayConfig 9-bit operands -------------------------------------------------------------
@pytest.mark.parametrize("geom", [(2, 2, 2, 4), (1, 3, 4, 2)])
def test_tile_config_operand_growth_matches_golden(geom):
    """arch's one bit of pre-add growth is what golden strassen_bit_growth derives."""
    cfg = StrassenTileConfig(*geom)
    g = strassen_bit_growth(cfg.act_bits, cfg.weight_bits)
    assert (cfg.array.act_bits, cfg.array.weight_bits) == (g["act_operand_bits"], g["w_operand_bits"])
    assert cfg.combiner.operand_bits == g["act_operand_bits"]


def test_array_config_defaults_unchanged():
    cfg = ArrayConfig()
    assert (cfg.act_bits, cfg.weight_bits, cfg.operand_bits, cfg.mult_bits) == (8, 8, 21, 29)
    assert cfg.acc_bits == (cfg.k_max * 128 * 128).bit_length() + 1
    wide = ArrayConfig(act_bits=9, weight_bits=9, modes=("int8",))
    assert (wide.operand_bits, wide.mult_bits, wide.x_bits, wide.lane_load_bits) == (9, 18, 8 * 9, 1 + 3 + 9)
    assert wide.acc_bits == (wide.k_max * 256 * 256).bit_length() + 1


@pytest.mark.parametrize("kw,word", [
    (dict(act_bits=9), "INT8 mode only"),
    (dict(weight_bits=9, modes=("int8", "codebook")), "INT8 mode only"),
    (dict(act_bits=10, modes=("int8",)), "act_bits"),
    (dict(weight_bits=7, modes=("int8",)), "weight_bits"),
    (dict(act_bits=9.0, modes=("int8",)), "act_bits"),
])
def test_array_config_rejects_bad_widths(kw, word):
    with pytest.raises(NmaccelError, match=word):
        ArrayConfig(**kw)


def test_nine_bit_array_extremes_match_golden():
    """The array itself with 9-bit operands at the pre-add extremes (-256 .. 255)."""
    from nmaccel.hdl.array import input_widths, make_array_top
    cfg = StrassenTileConfig(rows=2, cols=2, n_max=2, t_max=2)
    a = cfg.array
    wop = np.array([[-256, 255, -255, -256], [255, -256, 254, 1]])
    x = np.array([[-256, -256, 255, -256], [255, 255, -256, 254], [-256, 0, 0, 255]])
    want = ga.array_tile(a, gst.block_plan(cfg, wop), x)
    np.testing.assert_array_equal(want, x @ wop.T)
    make_array_top(a)
    sim = pyrtl.Simulation()
    plan = gst.block_plan(cfg, wop)
    pe_word, act_row = layout.pe_word_layout(a), layout.Layout([("x", a.act_bits, a.n_max, True)])
    start = 1 + a.rows
    got = []
    for cyc in range(ga.tile_cycles(a, x.shape[0], False)):
        v = {n: 0 for n in input_widths(a)}
        if cyc == 0:
            v.update({"cfg_load": 1, "cfg_n_keep": a.n_max, "cfg_m_group": a.n_max})
        if 1 <= cyc <= a.rows:
            v["w_load"] = 1
            r = a.rows - cyc
            v.update({f"w_in_{c}": pe_word.encode(lane={"code": plan.codes[r, c], "index": plan.index[r, c],
                                                        "keep": plan.keep[r, c].astype(np.int64)})
                      for c in range(a.cols)})
        v["w_swap"] = int(cyc == start - 1)
        s = cyc - start
        if 0 <= s < x.shape[0]:
            v["in_valid"] = 1
            v.update({f"x_in_{r}": act_row.encode(x=x[s, r * a.n_max:(r + 1) * a.n_max])
                      for r in range(a.rows)})
        sim.step(v)
        if 0 <= s - a.latency < x.shape[0]:
            assert sim.inspect("out_valid") == 1
            got.append([int(layout.to_signed(sim.inspect(f"y_out_{c}"), a.acc_bits)) for c in range(a.cols)])
    np.testing.assert_array_equal(np.array(got), want)


# ---- tile: bit exactness and cycles ---------------------------------------------------------
@pytest.mark.parametrize("geom,shape", [
    ((2, 2, 2, 4), (8, 8, 4)),      # full tile
    ((2, 2, 2, 4), (7, 5, 3)),      # odd: zero padded everywhere
    ((3, 2, 1, 3), (5, 6, 4)),
    ((2, 3, 4, 2), (3, 15, 6)),
    ((1, 1, 2, 1), (1, 3, 1)),
])
def test_tile_random_int8_exact(rng, geom, shape):
    rows, cols, n_max, t_max = geom
    cfg = StrassenTileConfig(rows=rows, cols=cols, n_max=n_max, t_max=t_max)
    T, K, out = shape
    x = rng.integers(-128, 128, size=(T, K))
    w = rng.integers(-128, 128, size=(out, K))
    _check(cfg, x, w)


@pytest.mark.parametrize("pipe", [(True, False), (True, True)])
def test_tile_edge_values_and_pipelines(rng, pipe):
    """-128 / 127 everywhere: pre-added operands hit -256 and +-255, products 2^16."""
    cfg = StrassenTileConfig(rows=2, cols=2, n_max=2, t_max=3, pipeline_mux=pipe[0],
                             pipeline_product=pipe[1])
    x = rng.choice([-128, 127], size=(6, 8))
    w = rng.choice([-128, 127], size=(4, 8))
    x[0], w[0] = -128, -128
    x[1], w[1] = 127, -128
    _check(cfg, x, w)


def test_cycles_formula_and_ratio(rng):
    """Enough tokens per block that weights load under the stream: plain / Strassen -> 8/7."""
    cfg = StrassenTileConfig(rows=2, cols=2, n_max=2, t_max=12)
    a = cfg.array
    for T in (2, 9, 24):
        x = rng.integers(-128, 128, size=(T, 8))
        w = rng.integers(-128, 128, size=(4, 8))
        cyc = _check(cfg, x, w)
        t = -(-T // 2)
        if t >= 2 * a.rows + a.cols - 2:
            for st, p in ((True, 7), (False, 8)):
                assert cyc[st] == 1 + a.rows + p * t + a.latency + gst.COMBINER_LATENCY
        assert cyc[False] > cyc[True]
    assert 8 / 7 > cyc[False] / cyc[True] > 1.1        # T=24: 114 / 102


def test_one_elaboration_serves_both_modes(rng):
    cfg = StrassenTileConfig(rows=2, cols=2, n_max=2, t_max=2)
    x = rng.integers(-128, 128, size=(4, 8))
    w = rng.integers(-128, 128, size=(4, 8))
    run_strassen_tile(x, w, cfg, strassen=True)
    block = rst._CACHE[(cfg, "fast")][0]
    r = run_strassen_tile(x, w, cfg, strassen=False)
    assert rst._CACHE[(cfg, "fast")][0] is block
    np.testing.assert_array_equal(r.outputs, x @ w.T)


def test_python_simulator_agrees(rng):
    cfg = StrassenTileConfig(rows=1, cols=2, n_max=2, t_max=2)
    x = rng.integers(-128, 128, size=(3, 4))
    w = rng.integers(-128, 128, size=(3, 4))
    for st in (True, False):
        r = run_strassen_tile(x, w, cfg, strassen=st, simulator="python")
        np.testing.assert_array_equal(r.outputs, x @ w.T)


@pytest.mark.models
def test_tile_real_minilm_slice(rng):
    from nmaccel.models.loaders import load_weights
    from nmaccel.pack import pack_weights
    w = load_weights("minilm")["encoder.layer.0.attention.self.query.weight"]
    cfg = StrassenTileConfig(rows=2, cols=3, n_max=4, t_max=3)
    r0, k0 = 6 * int(rng.integers(0, 64)), 16 * int(rng.integers(0, 24))
    pw = pack_weights(w[r0:r0 + 6, k0:k0 + 16], n_keep=4, m_group=4, bits=8)
    wi = pw.int_weights()
    x = rng.integers(-128, 128, size=(6, 16))
    np.testing.assert_array_equal(strassen_gemm(pw, x), x @ wi.astype(np.int64).T)
    _check(cfg, x, wi)


# ---- bit growth the tile handles, bad input -------------------------------------------------
def test_widths_derived_from_bit_growth():
    cfg = StrassenTileConfig()
    g = strassen_bit_growth(8, 8)
    assert (cfg.array.act_bits, cfg.array.weight_bits) == (g["act_operand_bits"], g["w_operand_bits"]) == (9, 9)
    assert cfg.combiner.product_bits == cfg.array.acc_bits >= g["product_bits"]


@pytest.mark.parametrize("xs,ws,word", [
    ((9, 8), (4, 8), "t_max"),
    ((4, 10), (4, 10), "rows \\* n_max"),
    ((4, 8), (5, 8), "columns"),
    ((4, 8), (4, 6), "in_features=6"),
])
def test_tile_rejects_shapes(rng, xs, ws, word):
    cfg = StrassenTileConfig(rows=2, cols=2, n_max=2, t_max=4)
    with pytest.raises(NmaccelError, match=word):
        run_strassen_tile(rng.integers(-128, 128, size=xs), rng.integers(-128, 128, size=ws), cfg)


def test_tile_rejects_bad_values(rng):
    cfg = StrassenTileConfig(rows=2, cols=2, n_max=2, t_max=4)
    x = rng.integers(-128, 128, size=(4, 8))
    w = rng.integers(-128, 128, size=(4, 8))
    with pytest.raises(NmaccelError, match="INT8"):
        run_strassen_tile(x, w * 2, cfg)
    with pytest.raises(NmaccelError, match="activations"):
        run_strassen_tile(x * 2, w, cfg)
    with pytest.raises(NmaccelError, match="quantize"):
        run_strassen_tile(x, w.astype(np.float32), cfg)
    with pytest.raises(NmaccelError, match="simulator"):
        run_strassen_tile(x, w, cfg, simulator="verilog")
    with pytest.raises(NmaccelError, match="t_max"):
        StrassenTileConfig(t_max=0)
    with pytest.raises(NmaccelError, match="INT8 inputs"):
        StrassenTileConfig(act_bits=4)


@pytest.mark.tools
def test_tile_exports_and_maps_one_dsp_per_lane(tmp_path):
    """9x9 operands still fit one MULT18X18D per lane: as many DSPs as the plain INT8 array."""
    from nmaccel.verilog.export import export_verilog
    from nmaccel.hdl.array import make_array_top
    from nmaccel.verilog.synth import synthesize
    cfg = StrassenTileConfig(rows=1, cols=2, n_max=2, t_max=1)
    a = cfg.array
    reports = {}
    for name, build in (("stile", lambda: hst.make_strassen_tile_top(cfg)),
                        ("parr", lambda: make_array_top(ArrayConfig(rows=1, cols=2, n_max=2, m_max=2,
                                                                    modes=("int8",), double_buffer=True)))):
        pyrtl.reset_working_block()
        build()
        path = tmp_path / f"{name}.v"
        export_verilog(str(path), module_name=name)
        reports[name] = synthesize(str(path), name, "ecp5")
    assert reports["stile"]["cells"].get("MULT18X18D") == a.rows * a.cols * a.n_max
    assert reports["parr"]["cells"].get("MULT18X18D") == a.rows * a.cols * a.n_max


def test_cycles_are_measured_from_out_valid(rng, monkeypatch):
    """The tile's cycles come from the array's out_valid: a job whose stream starts two idle
    cycles late finishes two cycles after the formula (outputs unchanged)."""
    cfg = StrassenTileConfig(rows=2, cols=2, n_max=2, t_max=4)
    x = rng.integers(-128, 128, size=(4, 8))
    w = rng.integers(-128, 128, size=(4, 8))
    real = rst.tile_stream

    def late(cfg, x, w, strassen):
        s, (t, k, n, ncyc) = real(cfg, x, w, strassen)
        return {p: [0, 0] + v for p, v in s.items()}, (t, k, n, ncyc + 2)
    monkeypatch.setattr(rst, "tile_stream", late)
    r = run_strassen_tile(x, w, cfg, strassen=True)
    np.testing.assert_array_equal(r.outputs, x @ w.T)
    assert r.cycles == gst.strassen_tile_cycles(cfg, 4, True) + 2
