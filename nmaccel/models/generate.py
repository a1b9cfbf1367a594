"""Data-free calibration: token sequences sampled from the dense Llama model itself, with a KV cache
in the numpy forward (no corpus needed; as LLM-QAT's data-free generation, Liu et al. 2023,
arXiv:2305.17888: a random first token, then sampling from the model's own distribution).

Generated tokens are cached as .npy under $NMACCEL_CACHE (default ~/.cache/nmaccel), keyed by a
hash of the model weights, the sizes, the temperature and the seed; set NMACCEL_CACHE=off to
disable the cache.
"""
import hashlib
import io
import os

import numpy as np

from nmaccel.errors import require
from nmaccel.fileio import atomic_write


def _rms(x, w, eps):
    var = np.mean(np.square(x, dtype=np.float32), axis=-1, keepdims=True)
    return (x / np.sqrt(var + np.float32(eps))) * w


class KVCache:
    """Per-layer key / value caches (B, n_kv_heads, max_len, head_dim) of a Llama model."""

    def __init__(self, model, batch, max_len):
        c = model.config
        shape = (batch, c.n_kv_heads, max_len, c.head_dim)
        self.k = [np.zeros(shape, np.float32) for _ in range(c.n_layers)]
        self.v = [np.zeros(shape, np.float32) for _ in range(c.n_layers)]
        self.len = 0


def _block_step(model, i, h, pos, cache):
    """Llama.block for one new position `pos` of every sequence, h (B, 1, d) -> (B, 1, d)."""
    c, w = model.config, model.weights
    b = h.shape[0]
    p = f"blk.{i}."
    x = _rms(h, w[p + "attn_norm.weight"], c.rms_eps)
    q = (x @ w[p + "attn_q.weight"].T).reshape(b, 1, c.n_heads, c.head_dim)
    k = (x @ w[p + "attn_k.weight"].T).reshape(b, 1, c.n_kv_heads, c.head_dim)
    v = (x @ w[p + "attn_v.weight"].T).reshape(b, 1, c.n_kv_heads, c.head_dim)
    at = np.array([pos])
    q, k = model._rope(q, at), model._rope(k, at)
    cache.k[i][:, :, pos] = k[:, 0]
    cache.v[i][:, :, pos] = v[:, 0]
    rep = c.n_heads // c.n_kv_heads
    qg = q[:, 0].reshape(b, c.n_kv_heads, rep, c.head_dim)
    kk, vv = cache.k[i][:, :, :pos + 1], cache.v[i][:, :, :pos + 1]
    s = np.einsum("bgrd,bgtd->bgrt", qg, kk) * np.float32(1.0 / np.sqrt(c.head_dim))
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    s /= s.sum(axis=-1, keepdims=True)
    att = np.einsum("bgrt,bgtd->bgrd", s, vv).reshape(b, 1, c.d_model)
    h = h + att @ w[p + "attn_output.weight"].T
    x = _rms(h, w[p + "ffn_norm.weight"], c.rms_eps)
    g = x @ w[p + "ffn_gate.weight"].T
    act = g / (np.float32(1.0) + np.exp(-g)) * (x @ w[p + "ffn_up.weight"].T)
    return h + act @ w[p + "ffn_down.weight"].T


def step_logits(model, tokens, cache):
    """Logits (B, vocab) after feeding tokens (B,) at position cache.len (then advanced)."""
    pos = cache.len
    h = model.weights["token_embd.weight"][np.asarray(tokens)][:, None, :]
    for i in range(model.config.n_layers):
        h = _block_step(model, i, h, pos, cache)
    cache.len += 1
    h = _rms(h, model.weights["output_norm.weight"], model.config.rms_eps)
    return h[:, 0] @ model.lm_head.T


def sample_sequences(model, n_seqs, length, *, seed=0, temperature=1.0):
    """(n_seqs, length) int64 tokens: a uniformly random first token, then samples from the
    model's softmax(logits / temperature), all sequences in one batch with a KV cache."""
    require(n_seqs >= 1 and length >= 2, "sample_sequences needs n_seqs >= 1 and length >= 2")
    require(temperature > 0, f"temperature={temperature!r}: use a positive number")
    rng = np.random.default_rng(seed)
    toks = np.zeros((n_seqs, length), np.int64)
    toks[:, 0] = rng.integers(0, model.vocab_size, n_seqs)
    cache = KVCache(model, n_seqs, length)
    for t in range(length - 1):
        z = step_logits(model, toks[:, t], cache).astype(np.float64) / temperature
        p = np.exp(z - z.max(axis=1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        u = rng.random(n_seqs)[:, None] * cdf[:, -1:]
        toks[:, t + 1] = np.minimum((cdf < u).sum(axis=1), model.vocab_size - 1)
    return toks


def _model_key(model):
    h = hashlib.sha256()
    for name in ("token_embd.weight", "blk.0.attn_q.weight", f"blk.{model.config.n_layers - 1}.ffn_down.weight"):
        h.update(np.ascontiguousarray(model.weights[name]).tobytes())
    h.update(repr(model.config).encode())
    return h.hexdigest()[:16]


def self_generated(model, n_tokens, ctx=256, seed=0, temperature=1.0):
    """(n_tokens // ctx, ctx) self-generated calibration tokens (cached, see module docstring)."""
    n = max(1, int(n_tokens) // int(ctx))
    cache_dir = os.environ.get("NMACCEL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "nmaccel"))
    path = None
    if cache_dir != "off":
        path = os.path.join(cache_dir, f"selfcalib-{_model_key(model)}-{n}x{ctx}-t{temperature}-s{seed}.npy")
        if os.path.isfile(path):
            try:
                toks = np.load(path)
                if toks.shape == (n, ctx):
                    return toks
            except (OSError, ValueError):
                pass
    toks = sample_sequences(model, n, ctx, seed=seed, temperature=temperature)
    if path is not None:
        try:
            os.makedirs(cache_dir, exist_ok=True)
            buf = io.BytesIO()
            np.save(buf, toks)
            atomic_write(path, buf.getvalue())
        except OSError:
            pass
    return toks
