"""Yosys synthesis / nextpnr place-and-route runner and `nmaccel synth` on small blocks."""
import json

import pyrtl
import pytest

from nmaccel.verilog import export, synth
from nmaccel.cli import main
from nmaccel.errors import NmaccelError, ToolFailedError


def build_mac(pipelined=False, n=1, in_regs=False):
    """n signed INT8 MACs into 24-bit accumulators; optionally the product is registered
    (and the operands: out-of-context timing only sees register-to-register paths)."""
    for i in range(n):
        a, b = pyrtl.Input(8, f"a{i}"), pyrtl.Input(8, f"b{i}")
        if in_regs:
            ra, rb = pyrtl.Register(8, f"ra{i}"), pyrtl.Register(8, f"rb{i}")
            ra.next <<= a
            rb.next <<= b
            a, b = ra, rb
        p = pyrtl.signed_mult(a, b)
        if pipelined:
            r = pyrtl.Register(16, f"p{i}")
            r.next <<= p
            p = r
        acc = pyrtl.Register(24, f"acc{i}")
        acc.next <<= pyrtl.signed_add(acc, p.sign_extended(24))[:24]
        o = pyrtl.Output(24, f"y{i}")
        o <<= acc


@pytest.fixture
def mac_v(tmp_path):
    build_mac()
    export.export_verilog(tmp_path / "mac.v", module_name="mac")
    return tmp_path / "mac.v"


def test_scripts_exist_and_fill_in():
    for t in synth.TARGETS:
        s = synth.script_text(t, "top_x", dsp=False)
        assert "top_x" in s and "{" not in s and "stat -json" in s
    assert "-dsp" in synth.script_text("ice40", "t", dsp=True)
    assert "-nodsp" in synth.script_text("ecp5", "t", dsp=False)
    assert "-family xcup" in synth.script_text("xcup", "t")
    with pytest.raises(NmaccelError, match="unknown synthesis target"):
        synth.script_text("vivado", "t")


def test_classify_cells():
    got = synth.classify({"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 7, "MULT18X18D": 2, "DP16KD": 1,
                          "PFUMX": 4, "WEIRD": 1}, "ecp5")
    assert (got["lut"], got["carry"], got["ff"], got["dsp"], got["bram"], got["mux"],
            got["other"]) == (10, 3, 7, 2, 1, 4, 1)
    got = synth.classify({"LUT6": 5, "LUT3": 2, "FDRE": 4, "CARRY8": 1, "DSP48E2": 3,
                          "RAMB36E2": 1, "IBUF": 9}, "xcup")
    assert (got["lut"], got["ff"], got["carry"], got["dsp"], got["bram"], got["io"]) == \
        (7, 4, 1, 3, 1, 9)


@pytest.mark.tools
def test_ecp5_dsp_and_lut_only(mac_v):
    with_dsp = synth.synthesize(mac_v, "mac", "ecp5")
    assert with_dsp["dsp"] == 1 and with_dsp["cells"]["MULT18X18D"] == 1
    assert with_dsp["ff"] >= 24 and with_dsp["fmax_mhz"] is None
    lut_only = synth.synthesize(mac_v, "mac", "ecp5", dsp=False)
    assert lut_only["dsp"] == 0 and lut_only["lut"] > with_dsp["lut"] + 30


@pytest.mark.tools
def test_ecp5_pnr_fmax_and_pipelining_helps(tmp_path):
    build_mac(pipelined=False, in_regs=True)
    export.export_verilog(tmp_path / "plain.v", module_name="plain")
    pyrtl.reset_working_block()
    build_mac(pipelined=True, in_regs=True)
    export.export_verilog(tmp_path / "piped.v", module_name="piped")
    plain = synth.synthesize(tmp_path / "plain.v", "plain", "ecp5", pnr=True)
    piped = synth.synthesize(tmp_path / "piped.v", "piped", "ecp5", pnr=True)
    for r in (plain, piped):
        assert r["fmax_mhz"] > 20 and r["critical_path"]["delay_ns"] > 0
        assert r["utilization"]["MULT18X18D"][0] == 1
        assert r["utilization"]["MULT18X18D"][1] == 156      # LFE5U-85F
    # the unregistered multiplier sits on the critical path of the plain MAC
    assert piped["fmax_mhz"] > plain["fmax_mhz"]
    assert "MULT18X18D" in " ".join(plain["critical_path"]["steps"]) or \
        any("MULT" in s for s in plain["critical_path"]["steps"])


@pytest.mark.tools
def test_ice40_lut_only(mac_v):
    # (SB_MAC16 inference with -dsp is exercised by test_too_large_for_device)
    no = synth.synthesize(mac_v, "mac", "ice40", dsp=False)
    assert no["dsp"] == 0 and no["lut"] > 50 and no["carry"] > 0


@pytest.mark.tools
@pytest.mark.slow
def test_xcup_dsp48e2(tmp_path):
    a, b = pyrtl.Input(8, "a"), pyrtl.Input(8, "b")
    o = pyrtl.Output(16, "p")
    o <<= pyrtl.signed_mult(a, b)
    export.export_verilog(tmp_path / "m.v", module_name="m")
    r = synth.synthesize(tmp_path / "m.v", "m", "xcup")
    assert r["cells"].get("DSP48E2") == 1 and r["dsp"] == 1


@pytest.mark.tools
def test_too_large_for_device(tmp_path):
    build_mac(n=9)                       # 9 multipliers, the UP5K has 8 SB_MAC16
    export.export_verilog(tmp_path / "big.v", module_name="big")
    with pytest.raises(NmaccelError, match=r"too large for ice40 up5k: dsp 9/8"):
        synth.synthesize(tmp_path / "big.v", "big", "ice40", dsp=True)


@pytest.mark.tools
def test_too_many_ios_for_ice40_package(mac_v):
    # 1 MAC = 16 input + 24 output pins + clk + rst: more than the SG48 package has
    with pytest.raises(NmaccelError, match="too large for ice40 up5k.*SB_IO") as exc:
        synth.synthesize(mac_v, "mac", "ice40", dsp=True, pnr=True)
    assert "\n" not in str(exc.value)          # one line (the error contract): what is over, the fix


@pytest.mark.tools
def test_failures_show_log_tail(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input a, output b);\n assign b = a +* ;\nendmodule\n")
    with pytest.raises(ToolFailedError, match=r"yosys synthesis \(generic\) failed") as exc:
        synth.synthesize(bad, "bad", "generic")
    assert "ERROR" in exc.value.log_tail and "\n" not in str(exc.value)
    with pytest.raises(NmaccelError, match="does not exist"):
        synth.synthesize(tmp_path / "nope.v", "x", "generic")
    with pytest.raises(NmaccelError, match="place-and-route is available for ecp5 and ice40"):
        synth.synthesize(bad, "bad", "xc7", pnr=True)
    with pytest.raises(NmaccelError, match="unknown ecp5 device"):
        synth.synthesize(bad, "bad", "ecp5", pnr=True, device="12k")


@pytest.mark.tools
def test_cli_synth_json_and_table(mac_v, capsys):
    assert main(["synth", "--target", "generic", "--verilog", str(mac_v), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["top"] == "mac" and rep["ff"] == 24 and rep["lut"] > 0    # generic 4-LUTs
    assert main(["synth", "--target", "ecp5", "--block", "decoder", "--n-max", "2",
                 "--m-max", "4"]) == 0
    out = capsys.readouterr().out
    assert "nmaccel_decoder" in out and "| lut" in out.replace("|   lut", "| lut")
    assert main(["synth", "--target", "xc7", "--pnr", "--verilog", str(mac_v)]) == 2
    assert "ecp5 and ice40" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--target", "vivado"])
    assert exc.value.code == 2


def test_cli_synth_refuses_an_oversized_top_before_synthesis(capsys):
    """The 8x8 top with a 128-bit host: refused at once (no Yosys run), with the estimate and fix."""
    assert main(["synth", "--target", "ecp5", "--rows", "8", "--cols", "8", "--host-bits", "128"]) == 2
    err = capsys.readouterr().err
    assert "dsp 288/156" in err and "io 263/205" in err and "narrower host" in err
    assert "Traceback" not in err
