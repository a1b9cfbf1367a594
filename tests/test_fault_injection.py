"""Fault injection in CI (a handful of kills; benchmarks/fault_injection.py runs >= 50 per
scenario): SIGTERM / SIGKILL during pack, export and a Verilator build leave the old output or
the complete new one, SIGTERM leaves no temporary, and the next run succeeds."""
import signal

import pytest

from faults import SCENARIOS, one_kill, reference

KILLS = [(signal.SIGTERM, False, 0.3), (signal.SIGKILL, True, 0.005),
         (signal.SIGTERM, True, 0.002), (signal.SIGKILL, False, 0.6)]


@pytest.mark.parametrize("name", ["pack", "export"])
def test_kills_during_cli_commands(name, tmp_path):
    scn = SCENARIOS[name]
    ref = reference(scn, str(tmp_path))
    for sig, in_write, frac in KILLS:
        delay = frac if in_write else frac * ref[3]
        row = one_kill(scn, str(tmp_path), sig, delay, ref, check_next=True, in_write=in_write)
        assert row["ok"], row


@pytest.mark.tools
def test_kills_during_verilator_build(tmp_path):
    scn = SCENARIOS["verilator-build"]
    ref = reference(scn, str(tmp_path))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        row = one_kill(scn, str(tmp_path), sig, 0.3 * ref[3], ref, check_next=True, in_write=True)
        assert row["ok"], row
