"""Packed format: bit order known answers, round trips, corrupt files, exports."""
import os
import struct
import zlib

import numpy as np
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.pack.bitpack import IntType, pack_fields, pack_words, unpack_fields, words_to_memh
from nmaccel.pack.format import FORMAT_VERSION, MAGIC, PackedWeights, index_bits


# ---- bit packing known answers (FINN data_packing style) --------------------------------------
@pytest.mark.parametrize("vals,itype,hexstr", [
    ([1, -2, 7], IntType(4, True), "e107"),
    ([-8, 7], IntType(4, True), "78"),
    ([1, 2, 3, 0], IntType(2, False), "39"),
    ([-2, 1, -1, 0], IntType(2, True), "36"),
    ([-128, 127, -1], IntType(8, True), "807fff"),
    ([5, 3, 7], IntType(3, False), "dd01"),      # 101 011 111 -> bits LSB-first 0b1_1101_1101
    ([0xABCD], IntType(16, False), "cdab"),
])
def test_pack_fields_known_answer(vals, itype, hexstr):
    assert pack_fields(vals, itype).hex() == hexstr
    np.testing.assert_array_equal(unpack_fields(bytes.fromhex(hexstr), itype, len(vals)), vals)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8, 12, 16])
@pytest.mark.parametrize("signed", [True, False])
def test_pack_fields_round_trip(bits, signed):
    it = IntType(bits, signed)
    rng = np.random.default_rng(bits * 2 + signed)
    v = rng.integers(it.min, it.max + 1, size=257)
    v[:2] = [it.min, it.max]
    np.testing.assert_array_equal(unpack_fields(pack_fields(v, it), it, v.size), v)


def test_pack_fields_range_and_truncation_errors():
    with pytest.raises(NmaccelError, match="out of INT4 range"):
        pack_fields([8], IntType(4, True))
    with pytest.raises(NmaccelError, match="too short"):
        unpack_fields(b"\x00", IntType(4, True), 3)


def test_pack_words_and_memh_known_answer():
    w = pack_words([1, 2, 3, 4, 5], IntType(8, False), 32)
    assert [hex(int(x)) for x in w] == ["0x4030201", "0x5"]
    assert words_to_memh(w, 32) == "04030201\n00000005\n"


# ---- PackedWeights helpers ----------------------------------------------------------------------
def random_packed(seed, out=6, k=21, n_keep=2, m_group=4, bits=4, quantizer="uniform",
                  granularity="channel", group_size=None, asym=False):
    rng = np.random.default_rng(seed)
    kp = -(-k // m_group) * m_group
    scores = rng.random((out, kp // m_group, m_group))
    idx = np.argsort(-scores, axis=2)[:, :, :n_keep]
    mask = np.zeros_like(scores, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=2)
    mask = mask.reshape(out, kp)
    rows = 1 if granularity == "tensor" else out
    cols = -(-kp // group_size) if granularity == "group" else 1
    scales = rng.random((rows, cols)).astype(np.float32) + 0.01
    zp = cb = None
    if quantizer == "lloyd-max":
        codes = rng.integers(0, 1 << bits, (out, kp))
        cb = np.sort(rng.integers(-128, 128, (rows, cols, 1 << bits)), axis=2)
    elif asym:
        codes = rng.integers(0, 1 << bits, (out, kp))
        zp = rng.integers(0, 1 << bits, (rows, cols))
    else:
        codes = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (out, kp))
    pw = PackedWeights.from_dense_codes(codes, mask, in_features=k, n_keep=n_keep, m_group=m_group, bits=bits,
                                        quantizer=quantizer, granularity=granularity, group_size=group_size,
                                        scales=scales, zero_points=zp, codebook=cb)
    return pw, codes, mask, scales, zp, cb


CASES = [
    dict(n_keep=2, m_group=4, bits=4),
    dict(n_keep=1, m_group=4, bits=8),
    dict(n_keep=3, m_group=8, bits=2, granularity="tensor"),
    dict(n_keep=4, m_group=4, bits=8),                                  # dense
    dict(n_keep=8, m_group=16, bits=4, granularity="group", group_size=32, k=70),
    dict(n_keep=2, m_group=4, bits=4, quantizer="lloyd-max", granularity="group", group_size=8),
    dict(n_keep=1, m_group=2, bits=2, quantizer="lloyd-max"),
    dict(n_keep=2, m_group=8, bits=4, asym=True, granularity="group", group_size=16),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_int_weights_dequantize_round_trip(case, tmp_path):
    pw, codes, mask, scales, zp, cb = random_packed(7, **case)
    out, kp = codes.shape
    gcols = pw.scale_group_cols
    scol = np.arange(kp) // gcols if pw.granularity == "group" else np.zeros(kp, int)
    r = np.arange(out)[:, None] if scales.shape[0] > 1 else np.zeros((out, 1), int)
    if pw.quantizer == "lloyd-max":
        level = cb[r, scol[None, :], codes]
    elif zp is not None:
        level = codes - zp[r, scol[None, :]]
    else:
        level = codes
    expect = np.where(mask, level, 0)
    np.testing.assert_array_equal(pw.int_weights(padded=True), expect)
    np.testing.assert_array_equal(pw.int_weights(), expect[:, :pw.in_features])
    np.testing.assert_array_equal(pw.mask(), mask[:, :pw.in_features])
    s16 = scales.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(pw.dequantize(), (expect * s16[r, scol[None, :]])[:, :pw.in_features]
                                  .astype(np.float32))
    # file round trip
    path = tmp_path / "w.nmpack"
    pw.save(path)
    back = PackedWeights.load(path)
    for name in ("values", "indices", "scales"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pw, name))
    np.testing.assert_array_equal(back.int_weights(), pw.int_weights())
    np.testing.assert_array_equal(back.dequantize(), pw.dequantize())
    assert back.storage_bits() == pw.storage_bits()


def test_storage_bits_exact_24_int4_g128():
    pw, *_ = random_packed(1, out=8, k=256, n_keep=2, m_group=4, bits=4, granularity="group", group_size=128)
    # 128 kept per row * (4 value + 2 index bits) + 2 FP16 scales per row
    assert pw.storage_bits() == 8 * (128 * 6 + 2 * 16)
    assert pw.bits_per_weight() == pytest.approx(3.125)


def test_index_bits():
    assert [index_bits(n, m) for n, m in [(2, 4), (1, 2), (3, 8), (8, 16), (4, 4), (1, 5)]] == [2, 1, 3, 4, 0, 3]


def test_nvidia_24_metadata_known_answer():
    out, k = 3, 32
    codes = np.arange(out * k).reshape(out, k) % 8 - 4
    mask = np.tile([False, False, True, True], (out, k // 4))
    pw = PackedWeights.from_dense_codes(codes, mask, in_features=k, n_keep=2, m_group=4, bits=4,
                                        scales=np.ones((out, 1)))
    vals, meta = pw.nvidia_24_metadata()
    assert meta.dtype == np.uint16 and meta.shape == (out, k // 16)
    assert np.all(meta == 0xEEEE)
    np.testing.assert_array_equal(vals, codes[mask].reshape(out, -1))
    mask2 = np.tile([True, True, False, False, True, False, False, True], (out, k // 8))   # (0,1) then (0,3)
    pw2 = PackedWeights.from_dense_codes(codes, mask2, in_features=k, n_keep=2, m_group=4, bits=4,
                                         scales=np.ones((out, 1)))
    assert np.all(pw2.nvidia_24_metadata()[1] == 0xC4C4)
    with pytest.raises(NmaccelError, match="n_keep=2, m_group=4"):
        random_packed(0, n_keep=1, m_group=4)[0].nvidia_24_metadata()


def test_memory_image_matches_bit_order(tmp_path):
    pw, *_ = random_packed(3, out=2, k=8, n_keep=2, m_group=4, bits=4)
    words = pw.memory_image("values", word_bits=16)
    flat = pw.values.ravel().astype(int) & 0xF
    expect = [sum(int(flat[i + j]) << (4 * j) for j in range(4)) for i in range(0, flat.size, 4)]
    assert [int(w) for w in words] == expect
    path = tmp_path / "values.memh"
    pw.write_memh(path, "indices", word_bits=8)
    lines = path.read_text().split()
    idx = pw.indices.ravel().astype(int)
    assert int(lines[0], 16) == idx[0] | idx[1] << 2 | idx[2] << 4 | idx[3] << 6
    with pytest.raises(NmaccelError, match="section"):
        pw.memory_image("codebook")


# ---- corrupt files ---------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    pw, *_ = random_packed(5, granularity="group", group_size=8)
    path = tmp_path / "w.nmpack"
    pw.save(path)
    return path


def test_truncated_file(saved):
    data = saved.read_bytes()
    for cut in (3, 20, len(data) // 2, len(data) - 1):
        saved.write_bytes(data[:cut])
        with pytest.raises(NmaccelError, match="truncated|too short|checksum"):
            PackedWeights.load(saved)


def test_corrupt_byte(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) - 10] ^= 0x40
    saved.write_bytes(bytes(data))
    with pytest.raises(NmaccelError, match="checksum"):
        PackedWeights.load(saved)


def test_wrong_magic_and_version(saved):
    data = saved.read_bytes()
    saved.write_bytes(b"XXXXXXXX" + data[8:])
    with pytest.raises(NmaccelError, match="bad magic"):
        PackedWeights.load(saved)
    body = MAGIC + struct.pack("<H", FORMAT_VERSION + 1) + data[10:-4]
    saved.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(NmaccelError, match="version"):
        PackedWeights.load(saved)


def test_corrupt_header_with_valid_checksum(saved):
    data = saved.read_bytes()
    hlen = struct.unpack("<I", data[10:14])[0]
    body = data[:14] + b"{" * hlen + data[14 + hlen:-4]
    saved.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(NmaccelError, match="corrupt header"):
        PackedWeights.load(saved)


def test_missing_file(tmp_path):
    with pytest.raises(NmaccelError, match="no such packed file"):
        PackedWeights.load(tmp_path / "nope.nmpack")


def test_save_is_atomic(tmp_path, monkeypatch):
    pw, *_ = random_packed(2)
    path = tmp_path / "w.nmpack"

    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(NmaccelError, match="no space left"):
        pw.save(path)
    assert list(tmp_path.iterdir()) == []


def test_invalid_mask_and_nm():
    codes = np.zeros((2, 8), int)
    with pytest.raises(NmaccelError, match="exactly n_keep"):
        PackedWeights.from_dense_codes(codes, np.ones((2, 8), bool), in_features=8, n_keep=2, m_group=4, bits=4,
                                       scales=np.ones((2, 1)))
    with pytest.raises(NmaccelError, match="n_keep=5"):
        PackedWeights.from_dense_codes(codes, np.ones((2, 8), bool), in_features=8, n_keep=5, m_group=4, bits=4,
                                       scales=np.ones((2, 1)))
    with pytest.raises(NmaccelError, match="m_group=32"):
        PackedWeights.from_dense_codes(np.zeros((2, 32), int), np.ones((2, 32), bool), in_features=32, n_keep=2,
                                       m_group=32, bits=4, scales=np.ones((2, 1)))
    with pytest.raises(NmaccelError, match="out of INT4"):
        PackedWeights.from_dense_codes(codes + 9, np.ones((2, 8), bool), in_features=8, n_keep=4, m_group=4,
                                       bits=4, scales=np.ones((2, 1)))
