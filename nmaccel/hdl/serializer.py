"""Serializer of the accelerator top (nmaccel.hdl.top): the output buffer and the result word
stream back to the host. Golden twin: nmaccel.golden.top (as part of the whole top).
"""
import pyrtl

from nmaccel.arch.config import ubits
from nmaccel.arch.layout import output_layout
from nmaccel.hdl.buffers import make_dual_port_buffer
from nmaccel.hdl.regs import Serialized, const, reg, set_next
from nmaccel.hdl.signed import join

O_IDLE, O_PRIME, O_STREAM = range(3)
O_SB = max(1, (3 - 1).bit_length())               # state register width


def make_serializer(name, cfg, out_ready, res, ld) -> Serialized:
    """Store each step's epilogue lanes (`res`) in the output buffer `{name}.out`; once an N
    tile's last step is in, send its n_steps records of cols * tokens_per_step raw_bits fields,
    words("out") host words each, LSB first (state `{name}.o.state`: idle -> prime -> stream).

    Inputs: `out_ready` (1), `res` (Results), `ld` (Loaded: hdr_done, ConfigRegs n_steps /
    nt_m1). Output: Serialized (out_data, out_valid, stream_end, job_done).
    Latency: the last step's write -> 1 cycle (pending) -> 1 prime cycle (first record read)
    -> first word valid; one word per cycle while out_ready.
    """
    H = cfg.host_bits
    sb = cfg.steps_bits
    ntb = ubits(cfg.n_tiles_max)
    ob = ubits(cfg.t_max - 1)            # acc / out buffer address bits
    cr = ld.cfg
    ost = reg(O_SB, f"{name}.o.state")
    o_pend = reg(1, f"{name}.o.pending")
    o_nt = reg(ntb, f"{name}.o.nt")
    onx = reg(sb, f"{name}.o.next")
    ow = reg(ubits(cfg.words("out")), f"{name}.o.word")
    orec = reg(cfg.words("out") * H, f"{name}.o.rec")

    final_write = res.we & res.final
    streaming = ost == O_STREAM
    prime = ost == O_PRIME
    out_valid = streaming
    o_acc = out_valid & out_ready
    last_word = ow == cfg.words("out") - 1
    adv = o_acc & last_word
    stream_end = adv & (onx == cr.hdr["n_steps"])
    job_done = stream_end & (o_nt == cr.nt_m1)
    oraddr = pyrtl.select(streaming, pyrtl.select(adv, onx + 1, onx),
                          pyrtl.select(prime, const(1, sb), const(0, sb)))[:ob]
    orec_bits = cfg.words("out") * H
    out_lay = output_layout(cfg)
    outmem = make_dual_port_buffer(f"{name}.out", 1 << ob, out_lay.bits, waddr=res.addr,
                                   wdata=join(out_lay, y=res.ys), we=res.we, raddr=oraddr).rdata
    newrec = outmem.zero_extended(orec_bits)
    shifted = orec[H:].zero_extended(orec_bits) if orec_bits > H else const(0, orec_bits)
    set_next(orec, (prime | adv, newrec), (o_acc, shifted))
    set_next(ow, (prime | adv, const(0, len(ow))), (o_acc, ow + 1))
    set_next(onx, (prime, const(1, sb)), (adv, onx + 1))
    set_next(ost, (stream_end, const(O_IDLE, O_SB)), (prime, const(O_STREAM, O_SB)),
             ((ost == O_IDLE) & o_pend, const(O_PRIME, O_SB)))
    set_next(o_pend, (final_write, const(1, 1)), (prime, const(0, 1)))
    set_next(o_nt, (ld.hdr_done, const(0, ntb)), (stream_end, o_nt + 1))
    return Serialized(out_data=orec[:H], out_valid=out_valid, stream_end=stream_end,
                      job_done=job_done)
