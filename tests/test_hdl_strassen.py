"""Strassen pre-adder and combiner RTL == nmaccel.golden.strassen == plain matmul, bit-exact."""

import math

import numpy as np
import pyrtl
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.golden import strassen as gs
from nmaccel.golden.gemm import int_matmul
from nmaccel.arch.config import COMBINER_LATENCY, PREADD_LATENCY, StrassenConfig
from nmaccel.hdl.strassen import ACT_COEF, OUT_COEF, make_strassen_combiner, make_strassen_preadd
from nmaccel.pack.strassen import pad_to, padded_shape, quadrants, strassen_weight_blocks


def test_coefficient_tables_mirror_golden():
    np.testing.assert_array_equal(np.array(ACT_COEF), gs.A_COEF)
    np.testing.assert_array_equal(np.array(OUT_COEF), gs.C_COEF)


def _run_preadd(cfg, quads):
    """quads: 4 arrays (R, L) -> hardware operands, array (7, R, L)."""
    rows, lanes = quads[0].shape
    ins = [[pyrtl.Input(cfg.act_bits, f"a{q}_{lane}") for lane in range(lanes)] for q in range(4)]
    pre = make_strassen_preadd("pre", cfg, *ins)
    assert pre.latency == PREADD_LATENCY
    for i, ops in enumerate(pre.operands):
        for lane, w in enumerate(ops):
            assert len(w) == cfg.operand_bits
            o = pyrtl.Output(cfg.operand_bits, f"op{i}_{lane}")
            o <<= w
    sim = pyrtl.FastSimulation()
    mask = (1 << cfg.act_bits) - 1
    got = np.zeros((7, rows, lanes), dtype=np.int64)
    for r in range(rows + PREADD_LATENCY):
        rr = min(r, rows - 1)
        sim.step({f"a{q}_{lane}": int(quads[q][rr, lane]) & mask
                  for q in range(4) for lane in range(lanes)})
        if r >= PREADD_LATENCY:
            for i in range(7):
                for lane in range(lanes):
                    got[i, r - PREADD_LATENCY, lane] = pyrtl.val_to_signed_integer(
                        sim.inspect(f"op{i}_{lane}"), cfg.operand_bits)
    return got


@pytest.mark.parametrize("act_bits,rows,lanes,seed", [(8, 12, 5, 0), (4, 20, 3, 1), (8, 6, 1, 2)])
def test_preadd_matches_golden(act_bits, rows, lanes, seed):
    cfg = StrassenConfig(act_bits=act_bits)
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (2 * rows, 2 * lanes))
    x[0, :] = lo   # extremes: -128 - 127 and -128 + -128 need the ninth bit
    x[rows, :] = hi
    x[1, :] = hi
    x[rows + 1, :] = lo
    got = _run_preadd(cfg, quadrants(x))
    want = gs.activation_blocks(x, 1)
    for i in range(7):
        np.testing.assert_array_equal(got[i], want[i])
    assert got.min() < lo and got.max() > hi   # growth was exercised


def _run_combiner(cfg, lanes, feed):
    """feed: list of (row, idx, product (lanes,), valid, first); returns {row: (4, lanes)}."""
    prod = [pyrtl.Input(cfg.product_bits, f"p_{lane}") for lane in range(lanes)]
    idx = pyrtl.Input(cfg.idx_bits, "idx")
    valid = pyrtl.Input(1, "valid")
    first = pyrtl.Input(1, "first")
    comb = make_strassen_combiner("comb", cfg, prod, idx, valid, first)
    assert comb.latency == COMBINER_LATENCY
    for j, blk in enumerate(comb.blocks):
        for lane, w in enumerate(blk):
            o = pyrtl.Output(cfg.acc_bits, f"c{j}_{lane}")
            o <<= w
    sim = pyrtl.FastSimulation()
    mask = (1 << cfg.product_bits) - 1
    results = {}
    prev_row = None
    for row, i, p, v, f in feed + [(None, 0, np.zeros(lanes, np.int64), 0, 0)]:
        sim.step({"idx": i, "valid": v, "first": f,
                  **{f"p_{lane}": int(p[lane]) & mask for lane in range(lanes)}})
        if f and prev_row is not None or row is None:
            # registers now show the finished previous set (latency 1)
            results[prev_row] = np.array([[pyrtl.val_to_signed_integer(
                sim.inspect(f"c{j}_{lane}"), cfg.acc_bits) for lane in range(lanes)]
                for j in range(4)])
        if f:
            prev_row = row
    return results


def _strassen_case(rng, t, k, n, w_lo, w_hi, x_lo=-128, x_hi=127):
    x = rng.integers(x_lo, x_hi + 1, (t, k))
    w = rng.integers(w_lo, w_hi + 1, (n, k))
    tp, kp = padded_shape(x.shape, 1)
    ab = gs.activation_blocks(pad_to(x, (tp, kp)), 1)
    wb = strassen_weight_blocks(w, 1)
    prods = [int_matmul(a, b) for a, b in zip(ab, wb)]
    return x, w, prods


@pytest.mark.parametrize("t,k,n,w_bits,split,seed", [
    (6, 10, 8, 8, 1, 0),     # even shapes, INT8 weights
    (5, 7, 7, 4, 1, 1),      # odd T, K, out: zero padding, INT4 weights
    (4, 16, 6, 8, 3, 2),     # products delivered as 3 K-partial chunks each
    (3, 33, 2, 2, 2, 3),
])
def test_combiner_matches_plain_matmul(t, k, n, w_bits, split, seed):
    rng = np.random.default_rng(seed)
    x, w, prods = _strassen_case(rng, t, k, n, -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1)
    half_k = padded_shape((t, k), 1)[1] // 2
    g = gs.strassen_bit_growth(8, w_bits, 1)
    pb = g["product_bits"] + math.ceil(math.log2(half_k))
    cfg = StrassenConfig(act_bits=8, product_bits=pb)
    rows, lanes = prods[0].shape
    # K-partial chunks of every product (exact split of the dot product along K)
    tp, kp = padded_shape(x.shape, 1)
    ab = gs.activation_blocks(pad_to(x, (tp, kp)), 1)
    wb = strassen_weight_blocks(w, 1)
    bounds = np.linspace(0, half_k, split + 1).astype(int)
    feed = []
    for r in range(rows):
        items = [(i, int_matmul(ab[i][r:r + 1, lo:hi], wb[i][:, lo:hi])[0])
                 for i in range(7) for lo, hi in zip(bounds[:-1], bounds[1:])]
        order = rng.permutation(len(items))
        firstflag = 1
        for o in order:
            i, p = items[o]
            if rng.random() < 0.3:   # idle cycles in between must hold the blocks
                feed.append((r, int(rng.integers(0, 7)), rng.integers(-99, 99, lanes), 0, 0))
            feed.append((r, i, p, 1, firstflag))
            firstflag = 0
    res = _run_combiner(cfg, lanes, feed)
    c = np.zeros((2 * rows, 2 * lanes), dtype=np.int64)
    for r in range(rows):
        blk = res[r]
        c[r, :lanes], c[r, lanes:] = blk[0], blk[1]
        c[rows + r, :lanes], c[rows + r, lanes:] = blk[2], blk[3]
    np.testing.assert_array_equal(c, gs.combine_products(prods, 1))
    np.testing.assert_array_equal(c[:t, :n], x.astype(np.int64) @ w.T.astype(np.int64))


def test_combiner_extremes_at_minimal_width():
    """All-extreme operands at exactly the derived product width: no silent overflow."""
    rng = np.random.default_rng(5)
    t, k, n = 4, 8, 4
    x = np.where(rng.random((t, k)) < 0.5, -128, 127)
    x[0] = x[t // 2] = -128    # A11 + A22 = -256 ...
    w = np.where(rng.random((n, k)) < 0.5, -128, 127)
    w[0] = w[n // 2] = -128    # ... times B11 + B22 = -256: M1 reaches +2^16 per K term
    tp, kp = padded_shape(x.shape, 1)
    ab = gs.activation_blocks(pad_to(x, (tp, kp)), 1)
    wb = strassen_weight_blocks(w, 1)
    prods = [int_matmul(a, b) for a, b in zip(ab, wb)]
    pb = gs.strassen_bit_growth(8, 8, 1)["product_bits"] + math.ceil(math.log2(kp // 2))
    assert max(int(np.abs(p).max()) for p in prods) == 1 << (pb - 2)
    cfg = StrassenConfig(act_bits=8, product_bits=pb)
    rows, lanes = prods[0].shape
    feed = [(r, i, prods[i][r], 1, int(i == 0)) for r in range(rows) for i in range(7)]
    res = _run_combiner(cfg, lanes, feed)
    want = x.astype(np.int64) @ w.T.astype(np.int64)
    for r in range(rows):
        np.testing.assert_array_equal(res[r][0], want[r, :lanes])
        np.testing.assert_array_equal(res[r][3], want[rows + r, lanes:])


def test_preadd_then_combiner_end_to_end():
    """Hardware pre-adder operands (not golden ones) times pack-time weight blocks, recombined in
    hardware, equals the plain product."""
    rng = np.random.default_rng(9)
    t, k, n = 6, 8, 6
    x = rng.integers(-128, 128, (t, k))
    w = rng.integers(-8, 8, (n, k))
    cfg = StrassenConfig(act_bits=8, product_bits=9 + 5 + 3 + 1)
    ops = _run_preadd(cfg, quadrants(x))          # (7, t/2, k/2) from RTL
    pyrtl.reset_working_block()
    wb = strassen_weight_blocks(w, 1)
    prods = [ops[i] @ wb[i].T for i in range(7)]
    feed = [(r, i, prods[i][r], 1, int(i == 0)) for r in range(t // 2) for i in range(7)]
    res = _run_combiner(cfg, n // 2, feed)
    want = x @ w.T
    for r in range(t // 2):
        np.testing.assert_array_equal(np.concatenate([res[r][0], res[r][1]]), want[r])
        np.testing.assert_array_equal(np.concatenate([res[r][2], res[r][3]]), want[t // 2 + r])


def test_bit_growth_report_numbers():
    """The numbers the planner uses: 7 vs 8 products; INT4 weights no longer fit INT4."""
    g8 = gs.strassen_bit_growth(8, 8, 1)
    g4 = gs.strassen_bit_growth(8, 4, 1)
    assert (g8["multipliers"], g8["plain_multipliers"]) == (7, 8)
    assert g8["act_operand_bits"] == StrassenConfig(act_bits=8).operand_bits == 9
    assert not g4["w_fits"] and g4["w_operand_bits"] == 5


@pytest.mark.parametrize("kw", [dict(act_bits=1), dict(product_bits=20, acc_bits=10),
                                dict(act_bits=8.0)])
def test_bad_config(kw):
    with pytest.raises(NmaccelError):
        StrassenConfig(**kw)


def test_bad_ports():
    cfg = StrassenConfig()
    a = [pyrtl.Input(8, f"a{i}") for i in range(3)]
    with pytest.raises(NmaccelError, match="lanes"):
        make_strassen_preadd("p", cfg, a[:2], a[:2], a[:2], a[:1])
    with pytest.raises(NmaccelError, match="bits"):
        make_strassen_preadd("p", cfg, [pyrtl.Input(9, "w9")], a[:1], a[:1], a[:1])
    with pytest.raises(NmaccelError, match="product_idx"):
        make_strassen_combiner("c", cfg, [pyrtl.Input(32, "p")], pyrtl.Input(4, "i"),
                               pyrtl.Input(1, "v"), pyrtl.Input(1, "f"))


def _combine_rtl(cfg, prods):
    """Hardware combiner over 7 products (R, L) each -> assembled (2R, 2L) block result."""
    rows, lanes = prods[0].shape
    feed = [(r, i, prods[i][r], 1, int(i == 0)) for r in range(rows) for i in range(7)]
    res = _run_combiner(cfg, lanes, feed)
    pyrtl.reset_working_block()
    c = np.zeros((2 * rows, 2 * lanes), dtype=np.int64)
    for r in range(rows):
        c[r, :lanes], c[r, lanes:] = res[r][0], res[r][1]
        c[rows + r, :lanes], c[rows + r, lanes:] = res[r][2], res[r][3]
    return c


def test_two_levels_by_cascading_blocks():
    """Two Strassen levels = the one-level RTL blocks applied twice (operands 8 -> 9 -> 10 bits,
    49 products), equal to golden levels=2 and to the plain product."""
    rng = np.random.default_rng(21)
    t, k, n = 8, 8, 8
    x = rng.integers(-128, 128, (t, k))
    x[0, :] = x[t // 2, :] = -128
    w = rng.integers(-8, 8, (n, k))
    g2 = gs.strassen_bit_growth(8, 4, 2)
    outer = _run_preadd(StrassenConfig(act_bits=8), quadrants(x))       # 7 x (t/2, k/2)
    pyrtl.reset_working_block()
    inner_cfg = StrassenConfig(act_bits=9)
    ops = []
    for i in range(7):
        ops.extend(_run_preadd(inner_cfg, quadrants(outer[i])))
        pyrtl.reset_working_block()
    want_ops = gs.activation_blocks(x, 2)
    assert len(ops) == 49 and inner_cfg.operand_bits == g2["act_operand_bits"] == 10
    for got, want in zip(ops, want_ops):
        np.testing.assert_array_equal(got, want)
    wb = strassen_weight_blocks(w, 2)
    prods = [int_matmul(a, b) for a, b in zip(ops, wb)]                   # 49 x (t/4, n/4)
    pb = g2["product_bits"] + math.ceil(math.log2(k // 4))
    inner = [_combine_rtl(StrassenConfig(product_bits=pb), prods[7 * i:7 * i + 7])
             for i in range(7)]
    c = _combine_rtl(StrassenConfig(product_bits=pb + 2), inner)
    np.testing.assert_array_equal(c, gs.combine_products(prods, 2))
    np.testing.assert_array_equal(c, x @ w.T)
