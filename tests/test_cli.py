"""Command-line interface: outputs, JSON, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from symflow.apps.cli import main


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
    proc = subprocess.run([sys.executable, "-m", "symflow", *argv], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("symflow: error:")
    assert "Traceback" not in proc.stderr


def test_limit_cli(tmp_path, capsys):
    assert main(["limit", "--alpha", "0.5", "--alpha-star", "0.25", "--gamma-max", "1",
                 "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["final_phi"] - 0.279260) < 2e-6  # MATH.md section 6 reference table
    assert (tmp_path / "limit.csv").exists()
    assert main(["limit", "--alpha", "1.5", "--alpha-star", "0.25"]) == 2
    assert "alpha" in capsys.readouterr().err


def test_run_general_model_and_sgd(tmp_path, capsys):
    assert main(["run", "--d", "30", "--m", "3", "--m-star", "2", "--activation", "z**3",
                 "--init", "gaussian", "--teacher", "gaussian", "--gamma-max", "1", "--points",
                 "20", "--out", str(tmp_path / "a"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["method"] == "overlaps" and s["final_risk"] >= 0
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert "z**3" in meta["model"] or "s**3" in meta["model"]
    assert main(["run", "--d", "30", "--m", "3", "--m-star", "2", "--sgd", "--lr", "0.1",
                 "--gamma-max", "1", "--points", "10", "--out", str(tmp_path / "b"),
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["method"] == "overlaps"
    assert main(["run", "--activation", "sin(z)", "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
    assert main(["run", "--sgd", "--method", "exact", "--d", "10", "--m", "2", "--m-star", "1",
                 "--out", str(tmp_path / "d")]) == 2


@pytest.mark.parametrize("argv, msg", [
    (["run", "--lr", "0.1"], "--sgd"),
    (["run", "--eta", "0.1"], "--method gd"),
    (["run", "--activation", "z**3", "--method", "exact"], "--method overlaps"),
    (["run", "--method", "gd", "--eta", "500", "--d", "20", "--m", "10", "--m-star", "5"],
     "too coarse"),
])
def test_run_option_misuse(argv, msg, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "symflow" in capsys.readouterr().out


def test_points_edge_cases(tmp_path, capsys):
    """Regression: --points 2 (run) / 1 (limit) reported values at another gamma."""
    assert main(["run", "--d", "6", "--m", "3", "--m-star", "2", "--points", "2",
                 "--gamma-max", "10", "--out", str(tmp_path / "r"), "--json"]) == 0
    capsys.readouterr()
    import numpy as np

    data = np.loadtxt(tmp_path / "r" / "trajectory.csv", delimiter=",", skiprows=1)
    assert data[-1, 1] == 10.0
    assert main(["limit", "--alpha", "0.5", "--alpha-star", "0.25", "--points", "1"]) == 2


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["run", "--d", "6", "--m", "2", "--m-star", "1", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_no_command_is_a_one_line_error(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("symflow: error:") and len(err.strip().splitlines()) == 1


def test_run_gd_with_default_grid(tmp_path, capsys):
    """Regression: `symflow run --method gd` always exited 2 (the default log grid rounded
    to repeated steps); the output times are now snapped to the step grid."""
    out = tmp_path / "gd"
    assert main(["run", "--method", "gd", "--d", "12", "--m", "4", "--m-star", "2",
                 "--gamma-max", "0.5", "--out", str(out), "--json"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == "gd" and meta["solver"] == "gradient descent"
    import numpy as np

    t = np.loadtxt(out / "trajectory.csv", delimiter=",", skiprows=1)[:, 0]
    steps = t / meta["eta"]
    assert np.all(np.diff(t) > 0) and np.allclose(steps, np.rint(steps))


@pytest.mark.parametrize("argv", [
    ["limit", "--alpha", "0.5", "--alpha-star", "0.25", "--points", "100000000"],
    ["risk", "--samples", "1000000000000"],
    ["figures", "--reps", "10000000", "--figure", "6"],
    ["run", "--rtol", "0"],
    ["run", "--solver", "Euler"],
])
def test_caps_and_bad_options_exit_2(argv, capsys):
    """Regression (issue 17 item 9): huge --points/--samples/--reps were accepted."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("symflow: error:")


def test_run_records_tolerances_and_solver(tmp_path):
    out = tmp_path / "r"
    assert main(["run", "--d", "10", "--m", "3", "--m-star", "2", "--init", "gaussian",
                 "--gamma-max", "0.5", "--points", "5", "--rtol", "1e-9", "--atol", "1e-15",
                 "--solver", "LSODA", "--no-progress", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["solver"] == "LSODA" and meta["rtol"] == 1e-9 and meta["atol"] == 1e-15
    assert meta["nfev"] > 0


def test_run_meta_names_the_solver_that_ran(tmp_path):
    """Regression: a default exact run wrote "solver": "DOP853" while Radau ran; meta.json
    must name the solver actually used and its statistics."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "symflow", "run", "--d", "40", "--m", "20",
                           "--m-star", "10", "--out", str(out), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["method"] == "exact"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == "exact" and meta["exact_path"] == "orthonormal"
    assert meta["solver"] == "LSODA"
    assert meta["nfev"] > 0 and meta["njev"] >= 0 and meta["nlu"] >= 0


def test_run_refuses_a_run_far_over_its_time_budget(tmp_path, capsys):
    """Regression (issue 14): `symflow run --activation "He(3, z)"` at the default size
    showed an ETA of 55-85 hours; it now stops after a few seconds with an estimate."""
    assert main(["run", "--activation", "He(3, z)", "--max-time", "5", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would take about" in err[0] and "--max-time" in err[0]
    assert not (tmp_path / "o" / "trajectory.csv").exists()
