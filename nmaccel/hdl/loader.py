"""Loader of the accelerator top (nmaccel.hdl.top): the host word stream in, one record at a
time (header, activations, weights, group multipliers, epilogue; the protocol table is in the
top's docstring). Golden twin: nmaccel.golden.top (stream decoder).
"""
import pyrtl

from nmaccel.arch.config import MODE_CODE, ubits
from nmaccel.arch.layout import (activation_layout, epilogue_layout, groupscale_layout,
                                 header_layout, weight_layout)
from nmaccel.hdl.regs import (IN_ACT, IN_EP, IN_GS, IN_HDR, IN_W, ConfigRegs, Loaded, WritePort,
                              const, reg, set_next)


def make_loader(name, cfg, host, job) -> Loaded:
    """Assemble host records and store them: header -> ConfigRegs, activations -> activation
    buffer writes, weight rows -> weight staging bank `fb` writes, gs / epilogue records -> the
    bank's `{name}.bank{b}.gs` / `.ep` registers; counts records (K / N tiles, rows, groups).

    Inputs: `host` (HostIn: in_data, in_valid), `job` (JobRegs: in_state selects the record,
    bank_full stalls weight records while bank `fb` is full). Output: Loaded (in_ready,
    accept, the record events, ConfigRegs, buffer writes, banks).
    Latency: `in_ready` is combinational; a record's event is high the cycle its last word is
    accepted (that word is read straight from in_data), registers hold its fields one cycle
    later.
    """
    A, H = cfg.array, cfg.host_bits
    R = A.rows
    sb = cfg.steps_bits
    ktb, ntb = ubits(cfg.k_tiles_max), ubits(cfg.n_tiles_max)
    qb = ubits(R - 1)                    # stage row address bits
    ab = ubits(cfg.act_depth - 1)
    wcb = ubits(cfg.asm_words)
    GS = cfg.group_scales
    ist, full = job.in_state, job.bank_full
    in_data, in_valid = host.in_data, host.in_valid

    wcnt = reg(wcb, f"{name}.in.wcnt")
    a_s = reg(sb, f"{name}.in.a_s")
    a_kt = reg(ktb, f"{name}.in.a_kt")
    act_wa = reg(ab, f"{name}.in.act_wa")
    wrow = reg(qb, f"{name}.in.wrow")
    i_kt = reg(ktb, f"{name}.in.kt")
    i_nt = reg(ntb, f"{name}.in.nt")
    fb = reg(1, f"{name}.in.fill_bank")
    cfgregs = {k: reg(w, f"{name}.cfg.{k}") for k, w in dict(cfg.hdr_fields).items()}
    codebook = cfgregs["mode"] == MODE_CODE["codebook"] if A.has_codebook else const(0, 1)
    ns_m1 = reg(sb, f"{name}.cfg.ns_m1")
    ns_m2 = reg(sb, f"{name}.cfg.ns_m2")
    kt_m1 = reg(ktb, f"{name}.cfg.kt_m1")
    nt_m1 = reg(ntb, f"{name}.cfg.nt_m1")
    gk_m1 = reg(ktb, f"{name}.cfg.gk_m1") if GS else None
    i_g = reg(ktb, f"{name}.in.g") if GS else None

    # ---- word assembly: record word w lands in slot w; the last one is read from in_data -----
    full_fb = pyrtl.select(fb, full[1], full[0])
    in_w = (ist == IN_W) | (ist == IN_EP) | (ist == IN_GS)
    in_ready = (ist == IN_HDR) | (ist == IN_ACT) | (in_w & ~full_fb)
    accept = in_valid & in_ready
    w_words = pyrtl.select(codebook, const(cfg.words("weight", True) - 1, wcb),
                           const(cfg.words("weight") - 1, wcb))
    int4_mode = cfgregs["mode"] == MODE_CODE["int4"] if A.has_int4 else const(0, 1)
    a_words = (pyrtl.select(int4_mode, const(cfg.words("act", int4=True) - 1, wcb),
                            const(cfg.words("act") - 1, wcb))
               if A.has_int4 else const(cfg.words("act") - 1, wcb))
    need_m1 = pyrtl.mux(ist, const(cfg.words("header") - 1, wcb), a_words,
                        w_words, const(cfg.words("epilogue") - 1, wcb), const(0, wcb),
                        const(cfg.words("gs") - 1, wcb), default=const(0, wcb))
    rec_done = accept & (wcnt == need_m1)
    live = []
    for i in range(cfg.asm_words):
        s = reg(H, f"{name}.in.slot{i}")
        here = wcnt == i
        s.next <<= pyrtl.select(accept & here, in_data, s)
        live.append(pyrtl.select(here, in_data, s))
    rec = pyrtl.concat_list(live)
    set_next(wcnt, (rec_done, const(0, wcb)), (accept, wcnt + 1))

    # ---- header -------------------------------------------------------------------------------
    hdr_done = rec_done & (ist == IN_HDR)
    hv = header_layout(cfg).split(rec)
    for k, r in cfgregs.items():
        set_next(r, (hdr_done, hv[k]))
    set_next(ns_m1, (hdr_done, (hv["n_steps"] - 1)[:sb]))
    set_next(ns_m2, (hdr_done, (hv["n_steps"] - 2)[:sb]))
    ns_one = reg(1, f"{name}.cfg.ns_one")
    set_next(ns_one, (hdr_done, hv["n_steps"] == 1))
    set_next(kt_m1, (hdr_done, (hv["n_kt"] - 1)[:ktb]))
    set_next(nt_m1, (hdr_done, (hv["n_nt"] - 1)[:ntb]))
    if GS:
        set_next(gk_m1, (hdr_done, (hv["kt_per_group"] - 1)[:ktb]))

    # ---- activations: step a_s of K tile a_kt at act_wa -------------------------------------
    act_wr = rec_done & (ist == IN_ACT)
    s_last = a_s == ns_m1
    act_last = s_last & (a_kt == kt_m1)
    set_next(a_s, (hdr_done, const(0, sb)), (act_wr & s_last, const(0, sb)), (act_wr, a_s + 1))
    set_next(a_kt, (hdr_done, const(0, ktb)), (act_wr & s_last, a_kt + 1))
    set_next(act_wa, (hdr_done, const(0, ab)), (act_wr, act_wa + 1))
    act_lay = activation_layout(cfg, int4=A.has_int4)

    # ---- weights (row wrow of bank fb), group multipliers and epilogue parameters ----------
    w_wr = rec_done & (ist == IN_W)
    ep_wr = rec_done & (ist == IN_EP)
    row_last = wrow == R - 1
    in_last_kt = i_kt == kt_m1
    tile_in = w_wr & row_last
    gs_wr = rec_done & (ist == IN_GS)
    group_end_in = ((i_g == gk_m1) | in_last_kt) if GS else const(0, 1)
    bank_set = (tile_in & ~in_last_kt & ~group_end_in) | (gs_wr & ~in_last_kt) | ep_wr
    if GS:
        set_next(i_g, (hdr_done | ep_wr, const(0, ktb)), (bank_set & group_end_in, const(0, ktb)),
                 (bank_set, i_g + 1))
    set_next(wrow, (hdr_done, const(0, qb)), (w_wr & row_last, const(0, qb)), (w_wr, wrow + 1))
    set_next(i_kt, (hdr_done, const(0, ktb)), (ep_wr, const(0, ktb)), (bank_set, i_kt + 1))
    set_next(i_nt, (hdr_done, const(0, ntb)), (ep_wr, i_nt + 1))
    set_next(fb, (hdr_done, const(0, 1)), (bank_set, ~fb))
    w_lay = weight_layout(cfg, codebook=A.has_codebook)
    ep_lay, gs_lay = epilogue_layout(cfg), groupscale_layout(cfg)
    ep_bank = []
    for b in range(2):
        r = reg(ep_lay.bits, f"{name}.bank{b}.ep")
        set_next(r, (ep_wr & (fb == b), rec[:ep_lay.bits]))
        ep_bank.append(r)
    gs_bank = []
    for b in range(2 if GS else 0):
        r = reg(gs_lay.bits, f"{name}.bank{b}.gs")
        set_next(r, (gs_wr & (fb == b), rec[:gs_lay.bits]))
        gs_bank.append(r)

    cfg_regs = ConfigRegs(hdr=cfgregs, ns_m1=ns_m1, ns_m2=ns_m2, ns_one=ns_one, kt_m1=kt_m1,
                          nt_m1=nt_m1, gk_m1=gk_m1, codebook=codebook)
    return Loaded(in_ready=in_ready, accept=accept, hdr_done=hdr_done, act_wr=act_wr,
                  act_last=act_last, w_wr=w_wr, ep_wr=ep_wr, gs_wr=gs_wr, tile_in=tile_in,
                  in_last_kt=in_last_kt, group_end_in=group_end_in, last_nt=i_nt == nt_m1,
                  bank_set=bank_set, hdr=hv, cfg=cfg_regs, fb=fb,
                  act=WritePort(addr=act_wa, data=rec[:act_lay.bits], we=act_wr),
                  stage=WritePort(addr=pyrtl.concat(fb, wrow), data=rec[:w_lay.bits], we=w_wr),
                  ep_bank=tuple(ep_bank), gs_bank=tuple(gs_bank))
