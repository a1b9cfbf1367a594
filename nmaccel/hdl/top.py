"""Accelerator top: host word stream in, tiled N:M GEMM on the systolic array, fused epilogue,
result word stream out. Golden twin: `nmaccel.golden.top`; cycle model: `nmaccel.golden.cyclemodel`.

Ports (Verilog-facing): `in_data` (host_bits), `in_valid`, `in_ready`, `out_data` (host_bits),
`out_valid`, `out_ready`, `busy`. A 64-bit host needs 2 * 64 + 5 pins plus the clock.

Host stream (one job; every record is a bit string sent LSB-first in ceil(bits / host_bits)
words, record i's word w = bits [w*H, w*H+H); each record's fields are its table in
nmaccel.arch.layout, which the top reads through `split` / `slice` and writes through
nmaccel.hdl.signed.join):

=========  ======================================================  ===========================
record     fields (LSB first)                                      count, order
=========  ======================================================  ===========================
header     mode, n_keep, m_group, relu, raw, n_steps, n_kt, n_nt   1
           (+ kt_per_group on group-scale tops)
act        token A: rows x m_max INT8 (row r element k at          n_kt * n_steps (kt-major)
           byte r*m_max+k); token B likewise (INT4 mode only)
weight     w_in_0 .. w_in_{cols-1}, then cb_in_0 .. cb_in_{cols-1}  rows per (N tile, K tile),
           (codebook mode only) of one array load cycle            array row rows-1 first
gs         per column: group multiplier (gs_mult_bits, unsigned)    group-scale tops: after the
                                                                   weights of every K tile
                                                                   ending a scale group
epilogue   per column: mult, shift, bias                           after the weights (and gs)
                                                                   of an N tile's last K tile
=========  ======================================================  ===========================

Order: header, acts, then for nt in N tiles: for kt in K tiles: weights (+ gs at a group end)
(+ epilogue if last kt). Output: per N tile, n_steps records of cols * tokens_per_step fields of
raw_bits (token A's columns first), sent after the N tile's last K tile (raw: saturate to
raw_bits of sum + bias, relu optional; scaled: the INT8 epilogue). A new header is accepted
once the last word is out. Tokens beyond t_max steps: the host sends another job.

Pipeline: the input side fills two weight staging banks (bank b + 1 fills while bank b is
read). The loader reads a full bank into the array in `rows` shift cycles; with
TopConfig.double_buffer (default) they go into the PEs' shadow registers while the previous K
tile streams, and the streamer swaps them in (w_swap) with that tile's last step, so K tiles
stream back to back (a tile every max(n_steps, 2 * rows + cols - 2) cycles: after a swap the
shadow may shift again only once the swap has reached the last PE). Without it (single weight
register) the loader waits until the previous tile's last step has drained through the skewed
array. A last K tile starts only when the output buffer is free. Array outputs accumulate
in the accumulator buffer (first K tile writes, later tiles add); the last K tile's sums go
through `cols * tokens_per_step` epilogues into the output buffer, streamed out afterwards.
Group-scale tops (TopConfig.group_scales) keep the accumulator per scale group (partial sum P)
and at a group's last K tile add P * m[c] (exact, m unsigned from the gs record) into a second
`sum_bits` buffer: golden nmaccel.golden.groupscale.group_scaled_gemm, stage by stage.
Buffers use the registered-read-data pattern of nmaccel.hdl.buffers (block RAM on ECP5/xc7):
the activation buffer is single-port (make_buffer) with its address, write data and write enable
in registers (no logic in front of the block RAM; TopConfig.out_latency counts the extra cycle,
and every other array input goes through one register to stay aligned with the activations);
the accumulator / output buffers have one write and one registered read port; the rows-deep
weight staging buffer is small enough that Yosys keeps it in LUT RAM. The controller keeps its
step-end flag (`s.last_step`) in a register. Resources of the product top
(nmaccel.arch.config.PRODUCT_ARRAY / PRODUCT_TOP) on the ECP5-85k: benchmarks/results/fpga_study.json;
`nmaccel.verilog.synth.fit_estimate` refuses a top that cannot fit before synthesis.
"""
import pyrtl

from nmaccel.arch.config import EPILOGUE_LATENCY, MODE_CODE, TopConfig, ubits
from nmaccel.arch.layout import (Layout, activation_layout, epilogue_layout, groupscale_layout,
                                 header_layout, output_layout, weight_layout, window_layout)
from nmaccel.errors import require
from nmaccel.hdl.array import Bundle, make_systolic_array
from nmaccel.hdl.buffers import make_buffer
from nmaccel.hdl.epilogue import make_epilogue
from nmaccel.hdl.signed import delay, join, make_io_top, sadd, sext

IN_HDR, IN_ACT, IN_W, IN_EP, IN_DONE, IN_GS = range(6)
O_IDLE, O_PRIME, O_STREAM = range(3)
IN_SB, O_SB = (max(1, (n - 1).bit_length()) for n in (6, 3))   # state register widths


def top_input_widths(cfg):
    return {"in_data": cfg.host_bits, "in_valid": 1, "out_ready": 1}


def top_output_widths(cfg):
    return {"in_ready": 1, "out_data": cfg.host_bits, "out_valid": 1, "busy": 1}


def _reg(bits, name):
    return pyrtl.Register(bits, name=name)


def _c(v, bits):
    return pyrtl.Const(v, bitwidth=bits)


def _mem2p(name, depth_bits, width, waddr, wdata, we, raddr):
    """Block RAM with one write and one read port, read data registered (latency 1)."""
    mem = pyrtl.MemBlock(bitwidth=width, addrwidth=depth_bits, name=f"{name}.mem",
                         max_read_ports=1, max_write_ports=1, asynchronous=True)
    mem[waddr] <<= pyrtl.MemBlock.EnabledWrite(wdata, we)
    rdata = _reg(width, f"{name}.rdata")
    rdata.next <<= mem[raddr]
    return rdata


def _nxt(reg, *cases):
    """reg.next <<= the value of the first case (cond, value) whose cond holds, else reg."""
    v = reg
    for cond, val in reversed(cases):
        v = pyrtl.select(cond, val, v)
    reg.next <<= v


def make_accelerator_top(name, cfg, inputs=None):
    """The accelerator top (see the module docstring for the stream protocol).

    Ports: `inputs` dict with in_data / in_valid / out_ready (created as `{name}.{port}` wires
    when missing). Returns a bundle: `inputs`, `outputs` (in_ready, out_data, out_valid, busy),
    `array` (the systolic array bundle). Cycle count of a job: nmaccel.golden.cyclemodel.
    """
    require(isinstance(cfg, TopConfig), f"cfg must be a TopConfig, got {type(cfg).__name__}")
    A, H = cfg.array, cfg.host_bits
    R, C, TPS = A.rows, A.cols, A.tokens_per_step
    ins = dict(inputs or {})
    for port, w in top_input_widths(cfg).items():
        if port not in ins:
            ins[port] = pyrtl.WireVector(w, name=f"{name}.{port}")
    in_data, in_valid, out_ready = ins["in_data"], ins["in_valid"], ins["out_ready"]
    sb = cfg.steps_bits
    ktb, ntb = ubits(cfg.k_tiles_max), ubits(cfg.n_tiles_max)
    qb = ubits(R - 1)                    # stage row address bits
    ab = ubits(cfg.act_depth - 1)
    ob = ubits(cfg.t_max - 1)            # acc / out buffer address bits
    wcb = ubits(cfg.asm_words)

    # ---- registers -------------------------------------------------------------------------
    ist = _reg(IN_SB, f"{name}.in.state")
    wcnt = _reg(wcb, f"{name}.in.wcnt")
    a_s = _reg(sb, f"{name}.in.a_s")
    a_kt = _reg(ktb, f"{name}.in.a_kt")
    act_wa = _reg(ab, f"{name}.in.act_wa")
    wrow = _reg(qb, f"{name}.in.wrow")
    i_kt = _reg(ktb, f"{name}.in.kt")
    i_nt = _reg(ntb, f"{name}.in.nt")
    fb = _reg(1, f"{name}.in.fill_bank")
    full = [_reg(1, f"{name}.bank{b}.full") for b in range(2)]
    lq = _reg(ubits(R), f"{name}.ld.q")             # 1..R: weight shift cycles
    lb = _reg(1, f"{name}.ld.bank")
    lgap = _reg(ubits(cfg.load_gap), f"{name}.ld.gap")
    sh_full = _reg(1, f"{name}.ld.loaded")           # a loaded tile waits for its swap
    sact = _reg(1, f"{name}.s.active")
    sq = _reg(sb, f"{name}.s.step")
    p_kt = _reg(ktb, f"{name}.s.next_kt")            # tile to swap in next
    cur = {k: _reg(1, f"{name}.s.cur_{k}")
           for k in ("last", "first", "gend") + (("fg",) if cfg.group_scales else ())}
    act_ra = _reg(ab, f"{name}.s.act_ra")
    ost = _reg(O_SB, f"{name}.o.state")
    o_busy = _reg(1, f"{name}.o.busy")
    o_pend = _reg(1, f"{name}.o.pending")
    o_nt = _reg(ntb, f"{name}.o.nt")
    onx = _reg(sb, f"{name}.o.next")
    ow = _reg(ubits(cfg.words("out")), f"{name}.o.word")
    orec = _reg(cfg.words("out") * H, f"{name}.o.rec")
    active = _reg(1, f"{name}.job_active")

    # ---- word assembly -----------------------------------------------------------------------
    hdr_fields = dict(cfg.hdr_fields)
    cfgregs = {k: _reg(w, f"{name}.cfg.{k}") for k, w in hdr_fields.items()}
    codebook = cfgregs["mode"] == MODE_CODE["codebook"] if A.has_codebook else _c(0, 1)
    ns_m1 = _reg(sb, f"{name}.cfg.ns_m1")
    ns_m2 = _reg(sb, f"{name}.cfg.ns_m2")
    kt_m1 = _reg(ktb, f"{name}.cfg.kt_m1")
    nt_m1 = _reg(ntb, f"{name}.cfg.nt_m1")
    GS = cfg.group_scales
    if GS:
        gk_m1 = _reg(ktb, f"{name}.cfg.gk_m1")
        i_g = _reg(ktb, f"{name}.in.g")
        p_g = _reg(ktb, f"{name}.s.next_g")
        p_fg = _reg(1, f"{name}.s.next_first_group")

    full_fb = pyrtl.select(fb, full[1], full[0])
    in_w = (ist == IN_W) | (ist == IN_EP) | (ist == IN_GS)
    in_ready = (ist == IN_HDR) | (ist == IN_ACT) | (in_w & ~full_fb)
    accept = in_valid & in_ready
    w_words = pyrtl.select(codebook, _c(cfg.words("weight", True) - 1, wcb),
                           _c(cfg.words("weight") - 1, wcb))
    int4_mode = cfgregs["mode"] == MODE_CODE["int4"] if A.has_int4 else _c(0, 1)
    a_words = (pyrtl.select(int4_mode, _c(cfg.words("act", int4=True) - 1, wcb),
                            _c(cfg.words("act") - 1, wcb))
               if A.has_int4 else _c(cfg.words("act") - 1, wcb))
    need_m1 = pyrtl.mux(ist, _c(cfg.words("header") - 1, wcb), a_words,
                        w_words, _c(cfg.words("epilogue") - 1, wcb), _c(0, wcb),
                        _c(cfg.words("gs") - 1, wcb), default=_c(0, wcb))
    rec_done = accept & (wcnt == need_m1)
    live = []
    for i in range(cfg.asm_words):
        s = _reg(H, f"{name}.in.slot{i}")
        here = wcnt == i
        s.next <<= pyrtl.select(accept & here, in_data, s)
        live.append(pyrtl.select(here, in_data, s))
    rec = pyrtl.concat_list(live)
    _nxt(wcnt, (rec_done, _c(0, wcb)), (accept, wcnt + 1))

    # header
    hdr_done = rec_done & (ist == IN_HDR)
    hv = header_layout(cfg).split(rec)
    for k, r in cfgregs.items():
        _nxt(r, (hdr_done, hv[k]))
    _nxt(ns_m1, (hdr_done, (hv["n_steps"] - 1)[:sb]))
    _nxt(ns_m2, (hdr_done, (hv["n_steps"] - 2)[:sb]))
    ns_one = _reg(1, f"{name}.cfg.ns_one")
    _nxt(ns_one, (hdr_done, hv["n_steps"] == 1))
    _nxt(kt_m1, (hdr_done, (hv["n_kt"] - 1)[:ktb]))
    _nxt(nt_m1, (hdr_done, (hv["n_nt"] - 1)[:ntb]))
    if GS:
        _nxt(gk_m1, (hdr_done, (hv["kt_per_group"] - 1)[:ktb]))

    # activations
    act_wr = rec_done & (ist == IN_ACT)
    s_last = a_s == ns_m1
    act_last = s_last & (a_kt == kt_m1)
    _nxt(a_s, (hdr_done, _c(0, sb)), (act_wr & s_last, _c(0, sb)), (act_wr, a_s + 1))
    _nxt(a_kt, (hdr_done, _c(0, ktb)), (act_wr & s_last, a_kt + 1))
    _nxt(act_wa, (hdr_done, _c(0, ab)), (act_wr, act_wa + 1))
    ra_next = pyrtl.WireVector(ab, name=f"{name}.s.ra_next")
    # the buffer's address, write data and enable are registers (no logic in front of the
    # block RAM): a write lands one cycle after its word, a read's data two cycles after ra_next
    act_addr = _reg(ab, f"{name}.act.addr")
    act_addr.next <<= pyrtl.select(act_wr, act_wa, ra_next)
    act_lay = activation_layout(cfg, int4=A.has_int4)
    act = make_buffer(f"{name}.act", cfg.act_depth, act_lay.bits, addr=act_addr,
                      wdata=delay(rec[:act_lay.bits], 1, f"{name}.act.wdata_q"),
                      we=delay(act_wr, 1, f"{name}.act.we_q"))

    # weights and epilogue parameters
    w_wr = rec_done & (ist == IN_W)
    ep_wr = rec_done & (ist == IN_EP)
    row_last = wrow == R - 1
    in_last_kt = i_kt == kt_m1
    tile_in = w_wr & row_last
    gs_wr = rec_done & (ist == IN_GS)
    group_end_in = ((i_g == gk_m1) | in_last_kt) if GS else _c(0, 1)
    bank_set = (tile_in & ~in_last_kt & ~group_end_in) | (gs_wr & ~in_last_kt) | ep_wr
    if GS:
        _nxt(i_g, (hdr_done | ep_wr, _c(0, ktb)), (bank_set & group_end_in, _c(0, ktb)),
             (bank_set, i_g + 1))
    _nxt(wrow, (hdr_done, _c(0, qb)), (w_wr & row_last, _c(0, qb)), (w_wr, wrow + 1))
    _nxt(i_kt, (hdr_done, _c(0, ktb)), (ep_wr, _c(0, ktb)), (bank_set, i_kt + 1))
    _nxt(i_nt, (hdr_done, _c(0, ntb)), (ep_wr, i_nt + 1))
    _nxt(fb, (hdr_done, _c(0, 1)), (bank_set, ~fb))
    w_lay = weight_layout(cfg, codebook=A.has_codebook)
    ep_lay, gs_lay = epilogue_layout(cfg), groupscale_layout(cfg)
    stage = _mem2p(f"{name}.stage", qb + 1, w_lay.bits, pyrtl.concat(fb, wrow), rec[:w_lay.bits], w_wr,
                   pyrtl.concat(lb, lq[:qb]))
    ep_bank = []
    for b in range(2):
        r = _reg(ep_lay.bits, f"{name}.bank{b}.ep")
        _nxt(r, (ep_wr & (fb == b), rec[:ep_lay.bits]))
        ep_bank.append(r)
    gs_bits = gs_lay.bits
    gs_bank = []
    for b in range(2 if GS else 0):
        r = _reg(gs_bits, f"{name}.bank{b}.gs")
        _nxt(r, (gs_wr & (fb == b), rec[:gs_bits]))
        gs_bank.append(r)

    # ---- weight loader and step streamer ------------------------------------------------------
    # Loader: stage read at l, rows shift into the array (shadow registers with double_buffer)
    # on l+1 .. l+R. Streamer: a swap cycle S (w_swap, with the previous tile's last step when
    # the next tile is loaded in time), then steps S+1 .. S+n_steps. Cycle model: cyclemodel.
    DB = cfg.double_buffer
    lbusy = lq != 0
    load_last = lq == R
    # last_step = sact & (sq == ns_m1), registered: set by a swap when n_steps == 1, else on the
    # step before the last (sq == n_steps - 2)
    last_step = _reg(1, f"{name}.s.last_step")
    p_last = p_kt == kt_m1
    l_full = pyrtl.select(lb, full[1], full[0])
    fire = ~lbusy & l_full & ~sh_full & (lgap == 0) & (_c(1, 1) if DB else ~sact)
    avail = sh_full | load_last
    swap = avail & (~p_last | ~o_busy) & (~sact | last_step)
    for b in range(2):
        _nxt(full[b], (hdr_done, _c(0, 1)), (bank_set & (fb == b), _c(1, 1)),
             (load_last & (lb == b), _c(0, 1)))
    _nxt(lq, (fire, _c(1, len(lq))), (load_last, _c(0, len(lq))), (lbusy, lq + 1))
    _nxt(lb, (hdr_done, _c(0, 1)), (load_last, ~lb))
    _nxt(lgap, (swap if DB else last_step, _c(cfg.load_gap, len(lgap))), (lgap != 0, lgap - 1))
    _nxt(sh_full, (hdr_done | swap, _c(0, 1)), (load_last, _c(1, 1)))
    _nxt(sact, (hdr_done, _c(0, 1)), (swap, _c(1, 1)), (last_step, _c(0, 1)))
    _nxt(sq, (swap, _c(0, sb)), (sact, sq + 1))
    last_step.next <<= pyrtl.select(swap, ns_one, sact & ~last_step & (sq == ns_m2))
    _nxt(p_kt, (hdr_done, _c(0, ktb)), (swap & p_last, _c(0, ktb)), (swap, p_kt + 1))
    ra_next <<= pyrtl.select(hdr_done | (swap & (p_kt == 0)), _c(0, ab),
                             pyrtl.select(sact, act_ra + 1, act_ra))
    act_ra.next <<= ra_next                       # x_in at cycle t: step act_ra(t)
    if GS:
        p_gend = (p_g == gk_m1) | p_last
        _nxt(p_g, (hdr_done, _c(0, ktb)), (swap & p_gend, _c(0, ktb)), (swap, p_g + 1))
        _nxt(p_fg, (hdr_done, _c(1, 1)), (swap & p_last, _c(1, 1)), (swap & p_gend, _c(0, 1)))
        gs_lb = pyrtl.select(lb, gs_bank[1], gs_bank[0])
        gs_sh = _reg(gs_bits, f"{name}.gs_loaded")
        _nxt(gs_sh, (load_last, gs_lb))
        gs_act = _reg(gs_bits, f"{name}.gs_active")   # the streaming tile's group multipliers
        _nxt(gs_act, (swap, pyrtl.select(load_last, gs_lb, gs_sh)))
        nxt_flags = {"first": p_g == 0, "gend": p_gend, "fg": p_fg}
    else:
        nxt_flags = {"first": p_kt == 0, "gend": p_last}
    nxt_flags["last"] = p_last
    for k, r in cur.items():
        _nxt(r, (swap, nxt_flags[k]))
    ep_lb = pyrtl.select(lb, ep_bank[1], ep_bank[0])
    ep_sh = _reg(ep_lay.bits, f"{name}.ep_loaded")
    _nxt(ep_sh, (load_last, ep_lb))
    ep_act = _reg(ep_lay.bits, f"{name}.ep_active")
    _nxt(ep_act, (swap & p_last, pyrtl.select(load_last, ep_lb, ep_sh)))

    # ---- array ---------------------------------------------------------------------------------
    w_load = lbusy
    arr_in = {"cfg_load": hdr_done, "cfg_mode": hv["mode"], "cfg_n_keep": hv["n_keep"],
              "cfg_m_group": hv["m_group"], "w_load": w_load}
    if DB:
        arr_in["w_swap"] = swap
    # weight record: column c's PE word is lanes c * n_max .. (c + 1) * n_max - 1, its codebook
    # entries c * cb_entries .. (c + 1) * cb_entries - 1
    for c in range(C):
        arr_in[f"w_in_{c}"] = w_lay.slice(stage, "lane", c * A.n_max, (c + 1) * A.n_max)
    if A.has_codebook:
        arr_in["cb_load"] = w_load & codebook
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
    arr = make_systolic_array(f"{name}.array", cfg.core_array, arr_in, with_valid=False)

    # ---- accumulate across K tiles, epilogue -------------------------------------------------
    # step tag travelling with the array: valid, last K tile, first tile of its group, group end,
    # [first group,] step
    tag_lay = Layout([("valid", 1), ("last", 1), ("first", 1), ("gend", 1)]
                     + ([("fg", 1)] if GS else []) + [("step", sb)])
    tag = join(tag_lay, valid=sact, step=sq, **cur)
    tag_y = delay(tag, A.latency + 1, f"{name}.tag")
    tag_s = delay(tag_y, 1, f"{name}.tag_s")
    ty, ts = tag_lay.split(tag_y), tag_lay.split(tag_s)
    v_s, first_s, gend_s, step_s = ts["valid"], ts["first"], ts["gend"], ts["step"]
    AB = cfg.acc_bits
    lanes_y = []
    for t in range(TPS):
        for c in range(C):
            y = arr.outputs[f"y_out_{c}" if t == 0 else f"y_out_b_{c}"]
            lanes_y.append(delay(sext(y, AB), 1, f"{name}.y_t{t}_c{c}"))
    acc_word = Layout([("sum", AB, len(lanes_y), True)])     # accumulator buffer word, lane t * C + c
    acc_wdata = pyrtl.WireVector(acc_word.bits, name=f"{name}.acc_wdata")
    acc_old = _mem2p(f"{name}.acc", ob, acc_word.bits, step_s[:ob], acc_wdata,
                     v_s & ~gend_s, ty["step"][:ob])
    olds = acc_word.split(acc_old)["sum"]
    sums = []
    for i, (y, old) in enumerate(zip(lanes_y, olds)):
        s = pyrtl.WireVector(AB, name=f"{name}.sum{i}")
        s <<= pyrtl.select(first_s, y, sadd(old, y, AB))
        sums.append(s)
    acc_wdata <<= join(acc_word, sum=sums)
    te, fin = ts, sums
    if GS:
        # group end: total = (first group ? 0 : total) + P * m[c]  (m unsigned, exact product)
        SB = cfg.sum_bits
        m_s = gs_lay.split(delay(gs_act, 2 + A.latency, f"{name}.gsm"))["mult"]
        prods = [delay(pyrtl.signed_mult(P, m_s[i % C].zero_extended(cfg.gs_mult_bits + 1)), 1,
                       f"{name}.gprod{i}") for i, P in enumerate(sums)]
        te = tag_lay.split(delay(tag_s, 1, f"{name}.tag_g"))
        tot_word = Layout([("sum", SB, len(sums), True)])     # group-scaled total buffer word
        tot_wdata = pyrtl.WireVector(tot_word.bits, name=f"{name}.tot_wdata")
        tot_old = _mem2p(f"{name}.tot", ob, tot_word.bits, te["step"][:ob], tot_wdata,
                         te["valid"] & te["gend"] & ~te["last"], step_s[:ob])
        fin = []
        for i, (pr, old) in enumerate(zip(prods, tot_word.split(tot_old)["sum"])):
            t_ = pyrtl.WireVector(SB, name=f"{name}.total{i}")
            t_ <<= pyrtl.select(te["fg"], sext(pr, SB), sadd(old, pr, SB))
            fin.append(t_)
        tot_wdata <<= join(tot_word, sum=fin)
    v_e, last_e, step_e = te["valid"], te["last"], te["step"]

    E = cfg.epilogue
    epf = ep_lay.split(ep_act)["col"]
    relu, raw = cfgregs["relu"], cfgregs["raw"]
    eps = []
    for t in range(TPS):
        for c in range(C):
            p = epf[c]
            eps.append(make_epilogue(f"{name}.ep_t{t}_c{c}", E, fin[t * C + c], p["mult"], p["shift"],
                                     p["bias"], relu, raw, valid=v_e & last_e))
    otag_lay = Layout([("addr", ob), ("final", 1)])    # output-buffer address, last step of the job
    otag = otag_lay.split(delay(join(otag_lay, addr=step_e[:ob], final=step_e == ns_m1),
                                EPILOGUE_LATENCY, f"{name}.otag"))
    o_we = pyrtl.rtl_all(*[e.out_valid for e in eps])   # identical copies; synthesis merges them
    final_write = o_we & otag["final"]

    # ---- output stream ---------------------------------------------------------------------
    streaming = ost == O_STREAM
    prime = ost == O_PRIME
    out_valid = streaming
    o_acc = out_valid & out_ready
    last_word = ow == cfg.words("out") - 1
    adv = o_acc & last_word
    stream_end = adv & (onx == cfgregs["n_steps"])
    job_done = stream_end & (o_nt == nt_m1)
    oraddr = pyrtl.select(streaming, pyrtl.select(adv, onx + 1, onx),
                          pyrtl.select(prime, _c(1, sb), _c(0, sb)))[:ob]
    orec_bits = cfg.words("out") * H
    out_lay = output_layout(cfg)
    outmem = _mem2p(f"{name}.out", ob, out_lay.bits, otag["addr"], join(out_lay, y=[e.out for e in eps]),
                    o_we, oraddr)
    newrec = outmem.zero_extended(orec_bits)
    shifted = orec[H:].zero_extended(orec_bits) if orec_bits > H else _c(0, orec_bits)
    _nxt(orec, (prime | adv, newrec), (o_acc, shifted))
    _nxt(ow, (prime | adv, _c(0, len(ow))), (o_acc, ow + 1))
    _nxt(onx, (prime, _c(1, sb)), (adv, onx + 1))
    _nxt(ost, (stream_end, _c(O_IDLE, O_SB)), (prime, _c(O_STREAM, O_SB)),
         ((ost == O_IDLE) & o_pend, _c(O_PRIME, O_SB)))
    _nxt(o_pend, (final_write, _c(1, 1)), (prime, _c(0, 1)))
    _nxt(o_busy, (swap & p_last, _c(1, 1)), (stream_end, _c(0, 1)))
    _nxt(o_nt, (hdr_done, _c(0, ntb)), (stream_end, o_nt + 1))
    _nxt(active, (hdr_done, _c(1, 1)), (job_done, _c(0, 1)))
    _nxt(ist, (hdr_done, _c(IN_ACT, IN_SB)), (act_wr & act_last, _c(IN_W, IN_SB)),
         (tile_in & group_end_in, _c(IN_GS, IN_SB)), (tile_in & in_last_kt, _c(IN_EP, IN_SB)),
         (gs_wr & in_last_kt, _c(IN_EP, IN_SB)), (gs_wr, _c(IN_W, IN_SB)),
         (ep_wr & (i_nt == nt_m1), _c(IN_DONE, IN_SB)), (ep_wr, _c(IN_W, IN_SB)),
         (job_done, _c(IN_HDR, IN_SB)))
    outputs = {"in_ready": in_ready, "out_data": orec[:H], "out_valid": out_valid, "busy": active}
    return Bundle(inputs=ins, outputs=outputs, array=arr, job_done=job_done, fire=fire,
                  accept=accept, swap=swap)


def make_top_ports(cfg, name="top"):
    """The accelerator as a top level: pyrtl.Input / pyrtl.Output ports, snake_case names."""
    return make_io_top(make_accelerator_top, name, cfg, top_input_widths(cfg), top_output_widths(cfg))
