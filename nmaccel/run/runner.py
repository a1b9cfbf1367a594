"""`run_gemm`: a whole GEMM on the accelerator top, driven through its host word stream.

nmaccel.program.encoder writes the host words (header / activation / weight / group-scale /
epilogue records of nmaccel.hdl.top's protocol, one job per token tile) and decodes the output
words; this module runs them on a backend.

Backends (same contract: `.outputs`, `.cycles`, `.utilization`):
  "pyrtl"   the PyRTL top in pyrtl.CompiledSimulation; a simulation-only host model (a word ROM
            and a read pointer that advances on in_valid & in_ready) drives in_valid and
            out_ready from the host link's pattern (`link`, default always 1); `.cycles` is
            measured: first header word accepted .. last output word accepted.
  "verilator" the top exported to Verilog, built by Verilator with a dedicated C++ host
            harness (nmaccel.verilog.cosim_top, cached build) that streams the same words with the same
            handshake; outputs and cycles measured the same way.
  "golden"  nmaccel.golden.top.run_stream (the protocol twin) + the cycle model.
Elaborated simulators are cached per (TopConfig, ROM size).
"""
import ctypes
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pyrtl

from nmaccel.arch.config import ArrayConfig, HostLink, RuntimeConfig, placed_top
from nmaccel.errors import require
from nmaccel.fileio import open_output
from nmaccel.golden import cyclemodel as cm
from nmaccel.golden.epilogue import epilogue as golden_epilogue
from nmaccel.golden.gemm import gemm as golden_gemm
from nmaccel.golden.groupscale import group_scaled_gemm, groupscale_params
from nmaccel.golden.top import run_stream
from nmaccel.hdl.top import make_accelerator_top
from nmaccel.program.encoder import EpilogueSpec, Program, decode_outputs, encode_gemm, group_layout  # noqa: F401
from nmaccel.verilog.cosim_top import TopVerilatorModel

BACKENDS = ("pyrtl", "verilator", "golden")
_CACHE = OrderedDict()
_CACHE_SIZE = 4


@dataclass
class GemmResult:
    outputs: np.ndarray       # int64 (T, out)
    cycles: int
    utilization: float
    backend: str
    model_cycles: int
    mode: str
    out_words: list
    sim_s: float = 0.0        # wall time of the simulation run alone (no elaboration / encoding)
    elaboration_s: float = 0.0

    @property
    def cycles_per_second(self):
        return self.cycles / self.sim_s if self.sim_s > 0 else float("inf")


def default_top(array_cfg):
    """The top run_gemm elaborates when none is given: the placed tops' buffers and counters
    (nmaccel.arch.config.placed_top: any K up to k_tiles_max K tiles, N up to n_tiles_max column
    tiles, any T in token tiles)."""
    return placed_top(array_cfg)


def reference(packed, x_q, epilogue=None, group_scales=False):
    """What run_gemm must return: golden gemm (group_scaled_gemm with group scales), through the
    golden epilogue when given."""
    if group_scales:
        acc = group_scaled_gemm(packed, x_q, groupscale_params(packed))
    else:
        acc = golden_gemm(packed, x_q)
    if epilogue is None:
        return acc
    if isinstance(epilogue, dict):
        epilogue = EpilogueSpec(**epilogue)
    if epilogue.mult is None:
        return golden_epilogue(acc, None, None, epilogue.bias, epilogue.relu, 32)
    return golden_epilogue(acc, np.asarray(epilogue.mult), np.asarray(epilogue.shift),
                           epilogue.bias, epilogue.relu, 8)


# ---- PyRTL simulation -------------------------------------------------------------------------
def harness_block(top_cfg, rom_bits):
    """The top plus a simulation-only host model: a word ROM (written through h_we / h_addr /
    h_data) and a read pointer (reset by h_rst) that drives in_valid = h_go & h_in_ok &
    (ptr < h_n) and advances on in_valid & in_ready; out_ready = h_out_ok (h_in_ok / h_out_ok:
    the host link's pattern, nmaccel.arch.config.HostLink). Outputs: out_data, out_valid,
    out_accept (out_valid & out_ready), accept, busy."""
    block = pyrtl.Block()
    with pyrtl.set_working_block(block):
        H = top_cfg.host_bits
        h_rst = pyrtl.Input(1, "h_rst")
        h_we = pyrtl.Input(1, "h_we")
        h_addr = pyrtl.Input(rom_bits, "h_addr")
        h_data = pyrtl.Input(H, "h_data")
        h_go = pyrtl.Input(1, "h_go")
        h_n = pyrtl.Input(rom_bits + 1, "h_n")
        h_in_ok = pyrtl.Input(1, "h_in_ok")
        h_out_ok = pyrtl.Input(1, "h_out_ok")
        rom = pyrtl.MemBlock(bitwidth=H, addrwidth=rom_bits, name="host_rom", asynchronous=True)
        rom[h_addr] <<= pyrtl.MemBlock.EnabledWrite(h_data, h_we)
        ptr = pyrtl.Register(rom_bits + 1, name="host_ptr")
        valid = pyrtl.WireVector(1, "in_valid")          # named: readable in VCD traces
        valid <<= h_go & h_in_ok & (ptr < h_n)
        in_data = pyrtl.WireVector(H, "in_data")
        in_data <<= rom[ptr[:rom_bits]]
        top = make_accelerator_top("top", top_cfg, {"in_data": in_data, "in_valid": valid,
                                              "out_ready": h_out_ok})
        accept = valid & top.outputs["in_ready"]
        ptr.next <<= pyrtl.select(h_rst, pyrtl.Const(0, bitwidth=rom_bits + 1),
                                  pyrtl.select(accept, ptr + 1, ptr))
        outs = {"out_data": top.outputs["out_data"], "out_valid": top.outputs["out_valid"],
                "out_accept": top.outputs["out_valid"] & h_out_ok, "accept": accept,
                "busy": top.outputs["busy"]}
        for k, w in outs.items():
            o = pyrtl.Output(len(w), name=k)
            o <<= w
    return block


def _load_stream(words, go_cycles):
    """Harness stimulus: reset the pointer, write the words into the ROM, then go."""
    n = len(words)
    total = n + 1 + go_cycles
    st = {k: np.zeros(total, dtype=np.uint64) for k in ("h_rst", "h_we", "h_addr", "h_data", "h_go", "h_n",
                                                         "h_in_ok", "h_out_ok")}
    st["h_rst"][0] = 1
    st["h_we"][1:n + 1] = 1
    st["h_addr"][1:n + 1] = np.arange(n, dtype=np.uint64)
    st["h_data"][1:n + 1] = np.asarray([int(w) for w in words], dtype=np.uint64)
    st["h_go"][n + 1:] = 1
    st["h_n"][n + 1:] = n
    return st


def _collect(o, offset):
    """(accept cycles, output words, output cycles) of a harness run, cycles shifted by -offset."""
    acc = np.nonzero(np.asarray(o["accept"], dtype=np.uint64))[0]
    v = np.nonzero(np.asarray(o["out_accept"], dtype=np.uint64))[0]
    return acc - offset, [int(w) for w in np.asarray(o["out_data"], dtype=np.uint64)[v]], v - offset


class TopSim:
    """The harness (see harness_block) in pyrtl.CompiledSimulation."""

    def __init__(self, top_cfg, rom_bits):
        self.p, self.rom_bits = top_cfg, rom_bits
        t = time.perf_counter()
        self.block = harness_block(top_cfg, rom_bits)
        with pyrtl.set_working_block(self.block):
            outs = list(self.block.wirevector_subset(pyrtl.Output))
            tracer = pyrtl.SimulationTrace(wires_to_track=outs, block=self.block)
            self.sim = pyrtl.CompiledSimulation(tracer=tracer, block=self.block)
        self.elaboration_s = time.perf_counter() - t

    def _run(self, stream, n):
        sim = self.sim
        ins = np.zeros((n, sim._inputs_array_length), dtype=np.uint64)
        for name, vals in stream.items():
            md = sim._inputs_metadata[name]
            ins[:, md.start] = np.asarray(vals, dtype=np.uint64)
        outs = np.zeros((n, sim._outputs_array_length), dtype=np.uint64)
        ptr = ctypes.POINTER(ctypes.c_uint64)
        sim._sim_run_all.argtypes = [ctypes.c_uint64, ptr, ptr]
        sim._sim_run_all(n, ins.ctypes.data_as(ptr), outs.ctypes.data_as(ptr))
        return {k: outs[:, sim._outputs_metadata[k].start]
                for k in ("out_data", "out_valid", "out_accept", "accept", "busy")}

    def run(self, words, n_out_words, budget, link=cm.IDEAL):
        """Feed `words` over host link `link` (HostLink; cycle 0 = the first go cycle);
        returns (output words, measured cycles)."""
        n = len(words)
        require(n < (1 << self.rom_bits), "host stream longer than the simulation ROM")
        require(self.p.host_bits <= 64, "the PyRTL harness drives host_bits <= 64")
        load = {k: v[:n + 1] for k, v in _load_stream(words, 0).items()}
        self._run(load, n + 1)
        got, first, last, total = [], None, None, 0
        chunk = budget + 64
        while len(got) < n_out_words:
            require(total <= 4 * budget + 100000, "RTL simulation did not finish the job "
                    f"({len(got)} of {n_out_words} output words): controller stalled")
            c = np.arange(total, total + chunk, dtype=np.uint64)
            go = {"h_go": np.ones(chunk, dtype=np.uint64), "h_n": np.full(chunk, n, dtype=np.uint64),
                  "h_in_ok": link.in_ok(c).astype(np.uint64), "h_out_ok": link.out_ok(c).astype(np.uint64)}
            acc, outw, vcyc = _collect(self._run(go, chunk), -total)
            if first is None and acc.size:
                first = int(acc[0])
            got += outw
            if vcyc.size:
                last = int(vcyc[-1])
            total += chunk
        require(len(got) == n_out_words, f"top sent {len(got)} output words, expected {n_out_words}")
        return got, last - first + 1


class TopVerilator:
    """The top under Verilator with the dedicated host harness (nmaccel.verilog.cosim_top): the host
    word stream goes to the C++ main as one file, outputs and cycles come back measured as in
    TopSim.run. `rom_bits` is unused (kept for the simulator cache key)."""

    def __init__(self, top_cfg, rom_bits=0):
        self.p, self.rom_bits = top_cfg, rom_bits
        t = time.perf_counter()
        self.model = TopVerilatorModel(top_cfg)
        self.elaboration_s = time.perf_counter() - t
        self.last_run = None

    def run(self, words, n_out_words, budget, link=cm.IDEAL):
        self.last_run = self.model.run(words, n_out_words, 4 * budget + 100000, link=link)
        return self.last_run.out_words, self.last_run.cycles


def _rom_bits(n_words):
    return -(-max(16, int(n_words).bit_length()) // 4) * 4     # few sizes: few compiles


def write_vcd(tracer, trace):
    """Write a PyRTL SimulationTrace as VCD to `trace` (an open file or a path, via the one output
    writer)."""
    if hasattr(trace, "write"):
        tracer.print_vcd(trace)
        return
    with open_output(trace, "w") as f:
        tracer.print_vcd(f)


def trace_top_vcd(packed, x_q, top_cfg, path, window, *, epilogue=None, group_scales=None, backend="pyrtl"):
    """Write a VCD of the top running y = x_q @ W.T, cycles [A, B) of `window` only.

    backend "verilator": the exported top in a Verilator --trace build of the one builder
    (nmaccel.verilog.verilator; the host harness of nmaccel.verilog.cosim_top), cycle c at VCD
    times 10 (c - A) (clock low, inputs settled) and 10 (c - A) + 5 (after the edge); the signals
    are the exported module's ports (in_data, in_valid, in_ready, out_data, out_valid, busy) and
    its named registers / wires as Verilog identifiers (top_s_step, ...). The whole job runs
    (a window past its end just ends early). backend "pyrtl", below:

    Cycle 0 (VCD time 0 is cycle A) is the first cycle the host offers a word (after the
    harness ROM is loaded). Traced: the host handshake (in_data, in_valid, accept, out_data,
    out_valid, busy) and every named register / wire of the top (hierarchical names such as
    top.s.step, top.in.state, top.array.pe_0_0.psum0), so GTKWave shows the controller and
    the array. The cycles before A run untraced in the compiled kernel. Returns the path."""
    require(backend in ("pyrtl", "verilator"), f"VCD backend {backend!r}: use pyrtl or verilator")
    a, b = (int(v) for v in window)
    require(0 <= a < b, f"VCD window {a}:{b}: use A:B with 0 <= A < B")
    prog = encode_gemm(packed, x_q, top_cfg, epilogue, group_scales=group_scales)
    words = prog.words
    if backend == "verilator":
        shape = (np.asarray(x_q).shape[0], packed.in_features, packed.out_features)
        model = cm.cycles(shape, top_cfg.array, RuntimeConfig(prog.mode, packed.n_keep, packed.m_group), top_cfg,
                          kt_per_group=prog.kt_per_group)
        TopVerilatorModel(top_cfg, trace=True).run(words, prog.n_out_words, 4 * model + 100000, vcd=path,
                                                   window=(a, b))
        return str(path)
    rom_bits = _rom_bits(len(words))
    require(top_cfg.host_bits <= 64, "the PyRTL harness drives host_bits <= 64: trace a 64-bit-host top")
    block = harness_block(top_cfg, rom_bits)
    with pyrtl.set_working_block(block):
        track = [w for w in block.wirevector_set
                 if not isinstance(w, pyrtl.Const) and not w.name.startswith("tmp")
                 and not w.name.startswith("h_")]
        for i, w in enumerate(track):             # CompiledSimulation traces ports and probed wires
            if not isinstance(w, (pyrtl.Input, pyrtl.Output)):
                probe = pyrtl.Output(len(w), name=f"vcd_probe_{i}")
                probe <<= w
        sim = pyrtl.CompiledSimulation(tracer=pyrtl.SimulationTrace(wires_to_track=track, block=block),
                                       block=block)
        ts = TopSim.__new__(TopSim)
        ts.p, ts.rom_bits, ts.sim = top_cfg, rom_bits, sim
        n = len(words)
        ts._run({k: v[:n + 1] for k, v in _load_stream(words, 0).items()}, n + 1)
        if a:
            ts._run({"h_go": np.ones(a, dtype=np.uint64), "h_n": np.full(a, n, dtype=np.uint64),
                     "h_in_ok": np.ones(a, dtype=np.uint64), "h_out_ok": np.ones(a, dtype=np.uint64)}, a)
        for _ in range(b - a):
            sim.step({"h_rst": 0, "h_we": 0, "h_addr": 0, "h_data": 0, "h_go": 1, "h_n": n,
                      "h_in_ok": 1, "h_out_ok": 1})
        write_vcd(sim.tracer, path)
    return str(path)


def get_topsim(top_cfg, n_words, backend="pyrtl"):
    rom_bits = _rom_bits(n_words)
    if backend == "verilator":
        rom_bits = 0                      # the harness streams any length: one build per top
    key = (top_cfg, rom_bits, backend)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    ts = (TopSim if backend == "pyrtl" else TopVerilator)(top_cfg, rom_bits)
    _CACHE[key] = ts
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return ts


def run_gemm(packed, x_q, array_cfg, *, backend="pyrtl", epilogue=None, top_cfg=None,
             simulator="compiled", group_scales=None, link=None):
    """Run y = x_q @ packed.int_weights().T (then the epilogue, if given) on the accelerator top.

    `array_cfg`: ArrayConfig; `top_cfg`: TopConfig (default `default_top(array_cfg)`);
    `epilogue`: None (raw int sums) or EpilogueSpec / dict(mult, shift, bias, relu).
    `group_scales`: apply FP16 group scales in fixed point (golden group_scaled_gemm); default
    on when the top is elaborated with them and the weights have granularity "group".
    `link`: the host link's valid / ready pattern (nmaccel.arch.config.HostLink; default the
    ideal link): the harness stalls the handshake on that pattern and the cycle model replays it.
    Returns GemmResult: outputs int64 (T, out), cycles, utilization, backend, model_cycles,
    sim_s (simulation wall time), cycles_per_second.
    Bad input (capacity, runtime config, epilogue ranges) raises NmaccelError before simulation.
    """
    require(backend in BACKENDS, f"unknown backend {backend!r}: use one of {BACKENDS}")
    require(simulator == "compiled", f"simulator {simulator!r}: the top runs on 'compiled' only")
    require(isinstance(array_cfg, ArrayConfig),
            f"array_cfg must be an ArrayConfig, got {type(array_cfg).__name__}")
    p = top_cfg if top_cfg is not None else default_top(array_cfg)
    require(p.array == array_cfg, "top_cfg.array differs from array_cfg: pass the same ArrayConfig")
    prog = encode_gemm(packed, x_q, p, epilogue, group_scales=group_scales)
    words, mode = prog.words, prog.mode
    shape = (prog.tokens, packed.in_features, packed.out_features)
    rt = RuntimeConfig(mode, packed.n_keep, packed.m_group)
    link = link or cm.IDEAL
    require(isinstance(link, HostLink), f"link must be a HostLink, got {type(link).__name__}")
    model = cm.cycles(shape, array_cfg, rt, p, kt_per_group=prog.kt_per_group, link=link)
    n_out = prog.n_out_words
    elab = 0.0
    if backend == "golden":
        t = time.perf_counter()
        out_words, ncyc = run_stream(p, words), model
        dt = time.perf_counter() - t
    else:
        sim = get_topsim(p, len(words), backend)
        elab = sim.elaboration_s
        t = time.perf_counter()
        try:
            out_words, ncyc = sim.run(words, n_out, model, link)
        except Exception:
            _CACHE.pop((p, sim.rom_bits, backend), None)     # its state is mid-job: rebuild next time
            raise
        dt = time.perf_counter() - t
    y = prog.decode(out_words)
    return GemmResult(outputs=y, cycles=ncyc, utilization=cm.utilization(shape, array_cfg, rt, ncyc),
                      backend=backend, model_cycles=model, mode=mode, out_words=out_words,
                      sim_s=dt, elaboration_s=elab)
