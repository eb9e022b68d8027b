"""Command-line interface: outputs, JSON, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from symflow.cli import main


def test_risk_json(capsys):
    assert main(["risk", "--d", "6", "--m", "3", "--m-star", "2", "--samples", "50000",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["monte_carlo"] - out["risk"]) < 5 * out["stderr"]


@pytest.mark.parametrize("argv", [
    ["risk", "--d", "0"],
    ["risk", "--samples", "1"],
    ["risk", "--m", "abc"],
    ["nonsense"],
])
def test_cli_errors_one_line_exit_2(argv):
    proc = subprocess.run([sys.executable, "-m", "symflow.cli", *argv], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("symflow: error:")
    assert "Traceback" not in proc.stderr
