"""Cycle model of the accelerator top: equals RTL cycle counts; structure and speed ratios."""
import numpy as np
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.golden import cyclemodel as cm
from nmaccel.arch.config import TopConfig
from nmaccel.arch.config import ArrayConfig, RuntimeConfig
from nmaccel.pack import pack_weights
from nmaccel.run.runner import reference, run_gemm

P23 = TopConfig(array=ArrayConfig(rows=2, cols=3, n_max=4, m_max=4, modes=("int8", "int4")),
                t_max=6, k_tiles_max=6, n_tiles_max=6)


@pytest.mark.parametrize("mode,bits", [("int8", 8), ("int4", 4)])
def test_model_equals_rtl_sweep(rng, mode, bits):
    a = P23.array
    for nk, mg in ((4, 4), (2, 4), (1, 4), (2, 2), (1, 2)):
        for _ in range(2):
            win = min(a.n_max // nk, a.m_max // mg) * mg
            K = int(rng.integers(1, P23.k_tiles_max * a.rows * win + 1))
            N = int(rng.integers(1, P23.n_tiles_max * a.cols + 1))
            T = int(rng.integers(1, 3 * P23.t_max + 1))
            packed = pack_weights(rng.standard_normal((N, K)).astype(np.float32), n_keep=nk,
                                  m_group=mg, bits=bits)
            x = rng.integers(-128, 128, size=(T, K))
            res = run_gemm(packed, x, a, top_cfg=P23)
            np.testing.assert_array_equal(res.outputs, reference(packed, x))
            assert res.cycles == cm.cycles((T, K, N), a, RuntimeConfig(mode, nk, mg), P23)


def test_jobs_add_up_and_split():
    a = P23.array
    rt = RuntimeConfig("int8", 4, 4)
    one = cm.cycles((P23.t_max, 20, 9), a, rt, P23)
    assert cm.cycles((3 * P23.t_max, 20, 9), a, rt, P23) == 3 * one
    jobs = cm.job_shapes((2 * P23.t_max * 2 + 1, 20, 9), P23, "int4", 2, 4)
    # 25 INT4 tokens = 13 steps > 2 * t_max: three jobs, balanced (5 + 5 + 3 steps, not 6 + 6 + 1)
    assert [j.n_steps for j in jobs] == [5, 5, 3]
    assert jobs[0].n_kt == 3 and jobs[0].n_nt == 3      # window 4 (n_max = m_max = 4)


# a small activation buffer: 8 entries for up to 6 K tiles x 6 steps
P23S = TopConfig(array=P23.array, t_max=6, k_tiles_max=6, n_tiles_max=6, act_entries=8)


def test_long_k_runs_in_token_tiles():
    """A job holds n_kt * n_steps <= act_entries: a long K runs in shorter token tiles."""
    for K, steps in ((8, [5, 5]), (16, [4, 4, 2]), (20, [2] * 5), (32, [2] * 5), (40, [1] * 10)):
        n_kt = -(-K // 8)                              # rows 2 x window 4 at 4:4
        jobs = cm.job_shapes((10, K, 5), P23S, "int8", 4, 4)
        assert [j.n_steps for j in jobs] == steps and all(j.n_kt == n_kt for j in jobs), K
        assert all(j.n_kt * j.n_steps <= P23S.act_depth for j in jobs)
    with pytest.raises(NmaccelError, match=r"needs 9 K tiles .* act_entries>=9"):
        cm.job_shapes((1, 9 * 8, 5), P23S, "int8", 4, 4)


@pytest.mark.parametrize("mode,bits", [("int8", 8), ("int4", 4)])
def test_long_k_token_tiles_rtl(rng, mode, bits):
    """K streaming on a fixed top: K tiles x steps beyond the activation buffer, RTL == golden
    and RTL cycles == model (every job re-streams the weights)."""
    a = P23S.array
    for nk, mg in ((4, 4), (2, 4), (1, 2)):
        win = min(a.n_max // nk, a.m_max // mg) * mg
        tps = 2 if mode == "int4" else 1
        K = int(rng.integers(3 * a.rows * win + 1, P23S.k_tiles_max * a.rows * win + 1))  # >= 4 K tiles
        N = int(rng.integers(1, 3 * a.cols + 1))
        T = int(rng.integers(4 * tps + 1, 2 * P23S.t_max * tps + 1))                    # >= 5 steps
        packed = pack_weights(rng.standard_normal((N, K)).astype(np.float32), n_keep=nk,
                              m_group=mg, bits=bits)
        x = rng.integers(-128, 128, size=(T, K))
        jobs = cm.job_shapes((T, K, N), P23S, mode, nk, mg)
        assert len(jobs) > -(-T // (P23S.t_max * tps))              # split by K, not only by t_max
        res = run_gemm(packed, x, a, top_cfg=P23S)
        np.testing.assert_array_equal(res.outputs, reference(packed, x))
        assert res.cycles == cm.cycles((T, K, N), a, RuntimeConfig(mode, nk, mg), P23S)


def test_act_entries_validated():
    with pytest.raises(NmaccelError, match="act_entries"):
        TopConfig(array=P23.array, t_max=6, k_tiles_max=6, act_entries=5)
    with pytest.raises(NmaccelError, match="act_entries"):
        TopConfig(array=P23.array, t_max=6, k_tiles_max=6, act_entries=37)


def test_compute_bound_steady_state():
    """Long jobs, host keeps up: with double-buffered weights a K tile costs n_steps cycles (its
    weights load while the previous tile streams); the single-register path adds the load and
    the drain of the skewed array: rows + 1 + (rows + cols - 4) more."""
    a = ArrayConfig(rows=4, cols=4)
    rt = RuntimeConfig("int8", 4, 4)
    K = 64 * 16
    for db, per_tile in ((True, 256), (False, 256 + a.rows + 1 + a.rows + a.cols - 4)):
        p = TopConfig(array=a, t_max=256, k_tiles_max=64, double_buffer=db)
        c1 = cm.cycles((256, K, 40), a, rt, p)
        c2 = cm.cycles((256, K, 44), a, rt, p)
        assert c2 - c1 == 64 * per_tile


def test_short_tiles_bound_by_load_and_swap():
    """n_steps below 2 * rows + cols - 2: a tile every 2 * rows + cols - 2 cycles (load R rows,
    swap, wait until the swap reaches the last PE) once the host is fast enough."""
    a = ArrayConfig(rows=4, cols=2, n_max=2, m_max=2, modes=("int8",))
    p = TopConfig(array=a, t_max=4, k_tiles_max=64, host_bits=512)
    rt = RuntimeConfig("int8", 2, 2)
    c1 = cm.cycles((4, 64 * 8, 20), a, rt, p)
    c2 = cm.cycles((4, 64 * 8, 22), a, rt, p)
    assert c2 - c1 == 64 * (2 * a.rows + a.cols - 2)


@pytest.mark.parametrize("T", [64, 256])
def test_speed_ratios_4096(T):
    """Model ratios on a 4096 x 4096 weight (RTL-validated model)."""
    a = ArrayConfig(rows=4, cols=4)
    p = TopConfig(array=a, t_max=256, k_tiles_max=256)
    shape = (T, 4096, 4096)
    d8 = cm.cycles(shape, a, RuntimeConfig("int8", 4, 4), p)
    s8 = cm.cycles(shape, a, RuntimeConfig("int8", 2, 4), p)
    s4 = cm.cycles(shape, a, RuntimeConfig("int4", 2, 4), p)
    assert d8 / s4 >= 3.8 and d8 / s8 >= 1.9
    assert cm.utilization(shape, a, RuntimeConfig("int8", 4, 4), d8) >= 0.95
    single = TopConfig(array=a, t_max=256, k_tiles_max=256, double_buffer=False)
    assert cm.cycles(shape, a, RuntimeConfig("int8", 4, 4), single) > d8


def test_model_errors():
    a = P23.array
    with pytest.raises(NmaccelError, match="positive"):
        cm.cycles((0, 4, 4), a, RuntimeConfig("int8", 4, 4), P23)
    with pytest.raises(NmaccelError, match="k_tiles_max"):
        cm.cycles((4, 10_000, 4), a, RuntimeConfig("int8", 4, 4), P23)
    with pytest.raises(NmaccelError, match="n_tiles_max"):
        cm.cycles((4, 4, 10_000), a, RuntimeConfig("int8", 4, 4), P23)
    with pytest.raises(NmaccelError, match="array_cfg"):
        cm.cycles((4, 4, 4), ArrayConfig(rows=2, cols=2), RuntimeConfig("int8", 4, 4), P23)
    with pytest.raises(NmaccelError, match="does not fit"):
        cm.cycles((4, 4, 4), a, RuntimeConfig("int8", 2, 8), P23)


PV = TopConfig(array=ArrayConfig(rows=1, cols=2, n_max=2, m_max=2, modes=("int8",)), t_max=2,
               k_tiles_max=4, n_tiles_max=4, host_bits=16)


@pytest.mark.tools
def test_verilator_backend_same_outputs_and_cycles(rng):
    """The exported top under Verilator: same output words and cycle count as PyRTL and model."""
    for nk, mg, T, K, N in ((2, 2, 5, 7, 3), (1, 2, 1, 8, 8), (2, 2, 4, 3, 1)):
        packed = pack_weights(rng.standard_normal((N, K)).astype(np.float32), n_keep=nk,
                              m_group=mg, bits=8)
        x = rng.integers(-128, 128, size=(T, K))
        rv = run_gemm(packed, x, PV.array, top_cfg=PV, backend="verilator")
        rp = run_gemm(packed, x, PV.array, top_cfg=PV, backend="pyrtl")
        np.testing.assert_array_equal(rv.outputs, reference(packed, x))
        assert rv.out_words == rp.out_words
        assert rv.cycles == rp.cycles == rv.model_cycles


def test_fast_forward_equals_full_replay(rng):
    """The periodic jump over N tiles gives exactly the full tile-by-tile replay's count."""
    for _ in range(60):
        a = ArrayConfig(rows=int(rng.integers(1, 5)), cols=int(rng.integers(1, 5)), n_max=4, m_max=8,
                        modes=("int8", "int4", "codebook"), pipeline_product=bool(rng.integers(2)))
        p = TopConfig(array=a, host_bits=int(rng.choice([16, 32, 64, 128])), t_max=int(rng.integers(2, 40)),
                      k_tiles_max=8, n_tiles_max=64, double_buffer=bool(rng.integers(2)),
                      group_scales=bool(rng.integers(2)), raw_bits=48)
        mode = str(rng.choice(["int8", "int4", "codebook"]))
        job = cm.JobShape(n_steps=int(rng.integers(1, p.t_max + 1)), n_kt=int(rng.integers(1, 9)),
                          n_nt=int(rng.integers(1, 65)))
        gk = int(rng.integers(1, job.n_kt + 1))
        assert cm.job_cycles(job, p, mode, gk) == cm.job_cycles(job, p, mode, gk, fast_forward=False)
