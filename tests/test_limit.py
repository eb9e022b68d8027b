"""High-dimensional limit (MATH.md section 6) against independent formulations."""

import math

import numpy as np
import pytest
from scipy import integrate

from symflow.numerics.highdim import LimitTrajectory, conservation_residual, limit

# MATH.md section 6 reference table (independent solver, accurate to about 1e-6)
TABLE = {
    (0.5, 0.25): ([0.095078, 0.279260, 0.462015], [0.995715, 0.999311, 0.999852]),
    (0.5, 0.5): ([-0.544457, -0.667043, -0.692482], [0.907329, 0.984893, 0.999643]),
    (0.25, 0.5): ([-2.413721, -4.431188, -8.431523], [0.683820, 0.706633, 0.707107]),
}
CASES = [(0.5, 0.25), (0.25, 0.5), (0.5, 0.5), (0.3, 0.3), (0.7, 0.6), (0.3, 0.7),
         (0.6, 0.4), (0.9, 0.9), (1.0, 0.3), (0.4, 1.0), (1.0, 1.0), (0.2, 0.1)]


def _edges(a, s):
    p, q = math.sqrt(a * (1 - s)), math.sqrt(s * (1 - a))
    return max((p - q) ** 2, 0.0), min((p + q) ** 2, 1.0)


def quad_mu(h, a, s):
    """int h dmu_ac by QUADPACK QAWS with the algebraic edge weights (see test_wachter)."""
    r1, r2 = _edges(a, s)
    if r2 - r1 < 1e-14:
        return 0.0
    e1, e2 = (-0.5 if r1 == 0 else 0.5), (-0.5 if r2 == 1 else 0.5)

    def f(lam):
        return h(lam) / (2 * math.pi) / (lam if r1 else 1.0) / ((1 - lam) if r2 < 1 else 1.0)

    return integrate.quad(f, r1, r2, weight="alg", wvar=(e1, e2), epsabs=1e-14,
                          epsrel=1e-13, limit=200)[0]


def reference_limit(a, s, gam):
    """Independent path: MATH.md 6 literally, in the original variables (F, J), Theta' by
    quadrature of the density, chi from the A/B integrals by quadrature; DOP853, rtol 1e-13.
    Accurate to ~1e-10 for gamma <= 2 and alpha* not small (E = e^{4 gamma/alpha*})."""
    p, q0 = max(a + s - 1, 0.0), max(a - s, 0.0)

    def tp(x):
        return quad_mu(lambda lam: lam / (1 + x * lam), a, s)

    def e2phi(g, F, J):
        E = math.exp(4 * g / s)
        return (1 + (E - J) * tp(J - 1) / a + p * (E / J - 1) / a) / F

    def rhs(g, st):
        F, J = st
        w = 1 / e2phi(g, F, J)
        return [4 / a * w, 4 / a * w * (math.exp(4 * g / s) - J) / F]

    sol = integrate.solve_ivp(rhs, (0, gam[-1]), [1.0, 1.0], method="DOP853", t_eval=gam,
                              rtol=1e-13, atol=1e-14)
    phi, chi = [], []
    for g, F, J in zip(gam, *sol.y):
        E = math.exp(4 * g / s)
        phi.append(0.5 * math.log(e2phi(g, F, J)))
        A = E * (p / J + tp(J - 1))
        B = q0 + p * (E / J) ** 2 + quad_mu(lambda lam: ((1 + (E - 1) * lam)
                                                         / (1 + (J - 1) * lam)) ** 2, a, s)
        chi.append(A / math.sqrt(s * B))
    return np.array(phi), np.array(chi), sol.y


@pytest.mark.parametrize("a,s", list(TABLE))
def test_math_md_reference_table(a, s):
    tr = limit(a, s, [0.5, 1.0, 2.0])
    phi, chi = TABLE[(a, s)]
    np.testing.assert_allclose(tr.phi, phi, atol=2e-6)
    np.testing.assert_allclose(tr.chi, chi, atol=2e-6)


@pytest.mark.parametrize("a,s", CASES)
def test_against_independent_reference(a, s):
    """phi, chi to 1e-8 vs the (F, J)-variables solver with quadrature (method error of the
    default rtol 1e-10 is ~1e-10).  Horizon capped at E <= e^16: beyond, the reference's
    quadrature of the sharp 1/(1 + x lam) near an x^{-1/2} edge (alpha = alpha*) degrades."""
    gam = np.linspace(0.0, min(2.0, 4 * s), 11)
    tr = limit(a, s, gam)
    phi, chi, (F, J) = reference_limit(a, s, gam)
    np.testing.assert_allclose(tr.phi, phi, atol=1e-8, rtol=0)
    np.testing.assert_allclose(tr.chi, chi, atol=1e-8, rtol=0)
    np.testing.assert_allclose(tr.log_F, np.log(F), atol=1e-8, rtol=1e-8)  # log F ~ 4 gamma/a
    np.testing.assert_allclose(tr.log_J, np.log(J), atol=1e-8, rtol=1e-8)
    assert tr.phi[0] == 0 and tr.chi[0] == pytest.approx(math.sqrt(a * s), abs=1e-13)


@pytest.mark.parametrize("a,s", CASES)
def test_conservation_law(a, s):
    """alpha log F + Theta(J-1) + p log J = 4 gamma (not imposed by the solver); Theta by
    QAWS quadrature of log(u + (1-u) lam) + log J, independent of the closed forms."""
    gam = np.linspace(0.0, 3.0, 7)
    tr = limit(a, s, gam)
    p = max(a + s - 1, 0.0)
    mass_ac = quad_mu(lambda lam: 1.0, a, s)
    for g, lf, lj in zip(gam, tr.log_F, tr.log_J):
        u = math.exp(-lj)
        th = mass_ac * lj + quad_mu(lambda lam, u=u: math.log(u + (1 - u) * lam), a, s)
        assert a * lf + th + p * lj - 4 * g == pytest.approx(0, abs=1e-8 * (1 + g))
    # and the package's own residual helper agrees
    assert np.abs(conservation_residual(tr)).max() < 1e-8


@pytest.mark.parametrize("a,s", CASES + [(0.01, 0.5), (0.001, 0.999), (0.999, 0.001),
                                         (0.02, 0.02), (1.0, 0.01), (0.05, 1.0)])
def test_long_horizon_finite_and_chi_limit(a, s):
    gam = np.concatenate([[0.0], np.geomspace(1e-3, 1000.0, 60)])
    tr = limit(a, s, gam)
    for arr in (tr.phi, tr.chi, tr.log_F, tr.log_J):
        assert np.all(np.isfinite(arr))
    assert tr.chi_final == min(1.0, math.sqrt(a / s))
    assert tr.chi[-1] == pytest.approx(tr.chi_final, abs=1e-6)
    assert np.all(tr.chi <= 1 + 1e-12)


@pytest.mark.parametrize("a,s", [(0.25, 0.5), (0.1, 0.3), (0.3, 0.7), (0.01, 0.5)])
def test_late_slope_alpha_below_alpha_star(a, s):
    """For alpha < alpha*, v = J/E -> 1 - alpha/alpha* and s -> alpha, so
    phi' -> 2/alpha* - 2/alpha (= -4 for the paper's (1/4, 1/2): phi + 4 gamma -> const)."""
    gam = np.array([0.0, 200.0, 400.0, 800.0])
    tr = limit(a, s, gam)
    c = tr.phi - (2 / s - 2 / a) * gam
    assert abs(c[-1] - c[-2]) < 1e-8 * (1 + abs(tr.phi[-1]))
    assert abs(c[-2] - c[-3]) < 1e-8 * (1 + abs(tr.phi[-1]))
    if (a, s) == (0.25, 0.5):
        assert abs((tr.phi[-1] + 4 * 800) - (tr.phi[-2] + 4 * 400)) < 1e-8


def test_equal_widths_half_plateau():
    tr = limit(0.5, 0.5, [0.0, 50.0, 1000.0])
    assert tr.phi[-1] == pytest.approx(-math.log(2), abs=1e-9)
    assert tr.phi[-2] == pytest.approx(-math.log(2), abs=1e-9)


def test_grid_conventions_and_csv(tmp_path):
    t0 = limit(0.5, 0.25, [0.0])
    assert t0.phi.tolist() == [0.0] and t0.log_J.tolist() == [0.0]
    full = limit(0.5, 0.25, [0.0, 0.5, 1.0])
    part = limit(0.5, 0.25, [0.5, 1.0])
    np.testing.assert_allclose(part.phi, full.phi[1:], atol=1e-9)
    assert isinstance(full, LimitTrajectory) and full.meta["method"] == "odeint"
    np.testing.assert_allclose(np.log(full.F), full.log_F)
    path = tmp_path / "limit.csv"
    full.to_csv(path)
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(data[:, 0], full.gamma)
    np.testing.assert_array_equal(data[:, 1], full.phi)
    np.testing.assert_array_equal(data[:, 2], full.chi)
    assert path.read_text().splitlines()[0] == "gamma,phi,chi,log_F,log_J"
    assert [p.name for p in tmp_path.iterdir()] == ["limit.csv"]


@pytest.mark.parametrize("kw,name", [
    (dict(alpha=0.0), "alpha"), (dict(alpha=-0.5), "alpha"), (dict(alpha=1.01), "alpha"),
    (dict(alpha=float("nan")), "alpha"), (dict(alpha_star=0.0), "alpha_star"),
    (dict(alpha_star=2.0), "alpha_star"), (dict(alpha_star=float("nan")), "alpha_star"),
    (dict(gamma=[-1.0, 1.0]), "gamma"), (dict(gamma=[0.0, 2.0, 1.0]), "gamma"),
    (dict(gamma=[0.0, 1.0, 1.0]), "gamma"), (dict(gamma=[0.0, np.nan]), "gamma"),
    (dict(gamma=[]), "gamma"), (dict(gamma=[[0.0, 1.0]]), "gamma"),
    (dict(rtol=0.0), "rtol"), (dict(rtol=float("nan")), "rtol"), (dict(method="RK4"), "method"),
])
def test_bad_inputs(kw, name):
    args = dict(alpha=0.5, alpha_star=0.25, gamma=[0.0, 1.0])
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        limit(**args)


@pytest.mark.parametrize("a,s", [(0.5, 0.25), pytest.param(0.5, 0.5, marks=pytest.mark.slow),
                                 pytest.param(0.25, 0.5, marks=pytest.mark.slow),
                                 pytest.param(0.75, 0.5, marks=pytest.mark.slow)])
def test_finite_d_approaches_limit(a, s):
    """symflow.simulate(method="exact") with orthonormal start and teacher at
    d = 100, 400, 1600 (two seeds each): max |phi_d - phi| over gamma in [0, 1.5]
    decreases with d (about like 1/d)."""
    from symflow.numerics.init import orthonormal
    from symflow.numerics.simulators import simulate

    gam = np.linspace(0.0, 1.5, 7)
    ref = limit(a, s, gam).phi
    errs = []
    for d in (100, 400, 1600):
        e = []
        for seed in (0, 1):
            W0 = orthonormal(d, round(a * d), seed=2 * seed)
            Ws = orthonormal(d, round(s * d), seed=2 * seed + 1)
            tr = simulate(W0, Ws, gamma=gam, method="exact", rtol=1e-9)
            e.append(np.abs(tr.phi - ref).max())
        errs.append(np.mean(e))
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 0.4 * errs[0], errs


def test_conservation_at_long_horizon_regression():
    """Regression: Theta(J - 1) by one quad over [0, log J] was off by 0.2 at log J ~ 1.6e4,
    so the conservation check falsely failed at gamma = 1000."""
    from symflow.numerics.highdim import conservation_residual

    for a, s in ((0.5, 0.25), (0.7, 0.3)):
        tr = limit(a, s, [0.0, 10.0, 1000.0])
        assert np.max(np.abs(conservation_residual(tr))) < 1e-8 * 1000


def test_alpha_range_and_dps_without_continuous_part():
    with pytest.raises(ValueError, match="alpha_star"):
        limit(1.0, 1e-9, [1.0])
    with pytest.raises(ValueError, match="alpha"):
        limit(1e-12, 0.5, [1.0])
    # alpha = alpha* = 1: mu is one atom at 1 (no continuous part); mp path must cope
    hi = limit(1.0, 1.0, [0.5], dps=20)
    lo = limit(1.0, 1.0, [0.5])
    assert abs(float(hi.phi[0]) - lo.phi[0]) < 1e-9 and abs(float(hi.chi[0]) - lo.chi[0]) < 1e-9


def test_alpha_plus_alpha_star_one_grid():
    """Regression (r2 = 1 edge): for alpha + alpha* = 1 the float path computed
    r2 = 1 - 2.2e-16 and chi(0) was off by up to 1.5e-8.  Orthonormal start: chi(0) =
    ||M||^2 / (||Q|| ||P||) = sqrt(m m*) / d = sqrt(alpha alpha*) exactly (MATH.md 4)."""
    for k in range(1, 100):
        a = k / 100
        tr = limit(a, 1 - a, [0.0])
        assert abs(tr.chi[0] - np.sqrt(a * (1 - a))) < 1e-14, a


@pytest.mark.parametrize("a", [0.1, 0.2, 0.9])
def test_alpha_plus_alpha_star_one_vs_mpmath(a):
    """Regression: at (0.1, 0.9), (0.2, 0.8) phi was off by 1e-7 at gamma = 1 against the
    mpmath path (which sets r2 = 1 exactly); both paths must agree to solver tolerance."""
    ref = limit(a, 1 - a, [0.5], dps=20)
    tr = limit(a, 1 - a, [0.5], rtol=1e-12)
    assert abs(tr.phi[0] - float(ref.phi[0])) < 1e-9
    assert abs(tr.chi[0] - float(ref.chi[0])) < 1e-9


def test_dps_solution_exposes_F_and_J():
    """Regression: LimitTrajectory.F / .J raised TypeError for a dps= (mpmath) solution."""
    import mpmath

    hi = limit(0.5, 0.25, [0.0, 0.1], dps=16)
    lo = limit(0.5, 0.25, [0.0, 0.1], rtol=1e-12)
    assert isinstance(hi.F[1], mpmath.mpf) and isinstance(hi.J[1], mpmath.mpf)
    np.testing.assert_allclose(np.array(hi.F, dtype=float), lo.F, rtol=1e-9)
    np.testing.assert_allclose(np.array(hi.J, dtype=float), lo.J, rtol=1e-9)


# ------------------------------------------------- high precision (dps=): issue 14
def _mp_gap(lo, hi, dps):
    """Largest |lo - hi| over phi and chi, evaluated at dps + 10 digits."""
    import mpmath

    with mpmath.workdps(dps + 10):
        return max(abs(a - b) for k in ("phi", "chi")
                   for a, b in zip(getattr(lo, k), getattr(hi, k)))


@pytest.mark.parametrize("a,s", [(0.5, 0.25), (0.25, 0.5)])
def test_dps_agrees_with_dps_plus_10(a, s):
    """The integrator's own accuracy: dps - 5 digits promised (dps measured)."""
    g = [0.0, 0.25, 0.5]
    lo, hi = limit(a, s, g, dps=20), limit(a, s, g, dps=30)
    assert _mp_gap(lo, hi, 20) < 1e-15
    assert lo.meta["method"] == "mpmath.gbs" and lo.meta["integrator"] == "gbs"
    assert lo.meta["steps"] > 0 and lo.meta["nfev"] > lo.meta["steps"]
    assert lo.meta["tol"] == 1e-20 and lo.meta["work_dps"] == 25


@pytest.mark.slow
@pytest.mark.parametrize("dps", [30, 50])
@pytest.mark.parametrize("a,s", list(TABLE))
def test_dps_agrees_with_dps_plus_10_slow(a, s, dps):
    g = [0.5, 1.0, 2.0]
    assert _mp_gap(limit(a, s, g, dps=dps), limit(a, s, g, dps=dps + 10), dps) < 10.0 ** (5 - dps)


@pytest.mark.parametrize("a,s", list(TABLE))
def test_float_path_vs_dps_path(a, s):
    """Double precision at rtol 1e-13 against the mpmath path (dps = 20) to 1e-9."""
    g = [0.0, 0.5, 1.0, 2.0]
    hi, lo = limit(a, s, g, dps=20), limit(a, s, g, rtol=1e-13)
    for k in ("phi", "chi", "log_F", "log_J"):
        np.testing.assert_allclose(getattr(lo, k), np.array(getattr(hi, k), dtype=float),
                                   rtol=0, atol=1e-9, err_msg=k)


@pytest.mark.slow
def test_gbs_vs_odefun_integrators():
    """Two independent integrators of the same right-hand side (GBS extrapolation at
    working precision, mpmath.odefun's Taylor series) agree to dps - 3 digits."""
    import mpmath

    from symflow.numerics.precision import limit_mp

    g = [0.1, 0.3]
    new = limit_mp(0.5, 0.25, g, dps=20)
    old = limit_mp(0.5, 0.25, g, dps=20, integrator="odefun")
    assert new["stats"]["integrator"] == "gbs" and old["stats"]["integrator"] == "odefun"
    with mpmath.workdps(20):
        for k in ("phi", "chi", "log_F", "log_J"):
            assert max(abs(a - b) for a, b in zip(new[k], old[k])) < 1e-17, k


# ----------------------------------------------------------------- batched limit
# alpha = alpha* (0.3, 0.3), alpha + alpha* = 1 (0.3, 0.7), (0.7, 0.3), alpha = 1 (last
# row), alpha* = 1 (third column), alpha < alpha* (e.g. 0.1 vs 0.5) on a long horizon
BATCH_A = np.array([[0.1], [0.3], [0.7], [1.0]])
BATCH_S = np.array([0.3, 0.7, 1.0, 0.1, 0.5])
SHORT = np.linspace(0.0, 3.0, 13)
LONG = np.concatenate([[0.0], np.geomspace(1e-2, 300.0, 30)])


def _assert_cells_match(tr, a_arr, s_arr, gam, **kw):
    """Every cell of the batch vs its own scalar limit() call, to solver tolerance:
    rtol 1e-10 on log F (~ 4 gamma / alpha), log J and phi, 1e-9 absolute on chi."""
    assert tr.batch_shape == a_arr.shape == s_arr.shape
    assert tr.phi.shape == tr.chi.shape == tr.log_F.shape == a_arr.shape + (gam.size,)
    for idx in np.ndindex(a_arr.shape):
        ref = limit(float(a_arr[idx]), float(s_arr[idx]), gam, **kw)
        for name in ("phi", "log_F", "log_J"):
            got, want = getattr(tr, name)[idx], getattr(ref, name)
            assert np.all(np.abs(got - want) <= 1e-8 * (1 + np.abs(want))), (idx, name)
        assert np.abs(tr.chi[idx] - ref.chi).max() <= 1e-9, idx
        assert tr.alpha[idx] == a_arr[idx] and tr.alpha_star[idx] == s_arr[idx]


@pytest.mark.parametrize("gam", [SHORT, LONG], ids=["gamma<=3", "gamma<=300"])
def test_batch_equals_per_cell(gam):
    tr = limit(BATCH_A, BATCH_S, gam)
    a_arr, s_arr = np.broadcast_arrays(BATCH_A, BATCH_S)
    _assert_cells_match(tr, a_arr, s_arr, gam)
    assert tr.meta["n_cells"] == 20 and tr.meta["r1"].shape == (4, 5)
    assert tr.meta["r1"][1, 0] == 0.0 and tr.meta["r2"][1, 1] == 1.0  # alpha = alpha*, sum 1
    np.testing.assert_array_equal(tr.chi_final, np.minimum(1.0, np.sqrt(a_arr / s_arr)))
    if gam is LONG:  # the stiff cells (alpha < alpha*) are at their chi(infinity)
        np.testing.assert_allclose(tr.chi[..., -1], tr.chi_final, atol=1e-6)


@pytest.mark.parametrize("method", ["DOP853", "Radau", "LSODA"])
def test_batch_equals_per_cell_solve_ivp_methods(method):
    a_arr = np.array([0.3, 0.3, 1.0, 0.1])
    s_arr = np.array([0.3, 0.7, 0.5, 0.5])
    gam = np.linspace(0.0, 2.0, 5)
    _assert_cells_match(limit(a_arr, s_arr, gam, method=method), a_arr, s_arr, gam,
                        method=method)


def test_single_cell_batch_and_cell_accessor(tmp_path):
    gam = np.array([0.0, 0.5, 1.0])
    one = limit(0.5, 0.25, gam)
    batch = limit([0.5], 0.25, gam)
    assert one.batch_shape == () and batch.batch_shape == (1,)
    assert isinstance(one.alpha, float) and isinstance(one.chi_final, float)
    np.testing.assert_array_equal(batch.phi[0], one.phi)  # same path for one cell
    c = limit(BATCH_A, BATCH_S, gam).cell((2, 1))
    assert (c.alpha, c.alpha_star) == (0.7, 0.7) and c.phi.shape == (3,)
    assert isinstance(c.meta["r1"], float) and c.meta["atom1"] == pytest.approx(0.4)
    with pytest.raises(TypeError, match="single curve"):
        one.cell(0)
    with pytest.raises(ValueError, match="one cell"):
        limit(BATCH_A, BATCH_S, gam).cell(0)
    # long-format CSV: alpha, alpha_star, gamma, ... one row per (cell, gamma)
    tr = limit([0.5, 0.25], [0.25, 0.5], gam)
    tr.to_csv(tmp_path / "b.csv")
    data = np.loadtxt(tmp_path / "b.csv", delimiter=",", skiprows=1)
    assert data.shape == (6, 7)
    np.testing.assert_array_equal(data[3:, :3], [[0.25, 0.5, g] for g in gam])
    np.testing.assert_array_equal(data[3:, 3], tr.phi[1])
    assert np.abs(conservation_residual(tr)).max() < 1e-8


def test_batch_dps_cell_by_cell():
    tr = limit([1.0, 1.0], [1.0, 0.5], [0.5], dps=20)
    assert tr.batch_shape == (2,) and tr.meta["method"] == "mpmath.gbs"
    lo = limit([1.0, 1.0], [1.0, 0.5], [0.5])
    np.testing.assert_allclose(np.array(tr.phi, dtype=float), lo.phi, atol=1e-9)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(alpha=[0.5, 1.5]), ValueError, r"alpha must be <= 1.*cell \(1,\)"),
    (dict(alpha_star=[[0.5], [0.0]]), ValueError, r"alpha_star.*cell \(1, 0\)"),
    (dict(alpha=[0.5, np.nan]), ValueError, "alpha must be finite"),
    (dict(alpha=[0.2, 0.3], alpha_star=[0.1, 0.2, 0.3]), ValueError, "broadcast"),
    (dict(alpha=[]), ValueError, "empty"),
    (dict(alpha=["0.5"]), TypeError, "alpha must be real"),
    (dict(alpha=[True]), TypeError, "alpha must be real"),
])
def test_batch_bad_inputs(kw, exc, match):
    args = dict(alpha=[0.5, 0.4], alpha_star=0.25, gamma=[0.0, 1.0])
    args.update(kw)
    with pytest.raises(exc, match=match):
        limit(**args)


@pytest.mark.parametrize("method", ["auto", "DOP853", "LSODA"])
@pytest.mark.parametrize("alpha", [0.5, [0.5, 0.3]])
def test_smallest_rtol_no_scipy_warning(method, alpha):
    """rtol = 1e-14 is raised to 100 eps (what scipy's solvers accept) without warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = limit(alpha, 0.25, [0.0, 0.5], rtol=1e-14, method=method)
    assert tr.meta["rtol"] == 100 * np.finfo(float).eps
    assert np.all(np.isfinite(tr.phi))
