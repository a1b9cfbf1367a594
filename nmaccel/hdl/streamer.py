"""Streamer of the accelerator top (nmaccel.hdl.top): feeds the systolic array from the
buffers. Weight loader: a full staging bank shifts into the array (its shadow registers with
TopConfig.double_buffer); step streamer: a swap, then the tile's n_steps activation steps.
Golden twin: nmaccel.golden.top (as part of the whole top); cycle model: nmaccel.golden.cyclemodel.
"""
import pyrtl

from nmaccel.arch.config import ubits
from nmaccel.arch.layout import (activation_layout, epilogue_layout, groupscale_layout,
                                 weight_layout, window_layout)
from nmaccel.hdl.buffers import make_buffer, make_dual_port_buffer
from nmaccel.hdl.regs import Streamed, const, reg, set_next
from nmaccel.hdl.signed import delay, join


def make_streamer(name, cfg, ld, job) -> Streamed:
    """Weight loader, step streamer, the activation and weight staging buffers, and the array's
    inputs.

    Inputs: `ld` (Loaded: hdr_done, ConfigRegs, the buffer writes, epilogue / gs banks), `job`
    (JobRegs: bank_full, out_busy; a last K tile swaps in only once the output buffer is free).
    Output: Streamed (`arr_in` for make_systolic_array, the load / swap controls, the step tag,
    the streaming tile's epilogue and group multipliers).
    Latency: a stage read at cycle l (fire) shifts rows into the array on l+1 .. l+R; a swap
    at S, then steps S+1 .. S+n_steps. The activation buffer's address, write data and enable
    are registers: a write lands one cycle after its record, read data comes two cycles after
    `{name}.s.ra_next`; every other array input goes through one register to stay aligned.
    """
    A = cfg.array
    R, C, TPS = A.rows, A.cols, A.tokens_per_step
    sb = cfg.steps_bits
    ktb = ubits(cfg.k_tiles_max)
    qb = ubits(R - 1)                    # stage row address bits
    ab = ubits(cfg.act_depth - 1)
    GS, DB = cfg.group_scales, cfg.double_buffer
    hdr_done, cr = ld.hdr_done, ld.cfg
    full, o_busy = job.bank_full, job.out_busy

    lq = reg(ubits(R), f"{name}.ld.q")             # 1..R: weight shift cycles
    lb = reg(1, f"{name}.ld.bank")
    lgap = reg(ubits(cfg.load_gap), f"{name}.ld.gap")
    sh_full = reg(1, f"{name}.ld.loaded")           # a loaded tile waits for its swap
    sact = reg(1, f"{name}.s.active")
    sq = reg(sb, f"{name}.s.step")
    p_kt = reg(ktb, f"{name}.s.next_kt")            # tile to swap in next
    cur = {k: reg(1, f"{name}.s.cur_{k}")
           for k in ("last", "first", "gend") + (("fg",) if GS else ())}
    act_ra = reg(ab, f"{name}.s.act_ra")
    if GS:
        p_g = reg(ktb, f"{name}.s.next_g")
        p_fg = reg(1, f"{name}.s.next_first_group")

    # ---- buffers --------------------------------------------------------------------------------
    ra_next = pyrtl.WireVector(ab, name=f"{name}.s.ra_next")
    # the buffer's address, write data and enable are registers (no logic in front of the
    # block RAM): a write lands one cycle after its word, a read's data two cycles after ra_next
    act_addr = reg(ab, f"{name}.act.addr")
    act_addr.next <<= pyrtl.select(ld.act.we, ld.act.addr, ra_next)
    act_lay = activation_layout(cfg, int4=A.has_int4)
    act = make_buffer(f"{name}.act", cfg.act_depth, act_lay.bits, addr=act_addr,
                      wdata=delay(ld.act.data, 1, f"{name}.act.wdata_q"),
                      we=delay(ld.act.we, 1, f"{name}.act.we_q"))
    w_lay = weight_layout(cfg, codebook=A.has_codebook)
    ep_lay, gs_lay = epilogue_layout(cfg), groupscale_layout(cfg)
    stage = make_dual_port_buffer(f"{name}.stage", 1 << (qb + 1), w_lay.bits, waddr=ld.stage.addr,
                                  wdata=ld.stage.data, we=ld.stage.we,
                                  raddr=pyrtl.concat(lb, lq[:qb])).rdata

    # ---- weight loader and step streamer ------------------------------------------------------
    # Loader: stage read at l, rows shift into the array (shadow registers with double_buffer)
    # on l+1 .. l+R. Streamer: a swap cycle S (w_swap, with the previous tile's last step when
    # the next tile is loaded in time), then steps S+1 .. S+n_steps. Cycle model: cyclemodel.
    lbusy = lq != 0
    load_last = lq == R
    # last_step = sact & (sq == ns_m1), registered: set by a swap when n_steps == 1, else on the
    # step before the last (sq == n_steps - 2)
    last_step = reg(1, f"{name}.s.last_step")
    p_last = p_kt == cr.kt_m1
    l_full = pyrtl.select(lb, full[1], full[0])
    fire = ~lbusy & l_full & ~sh_full & (lgap == 0) & (const(1, 1) if DB else ~sact)
    avail = sh_full | load_last
    swap = avail & (~p_last | ~o_busy) & (~sact | last_step)
    set_next(lq, (fire, const(1, len(lq))), (load_last, const(0, len(lq))), (lbusy, lq + 1))
    set_next(lb, (hdr_done, const(0, 1)), (load_last, ~lb))
    set_next(lgap, (swap if DB else last_step, const(cfg.load_gap, len(lgap))), (lgap != 0, lgap - 1))
    set_next(sh_full, (hdr_done | swap, const(0, 1)), (load_last, const(1, 1)))
    set_next(sact, (hdr_done, const(0, 1)), (swap, const(1, 1)), (last_step, const(0, 1)))
    set_next(sq, (swap, const(0, sb)), (sact, sq + 1))
    last_step.next <<= pyrtl.select(swap, cr.ns_one, sact & ~last_step & (sq == cr.ns_m2))
    set_next(p_kt, (hdr_done, const(0, ktb)), (swap & p_last, const(0, ktb)), (swap, p_kt + 1))
    ra_next <<= pyrtl.select(hdr_done | (swap & (p_kt == 0)), const(0, ab),
                             pyrtl.select(sact, act_ra + 1, act_ra))
    act_ra.next <<= ra_next                       # x_in at cycle t: step act_ra(t)
    gs_act = None
    if GS:
        p_gend = (p_g == cr.gk_m1) | p_last
        set_next(p_g, (hdr_done, const(0, ktb)), (swap & p_gend, const(0, ktb)), (swap, p_g + 1))
        set_next(p_fg, (hdr_done, const(1, 1)), (swap & p_last, const(1, 1)), (swap & p_gend, const(0, 1)))
        gs_lb = pyrtl.select(lb, ld.gs_bank[1], ld.gs_bank[0])
        gs_sh = reg(gs_lay.bits, f"{name}.gs_loaded")
        set_next(gs_sh, (load_last, gs_lb))
        gs_act = reg(gs_lay.bits, f"{name}.gs_active")   # the streaming tile's group multipliers
        set_next(gs_act, (swap, pyrtl.select(load_last, gs_lb, gs_sh)))
        nxt_flags = {"first": p_g == 0, "gend": p_gend, "fg": p_fg}
    else:
        nxt_flags = {"first": p_kt == 0, "gend": p_last}
    nxt_flags["last"] = p_last
    for k, r in cur.items():
        set_next(r, (swap, nxt_flags[k]))
    ep_lb = pyrtl.select(lb, ld.ep_bank[1], ld.ep_bank[0])
    ep_sh = reg(ep_lay.bits, f"{name}.ep_loaded")
    set_next(ep_sh, (load_last, ep_lb))
    ep_act = reg(ep_lay.bits, f"{name}.ep_active")
    set_next(ep_act, (swap & p_last, pyrtl.select(load_last, ep_lb, ep_sh)))

    # ---- array inputs ---------------------------------------------------------------------------
    w_load = lbusy
    hv = ld.hdr
    arr_in = {"cfg_load": hdr_done, "cfg_mode": hv["mode"], "cfg_n_keep": hv["n_keep"],
              "cfg_m_group": hv["m_group"], "w_load": w_load}
    if DB:
        arr_in["w_swap"] = swap
    # weight record: column c's PE word is lanes c * n_max .. (c + 1) * n_max - 1, its codebook
    # entries c * cb_entries .. (c + 1) * cb_entries - 1
    for c in range(C):
        arr_in[f"w_in_{c}"] = w_lay.slice(stage, "lane", c * A.n_max, (c + 1) * A.n_max)
    if A.has_codebook:
        arr_in["cb_load"] = w_load & cr.codebook
        for c in range(C):
            arr_in[f"cb_in_{c}"] = w_lay.slice(stage, "table", c * A.cb_entries, (c + 1) * A.cb_entries)
    # record: token A (rows x m_max elements), then token B; x_in_r interleaves them per element
    xs = act_lay.split(act.rdata)["x"]
    tok = R * A.m_max                               # elements of one token
    window = window_layout(A)
    for r in range(R):
        arr_in[f"x_in_{r}"] = join(window, elem=[{"tok": [xs[t * tok + r * A.m_max + k] for t in range(TPS)]}
                                                 for k in range(A.m_max)])
    for k, v in list(arr_in.items()):
        # x_in comes from the registered-address buffer one cycle late: every other array
        # input goes through one register so they stay aligned (TopConfig.out_latency counts it)
        wv = pyrtl.WireVector(len(v), name=f"{name}.a_{k}")
        wv <<= v if k.startswith("x_in_") else delay(v, 1, f"{name}.q_{k}")
        arr_in[k] = wv
    return Streamed(arr_in=arr_in, fire=fire, load_last=load_last, lb=lb, swap=swap, p_last=p_last,
                    active=sact, step=sq, flags=cur, ep_act=ep_act, gs_act=gs_act)
