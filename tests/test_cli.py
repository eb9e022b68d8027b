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
    (["run", "--max-time", "-1"], "--max-time must be >= 0"),  # was: silently no budget
    (["run", "--max-time", "nan"], "--max-time must be >= 0"),
    (["run", "--activation", "pi*z", "--method", "exact"], "--method overlaps"),
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


@pytest.mark.parametrize("argv, msg", [
    # ran for minutes with no estimate; (a budget of 1e-6 s keeps the test free of timing:
    # the pilot alone takes longer on any machine)
    (["--samples", "1e9", "--max-time", "1e-6"], "would take about"),  # 1e9 was refused
    (["--d", "100000", "--m", "100"], "multiply-adds"),
    (["--max-time", "-1"], "--max-time must be >= 0"),
])
def test_risk_refuses_monte_carlo_over_its_budget(argv, msg, capsys):
    assert main(["risk", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and msg in err and len(err.strip().splitlines()) == 1


def test_run_refuses_a_run_far_over_its_time_budget(tmp_path, capsys):
    """Regression (issue 14): `symflow run --activation "He(3, z)"` at the default size
    showed an ETA of 55-85 hours; it now stops after a few seconds with an estimate."""
    assert main(["run", "--activation", "He(3, z)", "--max-time", "5", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would take about" in err[0] and "--max-time" in err[0]
    assert not (tmp_path / "o" / "trajectory.csv").exists()


# ------------------------------------------------------------- issue 11: --json, help, flags
_SNAKE = __import__("re").compile(r"^[a-z][a-z0-9_]*$")
_COMMON = {"command", "wall_time_s", "out", "files"}


def _json_of(argv, capsys, status=0):
    assert main(argv) == status, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _check_common(obj, command):
    assert _COMMON <= set(obj), set(obj)
    assert obj["command"] == command and obj["wall_time_s"] >= 0
    assert all(_SNAKE.match(k) for k in obj), [k for k in obj if not _SNAKE.match(k)]
    assert obj["out"] is None or isinstance(obj["out"], str)
    assert all(isinstance(f, str) for f in obj["files"])


def test_json_on_every_command_has_the_common_keys(tmp_path, capsys, monkeypatch):
    from symflow.apps import derive

    o = _json_of(["risk", "--d", "4", "--m", "2", "--m-star", "1", "--samples", "1000",
                  "--json"], capsys)
    _check_common(o, "risk")
    assert o["out"] is None and o["files"] == []
    o = _json_of(["run", "--d", "8", "--m", "2", "--m-star", "1", "--points", "5",
                  "--out", str(tmp_path / "r"), "--json"], capsys)
    _check_common(o, "run")
    assert o["out"] == str(tmp_path / "r") and len(o["files"]) == 3
    assert all((tmp_path / "r" / f).is_file() for f in ("trajectory.csv", "meta.json",
                                                         "run.png"))
    assert o["solve_time_s"] <= o["wall_time_s"]
    o = _json_of(["limit", "--alpha", "0.5", "--alpha-star", "0.25", "--points", "3",
                  "--out", str(tmp_path / "l"), "--json"], capsys)
    _check_common(o, "limit")
    assert o["files"] == [str(tmp_path / "l" / "limit.csv")]
    o = _json_of(["check", "--only", "Isserlis", "--json"], capsys)
    _check_common(o, "check")
    # derive: the derivation itself is covered by test_derive.py; here only the CLI
    monkeypatch.setattr(derive, "write_all", lambda root: ["derivations/x.md"])
    monkeypatch.setattr(derive, "check", lambda root: ["derivations/x.md"])
    o = _json_of(["derive", "--out", str(tmp_path), "--json"], capsys)
    _check_common(o, "derive")
    assert o["files"] == [str(tmp_path / "derivations/x.md")]
    o = _json_of(["derive", "--check", "--out", str(tmp_path), "--json"], capsys, status=1)
    _check_common(o, "derive")
    assert o["stale"] == ["derivations/x.md"] and o["up_to_date"] is False
    o = _json_of(["figures", "--figure", "6", "--quick", "--format", "svg", "--out",
                  str(tmp_path / "f"), "--json"], capsys)
    _check_common(o, "figures")
    assert sorted(o["files"]) == sorted(str(tmp_path / "f" / f"fig6.{e}")
                                        for e in ("svg", "csv", "json"))
    assert o["figures"][0]["figure"] == 6 and o["formats"] == ["svg"]
    spec = tmp_path / "s.toml"
    spec.write_text('job = "limit"\n[fixed]\ngamma = [0.0, 1.0]\n[grid]\n'
                    'alpha = [0.5]\nalpha_star = [0.25, 0.5]\n')
    o = _json_of(["sweep", str(spec), "--out", str(tmp_path / "sw"), "--scheduler",
                  "synchronous", "--json"], capsys)
    _check_common(o, "sweep")
    assert o["n_cells"] == 2 and o["tasks_computed"] + o["tasks_from_cache"] == o["n_tasks"]
    assert str(tmp_path / "sw" / "results.nc") in o["files"]


def test_limit_json_carries_the_curve_at_explicit_points(capsys):
    o = _json_of(["limit", "--alpha", "0.5", "--alpha-star", "0.25", "--gamma", "0.5", "1",
                  "2", "--json"], capsys)
    assert o["gamma"] == [0.5, 1.0, 2.0]
    # MATH.md section 6 reference table (independent solver, ~1e-6)
    assert max(abs(a - b) for a, b in zip(o["phi"], [0.095078, 0.279260, 0.462015])) < 2e-6
    assert max(abs(a - b) for a, b in zip(o["chi"], [0.995715, 0.999311, 0.999852])) < 2e-6
    assert o["final_phi"] == o["phi"][-1] and o["points"] == 3
    o = _json_of(["limit", "--alpha", "0.5", "--alpha-star", "0.25", "--points", "5",
                  "--gamma-max", "2", "--json"], capsys)
    assert o["gamma"] == [0.0, 0.5, 1.0, 1.5, 2.0] and len(o["phi"]) == len(o["chi"]) == 5
    assert main(["limit", "--alpha", "0.5", "--alpha-star", "0.25", "--gamma", "1",
                 "--points", "3"]) == 2
    assert "--gamma" in capsys.readouterr().err
    assert main(["limit", "--alpha", "0.5", "--alpha-star", "0.25", "--gamma", "1", "0.5"]) == 2
    assert "--gamma must be strictly increasing" in capsys.readouterr().err
    assert main(["limit", "--alpha", "0.5", "--alpha-star", "0.25", "--gamma", "0.5", "1"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[1].split() == ["gamma", "phi", "chi"] and len(text) == 4


@pytest.mark.parametrize("argv, msg", [
    (["limit", "--alpha", "1.5", "--alpha-star", "0.25"], "--alpha must be <= 1"),
    (["limit", "--alpha", "0.5", "--alpha-star", "0"], "--alpha-star must be > 0"),
    (["run", "--noise", "-1", "--d", "5", "--m", "2", "--m-star", "1"], "--noise must be >= 0"),
    (["run", "--weight-decay", "-1", "--d", "5", "--m", "2", "--m-star", "1"],
     "--weight-decay must be >= 0"),
    (["run", "--teacher-activation", "sin(z)", "--d", "5", "--m", "2", "--m-star", "1"],
     "--teacher-activation: a call of an unknown function"),
    (["run", "--d", "5", "--m", "2", "--m-star", "6"], "--m-star must be <= --d"),
    (["figures", "--figure", "9"], "--figure must be in 1..6"),
    (["figures", "--figure", "6", "--format", "gif"], "--format must be among"),
])
def test_errors_name_flags_not_api_arguments(argv, msg, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err


def test_flag_message_rewrites_only_subjects():
    from symflow.apps.cli import flag_message

    flags = {"d": "--d", "alpha": "--alpha", "alpha_star": "--alpha-star", "eta": "--eta"}
    assert flag_message("alpha_star = 0.001 is below the range", flags).startswith(
        "--alpha-star = 0.001")
    assert flag_message("eta=500 is too coarse", flags) == "--eta=500 is too coarse"
    # names inside a sentence that are not its subject stay as they are
    assert flag_message("k must be <= d, got k=6 > d=5", flags) == \
        "k must be <= d, got k=6 > d=5"
    assert flag_message("horizon gamma = t/d = 3", flags) == "horizon gamma = t/d = 3"


def _subparsers():
    import argparse

    from symflow.apps.cli import build_parser

    top = build_parser()
    (sub,) = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_every_flag_has_help_and_no_contradictory_defaults():
    import re

    for name, parser in _subparsers().items():
        for a in parser._actions:
            if a.option_strings and a.dest != "help":
                assert a.help and len(a.help) > 8, (name, a.option_strings)
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        # one statement of the default per flag at most
        flat = re.sub(r"\s+", " ", text)
        for chunk in re.split(r" (?=--[a-z])", flat):
            assert chunk.lower().count("default") <= 1, (name, chunk)
        assert "--json" in text, name
