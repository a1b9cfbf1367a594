"""Golden twin of `nmaccel.hdl.strassen_tile`: a 2x2-blocked y = x @ w.T on one array.

The problem x (2t, 2k), w (2n, 2k) (zero-padded from odd shapes) is split into quadrants
A11..A22 of x and B11..B22 of B = w.T. Strassen mode streams the 7 products
M_i = (A-operand i) @ (B-operand i) (A_COEF pre-adders in hardware, W_COEF weight sums from
pack) through the array and accumulates them with C_COEF; plain mode streams the 8 block
products of `PLAIN_A` x `PLAIN_W` into block `PLAIN_C`. Every stage mirrors the hardware:
pre-added operands (act_bits + 1), array tiles (`nmaccel.golden.array.array_tile`, PE by PE,
wrapped to the array's acc_bits), combiner accumulators wrapped to `comb_bits`.
`p` is any object with the StrassenTileConfig fields (`array`, `t_max`, `comb_bits`,
`act_bits`); this module never imports nmaccel.hdl.
"""
import numpy as np

from nmaccel.arch.config import COMBINER_LATENCY, PLAIN_A, PLAIN_C, PLAIN_W
from nmaccel.errors import require
from nmaccel.golden import array as ga
from nmaccel.golden.intops import wrap
from nmaccel.golden.strassen import A_COEF, C_COEF
from nmaccel.pack.strassen import pad_to, padded_shape, quadrants, strassen_weight_blocks



def n_products(strassen):
    return len(A_COEF) if strassen else len(PLAIN_A)


def block_shape(x_shape, w_shape):
    """(t, k, n): token rows, K and outputs of one block after padding to even sizes."""
    (tp, kp), (np_, _) = padded_shape(x_shape, 1), padded_shape(w_shape, 1)
    return tp // 2, kp // 2, np_ // 2


def check_fits(tile_cfg, x_shape, w_shape):
    """NmaccelError unless x (T, K) @ w (out, K).T fits one tile job of `tile_cfg`."""
    require(len(x_shape) == 2 and len(w_shape) == 2 and x_shape[1] == w_shape[1],
            f"shapes {tuple(x_shape)} and {tuple(w_shape)} do not share K")
    require(x_shape[0] >= 1 and x_shape[1] >= 1 and w_shape[0] >= 1, "empty x or w")
    t, k, n = block_shape(x_shape, w_shape)
    a = tile_cfg.array
    require(k <= a.rows * a.n_max,
            f"K={x_shape[1]} needs blocks of {k} but the array holds {a.rows * a.n_max} "
            f"(rows * n_max): use K <= {2 * a.rows * a.n_max}")
    require(n <= a.cols, f"out={w_shape[0]} needs blocks of {n} outputs but the array has "
            f"{a.cols} columns: use out <= {2 * a.cols}")
    require(t <= tile_cfg.t_max, f"T={x_shape[0]} needs {t} token rows per block but the tile has "
            f"t_max={tile_cfg.t_max}: use T <= {2 * tile_cfg.t_max}")
    return t, k, n


def operands(x, w, strassen):
    """Padded x, w -> list of (A-operand (t, k), weight operand (n, k) torch layout, C column).

    The C column (4,) says what the product adds to C11, C12, C21, C22.
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    xq = quadrants(pad_to(x, padded_shape(x.shape, 1)))
    if strassen:
        wops = strassen_weight_blocks(w, 1)
        aops = [sum(int(c) * q for c, q in zip(row, xq) if c) for row in A_COEF]
        return [(a, b, C_COEF[:, i]) for i, (a, b) in enumerate(zip(aops, wops))]
    wq = [q.T for q in quadrants(pad_to(w, padded_shape(w.shape, 1)).T)]   # B-quadrants, transposed
    out = []
    for pa, pw, pc in zip(PLAIN_A, PLAIN_W, PLAIN_C):
        col = np.zeros(4, dtype=np.int64)
        col[pc] = 1
        out.append((xq[pa], wq[pw], col))
    return out


def block_plan(tile_cfg, wop):
    """Dense load plan of one weight operand (n, k): PE(r, c) lane l holds wop[c, r * n_max + l]."""
    a = tile_cfg.array
    n, k = wop.shape
    codes = np.zeros((a.rows, a.cols, a.n_max), dtype=np.int64)
    keep = np.zeros(codes.shape, dtype=bool)
    kk = np.arange(k)
    codes[kk // a.n_max, :n, kk % a.n_max] = wop.T
    keep[kk // a.n_max, :n, kk % a.n_max] = True
    index = np.broadcast_to(np.arange(a.n_max), codes.shape).copy()
    return ga.LoadPlan(mode=ga.MODE_INT8, n_keep=a.n_max, m_group=a.n_max, window=a.n_max,
                       codes=codes, index=index, keep=keep, tables=None, out_features=a.cols,
                       in_features=a.rows * a.n_max)


def strassen_tile(tile_cfg, x, w, strassen=True):
    """Exact y = x @ w.T (int64 (T, out)) the way the tile computes it (see module doc)."""
    x = np.asarray(x)
    w = np.asarray(w)
    t, k, n = check_fits(tile_cfg, x.shape, w.shape)
    a = tile_cfg.array
    ob = tile_cfg.act_bits + 1
    blocks = np.zeros((4, t, a.cols), dtype=np.int64)
    for i, (aop, wop, col) in enumerate(operands(x, w, strassen)):
        require(np.array_equal(wrap(aop, ob), aop) and np.array_equal(wrap(wop, a.weight_bits), wop),
                f"operands exceed {ob} / {a.weight_bits} bits: use INT8 inputs")
        xa = np.zeros((t, a.rows * a.n_max), dtype=np.int64)
        xa[:, :k] = aop
        prod = ga.array_tile(a, block_plan(tile_cfg, wop), xa)             # (t, cols), array acc_bits
        for j in range(4):
            base = np.zeros_like(prod) if i == 0 else blocks[j]
            blocks[j] = wrap(base + int(col[j]) * prod, tile_cfg.comb_bits)
    c = blocks[:, :, :n]
    y = np.block([[c[0], c[1]], [c[2], c[3]]])
    return y[:x.shape[0], :w.shape[0]]


def strassen_tile_cycles(tile_cfg, tokens, strassen=True):
    """Cycles of one tile job (what nmaccel.hdl.strassen_tile.run_strassen_tile measures).

    Cycle 0 loads the runtime config; the products run as back-to-back double-buffered array
    tiles of t = ceil(tokens / 2) steps each (`golden.array.tile_schedule`); the activation
    quadrants enter PREADD_LATENCY cycles before their array step, and the last product reaches
    the combiner registers COMBINER_LATENCY cycles after it leaves the array. With
    t >= 2 * rows + cols - 2 no product waits for its weights:
    cycles = 1 + rows + P * t + latency + COMBINER_LATENCY, P = 7 (Strassen) or 8 (plain).
    """
    t = -(-int(tokens) // 2)
    _, _, total = ga.tile_schedule(tile_cfg.array, [t] * n_products(strassen))
    return total + COMBINER_LATENCY
