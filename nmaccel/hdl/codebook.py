"""Codebook decode for Lloyd-Max weights: code -> INT8 level through a small loaded LUT."""
import pyrtl

from nmaccel.arch.layout import codebook_layout


def make_codebook_decoder(name, cfg, load, data, codes):
    """LUT of 2**codebook_bits INT8 levels, read by every wire in `codes`.

    `data` carries the whole table (nmaccel.arch.layout.codebook_layout: entry e in bits [8e, 8e+8)); on a cycle with `load` high the
    table registers take `data` at the clock edge and reads in that same cycle already see
    `data` (bypass), so a codebook can be loaded together with the first weights it decodes.
    `values[i] = table[codes[i]]`, combinational. Returns a bundle with `.values`, `.table`.
    """
    table = []
    for e in range(cfg.cb_entries):
        r = pyrtl.Register(cfg.weight_bits, name=f"{name}.lut{e}")
        table.append(r)
    new = codebook_layout(cfg).split(data)["entry"]
    for r, d in zip(table, new):
        r.next <<= pyrtl.select(load, d, r)
    current = [pyrtl.select(load, d, r) for r, d in zip(table, new)]
    values = []
    for i, code in enumerate(codes):
        v = pyrtl.WireVector(cfg.weight_bits, name=f"{name}.val{i}")
        v <<= pyrtl.mux(code[:cfg.codebook_bits], *current)
        values.append(v)
    return _Bundle(values=values, table=table)


class _Bundle:
    def __init__(self, **kw):
        self.__dict__.update(kw)
