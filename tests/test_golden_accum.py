"""Accumulator widths: exact worst case, checked by brute force on small sizes."""
import itertools

import numpy as np
import pytest

from nmaccel.arch.config import ArrayConfig, TopConfig
from nmaccel.errors import NmaccelError
from nmaccel.golden import intops
from nmaccel.golden.accum import (accum_bits, check_accumulator, dot_range, max_k,
                                  product_range)


def _operands(bits, signed):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return range(lo, hi + 1)


def _brute_bits(k, w_bits, a_bits, w_signed, a_signed):
    """Enumerate every K-long dot product; smallest register that never wraps."""
    prods = sorted({w * a for w in _operands(w_bits, w_signed) for a in _operands(a_bits, a_signed)})
    sums = {sum(c) for c in itertools.product(prods, repeat=k)}
    signed = w_signed or a_signed
    for b in range(1, 64):
        if all(intops.wrap(s, b, signed) == s for s in sums):
            return b
    raise AssertionError("unreachable")


@pytest.mark.parametrize("w_signed,a_signed", [(True, True), (False, False), (True, False), (False, True)])
def test_accum_bits_brute_force(w_signed, a_signed):
    for w_bits, a_bits, k in itertools.product((1, 2, 3), (1, 2, 3), (1, 2, 3)):
        if len(_operands(w_bits, w_signed)) * len(_operands(a_bits, a_signed)) > 64 and k == 3:
            continue
        want = _brute_bits(k, w_bits, a_bits, w_signed, a_signed)
        got = accum_bits(k, w_bits, a_bits, signed=(w_signed, a_signed))
        assert got == want, (w_bits, a_bits, k, w_signed, a_signed)
        if w_signed == a_signed:
            assert accum_bits(k, w_bits, a_bits, signed=w_signed) == want


def test_accum_bits_known_answers():
    # (-128)*(-128) = 2^14 needs 16 signed bits; 2^14 * 4096 = 2^26 needs 28
    assert product_range(8, 8) == (-128 * 127, 16384)
    assert accum_bits(1, 8, 8) == 16
    assert accum_bits(2, 8, 8) == 17
    assert accum_bits(4096, 8, 8) == 28
    assert accum_bits(4096, 4, 8) == 24
    assert accum_bits(64, 4, 8) == 18          # one 2:4 group of 128 columns
    assert accum_bits(1, 8, 8, signed=False) == 16
    assert accum_bits(0, 8, 8) == 1


def test_accum_bits_worst_case_realized():
    # the extreme operands really produce a sum needing exactly accum_bits
    for w_bits, a_bits, k in [(4, 8, 1000), (8, 8, 300), (2, 8, 17)]:
        x = np.full((k,), -(1 << (a_bits - 1)), dtype=np.int64)
        w = np.full((k,), -(1 << (w_bits - 1)), dtype=np.int64)
        s = int(x @ w)
        assert s == dot_range(k, w_bits, a_bits)[1]
        need = accum_bits(k, w_bits, a_bits)
        assert intops.wrap(s, need) == s
        assert intops.wrap(s, need - 1) != s


def test_max_k_and_check_accumulator(rng):
    for _ in range(200):
        wb, ab = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        acc = int(rng.integers(wb + ab, 40))
        kt = max_k(acc, wb, ab)
        assert kt >= 1
        assert accum_bits(kt, wb, ab) <= acc
        assert accum_bits(kt + 1, wb, ab) > acc
        assert check_accumulator(kt, wb, ab, acc) == accum_bits(kt, wb, ab)
        with pytest.raises(NmaccelError, match=rf"use acc_bits >= {accum_bits(kt + 1, wb, ab)} "
                                               rf"or tile K <= {kt}"):
            check_accumulator(kt + 1, wb, ab, acc)


def test_check_accumulator_message_and_impossible():
    with pytest.raises(NmaccelError, match=r"use acc_bits >= 28 or tile K <= 4095"):
        check_accumulator(4096, 8, 8, 27)
    with pytest.raises(NmaccelError, match=r"use acc_bits >= 16$"):
        check_accumulator(1, 8, 8, 12)      # not even one product fits: no K tile helps
    assert check_accumulator(4096, 8, 8, 32) == 28


@pytest.mark.parametrize("a", [ArrayConfig(), ArrayConfig(rows=2, cols=2, n_max=2, m_max=4),
                               ArrayConfig(rows=1, cols=2, n_max=3, m_max=8, modes=("int8",),
                                           act_bits=9, weight_bits=9)])
def test_hardware_accumulators_use_accum_bits(a):
    """The array and top accumulators are sized by the one accum_bits definition (known answers:
    the worst-case magnitude k * 2^(act_bits-1) * 2^(weight_bits-1) plus a sign bit)."""
    for k in (1, 2, 31, 32, a.k_max, 4096):
        want = (k << (a.act_bits + a.weight_bits - 2)).bit_length() + 1
        assert a.required_acc_bits(k) == accum_bits(k, a.weight_bits, a.act_bits) == want
    assert a.acc_bits == accum_bits(a.k_max, a.weight_bits, a.act_bits)
    top = TopConfig(array=a, k_tiles_max=3)
    assert top.acc_bits == accum_bits(top.k_max, a.weight_bits, a.act_bits)
