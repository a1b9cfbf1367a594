"""Fused epilogue RTL == nmaccel.golden.epilogue, bit-exact, on seeded sweeps and edge values."""

import numpy as np
import pyrtl
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.golden.epilogue import epilogue, quantize_multiplier
from nmaccel.arch.config import EPILOGUE_LATENCY, EpilogueConfig
from nmaccel.hdl.epilogue import make_epilogue
from nmtest import step_ports

LANES = 4
CONFIGS = {
    "int32_acc": EpilogueConfig(),
    "narrow": EpilogueConfig(acc_bits=12, mult_bits=6, bias_bits=10, max_shift=20, out_bits=4,
                             raw_bits=16),
}


def _build(cfg):
    for lane in range(LANES):
        ins = {k: pyrtl.Input(w, f"{k}_{lane}") for k, w in
               [("acc", cfg.acc_bits), ("mult", cfg.mult_bits), ("shift", cfg.shift_bits),
                ("bias", cfg.bias_bits), ("relu", 1), ("out_mode", 1), ("valid", 1)]}
        ep = make_epilogue(f"ep{lane}", cfg, **ins)
        assert ep.latency == EPILOGUE_LATENCY
        o = pyrtl.Output(cfg.raw_bits, f"out_{lane}")
        o <<= ep.out
        v = pyrtl.Output(1, f"out_valid_{lane}")
        v <<= ep.out_valid


def _golden(cfg, acc, mult, shift, bias, relu, raw):
    out = np.zeros(len(acc), dtype=np.int64)
    for r in (False, True):
        for m in (0, 1):
            sel = (relu == r) & (raw == m)
            if not sel.any():
                continue
            if m:
                out[sel] = epilogue(acc[sel], None, None, bias[sel], r, cfg.raw_bits)
            else:
                out[sel] = epilogue(acc[sel], mult[sel], shift[sel], bias[sel], r, cfg.out_bits)
    return out


def _run(cfg, acc, mult, shift, bias, relu, raw, valid, simulator="fast"):
    """Stream the samples through LANES epilogues; return (outputs, out_valids) per sample."""
    _build(cfg)
    n = len(acc)
    steps = -(-n // LANES)
    pad = steps * LANES - n

    def lanes(a):
        return np.concatenate([np.asarray(a, dtype=np.int64), np.zeros(pad, np.int64)]) \
            .reshape(steps, LANES)
    cols = {k: lanes(v) for k, v in dict(acc=acc, mult=mult, shift=shift, bias=bias, relu=relu,
                                         out_mode=raw, valid=valid).items()}
    if simulator == "compiled":   # what nmaccel.run.sim uses: optimized netlist, C kernel
        pyrtl.optimize()
        sim = pyrtl.CompiledSimulation()
    else:
        sim = pyrtl.FastSimulation()
    got = np.zeros((steps, LANES), dtype=np.int64)
    got_v = np.zeros((steps, LANES), dtype=np.int64)
    for i in range(steps + EPILOGUE_LATENCY):
        j = min(i, steps - 1)
        step_ports(sim, {f"{k}_{lane}": cols[k][j, lane] for k in cols for lane in range(LANES)})
        if i >= EPILOGUE_LATENCY:
            for lane in range(LANES):
                got[i - EPILOGUE_LATENCY, lane] = pyrtl.val_to_signed_integer(
                    sim.inspect(f"out_{lane}"), cfg.raw_bits)
                got_v[i - EPILOGUE_LATENCY, lane] = sim.inspect(f"out_valid_{lane}")
    return got.reshape(-1)[:n], got_v.reshape(-1)[:n]


def _random_samples(cfg, rng, n):
    a_lo, a_hi = -(1 << (cfg.acc_bits - 1)), 1 << (cfg.acc_bits - 1)
    b_lo, b_hi = -(1 << (cfg.bias_bits - 1)), 1 << (cfg.bias_bits - 1)
    # mix full-range and small accumulators so both saturation and in-range results occur
    acc = np.where(rng.random(n) < 0.5, rng.integers(a_lo, a_hi, n),
                   rng.integers(-(1 << 12), 1 << 12, n).clip(a_lo, a_hi - 1))
    bias = np.where(rng.random(n) < 0.3, rng.integers(b_lo, b_hi, n),
                    rng.integers(-64, 64, n).clip(b_lo, b_hi - 1))
    mult = rng.integers(0, 1 << (cfg.mult_bits - 1), n)
    shift = rng.integers(0, cfg.max_shift + 1, n)
    return dict(acc=acc, mult=mult, shift=shift, bias=bias, relu=rng.integers(0, 2, n),
                raw=rng.integers(0, 2, n), valid=rng.integers(0, 2, n))


@pytest.mark.parametrize("cfg_name,seed,simulator", [("int32_acc", 0, "fast"),
                                                     ("int32_acc", 1, "compiled"),
                                                     ("narrow", 2, "fast")])
def test_random_sweep_bit_exact(cfg_name, seed, simulator):
    cfg = CONFIGS[cfg_name]
    s = _random_samples(cfg, np.random.default_rng(seed), 600)
    got, got_v = _run(cfg, **s, simulator=simulator)
    np.testing.assert_array_equal(got, _golden(cfg, s["acc"], s["mult"], s["shift"], s["bias"],
                                               s["relu"].astype(bool), s["raw"]))
    np.testing.assert_array_equal(got_v, s["valid"])
    # the sweep reached every output class
    assert (got == (1 << (cfg.out_bits - 1)) - 1).any() and (got == -(1 << (cfg.out_bits - 1))).any()
    assert (got == 0).any() and ((np.abs(got) > 0) & (np.abs(got) < (1 << (cfg.out_bits - 2)))).any()


def _edge_samples(cfg):
    A = cfg.acc_bits
    rows = []
    amin, amax = -(1 << (A - 1)), (1 << (A - 1)) - 1
    bmin, bmax = -(1 << (cfg.bias_bits - 1)), (1 << (cfg.bias_bits - 1)) - 1
    mmax = (1 << (cfg.mult_bits - 1)) - 1
    shifts = sorted({0, 1, 2, cfg.max_shift - 1, cfg.max_shift, (1 << cfg.shift_bits) - 1,
                     cfg.product_bits - 1, cfg.product_bits, cfg.product_bits + 1} &
                    set(range(1 << cfg.shift_bits)))
    for acc in (amin, amin + 1, -1, 0, 1, amax - 1, amax):
        for bias in (bmin, 0, bmax):
            for mult in (0, 1, mmax):
                for sh in shifts:
                    for relu in (0, 1):
                        for raw in (0, 1):
                            rows.append((acc, mult, sh, bias, relu, raw))
    # exact +-half-LSB ties and their neighbours, both signs
    for sh in range(1, min(cfg.acc_bits - 2, cfg.max_shift) + 1):
        for k in (-3, -1, 0, 2):
            for d in (-1, 0, 1):
                for half in (1 << (sh - 1), -(1 << (sh - 1))):
                    v = k * (1 << sh) + half + d
                    if amin <= v <= amax:
                        rows.append((v, 1, sh, 0, 0, 0))
    # saturation bounds of both output modes (mult = 1, shift = 0)
    for lim_bits in (cfg.out_bits, cfg.raw_bits):
        for v in (-(1 << (lim_bits - 1)), (1 << (lim_bits - 1)) - 1):
            for d in (-2, -1, 0, 1, 2):
                for raw in (0, 1):
                    tot = v + d
                    acc = max(amin, min(amax, tot))
                    bias = tot - acc
                    if bmin <= bias <= bmax:
                        rows.append((acc, 1, 0, bias, 0, raw))
    a = np.array(rows, dtype=np.int64)
    return dict(acc=a[:, 0], mult=a[:, 1], shift=a[:, 2], bias=a[:, 3], relu=a[:, 4], raw=a[:, 5],
                valid=np.ones(len(a), np.int64))


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_edge_values_bit_exact(cfg_name):
    cfg = CONFIGS[cfg_name]
    s = _edge_samples(cfg)
    got, _ = _run(cfg, **s)
    np.testing.assert_array_equal(got, _golden(cfg, s["acc"], s["mult"], s["shift"], s["bias"],
                                               s["relu"].astype(bool), s["raw"]))


def test_real_scales_from_quantize_multiplier():
    """Per-channel float scales through quantize_multiplier, as a layer would use them."""
    cfg = CONFIGS["int32_acc"]
    rng = np.random.default_rng(7)
    n = 256
    real = np.exp(rng.uniform(np.log(1e-6), np.log(0.5), n))
    mult, shift = quantize_multiplier(real, cfg.mult_bits)
    cfg.check_params(mult, shift)
    acc = rng.integers(-(1 << 20), 1 << 20, n)
    bias = rng.integers(-(1 << 12), 1 << 12, n)
    s = dict(acc=acc, mult=mult, shift=shift, bias=bias, relu=rng.integers(0, 2, n),
             raw=np.zeros(n, np.int64), valid=np.ones(n, np.int64))
    got, _ = _run(cfg, **s)
    np.testing.assert_array_equal(got, _golden(cfg, acc, mult, shift, bias,
                                               s["relu"].astype(bool), s["raw"]))


@pytest.mark.parametrize("kw,match", [
    (dict(mult=np.array([1 << 15])), "mult out of range"),
    (dict(mult=np.array([-1])), "mult out of range"),
    (dict(mult=np.array([0.5])), "integer"),
    (dict(shift=np.array([63])), "shift out of range"),
    (dict(shift=np.array([-1])), "shift out of range"),
    (dict(bias=np.array([1 << 31])), "bias out of"),
])
def test_out_of_range_params_rejected(kw, match):
    with pytest.raises(NmaccelError, match=match):
        EpilogueConfig().check_params(**kw)


@pytest.mark.parametrize("kw", [dict(out_bits=40), dict(mult_bits=1), dict(max_shift=0),
                                dict(acc_bits=32.0)])
def test_bad_config(kw):
    with pytest.raises(NmaccelError):
        EpilogueConfig(**kw)


def test_port_wider_than_config_rejected():
    cfg = EpilogueConfig(acc_bits=16)
    with pytest.raises(NmaccelError, match="acc"):
        make_epilogue("ep", cfg, pyrtl.Input(32, "a"), pyrtl.Input(16, "m"),
                      pyrtl.Input(6, "s"), pyrtl.Input(32, "b"), pyrtl.Input(1, "r"),
                      pyrtl.Input(1, "o"))


@pytest.mark.tools
def test_scale_multiplier_maps_to_dsp():
    """The (acc + bias) x mantissa product (33 x 16 bits) lands in ECP5 multiplier blocks."""
    import io
    import tempfile
    from pathlib import Path

    from nmaccel.verilog.synth import synthesize
    cfg = EpilogueConfig()
    ins = {k: pyrtl.Input(w, k) for k, w in
           [("acc", cfg.acc_bits), ("mult", cfg.mult_bits), ("shift", cfg.shift_bits),
            ("bias", cfg.bias_bits), ("relu", 1), ("out_mode", 1)]}
    o = pyrtl.Output(cfg.raw_bits, "out")
    o <<= make_epilogue("ep", cfg, **ins).out
    v = io.StringIO()
    pyrtl.output_to_verilog(v)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "ep.v").write_text(v.getvalue())
        cells = synthesize(Path(tmp, "ep.v"), "toplevel", "ecp5")["cells"]
    assert cells.get("MULT18X18D", 0) == 2, cells   # 33 x 16 signed = two 18x18 slices
