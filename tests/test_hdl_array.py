"""Systolic array via run_tile: RTL == golden array twin == golden GEMM, cycles == formula."""
import numpy as np
import pytest

from nmaccel.golden import array as ga
from nmaccel.errors import NmaccelError
from nmaccel.golden import gemm
from nmaccel.arch.config import ArrayConfig
from nmaccel.pack import PackedWeights, pack_weights
from nmaccel.run.sim import run_tile
from nmtest import random_packed

NMS = [(1, 2), (2, 4), (1, 4), (3, 8), (4, 8), (2, 8), (4, 4)]   # (4, 4): dense
MODES = [("int8", 8), ("int4", 4), ("int4", 2), ("codebook", 4), ("codebook", 2)]


def make_packed(rng, out, k, n, m, mode, bits, edge=False):
    return random_packed(rng, out, k, n, m, bits, "lloyd-max" if mode == "codebook" else "uniform", edge)


def check_tile(pw, x, cfg, simulator="fast"):
    res = run_tile(pw, x, cfg, simulator=simulator)
    ref = gemm(pw, x)
    plan = ga.load_plan(pw, cfg)
    np.testing.assert_array_equal(res.outputs, ref)
    np.testing.assert_array_equal(ga.array_tile(cfg, plan, x), ref)
    assert res.cycles == ga.tile_cycles(cfg, x.shape[0], plan.int4)
    steps = -(-x.shape[0] // 2) if plan.int4 else x.shape[0]
    assert res.cycles == 1 + cfg.rows + steps + cfg.rows + cfg.cols - 1 + cfg.pipeline_stages
    return res


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (4, 4)])
@pytest.mark.parametrize("mode,bits", MODES)
def test_array_sweep(rng, shape, mode, bits):
    cfg = ArrayConfig(rows=shape[0], cols=shape[1])
    for n, m in NMS:
        window = cfg.window(n, m)
        k = int(rng.integers(max(1, (cfg.rows - 1) * window), cfg.rows * window + 1))
        out = int(rng.integers(1, cfg.cols + 1))
        pw = make_packed(rng, out, k, n, m, mode, bits)
        T = int(rng.integers(1, 8))
        x = rng.integers(-128, 128, size=(T, k))
        res = check_tile(pw, x, cfg)
        assert res.mode == mode and (res.n_keep, res.m_group) == (n, m)


@pytest.mark.parametrize("mode,bits", [("int8", 8), ("int4", 4), ("codebook", 4)])
def test_array_edge_values(rng, mode, bits):
    """Extreme weights and activations over a full K tile: no overflow, all-zero groups."""
    cfg = ArrayConfig(rows=3, cols=2, pipeline_mux=True, pipeline_product=True)
    for n, m in [(2, 4), (4, 4), (1, 2)]:
        k = cfg.rows * cfg.window(n, m)
        pw = make_packed(rng, 2, k, n, m, mode, bits, edge=True)
        x = np.full((6, k), -128)
        x[1] = 127
        x[2] = 0                                          # all-zero activations
        x[3, :m] = 0                                      # one all-zero group
        x[4] = rng.choice([-128, 127], size=k)
        check_tile(pw, x, cfg)


def test_array_all_indices_equal_and_pipelining(rng):
    cfg = ArrayConfig(rows=2, cols=2, n_max=2, m_max=4, pipeline_product=True)
    for n, m in [(1, 4), (1, 2), (2, 4)]:
        k = cfg.rows * cfg.window(n, m)
        kp = k
        mask = np.zeros((2, kp), dtype=bool)
        mask[:, np.arange(0, kp, m)[:, None] + np.arange(n)[None, :]] = True   # same indices everywhere
        codes = rng.integers(-128, 128, size=(2, kp)) * mask
        pw = PackedWeights.from_dense_codes(codes, mask, in_features=k, n_keep=n, m_group=m, bits=8,
                                            scales=np.ones((2, 1), dtype=np.float32))
        check_tile(pw, rng.integers(-128, 128, size=(5, k)), cfg)


def test_array_8x8(rng):
    cfg = ArrayConfig(rows=8, cols=8)
    for (n, m), (mode, bits) in [((4, 4), ("int8", 8)), ((2, 4), ("int4", 4))]:
        k = 8 * cfg.window(n, m)
        pw = make_packed(rng, 8, k, n, m, mode, bits)
        check_tile(pw, rng.integers(-128, 128, size=(3, k)), cfg)


@pytest.mark.models
@pytest.mark.parametrize("nm,bits,quantizer", [((2, 4), 4, "uniform"), ((2, 4), 8, "uniform"),
                                               ((4, 4), 8, "uniform"), ((1, 4), 4, "lloyd-max"),
                                               ((4, 8), 4, "uniform")])
def test_array_real_minilm_tiles(rng, nm, bits, quantizer):
    from nmaccel.models.loaders import default_layer
    w = default_layer()
    cfg = ArrayConfig(rows=4, cols=4)
    n, m = nm
    k = cfg.rows * cfg.window(n, m)
    for t in range(2):
        r0, k0 = 4 * int(rng.integers(0, w.shape[0] // 4)), k * int(rng.integers(0, w.shape[1] // k))
        pw = pack_weights(w[r0:r0 + 4, k0:k0 + k], n_keep=n, m_group=m, bits=bits, quantizer=quantizer)
        x = rng.integers(-128, 128, size=(9, k))
        check_tile(pw, x, cfg)


@pytest.mark.parametrize("shape,pipe", [((1, 1), (False, False)), ((2, 3), (True, False)),
                                        ((3, 2), (True, True)), ((4, 4), (False, True))])
def test_double_buffered_back_to_back_tiles(rng, shape, pipe):
    """Next tile's weights load while the current one streams; swaps travel with the data."""
    from nmaccel.run.sim import run_tiles
    cfg = ArrayConfig(rows=shape[0], cols=shape[1], double_buffer=True,
                      pipeline_mux=pipe[0], pipeline_product=pipe[1])
    for (n, m), (mode, bits) in [((2, 4), ("int4", 4)), ((4, 4), ("int8", 8)), ((1, 2), ("codebook", 4)),
                                 ((3, 8), ("int8", 8))]:
        k = cfg.rows * cfg.window(n, m)
        tiles = []
        for j in range(4):
            T = int(rng.integers(1, 3)) if j == 1 else int(rng.integers(8, 30))   # tile 1 stalls
            tiles.append((make_packed(rng, cfg.cols, k, n, m, mode, bits), rng.integers(-128, 128, (T, k))))
        res = run_tiles(tiles, cfg, simulator="fast")
        for (pw, x), y in zip(tiles, res.outputs):
            np.testing.assert_array_equal(y, gemm(pw, x))
        steps = [-(-x.shape[0] // 2) if mode == "int4" else x.shape[0] for _, x in tiles]
        assert res.cycles == ga.tile_schedule(cfg, steps)[2]
        single = run_tile(*tiles[0], cfg, simulator="fast")
        assert single.cycles == ga.tile_cycles(cfg, tiles[0][1].shape[0], mode == "int4")


def test_tile_schedule_streams_without_bubbles():
    cfg = ArrayConfig(rows=8, cols=8, double_buffer=True)
    s = 2 * cfg.rows + cfg.cols - 2
    ls, ss, total = ga.tile_schedule(cfg, [s] * 5)
    assert total == 1 + cfg.rows + 5 * s + cfg.latency
    assert np.all(np.diff(ss) == s)
    _, _, slow = ga.tile_schedule(cfg, [s - 1] * 5)
    assert slow > 1 + cfg.rows + 5 * (s - 1) + cfg.latency


def test_codebook_per_scale_group_reloads_lut(rng):
    """Group-wise codebooks: the column LUT reloads where the scale group changes (cb_load)."""
    cfg = ArrayConfig(rows=4, cols=2)
    w = rng.standard_normal((2, 32)).astype(np.float32)
    pw = pack_weights(w, n_keep=2, m_group=4, bits=4, quantizer="lloyd-max", group_size=8)
    assert pw.codebook.shape[1] == 4
    x = rng.integers(-128, 128, size=(5, 32))
    check_tile(pw, x, cfg)
    bad = pack_weights(w, n_keep=2, m_group=4, bits=4, quantizer="lloyd-max", group_size=4)
    with pytest.raises(NmaccelError, match="group_size a multiple of 8"):
        run_tile(bad, x, cfg, simulator="fast")


def test_asymmetric_codes_run_in_int8_mode(rng):
    """Zero-point INT4 codes (code - zp spans [-15, 15]) need mode='int8'; the default refuses."""
    cfg = ArrayConfig(rows=2, cols=2)
    w = rng.standard_normal((2, 16)).astype(np.float32) + 0.5
    pw = pack_weights(w, n_keep=2, m_group=4, bits=4, symmetric=False)
    x = rng.integers(-128, 128, size=(4, 16))
    assert np.abs(pw.int_weights()).max() > 7
    with pytest.raises(NmaccelError, match="outside int4 range"):
        run_tile(pw, x, cfg, simulator="fast")
    res = run_tile(pw, x, cfg, simulator="fast", mode="int8")
    np.testing.assert_array_equal(res.outputs, gemm(pw, x))
