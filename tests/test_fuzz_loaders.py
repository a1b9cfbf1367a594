"""Property-based fuzzing of every loader (.nmpack, .safetensors, .gguf, .npy, .npz).

Each example takes a small valid file and truncates it, flips bits or overwrites a header value
with an extreme integer. The loader must either raise NmaccelError (one line) or load; it must
never raise anything else, hang (hypothesis deadline) or allocate more than ALLOC_FACTOR x the
file size + ALLOC_SLACK (tracemalloc peak; numpy reports its buffers to tracemalloc).
Examples per test: NMACCEL_FUZZ_EXAMPLES (CI default 60; benchmarks/fuzz_loaders.py runs more).
"""
import io
import itertools
import os
import struct
import tempfile
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from nmaccel.models import loaders as models
from nmaccel.errors import NmaccelError
from nmaccel.pack.api import pack_weights
from nmaccel.pack.format import PackedWeights

EXAMPLES = int(os.environ.get("NMACCEL_FUZZ_EXAMPLES", "60"))
# Linear in the file size: unpacking a 4-bit field goes through one int64 per bit (x 512 per byte).
ALLOC_FACTOR = 1024
ALLOC_SLACK = 4 << 20
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
CASES = {}        # format -> examples run (read by benchmarks/fuzz_loaders.py)
_TMP = tempfile.mkdtemp(prefix="nmaccel_fuzz_")
_SEQ = itertools.count()


def _nmpack_bytes():
    w = np.random.default_rng(14).standard_normal((8, 32)).astype(np.float32)
    return pack_weights(w, n_keep=2, m_group=4, bits=4, group_size=16).to_bytes()


def _safetensors_bytes():
    from safetensors.numpy import save
    rng = np.random.default_rng(15)
    return save({"a.weight": rng.standard_normal((4, 8)).astype(np.float32),
                 "b.bias": rng.standard_normal(8).astype(np.float16)})


def _gguf_bytes():
    import gguf
    path = os.path.join(_TMP, "seed.gguf")
    wr = gguf.GGUFWriter(path, "llama")
    wr.add_string("general.name", "fuzz")
    wr.add_uint32("llama.block_count", 1)
    wr.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    rng = np.random.default_rng(16)
    wr.add_tensor("blk.0.attn_q.weight", rng.standard_normal((4, 32)).astype(np.float32))
    wr.add_tensor("blk.0.ffn.weight", rng.standard_normal((2, 32)).astype(np.float16))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    with open(path, "rb") as f:
        return f.read()


def _npy_bytes():
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(17).standard_normal((6, 5)).astype(np.float32))
    return buf.getvalue()


def _npz_bytes():
    buf = io.BytesIO()
    rng = np.random.default_rng(18)
    np.savez_compressed(buf, w=rng.standard_normal((6, 5)).astype(np.float32), b=np.arange(4, dtype=np.int16))
    return buf.getvalue()


def _load_file(suffix):
    def load(data):
        path = os.path.join(_TMP, f"f{next(_SEQ)}{suffix}")
        with open(path, "wb") as f:
            f.write(data)
        try:
            return models.load_weights(path)
        finally:
            os.unlink(path)
    return load


FORMATS = {
    ".nmpack": (_nmpack_bytes, lambda data: PackedWeights.from_bytes(data, "fuzz.nmpack")),
    ".safetensors": (_safetensors_bytes, _load_file(".safetensors")),
    ".gguf": (_gguf_bytes, _load_file(".gguf")),
    ".npy": (_npy_bytes, _load_file(".npy")),
    ".npz": (_npz_bytes, _load_file(".npz")),
}
_SEEDS = {}


def seed_bytes(fmt):
    if fmt not in _SEEDS:
        _SEEDS[fmt] = FORMATS[fmt][0]()
    return _SEEDS[fmt]


def check_load(fmt, data):
    """Clean error or load; never another exception; allocation bounded by the file size."""
    CASES[fmt] = CASES.get(fmt, 0) + 1
    tracemalloc.start()
    try:
        try:
            FORMATS[fmt][1](data)
        except NmaccelError as exc:
            assert "\n" not in str(exc), f"multi-line error: {exc!r}"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= ALLOC_FACTOR * len(data) + ALLOC_SLACK, f"{fmt}: peak {peak} B for a {len(data)} B file"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_seed_files_load(fmt):
    """The unmutated seeds load (so a mutation that is refused is refused for its mutation)."""
    FORMATS[fmt][1](seed_bytes(fmt))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_fuzz_truncation(fmt):
    @FUZZ
    @given(cut=st.integers(min_value=0))
    def run(cut):
        data = seed_bytes(fmt)
        check_load(fmt, data[:cut % len(data)])
    run()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_fuzz_bit_flips(fmt):
    @FUZZ
    @given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 7)), min_size=1, max_size=8))
    def run(flips):
        data = bytearray(seed_bytes(fmt))
        for pos, bit in flips:
            data[pos % len(data)] ^= 1 << bit
        check_load(fmt, bytes(data))
    run()


EXTREMES = st.sampled_from([0, 1, 2, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF,
                            0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 1 << 40, 1 << 33])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_fuzz_header_values(fmt):
    """Overwrite a little-endian integer (1/2/4/8 bytes) inside the header region with an extreme
    or random value: counts, lengths, offsets, dims and types a header claims."""
    @FUZZ
    @given(pos=st.integers(min_value=0), width=st.sampled_from([1, 2, 4, 8]),
           value=st.one_of(EXTREMES, st.integers(min_value=0, max_value=(1 << 64) - 1)))
    def run(pos, width, value):
        data = bytearray(seed_bytes(fmt))
        head = min(len(data) - width, 512)
        pos = pos % max(head, 1)
        data[pos:pos + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        check_load(fmt, bytes(data))
    run()


def test_nmpack_header_fields_fuzzed():
    """Rewrite the .nmpack JSON header itself (re-checksummed so it reaches the parser): huge
    dims, negative/huge section offsets and shapes, wrong types, deep nesting."""
    import json
    import zlib
    from nmaccel.pack.format import MAGIC

    data = seed_bytes(".nmpack")
    head = len(MAGIC) + 6
    (hlen,) = struct.unpack("<I", data[len(MAGIC) + 2:head])
    header = json.loads(data[head:head + hlen])
    payload = data[head + hlen:-4]
    weird = st.one_of(st.integers(min_value=-(1 << 63), max_value=1 << 64), st.text(max_size=3),
                      st.none(), st.lists(st.integers(-3, 1 << 40), max_size=4), st.booleans())

    version = data[len(MAGIC):len(MAGIC) + 2]

    def rebuild(h):
        hdr = h if isinstance(h, bytes) else json.dumps(h).encode()
        body = MAGIC + version + struct.pack("<I", len(hdr)) + hdr + payload
        return body + struct.pack("<I", zlib.crc32(body))

    @FUZZ
    @given(key=st.sampled_from(["out_features", "in_features", "n_keep", "m_group", "bits", "group_size",
                                "quantizer", "granularity", "sections"]),
           sec=st.integers(0, 3), field=st.sampled_from(["offset", "nbytes", "shape", "bits", "signed", "name"]),
           value=weird, top=st.booleans())
    def run(key, sec, field, value, top):
        h = json.loads(json.dumps(header))
        if top:
            h[key] = value
        else:
            h["sections"][sec % len(h["sections"])][field] = value
        check_load(".nmpack", rebuild(h))
    run()
    check_load(".nmpack", rebuild(b"[" * 100_000 + b"]" * 100_000))      # RecursionError in json
    check_load(".nmpack", rebuild({"sections": [[[[[]]]]] * 2}))
