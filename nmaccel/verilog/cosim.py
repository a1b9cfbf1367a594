"""Cycle-accurate co-simulation of exported PyRTL Verilog with Verilator (fast) or Icarus (checker).

Semantics equal `pyrtl.Simulation.step`: in cycle c the inputs take stimulus row c, the
combinational logic settles, every output is sampled, then the rising clock edge updates
registers and memories. Stimulus is a dict {port name (Verilog or PyRTL): int array, one value
per cycle}; signed values may be given negative (they are wrapped to the port width). `clk` is
driven by the harness; `rst` (if exported) is an ordinary input, 0 unless given. Beyond the end
of the stimulus inputs are 0. Outputs come back unsigned (as PyRTL's trace has them): uint64
arrays for ports up to 64 bits, Python-int object arrays for wider ports; `to_signed` converts.

Verilator builds: nmaccel.verilog.verilator (one builder, one cache, one set of flags).
"""
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyrtl

from nmaccel.arch.layout import to_signed
from nmaccel.errors import NmaccelError, require
from nmaccel.verilog import tools, verilator
from nmaccel.verilog.export import VerilogExport, load_export, parse_module, verilog_text

CLOCK = "clk"
RESET = "rst"
def _words(width):
    return (width + 31) // 32


def _encode(values, width, n):
    """(n, words) uint32 array of `values` wrapped to `width` bits."""
    nw = _words(width)
    arr = np.asarray(values)
    require(arr.ndim == 1 and len(arr) == n,
            f"stimulus arrays must be 1-D with one value per cycle ({n}); got shape {arr.shape}")
    out = np.zeros((n, nw), dtype=np.uint32)
    if width <= 64 and arr.dtype != object:
        require(np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool,
                f"stimulus must be integers, got dtype {arr.dtype}")
        u = arr.astype(np.int64).view(np.uint64) if arr.dtype.kind in "ib" else arr.astype(np.uint64)
        if width < 64:
            u = u & np.uint64((1 << width) - 1)
        out[:, 0] = (u & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        if nw > 1:
            out[:, 1] = (u >> np.uint64(32)).astype(np.uint32)
        return out
    mask = (1 << width) - 1
    for i, v in enumerate(arr.tolist()):
        v = int(v) & mask
        for j in range(nw):
            out[i, j] = (v >> (32 * j)) & 0xFFFFFFFF
    return out


def _decode(words, width):
    """Inverse of _encode for (n, words) uint32 -> uint64 or object array."""
    words = np.asarray(words, dtype=np.uint32)
    if width <= 64:
        u = words[:, 0].astype(np.uint64)
        if words.shape[1] > 1:
            u |= words[:, 1].astype(np.uint64) << np.uint64(32)
        return u
    out = np.empty(len(words), dtype=object)
    for i, row in enumerate(words.tolist()):
        out[i] = sum(int(w) << (32 * j) for j, w in enumerate(row))
    return out


@dataclass
class CosimResult:
    """outputs: {Verilog port name: values per recorded cycle}; cycles: recorded cycle indices;
    cycles_run: cycles simulated; seconds: simulation loop time (no build, no file I/O)."""
    outputs: dict
    cycles: np.ndarray
    cycles_run: int
    seconds: float

    def signed(self, name, width):
        return to_signed(self.outputs[name], width)


class _Design:
    """Port layout shared by the backends."""

    def __init__(self, export):
        self.export = export
        self.inputs = [p for p in export.inputs if p.name != CLOCK]
        self.outputs = list(export.outputs)
        self.in_off, off = [], 0
        for p in self.inputs:
            self.in_off.append(off)
            off += _words(p.width)
        self.in_words = max(off, 1)
        self.out_off, off = [], 0
        for p in self.outputs:
            self.out_off.append(off)
            off += _words(p.width)
        self.out_words = max(off, 1)
        require(any(p.name == CLOCK for p in export.inputs) or not export.memories,
                f"module {export.module_name} has no '{CLOCK}' port")

    def stimulus_words(self, stimulus):
        require(isinstance(stimulus, dict), "stimulus must be a dict {input port: values}")
        lookup = {}
        for i, p in enumerate(self.inputs):
            lookup[p.name] = i
            lookup[p.pyrtl_name] = i
        lengths = {len(np.asarray(v).reshape(-1)) for v in stimulus.values()}
        require(len(lengths) <= 1, f"stimulus arrays differ in length: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        seen = {}
        for key in stimulus:
            require(key in lookup, f"{key!r} is not an input of {self.export.module_name}; inputs: "
                    + ", ".join(p.name for p in self.inputs))
            seen[lookup[key]] = key
        missing = [p.name for i, p in enumerate(self.inputs) if i not in seen and p.name != RESET]
        require(not missing, f"stimulus lacks inputs {missing}: give every input one value per cycle")
        buf = np.zeros((n, self.in_words), dtype=np.uint32)
        for i, key in seen.items():
            p = self.inputs[i]
            o = self.in_off[i]
            buf[:, o:o + _words(p.width)] = _encode(np.asarray(stimulus[key]).reshape(-1), p.width, n)
        return buf, n

    def port_index(self, name):
        if name is None:
            return -1
        for i, p in enumerate(self.outputs):
            if name in (p.name, p.pyrtl_name):
                return i
        raise NmaccelError(f"{name!r} is not an output of {self.export.module_name}")

    def split_outputs(self, words):
        return {p.name: _decode(words[:, o:o + _words(p.width)], p.width)
                for p, o in zip(self.outputs, self.out_off)}


def _as_export(design, module_name="toplevel"):
    """VerilogExport from a VerilogExport, a Verilog file path, or a PyRTL block / None (working)."""
    if isinstance(design, VerilogExport):
        return design, Path(design.path).read_text()
    if isinstance(design, (str, Path)):
        exp = load_export(design)
        return exp, Path(design).read_text()
    text = verilog_text(design, module_name=module_name)
    name, ports, mems = parse_module(text)
    return VerilogExport(Path(f"{name}.v"), name, tuple(ports), tuple(mems),
                         any(p.name == RESET for p in ports)), text


# ---------------------------------------------------------------- Verilator

def _harness_cpp(d):
    """C++ main: args stim.bin n_stim n_cycles valid_idx stop_idx out.bin."""
    set_lines, get_lines = [], []
    for p, o in zip(d.inputs, d.in_off):
        if p.width <= 32:
            set_lines.append(f"        top->{p.name} = s[{o}];")
        elif p.width <= 64:
            set_lines.append(f"        top->{p.name} = (uint64_t)s[{o}] | ((uint64_t)s[{o + 1}] << 32);")
        else:
            set_lines += [f"        top->{p.name}[{j}] = s[{o + j}];" for j in range(_words(p.width))]
    for p, o in zip(d.outputs, d.out_off):
        if p.width <= 32:
            get_lines.append(f"        ow[{o}] = (uint32_t)top->{p.name};")
        elif p.width <= 64:
            get_lines.append(f"        {{ uint64_t v = top->{p.name}; ow[{o}] = (uint32_t)v; "
                             f"ow[{o + 1}] = (uint32_t)(v >> 32); }}")
        else:
            get_lines += [f"        ow[{o + j}] = top->{p.name}[{j}];" for j in range(_words(p.width))]
    offs = ", ".join(str(o) for o in d.out_off) or "0"
    lens = ", ".join(str(_words(p.width)) for p in d.outputs) or "0"
    has_clk = any(p.name == CLOCK for p in d.export.inputs)
    clk0 = "        top->clk = 0;" if has_clk else ""
    clk1 = "        top->clk = 1; top->eval();" if has_clk else ""
    return f"""// generated by nmaccel.verilog.cosim
#include "Vdut.h"
#include "verilated.h"
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
static const int IN_WORDS = {d.in_words}, OUT_WORDS = {d.out_words};
static const int OUT_OFF[] = {{{offs}}}, OUT_LEN[] = {{{lens}}};
static bool nonzero(const uint32_t* ow, int idx) {{
    for (int j = 0; j < OUT_LEN[idx]; ++j) if (ow[OUT_OFF[idx] + j]) return true;
    return false;
}}
int main(int argc, char** argv) {{
    if (argc != 7) {{ fprintf(stderr, "usage: stim n_stim n_cycles valid stop out\\n"); return 2; }}
    long n_stim = atol(argv[2]), n_cycles = atol(argv[3]);
    int valid = atoi(argv[4]), stop = atoi(argv[5]);
    std::vector<uint32_t> stim((size_t)n_stim * IN_WORDS + IN_WORDS, 0);
    FILE* f = fopen(argv[1], "rb");
    if (!f || fread(stim.data(), 4, (size_t)n_stim * IN_WORDS, f) != (size_t)n_stim * IN_WORDS) {{
        fprintf(stderr, "cannot read stimulus\\n"); return 2; }}
    fclose(f);
    const uint32_t* zeros = stim.data() + (size_t)n_stim * IN_WORDS;
    VerilatedContext* ctx = new VerilatedContext;
    Vdut* top = new Vdut{{ctx}};
    std::vector<uint32_t> out;
    std::vector<int64_t> rec;
    out.reserve((size_t)(valid < 0 ? n_cycles : 1024) * OUT_WORDS);
    uint32_t ow[OUT_WORDS] = {{0}};
    long c = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (; c < n_cycles; ++c) {{
        const uint32_t* s = c < n_stim ? stim.data() + (size_t)c * IN_WORDS : zeros;
        (void)s;
{chr(10).join(set_lines)}
{clk0}
        top->eval();
{chr(10).join(get_lines)}
        if (valid < 0 || nonzero(ow, valid)) {{
            out.insert(out.end(), ow, ow + OUT_WORDS);
            rec.push_back(c);
        }}
        bool done = stop >= 0 && nonzero(ow, stop);
{clk1}
        if (done) {{ ++c; break; }}
    }}
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    top->final();
    delete top;
    delete ctx;
    FILE* g = fopen(argv[6], "wb");
    int64_t hdr[2] = {{(int64_t)c, (int64_t)rec.size()}};
    fwrite(hdr, 8, 2, g);
    fwrite(&secs, 8, 1, g);
    fwrite(rec.data(), 8, rec.size(), g);
    fwrite(out.data(), 4, out.size(), g);
    fclose(g);
    return 0;
}}
"""


class VerilatorModel:
    """A built Verilator simulation of one exported module. Use `run(stimulus, ...)`."""

    def __init__(self, export, exe, build_seconds, cached):
        self.export = export
        self.exe = Path(exe)
        self.build_seconds = build_seconds
        self.cached = cached
        self._d = _Design(export)

    def run(self, stimulus, *, cycles=None, valid=None, stop=None, timeout=None):
        """Simulate; `cycles` defaults to the stimulus length (inputs are 0 beyond it).

        valid: record only cycles where this output is nonzero. stop: end after the first cycle
        where this output is nonzero (that cycle included). Returns CosimResult.
        """
        buf, n = self._d.stimulus_words(stimulus)
        cycles = n if cycles is None else int(cycles)
        require(cycles >= 0, f"cycles must be >= 0, got {cycles}")
        vi, si = self._d.port_index(valid), self._d.port_index(stop)
        with tempfile.TemporaryDirectory(prefix="nmaccel_vl_") as tmp:
            stim = Path(tmp) / "stim.bin"
            outp = Path(tmp) / "out.bin"
            buf.tofile(stim)
            tools.run_tool([self.exe, stim, n, cycles, vi, si, outp], timeout=timeout or tools.RUN_TIMEOUT_S,
                           what=f"Verilator model {self.exe}")
            raw = outp.read_bytes()
        hdr = np.frombuffer(raw, dtype=np.int64, count=2)
        cycles_run, n_rec = int(hdr[0]), int(hdr[1])
        secs = float(np.frombuffer(raw, dtype=np.float64, count=1, offset=16)[0])
        rec = np.frombuffer(raw, dtype=np.int64, count=n_rec, offset=24).copy()
        words = np.frombuffer(raw, dtype=np.uint32, offset=24 + 8 * n_rec)
        words = words.reshape(n_rec, self._d.out_words)
        return CosimResult(self._d.split_outputs(words), rec, cycles_run, secs)


def build_verilator(design=None, *, module_name="toplevel", jobs=2):
    """Build (or fetch from cache) a Verilator model of `design` (nmaccel.verilog.verilator).

    design: a PyRTL Block (None = working block), a Verilog file path, or a VerilogExport.
    """
    exp, text = _as_export(design, module_name)
    b = verilator.build(text, _harness_cpp(_Design(exp)), exp.module_name, jobs=jobs)
    return VerilatorModel(exp, b.exe, b.build_s, b.cached)


# ---------------------------------------------------------------- Icarus

def _icarus_tb(d, n_stim, n_cycles, stim_file, out_file):
    exp = d.export
    in_bits = sum(p.width for p in d.inputs)
    lines = ["`timescale 1ns/1ns", "module nmaccel_tb;"]
    has_clk = any(p.name == CLOCK for p in exp.inputs)
    if has_clk:
        lines.append(f"    reg {CLOCK} = 0;")
    for p in d.inputs:
        lines.append(f"    reg [{p.width - 1}:0] {p.name} = 0;")
    for p in d.outputs:
        lines.append(f"    wire [{p.width - 1}:0] {p.name};")
    lines.append(f"    reg [{max(in_bits, 1) - 1}:0] stim [0:{max(n_stim, 1) - 1}];")
    lines += ["    integer c, f, j;",
              f"    {exp.module_name} dut(" + ", ".join(
                  f".{p.name}({p.name})" for p in exp.ports) + ");",
              "    initial begin"]
    for m in exp.memories:
        if m.kind == "MemBlock":   # PyRTL memories start at 0
            lines.append(f"        for (j = 0; j < {m.depth}; j = j + 1) dut.{m.name}[j] = 0;")
    if n_stim:
        lines.append(f'        $readmemh("{stim_file}", stim);')
    lines.append(f'        f = $fopen("{out_file}", "w");')
    # stimulus word: first input in the most significant bits
    cat = "{" + ", ".join(p.name for p in d.inputs) + "}"
    fmt = " ".join("%h" for _ in d.outputs)
    outs = ", ".join(p.name for p in d.outputs)
    lines += [f"        for (c = 0; c < {n_cycles}; c = c + 1) begin"]
    if d.inputs:
        lines.append(f"            if (c < {n_stim}) {cat} = stim[c]; else {cat} = 0;")
    lines += ["            #1;", f'            $fdisplay(f, "{fmt}", {outs});']
    if has_clk:
        lines += [f"            {CLOCK} = 1; #1; {CLOCK} = 0;"]
    else:
        lines += ["            #1;"]
    lines += ["        end", "        $fclose(f);", "        $finish;", "    end", "endmodule", ""]
    return "\n".join(lines)


def run_icarus(design, stimulus, *, cycles=None, module_name="toplevel", timeout=None):
    """Simulate with Icarus Verilog (`iverilog -g2012`); same semantics and result as Verilator.

    Records every cycle. Any X/Z on an output raises NmaccelError.
    """
    iverilog, vvp = tools.find_icarus()
    exp, text = _as_export(design, module_name)
    d = _Design(exp)
    buf, n = d.stimulus_words(stimulus)
    cycles = n if cycles is None else int(cycles)
    require(d.outputs, f"module {exp.module_name} has no outputs")
    in_bits = sum(p.width for p in d.inputs)
    with tempfile.TemporaryDirectory(prefix="nmaccel_iv_") as tmp:
        tmp = Path(tmp)
        (tmp / "dut.v").write_text(text)
        if n and d.inputs:
            rows = []
            packed_vals = [_decode(buf[:, o:o + _words(p.width)], p.width)
                           for p, o in zip(d.inputs, d.in_off)]
            for c in range(n):
                v = 0
                for p, vals in zip(d.inputs, packed_vals):
                    v = (v << p.width) | int(vals[c])
                rows.append(format(v, f"0{(in_bits + 3) // 4}x"))
            (tmp / "stim.hex").write_text("\n".join(rows) + "\n")
        (tmp / "tb.v").write_text(_icarus_tb(d, n if d.inputs else 0, cycles, "stim.hex", "out.txt"))
        tools.run_tool([iverilog, "-g2012", "-o", "sim.vvp", "-s", "nmaccel_tb", "tb.v", "dut.v"],
                       cwd=tmp, timeout=tools.BUILD_TIMEOUT_S, what="iverilog")
        t0 = time.perf_counter()
        tools.run_tool([vvp, "-n", "sim.vvp"], cwd=tmp, timeout=timeout or tools.RUN_TIMEOUT_S, what="vvp")
        secs = time.perf_counter() - t0
        lines = (tmp / "out.txt").read_text().split("\n")[:cycles]
    require(len(lines) == cycles, f"Icarus wrote {len(lines)} of {cycles} cycles")
    cols = [[] for _ in d.outputs]
    for c, line in enumerate(lines):
        fields = line.split()
        for i, fv in enumerate(fields):
            if re.search(r"[xXzZ]", fv):
                raise NmaccelError(f"Icarus: output {d.outputs[i].name} is X/Z in cycle {c}: "
                                   "uninitialized state reaches an output")
            cols[i].append(int(fv, 16))
    outputs = {}
    for p, col in zip(d.outputs, cols):
        outputs[p.name] = (np.array(col, dtype=np.uint64) if p.width <= 64
                           else np.array(col, dtype=object))
    return CosimResult(outputs, np.arange(cycles, dtype=np.int64), cycles, secs)


def run_verilator(design, stimulus, **kw):
    """Build (cached) and run in one call; kw as VerilatorModel.run plus module_name."""
    model = build_verilator(design, module_name=kw.pop("module_name", "toplevel"))
    return model.run(stimulus, **kw)


def run_pyrtl(stimulus, block=None, *, cycles=None, export=None):
    """Reference run with pyrtl.Simulation on `block`, same stimulus/outputs conventions.

    `export` (a VerilogExport of the same block) maps Verilog names to PyRTL names.
    """
    block = block if block is not None else pyrtl.working_block()
    ins = {w.name: w for w in block.wirevector_subset(pyrtl.Input)}
    outs = {w.name: w for w in block.wirevector_subset(pyrtl.Output)}
    v2p = {p.name: p.pyrtl_name for p in export.ports} if export else {}
    stim = {}
    for k, v in stimulus.items():
        name = v2p.get(k, k)
        require(name in ins, f"{k!r} is not an input of the block")
        w = ins[name]
        stim[name] = [int(x) & ((1 << w.bitwidth) - 1) for x in np.asarray(v).reshape(-1).tolist()]
    n = len(next(iter(stim.values()))) if stim else 0
    cycles = n if cycles is None else cycles
    sim = pyrtl.Simulation(tracer=pyrtl.SimulationTrace(block=block), block=block)
    t0 = time.perf_counter()
    for c in range(cycles):
        sim.step({k: (v[c] if c < n else 0) for k, v in stim.items()})
    secs = time.perf_counter() - t0
    p2v = {v: k for k, v in v2p.items()}
    outputs = {}
    for name, w in outs.items():
        vals = sim.tracer.trace[name]
        outputs[p2v.get(name, name)] = (np.array(vals, dtype=np.uint64) if w.bitwidth <= 64
                                        else np.array(vals, dtype=object))
    return CosimResult(outputs, np.arange(cycles, dtype=np.int64), cycles, secs)
