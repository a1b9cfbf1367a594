"""Test helpers: seeded random N:M packed weights built straight from codes (no quantizer)."""
import numpy as np

from nmaccel.pack import PackedWeights


def random_nm_mask(rng, out, k_padded, n_keep, m_group):
    """Bool (out, k_padded) keeping n_keep random positions of every m_group run."""
    order = np.argsort(rng.random((out, k_padded // m_group, m_group)), axis=2)
    mask = np.zeros((out, k_padded // m_group, m_group), dtype=bool)
    np.put_along_axis(mask, order[:, :, :n_keep], True, axis=2)
    return mask.reshape(out, k_padded)


def random_packed(rng, out, k, n_keep, m_group, bits=8, quantizer="uniform", edge=False):
    """Random codes on a random N:M mask, unit scales; `edge` uses only the extreme values."""
    kp = -(-k // m_group) * m_group
    mask = random_nm_mask(rng, out, kp, n_keep, m_group)
    sc = np.ones((out, 1), dtype=np.float32)
    if quantizer == "lloyd-max":
        cb = rng.integers(-128, 128, size=(out, 1, 1 << bits))
        if edge:
            cb[..., 0], cb[..., -1] = -128, 127
        return PackedWeights.from_dense_codes(rng.integers(0, 1 << bits, size=(out, kp)) * mask, mask,
                                              in_features=k, n_keep=n_keep, m_group=m_group, bits=bits,
                                              quantizer=quantizer, scales=sc, codebook=cb)
    lo = -(1 << (bits - 1))
    codes = rng.integers(lo, -lo, size=(out, kp))
    if edge:
        codes = np.where(rng.random((out, kp)) < 0.5, lo, -lo - 1)
    return PackedWeights.from_dense_codes(codes * mask, mask, in_features=k, n_keep=n_keep, m_group=m_group,
                                          bits=bits, scales=sc)


def tiny_llama(rng, n_layers=2, d=16, heads=4, kv=2, ff=24, vocab=40):
    """A seeded random Llama (nmaccel.models.llama) small enough for exhaustive tests."""
    from nmaccel.models.llama import Llama, LlamaConfig
    cfg = LlamaConfig(n_layers=n_layers, d_model=d, n_heads=heads, n_kv_heads=kv, d_ff=ff,
                      vocab_size=vocab, rope_base=10000.0, rms_eps=1e-5)
    hd = d // heads
    w = {"token_embd.weight": rng.standard_normal((vocab, d)).astype(np.float32),
         "output_norm.weight": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)}
    shapes = {"attn_q": (d, d), "attn_k": (kv * hd, d), "attn_v": (kv * hd, d), "attn_output": (d, d),
              "ffn_gate": (ff, d), "ffn_up": (ff, d), "ffn_down": (d, ff)}
    for i in range(n_layers):
        for s, shp in shapes.items():
            w[f"blk.{i}.{s}.weight"] = (rng.standard_normal(shp) / np.sqrt(shp[1])).astype(np.float32)
        for s in ("attn_norm", "ffn_norm"):
            w[f"blk.{i}.{s}.weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
    return Llama(w, cfg)
