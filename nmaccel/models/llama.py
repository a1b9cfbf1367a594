"""Float32 numpy Llama forward pass (SmolLM2-135M from GGUF): RMSNorm, RoPE, GQA attention,
SwiGLU, tied LM head. Computes perplexity, greedy tokens, collects per-linear input
activations, and compresses every linear layer with (sequential) calibration.

GGUF names are kept: ``blk.{i}.attn_q.weight`` ... ``blk.{i}.ffn_down.weight`` (out, in).
GGUF stores Q/K rows permuted for llama.cpp's adjacent-pair RoPE, which is what we apply.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmaccel.errors import NmaccelError, require
from nmaccel.models.loaders import BUILTIN_MODELS, builtin_path, read_gguf

LINEAR_SUFFIXES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@dataclass(frozen=True)
class LlamaConfig:
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab_size: int
    rope_base: float
    rms_eps: float

    def __post_init__(self):
        require(self.n_layers > 0 and self.d_model > 0 and self.d_ff > 0, "bad Llama sizes")
        require(self.n_heads > 0 and self.d_model % self.n_heads == 0,
                f"d_model {self.d_model} not divisible by n_heads {self.n_heads}")
        require(self.n_kv_heads > 0 and self.n_heads % self.n_kv_heads == 0,
                f"n_heads {self.n_heads} not divisible by n_kv_heads {self.n_kv_heads}")
        require(self.head_dim % 2 == 0, "RoPE needs an even head dimension")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_gguf_metadata(cls, md: dict) -> "LlamaConfig":
        arch = md.get("general.architecture")
        require(arch == "llama", f"GGUF architecture {arch!r} is not 'llama': use a Llama GGUF")
        try:
            return cls(n_layers=int(md["llama.block_count"]), d_model=int(md["llama.embedding_length"]),
                       n_heads=int(md["llama.attention.head_count"]),
                       n_kv_heads=int(md.get("llama.attention.head_count_kv", md["llama.attention.head_count"])),
                       d_ff=int(md["llama.feed_forward_length"]),
                       vocab_size=int(md.get("llama.vocab_size", 0)),
                       rope_base=float(md.get("llama.rope.freq_base", 10000.0)),
                       rms_eps=float(md["llama.attention.layer_norm_rms_epsilon"]))
        except KeyError as exc:
            raise NmaccelError(f"GGUF metadata lacks {exc.args[0]!r}: not a complete Llama file") from None


def _rms_norm(x, w, eps):
    var = np.mean(np.square(x, dtype=np.float32), axis=-1, keepdims=True)
    return (x / np.sqrt(var + np.float32(eps))) * w


def _silu(x):
    return x / (np.float32(1.0) + np.exp(-x))


def _log_softmax(logits):
    m = logits.max(axis=-1, keepdims=True)
    z = logits - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class Llama:
    """Llama model on a dict of float32 weights. ``weights`` may be replaced per linear
    (``with_linears``) by pruned/quantized versions, e.g. ``PackedWeights.dequantize()``."""

    def __init__(self, weights: dict, config: LlamaConfig):
        self.config = config
        self.weights = dict(weights)
        c = config
        expect = {"token_embd.weight": None, "output_norm.weight": (c.d_model,)}
        for i in range(c.n_layers):
            kv = c.n_kv_heads * c.head_dim
            shapes = {"attn_q": (c.d_model, c.d_model), "attn_k": (kv, c.d_model), "attn_v": (kv, c.d_model),
                      "attn_output": (c.d_model, c.d_model), "ffn_gate": (c.d_ff, c.d_model),
                      "ffn_up": (c.d_ff, c.d_model), "ffn_down": (c.d_model, c.d_ff)}
            for s, shp in shapes.items():
                expect[f"blk.{i}.{s}.weight"] = shp
            expect[f"blk.{i}.attn_norm.weight"] = (c.d_model,)
            expect[f"blk.{i}.ffn_norm.weight"] = (c.d_model,)
        for name, shp in expect.items():
            require(name in self.weights, f"Llama weights lack {name!r}: not a complete model")
            if shp is not None:
                require(self.weights[name].shape == shp,
                        f"{name} has shape {self.weights[name].shape}, expected {shp}")
        emb = self.weights["token_embd.weight"]
        require(emb.ndim == 2 and emb.shape[1] == c.d_model, f"token_embd has shape {emb.shape}")
        self.lm_head = self.weights.get("output.weight", emb)  # tied embeddings when absent
        half = c.head_dim // 2
        self._inv_freq = (c.rope_base ** (-np.arange(half, dtype=np.float64) * 2.0 / c.head_dim))

    @classmethod
    def from_gguf(cls, path_or_name="smollm2") -> "Llama":
        path = builtin_path(path_or_name) if path_or_name in BUILTIN_MODELS else path_or_name
        model = read_gguf(path)
        return cls(model.weights, LlamaConfig.from_gguf_metadata(model.metadata))

    @property
    def vocab_size(self) -> int:
        return self.weights["token_embd.weight"].shape[0]

    def linear_names(self) -> list:
        """The 7 * n_layers Linear weight names, in execution order."""
        return [f"blk.{i}.{s}.weight" for i in range(self.config.n_layers) for s in LINEAR_SUFFIXES]

    def with_linears(self, replacements: dict) -> "Llama":
        """A model sharing all weights except ``replacements`` {name: float32 (out, in)}."""
        new = Llama.__new__(Llama)
        new.__dict__.update(self.__dict__)
        new.weights = dict(self.weights)
        for name, w in replacements.items():
            require(name in self.weights, f"unknown linear {name!r}")
            w = np.asarray(w, dtype=np.float32)
            require(w.shape == self.weights[name].shape,
                    f"replacement for {name} has shape {w.shape}, expected {self.weights[name].shape}")
            new.weights[name] = w
        return new

    # ------------------------------------------------------------ forward
    def _rope(self, x, positions):
        """Rotate adjacent pairs (x[2i], x[2i+1]) by pos * base^(-2i/d). x: (B, T, H, D)."""
        ang = positions[:, None].astype(np.float64) * self._inv_freq[None, :]
        cos = np.cos(ang).astype(np.float32)[None, :, None, :]
        sin = np.sin(ang).astype(np.float32)[None, :, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def _linear(self, name, x, on_input):
        """y = x @ W.T; on_input(name, x2d) may first replace self.weights[name]."""
        if on_input is not None:
            on_input(name, x.reshape(-1, x.shape[-1]))
        return x @ self.weights[name].T

    def block(self, i: int, h, on_input=None):
        """One decoder block on h (B, T, d_model) -> (B, T, d_model)."""
        c, w = self.config, self.weights
        b, t, _ = h.shape
        p = f"blk.{i}."
        x = _rms_norm(h, w[p + "attn_norm.weight"], c.rms_eps)
        q = self._linear(p + "attn_q.weight", x, on_input).reshape(b, t, c.n_heads, c.head_dim)
        k = self._linear(p + "attn_k.weight", x, on_input).reshape(b, t, c.n_kv_heads, c.head_dim)
        v = self._linear(p + "attn_v.weight", x, on_input).reshape(b, t, c.n_kv_heads, c.head_dim)
        pos = np.arange(t)
        q, k = self._rope(q, pos), self._rope(k, pos)
        rep = c.n_heads // c.n_kv_heads
        q = q.transpose(0, 2, 1, 3).reshape(b, c.n_kv_heads, rep * t, c.head_dim)  # group heads
        q = np.ascontiguousarray(q)  # stacked matmul uses BLAS only on contiguous operands
        k = np.ascontiguousarray(k.transpose(0, 2, 3, 1))  # (B, KV, D, T)
        v = np.ascontiguousarray(v.transpose(0, 2, 1, 3))  # (B, KV, T, D)
        scores = (q @ k).reshape(b, c.n_kv_heads, rep, t, t) * np.float32(1.0 / np.sqrt(c.head_dim))
        scores = np.where(np.tri(t, dtype=bool), scores, np.float32(-np.inf))
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        att = (scores.reshape(b, c.n_kv_heads, rep * t, t) @ v).reshape(b, c.n_heads, t, c.head_dim)
        att = att.transpose(0, 2, 1, 3).reshape(b, t, c.d_model)
        h = h + self._linear(p + "attn_output.weight", att, on_input)
        x = _rms_norm(h, w[p + "ffn_norm.weight"], c.rms_eps)
        act = _silu(self._linear(p + "ffn_gate.weight", x, on_input)) \
            * self._linear(p + "ffn_up.weight", x, on_input)
        return h + self._linear(p + "ffn_down.weight", act, on_input)

    def _check_tokens(self, tokens):
        tokens = np.asarray(tokens)
        if tokens.ndim == 1:
            tokens = tokens[None, :]
        require(tokens.ndim == 2 and tokens.shape[1] > 0, "tokens must be a non-empty (T,) or (B, T) array")
        require(np.issubdtype(tokens.dtype, np.integer), "tokens must be integer ids")
        require(tokens.min() >= 0 and tokens.max() < self.vocab_size,
                f"token ids must lie in [0, {self.vocab_size})")
        return tokens

    def hidden(self, tokens, on_input=None):
        """Final normalized hidden states (B, T, d_model)."""
        tokens = self._check_tokens(tokens)
        return self._blocks_from(0, self.weights["token_embd.weight"][tokens], on_input)

    def _blocks_from(self, i, h, on_input=None):
        """Blocks i.. on h (the input of block i), then the final norm."""
        for j in range(i, self.config.n_layers):
            h = self.block(j, h, on_input)
        return _rms_norm(h, self.weights["output_norm.weight"], self.config.rms_eps)

    def logits(self, tokens):
        """Logits (B, T, vocab) for (B, T) or (T,) tokens."""
        return self.hidden(tokens) @ self.lm_head.T

    def block_inputs(self, tokens):
        """Residual stream h at the input of every block, [(B, T, d_model)] * n_layers: with
        `nll_from` it re-runs only the blocks after a changed layer."""
        tokens = self._check_tokens(tokens)
        h = self.weights["token_embd.weight"][tokens]
        out = []
        for i in range(self.config.n_layers):
            out.append(h)
            h = self.block(i, h)
        return out

    def nll_from(self, tokens, i, h):
        """`nll(tokens)` computed from h, the input of block i (from `block_inputs` of a model whose
        blocks before i equal this one's)."""
        tokens = self._check_tokens(tokens)
        return self._nll_of(self._blocks_from(i, h), tokens)

    def nll(self, tokens):
        """(sum of -log p(token[t] | tokens[:t]) over t >= 1, count) for (B, T) tokens."""
        tokens = self._check_tokens(tokens)
        return self._nll_of(self.hidden(tokens), tokens)

    def _nll_of(self, h, tokens):
        total = 0.0
        for bi in range(tokens.shape[0]):  # one row of logits at a time bounds memory
            lp = _log_softmax(h[bi, :-1] @ self.lm_head.T)
            total -= float(lp[np.arange(tokens.shape[1] - 1), tokens[bi, 1:]].astype(np.float64).sum())
        return total, tokens.shape[0] * (tokens.shape[1] - 1)

    def perplexity(self, tokens, ctx: int = 256, batch: int = 4) -> float:
        """exp(mean NLL) over non-overlapping windows of ``ctx`` tokens (the last, shorter window
        included); each window starts a fresh context, its first token is not scored."""
        tokens = np.asarray(tokens).ravel()
        require(ctx >= 2 and tokens.size >= 2, "perplexity needs ctx >= 2 and at least 2 tokens")
        windows = [tokens[s:s + ctx] for s in range(0, tokens.size, ctx)]
        windows = [wd for wd in windows if wd.size >= 2]
        full = [wd for wd in windows if wd.size == ctx]
        rest = [wd for wd in windows if wd.size != ctx]
        total, count = 0.0, 0
        for s in range(0, len(full), batch):
            nl, n = self.nll(np.stack(full[s:s + batch]))
            total, count = total + nl, count + n
        for wd in rest:
            nl, n = self.nll(wd)
            total, count = total + nl, count + n
        return float(np.exp(total / count))

    def greedy(self, tokens, n_new: int) -> list:
        """Greedy continuation: ``n_new`` token ids (recomputes the full context per step)."""
        seq = list(np.asarray(tokens).ravel())
        for _ in range(n_new):
            h = self.hidden(np.array(seq))
            seq.append(int(np.argmax(h[0, -1] @ self.lm_head.T)))
        return seq[-n_new:] if n_new else []

    # ------------------------------------------------------------ calibration
    def collect_inputs(self, tokens, names=None) -> dict:
        """Input activations (n_tokens, in) of each Linear (all, or ``names``) on ``tokens``."""
        wanted = set(self.linear_names() if names is None else names)
        out = {}

        def grab(name, x):
            if name in wanted:
                out[name] = x.copy()
        self.hidden(tokens, grab)
        return out

    def compress(self, tokens, transform, sequential: bool = True, names=None) -> "Llama":
        """A new model whose Linears (all, or ``names``) are ``transform(name, w, x) -> w_new``,
        x = the layer's input activations (n_tokens, in) on calibration ``tokens`` (B, T).

        sequential=True: x comes from the model compressed so far (layer after layer, as in
        SparseGPT/GPTQ); False: x comes from the dense model (one-shot)."""
        tokens = self._check_tokens(tokens)
        wanted = set(self.linear_names() if names is None else names)
        model = self.with_linears({})
        new = {}

        def hook(name, x):
            if name in wanted:
                w = np.asarray(transform(name, self.weights[name], x), dtype=np.float32)
                require(w.shape == self.weights[name].shape,
                        f"transform returned {w.shape} for {name}, expected {self.weights[name].shape}")
                new[name] = w
                if sequential:
                    model.weights[name] = w
        h = self.weights["token_embd.weight"][tokens]
        for i in range(self.config.n_layers):
            h = model.block(i, h, hook)
        return self.with_linears(new)
