"""Host-link stall injection (nmaccel.arch.config.HostLink): the PyRTL and Verilator harnesses
withhold in_valid / out_ready on a periodic pattern, and the cycle model replays the same
pattern, so RTL cycles (from the top's own handshakes) stay equal to the model under stalls."""
import numpy as np
import pytest

from nmaccel.arch.config import ArrayConfig, HostLink, RuntimeConfig, TopConfig
from nmaccel.errors import NmaccelError
from nmaccel.golden import cyclemodel as cm
from nmaccel.run.runner import reference, run_gemm
from nmtest import random_epilogue, random_gemm

P = TopConfig(array=ArrayConfig(rows=2, cols=2, n_max=4, m_max=8, modes=("int8", "int4")), t_max=4,
              k_tiles_max=6, n_tiles_max=8, host_bits=32)
PGS = TopConfig(array=ArrayConfig(rows=2, cols=2, n_max=4, m_max=4, modes=("int8", "int4")), t_max=4,
                k_tiles_max=8, n_tiles_max=8, host_bits=64, group_scales=True, raw_bits=48)
LINKS = [HostLink(3, 2), HostLink(1, 1, 2, 1), HostLink(5, 3, 7, 4), HostLink(4, 1, 3, 2), HostLink(7, 6, 5, 1)]
CASES = [("int8", 4, 4, 8), ("int8", 2, 4, 8), ("int4", 2, 4, 4), ("int4", 1, 4, 4), ("int4", 4, 8, 4)]


@pytest.mark.parametrize("per,on", [(1, 1), (2, 1), (3, 2), (5, 3), (7, 7), (8, 1)])
def test_link_schedule_equals_brute_force(per, on):
    link = HostLink(per, on, per, on)
    ok = [c for c in range(400) if link.in_ok(c)]
    assert ok == [c for c in range(400) if link.out_ok(c)]
    for start in range(3 * per + 2):
        avail = [c for c in ok if c >= start]
        assert link.in_done(start, 0) == start
        for n in range(1, 3 * on + 4):
            assert link.in_done(start, n) == avail[n - 1] + 1
            assert link.out_last(start, n) == avail[n - 1]


def test_link_parse_and_errors():
    assert HostLink.parse("in=3/4,out=1/2") == HostLink(4, 3, 2, 1)
    assert HostLink.parse("ideal") == HostLink.parse("") == HostLink()
    assert HostLink().ideal and not HostLink(2, 1).ideal and HostLink(4, 1, 6, 5).period == 12
    assert str(HostLink.parse("out=1/3")) == "in=1/1,out=1/3"
    for bad in ("in=5/4", "in=0/3", "up=1/2", "in=1:2"):
        with pytest.raises(NmaccelError, match="host link"):
            HostLink.parse(bad)


@pytest.mark.parametrize("link", LINKS, ids=str)
@pytest.mark.parametrize("mode,nk,mg,bits", CASES)
def test_pyrtl_cycles_equal_model_under_stalls(rng, link, mode, nk, mg, bits):
    """Outputs == golden and RTL cycles == model under the link's stalls; the stalls cost cycles
    (so a model that ignored them would disagree)."""
    packed, x = random_gemm(rng, nk, mg, bits, "uniform", P)
    ep = random_epilogue(rng, packed.out_features) if rng.random() < 0.5 else None
    r = run_gemm(packed, x, P.array, top_cfg=P, backend="pyrtl", epilogue=ep, link=link)
    np.testing.assert_array_equal(r.outputs, reference(packed, x, ep))
    shape = (x.shape[0], x.shape[1], packed.out_features)
    rt = RuntimeConfig(mode, nk, mg)
    assert r.cycles == r.model_cycles == cm.cycles(shape, P.array, rt, P, link=link)
    assert r.cycles > cm.cycles(shape, P.array, rt, P)


def test_group_scales_and_many_tiles_under_stalls(rng):
    """Group-scale records, several N tiles and token tiles (jobs) under a stalling link; the
    model's fast forward (period-aligned) equals its full replay."""
    link = HostLink(3, 2, 2, 1)
    for mode, nk, mg, bits in (("int8", 2, 4, 8), ("int4", 2, 4, 4)):
        packed, x = random_gemm(rng, nk, mg, bits, "uniform", PGS, T=11, N=13, group_size=16)
        r = run_gemm(packed, x, PGS.array, top_cfg=PGS, backend="pyrtl", link=link)
        np.testing.assert_array_equal(r.outputs, reference(packed, x, group_scales=True))
        assert r.cycles == r.model_cycles
    big = TopConfig(array=PGS.array, t_max=4, k_tiles_max=8, n_tiles_max=64, host_bits=64,
                    group_scales=True, raw_bits=48)
    for job in cm.job_shapes((64, 48, 120), big, "int8", 2, 4):
        assert (cm.job_cycles(job, big, "int8", 2, link=link)
                == cm.job_cycles(job, big, "int8", 2, link=link, fast_forward=False))


def test_bandwidth_bound_decode_gains_from_fewer_weight_words():
    """Decode (T = 1) on a half-rate input link: cycles grow with the words streamed, so 2:4
    (half the weight words) keeps its gain over dense while stalls slow both (model, validated
    against RTL above)."""
    a = ArrayConfig(rows=4, cols=4, n_max=4, m_max=8, modes=("int8", "int4"))
    p = TopConfig(array=a, t_max=64, k_tiles_max=64, n_tiles_max=64)
    shape = (1, 1024, 256)
    c = {(nk, link): cm.cycles(shape, a, RuntimeConfig("int8", nk, 4), p, link=link)
         for nk in (4, 2) for link in (HostLink(), HostLink(2, 1), HostLink(4, 1))}
    for nk in (4, 2):
        assert c[(nk, HostLink())] < c[(nk, HostLink(2, 1))] < c[(nk, HostLink(4, 1))]
    assert c[(4, HostLink(4, 1))] / c[(2, HostLink(4, 1))] > 1.8


@pytest.mark.tools
@pytest.mark.parametrize("link", LINKS[:3], ids=str)
def test_verilator_cycles_equal_pyrtl_under_stalls(rng, link):
    for mode, nk, mg, bits in CASES[1:3]:
        packed, x = random_gemm(rng, nk, mg, bits, "uniform", P)
        rv = run_gemm(packed, x, P.array, top_cfg=P, backend="verilator", link=link)
        rp = run_gemm(packed, x, P.array, top_cfg=P, backend="pyrtl", link=link)
        np.testing.assert_array_equal(rv.outputs, reference(packed, x))
        assert rv.out_words == rp.out_words
        assert rv.cycles == rp.cycles == rv.model_cycles


def test_link_type_checked(rng):
    packed, x = random_gemm(rng, 2, 4, 8, "uniform", P)
    with pytest.raises(NmaccelError, match="HostLink"):
        run_gemm(packed, x, P.array, top_cfg=P, backend="golden", link="in=1/2")
