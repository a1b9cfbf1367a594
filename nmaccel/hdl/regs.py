"""Register helpers and the wire bundles the blocks of the accelerator top (nmaccel.hdl.top)
pass to each other: loader -> streamer -> array -> accumulator -> serializer, and the
controller, which closes the job-level loops between them.

Every bundle is a frozen dataclass of wires (``eq=False``: PyRTL's ``==`` builds hardware).
"""
from dataclasses import dataclass

import pyrtl

IN_HDR, IN_ACT, IN_W, IN_EP, IN_DONE, IN_GS = range(6)      # input record state (in.state)
IN_SB = max(1, (6 - 1).bit_length())                        # its register width


def reg(bits, name):
    return pyrtl.Register(bits, name=name)


def const(v, bits):
    return pyrtl.Const(v, bitwidth=bits)


def set_next(r, *cases):
    """r.next <<= the value of the first case (cond, value) whose cond holds, else r."""
    v = r
    for cond, val in reversed(cases):
        v = pyrtl.select(cond, val, v)
    r.next <<= v


@dataclass(frozen=True, eq=False)
class HostIn:
    """The top's input ports: in_data (host_bits), in_valid (1), out_ready (1)."""
    in_data: pyrtl.WireVector
    in_valid: pyrtl.WireVector
    out_ready: pyrtl.WireVector


@dataclass(frozen=True, eq=False)
class JobRegs:
    """State read across blocks, next state set by make_controller: `in_state` (IN_SB, which
    record the host sends next), `bank_full` (2 x 1, weight staging bank b holds a tile),
    `out_busy` (1, a last K tile streams or its results are still going out), `active` (1)."""
    in_state: pyrtl.Register
    bank_full: tuple
    out_busy: pyrtl.Register
    active: pyrtl.Register


def make_job_regs(name):
    """The JobRegs registers (`{name}.in.state`, `.bank{b}.full`, `.o.busy`, `.job_active`)."""
    return JobRegs(in_state=reg(IN_SB, f"{name}.in.state"),
                   bank_full=tuple(reg(1, f"{name}.bank{b}.full") for b in range(2)),
                   out_busy=reg(1, f"{name}.o.busy"), active=reg(1, f"{name}.job_active"))


@dataclass(frozen=True, eq=False)
class ConfigRegs:
    """Job configuration, loaded from the header: `hdr` (header field -> register, widths of
    TopConfig.hdr_fields), n_steps - 1 / - 2 (steps_bits), `ns_one` (n_steps == 1), n_kt - 1,
    n_nt - 1, kt_per_group - 1 (None without group scales), `codebook` (1, codebook mode; a
    constant 0 when the array lacks the mode)."""
    hdr: dict
    ns_m1: pyrtl.Register
    ns_m2: pyrtl.Register
    ns_one: pyrtl.Register
    kt_m1: pyrtl.Register
    nt_m1: pyrtl.Register
    gk_m1: object
    codebook: pyrtl.WireVector


@dataclass(frozen=True, eq=False)
class WritePort:
    """One buffer write: `addr`, `data`, `we` (1)."""
    addr: pyrtl.WireVector
    data: pyrtl.WireVector
    we: pyrtl.WireVector


@dataclass(frozen=True, eq=False)
class Loaded:
    """What make_loader hands on. Host side: `in_ready`, `accept`. Record events (1 bit, the
    cycle a record's last word is accepted): `hdr_done`, `act_wr`, `act_last` (last activation
    record), `w_wr`, `ep_wr`, `gs_wr`, `tile_in` (a K tile's last weight row), `in_last_kt`,
    `group_end_in`, `last_nt` (the N tile counter is at the last tile), `bank_set` (bank `fb`
    holds a complete tile). `hdr`: the header record's fields (wires, valid with hdr_done);
    `cfg`: ConfigRegs; `fb` (1): the bank being filled; `act` / `stage`: activation and weight
    staging buffer writes; `ep_bank` / `gs_bank`: per bank epilogue / group multiplier records."""
    in_ready: pyrtl.WireVector
    accept: pyrtl.WireVector
    hdr_done: pyrtl.WireVector
    act_wr: pyrtl.WireVector
    act_last: pyrtl.WireVector
    w_wr: pyrtl.WireVector
    ep_wr: pyrtl.WireVector
    gs_wr: pyrtl.WireVector
    tile_in: pyrtl.WireVector
    in_last_kt: pyrtl.WireVector
    group_end_in: pyrtl.WireVector
    last_nt: pyrtl.WireVector
    bank_set: pyrtl.WireVector
    hdr: dict
    cfg: ConfigRegs
    fb: pyrtl.Register
    act: WritePort
    stage: WritePort
    ep_bank: tuple
    gs_bank: tuple


@dataclass(frozen=True, eq=False)
class Streamed:
    """What make_streamer hands on. `arr_in`: the systolic array's inputs. Control (1 bit):
    `fire` (stage read of a tile), `load_last` (its last shift cycle), `lb` (bank being
    loaded), `swap` (a tile starts streaming), `p_last` (that tile is the last K tile). Step
    tag: `active` (a step is on the array inputs' read address), `step` (steps_bits), `flags`
    (1 bit each: last, first, gend[, fg], of the streaming tile). `ep_act` / `gs_act`: the
    streaming N tile's epilogue record and the tile's group multipliers (None without)."""
    arr_in: dict
    fire: pyrtl.WireVector
    load_last: pyrtl.WireVector
    lb: pyrtl.Register
    swap: pyrtl.WireVector
    p_last: pyrtl.WireVector
    active: pyrtl.Register
    step: pyrtl.Register
    flags: dict
    ep_act: pyrtl.Register
    gs_act: object


@dataclass(frozen=True, eq=False)
class Results:
    """Epilogue outputs of one step (make_accumulator): `ys` (cols * tokens_per_step lanes of
    raw_bits, token A's columns first), `we` (1, all lanes valid), `addr` (output buffer
    address), `final` (1, the job's last step)."""
    ys: list
    we: pyrtl.WireVector
    addr: pyrtl.WireVector
    final: pyrtl.WireVector


@dataclass(frozen=True, eq=False)
class Serialized:
    """What make_serializer hands on: `out_data` (host_bits), `out_valid`, `stream_end` (an N
    tile's last word is taken), `job_done` (the job's last word is taken)."""
    out_data: pyrtl.WireVector
    out_valid: pyrtl.WireVector
    stream_end: pyrtl.WireVector
    job_done: pyrtl.WireVector
