"""N:M index decoder: picks, for every multiplier lane, the activation its stored index points to."""
import pyrtl


def make_nm_decoder(name, cfg, dense, windows, indices):
    """Select one activation per lane from an m_max-wide activation window.

    Computes, for each token window `x` in `windows` (lists of m_max act_bits wires) and lane l:
    `out[t][l] = x[l] if dense else x[indices[l]]` (index >= m_max reads 0). Indices are
    window-local (group j of the window, kept index i -> j * m_group + i), so runtime N:M with
    n_keep <= n_max, m_group <= m_max needs no re-elaboration; `dense` (n_keep == m_group) passes
    activations straight through (no metadata). Purely combinational, latency 0.
    Returns a bundle with `.lanes` (list per token of n_max wires).
    """
    lanes = []
    for t, x in enumerate(windows):
        assert len(x) == cfg.m_max and len(indices) == cfg.n_max
        row = []
        for lane, idx in enumerate(indices):
            picked = pyrtl.mux(idx, *x, default=pyrtl.Const(0, bitwidth=cfg.act_bits))
            out = pyrtl.WireVector(cfg.act_bits, name=f"{name}.t{t}.lane{lane}")
            out <<= pyrtl.select(dense, x[lane], picked)
            row.append(out)
        lanes.append(row)
    return _Bundle(lanes=lanes)


class _Bundle:
    def __init__(self, **kw):
        self.__dict__.update(kw)
