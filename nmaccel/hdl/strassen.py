"""Strassen 2x2 block mode: activation pre-adders and the 7-product combiner.

y = x @ w.T with A = x split into [A11 A12; A21 A22] (token halves x K halves) and B = w.T
into [B11 B12; B21 B22]. The array computes M_i = (A-operand i) @ (B-operand i) for i = 1..7;
B-operands are pre-added at pack time (`nmaccel.pack.strassen.strassen_weight_blocks`).

`make_strassen_preadd`: A-operands (`ACT_COEF`, over [A11, A12, A21, A22])
  A11+A22, A21+A22, A11, A22, A11+A12, A21-A11, A12-A22
with one bit of growth (INT8 -> 9-bit signed operands; the multipliers must take act_bits + 1).
`make_strassen_combiner`: C-blocks (`OUT_COEF`, over M1..M7)
  C11 = M1+M4-M5+M7, C12 = M3+M5, C21 = M2+M4, C22 = M1-M2+M3+M6.
Both mirror `nmaccel.golden.strassen` (A_COEF, C_COEF, activation_blocks, combine_products).

Where it pays: 7 block products instead of 8 (7/8 of the multiplier-cycles for dense INT8).
Where it does not: pre-added weight blocks (B11+B22, B12-B22, ...) need one more bit (INT4 -> 5
bits, so INT4 multipliers and token-packed INT4 no longer fit) and lose the N:M structure (a
sum of two 2:4 blocks is generally 4:4): see `nmaccel.golden.strassen.strassen_bit_growth`
and `nmaccel.pack.strassen.strassen_nm_report`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyrtl

from nmaccel.arch.config import COMBINER_LATENCY, N_PRODUCTS, PREADD_LATENCY, StrassenConfig
from nmaccel.errors import require
from nmaccel.hdl.signed import sext

ACT_COEF = ((1, 0, 0, 1), (0, 0, 1, 1), (1, 0, 0, 0), (0, 0, 0, 1), (1, 1, 0, 0),
            (-1, 0, 1, 0), (0, 1, 0, -1))
OUT_COEF = ((1, 0, 0, 1, -1, 0, 1), (0, 0, 1, 0, 1, 0, 0), (0, 1, 0, 1, 0, 0, 0),
            (1, -1, 1, 0, 0, 1, 0))
@dataclass
class StrassenPreadd:
    """Bundle: `operands[i][lane]` (operand_bits, signed, registered) = A-operand i+1."""

    cfg: StrassenConfig
    operands: list
    latency: int


@dataclass
class StrassenCombiner:
    """Bundle: `blocks[j][lane]` (acc_bits, signed registers) for C11, C12, C21, C22."""

    cfg: StrassenConfig
    blocks: list
    latency: int


def _check_lanes(groups, bits, what, name):
    require(len(groups) > 0 and len(groups[0]) > 0, f"{name}: {what} need at least one lane")
    n = len(groups[0])
    for g in groups:
        require(len(g) == n, f"{name}: all {what} must have {n} lanes, got {len(g)}")
        for w in g:
            require(isinstance(w, pyrtl.WireVector) and len(w) <= bits,
                    f"{name}: {what} lanes must be WireVectors of <= {bits} bits")
    return n


def make_strassen_preadd(name, cfg: StrassenConfig, a11, a12, a21, a22) -> StrassenPreadd:
    """Activation-side pre-adders.

    Ports: `a11`, `a12`, `a21`, `a22`: lists of equally many signed act_bits lanes (the same
    position of the four activation quadrants). Output `operands` (7 lists of operand_bits
    signed registers): sum_q ACT_COEF[i][q] * a_q, exact, latency `PREADD_LATENCY`.
    """
    quads = [list(a11), list(a12), list(a21), list(a22)]
    lanes = _check_lanes(quads, cfg.act_bits, "activation quadrants", name)
    ob = cfg.operand_bits
    operands = []
    for i, row in enumerate(ACT_COEF):
        require(sum(1 for c in row if c) <= 2, "pre-adder rows hold at most two terms")
        outs = []
        for lane in range(lanes):
            pos = [sext(quads[q][lane], cfg.act_bits) for q, c in enumerate(row) if c > 0]
            neg = [sext(quads[q][lane], cfg.act_bits) for q, c in enumerate(row) if c < 0]
            v = pos[0]
            for p in pos[1:]:
                v = pyrtl.signed_add(v, p)
            for n in neg:
                v = pyrtl.signed_sub(v, n)
            r = pyrtl.Register(ob, name=f"{name}.op{i + 1}_{lane}")
            r.next <<= sext(v, ob)[:ob]
            outs.append(r)
        operands.append(outs)
    return StrassenPreadd(cfg=cfg, operands=operands, latency=PREADD_LATENCY)


def make_strassen_combiner(name, cfg: StrassenConfig, product, product_idx, valid, first) \
        -> StrassenCombiner:
    """Accumulates products M_i into the four output blocks with OUT_COEF signs.

    Ports: `product` (list of signed product_bits lanes: one row of M_{idx+1}), `product_idx`
    (idx_bits, unsigned 0..6 for M1..M7), `valid` (1), `first` (1: start a new set of blocks).
    On a `valid` cycle each block j becomes (first ? 0 : block j) + OUT_COEF[j][idx] * product,
    wrapped to acc_bits; otherwise it holds. Products may arrive in any order and in several
    partial chunks (e.g. K-split partial sums): the result is the sum. Latency
    `COMBINER_LATENCY`. Outputs `blocks[j][lane]`: C11, C12, C21, C22.
    """
    lanes = _check_lanes([list(product)], cfg.product_bits, "products", name)
    require(isinstance(product_idx, pyrtl.WireVector) and len(product_idx) <= cfg.idx_bits,
            f"{name}: product_idx must be a WireVector of <= {cfg.idx_bits} bits")
    require(len(valid) == 1 and len(first) == 1, f"{name}: valid and first must be 1 bit")
    ab = cfg.acc_bits
    coef = np.array(OUT_COEF)
    blocks = []
    for j in range(len(OUT_COEF)):
        add_sel = pyrtl.Const(0, bitwidth=1)
        sub_sel = pyrtl.Const(0, bitwidth=1)
        for i in range(N_PRODUCTS):
            if coef[j, i] > 0:
                add_sel = add_sel | (product_idx == i)
            elif coef[j, i] < 0:
                sub_sel = sub_sel | (product_idx == i)
        regs = []
        for lane in range(lanes):
            acc = pyrtl.Register(ab, name=f"{name}.c{j // 2 + 1}{j % 2 + 1}_{lane}")
            base = pyrtl.select(first, pyrtl.Const(0, bitwidth=ab), acc)
            p = sext(product[lane], ab)
            summed = pyrtl.signed_add(base, p)[:ab]
            diffed = pyrtl.signed_sub(base, p)[:ab]
            nxt = pyrtl.select(add_sel, summed, pyrtl.select(sub_sel, diffed, base))
            acc.next <<= pyrtl.select(valid, nxt, acc)
            regs.append(acc)
        blocks.append(regs)
    return StrassenCombiner(cfg=cfg, blocks=blocks, latency=COMBINER_LATENCY)
