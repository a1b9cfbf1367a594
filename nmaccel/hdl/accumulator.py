"""Accumulator of the accelerator top (nmaccel.hdl.top): array column sums accumulated across
K tiles, group-scale totals, and the fused epilogue lanes of an N tile's last K tile.
Golden twin: nmaccel.golden.top (as part of the whole top); group scales stage by stage:
nmaccel.golden.groupscale.group_scaled_gemm; epilogue: nmaccel.golden.epilogue.
"""
import pyrtl

from nmaccel.arch.config import EPILOGUE_LATENCY, ubits
from nmaccel.arch.layout import Layout, epilogue_layout, groupscale_layout
from nmaccel.hdl.buffers import make_dual_port_buffer
from nmaccel.hdl.epilogue import make_epilogue
from nmaccel.hdl.regs import Results
from nmaccel.hdl.signed import delay, join, sadd, sext


def make_accumulator(name, cfg, arr, st, cr) -> Results:
    """Per step and lane (t * cols + c): sum = y (first tile of the sum) or acc[step] + y,
    written back to the accumulator buffer `{name}.acc` unless the tile ends the sum. Group-scale
    tops keep that per scale group (P) and at a group's last K tile add P * m[c] (unsigned gs
    multiplier, exact) into the `{name}.tot` buffer (sum_bits). The last K tile's sums go
    through cols * tokens_per_step make_epilogue lanes (cfg.epilogue; the streaming N tile's
    epilogue record, the header's relu / raw).

    Inputs: `arr` (systolic array bundle: y_out_c, y_out_b_c), `st` (Streamed: the step tag and
    ep_act / gs_act of the streaming tile), `cr` (ConfigRegs: relu, raw, ns_m1).
    Output: Results (epilogue lanes, write enable, output buffer address, job's last step).
    Latency: the step tag travels A.latency + 1 cycles to the array output, + 1 (y registers)
    to the sums, + 1 (registered sums, or the registered group products on group-scale tops),
    then EPILOGUE_LATENCY to Results.
    """
    A = cfg.array
    C, TPS = A.cols, A.tokens_per_step
    sb, GS = cfg.steps_bits, cfg.group_scales
    ob = ubits(cfg.t_max - 1)            # acc / out buffer address bits
    # step tag travelling with the array: valid, last K tile, first tile of its group, group end,
    # [first group,] step
    tag_lay = Layout([("valid", 1), ("last", 1), ("first", 1), ("gend", 1)]
                     + ([("fg", 1)] if GS else []) + [("step", sb)])
    tag = join(tag_lay, valid=st.active, step=st.step, **st.flags)
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
    acc_old = make_dual_port_buffer(f"{name}.acc", 1 << ob, acc_word.bits, waddr=step_s[:ob],
                                    wdata=acc_wdata, we=v_s & ~gend_s, raddr=ty["step"][:ob]).rdata
    olds = acc_word.split(acc_old)["sum"]
    sums = []
    for i, (y, old) in enumerate(zip(lanes_y, olds)):
        s = pyrtl.WireVector(AB, name=f"{name}.sum{i}")
        s <<= pyrtl.select(first_s, y, sadd(old, y, AB))
        sums.append(s)
    acc_wdata <<= join(acc_word, sum=sums)
    if not GS:
        # the sums go to the epilogue through one register (timing: block RAM read -> K-tile
        # adder -> register; the epilogue's bias adder starts from it)
        e_lay = Layout([("valid", 1), ("last", 1), ("step", sb)])
        te = e_lay.split(delay(join(e_lay, valid=v_s, last=ts["last"], step=step_s), 1, f"{name}.tag_e"))
        fin = [delay(s_, 1, f"{name}.sum_q{i}") for i, s_ in enumerate(sums)]
    else:
        # group end: total = (first group ? 0 : total) + P * m[c]  (m unsigned, exact product)
        SB = cfg.sum_bits
        m_s = groupscale_layout(cfg).split(delay(st.gs_act, 2 + A.latency, f"{name}.gsm"))["mult"]
        prods = [delay(pyrtl.signed_mult(P, m_s[i % C].zero_extended(cfg.gs_mult_bits + 1)), 1,
                       f"{name}.gprod{i}") for i, P in enumerate(sums)]
        te = tag_lay.split(delay(tag_s, 1, f"{name}.tag_g"))
        tot_word = Layout([("sum", SB, len(sums), True)])     # group-scaled total buffer word
        tot_wdata = pyrtl.WireVector(tot_word.bits, name=f"{name}.tot_wdata")
        tot_old = make_dual_port_buffer(f"{name}.tot", 1 << ob, tot_word.bits, waddr=te["step"][:ob],
                                        wdata=tot_wdata, we=te["valid"] & te["gend"] & ~te["last"],
                                        raddr=step_s[:ob]).rdata
        fin = []
        for i, (pr, old) in enumerate(zip(prods, tot_word.split(tot_old)["sum"])):
            t_ = pyrtl.WireVector(SB, name=f"{name}.total{i}")
            t_ <<= pyrtl.select(te["fg"], sext(pr, SB), sadd(old, pr, SB))
            fin.append(t_)
        tot_wdata <<= join(tot_word, sum=fin)
    v_e, last_e, step_e = te["valid"], te["last"], te["step"]

    # ---- epilogue lanes of the last K tile ---------------------------------------------------
    E = cfg.epilogue
    epf = epilogue_layout(cfg).split(st.ep_act)["col"]
    relu, raw = cr.hdr["relu"], cr.hdr["raw"]
    eps = []
    for t in range(TPS):
        for c in range(C):
            p = epf[c]
            eps.append(make_epilogue(f"{name}.ep_t{t}_c{c}", E, fin[t * C + c], p["mult"], p["shift"],
                                     p["bias"], relu, raw, valid=v_e & last_e))
    otag_lay = Layout([("addr", ob), ("final", 1)])    # output-buffer address, last step of the job
    otag = otag_lay.split(delay(join(otag_lay, addr=step_e[:ob], final=step_e == cr.ns_m1),
                                EPILOGUE_LATENCY, f"{name}.otag"))
    o_we = pyrtl.rtl_all(*[e.out_valid for e in eps])   # identical copies; synthesis merges them
    return Results(ys=[e.out for e in eps], we=o_we, addr=otag["addr"], final=otag["final"])
