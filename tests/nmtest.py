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
