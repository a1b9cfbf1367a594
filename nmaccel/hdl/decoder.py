"""N:M index decoder: picks, for every multiplier lane, the activation its stored index points to."""
import pyrtl

from nmaccel.hdl.signed import make_io_top


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


def decoder_input_widths(cfg):
    """Port signature of the decoder as a top level, inputs {name: width}: elem_<k> (one element:
    tokens_per_step activations), idx_<l>, dense."""
    w = {f"elem_{k}": cfg.tokens_per_step * cfg.act_bits for k in range(cfg.m_max)}
    w.update({f"idx_{lane}": cfg.idx_bits for lane in range(cfg.n_max)})
    w["dense"] = 1
    return w


def decoder_output_widths(cfg):
    return {f"lane_{lane}": cfg.tokens_per_step * cfg.act_bits for lane in range(cfg.n_max)}


def make_decoder_ports(name, cfg, inputs):
    """make_nm_decoder on the ports of decoder_input_widths; `.outputs` lane_<l>."""
    dec = make_nm_decoder(name, cfg, inputs["dense"], [inputs[f"elem_{k}"] for k in range(cfg.m_max)],
                          [inputs[f"idx_{lane}"] for lane in range(cfg.n_max)])
    dec.outputs = {f"lane_{lane}": w for lane, w in enumerate(dec.lanes)}
    return dec


def make_decoder_top(cfg, name="dec"):
    """The decoder as a top level: ports named as its port signature."""
    return make_io_top(make_decoder_ports, name, cfg, decoder_input_widths(cfg), decoder_output_widths(cfg))


class _Bundle:
    def __init__(self, **kw):
        self.__dict__.update(kw)
