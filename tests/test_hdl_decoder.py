"""N:M index decoder and the lane layout (load_plan): RTL vs golden, layout properties."""
import numpy as np
import pyrtl
import pytest

from nmaccel.golden import array as ga
from nmaccel.golden import decoder as gdec
from nmaccel.arch.config import ArrayConfig
from nmaccel.hdl.decoder import make_nm_decoder
from nmtest import random_packed


@pytest.mark.parametrize("n_max,m_max,elem_bits", [(1, 2, 8), (2, 4, 16), (4, 8, 16), (3, 6, 8), (8, 16, 8)])
def test_decoder_matches_golden(rng, n_max, m_max, elem_bits):
    cfg = ArrayConfig(rows=1, cols=1, n_max=n_max, m_max=m_max)
    dense = pyrtl.Input(1, "dense")
    elems = [pyrtl.Input(elem_bits, f"x{k}") for k in range(m_max)]
    idx = [pyrtl.Input(cfg.idx_bits, f"i{lane}") for lane in range(n_max)]
    dec = make_nm_decoder("dec", cfg, dense, elems, idx)
    for lane, w in enumerate(dec.lanes):
        o = pyrtl.Output(elem_bits, f"y{lane}")
        o <<= w
    sim = pyrtl.FastSimulation()
    top = 1 << cfg.idx_bits
    for trial in range(40):
        x = rng.integers(0, 1 << elem_bits, m_max)
        if trial == 0:
            x[:] = 0
        i = rng.integers(0, top, n_max)                 # includes indices >= m_max if m_max < 2**bits
        if trial % 5 == 1:
            i[:] = i[0]
        d = trial % 3 == 0
        sim.step({"dense": int(d), **{f"x{k}": int(v) for k, v in enumerate(x)},
                  **{f"i{lane}": int(v) for lane, v in enumerate(i)}})
        got = np.array([sim.inspect(f"y{lane}") for lane in range(n_max)])
        np.testing.assert_array_equal(got, gdec.nm_decode(x, i, d, m_max))


NMS = [(1, 2), (2, 4), (1, 4), (3, 8), (4, 8), (2, 8), (4, 4), (2, 2), (1, 1)]
CASES = [(nm, arr) for arr in [(4, 8), (2, 4), (4, 16)] for nm in NMS
         if nm[0] <= arr[0] and nm[1] <= arr[1]]


@pytest.mark.parametrize("nm,arr", CASES)
def test_load_plan_places_every_kept_weight(rng, nm, arr):
    """Each kept weight lands in exactly one lane whose index points at its activation."""
    (n, m), (n_max, m_max) = nm, arr
    cfg = ArrayConfig(rows=3, cols=2, n_max=n_max, m_max=m_max)
    window = cfg.window(n, m)
    pw = random_packed(rng, 2, 3 * window - 1, n, m)
    plan = ga.load_plan(pw, cfg)
    assert plan.window == window and plan.keep.sum() == pw.values.size
    w = pw.int_weights(padded=True)
    rebuilt = np.zeros((2, 3 * window), dtype=np.int64)
    for r in range(cfg.rows):
        for c in range(2):
            for lane in np.nonzero(plan.keep[r, c])[0]:
                k = r * window + plan.index[r, c, lane]
                assert rebuilt[c, k] == 0 and plan.index[r, c, lane] < window
                rebuilt[c, k] = plan.codes[r, c, lane]
    np.testing.assert_array_equal(rebuilt[:, :w.shape[1]], w)
    if n == m:                                           # dense: index = lane (pass-through)
        lanes = np.nonzero(plan.keep)
        np.testing.assert_array_equal(plan.index[lanes], lanes[2])
