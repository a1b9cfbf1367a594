"""Exact integer GEMM of packed N:M weights with INT8 activations: y = x_q @ W_int.T (int64).

Fast path: floating-point BLAS is exact on integers as long as every value it forms is an
integer of magnitude <= 2^p (p = 24 for float32, 53 for float64). For y[t, o] = sum_k x[t,k] w[o,k]
every product and every partial sum, in any summation order (blocking, FMA), is bounded by
    S = max|x| * max_o sum_k |w[o,k]|            (`dot_bound`)
which is itself <= K * 2^(a_bits-1) * 2^(w_bits-1), i.e. within accum_bits(K, w_bits, a_bits).
So: S <= 2^24 -> float32 BLAS, S <= 2^53 -> float32 BLAS on K tiles small enough for 2^24 (tile
sums added in float64) or float64 BLAS, else an exact int64 (or Python int) matmul. Results are
converted back to int64 without rounding. `GemmPlan` picks the path once per weight matrix.
"""
import numpy as np
import scipy.sparse

from nmaccel.arch.config import accum_bits, max_k
from nmaccel.errors import NmaccelError, require
from nmaccel.golden import intops

FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53
A_BITS = 8


def dot_bound(x_max_abs, w):
    """Bound S on every partial sum of x @ w.T: x_max_abs * max row sum of |w| (Python int)."""
    w = intops.as_int(w, "weights")
    if w.size == 0:
        return 0
    rows = np.abs(w).sum(axis=1) if w.dtype != object else np.array([sum(abs(int(v)) for v in r) for r in w])
    return int(x_max_abs) * int(rows.max())


def exact_dtype(bound):
    """float32 / float64 if BLAS in that type is exact for partial sums <= bound, else None."""
    if bound <= FLOAT32_EXACT:
        return np.float32
    if bound <= FLOAT64_EXACT:
        return np.float64
    return None


def int_matmul(x, w):
    """x (T, K) @ w (N, K).T exactly for any integer arrays, int64 (object if past int64)."""
    x = intops.as_int(x, "activations")
    w = intops.as_int(w, "weights")
    require(x.ndim == 2 and w.ndim == 2 and x.shape[1] == w.shape[1],
            f"int_matmul shapes {x.shape} and {w.shape} do not share K")
    bound = dot_bound(intops.max_abs(x), w)
    dt = exact_dtype(bound)
    if dt is not None:
        return (x.astype(dt) @ w.astype(dt).T).astype(np.int64)
    if bound < (1 << 62):
        return x @ w.T
    return x.astype(object) @ w.T.astype(object)


def check_activations(x_q, in_features, a_bits=A_BITS):
    """Validate INT activations (T, in): integer dtype, a_bits signed range, matching K."""
    x = np.asarray(x_q)
    require(x.ndim == 2, f"activations must be 2-D (T, in_features), got shape {x.shape}; "
            "reshape a single vector to (1, in)")
    require(x.shape[1] == in_features,
            f"activations have K={x.shape[1]} but the weights have in_features={in_features}")
    return intops.check_fits(x, a_bits, True, f"INT{a_bits} activations")


MIN_K_TILE = 64


def float32_k_tile(w_int, x_max_abs):
    """Largest power-of-two K tile (>= MIN_K_TILE) whose per-tile partial sums all stay within
    float32's exact range 2^24, or None."""
    aw = np.abs(np.asarray(w_int).astype(np.int32))
    out, k = aw.shape
    kp = max(MIN_K_TILE, 1 << max(0, (k - 1).bit_length()))
    padded = np.zeros((out, kp), dtype=np.int32)
    padded[:, :k] = aw
    sums = padded.reshape(out, kp // MIN_K_TILE, MIN_K_TILE).sum(axis=2, dtype=np.int64)
    best, kt = None, MIN_K_TILE
    while True:
        if int(x_max_abs) * int(sums.max(initial=0)) > FLOAT32_EXACT:
            return best
        best = kt
        if sums.shape[1] == 1:
            return best
        sums = sums.reshape(out, -1, 2).sum(axis=2)
        kt *= 2


class GemmPlan:
    """Weights of one PackedWeights prepared once for repeated exact GEMMs.

    Bound S = 2^(a_bits-1) * max row sum |w| (any a_bits-bit activation). S <= 2^24: one float32
    BLAS GEMM. Else, if K tiles of k_tile columns keep every per-tile partial sum <= 2^24 and
    S <= 2^53: batched float32 GEMMs per K tile (each exact), tile results summed in float64
    (exact, all partial sums <= S). Else S <= 2^53: float64 GEMM. Else exact integer matmul.
    """

    def __init__(self, packed, a_bits=A_BITS):
        self.in_features = packed.in_features
        self.out_features = packed.out_features
        self.a_bits = a_bits
        self.w_int = packed.int_weights()                       # int16 (out, in)
        rowsum = np.abs(self.w_int.astype(np.int32)).sum(axis=1, dtype=np.int64)
        amax = 1 << (a_bits - 1)
        self.bound = amax * int(rowsum.max(initial=0))
        self.dtype = exact_dtype(self.bound)
        self.k_tile = None
        self.w_f = None
        if self.dtype is np.float64:
            self.k_tile = float32_k_tile(self.w_int, amax)
        if self.k_tile is not None:
            self.dtype = np.float32
            kt, k = self.k_tile, self.in_features
            nt = -(-k // kt)
            wp = np.zeros((self.out_features, nt * kt), dtype=np.float32)
            wp[:, :k] = self.w_int
            self.w_f = np.ascontiguousarray(wp.reshape(self.out_features, nt, kt).transpose(1, 2, 0))
        elif self.dtype is not None:
            # BLAS reads the row-major (out, in) copy transposed without another copy
            self.w_f = self.w_int.astype(self.dtype)

    @property
    def method(self):
        """Which exact path __call__ takes (for reports)."""
        if self.dtype is None:
            return "int64"
        if self.k_tile is not None:
            return f"float32 K-tiles of {self.k_tile}"
        return np.dtype(self.dtype).name

    def __call__(self, x_q):
        x = check_activations(x_q, self.in_features, self.a_bits)
        if self.dtype is None:
            return int_matmul(x, self.w_int)
        if self.k_tile is None:
            return (x.astype(self.dtype) @ self.w_f.T).astype(np.int64)
        nt, kt, _ = self.w_f.shape
        xp = np.zeros((x.shape[0], nt * kt), dtype=np.float32)
        xp[:, :self.in_features] = x
        parts = np.matmul(xp.reshape(x.shape[0], nt, kt).transpose(1, 0, 2), self.w_f)
        return parts.sum(axis=0, dtype=np.float64).astype(np.int64)


def prepare(packed, a_bits=A_BITS):
    """GemmPlan for `packed` (reuse it to GEMM many activation batches)."""
    return GemmPlan(packed, a_bits)


def weight_operand_bits(packed):
    """Signed bits of the integer each multiplier sees: code (bits), code - zero_point
    (bits + 1) or an INT8 lloyd-max codebook level (8)."""
    if packed.quantizer == "lloyd-max":
        return 8
    return packed.bits if packed.zero_points is None else packed.bits + 1


def products_per_output(packed):
    """Products summed into one output: n_keep per N:M group over the padded K."""
    return packed.n_groups * packed.n_keep


def gemm(packed, x_q, plan=None, acc_bits=None):
    """Exact y = x_q @ packed.int_weights().T as int64 (T, out) for INT8 activations (T, in).

    `packed` may also be a GemmPlan (or pass plan=prepare(packed)) to skip weight preparation.
    acc_bits: the hardware accumulator width; raises NmaccelError (naming a wide-enough width or
    K tile) unless no worst-case input can overflow it (`check_accumulator`).
    """
    if acc_bits is not None:
        require(not isinstance(packed, GemmPlan), "pass the PackedWeights (and plan=) to check acc_bits")
        nprod, wb = products_per_output(packed), weight_operand_bits(packed)
        need = accum_bits(nprod, wb, A_BITS)
        if need > int(acc_bits):
            kt = (max_k(acc_bits, wb, A_BITS) // packed.n_keep) * packed.m_group
            raise NmaccelError(
                f"{nprod} products per output ({packed.n_keep}:{packed.m_group}, K={packed.k_padded}) "
                f"of {wb}-bit weights and {A_BITS}-bit activations can overflow a {acc_bits}-bit "
                f"accumulator; use acc_bits >= {need}" + (f" or tile K <= {kt}" if kt else ""))
    if isinstance(packed, GemmPlan):
        return packed(x_q)
    return (plan or GemmPlan(packed))(x_q)


def gemm_csr(packed, x_q):
    """Same product through scipy.sparse: CSR(int_weights) @ x_q.T, int64 throughout."""
    x = check_activations(x_q, packed.in_features)
    w = scipy.sparse.csr_matrix(packed.int_weights().astype(np.int64))
    return np.asarray((w @ x.T).T, dtype=np.int64)


def gemm_gather(packed, x_q, chunk=64):
    """Same product computed like the hardware: for every stored value, its index selects the
    activation column (mux) that the value multiplies; int64 multiply-accumulate.

    Loops only over the n_keep slots and over row chunks of `chunk` outputs.
    """
    x = check_activations(x_q, packed.in_features)
    xp = np.zeros((x.shape[0], packed.k_padded), dtype=np.int64)
    xp[:, :packed.in_features] = x
    out, ng, nk = packed.out_features, packed.n_groups, packed.n_keep
    cols = (np.arange(ng) * packed.m_group)[None, :, None] + packed.indices.astype(np.int64)
    wv = np.take_along_axis(packed.int_weights(padded=True).astype(np.int64), cols.reshape(out, -1),
                            axis=1).reshape(out, ng, nk)
    y = np.zeros((x.shape[0], out), dtype=np.int64)
    for o0 in range(0, out, chunk):
        sl = slice(o0, o0 + chunk)
        for j in range(nk):
            sel = xp[:, cols[sl, :, j]]                  # (T, rows, ng): muxed activations
            y[:, sl] += np.einsum("tog,og->to", sel, wv[sl, :, j])
    return y
