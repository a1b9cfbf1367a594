"""Verilog export, port description, Verilator lint, `nmaccel export`."""
import json

import numpy as np
import pyrtl
import pytest

from nmaccel.verilog import export
from nmaccel.cli import main
from nmaccel.errors import NmaccelError


def build_small():
    a, b = pyrtl.Input(8, "a"), pyrtl.Input(8, "b.x")   # 'b.x' is renamed to b_x
    acc = pyrtl.Register(20, "acc", reset_value=3)
    acc.next <<= pyrtl.signed_add(acc, pyrtl.signed_mult(a, b).sign_extended(20))[:20]
    o = pyrtl.Output(20, "acc_out")
    o <<= acc
    w = pyrtl.Output(70, "wide")
    w <<= pyrtl.concat(a, acc, acc, b)[:70]
    mem = pyrtl.MemBlock(8, 3, "buf", asynchronous=True)
    mem[a[:3]] <<= b
    q = pyrtl.Output(8, "q")
    q <<= mem[b[:3]]
    return pyrtl.working_block()


def test_export_writes_verilog_and_port_description(tmp_path):
    build_small()
    exp = export.export_verilog(tmp_path / "sm.v", module_name="sm")
    text = (tmp_path / "sm.v").read_text()
    assert text.count("module sm(") == 1 and "reg[19:0] acc = 20'd3;" in text
    assert [(p.name, p.direction, p.width) for p in exp.ports] == [
        ("clk", "input", 1), ("rst", "input", 1), ("a", "input", 8), ("b_x", "input", 8),
        ("acc_out", "output", 20), ("q", "output", 8), ("wide", "output", 70)]
    assert exp.port("b.x").name == "b_x" and exp.port("b_x").pyrtl_name == "b.x"
    assert exp.memories[0].depth == 8 and exp.memories[0].width == 8
    desc = json.loads((tmp_path / "sm.ports.json").read_text())
    assert desc["module"] == "sm" and desc["reset"] is True
    assert {"name": "wide", "direction": "output", "width": 70, "pyrtl_name": "wide"} in desc["ports"]
    md = (tmp_path / "sm.ports.md").read_text()
    assert "| b_x " in md and "b.x" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm.ports.json", "sm.ports.md",
                                                          "sm.v"]
    # without reset
    exp2 = export.export_verilog(tmp_path / "nr.v", module_name="nr", add_reset=False)
    assert "rst" not in [p.name for p in exp2.ports] and not exp2.has_reset


def test_reserved_and_bad_names_refused_without_files(tmp_path):
    a = pyrtl.Input(1, "rst")   # PyRTL itself refuses a wire named clk
    o = pyrtl.Output(1, "o")
    o <<= a
    with pytest.raises(NmaccelError, match="clash with the exported clock"):
        export.export_verilog(tmp_path / "x.v")
    assert not list(tmp_path.iterdir())
    pyrtl.reset_working_block()
    build_small()
    with pytest.raises(NmaccelError, match="not a Verilog identifier"):
        export.export_verilog(tmp_path / "x.v", module_name="1bad name")
    with pytest.raises(NmaccelError, match="keyword"):
        export.export_verilog(tmp_path / "x.v", module_name="small")   # a strength keyword
    pyrtl.reset_working_block()
    pyrtl.Input(3, "lonely")
    with pytest.raises(NmaccelError, match="no Output"):
        export.export_verilog(tmp_path / "x.v")
    assert not list(tmp_path.iterdir())


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(NmaccelError, match="is a directory"):
        export.write_files_atomically({tmp_path / "first.txt": "x", tmp_path / "adir": "y"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]


def test_parse_module_rejects_non_pyrtl_text():
    with pytest.raises(NmaccelError, match="no 'module"):
        export.parse_module("hello")


@pytest.mark.tools
def test_lint_clean_with_waivers_and_catches_real_issues(tmp_path):
    build_small()
    export.export_verilog(tmp_path / "sm.v", module_name="sm")
    assert export.lint(tmp_path / "sm.v") == []
    # the waivers are needed: without them PyRTL's truncated temporaries are reported
    raw = export.lint(tmp_path / "sm.v", waivers=False)
    assert raw and all("UNUSEDSIGNAL" in w for w in raw)
    # a real problem (an input bit nobody reads) is not waived
    pyrtl.reset_working_block()
    x = pyrtl.Input(8, "x")
    o = pyrtl.Output(4, "o")
    o <<= x[:4]
    export.export_verilog(tmp_path / "bad.v", module_name="bad")
    found = export.lint(tmp_path / "bad.v")
    assert len(found) == 1 and "'x'" in found[0] and "UNUSEDSIGNAL" in found[0]


@pytest.mark.tools
@pytest.mark.parametrize("block", ["pe", "decoder", "array", "top"])
def test_cli_export_block_lint_clean(tmp_path, block):
    out = tmp_path / "out"
    assert main(["export", "--block", block, "--n-max", "2", "--m-max", "4", "--rows", "2", "--cols", "2",
                 "-o", str(out), "--lint"]) == 0
    v = out / f"nmaccel_{block}.v"
    exp = export.load_export(v)
    desc = json.loads((out / f"nmaccel_{block}.ports.json").read_text())
    assert [p["name"] for p in desc["ports"]] == [p.name for p in exp.ports]


def test_cli_export_memory_images(tmp_path, rng):
    from nmaccel.pack.api import pack_weights
    w = rng.standard_normal((8, 32)).astype(np.float32)
    packed = pack_weights(w, n_keep=2, m_group=4, bits=4)
    packed.save(tmp_path / "w.nmw")
    out = tmp_path / "out"
    assert main(["export", "--block", "decoder", "-o", str(out), "--packed",
                 str(tmp_path / "w.nmw"), "--word-bits", "16"]) == 0
    vals = (out / "values.memh").read_text().split()
    assert all(len(v) == 4 for v in vals)
    want = packed.memory_image("values", 16)
    assert [int(v, 16) for v in vals] == [int(x) for x in want]
    assert (out / "indices.memh").exists() and (out / "scales.memh").exists()


def test_cli_export_bad_input_exit_2_no_files(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "--block", "pe", "-o", str(out), "--packed",
                 str(tmp_path / "missing.nmw")]) == 2
    assert "no such packed file" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())
    (tmp_path / "corrupt.nmw").write_bytes(b"garbage")
    assert main(["export", "--block", "pe", "-o", str(out), "--packed",
                 str(tmp_path / "corrupt.nmw")]) == 2
    assert not out.exists() or not list(out.iterdir())
    capsys.readouterr()
    with pytest.raises(SystemExit) as ei:        # refused by the argparse type, one line
        main(["export", "--block", "pe", "--m-max", "1", "-o", str(out)])
    assert ei.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["export", "--builder", "nope.module:fn", "-o", str(out)]) == 2
    assert "cannot import" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())
