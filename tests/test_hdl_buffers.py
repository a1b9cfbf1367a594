"""Buffers: cycle-accurate behaviour against a list model, and BRAM inference in Yosys."""

import io
import tempfile
from pathlib import Path

import numpy as np
import pyrtl
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.hdl.buffers import BufferConfig, make_buffer, make_dual_port_buffer, make_pingpong_buffer
from nmaccel.verilog.synth import synthesize


@pytest.fixture(autouse=True)
def fresh_block():
    pyrtl.reset_working_block()
    yield
    pyrtl.reset_working_block()


def _single(depth, width):
    cfg = BufferConfig(depth, width)
    addr = pyrtl.Input(cfg.addr_bits, "addr")
    wdata = pyrtl.Input(width, "wdata")
    we = pyrtl.Input(1, "we")
    rdata = pyrtl.Output(width, "rdata")
    buf = make_buffer("buf", depth, width, addr=addr, wdata=wdata, we=we)
    rdata <<= buf.rdata
    return cfg


@pytest.mark.parametrize("depth,width,seed", [(16, 8, 0), (37, 13, 1), (64, 32, 2)])
def test_single_port_read_first(depth, width, seed):
    cfg = _single(depth, width)
    rng = np.random.default_rng(seed)
    n = 400
    addrs = rng.integers(0, depth, n)
    wdatas = rng.integers(0, 1 << width, n)
    wes = rng.integers(0, 2, n)
    sim = pyrtl.FastSimulation()
    model = [0] * (1 << cfg.addr_bits)
    expect_next = 0
    for i in range(n):
        sim.step({"addr": int(addrs[i]), "wdata": int(wdatas[i]), "we": int(wes[i])})
        assert sim.inspect("rdata") == expect_next, f"cycle {i}"
        expect_next = model[addrs[i]]  # read-first: old contents
        if wes[i]:
            model[addrs[i]] = int(wdatas[i])


@pytest.mark.parametrize("depth,width,seed", [(16, 8, 3), (50, 20, 4)])
def test_pingpong_banks_independent(depth, width, seed):
    cfg = BufferConfig(depth, width)
    ins = {k: pyrtl.Input(w, k) for k, w in
           [("write_bank", 1), ("waddr", cfg.addr_bits), ("wdata", width), ("we", 1),
            ("raddr", cfg.addr_bits)]}
    rdata = pyrtl.Output(width, "rdata")
    pp = make_pingpong_buffer("pp", depth, width, **ins)
    rdata <<= pp.rdata
    rng = np.random.default_rng(seed)
    banks = [[0] * (1 << cfg.addr_bits) for _ in range(2)]
    sim = pyrtl.FastSimulation()
    expect_next = None
    bank = 0
    for i in range(600):
        if rng.random() < 0.05:
            bank ^= 1
        vals = {"write_bank": bank, "waddr": int(rng.integers(0, depth)),
                "wdata": int(rng.integers(0, 1 << width)), "we": int(rng.integers(0, 2)),
                "raddr": int(rng.integers(0, depth))}
        sim.step(vals)
        if expect_next is not None:
            assert sim.inspect("rdata") == expect_next, f"cycle {i}"
        expect_next = banks[1 - bank][vals["raddr"]]
        if vals["we"]:
            banks[bank][vals["waddr"]] = vals["wdata"]


@pytest.mark.parametrize("depth,width,seed", [(16, 8, 5), (64, 27, 6)])
def test_dual_port_read_first(depth, width, seed):
    """One write and one read port: rdata is the word at raddr before this cycle's write."""
    cfg = BufferConfig(depth, width)
    ins = {k: pyrtl.Input(w, k) for k, w in
           [("waddr", cfg.addr_bits), ("wdata", width), ("we", 1), ("raddr", cfg.addr_bits)]}
    rdata = pyrtl.Output(width, "rdata")
    buf = make_dual_port_buffer("dp", depth, width, **ins)
    rdata <<= buf.rdata
    assert buf.cfg == cfg and buf.mem.name == "dp.mem"
    rng = np.random.default_rng(seed)
    model = [0] * (1 << cfg.addr_bits)
    sim = pyrtl.FastSimulation()
    expect_next = 0
    for i in range(500):
        vals = {"waddr": int(rng.integers(0, depth)), "wdata": int(rng.integers(0, 1 << width)),
                "we": int(rng.integers(0, 2)), "raddr": int(rng.integers(0, depth))}
        if rng.random() < 0.2:
            vals["raddr"] = vals["waddr"]                 # same-address collisions: read-first
        sim.step(vals)
        assert sim.inspect("rdata") == expect_next, f"cycle {i}"
        expect_next = model[vals["raddr"]]
        if vals["we"]:
            model[vals["waddr"]] = vals["wdata"]


def test_dual_port_port_too_wide():
    with pytest.raises(NmaccelError, match="raddr"):
        make_dual_port_buffer("b", 16, 8, waddr=pyrtl.Input(4, "wa"), wdata=pyrtl.Input(8, "w"),
                              we=pyrtl.Input(1, "we"), raddr=pyrtl.Input(5, "ra"))


@pytest.mark.parametrize("depth,width", [(1, 8), (16, 0), (16.0, 8), (True, 8)])
def test_bad_config(depth, width):
    with pytest.raises(NmaccelError):
        BufferConfig(depth, width)


def test_port_too_wide():
    addr = pyrtl.Input(8, "addr")
    with pytest.raises(NmaccelError, match="addr"):
        make_buffer("b", 16, 8, addr=addr, wdata=pyrtl.Input(8, "w"), we=pyrtl.Input(1, "we"))


def _yosys_cells(verilog, target):
    """Cell counts of `verilog` (module toplevel) after full Yosys synthesis for `target`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "design.v")
        path.write_text(verilog)
        return synthesize(path, "toplevel", target)["cells"]


def _verilog():
    out = io.StringIO()
    pyrtl.output_to_verilog(out, add_reset=True)
    return out.getvalue()


@pytest.mark.tools
def test_bram_inference_1024x32():
    _single(1024, 32)
    v = _verilog()
    ecp5 = _yosys_cells(v, "ecp5")
    assert ecp5.get("DP16KD", 0) == 2, ecp5  # 1024x18 each
    assert ecp5.get("TRELLIS_DPR16X4", 0) == 0, ecp5
    assert ecp5.get("TRELLIS_FF", 0) <= 1, ecp5  # the read register lives inside the BRAM
    assert ecp5.get("LUT4", 0) <= 32, ecp5       # synchronous reset of the read register only
    xc7 = _yosys_cells(v, "xc7")
    assert xc7.get("RAMB36E1", 0) + xc7.get("RAMB18E1", 0) >= 1, xc7
    assert not any(k.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "FD", "LUT"))
                   for k in xc7), xc7   # nothing but the RAMB (and IO buffers)


@pytest.mark.tools
def test_async_read_is_not_bram():
    """The plain PyRTL pattern this module avoids: LUT-RAM, no BRAM (documents why)."""
    addr = pyrtl.Input(8, "addr")   # 256 x 16: big enough for BRAM, small enough to be quick
    rdata = pyrtl.Output(16, "rdata")
    mem = pyrtl.MemBlock(16, 8, name="mem", asynchronous=True)
    mem[addr] <<= pyrtl.MemBlock.EnabledWrite(pyrtl.Input(16, "wdata"), pyrtl.Input(1, "we"))
    rdata <<= mem[addr]
    ecp5 = _yosys_cells(_verilog(), "ecp5")
    assert ecp5.get("DP16KD", 0) == 0 and ecp5.get("TRELLIS_DPR16X4", 0) > 0, ecp5


@pytest.mark.tools
def test_pingpong_is_two_bram_banks():
    cfg = BufferConfig(1024, 32)
    ins = {k: pyrtl.Input(w, k) for k, w in
           [("write_bank", 1), ("waddr", cfg.addr_bits), ("wdata", 32), ("we", 1),
            ("raddr", cfg.addr_bits)]}
    rdata = pyrtl.Output(32, "rdata")
    rdata <<= make_pingpong_buffer("pp", 1024, 32, **ins).rdata
    ecp5 = _yosys_cells(_verilog(), "ecp5")
    assert ecp5.get("DP16KD", 0) == 4 and ecp5.get("TRELLIS_DPR16X4", 0) == 0, ecp5
