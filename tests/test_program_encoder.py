"""nmaccel.program.encoder: the one host-stream encoder, checked word for word against an
independent record-by-record oracle (the pre-refactor scalar encoder, Python ints, kept here only
as a test oracle) for every host width (16, 32, 64, 80, 128 bits), every mode, epilogue on / off,
several jobs, and group-scale tops; decode_outputs inverts the output records."""
import numpy as np
import pytest

from nmaccel.arch.config import MODES, ArrayConfig, TopConfig
from nmaccel.golden import array as ga
from nmaccel.golden import cyclemodel as cm
from nmaccel.golden.gemm import check_activations
from nmaccel.golden.top import run_stream
from nmaccel.program.encoder import _WholeArray, decode_outputs, encode_gemm, epilogue_params, group_layout
from nmaccel.run.runner import reference
from nmtest import random_epilogue, random_gemm

CASES = [("int8", 4, 4, 8, "uniform"), ("int8", 2, 4, 8, "uniform"), ("int4", 2, 4, 4, "uniform"),
         ("int4", 1, 2, 4, "uniform"), ("codebook", 2, 4, 4, "lloyd-max")]
TOPS = [TopConfig(array=ArrayConfig(rows=2, cols=2, n_max=4, m_max=4, modes=MODES), t_max=4,
                  k_tiles_max=4, n_tiles_max=8, host_bits=h) for h in (16, 32, 64, 80, 128)]
TOPS.append(TopConfig(array=ArrayConfig(rows=3, cols=2, n_max=2, m_max=8), t_max=3, k_tiles_max=6,
                      n_tiles_max=6, host_bits=16))
PGS = [TopConfig(array=ArrayConfig(rows=2, cols=2), t_max=8, k_tiles_max=8, n_tiles_max=8,
                 group_scales=True, raw_bits=48, host_bits=h) for h in (64, 96)]


def _split(value, bits, h):
    return [(value >> (h * i)) & ((1 << h) - 1) for i in range(-(-bits // h))]


def _pack(fields, width):
    v = 0
    for i, f in enumerate(np.asarray(fields).ravel()):
        v |= (int(f) & ((1 << width) - 1)) << (width * i)
    return v


def oracle_encode(packed, x_q, p, epilogue=None, group_scales=None):
    """Record by record with Python ints, field positions from the protocol description."""
    a, H = p.array, p.host_bits
    x = check_activations(x_q, packed.in_features, a.act_bits)
    mode = ga.tile_mode(packed)
    T, N = x.shape[0], packed.out_features
    jobs = cm.job_shapes((T, packed.in_features, N), p, mode, packed.n_keep, packed.m_group)
    n_kt, n_nt = jobs[0].n_kt, jobs[0].n_nt
    R, C = a.rows, a.cols
    whole = _WholeArray(a, n_kt * R, n_nt * C)
    plan = ga.load_plan(packed, whole, mode)
    mult, shift, bias, relu, raw = epilogue_params(epilogue, N, p)
    gk, gmult = group_layout(packed, p, mode, group_scales)
    wb, ib, cbk = a.weight_bits, a.idx_bits, mode == "codebook"
    lane = ((plan.codes & ((1 << wb) - 1)) | (plan.index << wb) | (plan.keep.astype(np.int64) << (wb + ib)))
    body = []
    for nt in range(n_nt):
        for kt in range(n_kt):
            for i in range(R):
                r, v = kt * R + R - 1 - i, 0
                for c in range(C):
                    v |= _pack(lane[r, nt * C + c], a.lane_load_bits) << (c * a.w_bits)
                    if cbk:
                        v |= _pack(plan.tables[r, nt * C + c], wb) << (C * a.w_bits + c * a.cb_bits_total)
                body += _split(v, p.w_rec_bits + (p.cb_rec_bits if cbk else 0), H)
            if gk is not None and ((kt + 1) % gk == 0 or kt == n_kt - 1):
                g, v = min(kt // gk, gmult.shape[1] - 1), 0
                for c in range(C):
                    if nt * C + c < N:
                        v |= int(gmult[nt * C + c, g]) << (c * p.gs_mult_bits)
                body += _split(v, C * p.gs_mult_bits, H)
        v = 0
        for c in range(C):
            o = nt * C + c
            if o < N:
                col = (int(mult[o]) | (int(shift[o]) << p.mult_bits)
                       | ((int(bias[o]) & ((1 << p.bias_bits) - 1)) << (p.mult_bits + p.shift_bits)))
                v |= col << (c * p.ep_col_bits)
        body += _split(v, p.ep_rec_bits, H)
    words, tps, t0 = [], 2 if mode == "int4" else 1, 0
    for job in jobs:
        tok = min(job.n_steps * tps, T - t0)
        hdr = {"mode": MODES.index(mode), "n_keep": packed.n_keep, "m_group": packed.m_group,
               "relu": int(relu), "raw": int(raw), "n_steps": job.n_steps, "n_kt": n_kt, "n_nt": n_nt,
               "kt_per_group": gk or 0}
        hv, pos = 0, 0
        for k, w in p.hdr_fields:
            hv |= hdr[k] << pos
            pos += w
        words += _split(hv, p.hdr_bits, H)
        xs = ga.activation_steps(plan, x[t0:t0 + tok], whole)
        for kt in range(n_kt):
            for s in range(job.n_steps):
                v = _pack(xs[s, kt * R:(kt + 1) * R, 0], a.act_bits)
                if tps == 2:
                    v |= _pack(xs[s, kt * R:(kt + 1) * R, 1], a.act_bits) << p.act_tok_bits
                words += _split(v, p.act_tok_bits * tps, H)
        words += body
        t0 += tok
    return words, jobs, mode


@pytest.mark.parametrize("p", TOPS, ids=lambda p: f"{p.array.rows}x{p.array.cols}h{p.host_bits}")
def test_encoder_equals_oracle_every_host_width(p):
    rng = np.random.default_rng(p.host_bits + 7 * p.array.rows)
    for mode, nk, mg, bits, q in CASES:
        if nk > p.array.n_max or mode not in p.array.modes:
            continue
        packed, x = random_gemm(rng, nk, mg, bits, q, p)
        for ep in (None, random_epilogue(rng, packed.out_features)):
            prog = encode_gemm(packed, x, p, ep)
            got, jobs, m = prog.words, list(prog.jobs), prog.mode
            want, jobs2, m2 = oracle_encode(packed, x, p, ep)
            assert m == m2 == mode and jobs == jobs2
            assert got.dtype == (np.uint64 if p.host_bits <= 64 else object)
            assert [int(w) for w in got] == want
            out = run_stream(p, got)
            T = x.shape[0]
            np.testing.assert_array_equal(decode_outputs(out, jobs, p, m, T, packed.out_features),
                                          reference(packed, x, ep))
            np.testing.assert_array_equal(prog.decode(out), reference(packed, x, ep))
            assert len(out) == prog.n_out_words


@pytest.mark.parametrize("p", PGS, ids=lambda p: f"gs-h{p.host_bits}")
def test_encoder_equals_oracle_group_scales(p):
    rng = np.random.default_rng(p.host_bits)
    for mode, nk, mg, bits, q in CASES:
        for gsize in (16, 48):
            packed, x = random_gemm(rng, nk, mg, bits, q, p, group_size=gsize)
            for ep in (None, random_epilogue(rng, packed.out_features)):
                prog = encode_gemm(packed, x, p, ep)
                got, jobs, m = prog.words, list(prog.jobs), prog.mode
                want, jobs2, _ = oracle_encode(packed, x, p, ep)
                assert jobs == jobs2 and [int(w) for w in got] == want
                out = run_stream(p, got)
                np.testing.assert_array_equal(
                    decode_outputs(out, jobs, p, m, x.shape[0], packed.out_features),
                    reference(packed, x, ep, group_scales=True))


def test_decode_outputs_rejects_extra_words():
    p = TOPS[2]
    rng = np.random.default_rng(3)
    packed, x = random_gemm(rng, 2, 4, 8, "uniform", p)
    prog = encode_gemm(packed, x, p)
    words, jobs, m = prog.words, prog.jobs, prog.mode
    out = run_stream(p, words)
    with pytest.raises(Exception, match="unexpected output words"):
        decode_outputs(out + [0], jobs, p, m, x.shape[0], packed.out_features)
