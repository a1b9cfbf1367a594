"""Controller of the accelerator top (nmaccel.hdl.top): the job-level state machine and the
handshakes between its blocks (JobRegs). Golden twin: nmaccel.golden.top (stream decoder
states); cycle model: nmaccel.golden.cyclemodel.
"""
from nmaccel.hdl.regs import IN_ACT, IN_DONE, IN_EP, IN_GS, IN_HDR, IN_SB, IN_W, const, set_next


def make_controller(job, ld, st, ser):
    """Next state of the JobRegs: `in_state` (header -> activations -> per N tile: per K tile
    weights [-> gs at a group end] -> epilogue after the last K tile -> done -> header once the
    job's last word is out), `bank_full[b]` (set when the loader completes bank b, cleared by
    the streamer's last shift from it), `out_busy` (set when the last K tile swaps in, cleared
    at the N tile's stream end), `active` (header to the job's last word).

    Inputs: `job` (JobRegs), `ld` (Loaded: record events), `st` (Streamed: swap, p_last,
    load_last, lb), `ser` (Serialized: stream_end, job_done). Outputs: none (drives the
    JobRegs; no registers of its own). Latency: 1 cycle (registers).
    """
    hdr_done = ld.hdr_done
    for b, full in enumerate(job.bank_full):
        set_next(full, (hdr_done, const(0, 1)), (ld.bank_set & (ld.fb == b), const(1, 1)),
                 (st.load_last & (st.lb == b), const(0, 1)))
    set_next(job.out_busy, (st.swap & st.p_last, const(1, 1)), (ser.stream_end, const(0, 1)))
    set_next(job.active, (hdr_done, const(1, 1)), (ser.job_done, const(0, 1)))
    set_next(job.in_state, (hdr_done, const(IN_ACT, IN_SB)), (ld.act_wr & ld.act_last, const(IN_W, IN_SB)),
             (ld.tile_in & ld.group_end_in, const(IN_GS, IN_SB)), (ld.tile_in & ld.in_last_kt, const(IN_EP, IN_SB)),
             (ld.gs_wr & ld.in_last_kt, const(IN_EP, IN_SB)), (ld.gs_wr, const(IN_W, IN_SB)),
             (ld.ep_wr & ld.last_nt, const(IN_DONE, IN_SB)), (ld.ep_wr, const(IN_W, IN_SB)),
             (ser.job_done, const(IN_HDR, IN_SB)))
