"""Test helpers, all seeded by the caller's rng: random N:M packed weights built straight from codes
(no quantizer), random GEMMs through pack_weights that fit a TopConfig, random epilogues."""
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


def random_gemm(rng, n_keep, m_group, bits, quantizer, top_cfg, T=None, K=None, N=None, group_size=None):
    """Seeded (PackedWeights, x_q) of a random GEMM that fits `top_cfg` in one job's K tiles:
    K up to what k_tiles_max holds (33..120 with group scales), N up to 3 column tiles, T up to
    3 token tiles; weights through pack_weights (the real quantizer)."""
    from nmaccel.pack import pack_weights
    a = top_cfg.array
    win = min(a.n_max // n_keep, a.m_max // m_group) * m_group
    k_cap = top_cfg.k_tiles_max * a.rows * win
    K = K or int(rng.integers(33, min(120, k_cap) + 1) if group_size else rng.integers(1, k_cap + 1))
    N = N or int(rng.integers(1, 3 * a.cols + 1))
    T = T or int(rng.integers(1, 3 * top_cfg.t_max + 1))
    packed = pack_weights(rng.standard_normal((N, K)).astype(np.float32), n_keep=n_keep, m_group=m_group,
                          bits=bits, quantizer=quantizer, group_size=group_size)
    return packed, rng.integers(-128, 128, size=(T, K))


def random_epilogue(rng, n_out):
    """Seeded INT8 epilogue (EpilogueSpec): multipliers for reals in [1e-4, 2e-2], bias, relu."""
    from nmaccel.golden.epilogue import quantize_multiplier
    from nmaccel.program.encoder import EpilogueSpec
    mult, shift = quantize_multiplier(rng.uniform(1e-4, 2e-2, n_out))
    return EpilogueSpec(mult, shift, rng.integers(-3000, 3000, n_out), bool(rng.integers(2)))


def pack_fields(values, width):
    """Integers (negative allowed) -> one int, `width` bits each, value 0 lowest (a one-field
    nmaccel.arch.layout table)."""
    from nmaccel.arch.layout import Layout
    values = np.asarray(values).ravel()
    return Layout([("v", width, len(values))]).encode(v=values)


def step_ports(sim, values):
    """sim.step with port values wrapped to each Input's width (negative values allowed): the one
    helper tests use to drive PyRTL ports."""
    import pyrtl
    widths = {w.name: w.bitwidth for w in sim.block.wirevector_subset(pyrtl.Input)}
    sim.step({k: int(v) & ((1 << widths[k]) - 1) for k, v in values.items()})


def inspect_signed(sim, name):
    """A PyRTL output read back as a two's-complement integer of its own width."""
    import pyrtl
    return pyrtl.val_to_signed_integer(sim.inspect(name), sim.block.get_wirevector_by_name(name).bitwidth)


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
