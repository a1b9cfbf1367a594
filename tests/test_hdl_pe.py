"""PE and codebook decoder: RTL vs golden twins (nmaccel.golden.pe, nmaccel.golden.codebook), bit for bit."""
import numpy as np
import pyrtl
import pytest

from nmaccel.golden import codebook as gcb
from nmaccel.golden import pe as gpe
from nmaccel.golden.intops import wrap
from nmaccel.arch import layout
from nmaccel.arch.config import ArrayConfig
from nmaccel.hdl.codebook import make_codebook_decoder
from nmaccel.hdl.pe import lane_store_bits, make_pe_top
from nmtest import pack_fields, step_ports


def test_int4_packing_exhaustive():
    """Token-packed INT4 product extraction equals both exact products for every operand."""
    cfg = ArrayConfig(rows=1, cols=1)
    w = np.arange(-8, 8)[:, None, None]
    a = np.arange(-128, 128)
    lo, hi = gpe.pe_products(cfg, w, a[None, :, None], a[None, None, :], int4=True)
    np.testing.assert_array_equal(lo, np.broadcast_to(w * a[None, :, None], lo.shape))
    np.testing.assert_array_equal(hi, np.broadcast_to(w * a[None, None, :], hi.shape))
    # INT8 mode: one exact INT8 x INT8 product
    w8 = np.arange(-128, 128)[:, None]
    lo8, hi8 = gpe.pe_products(cfg, w8, a[None, :], None, int4=False)
    np.testing.assert_array_equal(lo8, w8 * a[None, :])
    assert not hi8.any()


def test_int4_packing_widths_are_minimal():
    """S = 12 and a 21-bit operand are needed: one bit less gives a wrong product."""
    class P:
        act_bits = 8

    def run(S, operand_bits, a_lo, a_hi):
        P.pack_shift, P.operand_bits, P.mult_bits = S, operand_bits, 8 + operand_bits
        return gpe.pe_products(P, np.array([-8]), np.array([a_lo]), np.array([a_hi]), int4=True)

    assert run(11, 20, -128, 0)[0][0] != 1024            # low field collides
    assert run(12, 20, -128, -128)[1][0] != 1024         # packed operand overflows
    lo, hi = run(12, 21, -128, -128)
    assert (lo[0], hi[0]) == (1024, 1024)
    assert ArrayConfig(rows=1, cols=1).operand_bits == 21


@pytest.mark.parametrize("n_max,m_max,int4_build,pipe", [
    (1, 2, True, (False, False)), (2, 4, True, (True, False)), (4, 8, True, (False, True)),
    (4, 8, False, (True, True)), (3, 6, True, (False, False))])
def test_pe_matches_golden(rng, n_max, m_max, int4_build, pipe):
    modes = ("int8", "int4", "codebook") if int4_build else ("int8",)
    cfg = ArrayConfig(rows=1, cols=1, n_max=n_max, m_max=m_max, modes=modes,
                      pipeline_mux=pipe[0], pipeline_product=pipe[1])
    make_pe_top(cfg)
    sim = pyrtl.FastSimulation()
    tok = cfg.tokens_per_step
    for int4 in ([False, True] if int4_build else [False]):
        for dense in (False, True):
            lo, hi = (-8, 7) if int4 else (-128, 127)
            edge = np.array([lo, hi, -1, 0, 1])
            w = rng.choice(edge, n_max) if rng.random() < 0.5 else rng.integers(lo, hi + 1, n_max)
            idx = rng.integers(0, m_max, n_max)
            if rng.random() < 0.3:
                idx[:] = idx[0]                       # all indices equal
            word = layout.pe_store_layout(cfg).encode(lane={"weight": w, "index": idx})
            assert word == pack_fields([(int(w[i]) & 0xFF) | (int(idx[i]) << 8) for i in range(n_max)],
                                       lane_store_bits(cfg))      # known answer: weight | index
            base = {"int4": int(int4), "dense": int(dense), "x_in": 0, "w_load": 1, "w_in": word}
            base.update({f"psum_in_{t}": 0 for t in range(tok)})
            step_ports(sim, base)
            steps = 12
            x = rng.integers(-128, 128, size=(steps, tok, m_max))
            x[0] = -128
            x[1] = 127
            x[2] = 0                                  # all-zero group
            ps = rng.integers(-(1 << 20), 1 << 20, size=(steps, tok))
            got = []
            for s in range(steps + cfg.pipeline_stages + 1):
                k = min(s, steps - 1)
                xin = pack_fields(x[k].T.reshape(-1), 8)   # element-major, token A lowest
                lag = max(0, s - cfg.pipeline_stages)
                ins = dict(base, w_load=0, x_in=xin)
                ins.update({f"psum_in_{t}": ps[min(lag, steps - 1), t] for t in range(tok)})
                step_ports(sim, ins)
                got.append([sim.inspect(f"psum_out_{t}") for t in range(tok)])
                if s < steps:
                    assert sim.inspect("x_out") == (0 if s == 0 else pack_fields(x[s - 1].T.reshape(-1), 8))
            got = wrap(np.array(got[cfg.pipeline_stages + 1:], dtype=np.int64), cfg.acc_bits)
            want = gpe.pe_step(cfg, w, idx, x, ps, int4, dense)
            np.testing.assert_array_equal(got, want)


def test_codebook_decoder_matches_golden(rng):
    cfg = ArrayConfig(rows=1, cols=1)
    load = pyrtl.Input(1, "load")
    data = pyrtl.Input(cfg.cb_bits_total, "data")
    codes = [pyrtl.Input(cfg.weight_bits, f"code{i}") for i in range(3)]
    dec = make_codebook_decoder("cb", cfg, load, data, codes)
    for i, v in enumerate(dec.values):
        o = pyrtl.Output(cfg.weight_bits, f"val{i}")
        o <<= v
    sim = pyrtl.Simulation()
    tables = [rng.integers(-128, 128, cfg.cb_entries) for _ in range(3)]
    tables[0][:2] = [-128, 127]
    for ti, tab in enumerate(tables):
        for step in range(4):
            cs = rng.integers(0, cfg.cb_entries, 3) if step else np.array([0, 1, cfg.cb_entries - 1])
            sim.step({"load": int(step == 0), "data": pack_fields(tab, 8),
                      **{f"code{i}": int(c) for i, c in enumerate(cs)}})
            got = wrap(np.array([sim.inspect(f"val{i}") for i in range(3)]), 8)
            np.testing.assert_array_equal(got, gcb.codebook_decode(tab, cs, cfg.codebook_bits))


@pytest.mark.parametrize("dsp_width,b_bits", [(18, 21), (12, 21), (27, 21), (18, 18), (9, 12)])
def test_smul_dsp_split_is_exact(rng, dsp_width, b_bits):
    """The DSP-sized split multiplier equals the signed product for every w and edge b values."""
    from nmaccel.hdl.signed import smul_dsp
    w = pyrtl.Input(8, "w")
    b = pyrtl.Input(b_bits, "b")
    p = pyrtl.Output(8 + b_bits, "p")
    p <<= smul_dsp(w, b, dsp_width, "m")
    sim = pyrtl.FastSimulation()
    lo, hi = -(1 << (b_bits - 1)), (1 << (b_bits - 1)) - 1
    bs = np.concatenate([[lo, lo + 1, -1, 0, 1, hi - 1, hi, (1 << (dsp_width - 1)) - 1, -(1 << (dsp_width - 1))],
                         rng.integers(lo, hi + 1, 23)])
    bs = bs[(bs >= lo) & (bs <= hi)]
    ws = np.arange(-128, 128)
    for bv in bs:
        sim.step_multiple({"w": [int(v) & 0xFF for v in ws], "b": [int(bv) & ((1 << b_bits) - 1)] * len(ws)})
        got = wrap(np.array(sim.tracer.trace["p"][-len(ws):], dtype=object).astype(np.int64), 8 + b_bits)
        np.testing.assert_array_equal(got, ws * int(bv))
