"""N:M index decoder: picks, for every multiplier lane, the activation its stored index points to."""
import pyrtl


def make_nm_decoder(name, cfg, dense, elements, indices):
    """Select one activation element per lane from an m_max-wide activation window.

    `elements`: m_max wires, element k = activation k of every token of the step (token A in
    the LSBs, so INT4 token packing shares one mux per lane). For lane l:
    `lanes[l] = elements[l] if dense else elements[indices[l]]` (index >= m_max reads 0). Indices are
    window-local (group j of the window, kept index i -> j * m_group + i), so runtime N:M with
    n_keep <= n_max, m_group <= m_max needs no re-elaboration; `dense` (n_keep == m_group) passes
    activations straight through (no metadata). Purely combinational, latency 0.
    Returns a bundle with `.lanes` (n_max wires as wide as one element).
    """
    assert len(elements) == cfg.m_max and len(indices) == cfg.n_max
    width = len(elements[0])
    if not cfg.decoder:     # dense-only array: no muxes, lane l takes element l
        return _Bundle(lanes=list(elements[:cfg.n_max]))
    lanes = []
    for lane, idx in enumerate(indices):
        picked = pyrtl.mux(idx, *elements, default=pyrtl.Const(0, bitwidth=width))
        out = pyrtl.WireVector(width, name=f"{name}.lane{lane}")
        out <<= pyrtl.select(dense, elements[lane], picked)
        lanes.append(out)
    return _Bundle(lanes=lanes)


class _Bundle:
    def __init__(self, **kw):
        self.__dict__.update(kw)
