"""Dedicated Verilator harness of the accelerator top (nmaccel.verilog.cosim_top) behind
run_gemm(backend="verilator"): outputs == golden, cycles == PyRTL == cycle model, cached builds,
clear errors for missing tools / stalls."""
import numpy as np
import pytest

from nmaccel.arch.config import ArrayConfig, RuntimeConfig, TopConfig
from nmaccel.errors import NmaccelError, ToolMissingError
from nmaccel.golden import cyclemodel as cm
from nmaccel.golden.top import run_stream
from nmaccel.program.encoder import encode_gemm
from nmaccel.run.runner import reference, run_gemm
from nmaccel.verilog import cosim_top, tools
from nmtest import random_epilogue, random_gemm

# one top with every mode (INT8, INT4, codebook); small so that build + PyRTL stay fast
PALL = TopConfig(array=ArrayConfig(rows=2, cols=2, n_max=4, m_max=4), t_max=4, k_tiles_max=4,
                 n_tiles_max=8, host_bits=32)
# host words wider than 64 bits: VlWide ports in the harness
PWIDE = TopConfig(array=ArrayConfig(rows=1, cols=4, n_max=2, m_max=2, modes=("int8",)), t_max=2,
                  k_tiles_max=4, n_tiles_max=4, host_bits=80)
CASES = [("int8", 4, 4, 8, "uniform"), ("int8", 2, 4, 8, "uniform"), ("int4", 2, 4, 4, "uniform"),
         ("int4", 1, 2, 4, "uniform"), ("codebook", 2, 4, 4, "lloyd-max")]


@pytest.mark.tools
@pytest.mark.parametrize("mode,nk,mg,bits,q", CASES)
def test_verilator_equals_golden_and_pyrtl(rng, mode, nk, mg, bits, q):
    """Per mode, epilogue off / on: Verilator outputs == golden, words == PyRTL and protocol
    twin, cycles == PyRTL cycles == nmaccel.golden.cycles."""
    packed, x = random_gemm(rng, nk, mg, bits, q, PALL)
    for ep in (None, random_epilogue(rng, packed.out_features)):
        rv = run_gemm(packed, x, PALL.array, top_cfg=PALL, epilogue=ep, backend="verilator")
        rp = run_gemm(packed, x, PALL.array, top_cfg=PALL, epilogue=ep, backend="pyrtl")
        np.testing.assert_array_equal(rv.outputs, reference(packed, x, ep))
        assert rv.mode == mode
        assert rv.out_words == rp.out_words == run_stream(PALL, encode_gemm(packed, x, PALL, ep).words)
        T, K = x.shape
        model = cm.cycles((T, K, packed.out_features), PALL.array, RuntimeConfig(mode, nk, mg), PALL)
        assert rv.cycles == rp.cycles == model


@pytest.mark.tools
def test_wide_host_words(rng):
    """80-bit host words (VlWide in_data / out_data): equals golden and the cycle model."""
    hi = []
    for nk, mg, with_ep in ((2, 2, False), (1, 2, True)):
        packed, x = random_gemm(rng, nk, mg, 8, "uniform", PWIDE, N=7)
        ep = random_epilogue(rng, packed.out_features) if with_ep else None
        rv = run_gemm(packed, x, PWIDE.array, top_cfg=PWIDE, epilogue=ep, backend="verilator")
        np.testing.assert_array_equal(rv.outputs, reference(packed, x, ep))
        words = encode_gemm(packed, x, PWIDE, ep).words
        assert rv.out_words == run_stream(PWIDE, words)
        assert rv.cycles == rv.model_cycles
        hi += [w >> 64 for w in list(words) + rv.out_words]
    assert any(hi)                       # the upper VlWide words carry data both ways


@pytest.mark.tools
def test_build_cache_hit_and_stall(rng):
    """Second model of the same top comes from the cache; a truncated stream stalls -> error."""
    first = cosim_top.TopVerilatorModel(PALL)
    again = cosim_top.TopVerilatorModel(PALL)
    assert again.cached and again.build_s == 0.0 and again.exe == first.exe
    packed, x = random_gemm(rng, 2, 4, 8, "uniform", PALL, T=3, K=8, N=2)
    prog = encode_gemm(packed, x, PALL)
    words, n_out = prog.words, prog.n_out_words
    assert n_out == sum(j.n_nt * j.n_steps for j in prog.jobs) * PALL.words("out")
    run = again.run(words, n_out, 10000)
    assert run.cycles_run >= run.cycles > 0 and len(run.out_words) == n_out
    with pytest.raises(NmaccelError, match="stalled"):
        again.run(words[:-3], n_out, 2000)
    with pytest.raises(NmaccelError, match=f"sent {n_out} output words, expected {n_out - 1}"):
        again.run(words, n_out - 1, 10000)


@pytest.fixture
def _no_tool(monkeypatch):
    """Pretend some programs are not installed (shutil.which lookups inside nmaccel.verilog.tools)."""
    real = tools.shutil.which

    def hide(*progs):
        monkeypatch.setattr(tools.shutil, "which", lambda p, *a, **k: None if p in progs else real(p))
        tools.find_verilator.cache_clear()
    yield hide
    tools.find_verilator.cache_clear()


def test_missing_verilator(_no_tool, monkeypatch):
    _no_tool("verilator")
    monkeypatch.setattr(tools.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ToolMissingError, match="verilator"):
        cosim_top.TopVerilatorModel(PALL)


def test_missing_cxx(_no_tool):
    _no_tool("g++")
    with pytest.raises(ToolMissingError, match="g\\+\\+"):
        cosim_top.TopVerilatorModel(PALL)
