"""One field table per packed word: the single description of every bit the host, the golden
twins and the hardware exchange.

A `Layout` is an ordered table of fields, field 0 in the least significant bits (modelled on
Amaranth's `lib.data.StructLayout`). A field is one element (count None: a scalar field) or a
vector of `count` elements (element 0 lowest) of an int `width` (optionally two's complement
`signed`) or of a nested Layout. Scalar fields encode / decode as (n,) arrays, vector fields as
(n, count), nested fields as dicts of those. From the one table come

  * vectorized numpy encode / decode of n records at once, to Python ints (`encode` /
    `decode`, any width) or straight to host words of h bits (`to_words` / `from_words`, uint64
    for h <= 64, Python ints above), paired as FINN's finnpy_to_packed_bytearray /
    packed_bytearray_to_finnpy;
  * `split(wire)`: the same fields as slices of a hardware wire (PyRTL WireVector, or anything
    sliceable), so the RTL reads exactly the bits the encoder wrote.

Values are wrapped to their field width on encode (a negative code is stored two's complement);
decode returns int64, sign-extended for signed fields. The words of the accelerator:

  lane_layout       one PE lane's load word: code | index | keep
  pe_word_layout    one PE's weight input (w_in_c): n_max lanes
  window_layout     one PE row's activation input (x_in_r): m_max elements of tokens_per_step
  pe_store_layout   a PE's weight register: n_max stored lanes (weight | index)
  codebook_layout   one PE's codebook input (cb_in_c)
  header_layout     the job header (mode, N:M, relu, raw, n_steps, n_kt, n_nt[, kt_per_group])
  activation_layout one activation record: rows x m_max INT8 of token A (then token B in INT4)
  weight_layout     one weight record: cols PE words (then cols codebooks in codebook mode)
  groupscale_layout one group-scale record: cols unsigned multipliers
  epilogue_layout   one epilogue record: cols (mult | shift | bias)
  output_layout     one output record: tokens_per_step x cols raw_bits sums (token A first)
  quad_row_layout   / block_row_layout: the Strassen tile's quadrant-row input and block-row output
"""
from dataclasses import dataclass

import numpy as np

from nmaccel.arch.config import n_words
from nmaccel.errors import require

_CHUNK_BITS = 1 << 24       # bound on the uint8 bit-plane temporaries of one encode / decode pass


@dataclass(frozen=True)
class Field:
    name: str
    shape: object            # int width or Layout
    count: int = None        # None: one scalar element; an int: a vector (even of 1 element)
    signed: bool = False

    @property
    def n(self):
        return 1 if self.count is None else self.count

    @property
    def elem_bits(self):
        return self.shape.bits if isinstance(self.shape, Layout) else self.shape

    @property
    def bits(self):
        return self.elem_bits * self.n


class Layout:
    """Ordered field table, field 0 lowest. `fields`: Field or (name, shape[, count[, signed]])."""

    def __init__(self, fields):
        self.fields = tuple(f if isinstance(f, Field) else Field(*f) for f in fields)
        names = [f.name for f in self.fields]
        require(len(set(names)) == len(names), f"layout repeats a field name: {names}")
        for f in self.fields:
            require(f.count is None or (isinstance(f.count, int) and f.count >= 0),
                    f"field {f.name}: count must be None (scalar) or an int >= 0")
            if not isinstance(f.shape, Layout):
                require(isinstance(f.shape, int) and 1 <= f.shape <= 63,
                        f"field {f.name}: width {f.shape!r} must be 1..63")
        self.offsets, pos = {}, 0
        for f in self.fields:
            self.offsets[f.name] = pos
            pos += f.bits
        self.bits = pos

    def __repr__(self):
        return f"Layout({[(f.name, f.shape, f.count, f.signed) for f in self.fields]})"

    def __eq__(self, other):
        return isinstance(other, Layout) and self.fields == other.fields

    def __hash__(self):
        return hash(self.fields)

    def field(self, name):
        return next(f for f in self.fields if f.name == name)

    def words(self, h):
        return n_words(self.bits, h)

    # ---- bit planes (n, bits) uint8 --------------------------------------------------------
    def _planes(self, values, n):
        parts = []
        for f in self.fields:
            if f.n == 0:
                continue
            require(f.name in values, f"layout field {f.name!r} has no value")
            v = values[f.name]
            if isinstance(f.shape, Layout):
                lead = 2 if f.count is not None else 1          # (n, count, ...) or (n, ...)
                sub = {k: np.asarray(a).reshape((n * f.n,) + np.shape(a)[lead:]) for k, a in v.items()}
                parts.append(f.shape._planes(sub, n * f.n).reshape(n, -1))
            else:
                a = np.broadcast_to(np.asarray(v, dtype=np.int64).reshape(n, -1), (n, f.n))
                parts.append(((a[:, :, None] >> np.arange(f.shape, dtype=np.int64)) & 1)
                             .astype(np.uint8).reshape(n, -1))
        return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), dtype=np.uint8)

    def _values(self, planes):
        n, out, pos = planes.shape[0], {}, 0
        for f in self.fields:
            chunk = planes[:, pos:pos + f.bits]
            pos += f.bits
            if isinstance(f.shape, Layout):
                sub = f.shape._values(chunk.reshape(n * f.n, f.shape.bits))
                shape = (n, f.n) if f.count is not None else (n,)
                out[f.name] = {k: a.reshape(shape + a.shape[1:]) for k, a in sub.items()}
                continue
            b = chunk.reshape(n, f.n, f.shape).astype(np.int64)
            v = (b << np.arange(f.shape, dtype=np.int64)).sum(axis=2)
            if f.signed:
                v = np.where(v >= 1 << (f.shape - 1), v - (1 << f.shape), v)
            out[f.name] = v if f.count is not None else v[:, 0]
        return out

    @staticmethod
    def _count(values):
        """Records in `values`: the first axis of the first array (nested dicts searched)."""
        for v in values.values():
            n = Layout._count(v) if isinstance(v, dict) else (np.shape(v)[0] if np.ndim(v) else None)
            if n is not None:
                return n
        return None

    def _chunks(self, values, n):
        step = max(1, _CHUNK_BITS // max(1, self.bits))
        for i in range(0, n, step):
            yield i, _take(values, slice(i, i + step))

    # ---- encode / decode -----------------------------------------------------------------
    def to_words(self, h, n=None, **values):
        """n records -> host words (n, words(h)): uint64 for h <= 64, Python ints above.
        Each value is an array (n,) / (n, count) (or a dict of them for a nested field)."""
        n = (self._count(values) or 1) if n is None else n
        nw = self.words(h)
        out = np.zeros((n, nw), dtype=np.uint64 if h <= 64 else object)
        for i, vals in self._chunks(values, n):
            planes = self._planes(vals, min(n - i, max(1, _CHUNK_BITS // max(1, self.bits))))
            m = planes.shape[0]
            flat = np.zeros((m, nw * h), dtype=np.uint8)
            flat[:, :self.bits] = planes
            if h <= 64:
                full = np.zeros((m, nw, 64), dtype=np.uint8)
                full[:, :, :h] = flat.reshape(m, nw, h)
                out[i:i + m] = np.packbits(full, axis=-1, bitorder="little").view("<u8").reshape(m, nw)
            else:
                hb = -(-h // 8) * 8
                full = np.zeros((m, nw, hb), dtype=np.uint8)
                full[:, :, :h] = flat.reshape(m, nw, h)
                raw = np.packbits(full, axis=-1, bitorder="little").reshape(m * nw, hb // 8)
                out[i:i + m] = np.array(_ints_from_rows(raw), dtype=object).reshape(m, nw)
        return out

    def from_words(self, words, h):
        """Host words (n, words(h)) -> {field: int64 array (n,) or (n, count)} (nested: dicts)."""
        w = np.asarray(words)
        nw = self.words(h)
        w = w.reshape(-1, nw)
        n = w.shape[0]
        if h <= 64:
            planes = np.unpackbits(np.ascontiguousarray(w, dtype="<u8").view(np.uint8).reshape(n, nw, 8),
                                   axis=-1, bitorder="little")[:, :, :h]
        else:
            hb = -(-h // 8)
            raw = np.frombuffer(b"".join(int(v).to_bytes(hb, "little") for v in w.ravel()),
                                dtype=np.uint8).reshape(n, nw, hb)
            planes = np.unpackbits(raw, axis=-1, bitorder="little")[:, :, :h]
        return self._values(planes.reshape(n, nw * h)[:, :self.bits])

    def encode(self, **values):
        """One record -> Python int. Values: scalars, arrays (count,), dicts for nested fields."""
        words = self.to_words(64, n=1, **_lead(values))
        return _join(words[0], 64)

    def decode(self, value):
        """Python int -> one record's fields: int (scalar field), int64 array (count,), dicts nested."""
        nw = self.words(64)
        words = np.array([(int(value) >> (64 * i)) & ((1 << 64) - 1) for i in range(nw)],
                         dtype=np.uint64).reshape(1, nw)
        return record_at(self.from_words(words, 64), 0)

    # ---- hardware view -------------------------------------------------------------------
    def split(self, wire, nested=True):
        """{field: slice of `wire`} (a list of slices for a vector field, nested dicts for a nested
        Layout; with nested=False a nested Layout's elements stay whole slices), field 0 in the
        LSBs: the hardware reads the bits this table encodes. Hardware that writes a word joins
        the same table (nmaccel.hdl.signed.join)."""
        require(len(wire) >= self.bits, f"wire of {len(wire)} bits is narrower than the layout's {self.bits}")
        out = {}
        for f in self.fields:
            lo, eb = self.offsets[f.name], f.elem_bits
            elems = [wire[lo + i * eb:lo + (i + 1) * eb] for i in range(f.n)]
            if nested and isinstance(f.shape, Layout):
                elems = [f.shape.split(e) for e in elems]
            out[f.name] = elems[0] if f.count is None else elems
        return out

    def span(self, name, start=0, stop=None):
        """(lo, hi) bits of elements start .. stop-1 of field `name` (stop None: to its end)."""
        f = self.field(name)
        stop = f.n if stop is None else stop
        require(0 <= start <= stop <= f.n, f"field {name}: elements {start}..{stop} outside 0..{f.n}")
        lo = self.offsets[name]
        return lo + start * f.elem_bits, lo + stop * f.elem_bits

    def slice(self, wire, name, start=0, stop=None):
        """The contiguous slice of `wire` holding elements start .. stop-1 of field `name`."""
        require(len(wire) >= self.bits, f"wire of {len(wire)} bits is narrower than the layout's {self.bits}")
        lo, hi = self.span(name, start, stop)
        return wire[lo:hi]


def to_signed(values, width):
    """Two's-complement reinterpretation of unsigned `width`-bit values: int64 array, or an object
    array of Python ints above 63 bits."""
    if width > 63:
        return np.array([int(v) - (1 << width) if int(v) >> (width - 1) else int(v)
                         for v in np.asarray(values, dtype=object).ravel()], dtype=object)
    v = np.asarray(values)
    v = (v.astype(object) if v.dtype == object else v).astype(np.uint64).astype(np.int64)
    return np.where(v >> (width - 1) & 1, v - (1 << width), v)


def _take(values, sl):
    return {k: (_take(v, sl) if isinstance(v, dict) else
                (np.asarray(v)[sl] if np.ndim(v) > 0 else v)) for k, v in values.items()}


def record_at(values, i):
    """Record i of decoded values (from_words): ints for scalar fields, arrays for vectors."""
    return {k: (record_at(v, i) if isinstance(v, dict) else
                (int(v[i]) if np.ndim(v[i]) == 0 else v[i])) for k, v in values.items()}


def _lead(values):
    return {k: (_lead(v) if isinstance(v, dict) else np.asarray(v)[None]) for k, v in values.items()}


def _ints_from_rows(raw):
    return [int.from_bytes(r.tobytes(), "little") for r in raw]


def _join(words, h):
    v = 0
    for i, w in enumerate(words):
        v |= int(w) << (h * i)
    return v


# ---- the accelerator's words ---------------------------------------------------------------
def lane_layout(array_cfg):
    """One PE lane's load word: weight code (two's complement), window-local index, keep."""
    return Layout([("code", array_cfg.weight_bits, None, True), ("index", array_cfg.idx_bits),
                   ("keep", 1)])


def pe_word_layout(array_cfg):
    """A PE's weight input w_in_c: n_max lane words, lane 0 lowest."""
    return Layout([("lane", lane_layout(array_cfg), array_cfg.n_max)])


def stored_lane_layout(array_cfg):
    """One lane as a PE stores it after decoding: weight value (codebook-decoded, 0 unless kept) |
    window-local index."""
    return Layout([("weight", array_cfg.weight_bits, None, True), ("index", array_cfg.idx_bits)])


def pe_store_layout(array_cfg):
    """A PE's weight register (shifted PE to PE): n_max stored lanes, lane 0 lowest."""
    return Layout([("lane", stored_lane_layout(array_cfg), array_cfg.n_max)])


def codebook_layout(array_cfg):
    """A PE's codebook input cb_in_c: cb_entries signed weight_bits values, entry 0 lowest."""
    return Layout([("entry", array_cfg.weight_bits, array_cfg.cb_entries, True)])


def element_layout(array_cfg):
    """One activation element of a PE window: tokens_per_step signed act_bits values, token A
    lowest (INT4 token packing: token B above it)."""
    return Layout([("tok", array_cfg.act_bits, array_cfg.tokens_per_step, True)])


def window_layout(array_cfg):
    """A PE row's activation input x_in: m_max elements (element_layout), element 0 lowest."""
    return Layout([("elem", element_layout(array_cfg), array_cfg.m_max)])


def header_layout(top_cfg):
    """The job header: TopConfig.hdr_fields (mode, N:M, relu, raw, n_steps, n_kt, n_nt[, kt_per_group])."""
    return Layout(top_cfg.hdr_fields)


def activation_layout(top_cfg, int4=False):
    """rows x m_max signed activations of token A (row 0, element 0 lowest), then token B (INT4)."""
    a = top_cfg.array
    return Layout([("x", a.act_bits, (2 if int4 else 1) * a.rows * a.m_max, True)])


def weight_layout(top_cfg, codebook=False):
    """cols PE words (column 0 lowest) then, in codebook mode, the cols codebooks."""
    a = top_cfg.array
    f = [("lane", lane_layout(a), a.cols * a.n_max)]
    if codebook:
        f.append(("table", a.weight_bits, a.cols * a.cb_entries, True))
    return Layout(f)


def groupscale_layout(top_cfg):
    return Layout([("mult", top_cfg.gs_mult_bits, top_cfg.array.cols)])


def epilogue_column_layout(top_cfg):
    return Layout([("mult", top_cfg.mult_bits, None, True), ("shift", top_cfg.shift_bits),
                   ("bias", top_cfg.bias_bits, None, True)])


def epilogue_layout(top_cfg):
    return Layout([("col", epilogue_column_layout(top_cfg), top_cfg.array.cols)])


def output_layout(top_cfg):
    """tokens_per_step x cols signed raw_bits values, token A's columns first."""
    return Layout([("y", top_cfg.raw_bits, top_cfg.out_fields, True)])


def quad_row_layout(tile_cfg):
    """One Strassen tile quadrant row a<XY>_in: `lanes` signed act_bits activations, lane 0 lowest."""
    return Layout([("x", tile_cfg.act_bits, tile_cfg.lanes, True)])


def block_row_layout(tile_cfg):
    """One Strassen tile output c<XY>_out_<i>: cols signed comb_bits sums, column 0 lowest."""
    return Layout([("y", tile_cfg.comb_bits, tile_cfg.array.cols, True)])
