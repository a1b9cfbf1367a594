"""Explicit two's-complement helpers (PyRTL's plain `-` / `<` are unsigned traps)."""
import pyrtl


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


def fields(w, width, count):
    """Split `w` into `count` fields of `width` bits, field 0 in the LSBs."""
    return [w[i * width:(i + 1) * width] for i in range(count)]
