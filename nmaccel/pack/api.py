"""`pack_weights`: prune (N:M along K) -> quantize -> PackedWeights, in one call."""
import numbers

import numpy as np

from nmaccel.errors import require
from nmaccel.pack.format import PackedWeights
from nmaccel.pack.prune import (METHODS, check_calibration, check_nm, check_weights, nm_mask,
                                magnitude_scores, obs_factor, pad_k, sparsegpt,
                                wanda_scores)
from nmaccel.pack.quant import (QUANTIZERS, check_bits, fit_lloyd_max, fit_uniform,
                                resolve_granularity)


def pack_weights(w, *, n_keep, m_group, bits, group_size=None, quantizer="uniform",
                 method="magnitude", calibration=None, granularity=None, symmetric=True,
                 damp=0.1, blocksize=128, calibration_tokens=None, error_compensation=True,
                 lloyd_iters=30):
    """Prune `w` (out, in) to n_keep:m_group along K, quantize the kept weights, pack.

    Defaults: no `granularity` and no `group_size` -> per output channel scales; `group_size`
    given -> "group"; granularity="group" alone -> group_size 128. `calibration` (tokens, in)
    float activations are needed by wanda / sparsegpt; `calibration_tokens` keeps only its
    first rows. sparsegpt: `damp` (relative to mean diag H, default 0.1: 1% overfits small
    off-domain calibration sets), `blocksize`; with `error_compensation` the kept weights are
    quantized inside the OBS loop (GPTQ-style) on the grid fitted to the SparseGPT-pruned
    weights, with that pass's mask fixed; per output row, the joint codes are kept unless
    plain rounding of the pruned weights gives a lower calibration output error. Scales /
    codebooks use kept weights only; pruned positions are not stored. `symmetric=False` gives zero-point uniform codes. A kept padding
    slot (K not a multiple of m_group, last run shorter than n_keep) holds code 0, or with
    lloyd-max the level nearest 0: its activation is 0, so it contributes nothing.
    Returns PackedWeights; `meta` records method, damp and the quantization MSE.
    """
    w = check_weights(w)
    check_nm(n_keep, m_group)
    check_bits(bits)
    require(method in METHODS, f"unknown pruning method {method!r}: use one of {', '.join(METHODS)}")
    require(quantizer in QUANTIZERS,
            f"unknown quantizer {quantizer!r}: use one of {', '.join(QUANTIZERS)}")
    require(quantizer == "uniform" or symmetric,
            "symmetric=False applies to the uniform quantizer only: drop it for lloyd-max")
    granularity, group_size = resolve_granularity(granularity, group_size, m_group)
    if method != "magnitude":
        require(calibration is not None,
                f"method={method!r} needs calibration activations (tokens, {w.shape[1]}): "
                "pass calibration=... or use method='magnitude'")
        calibration = check_calibration(calibration, w.shape[1])
        if calibration_tokens is not None:
            require(isinstance(calibration_tokens, numbers.Integral) and calibration_tokens >= 1,
                    f"calibration_tokens={calibration_tokens!r}: use a positive integer")
            calibration = calibration[:calibration_tokens]

    real = np.arange(-(-w.shape[1] // m_group) * m_group) < w.shape[1]

    def fit(wk, keep):
        keep = keep & real   # kept padding slots (short last run) must not bend the statistics
        if quantizer == "uniform":
            return fit_uniform(wk, keep, bits=bits, granularity=granularity,
                               group_size=group_size, symmetric=symmetric)
        return fit_lloyd_max(wk, keep, bits=bits, granularity=granularity,
                             group_size=group_size, iters=lloyd_iters)

    if method == "sparsegpt":
        factor = obs_factor(calibration, len(real), damp)
        wp, keep, _ = sparsegpt(w, calibration, n_keep=n_keep, m_group=m_group, damp=damp,
                                blocksize=blocksize, factor=factor)
        grid = fit(wp, keep)
        codes = grid.quantize(wp)
        if error_compensation:
            _, _, joint = sparsegpt(w, calibration, m_group=m_group, damp=damp,
                                    blocksize=blocksize, mask=keep, quantizer=grid, factor=factor)
            # per output row keep whichever codes give the lower calibration output error
            # (OBS is greedy: rarely, e.g. a codebook fitted to other values, joint loses)
            k_in = w.shape[1]
            row_err = [np.sum((calibration @ (w - np.where(keep, grid.dequantize(c), 0.0)[:, :k_in]).T) ** 2,
                              axis=0) for c in (joint, codes)]
            use_joint = row_err[0] <= row_err[1]
            codes = np.where(use_joint[:, None], joint, codes)
    else:
        scores = magnitude_scores(w) if method == "magnitude" else wanda_scores(w, calibration)
        keep = nm_mask(scores, n_keep, m_group)
        wp = np.where(keep, pad_k(w, m_group), 0.0)
        grid = fit(wp, keep)
        codes = grid.quantize(wp)
    codes = np.where(keep, codes, 0)
    meta = {"method": method, "symmetric": bool(symmetric)}
    if method == "sparsegpt":
        meta.update(damp=float(damp), blocksize=int(blocksize),
                    error_compensation=bool(error_compensation),
                    compensated_rows=int(use_joint.sum()) if error_compensation else 0,
                    calibration_tokens=int(calibration.shape[0]))
    elif method == "wanda":
        meta["calibration_tokens"] = int(calibration.shape[0])
    if quantizer == "lloyd-max":
        meta["lloyd_mse"] = grid.stats["mse"]
        meta["uniform_mse"] = grid.stats["uniform_mse"]
    return PackedWeights.from_dense_codes(
        codes, keep, in_features=w.shape[1], n_keep=n_keep, m_group=m_group, bits=bits,
        quantizer=quantizer, granularity=granularity, group_size=group_size,
        scales=grid.scales, zero_points=grid.zero_points, codebook=grid.codebook, meta=meta)
