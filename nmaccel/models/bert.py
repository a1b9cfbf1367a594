"""Float32 numpy BERT encoder for MiniLM (all-MiniLM-L6-v2): uncased WordPiece tokenizer,
post-LayerNorm encoder (GELU), mean pooling. Collects per-linear inputs and compresses the
encoder linears with (sequential) calibration, like nmaccel.models.llama.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
from scipy.special import erf

from nmaccel.errors import require
from nmaccel.models.loaders import builtin_path, load_safetensors

LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value",
           "attention.output.dense", "intermediate.dense", "output.dense")


class WordPiece:
    """BERT uncased tokenizer: clean, lowercase, strip accents, split punctuation, then greedy
    longest-match WordPiece with ``##`` continuations. ``encode`` adds [CLS] ... [SEP]."""

    def __init__(self, vocab_path):
        self.tokens = Path(vocab_path).read_text(encoding="utf-8").split("\n")
        if self.tokens and self.tokens[-1] == "":
            self.tokens.pop()
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        for special in ("[UNK]", "[CLS]", "[SEP]"):
            require(special in self.vocab, f"{vocab_path} lacks {special}: not a BERT vocab.txt")

    @staticmethod
    def _basic(text):
        text = unicodedata.normalize("NFD", text.lower())
        out, word = [], []
        for ch in text:
            cat = unicodedata.category(ch)
            if cat == "Mn" or ch == "\x00" or ch == "\ufffd" or (cat.startswith("C") and ch not in "\t\n\r"):
                continue
            if ch.isspace():
                if word:
                    out.append("".join(word))
                    word = []
            elif cat.startswith("P") or (ch.isascii() and not ch.isalnum()) or 0x4E00 <= ord(ch) <= 0x9FFF:
                if word:
                    out.append("".join(word))
                    word = []
                out.append(ch)
            else:
                word.append(ch)
        if word:
            out.append("".join(word))
        return out

    def _wordpiece(self, word):
        if len(word) > 100:
            return [self.vocab["[UNK]"]]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:
                return [self.vocab["[UNK]"]]
            start = end
        return ids

    def encode(self, text, max_len=512):
        ids = [i for w in self._basic(text) for i in self._wordpiece(w)][:max_len - 2]
        return [self.vocab["[CLS]"]] + ids + [self.vocab["[SEP]"]]


def _layer_norm(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = np.square(x - mu).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + np.float32(eps)) * g + b


def _gelu(x):
    return (0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))).astype(np.float32)


class MiniLM:
    """BERT encoder (float32) on a MiniLM weight dict; hidden size / heads from the weights."""

    def __init__(self, weights, n_heads=12):
        self.weights = dict(weights)
        self.n_layers = sum(1 for k in weights if k.endswith("attention.self.query.weight"))
        require(self.n_layers > 0, "weights hold no BERT encoder layers")
        self.d = self.weights["embeddings.word_embeddings.weight"].shape[1]
        require(self.d % n_heads == 0, f"hidden size {self.d} not divisible by {n_heads} heads")
        self.n_heads = n_heads

    @classmethod
    def builtin(cls):
        path = builtin_path("minilm")
        return cls(load_safetensors(path)), WordPiece(path.parent / "vocab.txt")

    def linear_names(self):
        return [f"encoder.layer.{i}.{s}.weight" for i in range(self.n_layers) for s in LINEARS]

    def with_linears(self, replacements):
        new = MiniLM.__new__(MiniLM)
        new.__dict__.update(self.__dict__)
        new.weights = dict(self.weights)
        for k, v in replacements.items():
            require(k in self.weights and np.shape(v) == self.weights[k].shape, f"bad replacement for {k}")
            new.weights[k] = np.asarray(v, np.float32)
        return new

    def _linear(self, p, x, on_input):
        if on_input is not None:
            on_input(p + ".weight", x.reshape(-1, x.shape[-1]))
        return x @ self.weights[p + ".weight"].T + self.weights[p + ".bias"]

    def _embed(self, ids):
        w = self.weights
        ids = np.asarray(ids)
        require(ids.ndim == 1 and 0 < ids.size <= w["embeddings.position_embeddings.weight"].shape[0],
                "ids must be one sequence of 1..512 tokens")
        h = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:ids.size]
             + w["embeddings.token_type_embeddings.weight"][0])
        return _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])

    def layer(self, i, h, on_input=None):
        """Encoder layer i on h (T, d) -> (T, d); on_input(name, x) sees each linear's input first."""
        w = self.weights
        t, hd = h.shape[0], self.d // self.n_heads
        p = f"encoder.layer.{i}."
        q, k, v = (self._linear(p + s, h, on_input).reshape(t, self.n_heads, hd).transpose(1, 0, 2)
                   for s in LINEARS[:3])
        s = q @ k.transpose(0, 2, 1) * np.float32(1 / np.sqrt(hd))
        s = np.exp(s - s.max(-1, keepdims=True))
        a = ((s / s.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(t, self.d)
        h = _layer_norm(h + self._linear(p + "attention.output.dense", a, on_input),
                        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
        f = _gelu(self._linear(p + "intermediate.dense", h, on_input))
        return _layer_norm(h + self._linear(p + "output.dense", f, on_input),
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])

    def hidden(self, ids, on_input=None):
        """Last hidden states (T, d) of one token sequence (no padding)."""
        h = self._embed(ids)
        for i in range(self.n_layers):
            h = self.layer(i, h, on_input)
        return h

    def embed(self, ids):
        """Sentence embedding: mean-pooled last hidden state, L2-normalized."""
        e = self.hidden(ids).mean(0)
        return e / np.linalg.norm(e)

    def collect_inputs(self, sequences, names=None):
        """{linear name: (tokens, in) inputs} over a list of token sequences."""
        wanted = set(self.linear_names() if names is None else names)
        out = {}
        for ids in sequences:
            self.hidden(ids, lambda n, x: out.setdefault(n, []).append(x.copy()) if n in wanted else None)
        return {k: np.concatenate(v) for k, v in out.items()}

    def compress(self, sequences, transform, sequential=True, names=None):
        """New model with linears ``transform(name, w, x)``, x = that linear's inputs over all
        calibration ``sequences``: from the model compressed so far (sequential, linear after
        linear) or from the dense model."""
        wanted = set(self.linear_names() if names is None else names)
        model, new = self.with_linears({}), {}
        hs = [self._embed(ids) for ids in sequences]
        for i in range(self.n_layers):
            layer_names = [f"encoder.layer.{i}.{s}.weight" for s in LINEARS]
            for name in layer_names:  # inputs of `name` need this layer's earlier linears replaced
                if name not in wanted:
                    continue
                xs = []

                def grab(n, x):
                    if n == name:
                        xs.append(x.copy())
                src = model if sequential else self
                for h in hs:
                    src.layer(i, h, grab)
                new[name] = np.asarray(transform(name, self.weights[name], np.concatenate(xs)), np.float32)
                if sequential:
                    model.weights[name] = new[name]
            hs = [(model if sequential else self).layer(i, h) for h in hs]
        return self.with_linears(new)
