"""Weight-side Strassen operands, precomputed once at pack time.

For y = x @ w.T write A = x (T, K) and B = w.T (K, out), both split into 2x2 blocks
(A11 = A[:T/2, :K/2], B12 = B[:K/2, out/2:], ...). Strassen's seven products are
M_i = (A-operand i) @ (B-operand i) with the B-operands (`W_COEF`, over [B11, B12, B21, B22]):
  B11+B22, B11, B12-B22, B21-B11, B22, B11+B12, B21+B22.
They are returned in the torch layout (out/2, K/2) (i.e. transposed), so M_i = a_i @ w_i.T.
Recursion (`levels` > 1) applies the same split to every operand: 7^levels operands, in
depth-first order (operand index i1*7^(L-1) + ... + iL). Odd shapes: w is zero-padded to
multiples of 2^levels in both dimensions (zero rows/columns add nothing, outputs are cropped).
Every pre-added operand grows by up to one bit per level and loses the N:M structure:
see `strassen_nm_report`.
"""
import numpy as np

from nmaccel.errors import require

W_COEF = np.array([
    [1, 0, 0, 1],
    [1, 0, 0, 0],
    [0, 1, 0, -1],
    [-1, 0, 1, 0],
    [0, 0, 0, 1],
    [1, 1, 0, 0],
    [0, 0, 1, 1],
], dtype=np.int64)


def padded_shape(shape, levels):
    """Each dimension rounded up to a multiple of 2^levels."""
    step = 1 << int(levels)
    return tuple(-(-int(d) // step) * step for d in shape)


def pad_to(arr, shape):
    """Zero-pad a 2-D array at the end of both axes to `shape`."""
    out = np.zeros(shape, dtype=arr.dtype)
    out[:arr.shape[0], :arr.shape[1]] = arr
    return out


def quadrants(a):
    """[a11, a12, a21, a22] of an even-shaped 2-D array."""
    r, c = a.shape[0] // 2, a.shape[1] // 2
    return [a[:r, :c], a[:r, c:], a[r:, :c], a[r:, c:]]


def _combine(blocks, coef):
    return [sum(int(c) * b for c, b in zip(row, blocks) if c) for row in coef]


def _b_operands(b, levels):
    if levels == 0:
        return [b]
    out = []
    for op in _combine(quadrants(b), W_COEF):
        out.extend(_b_operands(op, levels - 1))
    return out


def strassen_weight_blocks(w_int, levels=1):
    """Integer weights (out, K) -> list of 7^levels pre-added weight operands (out', K') int64.

    out' = padded out / 2^levels, K' = padded K / 2^levels (zero padding to multiples of
    2^levels). Operand values need up to `levels` more bits than w_int (see strassen_bit_growth).
    """
    w = np.asarray(w_int)
    require(w.ndim == 2, f"weights must be 2-D (out, in), got shape {w.shape}")
    require(w.dtype.kind in "iu", f"weights must be integers, got dtype {w.dtype}; quantize first")
    require(int(levels) >= 0, f"Strassen levels must be >= 0, got {levels}")
    w = pad_to(w.astype(np.int64), padded_shape(w.shape, levels))
    return [op.T.copy() for op in _b_operands(w.T, int(levels))]


def strassen_nm_report(w_int, n_keep, m_group, levels=1):
    """How pre-adding destroys N:M structure: nonzero fractions and groups breaking n_keep:m_group.

    Returns a dict: `density` (nonzero fraction of w), `operand_density` (per operand),
    `density_after` (nonzero fraction over all operands), `nm_violation_fraction` (fraction of
    m_group-long K runs of all operands holding more than n_keep nonzeros).
    """
    require(1 <= int(n_keep) <= int(m_group),
            f"need 1 <= n_keep <= m_group, got {n_keep}:{m_group}")
    w = np.asarray(w_int)
    ops = strassen_weight_blocks(w, levels)
    dens, bad, groups, nz, total = [], 0, 0, 0, 0
    for op in ops:
        k = op.shape[1]
        kp = -(-k // m_group) * m_group
        g = pad_to(op, (op.shape[0], kp)).reshape(op.shape[0], kp // m_group, m_group)
        cnt = np.count_nonzero(g, axis=2)
        bad += int(np.count_nonzero(cnt > n_keep))
        groups += cnt.size
        nz += int(np.count_nonzero(op))
        total += op.size
        dens.append(float(np.count_nonzero(op) / max(op.size, 1)))
    return {
        "levels": int(levels),
        "density": float(np.count_nonzero(w) / max(w.size, 1)),
        "operand_density": dens,
        "density_after": nz / max(total, 1),
        "nm_violation_fraction": bad / max(groups, 1),
    }
