"""Per-layer compression methods for whole-model compression (nmaccel.pack.compress): masks, an
OBS / GPTQ pass with lazy block updates, and the named methods built from them.

Weights `w` (out, in) float, y = x @ w.T; calibration enters only through the Hessian
H = 2 X^T X / tokens (accumulated by the caller) and its damped inverse's Cholesky factor.

Methods (`METHODS`):
  magnitude  magnitude N:M mask, round-to-nearest (RTN) quantization of the kept weights
  wanda      Wanda mask |W| * ||X_j|| (Sun et al. 2023, arXiv:2306.11695), RTN
  gptq       magnitude mask, then GPTQ (Frantar et al. 2022, arXiv:2210.17323) with the mask
             frozen: every kept column is rounded in turn and its error (and that of the pruned
             weights) spread over the later columns by OBS updates
  wanda-obs  Wanda mask, then the same frozen-mask OBS reconstruction + GPTQ quantization
  sparsegpt  SparseGPT mask (Frantar & Alistarh 2023, arXiv:2301.00774: per M-group, the
             lowest w^2 / [H^-1]_jj^2 of the OBS-updated weights), then frozen-mask GPTQ
For dense layers (n_keep == m_group) the mask is all-kept: gptq / wanda-obs / sparsegpt are
GPTQ, magnitude / wanda are RTN.

Quantization grids inside the OBS pass follow GPTQ (static_groups=False): a group's scales are
fitted when the pass reaches its first column, on the kept, already updated weights of the
group; per-channel grids are fitted once at the start. Grid rules are nmaccel.pack.quant's
(symmetric codes -2^(b-1)..2^(b-1)-1, scale max|w| / (2^(b-1) - 0.5), FP16 scales; Lloyd-Max
codebooks) so the result packs into PackedWeights unchanged.
"""
import numbers

import numpy as np
import scipy.linalg

from nmaccel.errors import require
from nmaccel.pack.format import PackedWeights
from nmaccel.pack.prune import check_nm, k_padded, nm_mask, pad_k
from nmaccel.pack.quant import QuantGrid, fit_lloyd_max, fit_uniform

METHODS = ("magnitude", "wanda", "gptq", "wanda-obs", "sparsegpt")
CALIBRATED = ("wanda", "gptq", "wanda-obs", "sparsegpt")


def inverse_factor(h, damp):
    """Upper Cholesky factor U of (H + damp * mean(diag H) * I)^-1 = U^T U, H (k, k) float64 with
    dead (all-zero) columns set to 1 on the diagonal. Returns (U, dead mask). If H is not positive
    definite at `damp`, the damping is raised tenfold (up to 3 times) and the used value returned."""
    require(isinstance(damp, numbers.Real) and np.isfinite(damp) and damp >= 0,
            f"damp={damp!r}: use a finite relative damping >= 0 (default 0.1)")
    h = np.array(h, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    mean = float(np.mean(np.diag(h)))
    d = float(damp)
    for _ in range(4):
        hd = h.copy()
        hd[np.diag_indices_from(hd)] += d * mean
        c, info = scipy.linalg.lapack.dpotrf(hd, lower=0)
        if info == 0:
            inv, info = scipy.linalg.lapack.dpotri(c, lower=0)   # upper triangle of H^-1
        if info == 0:
            inv = np.triu(inv) + np.triu(inv, 1).T
            u, info = scipy.linalg.lapack.dpotrf(inv, lower=0)
        if info == 0:
            return np.triu(u), dead, d
        d = max(d * 10, 1e-4)
    require(False, "calibration Hessian is not positive definite: increase damp or the calibration tokens")


class _LazyGrid:
    """Group-wise quantization grid fitted while the OBS pass walks the columns."""

    def __init__(self, out, kp, bits, quantizer, group_size, symmetric):
        self.bits, self.quantizer, self.symmetric = bits, quantizer, symmetric
        self.gs = group_size
        self.parts = []     # QuantGrid per group (channel granularity inside the group slice)
        self.cur = None

    def fit(self, wslice, kslice):
        if self.quantizer == "uniform":
            g = fit_uniform(wslice, kslice, bits=self.bits, granularity="channel", symmetric=self.symmetric)
        else:
            g = fit_lloyd_max(wslice, kslice, bits=self.bits, granularity="channel")
        self.parts.append(g)
        self.cur = g

    def quantize(self, col_values):
        c = self.cur.quantize(col_values[:, None], np.zeros(1, np.int64))
        return c[:, 0], self.cur.dequantize(c, np.zeros(1, np.int64))[:, 0]

    def grid(self):
        """One QuantGrid (granularity group, or channel if group_size is None) for all parts."""
        cat = lambda attr: None if getattr(self.parts[0], attr) is None else \
            np.concatenate([getattr(p, attr) for p in self.parts], axis=1)
        gran = "channel" if self.gs is None else "group"
        return QuantGrid(self.bits, self.quantizer, gran, self.gs, self.symmetric, cat("scales"),
                         zero_points=cat("zero_points"), codebook=cat("codebook"))


def obs_pass(w, u, keep=None, *, n_keep=None, m_group=1, quant=None, blocksize=128, real=None):
    """One OBS sweep over the columns of padded w (out, kp) with inverse-Hessian factor u (kp, kp).

    keep: fixed mask (out, kp), or None to choose the SparseGPT N:M mask on the fly (n_keep,
    m_group). quant: None or dict(bits, quantizer, group_size, symmetric) -> joint GPTQ
    quantization (needs a fixed `keep`). Lazy batch updates of `blocksize` columns (a multiple of
    m_group and of group_size's divisors as given). Returns (w_new (out, kp), keep, codes or None,
    QuantGrid or None). real: bool (kp,) of real (not padding) columns: padding never wins a mask
    slot it does not need and never enters a grid's statistics."""
    W = np.array(w, dtype=np.float64)
    out, kp = W.shape
    real = np.ones(kp, bool) if real is None else np.asarray(real, bool)
    require(u.shape == (kp, kp), f"inverse-Hessian factor has shape {u.shape}, expected {(kp, kp)}")
    on_the_fly = keep is None
    require(not (on_the_fly and quant), "joint quantization needs a fixed mask")
    keep = np.zeros((out, kp), bool) if on_the_fly else np.asarray(keep, bool)
    lazy = codes = None
    if quant:
        gs = quant.get("group_size")
        lazy = _LazyGrid(out, kp, quant["bits"], quant.get("quantizer", "uniform"), gs,
                         quant.get("symmetric", True))
        codes = np.zeros((out, kp), np.int64)
        if gs is None:
            lazy.fit(W, keep & real)
    bs = max(m_group, (blocksize // m_group) * m_group)
    for i1 in range(0, kp, bs):
        i2 = min(i1 + bs, kp)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        U1 = u[i1:i2, i1:i2]
        d1 = np.diag(U1)
        K1 = keep[:, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if on_the_fly and col % m_group == 0:
                sc = W1[:, i:i + m_group] ** 2 / d1[None, i:i + m_group] ** 2
                sc[:, ~real[col:col + m_group]] = -np.inf
                K1[:, i:i + m_group] = nm_mask(sc, n_keep, m_group)
            if lazy is not None and gs is not None and col % gs == 0:
                # the group's columns from here on: current (updated) values of this block, and
                # columns past the block, which have received this block's updates so far only
                # through the pending Err1 (apply them to a copy for the fit)
                end = col + gs
                cur = W1[:, i:min(end, i2) - i1]
                if end > i2:
                    rest = W[:, i2:end] - Err1[:, :i] @ u[i1:i1 + i, i2:end]
                    cur = np.concatenate([cur, rest], axis=1)
                lazy.fit(cur, keep[:, col:end] & real[col:end])
            wc = W1[:, i]
            q = np.where(K1[:, i], wc, 0.0)
            if lazy is not None:
                c, dq = lazy.quantize(q)
                codes[:, col] = np.where(K1[:, i], c, 0)
                q = np.where(K1[:, i], dq, 0.0)
            err = (wc - q) / d1[i]
            W1[:, i] = q
            W1[:, i + 1:] -= np.outer(err, U1[i, i + 1:])
            Err1[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ u[i1:i2, i2:]
    return W, keep, codes, (lazy.grid() if lazy is not None else None)


def padded_hessian(h, kp):
    """H zero-padded to (kp, kp) (padding columns are dead: set to 1 on the diagonal later)."""
    hp = np.zeros((kp, kp))
    hp[:h.shape[0], :h.shape[0]] = h
    return hp


def layer_error(w_ref, w_new, h):
    """Relative calibration output error tr(D H D^T) / tr(W H W^T), D = w_ref - w_new (both (out, k))."""
    d = np.asarray(w_ref, np.float64) - w_new
    ref = np.asarray(w_ref, np.float64)
    num = np.einsum("ij,ij->", d @ h, d)
    den = np.einsum("ij,ij->", ref @ h, ref)
    return float(num / den) if den > 0 else 0.0


def compress_layer(w, *, n_keep, m_group, bits, group_size=128, quantizer="uniform", symmetric=True,
                   method="sparsegpt", hessian=None, col_norms=None, damp=0.1, blocksize=128, factor=None):
    """Prune + quantize one layer with a named method; returns PackedWeights (meta: method,
    damping used, relative calibration output error when a Hessian is given).

    hessian: H (in, in) = 2 X^T X / tokens (needed by gptq / wanda-obs / sparsegpt);
    col_norms: ||X_j||_2 per input column (wanda, wanda-obs; taken from H if absent).
    factor: a precomputed inverse_factor(H zero-padded to k_padded, damp) to reuse (layers sharing
    one input, e.g. q / k / v). K not a multiple of m_group: zero-padded (PackedWeights format,
    docs/DESIGN.md)."""
    require(method in METHODS, f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    check_nm(n_keep, m_group)
    w = np.asarray(w, dtype=np.float64)
    out, k = w.shape
    kp = k_padded(k, m_group)
    require(group_size is None or group_size % m_group == 0,
            f"group_size={group_size} is not a multiple of m_group={m_group}: use e.g. "
            f"{m_group * max(1, 128 // m_group)}")
    h = None if hessian is None else np.asarray(hessian, np.float64)
    if h is not None:
        require(h.shape == (k, k), f"Hessian has shape {h.shape}, expected {(k, k)}")
    if method in CALIBRATED:
        require(hessian is not None, f"method {method!r} needs calibration (a Hessian): use method='magnitude'")
        if col_norms is None:
            col_norms = np.sqrt(np.maximum(np.diag(h), 0.0))
    real = np.arange(kp) < k
    wp = pad_k(w, m_group)
    dense = n_keep == m_group
    if dense:
        keep = np.ones((out, kp), bool)
    elif method in ("magnitude", "gptq"):
        keep = nm_mask(np.abs(w), n_keep, m_group)
    elif method in ("wanda", "wanda-obs"):
        keep = nm_mask(np.abs(w) * np.asarray(col_norms)[None, :], n_keep, m_group)
    else:
        keep = None
    quant = dict(bits=bits, quantizer=quantizer, group_size=group_size, symmetric=symmetric)
    meta = {"method": method}
    if method in ("magnitude", "wanda"):
        wk = np.where(keep, wp, 0.0)
        fit_kw = dict(bits=bits, granularity="group" if group_size else "channel", group_size=group_size)
        grid = fit_uniform(wk, keep & real, symmetric=symmetric, **fit_kw) if quantizer == "uniform" \
            else fit_lloyd_max(wk, keep & real, **fit_kw)
        codes = np.where(keep, grid.quantize(wk), 0)
    else:
        if factor is None:
            factor = inverse_factor(padded_hessian(h, kp), damp)
        u, dead, used = factor
        w0 = wp.copy()
        w0[:, dead] = 0.0
        if keep is None:   # sparsegpt: choose the mask in an OBS pass, then GPTQ with it frozen
            _, keep, _, _ = obs_pass(w0, u, None, n_keep=n_keep, m_group=m_group, blocksize=blocksize,
                                     real=real)
        _, keep, codes, grid = obs_pass(w0, u, keep, m_group=m_group, quant=quant, blocksize=blocksize,
                                        real=real)
        meta.update(damp=used)
    pw = PackedWeights.from_dense_codes(
        codes, keep, in_features=k, n_keep=n_keep, m_group=m_group, bits=bits, quantizer=quantizer,
        granularity=grid.granularity, group_size=grid.group_size, scales=grid.scales,
        zero_points=grid.zero_points, codebook=grid.codebook, meta=meta)
    if hessian is not None:
        pw.meta["calib_rel_err"] = layer_error(w, pw.dequantize().astype(np.float64), h)
    return pw
