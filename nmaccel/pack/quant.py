"""Weight and activation quantization: uniform INT2/4/8 (symmetric or zero-point) and Lloyd-Max.

Grid (one rule for 2, 4 and 8 bits, GPTQ's, measured better than the -7..7 grid; shared/notes):
symmetric codes q in [-2^(b-1), 2^(b-1)-1], scale = max|w| / (2^(b-1) - 0.5), w ~ q * scale
(INT4: scale = 2 max|w| / 15). Asymmetric: codes in [0, 2^b-1], range [min(w,0), max(w,0)],
scale = range / (2^b - 1), zero_point = round(-min / scale), w ~ (q - zero_point) * scale.
Scales are stored as FP16: they are rounded UP to the next float16 before codes are computed,
so |w - dequant| <= scale / 2 holds for every w inside the grid (so max|w| / scale <=
2^(b-1) - 0.5, and code -2^(b-1) appears only when that is exact: the gain over the -7..7 grid
is the finer step). A unit (tensor, channel or group) whose kept weights are all 0 gets scale 1.

Statistics use kept weights only (`mask`): pruned positions never move a scale or a codebook.
Units: "tensor" -> scales (1, 1); "channel" -> (out, 1); "group" -> (out, ceil(k_padded /
group_size)), scale group of column k is k // group_size.

Lloyd-Max: per unit, 2^b levels minimizing the MSE over kept weights (Lloyd iterations from
the uniform grid and from data quantiles, the better kept), stored as INT8 codebook entries on
a shared FP16 scale (same symmetric INT8 grid rule) so hardware decodes index -> INT8 with a
LUT. The reported MSE is that of the INT8-rounded codebook; per unit, if the uniform grid
(written exactly as an INT8 codebook: codes * 2^(8-b)) has lower MSE it is used instead, so
Lloyd-Max is never worse than uniform at the same bits (at 8 bits they mostly coincide).
"""
import numbers
from dataclasses import dataclass, field

import numpy as np

from nmaccel.errors import NmaccelError, require

BITS = (2, 4, 8)
GRANULARITIES = ("tensor", "channel", "group")
QUANTIZERS = ("uniform", "lloyd-max")
DEFAULT_GROUP_SIZE = 128
_FP16_MAX = float(np.finfo(np.float16).max)


def check_bits(bits):
    require(isinstance(bits, numbers.Integral) and not isinstance(bits, bool) and bits in BITS,
            f"bits={bits!r} is not supported: use one of {', '.join(map(str, BITS))}")


def fp16_ceil(x):
    """Smallest float16 >= x (elementwise, x >= 0), as float32. Raises if it overflows FP16."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        h = x.astype(np.float16)
    low = h.astype(np.float64) < x
    h[low] = np.nextafter(h[low], np.float16(np.inf))
    if not np.isfinite(h).all():
        raise NmaccelError(f"a scale ({float(x.max()):.3g}) overflows FP16 (max {_FP16_MAX:g}): "
                           "rescale the tensor before quantizing")
    return h.astype(np.float32)


def symmetric_qrange(bits):
    """(qmin, qmax) of symmetric codes."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def symmetric_scale(absmax, bits):
    """FP16 symmetric scale for max |value| `absmax` (1 where absmax == 0)."""
    a = np.asarray(absmax, dtype=np.float64)
    s = fp16_ceil(a / ((1 << (bits - 1)) - 0.5))
    return np.where(a > 0, s, np.float32(1.0)).astype(np.float32)


def _units(a, granularity, group_size, fill):
    """View a padded (out, kp) array as units (R, G, L), padding the last group with `fill`."""
    out, kp = a.shape
    if granularity == "tensor":
        return a.reshape(1, 1, out * kp)
    if granularity == "channel":
        return a.reshape(out, 1, kp)
    nsg = -(-kp // group_size)
    a = np.pad(a, ((0, 0), (0, nsg * group_size - kp)), constant_values=fill)
    return a.reshape(out, nsg, group_size)


@dataclass
class QuantGrid:
    """Quantization parameters of one (out, k_padded) weight matrix; see the module docstring.

    `scales` float32 (FP16 values), `zero_points` int16 or None, `codebook` int8 (R, G, 2^b)
    sorted ascending or None. Codes: symmetric int, asymmetric [0, 2^b), Lloyd-Max indices.
    """
    bits: int
    quantizer: str
    granularity: str
    group_size: int
    symmetric: bool
    scales: np.ndarray
    zero_points: np.ndarray = None
    codebook: np.ndarray = None
    stats: dict = field(default_factory=dict)

    def _group_ids(self, cols):
        if self.granularity == "group":
            return np.asarray(cols) // self.group_size
        return np.zeros(len(cols), dtype=np.int64)

    def _per_col(self, arr, cols):
        return arr[:, self._group_ids(cols)]

    def quantize(self, w, cols=None):
        """Codes (int64) of values w (rows, len(cols)) sitting at padded columns `cols`."""
        w = np.asarray(w, dtype=np.float64)
        cols = np.arange(w.shape[1]) if cols is None else np.asarray(cols)
        s = self._per_col(self.scales.astype(np.float64), cols)
        if self.quantizer == "lloyd-max":
            return self._nearest(w / s, cols)
        if self.symmetric:
            lo, hi = symmetric_qrange(self.bits)
            return np.clip(np.rint(w / s), lo, hi).astype(np.int64)
        zp = self._per_col(self.zero_points.astype(np.int64), cols)
        return np.clip(np.rint(w / s) + zp, 0, (1 << self.bits) - 1).astype(np.int64)

    def int_values(self, codes, cols=None):
        """Integer each multiplier sees: symmetric code, code - zero_point, or codebook INT8."""
        codes = np.asarray(codes, dtype=np.int64)
        cols = np.arange(codes.shape[1]) if cols is None else np.asarray(cols)
        if self.quantizer == "lloyd-max":
            r = np.arange(codes.shape[0])[:, None] if self.codebook.shape[0] > 1 else 0
            g = self._group_ids(cols)[None, :]
            return self.codebook[r, g, codes].astype(np.int64)
        if self.symmetric:
            return codes
        return codes - self._per_col(self.zero_points.astype(np.int64), cols)

    def dequantize(self, codes, cols=None):
        """Float64 values of codes at padded columns `cols`."""
        codes = np.asarray(codes)
        cols = np.arange(codes.shape[1]) if cols is None else np.asarray(cols)
        s = self._per_col(self.scales.astype(np.float64), cols)
        return self.int_values(codes, cols) * s

    def _nearest(self, v, cols):
        """Index of the nearest codebook entry for v in codebook-integer units (ties -> lower)."""
        cb = self.codebook.astype(np.float64)
        R, G, L = cb.shape
        th = (cb[..., 1:] + cb[..., :-1]) / 2
        rows = np.arange(v.shape[0])[:, None] if R > 1 else np.zeros((v.shape[0], 1), np.int64)
        gid = self._group_ids(cols)[None, :]
        if v.shape[1] <= 4:   # a few columns (the OBS loop): compare against the row thresholds
            return (v[:, :, None] > th[rows, gid]).sum(axis=-1).astype(np.int64)
        span = 1024.0  # codebook in [-128, 127], v clipped to +-300: units never overlap
        unit = np.arange(R * G, dtype=np.float64).reshape(R, G)
        flat_th = (th + span * unit[..., None]).ravel()
        uid = rows * G + gid
        pos = np.searchsorted(flat_th, np.clip(v, -300, 300) + span * uid, side="left")
        return (pos - uid * (L - 1)).astype(np.int64)


def resolve_granularity(granularity, group_size, m_group=1):
    """Defaults: neither given -> "channel"; group_size given -> "group"; "group" alone -> 128.

    Returns (granularity, group_size or None).
    """
    if granularity is None:
        granularity = "group" if group_size is not None else "channel"
    require(granularity in GRANULARITIES,
            f"unknown granularity {granularity!r}: use one of {', '.join(GRANULARITIES)}")
    if granularity != "group":
        require(group_size is None,
                f"group_size={group_size} only applies to granularity='group': drop it or "
                "use granularity='group'")
        return granularity, None
    if group_size is None:
        group_size = DEFAULT_GROUP_SIZE
    require(isinstance(group_size, numbers.Integral) and not isinstance(group_size, bool)
            and group_size >= 1, f"group_size={group_size!r}: use a positive integer (e.g. 128)")
    require(group_size % m_group == 0,
            f"group_size={group_size} is not a multiple of m_group={m_group}: an N:M group must "
            f"not straddle two scale groups, use e.g. group_size={m_group * max(1, 128 // m_group)}")
    return granularity, int(group_size)


def _prep(w, mask):
    w = np.asarray(w, dtype=np.float64)
    mask = np.ones(w.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    require(mask.shape == w.shape, f"mask shape {mask.shape} != weights shape {w.shape}")
    return np.where(mask, w, 0.0), mask


def fit_uniform(w, mask=None, *, bits, granularity=None, group_size=None, symmetric=True):
    """Uniform grid for padded weights w (out, kp) from the kept weights (mask True)."""
    check_bits(bits)
    granularity, group_size = resolve_granularity(granularity, group_size)
    wk, _ = _prep(w, mask)
    u = _units(wk, granularity, group_size, 0.0)
    if symmetric:
        scales = symmetric_scale(np.abs(u).max(axis=-1), bits)
        return QuantGrid(bits, "uniform", granularity, group_size, True, scales)
    lo = np.minimum(u.min(axis=-1), 0.0)
    hi = np.maximum(u.max(axis=-1), 0.0)
    rng = hi - lo
    scales = np.where(rng > 0, fp16_ceil(rng / ((1 << bits) - 1)), np.float32(1.0)).astype(np.float32)
    zp = np.clip(np.rint(-lo / scales), 0, (1 << bits) - 1).astype(np.int16)
    return QuantGrid(bits, "uniform", granularity, group_size, False, scales, zero_points=zp)


def quantile_levels(t, keep, n_levels):
    """Per unit, the (i + 0.5) / n_levels quantiles of the kept entries (0 for empty units)."""
    srt = np.sort(np.where(keep, t, np.inf), axis=1)
    cnt = keep.sum(axis=1)
    pos = np.floor((np.arange(n_levels) + 0.5) / n_levels * cnt[:, None]).astype(np.int64)
    lev = np.take_along_axis(srt, np.minimum(pos, t.shape[1] - 1), axis=1)
    return np.where(cnt[:, None] > 0, lev, 0.0)


class _SortedUnits:
    """Kept entries of each unit sorted once, with per-unit prefix sums: the count, sum and
    squared error of every nearest-level cell cost one searchsorted of the thresholds."""

    def __init__(self, t, keep, span=8.0):
        U, L = t.shape
        srt = np.sort(np.where(keep, t, np.inf), axis=1)
        self.cnt = keep.sum(axis=1)
        valid = np.arange(L)[None, :] < self.cnt[:, None]
        vals = np.where(valid, srt, 0.0)
        self.off = span * np.arange(U, dtype=np.float64)
        self.flat = (vals + self.off[:, None])[valid]
        self.start = np.concatenate([[0], np.cumsum(self.cnt)])[:-1]
        self.c1 = np.concatenate([np.zeros((U, 1)), np.cumsum(vals, axis=1)], axis=1)
        self.c2 = np.concatenate([np.zeros((U, 1)), np.cumsum(vals ** 2, axis=1)], axis=1)

    def cells(self, levels):
        """(count, sum, sum of squares) of the entries nearest to each sorted level (U, K)."""
        U, K = levels.shape
        th = np.clip((levels[:, 1:] + levels[:, :-1]) / 2, -3.0, 3.0) + self.off[:, None]
        b = np.searchsorted(self.flat, th.ravel(), side="right").reshape(U, K - 1)
        edges = np.concatenate([np.zeros((U, 1), np.int64), b - self.start[:, None],
                                self.cnt[:, None]], axis=1)
        n = np.diff(edges, axis=1)
        s1 = np.diff(np.take_along_axis(self.c1, edges, axis=1), axis=1)
        s2 = np.diff(np.take_along_axis(self.c2, edges, axis=1), axis=1)
        return n, s1, s2

    @staticmethod
    def sse(levels, n, s1, s2):
        mean = s1 / np.maximum(n, 1)
        within = np.maximum(s2 - s1 * mean, 0.0)
        return (within + n * (mean - levels) ** 2).sum(axis=1)


def farthest_levels(t, keep, K):
    """Farthest-first starting levels (U, K), sorted: per unit the smallest kept value, then K - 1
    times the kept value farthest from its nearest level so far (a repeat once fewer than K
    distinct values remain; Lloyd keeps an empty level where it is)."""
    U, _ = t.shape
    rows = np.arange(U)
    first = np.where(keep.any(axis=1), np.where(keep, t, np.inf).min(axis=1), 0.0)
    chosen = [first]
    d = np.where(keep, np.abs(t - first[:, None]), -1.0)
    for _ in range(K - 1):
        new = np.where(keep.any(axis=1), t[rows, d.argmax(axis=1)], 0.0)
        chosen.append(new)
        d = np.minimum(d, np.where(keep, np.abs(t - new[:, None]), -1.0))
    return np.sort(np.stack(chosen, axis=1), axis=1)


def lloyd_max_levels(t, keep, bits, iters=30, unit_weight=None, init="uniform", sorted_units=None):
    """Lloyd iterations on normalized units t (U, L) in [-1, 1] over kept entries.

    Starts from the uniform grid q / (2^(b-1) - 0.5) (init="uniform"), from quantiles of the
    kept data (init="quantile") or from farthest-first points of the kept data (init="farthest":
    the smallest value, then repeatedly the value farthest from every level so far; it seeds a
    level in every separated cluster, where quantiles put two levels into one heavy cluster). Returns (levels (U, 2^b) sorted, history): history[i] = sum
    over kept entries of unit_weight * (t - level)^2 / kept count, after the i-th assignment
    (non-increasing: each assignment and centroid step can only lower it).
    """
    lo, hi = symmetric_qrange(bits)
    K = 1 << bits
    U = t.shape[0]
    wgt = np.ones(U) if unit_weight is None else np.asarray(unit_weight, dtype=np.float64)
    if init == "quantile":
        levels = quantile_levels(t, keep, K)
    elif init == "farthest":
        levels = farthest_levels(t, keep, K)
    else:
        levels = np.tile(np.arange(lo, hi + 1) / ((1 << (bits - 1)) - 0.5), (U, 1))
    n_all = max(int(keep.sum()), 1)
    su = _SortedUnits(t, keep) if sorted_units is None else sorted_units
    history = []
    for it in range(iters + 1):
        n, s1, s2 = su.cells(levels)
        history.append(float((su.sse(levels, n, s1, s2) * wgt).sum() / n_all))
        if it == iters:
            break
        new = np.sort(np.where(n > 0, s1 / np.maximum(n, 1), levels), axis=1)
        if np.array_equal(new, levels):
            break
        levels = new
    return levels, history


def fit_lloyd_max(w, mask=None, *, bits, granularity=None, group_size=None, iters=30):
    """Lloyd-Max codebooks (INT8 on FP16 scales) for padded weights w (out, kp), kept entries only.

    grid.stats: "mse" (stored INT8 codebook, over kept weights), "uniform_mse" (uniform
    symmetric grid of the same bits and units), "float_mse" (float Lloyd levels before INT8
    rounding), "history" / "history_quantile_init" (float Lloyd MSE after each assignment
    from either start, non-increasing),
    "uniform_units" / "units" (units where the uniform grid was kept because it was better).
    """
    check_bits(bits)
    require(isinstance(iters, numbers.Integral) and iters >= 0, f"iters={iters!r}: use an integer >= 0")
    granularity, group_size = resolve_granularity(granularity, group_size)
    wk, mask = _prep(w, mask)
    u = _units(wk, granularity, group_size, 0.0)
    keep = _units(mask, granularity, group_size, False)
    R, G, L = u.shape
    u = u.reshape(R * G, L)
    keep = keep.reshape(R * G, L)
    n = max(int(keep.sum()), 1)
    a = np.abs(u).max(axis=1)
    a_safe = np.where(a > 0, a, 1.0)
    t = u / a_safe[:, None]
    su = _SortedUnits(t, keep)

    def unit_sse(vals):   # per-unit SSE (original units) of kept entries vs nearest of vals (U, K)
        lv = vals / a_safe[:, None]
        return su.sse(lv, *su.cells(lv)) * a_safe ** 2

    # Lloyd from three starts (uniform grid, data quantiles, farthest-first); per unit the lowest
    # MSE wins (Lloyd only finds a local optimum: each start misses clusters the others find)
    runs = [lloyd_max_levels(t, keep, bits, iters, a_safe ** 2, init, su)
            for init in ("uniform", "quantile", "farthest")]
    cands = [np.clip(lv, -1.0, 1.0) * a_safe[:, None] for lv, _ in runs]  # unused levels into range
    sses = np.stack([unit_sse(lv) for lv in cands])
    pick = sses.argmin(axis=0)
    levels = np.stack(cands)[pick, np.arange(len(pick))]
    float_sse = sses.min(axis=0)
    # candidate 1: Lloyd levels rounded to INT8 on a shared FP16 scale
    s_l = symmetric_scale(np.abs(levels).max(axis=1), 8)
    cb_l = np.sort(np.clip(np.rint(levels / s_l[:, None]), -128, 127), axis=1)
    # candidate 2: the uniform grid written as an INT8 codebook: codes * 2^(8-b) on scale / 2^(8-b)
    lo, hi = symmetric_qrange(bits)
    shift = 1 << (8 - bits)
    s_u = symmetric_scale(a, bits).astype(np.float64)
    s_u8 = np.where(a > 0, fp16_ceil(s_u / shift), np.float32(1.0)).astype(np.float32)
    cb_u = np.tile(np.arange(lo, hi + 1, dtype=np.float64) * shift, (R * G, 1))
    sse_l = unit_sse(cb_l * s_l[:, None].astype(np.float64))
    sse_u = unit_sse(cb_u * s_u8[:, None].astype(np.float64))
    sse_uniform = unit_sse(np.arange(lo, hi + 1, dtype=np.float64)[None, :] * s_u[:, None])
    use_u = sse_u < sse_l
    cb = np.where(use_u[:, None], cb_u, cb_l).astype(np.int8)
    scales = np.where(use_u, s_u8, s_l).astype(np.float32)
    grid = QuantGrid(bits, "lloyd-max", granularity, group_size, True,
                     scales.reshape(R, G), codebook=cb.reshape(R, G, 1 << bits))
    grid.stats = {
        "mse": float(np.where(use_u, sse_u, sse_l).sum() / n),
        "uniform_mse": float(sse_uniform.sum() / n),
        "float_mse": float(float_sse.sum() / n),
        "history": runs[0][1],
        "history_quantile_init": runs[1][1],
        "history_farthest_init": runs[2][1],
        "uniform_units": int(use_u.sum()),
        "units": R * G,
    }
    return grid


def quantize_weights(w, mask=None, *, bits, quantizer="uniform", granularity=None,
                     group_size=None, symmetric=True, lloyd_iters=30):
    """Fit a grid on kept weights and quantize. Returns (grid, codes int64 (out, kp)).

    Codes at pruned positions are 0 (they are never stored).
    """
    require(quantizer in QUANTIZERS,
            f"unknown quantizer {quantizer!r}: use one of {', '.join(QUANTIZERS)}")
    wk, mask = _prep(w, mask)
    if quantizer == "uniform":
        grid = fit_uniform(wk, mask, bits=bits, granularity=granularity, group_size=group_size,
                           symmetric=symmetric)
    else:
        require(symmetric, "symmetric=False applies to the uniform quantizer only: drop it for lloyd-max")
        grid = fit_lloyd_max(wk, mask, bits=bits, granularity=granularity, group_size=group_size,
                             iters=lloyd_iters)
    codes = np.where(mask, grid.quantize(wk), 0)
    return grid, codes


def quantize_activations(x, granularity="tensor", scale=None):
    """Symmetric INT8 activations: x_q = clip(round(x / scale), -128, 127), x ~ x_q * scale.

    granularity "tensor" -> scale (1, 1), "token" -> (T, 1); scale = max|x| / 127.5 rounded up
    to FP16 (same grid rule as weights), or the given calibrated `scale` (broadcastable to
    those shapes; values outside its range saturate). Returns (x_q int8 (T, in), scale float32).
    """
    xa = np.asarray(x)
    require(xa.ndim == 2 and xa.size > 0,
            f"activations have shape {xa.shape}: pass a non-empty 2-D (tokens, features) array")
    xa = xa.astype(np.float64)
    require(np.isfinite(xa).all(), "activations contain NaN or Inf: pass finite activations")
    require(granularity in ("tensor", "token"),
            f"unknown activation granularity {granularity!r}: use 'tensor' or 'token'")
    if scale is None:
        amax = np.abs(xa).max(axis=1, keepdims=True) if granularity == "token" \
            else np.abs(xa).max(keepdims=True)
        s = symmetric_scale(amax, 8)
    else:
        s = np.asarray(scale, dtype=np.float64)
        shape = (xa.shape[0], 1) if granularity == "token" else (1, 1)
        require(s.size in (1, shape[0]) and s.ndim <= 2,
                f"scale has shape {s.shape}: pass a scalar or shape {shape}")
        s = np.broadcast_to(s.reshape(-1, 1) if s.size > 1 else s.reshape(1, 1), shape)
        require(np.isfinite(s).all() and (s > 0).all(), "activation scale must be finite and > 0")
        s = s.astype(np.float32)
    q = np.clip(np.rint(xa / s.astype(np.float64)), -128, 127).astype(np.int8)
    return q, s.astype(np.float32)
