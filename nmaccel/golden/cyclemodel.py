"""Exact cycle model of the accelerator top (nmaccel.hdl.top), checked against RTL simulation.

`cycles(shape, array_cfg, runtime_cfg, top_cfg)` counts cycles from the first header word
accepted to the last output word accepted, with a host that always has the next word ready
(in_valid = 1) and always accepts (out_ready = 1), or with `link=HostLink(...)` a host that
offers / accepts words only on the cycles of a periodic pattern (stall injection). Jobs of one GEMM (token tiles) follow each
other with no gap, so a GEMM's count is the sum over its jobs.

Per job (R x C array, H-bit host, n_steps array steps, n_kt K tiles, n_nt N tiles), it replays
the controller's processes tile by tile (j in N-tile-major order, staging bank j % 2):
  input:   header (hw words) and activations (n_kt * n_steps * wa words) first; tile j's weight
           words (R * ww, + gs words at a scale-group end, + we epilogue words after an N tile's
           last K tile) start when the previous tile's words are in and bank j % 2 is free; the
           bank is full from the cycle after its last word.
  loader:  stage read at l_j = max(bank full, S_{j-1} + 1 + load_gap) (double buffer; single
           register: S_{j-1} + n_steps + 1 + load_gap, after the previous tile's last step),
           weight shift l_j+1 .. l_j+R; the bank is free from l_j+R+1.
  swap:    S_j = max(l_j + R, S_{j-1} + n_steps (double buffer: the swap goes with the previous
           tile's last step), output buffer free for a last K tile); steps at S_j+1 .. S_j+n_steps.
  output:  a last K tile's final output-buffer write at w = S_j + n_steps - 1 + out_latency
           (out_latency = 2 + array latency + 1 + 1 (registered sums) + epilogue latency 6); words
           stream from w+3, n_steps * wo words; the buffer is free the cycle after the last word.
No deliberate deviations: tests assert equality with the RTL on a sweep of shapes and modes.
`top_cfg` is a nmaccel.arch.config.TopConfig; this module never imports nmaccel.hdl.
"""
from dataclasses import dataclass

from nmaccel.errors import require
from nmaccel.arch.config import HostLink, TopConfig, window_groups

IDEAL = HostLink()

INT4, CODEBOOK = "int4", "codebook"


@dataclass(frozen=True)
class JobShape:
    """One job as the hardware sees it."""
    n_steps: int
    n_kt: int
    n_nt: int


def job_shapes(shape, top_cfg, mode, n_keep, m_group):
    """Split a (T, K, N_out) GEMM into jobs: token tiles of up to min(t_max, act_depth // n_kt)
    array steps (the activation buffer holds n_kt * n_steps entries, so a long K runs in
    shorter token tiles on the same top; each job re-streams the weights). As few jobs as
    fit, of balanced size (a short last job would be bound by the weight stream)."""
    T, K, N = (int(v) for v in shape)
    require(T >= 1 and K >= 1 and N >= 1, f"GEMM shape {shape} must be positive")
    a = top_cfg.array
    g = window_groups(n_keep, m_group, a.n_max, a.m_max)
    require(g >= 1, f"N:M {n_keep}:{m_group} does not fit the array (n_max={a.n_max}, m_max={a.m_max}): "
            "elaborate with n_max >= n_keep and m_max >= m_group")
    k_pad = -(-K // m_group) * m_group
    n_kt = -(-k_pad // (a.rows * g * m_group))
    cap = min(top_cfg.k_tiles_max, top_cfg.act_depth)
    require(n_kt <= cap, f"K={K} needs {n_kt} K tiles at {n_keep}:{m_group} but the top holds "
            f"{cap} (k_tiles_max={top_cfg.k_tiles_max}, act_entries={top_cfg.act_depth}): "
            f"elaborate TopConfig(k_tiles_max>={n_kt}, act_entries>={n_kt})")
    n_nt = -(-N // a.cols)
    require(n_nt <= top_cfg.n_tiles_max, f"N_out={N} needs {n_nt} column tiles but the top allows "
            f"n_tiles_max={top_cfg.n_tiles_max}: elaborate TopConfig(n_tiles_max>={n_nt})")
    tps = 2 if mode == INT4 else 1
    steps = -(-T // tps)
    cap = min(top_cfg.t_max, top_cfg.act_depth // n_kt)
    per_job = -(-steps // -(-steps // cap)) * tps      # as few jobs as fit, balanced
    jobs = []
    for t0 in range(0, T, per_job):
        tok = min(per_job, T - t0)
        jobs.append(JobShape(-(-tok // tps), n_kt, n_nt))
    return jobs


def job_cycles(job, top_cfg, mode, kt_per_group=None, activity=None, fast_forward=True, link=IDEAL, t0=0):
    """Cycles of one job from its first header word to its last output word.

    `link` (nmaccel.arch.config.HostLink): the host's valid / ready pattern, `t0` the cycle (in
    the link's time) at which the job's first header word may go: each run of input words takes
    the next cycles the host offers words on, each output word the next cycle it accepts one
    (the ideal link: consecutive cycles). Returns the cycles from t0 to the last output word.

    Group-scale tops (top_cfg.group_scales) send a 'gs' record after the weights of every K tile that
    ends a scale group (every kt_per_group tiles, and the last). `activity` (a dict) accumulates
    what the replay moves: host words in per record kind and out, array steps of each tile,
    weight-tile loads, group-scale steps (steps of tiles that end a scale group), output steps.

    `fast_forward` (default): every update is a max / plus of earlier event times and constants,
    so the recurrence is shift-invariant: once the event times after N tile i equal those after
    N tile i - 2 plus one common shift D (same staging-bank parity), every later pair of N tiles
    adds exactly D (and the same activity as the last two replayed N tiles). The replay then jumps
    over whole periods and replays the remainder: the same count as the full replay (tests
    compare both), in O(n_kt) instead of O(n_kt * n_nt) steps. With a stalling link, only when D
    is a multiple of the link's period.
    """
    a = top_cfg.array
    R, gap, lat, db = a.rows, top_cfg.load_gap, top_cfg.out_latency, top_cfg.double_buffer
    ns, nkt, nnt = job.n_steps, job.n_kt, job.n_nt
    hw, wa = top_cfg.words("header"), top_cfg.words("act", int4=mode == INT4)
    we, wo = top_cfg.words("epilogue"), top_cfg.words("out")
    ww = top_cfg.words("weight", mode == CODEBOOK)
    gk = (kt_per_group or nkt) if top_cfg.group_scales else None
    wg = top_cfg.words("gs") if top_cfg.group_scales else 0
    act = activity if activity is not None else {}
    for k, v in (("words_header", hw), ("words_act", nkt * ns * wa)):
        act[k] = act.get(k, 0) + v
    # event times: next input word, bank 0 / 1 free, previous swap, output buffer free, last word
    t_in, free0, free1, swap, o_free, end = link.in_done(t0, hw + nkt * ns * wa), t0, t0, None, t0, None
    j = 0
    history = []                       # event times after each N tile (fast forward)
    nt_act = {}                        # activity of one N tile (the same for every N tile)
    nt = 0
    while nt < nnt:
        free = [free0, free1]
        tile_act = {}
        for kt in range(nkt):
            last = kt == nkt - 1
            s = max(t_in, free[j % 2])
            gend = gk is not None and ((kt + 1) % gk == 0 or last)
            t_in = link.in_done(s, R * ww + (we if last else 0) + (wg if gend else 0))
            for k, v in (("words_weight", R * ww), ("words_epilogue", we if last else 0),
                         ("words_gs", wg if gend else 0), ("tile_loads", 1), ("steps", ns),
                         ("gs_steps", ns if gend else 0), ("out_steps", ns if last else 0),
                         ("words_out", ns * wo if last else 0)):
                tile_act[k] = tile_act.get(k, 0) + v
            load = t_in
            if swap is not None:
                load = max(load, swap + 1 + gap + (0 if db else ns))
            free[j % 2] = load + R + 1
            sw = load + R
            if swap is not None and db:
                sw = max(sw, swap + ns)
            if last:
                sw = max(sw, o_free)
                w = sw + ns - 1 + lat
                end = link.out_last(w + 3, ns * wo)
                o_free = end + 1
            swap = sw
            j += 1
        for k, v in tile_act.items():
            act[k] = act.get(k, 0) + v
        nt_act = tile_act
        free0, free1 = free
        nt += 1
        state = (t_in, free0, free1, swap, o_free, end)
        history.append(state)
        if fast_forward and len(history) >= 3 and nt < nnt:
            prev = history[-3]
            d = state[0] - prev[0]
            if d % link.period == 0 and all(x - y == d for x, y in zip(state, prev)):
                periods = (nnt - nt) // 2
                t_in, free0, free1, swap, o_free, end = (x + periods * d for x in state)
                for k, v in nt_act.items():
                    act[k] = act.get(k, 0) + 2 * periods * v
                j += 2 * periods * nkt
                nt += 2 * periods
                history.clear()
    return end + 1 - t0


def cycles(shape, array_cfg, runtime_cfg, top_cfg=None, kt_per_group=None, activity=None, link=None):
    """Cycle count of a (T, K, N_out) GEMM on the accelerator top.

    `array_cfg`: the ArrayConfig; `top_cfg`: TopConfig (default TopConfig(array=array_cfg));
    `runtime_cfg`: anything with mode, n_keep, m_group (e.g. nmaccel.arch.config.RuntimeConfig).
    `kt_per_group`: K tiles per weight-scale group (group-scale tops; default: one group).
    `activity`: optional dict, filled by the replay (see job_cycles).
    `link`: the host link's valid / ready pattern (HostLink; default ideal). Each job's first
    header word may go the cycle after the previous job's last output word.
    """
    p = top_cfg if top_cfg is not None else TopConfig(array=array_cfg)
    require(array_cfg is None or p.array == array_cfg,
            "top_cfg.array differs from array_cfg: pass the same ArrayConfig")
    mode, nk, mg = runtime_cfg.mode, runtime_cfg.n_keep, runtime_cfg.m_group
    link = link or IDEAL
    t = 0
    for j in job_shapes(shape, p, mode, nk, mg):
        t += job_cycles(j, p, mode, kt_per_group, activity, link=link, t0=t)
    return t


def utilization(shape, array_cfg, runtime_cfg, n_cycles):
    """Useful MACs (T * N_out * K * n_keep / m_group) / (multiplier lanes x cycles x products
    per lane per cycle (2 in INT4 token packing))."""
    T, K, N = shape
    a = array_cfg
    per = 2 if runtime_cfg.mode == INT4 else 1
    useful = T * N * K * runtime_cfg.n_keep / runtime_cfg.m_group
    return useful / (a.rows * a.cols * a.n_max * per * n_cycles)
