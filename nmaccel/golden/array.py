"""Golden twin of the systolic array (nmaccel.hdl.array): tile job, cycle formula and schedule.

Integer numpy, mirroring the hardware step by step through the PE twins of nmaccel.golden.pe
(every register width wrapped). `array_cfg` is an nmaccel.arch.config.ArrayConfig (or a view of
one with more rows / cols: the program encoder lays a whole matrix out as one plan); this module
never imports nmaccel.hdl. Also: `load_plan` (how a PackedWeights tile maps onto PE lanes, shared
with the simulation driver), `tile_cycles` (the cycle formula of one tile job) and
`tile_schedule` (back-to-back tiles on a double-buffered array).
"""
from dataclasses import dataclass

import numpy as np

from nmaccel.errors import require
from nmaccel.arch.config import window_groups
from nmaccel.golden.pe import lane_weight, pe_step

MODE_INT8, MODE_INT4, MODE_CODEBOOK = "int8", "int4", "codebook"


def array_latency(rows, cols, pipeline_stages=0):
    """Cycles from a step on x_in_* to its column sums on y_out_*."""
    return rows + cols - 1 + pipeline_stages


def tile_steps(tokens, int4):
    """Activation steps of a tile: one token per step, two in INT4 mode (token packing)."""
    return -(-tokens // 2) if int4 else tokens


def tile_cycles(array_cfg, tokens, int4):
    """Cycles of one tile job on the array `array_cfg` (what nmaccel.run.sim.run_tile simulates):

    1 (load runtime config) + rows (shift weights in, bottom row first; codebooks load in the
    same cycles) + steps (tile_steps) + latency (drain: the last step's sums appear latency
    cycles after it entered).
    """
    return (1 + array_cfg.rows + tile_steps(tokens, int4)
            + array_latency(array_cfg.rows, array_cfg.cols, array_cfg.pipeline_stages))


def tile_schedule(array_cfg, steps_list):
    """Cycle schedule of back-to-back tiles on a double-buffered array (one tile: any array).

    Returns (load_start, stream_start, total): tile j's weights shift in on cycles
    load_start[j] .. + rows - 1, its steps stream from stream_start[j], w_swap is high on
    stream_start[j] - 1, and the last sums leave at total - 1. Rules (cycle 0 loads the config):
      load_start[0] = 1, stream_start[0] = 1 + rows
      load_start[j] = max(load_start[j-1] + rows, stream_start[j-1] - 1 + rows + cols - 1)
      stream_start[j] = max(stream_start[j-1] + steps[j-1], load_start[j] + rows)
      total = stream_start[-1] + steps[-1] + latency
    With steps >= 2 * rows + cols - 2 per tile the array streams without a bubble.
    """
    ls, ss = [1], [1 + array_cfg.rows]
    for j in range(1, len(steps_list)):
        ls.append(max(ls[-1] + array_cfg.rows, ss[-1] - 1 + array_cfg.rows + array_cfg.cols - 1))
        ss.append(max(ss[-1] + steps_list[j - 1], ls[-1] + array_cfg.rows))
    total = ss[-1] + steps_list[-1] + array_latency(array_cfg.rows, array_cfg.cols, array_cfg.pipeline_stages)
    return ls, ss, total


@dataclass
class LoadPlan:
    """A weight tile laid out on the array (arrays indexed [row, col, lane])."""
    mode: str
    n_keep: int
    m_group: int
    window: int
    codes: np.ndarray      # weight code per lane (INT8 value, INT4 value or codebook index)
    index: np.ndarray      # window-local activation index per lane
    keep: np.ndarray       # bool: lane holds a kept weight
    tables: np.ndarray     # (rows, cols, 2**codebook_bits) codebook per PE, or None
    out_features: int
    in_features: int

    @property
    def int4(self):
        return self.mode == MODE_INT4

    @property
    def codebook(self):
        return self.mode == MODE_CODEBOOK

    @property
    def dense(self):
        return self.n_keep == self.m_group


def tile_mode(packed):
    """Array mode that runs `packed`: codebook (lloyd-max), int4 (uniform <= 4 bits), int8."""
    if packed.quantizer == "lloyd-max":
        return MODE_CODEBOOK
    return MODE_INT4 if packed.bits <= 4 else MODE_INT8


def load_plan(packed, array_cfg, mode=None):
    """Map a PackedWeights tile onto the lanes of array `array_cfg`; NmaccelError if it cannot run.

    Row r of the array covers padded K [r * window, (r + 1) * window), window = g * m_group with
    g = window_groups(...); group j of a window, kept value i -> lane j * n_keep + i, window-local
    index j * m_group + indices[...]. Output column o -> PE column o. Unused lanes keep = 0.
    """
    mode = mode or tile_mode(packed)
    n, m = packed.n_keep, packed.m_group
    require(mode in array_cfg.modes, f"the array was elaborated without mode {mode!r} (needed by these "
            f"{packed.bits}-bit {packed.quantizer} weights): add it to ArrayConfig.modes")
    require(n <= array_cfg.n_max,
            f"N:M {n}:{m} needs n_keep={n} lanes but the array has n_max={array_cfg.n_max}: "
            f"elaborate with n_max >= {n}")
    require(m <= array_cfg.m_max, f"N:M {n}:{m} needs m_group={m} but the array has m_max={array_cfg.m_max}: "
            f"elaborate with m_max >= {m}")
    g = window_groups(n, m, array_cfg.n_max, array_cfg.m_max)
    window = g * m
    rows_needed = -(-packed.n_groups // g)
    require(rows_needed <= array_cfg.rows,
            f"weight tile K={packed.in_features} needs {rows_needed} array rows at {n}:{m} "
            f"(window {window}) but the array has {array_cfg.rows}: use in_features <= {array_cfg.rows * window}")
    require(packed.out_features <= array_cfg.cols,
            f"weight tile has {packed.out_features} outputs but the array has {array_cfg.cols} columns: "
            f"use out_features <= {array_cfg.cols}")
    out, ng = packed.out_features, packed.n_groups
    grp = np.arange(ng)
    r_of, j_of = grp // g, grp % g
    lanes = j_of[:, None] * n + np.arange(n)[None, :]                    # (ng, n)
    local = j_of[None, :, None] * m + packed.indices.astype(np.int64)    # (out, ng, n)
    codes = np.zeros((array_cfg.rows, array_cfg.cols, array_cfg.n_max), dtype=np.int64)
    index = np.zeros_like(codes)
    keep = np.zeros(codes.shape, dtype=bool)
    tables = None
    if mode == MODE_CODEBOOK:
        require(packed.bits <= array_cfg.codebook_bits,
                f"{packed.bits}-bit codebook indices exceed the array's codebook_bits={array_cfg.codebook_bits}")
        vals = packed.values.astype(np.int64).reshape(out, ng, n)
        cb = packed.codebook.astype(np.int64)
        if cb.shape[1] > 1:
            require(packed.group_size % window == 0,
                    f"codebook scale groups of {packed.group_size} columns split a {window}-wide PE "
                    f"window: use group_size a multiple of {window}")
        tables = np.zeros((array_cfg.rows, array_cfg.cols, 1 << array_cfg.codebook_bits), dtype=np.int64)
        sg = np.minimum(np.arange(array_cfg.rows) * window // (packed.group_size or packed.k_padded),
                        cb.shape[1] - 1)
        for c in range(out):
            tables[:, c, :cb.shape[2]] = cb[c if cb.shape[0] > 1 else 0][sg]
    else:
        kept = np.take_along_axis(packed.int_weights(padded=True).astype(np.int64),
                                  packed._kept_cols(), axis=1).reshape(out, ng, n)
        wbits = 4 if mode == MODE_INT4 else array_cfg.weight_bits
        lo, hi = -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1
        require(kept.size == 0 or (kept.min() >= lo and kept.max() <= hi),
                f"integer weights span [{kept.min()}, {kept.max()}], outside {mode} range [{lo}, {hi}]: "
                "use symmetric quantization")
        vals = kept
    rr = np.broadcast_to(r_of[None, :, None], local.shape)
    cc = np.broadcast_to(np.arange(out)[:, None, None], local.shape)
    ll = np.broadcast_to(lanes[None], local.shape)
    codes[rr, cc, ll] = vals
    index[rr, cc, ll] = local
    keep[rr, cc, ll] = True
    return LoadPlan(mode=mode, n_keep=n, m_group=m, window=window, codes=codes, index=index,
                    keep=keep, tables=tables, out_features=out, in_features=packed.in_features)


def activation_steps(plan, x_q, array_cfg):
    """x_q (T, in) -> per-step windows (steps, rows, tokens_per_step, m_max) int64.

    INT4 steps carry tokens (2i, 2i+1) (an odd T is padded with a zero token).
    """
    x = np.asarray(x_q, dtype=np.int64)
    T = x.shape[0]
    steps = tile_steps(T, plan.int4)
    xp = np.zeros((steps * (2 if plan.int4 else 1), array_cfg.rows * plan.window), dtype=np.int64)
    xp[:T, :x.shape[1]] = x
    win = np.zeros((xp.shape[0], array_cfg.rows, array_cfg.m_max), dtype=np.int64)
    win[:, :, :plan.window] = xp.reshape(xp.shape[0], array_cfg.rows, plan.window)
    out = np.zeros((steps, array_cfg.rows, array_cfg.tokens_per_step, array_cfg.m_max), dtype=np.int64)
    if plan.int4:
        out[:, :, 0] = win[0::2]
        out[:, :, 1] = win[1::2]
    else:
        out[:, :, 0] = win
    return out


def array_tile(array_cfg, plan, x_q):
    """Array twin: exact outputs int64 (T, out) of the tile job, PE by PE, step by step."""
    T = np.asarray(x_q).shape[0]
    xs = activation_steps(plan, x_q, array_cfg)
    steps = xs.shape[0]
    y = np.zeros((steps, array_cfg.cols, array_cfg.tokens_per_step), dtype=np.int64)
    for c in range(array_cfg.cols):
        psum = np.zeros((steps, array_cfg.tokens_per_step), dtype=np.int64)
        for r in range(array_cfg.rows):
            table = plan.tables[r, c] if plan.tables is not None else None
            w = lane_weight(plan.codes[r, c], plan.keep[r, c], table, plan.codebook, array_cfg)
            psum = pe_step(array_cfg, w, plan.index[r, c], xs[:, r], psum, plan.int4, plan.dense)
        y[:, c] = psum
    if plan.int4:
        flat = y.transpose(0, 2, 1).reshape(steps * 2, array_cfg.cols)
    else:
        flat = y[:, :, 0]
    return flat[:T, :plan.out_features]
