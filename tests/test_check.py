"""symflow check: the quick suite passes, and a perturbed kernel makes its check fail."""

import json

import pytest

from symflow.apps.check import run_checks
from symflow.apps.cli import main


def test_check_quick_passes(capsys):
    assert main(["check", "--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["checks"]
    assert len(rows) >= 8 and out["passed"] and out["n_failed"] == 0
    assert all(r["passed"] and r["max_error"] <= r["tolerance"] for r in rows)


def test_rows_stream_as_they_finish(monkeypatch, capsys):
    """Each row is printed (and flushed) before the next check starts."""
    from symflow.apps import check

    seen = []

    def first(quick, dps):
        return 1e-20, 1e-12

    def second(quick, dps):
        seen.append(capsys.readouterr().out)  # what was printed before this check ran
        return 1.0, 1e-12  # fails

    monkeypatch.setattr(check, "CHECKS", [("fake one", first), ("fake two", second)])
    assert main(["check"]) == 1
    before = seen[0].splitlines()
    assert before[0].split()[0] == "check" and before[1].startswith("fake one")
    assert "yes" in before[1] and before[1].rstrip().endswith("s")
    rest = capsys.readouterr().out.splitlines()
    assert rest[0].startswith("fake two") and "NO" in rest[0]
    assert rest[1].startswith("1/2 checks passed in")


def test_only_selects_by_substring_and_json_has_times(capsys):
    assert main(["check", "--only", "ISSERLIS", "--only", "reference table", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in out["checks"]] == ["Isserlis identity in exact rationals",
                                                   "limit vs MATH.md reference table"]
    assert {"command", "wall_time_s", "cpu_time_s", "out", "files", "passed", "dps",
            "quick"} <= set(out)
    assert out["command"] == "check" and out["out"] is None and out["files"] == []
    for r in out["checks"]:
        assert set(r) == {"name", "max_error", "tolerance", "passed", "seconds",
                          "cpu_seconds"}
        assert r["seconds"] >= 0 and r["cpu_seconds"] >= 0
    assert out["wall_time_s"] >= sum(r["seconds"] for r in out["checks"])


def test_only_matching_nothing_exits_2_listing_names(capsys):
    from symflow.apps.check import check_names

    assert main(["check", "--only", "no such check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("symflow: error: --only")
    assert all(name in err[0] for name in check_names())
    with pytest.raises(ValueError, match="matches no check"):
        run_checks(only=["no such check"])
    with pytest.raises(TypeError, match="only"):
        run_checks(only="Isserlis")


def _wrap(mod, name, fn, monkeypatch):
    orig = getattr(mod, name)
    monkeypatch.setattr(mod, name, lambda *a, **k: fn(orig(*a, **k)))


def test_perturbed_mpmath_risk_kernel_fails(monkeypatch):
    from symflow.generated import quadratic_mpmath as K

    _wrap(K, "risk_from_overlaps", lambda v: v * (1 + 1e-9), monkeypatch)
    (res,) = run_checks(quick=True, only=["quadratic model"])
    assert not res.passed and res.max_error > 1e-10


def test_perturbed_numpy_flow_fails_solver_check(monkeypatch):
    from symflow.generated import quadratic_numpy as K

    _wrap(K, "overlap_flow", lambda v: (v[0], v[1] * (1 + 1e-6)), monkeypatch)
    (res,) = run_checks(quick=True, only=["solver: overlaps"])
    assert not res.passed


def test_perturbed_theta_prime_fails(monkeypatch):
    from symflow.generated import limit_numpy as K

    _wrap(K, "theta_prime", lambda v: v * (1 + 1e-10), monkeypatch)
    _wrap(K, "jtheta_prime", lambda v: v * (1 + 1e-10), monkeypatch)
    (res,) = run_checks(quick=True, only=["Theta'"])
    assert not res.passed


def test_broken_moment_engine_fails(monkeypatch):
    import symflow.engine.moments as mom

    _wrap(mom, "expect", lambda v: v + mom.sp.Rational(1, 10**12), monkeypatch)
    (res,) = run_checks(quick=True, only=["Isserlis"])
    assert not res.passed


def test_bad_dps(capsys):
    with pytest.raises(ValueError, match="dps"):
        run_checks(dps=5)
    assert main(["check", "--dps", "0"]) == 2
    capsys.readouterr()
    # regression: --dps 100000 ran the mpmath rows until memory ran out, and a bad --dps
    # printed the table header before its error
    for dps in ("10", "101", "100000"):
        assert main(["check", "--dps", dps]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and "--dps" in err


@pytest.mark.slow
def test_check_full_passes():
    res = run_checks(dps=30, quick=False)
    assert all(r.passed for r in res), [r for r in res if not r.passed]


def test_limit_digits_row_runs_the_gbs_integrator(monkeypatch):
    """The row "mpmath limit: dps vs dps + 10" integrates with GBS (issue 14), and a
    loosened integrator tolerance makes it fail."""
    import mpmath

    from symflow.numerics import mpode

    calls = []
    orig = mpode._gbs
    monkeypatch.setattr(mpode, "_gbs", lambda *a: calls.append(a[-1]) or orig(*a))
    (res,) = run_checks(quick=True, only=["mpmath limit: dps vs dps + 10"])
    assert res.passed and sorted(calls) == [30, 40]
    monkeypatch.setattr(mpode, "tolerance", lambda dps: mpmath.mpf(10) ** (12 - dps))
    (res,) = run_checks(quick=True, only=["mpmath limit: dps vs dps + 10"])
    assert not res.passed
