"""Error matrix (issue 14): every bad input through the CLI keeps the contract in error_cases."""
import pytest

from error_cases import CASES, run_case


def test_matrix_is_large():
    assert len(CASES) >= 80 and len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv[0] for c in CASES if c.argv}
    assert {"pack", "inspect", "storage", "sim", "export", "synth"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_contract(case, tmp_path):
    res = run_case(case, str(tmp_path))
    assert not res["violations"], f"{case.id}: {res['violations']}; rc {res['rc']}; stderr: {res['stderr']}"
