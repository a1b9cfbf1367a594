"""N:M and unstructured pruning of torch-layout weights `w` (out_features, in_features), y = x @ w.T.

N:M groups are runs of `m_group` consecutive in_features (K) columns, as in NVIDIA's 2:4 format;
K is zero-padded to `k_padded = ceil(K / m_group) * m_group` (docs/DESIGN.md, Padding).
Scores: `magnitude` |W|; `wanda` |W| * ||X_j||_2 (Sun et al. 2023); `sparsegpt` one-shot OBS
pruning with weight reconstruction (Frantar & Alistarh 2023), optionally with GPTQ-style joint
quantization inside the same loop. Masks are bool, True = kept.
"""
import numbers

import numpy as np
import scipy.linalg

from nmaccel.errors import NmaccelError, require

MAX_M_GROUP = 16
METHODS = ("magnitude", "wanda", "sparsegpt")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_nm(n_keep, m_group):
    """Validate an N:M pair: 1 <= n_keep <= m_group <= 16 (n_keep == m_group is dense)."""
    require(_is_int(n_keep) and _is_int(m_group),
            f"n_keep and m_group must be integers, got {n_keep!r}:{m_group!r}")
    require(1 <= m_group <= MAX_M_GROUP,
            f"m_group={m_group} is out of range: use 1 <= m_group <= {MAX_M_GROUP}")
    require(n_keep >= 1, f"n_keep={n_keep} keeps nothing: use n_keep >= 1")
    require(n_keep <= m_group,
            f"n_keep={n_keep} > m_group={m_group}: N:M keeps N of every M, use n_keep <= m_group")


def check_weights(w):
    """Return `w` as a float64 (out, in) array; raise NmaccelError for non-2D, empty or NaN/Inf."""
    try:
        a = np.asarray(w)
    except Exception as exc:  # ragged lists and the like
        raise NmaccelError(f"weights are not an array ({exc}): pass a 2-D float array (out, in)")
    require(a.ndim == 2, f"weights have shape {a.shape}: pass a 2-D (out_features, in_features) array")
    require(a.size > 0, f"weights are empty (shape {a.shape}): pass a non-empty (out, in) array")
    require(np.issubdtype(a.dtype, np.number) and not np.issubdtype(a.dtype, np.complexfloating),
            f"weights have dtype {a.dtype}: pass real float weights")
    a = a.astype(np.float64)
    require(np.isfinite(a).all(), "weights contain NaN or Inf: clean the checkpoint before packing")
    return a


def check_calibration(x, in_features):
    """Return calibration activations as float64 (tokens, in_features); validate width and values."""
    try:
        a = np.asarray(x)
    except Exception as exc:
        raise NmaccelError(f"calibration is not an array ({exc}): pass float activations (tokens, in)")
    require(a.ndim == 2 and a.shape[1] == in_features,
            f"calibration has shape {a.shape}: pass activations of shape (tokens, {in_features})")
    require(a.shape[0] > 0, "calibration has no tokens: pass at least one row of activations")
    require(np.issubdtype(a.dtype, np.number) and not np.issubdtype(a.dtype, np.complexfloating),
            f"calibration has dtype {a.dtype}: pass real float activations")
    a = a.astype(np.float64)
    require(np.isfinite(a).all(), "calibration contains NaN or Inf: pass finite activations")
    return a


def k_padded(in_features, m_group):
    """K rounded up to a multiple of m_group."""
    return -(-in_features // m_group) * m_group


def pad_k(a, m_group, fill=0.0):
    """Pad the last axis of a 2-D array up to a multiple of m_group with `fill`."""
    extra = k_padded(a.shape[1], m_group) - a.shape[1]
    if extra == 0:
        return a
    return np.pad(a, ((0, 0), (0, extra)), constant_values=fill)


def nm_mask(scores, n_keep, m_group):
    """Keep mask (out, k_padded): in each run of m_group columns, True at the n_keep highest scores.

    Ties go to the lower column index. Padded columns score -inf, so they are kept only when a
    run has fewer than n_keep real columns.
    """
    check_nm(n_keep, m_group)
    s = pad_k(np.asarray(scores, dtype=np.float64), m_group, fill=-np.inf)
    out, kp = s.shape
    runs = s.reshape(out, kp // m_group, m_group)
    top = np.argsort(-runs, axis=-1, kind="stable")[..., :n_keep]
    mask = np.zeros(runs.shape, dtype=bool)
    np.put_along_axis(mask, top, True, axis=-1)
    return mask.reshape(out, kp)


def unstructured_mask(scores, sparsity, per="row"):
    """Keep mask with round(sparsity * count) lowest scores pruned, per output row or per tensor.

    Ties go to the lower flat index.
    """
    require(isinstance(sparsity, numbers.Real) and 0.0 <= sparsity < 1.0,
            f"sparsity={sparsity!r}: use a fraction 0 <= sparsity < 1")
    require(per in ("row", "tensor"), f"per={per!r}: use 'row' or 'tensor'")
    s = np.asarray(scores, dtype=np.float64)
    flat = s.reshape(1, -1) if per == "tensor" else s
    n_keep = flat.shape[1] - int(round(sparsity * flat.shape[1]))
    top = np.argsort(-flat, axis=1, kind="stable")[:, :n_keep]
    mask = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    return mask.reshape(s.shape)


def magnitude_scores(w):
    """|W|."""
    return np.abs(np.asarray(w, dtype=np.float64))


def wanda_scores(w, calibration):
    """Wanda score |W_ij| * ||X_j||_2, X the calibration activations (tokens, in_features)."""
    w = np.asarray(w, dtype=np.float64)
    x = np.asarray(calibration, dtype=np.float64)
    return np.abs(w) * np.linalg.norm(x, axis=0)[None, :]


def hessian(calibration, k_pad=None):
    """Layer Hessian H = 2 X^T X / tokens in float64, zero-padded to k_pad columns."""
    x = np.asarray(calibration, dtype=np.float64)
    h = 2.0 / x.shape[0] * (x.T @ x)
    if k_pad is not None and k_pad > h.shape[0]:
        e = k_pad - h.shape[0]
        h = np.pad(h, ((0, e), (0, e)))
    return h


def obs_factor(calibration, k_pad, damp=0.1):
    """(U, dead) for SparseGPT / GPTQ: U upper Cholesky factor of H^-1 (H^-1 = U^T U), H the
    calibration Hessian zero-padded to k_pad with dead (all-zero) columns set to 1 on the
    diagonal and `damp * mean(diag H)` added to the diagonal (float64)."""
    require(isinstance(damp, numbers.Real) and np.isfinite(damp) and damp >= 0,
            f"damp={damp!r}: use a finite relative damping >= 0 (default 0.1)")
    h = hessian(calibration, k_pad)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += float(damp) * np.mean(np.diag(h))
    fix = (f"calibration Hessian is not positive definite with damp={damp}: "
           "increase damp (e.g. 0.1) or use more calibration tokens")
    c, info = scipy.linalg.lapack.dpotrf(h, lower=1)
    require(info == 0, fix)
    hinv, info = scipy.linalg.lapack.dpotri(c, lower=1)
    require(info == 0, fix)
    hinv = np.tril(hinv) + np.tril(hinv, -1).T
    u, info = scipy.linalg.lapack.dpotrf(hinv, lower=0)
    require(info == 0, fix)
    return np.triu(u), dead


def sparsegpt(w, calibration, *, n_keep=None, m_group=None, sparsity=None, damp=0.1,
              blocksize=128, mask=None, quantizer=None, factor=None):
    """One-shot OBS pruning with reconstruction (SparseGPT), optionally quantizing jointly (GPTQ).

    w: (out, in) float; calibration: (tokens, in) float. Either N:M (`n_keep`, `m_group`: the
    mask of each m_group run is chosen when the loop reaches it, from w^2 / [H^-1]_jj^2 of the
    already updated weights), unstructured `sparsity` (threshold per column block, as the
    reference code), or a fixed keep `mask` (out, k_padded). `damp` is relative to mean(diag H);
    `blocksize` is rounded down to a multiple of m_group (lazy batch updates). `quantizer`, if
    given, has `quantize(values, cols) -> codes` and `dequantize(codes, cols)`: each kept column
    is rounded to its grid before its error is spread over the later columns (joint prune +
    quantize). Columns with no calibration energy are zeroed (as the reference code).
    `factor`: a precomputed `obs_factor(calibration, k_padded, damp)` to reuse.
    Returns (w_new float64 (out, k_padded), keep mask (out, k_padded), codes or None).
    """
    w = check_weights(w)
    x = check_calibration(calibration, w.shape[1])
    require(_is_int(blocksize) and blocksize >= 1, f"blocksize={blocksize!r}: use an integer >= 1")
    if mask is None and sparsity is None:
        check_nm(n_keep, m_group)
    if m_group is None:
        m_group = 1
    out, k_in = w.shape
    kp = k_padded(k_in, m_group)
    W = pad_k(w, m_group)
    valid = np.arange(kp) < k_in
    U, dead = obs_factor(x, kp, damp) if factor is None else factor
    require(U.shape == (kp, kp), f"factor has shape {U.shape}: expected {(kp, kp)}")
    W[:, dead] = 0.0
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)
        require(keep.shape == (out, kp), f"mask has shape {keep.shape}: expected {(out, kp)}")
    else:
        keep = np.zeros((out, kp), dtype=bool)
    nm_mode = mask is None and sparsity is None
    codes = np.zeros((out, kp), dtype=np.int64) if quantizer is not None else None
    bs = max(m_group, (blocksize // m_group) * m_group)
    for i1 in range(0, kp, bs):
        i2 = min(i1 + bs, kp)
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Hinv1 = U[i1:i2, i1:i2]
        d1 = np.diag(Hinv1)
        if mask is None and sparsity is not None:
            tmp = W1 ** 2 / d1[None, :] ** 2
            tmp[:, ~valid[i1:i2]] = -np.inf
            keep[:, i1:i2] = unstructured_mask(tmp, sparsity, per="tensor")
        for i in range(i2 - i1):
            col = i1 + i
            if nm_mode and col % m_group == 0:
                tmp = W1[:, i:i + m_group] ** 2 / d1[None, i:i + m_group] ** 2
                tmp[:, ~valid[col:col + m_group]] = -np.inf
                keep[:, col:col + m_group] = nm_mask(tmp, n_keep, m_group)
            wcol = W1[:, i]
            q = np.where(keep[:, col], wcol, 0.0)
            if quantizer is not None:
                c = quantizer.quantize(q[:, None], np.array([col]))
                codes[:, col] = c[:, 0]
                q = np.where(keep[:, col], quantizer.dequantize(c, np.array([col]))[:, 0], 0.0)
            Q1[:, i] = q
            err = (wcol - q) / Hinv1[i, i]
            W1[:, i:] -= np.outer(err, Hinv1[i, i:])
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return W, keep, codes


def prune(w, *, n_keep, m_group, method="magnitude", calibration=None, damp=0.1, blocksize=128):
    """N:M prune `w` (out, in). Returns (w_pruned float64 (out, k_padded), keep mask (out, k_padded)).

    magnitude / wanda keep the original values at kept positions; sparsegpt also updates them.
    """
    w = check_weights(w)
    check_nm(n_keep, m_group)
    require(method in METHODS, f"unknown pruning method {method!r}: use one of {', '.join(METHODS)}")
    if method != "magnitude":
        require(calibration is not None,
                f"method={method!r} needs calibration activations (tokens, {w.shape[1]}): "
                "pass calibration=... or use method='magnitude'")
        calibration = check_calibration(calibration, w.shape[1])
    if method == "sparsegpt":
        wn, keep, _ = sparsegpt(w, calibration, n_keep=n_keep, m_group=m_group, damp=damp,
                                blocksize=blocksize)
        return wn, keep
    scores = magnitude_scores(w) if method == "magnitude" else wanda_scores(w, calibration)
    keep = nm_mask(scores, n_keep, m_group)
    return np.where(keep, pad_k(w, m_group), 0.0), keep


def prune_unstructured(w, sparsity, *, method="magnitude", calibration=None, per="row",
                       damp=0.1, blocksize=128):
    """Unstructured pruning to a target sparsity. Returns (w_pruned (out, in), keep mask (out, in)).

    magnitude / wanda prune per output row (`per="row"`, Wanda's comparison group) or per
    tensor; sparsegpt thresholds per column block as the reference code.
    """
    w = check_weights(w)
    require(method in METHODS, f"unknown pruning method {method!r}: use one of {', '.join(METHODS)}")
    if method != "magnitude":
        require(calibration is not None,
                f"method={method!r} needs calibration activations: pass calibration=...")
        calibration = check_calibration(calibration, w.shape[1])
    if method == "sparsegpt":
        require(isinstance(sparsity, numbers.Real) and 0.0 <= sparsity < 1.0,
                f"sparsity={sparsity!r}: use a fraction 0 <= sparsity < 1")
        wn, keep, _ = sparsegpt(w, calibration, sparsity=float(sparsity), damp=damp,
                                blocksize=blocksize)
        return wn, keep
    scores = magnitude_scores(w) if method == "magnitude" else wanda_scores(w, calibration)
    keep = unstructured_mask(scores, sparsity, per=per)
    return np.where(keep, w, 0.0), keep
