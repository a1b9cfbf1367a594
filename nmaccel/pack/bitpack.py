"""Integer type descriptor and LSB-first bit-field packing (FINN `data_packing` style).

Bit order, used by the file format and by every memory image: a stream of b-bit fields is packed
LSB-first, field i occupying bits [b*i, b*i + b) of a little-endian byte (or word) stream. Signed
fields are stored in two's complement. Example (INT4, signed): [1, -2, 7] -> bytes 0xE1 0x07.
"""
from dataclasses import dataclass

import numpy as np

from nmaccel.errors import NmaccelError


@dataclass(frozen=True)
class IntType:
    """A `bits`-wide integer, two's complement when `signed`."""
    bits: int
    signed: bool

    def __post_init__(self):
        if not (1 <= self.bits <= 32):
            raise NmaccelError(f"IntType bits must be in 1..32, got {self.bits}")

    @property
    def min(self):
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self):
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def name(self):
        return f"{'INT' if self.signed else 'UINT'}{self.bits}"

    def check(self, values, what="values"):
        """Raise NmaccelError if any value is outside this type's range."""
        v = np.asarray(values)
        if v.size and (v.min() < self.min or v.max() > self.max):
            raise NmaccelError(f"{what} out of {self.name} range [{self.min}, {self.max}]: "
                               f"found [{v.min()}, {v.max()}]")

    def to_fields(self, values):
        """Values -> unsigned field contents (two's complement for signed types)."""
        self.check(values)
        return np.asarray(values, dtype=np.int64) & ((1 << self.bits) - 1)

    def from_fields(self, fields):
        """Unsigned field contents -> values (sign-extended for signed types)."""
        f = np.asarray(fields, dtype=np.int64)
        if self.signed:
            f = np.where(f >= (1 << (self.bits - 1)), f - (1 << self.bits), f)
        return f


def pack_fields(values, itype: IntType) -> bytes:
    """Pack a flat sequence of integers into an LSB-first byte string (zero-padded last byte)."""
    fields = itype.to_fields(np.asarray(values).ravel())
    if fields.size == 0:
        return b""
    bit_idx = np.arange(itype.bits, dtype=np.int64)
    bits = ((fields[:, None] >> bit_idx) & 1).astype(np.uint8).ravel()
    return np.packbits(bits, bitorder="little").tobytes()


def unpack_fields(buf, itype: IntType, count: int) -> np.ndarray:
    """Inverse of `pack_fields`: the first `count` fields of `buf` as int64 values."""
    need = (count * itype.bits + 7) // 8
    if len(buf) < need:
        raise NmaccelError(f"packed {itype.name} stream too short: {len(buf)} bytes for {count} fields "
                           f"(need {need}); the file is truncated or corrupt")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(bytes(buf[:need]), dtype=np.uint8), bitorder="little")
    bits = bits[:count * itype.bits].reshape(count, itype.bits).astype(np.int64)
    fields = (bits << np.arange(itype.bits, dtype=np.int64)).sum(axis=1)
    return itype.from_fields(fields)


def pack_words(values, itype: IntType, word_bits: int) -> np.ndarray:
    """Pack fields LSB-first into `word_bits`-wide words (uint64 array); word_bits % 8 == 0."""
    if word_bits % 8 or not (8 <= word_bits <= 64):
        raise NmaccelError(f"word_bits must be a multiple of 8 in 8..64, got {word_bits}")
    raw = pack_fields(values, itype)
    nbytes = word_bits // 8
    raw += b"\x00" * (-len(raw) % nbytes)
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, nbytes).astype(np.uint64)
    return (b << (np.arange(nbytes, dtype=np.uint64) * np.uint64(8))).sum(axis=1, dtype=np.uint64)


def words_to_memh(words, word_bits: int) -> str:
    """One hex word per line, as `$readmemh` reads it."""
    digits = (word_bits + 3) // 4
    return "".join(f"{int(w):0{digits}x}\n" for w in words)
