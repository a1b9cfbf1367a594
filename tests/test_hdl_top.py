"""Accelerator top (nmaccel.hdl.top) through run_gemm: RTL == golden exactly, cycles == model."""
from dataclasses import replace

import numpy as np
import pyrtl
import pytest

from nmaccel.arch.config import ArrayConfig, TopConfig, window_groups
from nmaccel.errors import NmaccelError
from nmaccel.golden.epilogue import quantize_multiplier
from nmaccel.golden.top import run_stream
from nmaccel.hdl.top import make_top_ports, top_input_widths, top_output_widths
from nmaccel.pack import pack_weights
from nmaccel.program.encoder import EpilogueSpec, encode_gemm
from nmaccel.run.runner import reference, run_gemm
from nmtest import random_epilogue

P22 = TopConfig(array=ArrayConfig(rows=2, cols=2), t_max=8, k_tiles_max=4, n_tiles_max=8)
P32 = TopConfig(array=ArrayConfig(rows=3, cols=2, n_max=2, m_max=4, modes=("int8", "int4"),
                                  pipeline_mux=True, pipeline_product=True),
                t_max=4, k_tiles_max=8, n_tiles_max=8, host_bits=32)
P13 = TopConfig(array=ArrayConfig(rows=1, cols=3, n_max=2, m_max=4, modes=("int8",)),
                t_max=2, k_tiles_max=8, n_tiles_max=8, host_bits=16)
MODE_PACK = {"int8": (8, "uniform"), "int4": (4, "uniform"), "codebook": (4, "lloyd-max")}


def _nm_pairs(a):
    return [(n, m) for m in (2, 4, 8) for n in range(1, m + 1) if n <= a.n_max and m <= a.m_max]


def _check(p, packed, x, ep=None):
    res = run_gemm(packed, x, p.array, top_cfg=p, epilogue=ep)
    np.testing.assert_array_equal(res.outputs, reference(packed, x, ep))
    words = encode_gemm(packed, x, p, ep).words
    assert res.out_words == run_stream(p, words)          # RTL words == protocol twin's words
    assert res.cycles == res.model_cycles
    assert 0 < res.utilization <= 1
    return res


def _random_case(rng, p, mode, nk, mg, max_tokens=None):
    a = p.array
    win = window_groups(nk, mg, a.n_max, a.m_max) * mg
    K = int(rng.integers(1, p.k_tiles_max * a.rows * win + 1))
    N = int(rng.integers(1, 3 * a.cols + 2))
    T = int(rng.integers(1, (max_tokens or 2 * p.t_max) + 1))
    bits, q = MODE_PACK[mode]
    packed = pack_weights(rng.standard_normal((N, K)).astype(np.float32), n_keep=nk, m_group=mg,
                          bits=bits, quantizer=q)
    return packed, rng.integers(-128, 128, size=(T, K))


@pytest.mark.parametrize("mode", ["int8", "int4", "codebook"])
def test_every_nm_and_epilogue_2x2(rng, mode):
    for nk, mg in _nm_pairs(P22.array):
        for ep_on in (False, True):
            packed, x = _random_case(rng, P22, mode, nk, mg)
            _check(P22, packed, x, random_epilogue(rng, packed.out_features) if ep_on else None)


def test_pipelined_3x2_host32(rng):
    for mode in P32.array.modes:
        for nk, mg in _nm_pairs(P32.array):
            packed, x = _random_case(rng, P32, mode, nk, mg)
            _check(P32, packed, x, random_epilogue(rng, packed.out_features) if nk % 2 else None)


def test_single_row_host16_many_tiles(rng):
    for nk, mg in _nm_pairs(P13.array):
        packed, x = _random_case(rng, P13, "int8", nk, mg)
        _check(P13, packed, x, random_epilogue(rng, packed.out_features))


def test_token_tiles_and_full_capacity(rng):
    """T spanning several jobs; K and N_out at the buffer capacity; extreme activations."""
    a = P22.array
    for mode, (nk, mg) in (("int8", (4, 4)), ("int4", (2, 4)), ("codebook", (1, 2))):
        win = window_groups(nk, mg, a.n_max, a.m_max) * mg
        K, N = P22.k_tiles_max * a.rows * win, P22.n_tiles_max * a.cols
        bits, q = MODE_PACK[mode]
        packed = pack_weights(rng.standard_normal((N, K)).astype(np.float32), n_keep=nk,
                              m_group=mg, bits=bits, quantizer=q)
        x = rng.choice(np.array([-128, 127, -1, 0]), size=(3 * P22.t_max + 1, K))
        res = _check(P22, packed, x)
        assert res.utilization > 0.2


def test_smallest_jobs(rng):
    """T = K = N_out = 1 and other one-tile corners on every top."""
    for p in (P22, P32, P13):
        for T, K, N in ((1, 1, 1), (2, 1, p.array.cols), (p.t_max, 3, 1)):
            packed = pack_weights(rng.standard_normal((N, K)).astype(np.float32), n_keep=2,
                                  m_group=2, bits=8)
            _check(p, packed, rng.integers(-128, 128, size=(T, K)))


def test_single_register_path_and_overlap_gain(rng):
    """TopConfig(double_buffer=False) keeps the single-weight-register array (weights shift in
    after the previous tile drained); the default double-buffered top is exact too and faster
    on every multi-tile job (same outputs, same words)."""
    for p in (P22, P32):
        single = replace(p, double_buffer=False)
        assert p.core_array.double_buffer and not single.core_array.double_buffer
        for mode, nk, mg in (("int8", 2, 2), (p.array.modes[-1], 1, 2)):
            packed, x = _random_case(rng, p, mode, nk, mg)
            ep = random_epilogue(rng, packed.out_features)
            r1, r2 = _check(single, packed, x, ep), _check(p, packed, x, ep)
            assert r1.out_words == r2.out_words
            assert r2.cycles <= r1.cycles
        K = p.k_tiles_max * p.array.rows * window_groups(2, 2, p.array.n_max, p.array.m_max) * 2
        big = pack_weights(rng.standard_normal((3 * p.array.cols, K)).astype(np.float32),
                           n_keep=2, m_group=2, bits=8)
        x = rng.integers(-128, 128, size=(p.t_max, K))
        r1, r2 = _check(single, big, x), _check(p, big, x)
        assert r2.cycles < r1.cycles


@pytest.mark.parametrize("db", [True, False])
def test_one_pe_one_word_output_records(rng, db):
    """1x1 array: output records narrower than a host word, tiles of one or two steps back to
    back (the accumulator read of a tile follows the previous tile's write)."""
    p = TopConfig(array=ArrayConfig(rows=1, cols=1, n_max=2, m_max=2, modes=("int8",)), t_max=2,
                  k_tiles_max=6, n_tiles_max=4, double_buffer=db)
    assert p.words("out") == 1
    for T, K, N in ((1, 9, 3), (2, 12, 4), (3, 5, 2), (1, 1, 1)):
        packed = pack_weights(rng.standard_normal((N, K)).astype(np.float32), n_keep=2, m_group=2,
                              bits=8)
        _check(p, packed, rng.integers(-128, 128, size=(T, K)), random_epilogue(rng, N) if T == 2 else None)


def test_raw_bias_relu_and_saturation(rng):
    packed, x = _random_case(rng, P22, "int8", 4, 4)
    n = packed.out_features
    _check(P22, packed, x, EpilogueSpec(bias=rng.integers(-2**31, 2**31, n), relu=True))
    # tiny shifts: INT8 saturation on both sides
    _check(P22, packed, x, EpilogueSpec(np.full(n, 1 << 14), np.zeros(n, dtype=np.int64)))
    _check(P22, packed, x, EpilogueSpec(np.full(n, (1 << 15) - 1), np.full(n, 62), relu=False))


PM = TopConfig(array=ArrayConfig(rows=2, cols=2), t_max=16, k_tiles_max=48, n_tiles_max=4)


def test_real_minilm_layer_real_activations():
    """MiniLM layer 0 FFN-in (K = 384) on activations captured from a MiniLM forward pass."""
    from nmaccel.models.bert import MiniLM
    model, tok = MiniLM.builtin()
    name = "encoder.layer.0.intermediate.dense.weight"
    x_f = model.collect_inputs([tok.encode("the accelerator streams packed weights")], [name])[name]
    w = model.weights[name][:6]
    bias = model.weights["encoder.layer.0.intermediate.dense.bias"][:6]
    x_scale = float(np.abs(x_f).max() / 127)
    x_q = np.clip(np.round(x_f / x_scale), -128, 127).astype(np.int64)
    for nk, mg, bits, q in ((2, 4, 4, "uniform"), (4, 4, 8, "uniform"), (2, 4, 4, "lloyd-max")):
        packed = pack_weights(w, n_keep=nk, m_group=mg, bits=bits, quantizer=q)
        s = np.broadcast_to(np.asarray(packed.scales, dtype=np.float64)[:, 0], (6,))
        y_scale = 0.05
        mult, shift = quantize_multiplier(s * x_scale / y_scale)
        b = np.round(bias / (s * x_scale)).astype(np.int64)
        res = _check(PM, packed, x_q, EpilogueSpec(mult, shift, b))
        # the INT8 result tracks the float layer on the same quantized inputs (bias rounding,
        # multiplier rounding and output rounding: within 1 LSB)
        ref = (x_q * x_scale @ packed.dequantize().T.astype(np.float64) + bias) / y_scale
        assert np.abs(res.outputs - np.clip(np.round(ref), -128, 127)).max() <= 1
        assert len(np.unique(res.outputs)) > 20


def test_bad_input_raises_before_simulation(rng):
    a = P22.array
    packed, x = _random_case(rng, P22, "int8", 4, 4)
    too_wide = pack_weights(rng.standard_normal((2, P22.k_max + 1)).astype(np.float32),
                            n_keep=4, m_group=4, bits=8)
    with pytest.raises(NmaccelError, match="k_tiles_max"):
        run_gemm(too_wide, rng.integers(-128, 128, (2, too_wide.in_features)), a, top_cfg=P22)
    too_tall = pack_weights(rng.standard_normal((P22.n_tiles_max * a.cols + 1, 4)).astype(np.float32),
                            n_keep=4, m_group=4, bits=8)
    with pytest.raises(NmaccelError, match="n_tiles_max"):
        run_gemm(too_tall, rng.integers(-128, 128, (2, 4)), a, top_cfg=P22)
    with pytest.raises(NmaccelError, match="K="):
        run_gemm(packed, x[:, :-1] if x.shape[1] > 1 else np.zeros((2, 2), int), a, top_cfg=P22)
    with pytest.raises(NmaccelError, match="mode"):      # INT4 weights on an INT8-only array
        p4, x4 = _random_case(rng, P22, "int4", 2, 4)
        run_gemm(p4, x4, P13.array, top_cfg=P13)
    with pytest.raises(NmaccelError, match="m_group"):
        p8 = pack_weights(rng.standard_normal((2, 16)).astype(np.float32), n_keep=2, m_group=8, bits=8)
        run_gemm(p8, rng.integers(-128, 128, (2, 16)), P13.array, top_cfg=P13)
    n = packed.out_features
    for ep, what in ((EpilogueSpec(np.full(n, 1 << 15), np.zeros(n, int)), "mult"),
                     (EpilogueSpec(np.full(n, 3), np.full(n, 63)), "shift"),
                     (EpilogueSpec(bias=np.full(n, 1 << 31)), "bias"),
                     (EpilogueSpec(np.ones(n + 1, int), np.ones(n + 1, int)), "channels"),
                     (EpilogueSpec(np.full(n, 0.5), np.zeros(n, int)), "integers")):
        with pytest.raises(NmaccelError, match=what):
            run_gemm(packed, x, a, top_cfg=P22, epilogue=ep)
    with pytest.raises(NmaccelError, match="backend"):
        run_gemm(packed, x, a, top_cfg=P22, backend="fpga")
    with pytest.raises(NmaccelError, match="differs"):
        run_gemm(packed, x, P32.array, top_cfg=P22)
    with pytest.raises(NmaccelError, match="INT8"):
        run_gemm(packed, np.full_like(x, 200), a, top_cfg=P22)
    with pytest.raises(NmaccelError, match="raw_bits"):
        TopConfig(array=a, k_tiles_max=1 << 20)
    with pytest.raises(NmaccelError, match="t_max"):
        TopConfig(array=a, t_max=1)
    words = encode_gemm(packed, x, P22).words
    with pytest.raises(NmaccelError, match="truncated"):
        run_stream(P22, words[:-1])
    with pytest.raises(NmaccelError, match="mode code 3"):
        run_stream(P22, [words[0] | 3] + list(words[1:]))


def test_narrow_ports_fit_ecp5_pins():
    """Only the host stream reaches pins: 2 * host_bits + 5 IOs (+ clock and reset), inside the 205 user
    IOs of the ECP5-85k CABGA381 (nmaccel.verilog.synth.PINS)."""
    p = TopConfig(array=ArrayConfig(rows=8, cols=8), host_bits=64)
    n_io = sum(top_input_widths(p).values()) + sum(top_output_widths(p).values())
    assert n_io == 2 * 64 + 5 and n_io + 2 <= 205
    pyrtl.reset_working_block()
    make_top_ports(P13)
    blk = pyrtl.working_block()
    ports = {w.name: w.bitwidth for w in blk.wirevector_subset((pyrtl.Input, pyrtl.Output))}
    assert ports == {**top_input_widths(P13), **top_output_widths(P13)}
    assert "clk" not in ports and "rst" not in ports


PGS = TopConfig(array=ArrayConfig(rows=2, cols=2), t_max=8, k_tiles_max=8, n_tiles_max=8,
                group_scales=True, raw_bits=48)


def _spreadrandom_epilogue(rng, acc):
    """Multipliers that map the accumulator range onto about +-150 (some saturate)."""
    top = max(1, int(np.abs(acc).max()))
    mult, shift = quantize_multiplier(np.full(acc.shape[1], 150.0 / top))
    return EpilogueSpec(mult, shift, rng.integers(-20, 20, acc.shape[1]), bool(rng.integers(2)))


@pytest.mark.parametrize("mode", ["int8", "int4", "codebook"])
def test_group_scales_exact(rng, mode):
    bits, q = MODE_PACK[mode]
    for nk, mg, gsize in ((4, 4, 8), (2, 4, 16), (1, 4, 32), (2, 4, 48)):
        K = int(rng.integers(17, PGS.k_tiles_max * 8 + 1)) if nk == 4 else int(rng.integers(33, 120))
        N = int(rng.integers(1, 7))
        # column magnitudes spread over several binades: group multipliers differ a lot
        w = (rng.standard_normal((N, K)) * np.exp2(rng.integers(-6, 2, (1, K)))).astype(np.float32)
        packed = pack_weights(w, n_keep=nk, m_group=mg, bits=bits, quantizer=q, group_size=gsize)
        x = rng.integers(-128, 128, size=(int(rng.integers(1, 20)), K))
        raw = _check_gs(packed, x, None)
        _check_gs(packed, x, _spreadrandom_epilogue(rng, raw))


def _check_gs(packed, x, ep):
    res = run_gemm(packed, x, PGS.array, top_cfg=PGS, epilogue=ep)
    ref = reference(packed, x, ep, group_scales=True)
    np.testing.assert_array_equal(res.outputs, ref)
    words = encode_gemm(packed, x, PGS, ep).words
    assert res.out_words == run_stream(PGS, words)
    assert res.cycles == res.model_cycles
    return ref


def test_group_scale_top_runs_plain_weights_and_errors(rng):
    packed = pack_weights(rng.standard_normal((3, 30)).astype(np.float32), n_keep=2, m_group=4, bits=4)
    x = rng.integers(-128, 128, size=(5, 30))
    res = run_gemm(packed, x, PGS.array, top_cfg=PGS)             # per-channel: multiplier 1
    np.testing.assert_array_equal(res.outputs, reference(packed, x))
    assert res.cycles == res.model_cycles
    grouped = pack_weights(rng.standard_normal((3, 40)).astype(np.float32), n_keep=2, m_group=4,
                           bits=4, group_size=8)
    with pytest.raises(NmaccelError, match="split a K tile"):     # 2:4 tile K = 2 rows x 8
        run_gemm(grouped, rng.integers(-128, 128, (2, 40)), PGS.array, top_cfg=PGS)
    with pytest.raises(NmaccelError, match="group_scales=True"):
        run_gemm(grouped, rng.integers(-128, 128, (2, 40)), P22.array, top_cfg=P22,
                 group_scales=True)
    with pytest.raises(NmaccelError, match="granularity"):
        run_gemm(packed, x, PGS.array, top_cfg=PGS, group_scales=True)
    with pytest.raises(NmaccelError, match="raw_bits"):
        TopConfig(array=PGS.array, group_scales=True)             # 32-bit raw cannot hold sums


@pytest.mark.tools
def test_buffers_map_to_block_ram(tmp_path):
    """Activation, accumulator and output buffers become DP16KD on ECP5 (registered read data);
    only the few-row weight staging buffer stays in LUT RAM."""
    from nmaccel.verilog.export import export_verilog
    from nmaccel.verilog.synth import synthesize
    p = TopConfig(array=ArrayConfig(rows=1, cols=2, n_max=2, m_max=2, modes=("int8",)), t_max=512,
                  k_tiles_max=4, n_tiles_max=4, host_bits=16)
    pyrtl.reset_working_block()
    make_top_ports(p)
    path = tmp_path / "top.v"
    export_verilog(path, module_name="nmaccel_top")
    rep = synthesize(path, "nmaccel_top", "ecp5")
    assert rep["bram"] >= 3
    # an asynchronous-read 2048 x 16 activation buffer alone would need 512 DPR16X4
    assert rep["lutram"] <= 16


PDENSE = TopConfig(array=ArrayConfig(rows=2, cols=2, n_max=2, m_max=2, modes=("int8",), decoder=False,
                                     pipeline_mux=True, pipeline_sum=True),
                   t_max=4, k_tiles_max=4, n_tiles_max=8, host_bits=32)


def test_dense_top_without_decoders(rng):
    """decoder=False: no index muxes (none in the netlist), dense runs exact, N:M refused."""
    for nk in (1, 2):
        packed, x = _random_case(rng, PDENSE, "int8", nk, nk)
        _check(PDENSE, packed, x, random_epilogue(rng, packed.out_features))
    packed, x = _random_case(rng, PDENSE, "int8", 1, 2)
    with pytest.raises(NmaccelError, match="decoder=False"):
        run_gemm(packed, x, PDENSE.array, top_cfg=PDENSE)
    with pytest.raises(NmaccelError, match="n_max == m_max"):
        ArrayConfig(n_max=2, m_max=4, decoder=False)
    pyrtl.reset_working_block()
    make_top_ports(PDENSE)
    assert not any(".dec.lane" in (w.name or "") for w in pyrtl.working_block().wirevector_set)


def test_product_tops_fit_ecp5_85k_and_oversize_is_refused():
    from nmaccel.verilog import synth
    from nmaccel.arch.config import DENSE_ARRAY, PRODUCT_ARRAY, PRODUCT_TOP
    for a in (PRODUCT_ARRAY, DENSE_ARRAY):
        est = synth.check_fit(TopConfig(array=a, **PRODUCT_TOP))
        assert all(u <= c for u, c in est.values()) and est["io"][1] == 205
    assert synth.fit_estimate(TopConfig(array=PRODUCT_ARRAY, **PRODUCT_TOP))["dsp"][0] == 112    # measured: 112
    big = TopConfig(array=ArrayConfig(rows=8, cols=8), host_bits=128)
    with pytest.raises(NmaccelError, match=r"dsp 288/156 .*fewer rows.*io 263/205.*host_bits"):
        synth.check_fit(big)


def test_cli_top_defaults_to_the_product_top():
    from nmaccel.arch.config import PRODUCT_ARRAY, PRODUCT_TOP
    from nmaccel.verilog.export import top_config
    p = top_config({}, {})
    assert p.array == PRODUCT_ARRAY and p.host_bits == PRODUCT_TOP["host_bits"]
    q = top_config({"host_bits": 32}, {"rows": 2, "cols": 2})
    assert (q.array.rows, q.array.cols, q.host_bits, q.t_max) == (2, 2, 32, PRODUCT_TOP["t_max"])
