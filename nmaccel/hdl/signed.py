"""Explicit two's-complement helpers (PyRTL's plain `-` / `<` are unsigned traps), delay lines,
and `join`: a packed word built from its nmaccel.arch.layout table."""
import pyrtl

from nmaccel.errors import require


def sext(w, bits):
    """Sign-extend wire `w` to `bits` bits (w is read as signed)."""
    w = pyrtl.as_wires(w)
    if len(w) >= bits:
        return w[:bits]
    return w.sign_extended(bits)


def sadd(a, b, bits):
    """(a + b) mod 2**bits, a and b read as signed: the hardware twin of golden `_wrap(a + b, bits)`."""
    return (sext(a, bits) + sext(b, bits))[:bits]


def ssum(terms, bits):
    """Balanced adder tree of signed terms, every partial sum wrapped to `bits`."""
    terms = [sext(t, bits) for t in terms]
    if not terms:
        return pyrtl.Const(0, bitwidth=bits)
    while len(terms) > 1:
        nxt = [sadd(terms[i], terms[i + 1], bits) for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


def smul(a, b):
    """Signed product, len(a) + len(b) bits."""
    return pyrtl.signed_mult(a, b)


def delay(w, n, name):
    """`w` delayed by n >= 0 register stages (named name.0 .. name.{n-1})."""
    for i in range(n):
        r = pyrtl.Register(len(w), name=f"{name}.{i}")
        r.next <<= w
        w = r
    return w


def join(lay, **values):
    """The wire of a word of nmaccel.arch.layout Layout `lay` (the hardware twin of its encode, the
    inverse of lay.split): each value a wire (scalar field) or a list of wires (vector field), a
    nested Layout's element either a dict of its fields or one whole wire; every element exactly
    its field's width."""
    return pyrtl.concat_list(_parts(lay, values))


def _parts(lay, values):
    parts = []
    for f in lay.fields:
        require(f.name in values, f"join: layout field {f.name!r} has no value")
        elems = [values[f.name]] if f.count is None else list(values[f.name])
        require(len(elems) == f.n, f"join: field {f.name!r} has {len(elems)} elements, {f.n} expected")
        for e in elems:
            if isinstance(e, dict):                   # a nested Layout's fields
                parts += _parts(f.shape, e)
                continue
            require(len(e) == f.elem_bits, f"join: field {f.name!r} element is {len(e)} bits, "
                    f"{f.elem_bits} expected")
            parts.append(e)
    return parts


def smul_shift_add(w, h, bits):
    """Signed w * h, `bits` wide, as explicit shift-and-add (no $mul cell: stays in LUTs).

    Partial product i is (w << i) when bit i of h is set; the top bit of h weighs -2**(len(h)-1).
    """
    zero = pyrtl.Const(0, bitwidth=bits)
    terms = []
    for i in range(len(h)):
        shifted = sext(pyrtl.concat(w, pyrtl.Const(0, bitwidth=i)) if i else w, bits)
        if i == len(h) - 1:       # two's complement: -shifted = ~shifted + 1
            shifted = sadd(~shifted, pyrtl.Const(1, bitwidth=bits), bits)
        terms.append(pyrtl.select(h[i], shifted, zero))
    return ssum(terms, bits)


def smul_dsp(w, b, dsp_width, name):
    """Signed w * b (len(w) + len(b) bits) shaped so the only $mul fits one dsp_width DSP.

    If b is wider than dsp_width: b = hi * 2**(dsp_width-1) + lo (lo unsigned, dsp_width-1 bits),
    w = -2**(n-1) * w_sign + w_rest, and
        w * b = (w_rest * lo  -  w_sign * (lo << (n-1)))  +  (w * hi) << (dsp_width-1)
    with w_rest * lo one unsigned multiplier (PyRTL's signed_mult would sign-extend both
    operands to the full product width, costing 2 DSPs), and the rest shift-and-add LUT logic.
    """
    bits = len(w) + len(b)
    if len(b) <= dsp_width:
        return smul(w, b)[:bits]
    n, cut = len(w), dsp_width - 1
    lo = pyrtl.WireVector(cut, name=f"{name}.lo")
    lo <<= b[:cut]
    core = pyrtl.WireVector(cut + n - 1, name=f"{name}.dsp")
    core <<= w[:n - 1] * lo                                    # unsigned (n-1) x cut: one DSP
    corr = pyrtl.select(w[n - 1], pyrtl.concat(lo, pyrtl.Const(0, bitwidth=n - 1)),
                        pyrtl.Const(0, bitwidth=cut + n - 1))
    p_lo = sadd(core.zero_extended(bits), ~corr.zero_extended(bits), bits)
    p_lo = sadd(p_lo, pyrtl.Const(1, bitwidth=bits), bits)     # core - corr
    p_hi = smul_shift_add(w, b[cut:], bits - cut)
    return sadd(p_lo, pyrtl.concat(p_hi, pyrtl.Const(0, bitwidth=cut)), bits)


def make_io_top(make_block, name, cfg, in_widths, out_widths):
    """Build `make_block(name, cfg, inputs)` as a top level: pyrtl.Input / pyrtl.Output ports
    named as the keys of in_widths / out_widths (block outputs `bundle.outputs[port]`)."""
    ins = {port: pyrtl.Input(width, name=port) for port, width in in_widths.items()}
    block = make_block(name, cfg, ins)
    for port, width in out_widths.items():
        o = pyrtl.Output(width, name=port)
        o <<= block.outputs[port]
    return block
