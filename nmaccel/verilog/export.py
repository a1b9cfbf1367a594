"""Verilog export of PyRTL blocks, port descriptions, Verilator lint, `nmaccel export`.

`export_verilog` wraps `pyrtl.output_to_verilog` (1.0.3): it adds a synchronous `rst` port
(unless add_reset=False), initial register values (initialize_registers), renames illegal names
(the port description maps them back), and does not export MemBlock initial contents (RomBlock
contents are exported). Every file is written atomically (temporary file + os.replace).
"""
import contextlib
import importlib
import io
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pyrtl
from tabulate import tabulate

from nmaccel.arch.config import PRODUCT_ARRAY, PRODUCT_TOP, ArrayConfig, TopConfig, pipeline_options
from nmaccel.errors import NmaccelError, ToolFailedError, require
from nmaccel.hdl.array import make_array_top
from nmaccel.hdl.decoder import make_decoder_top
from nmaccel.hdl.pe import make_pe_top
from nmaccel.hdl.top import make_top_ports
from nmaccel.pack.bitpack import words_to_memh
from nmaccel.verilog import tools

RESERVED_WIRE_NAMES = ("clk", "rst")
# Verilog-2005 / SystemVerilog keywords that PyRTL would emit unchanged as a module name.
VERILOG_KEYWORDS = frozenset("""
always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config deassign
default defparam design disable edge else end endcase endconfig endfunction endgenerate endmodule
endprimitive endspecify endtable endtask event for force forever fork function generate genvar
highz0 highz1 if ifnone incdir include initial inout input instance integer join large liblist
library localparam macromodule medium module nand negedge nmos nor noshowcancelled not notif0
notif1 or output parameter pmos posedge primitive pull0 pull1 pulldown pullup
pulsestyle_ondetect pulsestyle_onevent rcmos real realtime reg release repeat rnmos rpmos rtran
rtranif0 rtranif1 scalared showcancelled signed small specify specparam strong0 strong1 supply0
supply1 table task time tran tranif0 tranif1 tri tri0 tri1 triand trior trireg unsigned use
uwire vectored wait wand weak0 weak1 while wire wor xnor xor logic bit byte int shortint longint
class package interface program property sequence assert assume cover string void enum struct
union typedef import export return break continue do final let type var static const new null
this super virtual bind chandle clocking constraint context covergroup dist expect extends
forkjoin iff inside intersect join_any join_none local modport packed priority protected pure
rand randc randcase ref solve tagged timeprecision timeunit unique wildcard with within
""".split())

# Verilator lint waivers; each is justified in docs/LINT_WAIVERS.md.
LINT_WAIVERS = (
    # PyRTL keeps full-width temporaries and slices them (truncation after add/mult).
    ('UNUSEDSIGNAL', "Bits of signal are not used: 'tmp*"),
    # A PyRTL temporary may be computed and left entirely unused after a slice/concat.
    ('UNUSEDSIGNAL', "Signal is not used: 'tmp*"),
    # PyRTL always emits clk (and rst with add_reset), also for purely combinational blocks.
    ('UNUSEDSIGNAL', "Signal is not used: 'clk'"),
    ('UNUSEDSIGNAL', "Signal is not used: 'rst'"),
)


@dataclass(frozen=True)
class Port:
    """One port of an exported module. `pyrtl_name` is the wire name before sanitizing."""
    name: str
    direction: str   # "input" | "output"
    width: int
    pyrtl_name: str


@dataclass(frozen=True)
class Memory:
    """A MemBlock / RomBlock array declared in the exported module."""
    name: str
    width: int
    depth: int
    kind: str        # "MemBlock" | "RomBlock"


@dataclass(frozen=True)
class VerilogExport:
    path: Path
    module_name: str
    ports: tuple
    memories: tuple
    has_reset: bool

    @property
    def inputs(self):
        return tuple(p for p in self.ports if p.direction == "input")

    @property
    def outputs(self):
        return tuple(p for p in self.ports if p.direction == "output")

    def port(self, name):
        for p in self.ports:
            if name in (p.name, p.pyrtl_name):
                return p
        raise NmaccelError(f"module {self.module_name} has no port {name!r}; ports: "
                           + ", ".join(p.name for p in self.ports))


_PORT_RE = re.compile(r"^\s*(input|output)\s*(?:(?:wire|reg|logic)\s+)?(?:signed\s+)?(?:\[(\d+):(\d+)\])?"
                      r"\s*(\w+)\s*;\s*(?://\s*(\S.*))?$")
# one item of an ANSI-style header: "input wire signed [7:0] a" (direction optional: it carries over)
_ANSI_RE = re.compile(r"^(?:(input|output|inout)\s+)?(?:(?:wire|reg|logic)\s+)?(?:signed\s+)?"
                      r"(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?(\w+)$")
_MEM_RE = re.compile(r"^\s*reg\s*\[(\d+):0\]\s*(\w+)\s*\[(\d+):0\]\s*;\s*//\s*(MemBlock|RomBlock)")
_MODULE_RE = re.compile(r"^\s*module\s+(\w+)\s*\(([^)]*)\)\s*;", re.M)


def parse_module(text):
    """(module name, [Port], [Memory]) of the first module in PyRTL-generated Verilog."""
    m = _MODULE_RE.search(text)
    require(m is not None, "no 'module NAME(...);' header found: is this PyRTL-generated Verilog?")
    order, decl, mems = [], {}, []
    current = None                      # (direction, hi, lo) of the last ANSI item
    for item in (s.strip() for s in m.group(2).split(",")):
        if not item:
            continue
        am = _ANSI_RE.match(" ".join(item.split()))
        require(am is not None, f"cannot parse port {item!r} of module {m.group(1)}: use plain "
                "'input [hi:lo] name' declarations (ANSI or in the body)")
        d, hi, lo, name = am.groups()
        require(d != "inout", f"port {name!r} is inout: only input and output ports are supported")
        if d is not None:
            current = (d, hi, lo)
        if current is not None:         # ANSI: declared in the header
            d, hi, lo = current
            decl[name] = Port(name, d, int(hi) - int(lo) + 1 if hi is not None else 1, name)
        order.append(name)
    for line in text[m.end():].splitlines():
        if line.strip().startswith("endmodule"):
            break
        pm = _PORT_RE.match(line)
        if pm:
            d, hi, lo, name, comment = pm.groups()
            width = int(hi) - int(lo) + 1 if hi is not None else 1
            decl[name] = Port(name, d, width, comment.strip() if comment else name)
            continue
        mm = _MEM_RE.match(line)
        if mm:
            mems.append(Memory(mm.group(2), int(mm.group(1)) + 1, int(mm.group(3)) + 1,
                               mm.group(4)))
    missing = [n for n in order if n not in decl]
    require(not missing, f"ports {missing} have no input/output declaration in the module")
    return m.group(1), [decl[n] for n in order], mems


def _check_block(block):
    block = block if block is not None else pyrtl.working_block()
    bad = sorted(w.name for w in block.wirevector_set if w.name in RESERVED_WIRE_NAMES)
    require(not bad, f"wires named {bad} clash with the exported clock/reset ports: rename them")
    require(block.wirevector_subset(pyrtl.Output),
            "the block has no Output wires: nothing to export (add pyrtl.Output ports)")
    try:
        block.sanity_check()
    except pyrtl.PyrtlError as exc:
        raise NmaccelError(f"PyRTL block fails its sanity check: {str(exc).splitlines()[0]}") from exc
    return block


def verilog_text(block=None, *, module_name="toplevel", add_reset=True,
                 initialize_registers=True):
    """The Verilog of a PyRTL block (default: the working block) as a string."""
    require(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", module_name or "") is not None
            and module_name not in VERILOG_KEYWORDS,
            f"module name {module_name!r} is not a Verilog identifier (or is a keyword): "
            "use letters, digits, _")
    block = _check_block(block)
    buf = io.StringIO()
    try:
        pyrtl.output_to_verilog(buf, add_reset=add_reset, block=block,
                                initialize_registers=initialize_registers,
                                module_name=module_name)
    except pyrtl.PyrtlError as exc:
        raise NmaccelError(f"Verilog export failed: {str(exc).splitlines()[0]}") from exc
    return buf.getvalue()


def port_table(ports):
    """Markdown table of ports (name, direction, width, PyRTL name)."""
    rows = [(p.name, p.direction, p.width, p.pyrtl_name) for p in ports]
    return tabulate(rows, headers=("port", "direction", "width", "PyRTL wire"), tablefmt="github")


def write_files_atomically(files):
    """Write {path: text-or-bytes} all-or-nothing: temporaries first, then os.replace each."""
    temps = []
    try:
        for path in files:
            require(not Path(path).is_dir(), f"{path} is a directory: choose another output path")
        for path, data in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def export_verilog(path, block=None, *, module_name="toplevel", add_reset=True,
                   initialize_registers=True, port_description=True):
    """Write the Verilog of `block` (default: working block) to `path`.

    With port_description, also writes `<path stem>.ports.json` and `<path stem>.ports.md`.
    Returns a VerilogExport (module name, ports in header order, memories).
    """
    path = Path(path)
    text = verilog_text(block, module_name=module_name, add_reset=add_reset,
                        initialize_registers=initialize_registers)
    name, ports, mems = parse_module(text)
    exp = VerilogExport(path, name, tuple(ports), tuple(mems), bool(add_reset))
    files = {path: text}
    if port_description:
        desc = {"module": name, "reset": bool(add_reset),
                "ports": [asdict(p) for p in ports], "memories": [asdict(m) for m in mems]}
        files[path.with_suffix(".ports.json")] = json.dumps(desc, indent=1) + "\n"
        files[path.with_suffix(".ports.md")] = (
            f"# Ports of `{name}`\n\nClock `clk` (rising edge)"
            + (", synchronous active-high reset `rst`" if add_reset else "")
            + ".\n\n" + port_table(ports) + "\n")
    write_files_atomically(files)
    return exp


def load_export(path):
    """VerilogExport of an existing PyRTL-generated Verilog file."""
    path = Path(path)
    require(path.is_file(), f"Verilog file {path} does not exist: export it first")
    name, ports, mems = parse_module(path.read_text())
    return VerilogExport(path, name, tuple(ports), tuple(mems),
                         any(p.name == "rst" for p in ports))


def waiver_config():
    """Verilator configuration (.vlt) text holding LINT_WAIVERS."""
    lines = ["`verilator_config"]
    lines += [f'lint_off -rule {rule} -file "*" -match "{match}"' for rule, match in LINT_WAIVERS]
    return "\n".join(lines) + "\n"


_WARN_RE = re.compile(r"^%(Warning|Error)-?([A-Z0-9_]*): ([^:]+):(\d+):(?:\d+:)? (.*)$")


def lint(path, *, top=None, waivers=True):
    """Run `verilator --lint-only -Wall` on `path`; return the list of warning lines (empty = clean).

    `waivers` applies LINT_WAIVERS (docs/LINT_WAIVERS.md). The file name need not match the module.
    """
    path = Path(path).resolve()
    require(path.is_file(), f"Verilog file {path} does not exist")
    ver = tools.find_verilator()
    top = top or load_export(path).module_name
    with tempfile.TemporaryDirectory(prefix="nmaccel_lint_") as tmp:
        cmd = [ver.exe, "--lint-only", "-Wall", "-Wno-DECLFILENAME", "--top-module", top]
        if waivers:
            vlt = Path(tmp) / "waivers.vlt"
            vlt.write_text(waiver_config())
            cmd.append(str(vlt))
        cmd.append(str(path))
        rc, log = tools.run_tool(cmd, cwd=tmp, env={**os.environ, **ver.env}, timeout=tools.BUILD_TIMEOUT_S,
                                 what="verilator lint", check=False)
    msgs = [ln for ln in log.splitlines()
            if _WARN_RE.match(ln) and not ln.startswith("%Error: Exiting due to")]
    if rc != 0 and not msgs:
        raise ToolFailedError(f"verilator lint failed (exit {rc})", tools.log_tail(log))
    return msgs


# ---------------------------------------------------------------- blocks and CLI

BLOCKS = ("top", "array", "pe", "decoder")


def _array_config(rows=4, cols=4, n_max=4, m_max=8, modes=("int8", "int4"), pipeline=False):
    return ArrayConfig(rows=rows, cols=cols, n_max=n_max, m_max=m_max, modes=tuple(modes),
                       **pipeline_options(pipeline))


def top_config(top_kw, array_kw):
    """TopConfig of the CLI's top: the product top (nmaccel.arch.config.PRODUCT_ARRAY, PRODUCT_TOP)
    unless array parameters are given (then a 4x4-default array with them); top_kw override."""
    array_kw = {k: v for k, v in array_kw.items() if v is not None}
    cfg = _array_config(**array_kw) if array_kw else PRODUCT_ARRAY
    return TopConfig(array=cfg, **{**PRODUCT_TOP, **{k: v for k, v in top_kw.items() if v is not None}})


def build_block(block, **kw):
    """Build `block` ('top', 'array', 'pe', 'decoder') into the working block; return the
    default module name. kw: rows, cols, n_max, m_max, modes, pipeline (ArrayConfig), and for
    the top t_max, k_tiles_max, n_tiles_max, host_bits."""
    require(block in BLOCKS, f"unknown block {block!r}: use one of {', '.join(BLOCKS)}")
    top_kw = {k: kw.pop(k) for k in ("t_max", "k_tiles_max", "n_tiles_max", "host_bits")
              if kw.get(k) is not None}
    for k in list(kw):
        if kw[k] is None:
            del kw[k]
    if block == "top":
        make_top_ports(top_config(top_kw, kw))
        return "nmaccel_top"
    cfg = _array_config(**kw)
    make = {"array": make_array_top, "pe": make_pe_top, "decoder": make_decoder_top}[block]
    make(cfg)                # the block's ports: its input_widths / output_widths signature
    return f"nmaccel_{block}"


def build_from_builder(spec):
    """Call 'package.module:function' (no arguments) to build into the working block."""
    require(":" in spec, f"--builder {spec!r}: use package.module:function")
    mod, func = spec.split(":", 1)
    try:
        fn = getattr(importlib.import_module(mod), func)
    except (ImportError, AttributeError) as exc:
        raise NmaccelError(f"--builder {spec!r}: cannot import it ({exc})") from exc
    fn()
    return func


MEMORY_SECTIONS = ("values", "indices", "scales", "zero_points", "codebook")


def memory_images(packed, word_bits=32):
    """{section file name: $readmemh text} for every section of a PackedWeights."""
    out = {}
    for sec in MEMORY_SECTIONS:
        try:
            words = packed.memory_image(sec, word_bits)
        except NmaccelError:
            continue           # section absent in this packing
        out[f"{sec}.memh"] = words_to_memh(words, word_bits)
    return out
