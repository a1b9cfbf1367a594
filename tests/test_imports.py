"""Import directions of the nmaccel packages (ast over every module, imports inside functions
included): arch imports nothing of nmaccel (but the leaf nmaccel.errors); golden never imports
hdl / run / verilog / program / cli; hdl imports only arch (and PyRTL); no library package
imports cli; and the module import graph has no circle."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "nmaccel"
LEAVES = {"nmaccel.errors"}                      # imports nothing of nmaccel; allowed everywhere
ALLOWED = {                                       # package -> nmaccel packages it may import
    "arch": {"arch"},
    "hdl": {"arch", "hdl"},
}
FORBIDDEN = {                                     # package -> packages it must not import
    "golden": {"hdl", "run", "verilog", "program", "cli"},
    "pack": {"hdl", "run", "verilog", "program", "cli"},
    "program": {"hdl", "run", "verilog", "cli"},
    "models": {"hdl", "run", "verilog", "program", "cli"},
    "verilog": {"run", "cli"},
    "run": {"cli"},
    "plan": {"cli"},
    "backends": {"cli"},
}


def _module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, name):
    """nmaccel modules imported by the file (absolute names; `from pkg import mod` resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "nmaccel"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            if base.split(".")[0] != "nmaccel":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if _exists(sub) else base)
    return out


def _exists(mod):
    p = ROOT.parent.joinpath(*mod.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def _graph():
    g = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = _module_name(path)
        g[name] = {m for m in _imports(path, name) if m != name}
    return g


GRAPH = _graph()


def _package(mod):
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_graph_is_not_empty():
    assert "nmaccel.arch.config" in GRAPH and "nmaccel.hdl.array" in GRAPH
    assert "nmaccel.arch.config" in GRAPH["nmaccel.hdl.array"]


def test_no_forbidden_direction():
    bad = []
    for mod, deps in GRAPH.items():
        pkg = _package(mod)
        for dep in deps:
            if dep in LEAVES or dep == "nmaccel":
                continue
            dpkg = _package(dep)
            if mod in LEAVES:
                bad.append(f"{mod} -> {dep} (a leaf imports nothing of nmaccel)")
            elif pkg in ALLOWED and dpkg not in ALLOWED[pkg]:
                bad.append(f"{mod} -> {dep} ({pkg} may import only {sorted(ALLOWED[pkg])})")
            elif dpkg in FORBIDDEN.get(pkg, ()):
                bad.append(f"{mod} -> {dep} ({pkg} must not import {dpkg})")
    assert not bad, "forbidden imports:\n" + "\n".join(sorted(bad))


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    # a package __init__ re-exporting its own modules is not a circle between modules
    graph = {m: {d for d in deps if not (m.startswith(d + ".") and d != "nmaccel")}
             for m, deps in GRAPH.items()}
    graph = {m: {d for d in deps if not (GRAPH.get(d) is not None and d + "." in m + ".")}
             for m, deps in graph.items()}
    assert _cycles(graph) == []


@pytest.mark.parametrize("graph,want", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_cycle_finder(graph, want):
    assert _cycles(graph) == want
