"""Narrow host interface: one `width`-bit valid/ready word stream in, one out.

Input stream word format (all fields LSB-first inside a word, multi-word values LSB beat first):

  header word:  bits [0, op_bits)                 opcode
                bits [op_bits, op_bits+sel_bits)  sel: config register index or target memory
                bits [op_bits+sel_bits, width)    count: memory words that follow (OP_WRITE)
  OP_NOP    (0): nothing.
  OP_CONFIG (1): next word = value of config register `sel` (cfg_bits <= width).
  OP_WRITE  (2): next word = start address (mem_addr_bits <= width); then `count` memory words
                 of mem_word_bits, each as `beats` = ceil(mem_word_bits / width) stream words,
                 lowest bits first, unused top bits zero. Written to addresses addr, addr+1, ...
                 of target memory `sel`. count = 0 sends the address word and no data.
  OP_START  (3): one-cycle `start` pulse (the job controller begins with the current config).
  OP_READ   (4): next word = start address; the interface then reads `count` words of target
                 `sel` (addr, addr+1, ...) and sends each on the output stream as `beats` words,
                 lowest bits first. The input stream stalls (in_ready = 0) until all reads are
                 issued. Results and status words are read this way (e.g. the output buffer).

`op_bits` = bits for the opcode set, `sel_bits` = max(bits for n_targets, bits for n_cfg_regs),
count takes the rest. A `PackedWeights` section goes in as OP_WRITE payload: its
`memory_image(section, word_bits=mem_word_bits)` words are the memory words (`encode_write`
splits images longer than the count field into several commands).

Output stream: `make_host_stream_out` serializes words into ceil(word bits / width) beats, lowest
bits first, no header; `make_host_stream_in` uses it for OP_READ data.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyrtl

from nmaccel.errors import require

OPCODES = {"nop": 0, "config": 1, "write": 2, "start": 3, "read": 4}
OP_NOP, OP_CONFIG, OP_WRITE, OP_START, OP_READ = (
    OPCODES[k] for k in ("nop", "config", "write", "start", "read"))
STATES = ("header", "cfg_value", "addr", "data")
S_HEADER, S_CFG_VALUE, S_ADDR, S_DATA = range(len(STATES))
READ_FIFO_DEPTH = 2
HOSTIF_WRITE_LATENCY = 1   # last beat accepted -> mem_we / mem_data registered outputs
READ_OVERHEAD = 5          # OP_READ header .. first output beat (see read_stream_cycles)


def _bits(n):
    """Bits to hold values 0..n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


@dataclass(frozen=True)
class HostIfConfig:
    """Elaboration parameters of the host stream interface."""

    width: int = 32
    mem_word_bits: int = 64
    mem_addr_bits: int = 10
    n_targets: int = 4
    n_cfg_regs: int = 8
    cfg_bits: int = 32

    def __post_init__(self):
        for f in ("width", "mem_word_bits", "mem_addr_bits", "n_targets", "n_cfg_regs", "cfg_bits"):
            v = getattr(self, f)
            require(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                    f"host interface {f} must be an int >= 1, got {v!r}")
        require(self.mem_addr_bits <= self.width,
                f"mem_addr_bits ({self.mem_addr_bits}) must fit one {self.width}-bit stream word")
        require(self.cfg_bits <= self.width,
                f"cfg_bits ({self.cfg_bits}) must fit one {self.width}-bit stream word")
        require(self.count_bits >= 1,
                f"stream width {self.width} leaves no header bits for the word count; widen it")

    @property
    def op_bits(self) -> int:
        return _bits(len(OPCODES))

    @property
    def sel_bits(self) -> int:
        return max(_bits(self.n_targets), _bits(self.n_cfg_regs))

    @property
    def count_bits(self) -> int:
        return self.width - self.op_bits - self.sel_bits

    @property
    def beats(self) -> int:
        return -(-self.mem_word_bits // self.width)

    @property
    def max_count(self) -> int:
        return (1 << self.count_bits) - 1


# ---- host side: the word format ---------------------------------------------------------------
def encode_header(cfg: HostIfConfig, op, sel=0, count=0) -> int:
    require(op in OPCODES.values(), f"unknown opcode {op}; use one of {OPCODES}")
    require(0 <= sel < 1 << cfg.sel_bits, f"header sel {sel} does not fit {cfg.sel_bits} bits")
    require(0 <= count <= cfg.max_count, f"header count {count} exceeds {cfg.max_count}")
    return op | sel << cfg.op_bits | count << (cfg.op_bits + cfg.sel_bits)


def encode_config(cfg: HostIfConfig, reg, value) -> list:
    """Stream words setting config register `reg` to `value` (unsigned, < 2^cfg_bits)."""
    require(0 <= reg < cfg.n_cfg_regs, f"config register {reg} out of range [0, {cfg.n_cfg_regs})")
    require(0 <= int(value) < 1 << cfg.cfg_bits,
            f"config value {value} does not fit {cfg.cfg_bits} bits (write it as unsigned)")
    return [encode_header(cfg, OP_CONFIG, reg), int(value)]


def encode_start(cfg: HostIfConfig) -> list:
    return [encode_header(cfg, OP_START)]


def encode_write(cfg: HostIfConfig, target, addr, words) -> list:
    """Stream words writing memory words (ints < 2^mem_word_bits) to `target` from `addr` on."""
    require(0 <= target < cfg.n_targets, f"target memory {target} out of range [0, {cfg.n_targets})")
    words = [int(w) for w in words]
    depth = 1 << cfg.mem_addr_bits
    require(0 <= addr and addr + len(words) <= depth,
            f"write of {len(words)} words at address {addr} overruns the {depth}-word memory; "
            "tile the data or elaborate larger buffers")
    require(all(0 <= w < 1 << cfg.mem_word_bits for w in words),
            f"memory words must be unsigned < 2^{cfg.mem_word_bits}")
    mask = (1 << cfg.width) - 1
    out = []
    pos = 0
    while True:
        chunk = words[pos:pos + cfg.max_count]
        out += [encode_header(cfg, OP_WRITE, target, len(chunk)), addr + pos]
        for w in chunk:
            out += [(w >> (cfg.width * b)) & mask for b in range(cfg.beats)]
        pos += len(chunk)
        if pos >= len(words):
            return out


def encode_read(cfg: HostIfConfig, target, addr, n_words) -> list:
    """Stream words reading `n_words` memory words of `target` from `addr` on; the answer is
    n_words * beats output-stream words."""
    require(0 <= target < cfg.n_targets, f"target memory {target} out of range [0, {cfg.n_targets})")
    depth = 1 << cfg.mem_addr_bits
    require(int(n_words) >= 0 and 0 <= addr and addr + int(n_words) <= depth,
            f"read of {n_words} words at address {addr} overruns the {depth}-word memory")
    out, pos = [], 0
    while True:
        n = min(cfg.max_count, int(n_words) - pos)
        out += [encode_header(cfg, OP_READ, target, n), addr + pos]
        pos += n
        if pos >= int(n_words):
            return out


def write_stream_words(cfg: HostIfConfig, n_words) -> int:
    """Stream words (= cycles at full rate) that `encode_write` needs for `n_words` memory
    words: a header and an address word per command of <= max_count words, plus the beats."""
    require(int(n_words) >= 0, f"word count must be >= 0, got {n_words}")
    n = int(n_words)
    commands = max(1, -(-n // cfg.max_count))
    return 2 * commands + n * cfg.beats


def read_stream_cycles(cfg: HostIfConfig, n_words) -> int:
    """Cycles of one OP_READ command of n_words (<= max_count) at full rate, from the cycle
    its header is accepted to the cycle of its last output beat, inclusive: header, address,
    read issue, BRAM read, FIFO (READ_OVERHEAD = 5), then one beat per cycle."""
    n = int(n_words)
    require(1 <= n <= cfg.max_count, f"one OP_READ moves 1..{cfg.max_count} words, got {n}")
    return READ_OVERHEAD + n * cfg.beats


# ---- hardware --------------------------------------------------------------------------------
@dataclass
class HostStreamIn:
    """Bundle: `in_ready`, memory write port (`mem_we`, `mem_target`, `mem_addr`, `mem_data`,
    registered), `cfg_regs` (list of cfg_bits registers), `start` (1-cycle registered pulse);
    with a read port: `rd_en`, `rd_target`, `rd_addr` (memory read request), `out_data`,
    `out_valid` (output stream), else those are None."""

    cfg: HostIfConfig
    in_ready: pyrtl.WireVector
    mem_we: pyrtl.WireVector
    mem_target: pyrtl.WireVector
    mem_addr: pyrtl.WireVector
    mem_data: pyrtl.WireVector
    cfg_regs: list
    start: pyrtl.WireVector
    rd_en: pyrtl.WireVector = None
    rd_target: pyrtl.WireVector = None
    rd_addr: pyrtl.WireVector = None
    out_data: pyrtl.WireVector = None
    out_valid: pyrtl.WireVector = None


def make_host_stream_in(name, cfg: HostIfConfig, in_data, in_valid, hold=None, rd_data=None,
                        out_ready=None) -> HostStreamIn:
    """Deserializer and command decoder for the input stream (format: module docstring).

    Ports: `in_data` (width), `in_valid` (1), `hold` (1, optional: 1 stalls the stream, e.g.
    while the controller owns the buffers). `in_ready` = not hold; a word moves when
    in_valid & in_ready. Outputs are registered: a memory word is on `mem_*` with `mem_we` = 1
    the cycle after its last beat moved; config registers update the cycle after their value
    word; `start` pulses the cycle after the OP_START header.
    Read port (optional, OP_READ): `rd_data` (mem_word_bits) must be the word at `rd_addr` of
    `rd_target` one cycle after `rd_en` (a `make_buffer` read); `out_ready` (1) is the output
    stream's ready. A 2-entry FIFO decouples reads from the serializer: one memory word per
    max(beats, 1) cycles. Without `rd_data`, OP_READ consumes its address word and does nothing.
    """
    require(len(in_data) == cfg.width, f"{name}: in_data must be {cfg.width} bits")
    require(len(in_valid) == 1, f"{name}: in_valid must be 1 bit")
    if hold is None:
        hold = pyrtl.Const(0, bitwidth=1)
    W = cfg.width
    in_ready = pyrtl.WireVector(1, name=f"{name}.in_ready")
    read_port = rd_data is not None
    if read_port:
        require(len(rd_data) == cfg.mem_word_bits, f"{name}: rd_data must be {cfg.mem_word_bits} bits")
        require(out_ready is not None and len(out_ready) == 1, f"{name}: out_ready (1 bit) "
                "is needed with rd_data")
        rd_active = pyrtl.Register(1, name=f"{name}.rd_active")
        in_ready <<= ~hold & ~rd_active
    else:
        in_ready <<= ~hold
    fire = in_valid & in_ready

    state = pyrtl.Register(_bits(len(STATES)), name=f"{name}.state")
    sel = pyrtl.Register(cfg.sel_bits, name=f"{name}.sel")
    count = pyrtl.Register(cfg.count_bits, name=f"{name}.count")
    is_read = pyrtl.Register(1, name=f"{name}.is_read")
    addr = pyrtl.Register(cfg.mem_addr_bits, name=f"{name}.addr")
    beat = pyrtl.Register(_bits(cfg.beats), name=f"{name}.beat")
    asm = pyrtl.Register((cfg.beats - 1) * W, name=f"{name}.asm") if cfg.beats > 1 else None
    mem_we = pyrtl.Register(1, name=f"{name}.mem_we")
    mem_target = pyrtl.Register(cfg.sel_bits, name=f"{name}.mem_target")
    mem_addr = pyrtl.Register(cfg.mem_addr_bits, name=f"{name}.mem_addr")
    mem_data = pyrtl.Register(cfg.mem_word_bits, name=f"{name}.mem_data")
    start = pyrtl.Register(1, name=f"{name}.start")
    cfg_regs = [pyrtl.Register(cfg.cfg_bits, name=f"{name}.cfg{i}") for i in range(cfg.n_cfg_regs)]

    op = in_data[:cfg.op_bits]
    h_sel = in_data[cfg.op_bits:cfg.op_bits + cfg.sel_bits]
    h_count = in_data[cfg.op_bits + cfg.sel_bits:]
    in_header = state == S_HEADER
    in_cfg = state == S_CFG_VALUE
    in_addr = state == S_ADDR
    in_data_st = state == S_DATA
    last_beat = beat == cfg.beats - 1
    word_done = fire & in_data_st & last_beat

    with pyrtl.conditional_assignment:
        with fire & in_header:
            sel.next |= h_sel
            count.next |= h_count
            is_read.next |= op == OP_READ
            with op == OP_CONFIG:
                state.next |= S_CFG_VALUE
            with (op == OP_WRITE) | (op == OP_READ):
                state.next |= S_ADDR
        with fire & in_cfg:
            state.next |= S_HEADER
        with fire & in_addr:
            addr.next |= in_data[:cfg.mem_addr_bits]
            beat.next |= 0
            with (count == 0) | is_read:
                state.next |= S_HEADER
            with pyrtl.otherwise:
                state.next |= S_DATA
        with fire & in_data_st:
            with last_beat:
                beat.next |= 0
                addr.next |= (addr + 1)[:cfg.mem_addr_bits]
                count.next |= (count - 1)[:cfg.count_bits]
                with count == 1:
                    state.next |= S_HEADER
            with pyrtl.otherwise:
                beat.next |= (beat + 1)[:len(beat)]

    if asm is not None:
        asm.next <<= pyrtl.select(fire & in_data_st & ~last_beat,
                                  pyrtl.concat(in_data, asm[W:]) if cfg.beats > 2 else in_data,
                                  asm)
        full = pyrtl.concat(in_data, asm)
    else:
        full = in_data
    mem_we.next <<= word_done
    mem_target.next <<= pyrtl.select(word_done, sel, mem_target)
    mem_addr.next <<= pyrtl.select(word_done, addr, mem_addr)
    mem_data.next <<= pyrtl.select(word_done, full[:cfg.mem_word_bits], mem_data)
    start.next <<= fire & in_header & (op == OP_START)
    for i, r in enumerate(cfg_regs):
        r.next <<= pyrtl.select(fire & in_cfg & (sel == i), in_data[:cfg.cfg_bits], r)
    bundle = HostStreamIn(cfg=cfg, in_ready=in_ready, mem_we=mem_we, mem_target=mem_target,
                          mem_addr=mem_addr, mem_data=mem_data, cfg_regs=cfg_regs, start=start)
    if read_port:
        _make_read_engine(name, cfg, bundle, rd_active, fire & in_addr & is_read & (count != 0),
                          sel, in_data[:cfg.mem_addr_bits], count, rd_data, out_ready)
    return bundle


def _make_read_engine(name, cfg, bundle, rd_active, begin, sel, addr0, count0, rd_data, out_ready):
    """OP_READ: issue reads while FIFO space allows; FIFO (READ_FIFO_DEPTH = 2 words, the
    explicit cases below) -> serializer."""
    rd_left = pyrtl.Register(cfg.count_bits, name=f"{name}.rd_left")
    rd_addr = pyrtl.Register(cfg.mem_addr_bits, name=f"{name}.rd_addr")
    rd_target = pyrtl.Register(cfg.sel_bits, name=f"{name}.rd_target")
    inflight = pyrtl.Register(1, name=f"{name}.rd_inflight")
    fifo = [pyrtl.Register(cfg.mem_word_bits, name=f"{name}.rd_fifo{i}")
            for i in range(READ_FIFO_DEPTH)]
    fc = pyrtl.Register(_bits(READ_FIFO_DEPTH + 1), name=f"{name}.rd_fifo_count")
    head_valid = fc != 0
    ser = make_host_stream_out(f"{name}.ser", cfg, fifo[0], head_valid, out_ready)
    pop = head_valid & ser.word_ready
    push = inflight
    # space after this cycle's pop for the word in flight plus a new one
    occupied = fc + inflight
    issue = rd_active & ((occupied < READ_FIFO_DEPTH) | (pop & (occupied < READ_FIFO_DEPTH + 1)))
    rd_en = pyrtl.WireVector(1, name=f"{name}.rd_en")
    rd_en <<= issue
    inflight.next <<= issue
    with pyrtl.conditional_assignment:
        with begin:
            rd_active.next |= 1
            rd_left.next |= count0
            rd_addr.next |= addr0
            rd_target.next |= sel
        with issue:
            rd_addr.next |= (rd_addr + 1)[:cfg.mem_addr_bits]
            rd_left.next |= (rd_left - 1)[:cfg.count_bits]
            with rd_left == 1:
                rd_active.next |= 0
    with pyrtl.conditional_assignment:
        with pop & push:
            with fc == 1:
                fifo[0].next |= rd_data
            with pyrtl.otherwise:
                fifo[0].next |= fifo[1]
                fifo[1].next |= rd_data
        with pop:
            fifo[0].next |= fifo[1]
        with push:
            with fc == 0:
                fifo[0].next |= rd_data
            with pyrtl.otherwise:
                fifo[1].next |= rd_data
    fc.next <<= (fc + push - pop)[:len(fc)]
    bundle.rd_en, bundle.rd_target, bundle.rd_addr = rd_en, rd_target, rd_addr
    bundle.out_data, bundle.out_valid = ser.out_data, ser.out_valid


@dataclass
class HostStreamOut:
    """Bundle: `word_ready` (1), `out_data` (width), `out_valid` (1), `beats`."""

    word_ready: pyrtl.WireVector
    out_data: pyrtl.WireVector
    out_valid: pyrtl.WireVector
    beats: int


def make_host_stream_out(name, cfg: HostIfConfig, word, word_valid, out_ready) -> HostStreamOut:
    """Serializer: each accepted `word` (any width) leaves as ceil(len(word) / width) beats.

    Ports: `word`, `word_valid` (1) -> `word_ready` (1): the word is taken when both are high;
    `out_data` (width), `out_valid` (1), `out_ready` (1): a beat moves when both are high. Beats
    go lowest bits first; a new word is taken in the cycle its predecessor's last beat moves, so
    a continuous stream has no bubbles. Latency word -> first beat: 1 cycle.
    """
    require(len(word_valid) == 1 and len(out_ready) == 1,
            f"{name}: word_valid and out_ready must be 1 bit")
    W = cfg.width
    beats = -(-len(word) // W)
    shreg = pyrtl.Register(beats * W, name=f"{name}.shreg")
    left = pyrtl.Register(_bits(beats + 1), name=f"{name}.left")
    out_valid = pyrtl.WireVector(1, name=f"{name}.out_valid")
    out_valid <<= left != 0
    beat_moves = out_valid & out_ready
    word_ready = pyrtl.WireVector(1, name=f"{name}.word_ready")
    word_ready <<= (left == 0) | ((left == 1) & out_ready)
    load = word_valid & word_ready
    shifted = shreg[W:].zero_extended(beats * W) if beats > 1 else pyrtl.Const(0, bitwidth=W)
    shreg.next <<= pyrtl.select(load, word.zero_extended(beats * W),
                                pyrtl.select(beat_moves, shifted, shreg))
    left.next <<= pyrtl.select(load, pyrtl.Const(beats, bitwidth=len(left)),
                               pyrtl.select(beat_moves, (left - 1)[:len(left)], left))
    out_data = pyrtl.WireVector(W, name=f"{name}.out_data")
    out_data <<= shreg[:W]
    return HostStreamOut(word_ready=word_ready, out_data=out_data, out_valid=out_valid,
                         beats=beats)
