"""`PackedWeights`: the one packed format of N:M sparse, quantized weights (see docs/DESIGN.md).

File layout (version 1), all multi-byte numbers little-endian:
    magic  b"NMACCEL\\0"          8 bytes
    version u16                  FORMAT_VERSION
    header_len u32               length of the JSON header
    header  JSON (utf-8)         metadata + section table (name, offset, nbytes, count, type)
    payload                      sections, each a packed LSB-first field stream (nmaccel.pack.bitpack)
    crc32   u32                  zlib.crc32 of every byte before it
Sections: `values` (bits-wide codes; signed for symmetric uniform), `indices` (ceil(log2 M)-bit
positions, absent when dense), `scales` (IEEE FP16), `zero_points` (UINT<bits>, asymmetric only),
`codebook` (INT8, lloyd-max only).
"""
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from nmaccel.arch.config import M_GROUP_MAX
from nmaccel.errors import NmaccelError, require
from nmaccel.fileio import os_error_message, write_output
from nmaccel.pack.bitpack import IntType, pack_fields, pack_words, unpack_fields, words_to_memh

MAGIC = b"NMACCEL\x00"
FORMAT_VERSION = 1
QUANTIZERS = ("uniform", "lloyd-max")
GRANULARITIES = ("tensor", "channel", "group")
WEIGHT_BITS = (2, 4, 8)
SCALE_BITS = 16          # scales are stored as IEEE FP16
CODEBOOK_BITS = 8        # codebook levels are INT8


def index_bits(n_keep, m_group):
    """Bits of index metadata per kept value: ceil(log2 m_group), 0 when dense."""
    return 0 if n_keep == m_group else max(1, math.ceil(math.log2(m_group)))


def check_nm(n_keep, m_group):
    """Validate an N:M pair (1 <= n_keep <= m_group <= 16)."""
    for name, v in (("n_keep", n_keep), ("m_group", m_group)):
        require(isinstance(v, (int, np.integer)) and not isinstance(v, bool),
                f"{name} must be an integer, got {v!r}")
    require(1 <= m_group <= M_GROUP_MAX, f"m_group={m_group} is not supported: use 1 <= m_group <= {M_GROUP_MAX}")
    require(1 <= n_keep <= m_group, f"n_keep={n_keep} must satisfy 1 <= n_keep <= m_group={m_group} "
            f"(N:M keeps N of every M weights; use n_keep == m_group for dense)")


def _fp16_exact(a):
    return np.asarray(a, dtype=np.float32).astype(np.float16).astype(np.float32)


SECTION_NAMES = ("values", "indices", "scales", "zero_points", "codebook")


def _read_sections(h, payload, source, fix):
    """{name: int64 array} of a header's section table; every offset, size and shape is checked
    against the payload before anything is allocated."""
    require(isinstance(h, dict) and isinstance(h.get("sections"), list),
            f"{source}: corrupt header (no section table); {fix}")
    arrs = {}
    for s in h["sections"]:
        require(isinstance(s, dict) and isinstance(s.get("shape"), list) and s.get("name") in SECTION_NAMES,
                f"{source}: corrupt section entry; {fix}")
        off, nb, shape = s["offset"], s["nbytes"], s["shape"]
        require(all(type(v) is int and v >= 0 for v in [off, nb, *shape]) and len(shape) <= 3,
                f"{source}: corrupt section {s['name']!r} (offset/size/shape); {fix}")
        require(off + nb <= len(payload), f"{source}: section {s['name']!r} runs past the end; {fix}")
        it = IntType(s["bits"], s["signed"])
        count = math.prod(shape)
        require(count * it.bits <= nb * 8, f"{source}: section {s['name']!r} claims {count} values "
                f"in {nb} bytes; {fix}")
        arrs[s["name"]] = unpack_fields(payload[off:off + nb], it, count).reshape(shape)
    return arrs


@dataclass
class PackedWeights:
    """N:M-pruned, quantized weights with index metadata; see docs/DESIGN.md for every field."""
    out_features: int
    in_features: int
    n_keep: int
    m_group: int
    bits: int
    quantizer: str
    granularity: str
    group_size: Optional[int]
    values: np.ndarray
    indices: np.ndarray
    scales: np.ndarray
    zero_points: Optional[np.ndarray] = None
    codebook: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)    # free-form provenance (method, damping, layer name)

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def k_padded(self):
        return -(-self.in_features // self.m_group) * self.m_group

    @property
    def n_groups(self):
        return self.k_padded // self.m_group

    @property
    def index_bits(self):
        return index_bits(self.n_keep, self.m_group)

    @property
    def symmetric(self):
        return self.zero_points is None

    @property
    def dense(self):
        return self.n_keep == self.m_group

    @property
    def value_type(self):
        signed = self.quantizer == "uniform" and self.symmetric
        return IntType(self.bits, signed)

    @property
    def scale_group_cols(self):
        """K columns (padded coordinates) covered by one scale column."""
        return {"tensor": self.k_padded, "channel": self.k_padded, "group": self.group_size}[self.granularity]

    @property
    def n_scale_groups(self):
        return -(-self.k_padded // self.scale_group_cols)

    @property
    def shape(self):
        return (self.out_features, self.in_features)

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_dense_codes(cls, codes, mask, *, in_features, n_keep, m_group, bits, quantizer="uniform",
                         granularity="channel", group_size=None, scales, zero_points=None,
                         codebook=None, meta=None):
        """Build from dense (out, k_padded) codes and an N:M mask with exactly n_keep per group."""
        check_nm(n_keep, m_group)
        codes = np.asarray(codes)
        mask = np.asarray(mask, dtype=bool)
        require(codes.ndim == 2 and codes.shape == mask.shape,
                f"codes {codes.shape} and mask {mask.shape} must be the same 2-D shape")
        out, kp = codes.shape
        require(kp % m_group == 0, f"codes width {kp} is not a multiple of m_group={m_group}: pad K first")
        require(in_features <= kp < in_features + m_group,
                f"codes width {kp} does not match in_features={in_features} padded to m_group={m_group}")
        m3 = mask.reshape(out, kp // m_group, m_group)
        counts = m3.sum(axis=2)
        require(np.all(counts == n_keep), f"mask must keep exactly n_keep={n_keep} of every {m_group}: "
                f"found groups with {counts.min()}..{counts.max()} kept")
        idx = np.nonzero(m3)[2].reshape(out, kp // m_group, n_keep).astype(np.uint8)
        vals = np.take_along_axis(codes.reshape(out, kp // m_group, m_group), idx.astype(np.int64), axis=2)
        vdtype = np.int8 if (quantizer == "uniform" and zero_points is None) else np.uint8
        pw = cls(out_features=out, in_features=int(in_features), n_keep=int(n_keep), m_group=int(m_group),
                 bits=int(bits), quantizer=quantizer, granularity=granularity,
                 group_size=None if granularity != "group" else int(group_size),
                 values=vals.reshape(out, -1).astype(vdtype), indices=idx,
                 scales=_fp16_exact(scales),
                 zero_points=None if zero_points is None else np.asarray(zero_points, dtype=np.int16),
                 codebook=None if codebook is None else np.asarray(codebook, dtype=np.int8),
                 meta=dict(meta or {}))
        pw.validate()
        return pw

    def validate(self):
        """Check every field against the format's invariants; raise NmaccelError naming the problem."""
        check_nm(self.n_keep, self.m_group)
        require(self.out_features >= 1 and self.in_features >= 1,
                f"empty weight shape {self.shape}: need at least one row and one column")
        require(self.bits in WEIGHT_BITS, f"bits={self.bits} is not supported: use one of {WEIGHT_BITS}")
        require(self.quantizer in QUANTIZERS, f"unknown quantizer {self.quantizer!r}: use one of {QUANTIZERS}")
        require(self.granularity in GRANULARITIES,
                f"unknown granularity {self.granularity!r}: use one of {GRANULARITIES}")
        if self.granularity == "group":
            require(isinstance(self.group_size, (int, np.integer)) and self.group_size > 0
                    and self.group_size % self.m_group == 0,
                    f"group_size={self.group_size} must be a positive multiple of m_group={self.m_group}")
        out, ng, n = self.out_features, self.n_groups, self.n_keep
        require(self.values.shape == (out, ng * n), f"values shape {self.values.shape} != {(out, ng * n)}")
        self.value_type.check(self.values, "values")
        require(self.indices.shape == (out, ng, n), f"indices shape {self.indices.shape} != {(out, ng, n)}")
        idx = self.indices.astype(np.int64)
        require(idx.size == 0 or (idx.min() >= 0 and idx.max() < self.m_group),
                f"indices must be < m_group={self.m_group}")
        require(n == 1 or np.all(np.diff(idx, axis=2) > 0), "indices must be strictly ascending within a group")
        rows = 1 if self.granularity == "tensor" else out
        cols = 1 if self.granularity != "group" else self.n_scale_groups
        require(self.scales.shape == (rows, cols), f"scales shape {self.scales.shape} != {(rows, cols)} "
                f"for granularity {self.granularity!r}")
        require(np.all(np.isfinite(self.scales)) and np.all(self.scales >= 0), "scales must be finite and >= 0")
        if self.zero_points is not None:
            require(self.quantizer == "uniform", "zero points only exist for the uniform quantizer")
            require(self.zero_points.shape == self.scales.shape, "zero_points must have the shape of scales")
            IntType(self.bits, False).check(self.zero_points, "zero_points")
        if self.quantizer == "lloyd-max":
            require(self.codebook is not None and self.codebook.shape == (rows, cols, 1 << self.bits),
                    f"lloyd-max needs an INT8 codebook of shape {(rows, cols, 1 << self.bits)}")
        else:
            require(self.codebook is None, "only the lloyd-max quantizer has a codebook")
        return self

    # ---- views -------------------------------------------------------------------------------
    def _scale_col_of_k(self):
        return np.arange(self.k_padded) // self.scale_group_cols if self.granularity == "group" \
            else np.zeros(self.k_padded, dtype=np.int64)

    def _kept_cols(self):
        """Padded K column of every stored value, (out, n_groups * n_keep)."""
        base = (np.arange(self.n_groups) * self.m_group)[None, :, None]
        return (base + self.indices.astype(np.int64)).reshape(self.out_features, -1)

    def _kept_levels(self):
        """Integer level of every stored value (what a multiplier sees), (out, n_groups * n_keep)."""
        v = self.values.astype(np.int64)
        if self.quantizer == "uniform":
            if self.zero_points is None:
                return v
            zp = self.zero_points.astype(np.int64)
            sc = self._scale_col_of_k()[self._kept_cols()]
            return v - zp[np.arange(self.out_features)[:, None] if zp.shape[0] > 1 else 0, sc]
        cb = self.codebook.astype(np.int64)
        sc = self._scale_col_of_k()[self._kept_cols()]
        row = np.arange(self.out_features)[:, None] if cb.shape[0] > 1 else 0
        return cb[row, sc, v]

    def mask(self, padded=False):
        """Bool (out, in) [or (out, k_padded)] of kept positions."""
        m = np.zeros((self.out_features, self.k_padded), dtype=bool)
        np.put_along_axis(m, self._kept_cols(), True, axis=1)
        return m if padded else m[:, :self.in_features]

    def int_weights(self, padded=False):
        """Integer weight each hardware multiplier sees, int16 (out, in); 0 at pruned positions."""
        w = np.zeros((self.out_features, self.k_padded), dtype=np.int16)
        np.put_along_axis(w, self._kept_cols(), self._kept_levels().astype(np.int16), axis=1)
        return w if padded else w[:, :self.in_features]

    def column_scales(self, padded=False):
        """float32 scale applying to every (row, K column), (out, in)."""
        s = np.broadcast_to(self.scales[:, self._scale_col_of_k()], (self.out_features, self.k_padded))
        return s if padded else s[:, :self.in_features]

    def dequantize(self):
        """float32 (out, in) weights this packing represents."""
        return (self.int_weights().astype(np.float32) * self.column_scales()).astype(np.float32)

    # ---- storage -----------------------------------------------------------------------------
    def storage_breakdown(self):
        """Exact stored bits per section (no byte padding), as a dict."""
        count = self.values.size
        return {
            "values": count * self.bits,
            "indices": count * self.index_bits,
            "scales": self.scales.size * SCALE_BITS,
            "zero_points": 0 if self.zero_points is None else self.zero_points.size * self.bits,
            "codebook": 0 if self.codebook is None else self.codebook.size * CODEBOOK_BITS,
        }

    def storage_bits(self):
        """Exact bits including index metadata, scales, zero points and codebooks."""
        return int(sum(self.storage_breakdown().values()))

    def bits_per_weight(self):
        """storage_bits() per dense (out * in) weight."""
        return self.storage_bits() / (self.out_features * self.in_features)

    # ---- file I/O ----------------------------------------------------------------------------
    def _sections(self):
        secs = [("values", self.values, self.value_type)]
        if self.index_bits:
            secs.append(("indices", self.indices, IntType(self.index_bits, False)))
        secs.append(("scales", self.scales.astype(np.float16).view(np.uint16), IntType(SCALE_BITS, False)))
        if self.zero_points is not None:
            secs.append(("zero_points", self.zero_points, IntType(self.bits, False)))
        if self.codebook is not None:
            secs.append(("codebook", self.codebook, IntType(CODEBOOK_BITS, True)))
        return secs

    def to_bytes(self):
        self.validate()
        payload, table, off = [], [], 0
        for name, arr, it in self._sections():
            raw = pack_fields(arr, it)
            table.append({"name": name, "offset": off, "nbytes": len(raw), "shape": list(arr.shape),
                          "bits": it.bits, "signed": it.signed})
            payload.append(raw)
            off += len(raw)
        header = {"out_features": self.out_features, "in_features": self.in_features,
                  "n_keep": self.n_keep, "m_group": self.m_group, "bits": self.bits,
                  "quantizer": self.quantizer, "granularity": self.granularity,
                  "group_size": self.group_size, "symmetric": self.symmetric,
                  "sections": table, "meta": self.meta}
        hdr = json.dumps(header, sort_keys=True).encode()
        body = MAGIC + struct.pack("<HI", FORMAT_VERSION, len(hdr)) + hdr + b"".join(payload)
        return body + struct.pack("<I", zlib.crc32(body))

    def save(self, path, inputs=()):
        """Write through the one output writer (nmaccel.fileio): never over one of `inputs`,
        no partial file on failure."""
        return write_output(path, self.to_bytes(), inputs)

    @classmethod
    def from_bytes(cls, data, source="<bytes>"):
        fix = "re-create it with `nmaccel pack`"
        head = len(MAGIC) + 6
        require(len(data) >= head + 4, f"{source}: file too short ({len(data)} bytes) to be an nmaccel packed file; {fix}")
        require(data[:len(MAGIC)] == MAGIC, f"{source}: not an nmaccel packed file (bad magic); {fix}")
        version, hlen = struct.unpack("<HI", data[len(MAGIC):head])
        require(version == FORMAT_VERSION, f"{source}: packed format version {version} is not supported "
                f"(this nmaccel reads version {FORMAT_VERSION}); {fix}")
        require(head + hlen + 4 <= len(data), f"{source}: truncated file (header runs past the end); {fix}")
        (crc,) = struct.unpack("<I", data[-4:])
        require(zlib.crc32(data[:-4]) == crc, f"{source}: checksum mismatch: the file is truncated or corrupt; {fix}")
        try:
            h = json.loads(data[head:head + hlen].decode())
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise NmaccelError(f"{source}: corrupt header ({type(exc).__name__}): {fix}") from None
        payload = memoryview(data)[head + hlen:-4]
        try:
            arrs = _read_sections(h, payload, source, fix)
            out, inf, nk, mg = (h[k] for k in ("out_features", "in_features", "n_keep", "m_group"))
            require(all(type(v) is int and v >= 1 for v in (out, inf, nk, mg)),
                    f"{source}: corrupt header (shape or N:M not positive integers); {fix}")
            check_nm(nk, mg)
            ng = -(-inf // mg)
            # every later allocation is a multiple of the values section, itself bounded by the file
            require(arrs.get("values", np.zeros(0)).shape == (out, ng * nk),
                    f"{source}: values section does not match the header's shape; {fix}")
            if "indices" not in arrs:
                arrs["indices"] = np.broadcast_to(np.arange(h["m_group"]), (h["out_features"], ng, h["m_group"]))
            vdtype = np.int8 if (h["quantizer"] == "uniform" and h["symmetric"]) else np.uint8
            pw = cls(out_features=h["out_features"], in_features=h["in_features"], n_keep=h["n_keep"],
                     m_group=h["m_group"], bits=h["bits"], quantizer=h["quantizer"],
                     granularity=h["granularity"], group_size=h["group_size"],
                     values=arrs["values"].astype(vdtype), indices=arrs["indices"].astype(np.uint8),
                     scales=arrs["scales"].astype(np.uint16).view(np.float16).astype(np.float32),
                     zero_points=arrs["zero_points"].astype(np.int16) if "zero_points" in arrs else None,
                     codebook=arrs["codebook"].astype(np.int8) if "codebook" in arrs else None,
                     meta=h.get("meta", {}))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            if isinstance(exc, NmaccelError):
                raise NmaccelError(str(exc) if str(exc).startswith(source) else f"{source}: {exc}") from None
            raise NmaccelError(f"{source}: corrupt packed file ({type(exc).__name__}: {exc}); {fix}") from None
        pw.validate()
        return pw

    @classmethod
    def load(cls, path):
        """Read a .nmpack file (one read of its size; every section checked against it)."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise NmaccelError(f"{path}: no such packed file; create one with `nmaccel pack`") from None
        except IsADirectoryError:
            raise NmaccelError(f"{path} is a directory: pass a .nmpack file") from None
        except OSError as exc:
            raise NmaccelError(os_error_message(exc, path, "read")) from None
        return cls.from_bytes(data, source=path)

    # ---- exports -----------------------------------------------------------------------------
    def nvidia_24_metadata(self):
        """NVIDIA 2:4 layout: (values (out, K/2) as stored codes, metadata uint16 (out, K/16)).

        Each group of 4 gets a nibble `idx0 | idx1 << 2`; group g of a row sits in bits
        [4*(g % 4), 4*(g % 4) + 4) of metadata word g // 4 (torch `to_sparse_semi_structured`
        logical layout; keeping positions (2, 3) everywhere gives 0xEEEE).
        """
        require(self.n_keep == 2 and self.m_group == 4,
                f"NVIDIA 2:4 export needs n_keep=2, m_group=4 (this packing is {self.n_keep}:{self.m_group})")
        require(self.k_padded % 16 == 0, f"NVIDIA 2:4 export needs K multiple of 16 (K={self.in_features})")
        idx = self.indices.astype(np.uint16)
        nib = (idx[:, :, 0] | (idx[:, :, 1] << 2)).reshape(self.out_features, -1, 4)
        meta = (nib << (np.arange(4, dtype=np.uint16) * 4)).sum(axis=2, dtype=np.uint16)
        return self.values.copy(), meta.astype(np.uint16)

    def memory_image(self, section, word_bits=32):
        """Section (`values`, `indices`, `scales`, `zero_points`, `codebook`) as word_bits-wide words.

        Row-major order of the section's logical array, LSB-first fields (see bitpack), last word
        zero-padded. Returns a uint64 array of words.
        """
        secs = {n: (a, it) for n, a, it in self._sections()}
        require(section in secs, f"section {section!r} not in this packing: choose from {sorted(secs)}")
        arr, it = secs[section]
        return pack_words(arr, it, word_bits)

    def write_memh(self, path, section, word_bits=32):
        """Write a `$readmemh` image of one section atomically."""
        return write_output(path, words_to_memh(self.memory_image(section, word_bits), word_bits))

    def report(self):
        """Human-readable summary rows (key, value) for `nmaccel inspect`."""
        bd = self.storage_breakdown()
        n = self.out_features * self.in_features
        iw = self.int_weights()
        rows = [("shape (out, in)", f"{self.out_features} x {self.in_features} (K padded to {self.k_padded})"),
                ("N:M", "dense" if self.dense else f"{self.n_keep}:{self.m_group}"),
                ("weights", f"{self.quantizer} {self.bits}-bit {'symmetric' if self.symmetric else 'asymmetric'}"),
                ("scales", f"{self.granularity}" + (f" (group {self.group_size})" if self.granularity == "group" else "")
                 + f", {self.scales.size} x FP16"),
                ("index bits / kept value", self.index_bits),
                ("kept fraction", f"{self.mask().mean():.4f}"),
                ("int weight range", f"[{iw.min()}, {iw.max()}]")]
        rows += [(f"storage: {k}", f"{v} bits") for k, v in bd.items() if v]
        rows += [("storage total", f"{self.storage_bits()} bits = {self.storage_bits() / 8 / 1024:.1f} KiB"),
                 ("bits / weight", f"{self.storage_bits() / n:.4f}")]
        if self.meta:
            rows.append(("meta", json.dumps(self.meta, sort_keys=True)))
        return rows
