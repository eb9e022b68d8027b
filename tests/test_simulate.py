"""Simulators: overlaps vs weights vs exact vs gd, qualitative laws of MATH.md section 7."""

import json

import numpy as np
import pytest

from symflow.numerics.init import degenerate, gaussian, orthonormal
from symflow.numerics.simulators import simulate


def _close(a, b, rel, abs_):
    return np.all(np.abs(a - b) <= rel * np.abs(b) + abs_)


def overlap_floor(tr, Ws):
    """Round-off floor of a risk formed from overlaps (MATH.md section 2: 1/2 (|Q|^2 -
    2|M|^2 + |P|^2) + 1/4 (tr Q - tr P)^2 cancels terms of size (|Q|_F + |P|_F)^2 when the
    student is close to the teacher): a few eps times that size, per time point."""
    P = Ws.T @ Ws
    nq = np.linalg.norm(tr.Q, axis=(-2, -1)) if tr.Q is not None else np.linalg.norm(P)
    return 64 * np.finfo(float).eps * (nq + np.linalg.norm(P)) ** 2


def solver_floor(risk, atol):
    """Risk error from an absolute state error ~atol (times ~10 for its accumulation):
    dL = <grad_W L, dW>, |grad_W L| <= 3 |Z - Z*| |W| and |Z - Z*| = sqrt(2 L) up to the
    trace term, |W| = O(1) here: |dL| <~ 100 sqrt(L) atol.  Dominates at late times of
    m = m* runs, where L ~ 1e-18 is far below rtol * L's reach."""
    return 100 * np.sqrt(risk) * atol


ORTHO_CASES = [(20, 4, 8), (20, 6, 6), (30, 12, 5), (16, 10, 9), (12, 1, 3), (12, 12, 4)]


@pytest.mark.parametrize("d, m, ms", ORTHO_CASES)
def test_three_methods_agree_orthonormal(d, m, ms):
    W0, Ws = orthonormal(d, m, seed=1), orthonormal(d, ms, seed=2)
    gam = np.array([0.0, 0.05, 0.3, 1.0, 3.0])
    runs = {k: simulate(W0, Ws, gamma=gam, method=k, rtol=1e-11, atol=1e-14)
            for k in ("exact", "overlaps", "weights")}
    ref = runs["exact"]
    for k in ("overlaps", "weights"):
        r = runs[k]
        assert _close(r.phi, ref.phi, 1e-8, 1e-9), k
        assert _close(r.chi, ref.chi, 1e-8, 1e-10), k
        # overlaps: the risk is formed from O(1) overlaps (round-off floor); weights: from
        # Z - Z* (no floor beyond the solver's relative accuracy)
        floor = (overlap_floor(r, Ws) if k == "overlaps" else 0.0) + solver_floor(ref.risk,
                                                                                   1e-14)
        assert _close(r.risk, ref.risk, 1e-8, floor), k
        assert _close(r.dist, ref.dist, 1e-7, 1e-7), k


@pytest.mark.parametrize("d, m, ms", [(15, 3, 6), (15, 5, 5), (20, 8, 3), (10, 7, 6), (6, 9, 2)])
def test_overlaps_vs_weights_gaussian(d, m, ms):
    W0, Ws = gaussian(d, m, seed=3), gaussian(d, ms, seed=4)
    t = np.array([0.0, 0.5, 2.0, 10.0, 5.0 * d])
    a = simulate(W0, Ws, t, method="overlaps", rtol=1e-11, atol=1e-14)
    b = simulate(W0, Ws, t, method="weights", rtol=1e-11, atol=1e-14)
    assert _close(a.phi, b.phi, 1e-8, 1e-9)
    assert _close(a.chi, b.chi, 1e-8, 1e-10)
    assert _close(a.risk, b.risk, 1e-8, overlap_floor(a, Ws) + solver_floor(b.risk, 1e-14))


def test_gd_converges_at_first_order():
    d = 10
    W0, Ws = gaussian(d, 4, seed=5), gaussian(d, 2, seed=6)
    t = np.array([0.0, 1.0, 4.0, 8.0])
    ref = simulate(W0, Ws, t, method="overlaps", rtol=1e-12, atol=1e-15)
    errs = []
    for eta in (0.04, 0.02, 0.01):
        g = simulate(W0, Ws, t, method="gd", eta=eta)
        assert np.allclose(g.t, t)
        errs.append(np.max(np.abs(g.phi - ref.phi)) + np.max(np.abs(g.risk - ref.risk)))
    r1, r2 = errs[0] / errs[1], errs[1] / errs[2]
    assert 1.7 < r1 < 2.3 and 1.8 < r2 < 2.2, errs


@pytest.mark.parametrize("method", ["overlaps", "weights", "exact"])
def test_risk_non_increasing(method):
    d = 24
    if method == "exact":
        W0, Ws = orthonormal(d, 6, seed=7), orthonormal(d, 12, seed=8)
    else:
        W0, Ws = gaussian(d, 6, seed=7), gaussian(d, 12, seed=8)
    tr = simulate(W0, Ws, gamma=np.linspace(0, 5, 200), method=method, rtol=1e-10)
    assert np.all(np.diff(tr.risk) <= 1e-12 * tr.risk[0])


def test_degenerate_start_keeps_direction_missing():
    """A direction u with W0^T u = 0 that is an eigenvector of Z* stays missing (MATH.md s. 7).

    (A zero row alone is not enough: d/dt (u^T W) = 2 u^T Z* W, which vanishes when
    Z* u is proportional to u.)  Teacher: orthonormal, with e_0 among its directions.
    """
    from scipy.integrate import solve_ivp

    from symflow.numerics.kernels import risk_grad

    d, m, ms = 9, 4, 3
    Ws = np.zeros((d, ms))
    Ws[0, 0] = 1.0
    Ws[1:, 1:] = orthonormal(d - 1, ms - 1, seed=10) * np.sqrt(ms - 1)
    Ws /= np.sqrt(ms)
    W0 = degenerate(gaussian(d, m, seed=9))
    assert np.all(W0[0] == 0)
    sol = solve_ivp(lambda s, y: -risk_grad(y.reshape(d, m), Ws).ravel(), (0, 200),
                    W0.ravel(), rtol=1e-10, atol=1e-13)
    assert np.all(sol.y.reshape(d, m, -1)[0] == 0.0)
    # Z keeps a zero row/column 0, so the risk stays above 1/2 Z*_00^2 and chi below 1
    tr = simulate(W0, Ws, [0.0, 5.0, 50.0, 500.0], method="overlaps", rtol=1e-10)
    assert np.all(tr.risk >= 0.5 * (1.0 / ms) ** 2 * (1 - 1e-8))
    assert tr.chi[-1] < 1 - 1e-3
    # control: a generic start learns it
    free = simulate(gaussian(d, m, seed=9), Ws, [0.0, 500.0], method="overlaps", rtol=1e-10)
    assert free.risk[-1] < 1e-4


def test_m_equals_m_star_exponential_rate():
    d, m = 10, 4
    W0, Ws = gaussian(d, m, seed=11, normalize=False), gaussian(d, m, seed=12, normalize=False)
    mu = np.linalg.eigvalsh(Ws.T @ Ws)[0]  # smallest nonzero eigenvalue of Z*
    t = np.linspace(5.0, 9.0, 9)  # risk 1e-5 .. 1e-9: slowest mode dominates
    tr = simulate(W0, Ws, t, method="weights", rtol=1e-12, atol=1e-20)
    rate = -np.polyfit(t, np.log(tr.risk), 1)[0]
    assert abs(rate - 4 * mu) < 0.02 * 4 * mu


def test_m_greater_m_star_power_law():
    d = 8
    W0, Ws = gaussian(d, 6, seed=13, normalize=False), gaussian(d, 3, seed=14, normalize=False)
    t = np.array([100.0, 200.0, 400.0, 800.0])
    tr = simulate(W0, Ws, t, method="overlaps", rtol=1e-12, atol=1e-16)
    c = t**2 * tr.risk
    # t^2 L(t) -> constant: successive relative changes shrink and end below 5%
    ch = np.abs(np.diff(c)) / c[1:]
    assert ch[-1] < 0.05 and ch[-1] < ch[0]
    assert np.all(np.diff(np.log(tr.risk)) < 0)


@pytest.mark.parametrize("kw, msg", [
    (dict(t=[-1.0, 1.0]), "non-negative"),
    (dict(t=[0.0, 2.0, 1.0]), "increasing"),
    (dict(t=[0.0, 1.0], method="gd"), "eta"),
    (dict(t=[0.0, 1.0], method="rk4"), "method"),
    (dict(), "exactly one"),
    (dict(t=[1.0], gamma=[1.0]), "exactly one"),
    (dict(t=[0.0, 1.0], method="gd", eta=-1.0), "eta"),
])
def test_bad_input(kw, msg):
    W0, Ws = gaussian(6, 3, seed=0), gaussian(6, 2, seed=1)
    with pytest.raises(ValueError, match=msg):
        simulate(W0, Ws, **kw)


def test_orthonormal_k_greater_than_d():
    with pytest.raises(ValueError, match="k"):
        orthonormal(3, 4)


def test_exact_takes_general_start_and_mp_exact_names_the_deviation():
    """method="exact" now has a general path (MATH.md section 5, last paragraph): same
    numbers as the overlap ODE; the mpmath reduction (dps=) stays orthonormal-only and says
    what is wrong."""
    W0, Ws = gaussian(6, 3, seed=0), gaussian(6, 2, seed=1)
    t = [0.0, 1.0, 6.0]
    ex = simulate(W0, Ws, t, method="exact", rtol=1e-12)
    ov = simulate(W0, Ws, t, method="overlaps", rtol=1e-12, atol=1e-15)
    assert ex.meta["exact_path"] == "general"
    np.testing.assert_allclose(ex.phi, ov.phi, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ex.chi, ov.chi, rtol=1e-9)
    with pytest.raises(ValueError, match=r"max \|k W\^T W - I\| = .* tolerance .*overlaps"):
        simulate(W0, Ws, [0.0, 1.0], method="exact", dps=20)


def test_outputs_roundtrip(tmp_path):
    W0, Ws = orthonormal(10, 4, seed=0), orthonormal(10, 2, seed=1)
    tr = simulate(W0, Ws, gamma=[0.0, 0.5, 1.0], method="overlaps", seed=42)
    tr.to_csv(tmp_path / "a.csv")
    data = np.loadtxt(tmp_path / "a.csv", delimiter=",", skiprows=1)
    assert np.allclose(data[:, 3], tr.phi) and np.allclose(data[:, 1], [0.0, 0.5, 1.0])
    tr.to_npz(tmp_path / "a.npz")
    z = np.load(tmp_path / "a.npz")
    assert z["Q"].shape == (3, 4, 4) and json.loads(str(z["meta"]))["seed"] == 42
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.npz"]


def test_cli_run(tmp_path, capsys):
    from symflow.apps.cli import main

    out = tmp_path / "r"
    assert main(["run", "--d", "20", "--m", "10", "--m-star", "5", "--gamma-max", "2",
                 "--points", "30", "--out", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["method"] == "exact" and 0 < s["final_chi"] <= 1
    assert {p.name for p in out.iterdir()} == {"trajectory.csv", "meta.json", "run.png"}
    data = np.loadtxt(out / "trajectory.csv", delimiter=",", skiprows=1)
    assert data.shape == (30, 6)
    assert main(["run", "--d", "4", "--m", "5", "--out", str(tmp_path / "x")]) == 2
    assert "--m must be <= --d" in capsys.readouterr().err  # flags, not API names


def test_gd_divergence_is_an_error_not_nan():
    """Regression: a diverging gd run used to return NaN/inf silently."""
    W0, Ws = gaussian(20, 10, seed=1, normalize=False), gaussian(20, 5, seed=2, normalize=False)
    for eta in (0.1, 1.0):
        with pytest.raises(FloatingPointError, match="eta"):
            simulate(W0, Ws, [0.0, 1.0, 5.0], method="gd", eta=eta)


def test_gd_times_coarser_than_eta_rejected():
    """Regression: rounding t to multiples of eta used to give repeated or zero times."""
    W0, Ws = orthonormal(20, 10, seed=1), orthonormal(20, 5, seed=2)
    with pytest.raises(ValueError, match="too coarse"):
        simulate(W0, Ws, gamma=np.linspace(0, 1, 6), method="gd", eta=5.0)


def test_output_files_get_normal_permissions(tmp_path):
    import os
    import stat

    W0, Ws = orthonormal(6, 2, seed=0), orthonormal(6, 1, seed=1)
    tr = simulate(W0, Ws, [0.0, 1.0])
    tr.to_csv(tmp_path / "a.csv")
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE(os.stat(tmp_path / "a.csv").st_mode)
    assert mode == 0o666 & ~umask


@pytest.mark.parametrize("method", ["overlaps", "weights", "exact"])
def test_single_time_zero(method):
    """Regression: t = [0] crashed for overlaps/weights."""
    W0, Ws = orthonormal(6, 3, seed=0), orthonormal(6, 2, seed=1)
    tr = simulate(W0, Ws, [0.0], method=method)
    from symflow.numerics.kernels import risk

    assert np.isclose(tr.risk[0], risk(W0, Ws)) and tr.phi[0] == 0


def test_zero_student_and_valid_ranges_at_late_times():
    W0, Ws = orthonormal(20, 1, seed=0), orthonormal(20, 1, seed=1)
    z = simulate(np.zeros((20, 1)), Ws, [0.0, 1.0])
    assert np.all(z.chi == 0) and np.all(np.isfinite(z.risk))
    tr = simulate(W0, Ws, gamma=[0.0, 10.0, 100.0, 1000.0], method="overlaps")
    assert np.all(tr.risk >= 0) and np.all(tr.chi <= 1) and np.all(tr.chi >= 0)


@pytest.mark.parametrize("kw, exc, msg", [
    (dict(t=[0.0, 1e300]), ValueError, "horizon"),
    (dict(t=[0.0, 1.0], solver="foo"), ValueError, "solver"),
    (dict(t=[0.0, 1.0], rtol=10), ValueError, "rtol"),
    (dict(t=[0.0, 1e20], method="gd", eta=1e-3), ValueError, "horizon|steps"),
    (dict(t=[0.0, 1e6], method="gd", eta=1e-5), ValueError, "steps"),
    (dict(t=[0.0, 1.0], model="z**2"), TypeError, "model"),
    # regressions of the adversarial pass: a negative budget gave an invented estimate,
    # NaN was accepted, a list of events died in AttributeError, events were ignored by
    # the exact method
    (dict(t=[0.0, 1.0], max_time=-1.0), ValueError, "max_time"),
    (dict(t=[0.0, 1.0], max_time=float("nan")), ValueError, "max_time"),
    (dict(t=[0.0, 1.0], events=["risk"]), TypeError, "events must be a dict"),
    (dict(t=[0.0, 1.0], events={"risk": 0.1}, method="exact"), ValueError, "events need"),
    (dict(t=[0.0, 1.0], events={"risk": 0.1}, dps=20), ValueError, "events"),
    # gd ignored its budget (1e9 steps ran for hours); the projection is exact for gd
    (dict(t=[0.0, 1e5], method="gd", eta=1e-4, max_time=1e-3), ValueError,
     "would take about .* steps of gradient descent"),
])
def test_more_bad_input(kw, exc, msg):
    W0, Ws = gaussian(6, 3, seed=0), gaussian(6, 2, seed=1)
    with pytest.raises(exc, match=msg):
        simulate(W0, Ws, **kw)


@pytest.mark.parametrize("scale", [pytest.param(1e-20, marks=pytest.mark.slow), 1e-60])
def test_small_initialisation_leaves_the_saddle(scale):
    """Regression: with the absolute atol 1e-13, a start of scale 1e-60 never left the
    saddle at 0 (phi = -t) and 1e-20 gave phi off by 0.19.  Default atol is scaled to the
    state; reference: the weight-space flow with an absolute atol far below the start."""
    rng = np.random.default_rng(0)
    Ws = gaussian(10, 2, seed=1)
    W0 = scale * rng.standard_normal((10, 4))
    t = [0.0, 50.0, 150.0, 300.0]
    a = simulate(W0, Ws, t)
    b = simulate(W0, Ws, t, method="weights", rtol=1e-11, atol=1e-3 * scale * 1e-11)
    assert _close(a.phi, b.phi, 1e-7, 1e-9)
    assert a.risk[-1] < 0.5 * a.risk[0]  # it escaped: the risk dropped


def test_auto_solver_switches_to_implicit_on_long_horizons():
    """Regression: gamma = 1e4 at d = 6 took 114 s with DOP853 (1.06M evaluations); the
    auto solver switches to LSODA once the run is stiff.  Reference: the exact reduction
    (an independent formulation); risks from overlaps carry the round-off floor."""
    W0, Ws = orthonormal(6, 3, seed=0), orthonormal(6, 2, seed=1)
    gam = [0.0, 1.0, 1e2, 1e4]
    a = simulate(W0, Ws, gamma=gam)
    ref = simulate(W0, Ws, gamma=gam, method="exact", rtol=1e-11)
    assert "LSODA" in a.meta["solver"] and a.meta["nfev"] < 2e5
    assert _close(a.phi, ref.phi, 1e-7, 1e-7)
    assert _close(a.risk, ref.risk, 1e-6, overlap_floor(a, Ws))


def test_online_sgd_divergence_is_a_clear_error():
    """Regression: too large a learning rate ended in a bare solve_ivp RuntimeError."""
    from symflow import Model
    from symflow.numerics.simulators import Diverged

    W0, Ws = gaussian(50, 3, seed=1), gaussian(50, 2, seed=2)
    with pytest.raises(Diverged, match=r"diverged near t = .*gamma = .*lr = 50 is too large"):
        simulate(W0, Ws, gamma=[0.0, 10.0], model=Model("z**2 + z", 3, 2), lr=50.0)


def test_meta_names_the_solver_that_ran():
    W0, Ws = gaussian(8, 3, seed=1), gaussian(8, 2, seed=2)
    assert simulate(W0, Ws, [0.0, 1.0]).meta["solver"] == "DOP853"
    tr = simulate(W0, Ws, [0.0, 1.0], solver="LSODA")
    assert tr.meta["solver"] == "LSODA" and tr.meta["nfev"] > 0
