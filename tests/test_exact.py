"""exact_flow / simulate(method="exact") (MATH.md section 5) against independent paths.

References, never the reduction itself:
* the weight-space gradient flow dW/dt = -[2 (Z - Z*) + tau I] W (MATH.md section 3),
* the overlap ODEs for (Q, M) (MATH.md section 4),
both integrated with scipy's DOP853 at rtol 1e-11 and augmented with phi' = tau.
Tolerances: REL = 1e-8 relative; the exact reduction runs at rtol 1e-11 or 1e-12 where
its global error (measured about 100 rtol) must stay well below REL.  The references'
risk has an absolute error floor (see ``_floor``); risks are compared relative to
risk + floor.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from symflow.numerics import exact as E
from symflow.numerics.exact import exact_flow, exact_flow_batch
from symflow.numerics.init import degenerate, gaussian, orthonormal
from symflow.numerics.simulators import simulate, simulate_batch

REL = 1e-8
EPS = np.finfo(float).eps


def _stats(Q, M, P, phi):
    tau = np.trace(Q) - np.trace(P)
    mm = np.sum(M * M)
    risk = 0.5 * (np.sum(Q * Q) - 2 * mm + np.sum(P * P)) + 0.25 * tau**2
    den = np.linalg.norm(Q) * np.linalg.norm(P)
    return phi, risk, mm / den if den > 0 else 0.0


def weight_flow(W0, Ws, t):
    """Weight-space gradient flow plus phi' = tau; returns phi, risk, chi at t."""
    d, m = W0.shape
    trP = np.sum(Ws * Ws)
    Zs = Ws @ Ws.T

    def rhs(_, y):
        W = y[:-1].reshape(d, m)
        Q = W.T @ W
        tau = np.trace(Q) - trP
        grad = 2.0 * (W @ Q - Zs @ W) + tau * W
        return np.append(-grad.ravel(), tau)

    sol = solve_ivp(rhs, (0.0, t[-1]), np.append(W0.ravel(), 0.0), method="DOP853",
                    t_eval=t, rtol=1e-11, atol=1e-14)
    assert sol.success
    out = []
    for y in sol.y.T:
        W = y[:-1].reshape(d, m)
        Z = W @ W.T
        D = Z - Zs
        out.append((y[-1], 0.5 * np.sum(D * D) + 0.25 * np.trace(D) ** 2,
                    np.sum(Z * Zs) / (np.linalg.norm(Z) * np.linalg.norm(Zs))))
    return [np.array(v) for v in zip(*out)]


def overlap_flow(W0, Ws, t, atol=1e-14):
    """Overlap ODEs of MATH.md section 4 plus phi' = tau; returns phi, risk, chi at t."""
    m, ms = W0.shape[1], Ws.shape[1]
    P = Ws.T @ Ws
    trP = np.trace(P)

    def rhs(_, y):
        Q = y[: m * m].reshape(m, m)
        M = y[m * m: -1].reshape(m, ms)
        tau = np.trace(Q) - trP
        dQ = -2.0 * (2.0 * (Q @ Q - M @ M.T) + tau * Q)
        dM = -(2.0 * (Q @ M - M @ P) + tau * M)
        return np.concatenate([dQ.ravel(), dM.ravel(), [tau]])

    y0 = np.concatenate([(W0.T @ W0).ravel(), (W0.T @ Ws).ravel(), [0.0]])
    sol = solve_ivp(rhs, (0.0, t[-1]), y0, method="DOP853", t_eval=t, rtol=1e-11, atol=atol)
    assert sol.success
    out = [_stats(y[: m * m].reshape(m, m), y[m * m: -1].reshape(m, ms), P, y[-1])
           for y in sol.y.T]
    return [np.array(v) for v in zip(*out)]


def _compare(ex, ref, what, floor, dz=0.0):
    """phi, chi to REL; risk to REL relative to risk + floor, plus the propagated state
    error: risk = ||D||^2 / 2 + (tr D)^2 / 4 with D = Z - Z* known to dz gives
    |d risk| <= sqrt(2 risk) dz + dz^2 (up to the tr D term, of the same order)."""
    phi, risk, chi = ref
    scale_phi = 1.0 + np.abs(phi)
    np.testing.assert_array_less(np.abs(ex["phi"] - phi) / scale_phi, REL, err_msg=f"phi {what}")
    np.testing.assert_array_less(np.abs(ex["chi"] - chi), REL * chi + floor,
                                 err_msg=f"chi {what}")
    tol = REL * (risk + floor) + 2.0 * (np.sqrt(2.0 * np.abs(risk)) * dz + dz**2)
    np.testing.assert_array_less(np.abs(ex["risk"] - risk), tol, err_msg=f"risk {what}")


# Absolute accuracy of the references' risk.  The weight flow forms it from D = Z - Z*:
# its error is that of D, the solvers' global error (about 100 rtol = 1e-9 relative,
# measured) times ||Z*||_F, propagated through the square (``dz`` of ``_compare``; at
# m = m* the risk decays to ~1e-14 and the two methods then differ by ~1e-17, a
# machine-dependent amount no fixed relative floor bounds).  The overlap flow forms it as
# ||Q||^2 - 2||M||^2 + ||P||^2 from Q, M with ~1e-11 solver error: error up to
# ~7e-13 / m*^2 (measured).  Risks are compared relative to risk + floor, floor =
# error / REL.
def _floor(kind, ms):
    return 1e-10 if kind == "weight" else 1e-4 / ms**2


def _dz(Ws):
    """Global state error of the weight-flow comparison: 100 rtol ||Z*||_F, rtol 1e-11."""
    return 1e-9 * np.linalg.norm(Ws.T @ Ws)


def _floor_general(Ws):
    """Floor for general teachers: 100 eps ||P||_F^2 (round-off of overlap-formed risks)."""
    P = Ws.T @ Ws
    return 100 * EPS * np.sum(P * P) / REL


CASES = [  # (d, m, m*)
    (20, 10, 5),    # m > m*
    (20, 10, 10),   # m = m*
    (20, 5, 10),    # m < m*
    (20, 15, 10),   # m + m* > d
    (20, 1, 10),    # m = 1
    (20, 20, 10),   # m = d
    (20, 10, 20),   # m* = d
    (20, 1, 1),     # m = m* = 1
]


@pytest.mark.parametrize("d,m,ms", CASES)
def test_orthonormal_matches_weight_and_overlap_flow(d, m, ms):
    W0 = orthonormal(d, m, seed=1)
    Ws = orthonormal(d, ms, seed=2)
    t = np.concatenate([[0.0, 0.5, 2.0], np.linspace(d / 2, 10 * d, 20)])
    ex = exact_flow(W0, Ws, t, rtol=1e-11)
    assert ex["path"] == "orthonormal" and ex["lam"].shape == (m,)
    np.testing.assert_array_equal(ex["t"], t)
    _compare(ex, weight_flow(W0, Ws, t), f"weight flow d={d} m={m} m*={ms}",
             _floor("weight", ms), _dz(Ws))
    _compare(ex, overlap_flow(W0, Ws, t), f"overlap flow d={d} m={m} m*={ms}",
             _floor("overlap", ms))


@pytest.mark.parametrize("d,m,ms", [(100, 50, 25), (100, 25, 50)])
def test_d100_matches_overlap_flow(d, m, ms):
    W0 = orthonormal(d, m, seed=3)
    Ws = orthonormal(d, ms, seed=4)
    t = np.linspace(0.0, 10 * d, 11)
    _compare(exact_flow(W0, Ws, t, rtol=1e-11), overlap_flow(W0, Ws, t),
             f"d={d} m={m} m*={ms}", _floor("overlap", ms))


@pytest.mark.slow
@pytest.mark.parametrize("d,m,ms", [(100, 50, 50), (100, 60, 50), (100, 1, 100), (80, 40, 20)])
def test_d100_matches_weight_flow_slow(d, m, ms):
    W0 = orthonormal(d, m, seed=5)
    Ws = orthonormal(d, ms, seed=6)
    t = np.linspace(0.0, 10 * d, 11)
    _compare(exact_flow(W0, Ws, t, rtol=1e-11), weight_flow(W0, Ws, t),
             f"d={d} m={m} m*={ms}", _floor("weight", ms), _dz(Ws))


# ------------------------------------------------ tiny and round-off eigenvalues of Y_d


def _basis(seed=0):
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((8, 8)))[0]


def _rotated(th, seed=0):
    """d = 8, m = 2, m* = 3 from a random orthogonal U (the reproducer of the issue):
    W* = U[:, :3] / sqrt(3), W0 = [U0, cos(th) U5 + sin(th) U1] / sqrt(2), lambda =
    (sin(th)^2, 1) up to the ~1e-16 non-orthogonality of U."""
    U = _basis(seed)
    W0 = np.stack([U[:, 0], np.cos(th) * U[:, 5] + np.sin(th) * U[:, 1]], 1) / np.sqrt(2)
    return W0, U[:, :3] / np.sqrt(3)


def _signed_permutation(th, seed=0):
    """The same geometry with U a random signed permutation: every product is exact, so
    the overlaps ODE and the reduction see the same lambda = sin(th)^2 (also th = 0)."""
    rng = np.random.default_rng(seed)
    U = np.eye(8)[:, rng.permutation(8)] * rng.choice([-1.0, 1.0], 8)
    W0 = np.stack([U[:, 0], np.cos(th) * U[:, 5] + np.sin(th) * U[:, 1]], 1) / np.sqrt(2)
    return W0, U[:, :3] / np.sqrt(3)


def test_roundoff_eigenvalue_reproducer():
    """Issue reproducer: lambda = round-off (~1e-33) instead of 0 gave risk 0.1875 and
    chi 0.577 at t = 0 (truth 0.25, 0.408).  Until the (round-off driven) escape the
    reduction and the overlap ODE agree."""
    W0, Ws = _rotated(0.0)
    t = np.array([0.0, 1.0, 5.0, 10.0, 20.0])
    ex = exact_flow(W0, Ws, t, rtol=1e-11)
    assert ex["risk"][0] == pytest.approx(0.25, rel=1e-14)
    assert ex["chi"][0] == pytest.approx(1 / np.sqrt(6), rel=1e-14)
    _compare(ex, overlap_flow(W0, Ws, t), "round-off lambda", _floor("overlap", 3))


@pytest.mark.parametrize("th", [0.0, 1e-16, 1e-12, 1e-8, 1e-4, 1e-1])
def test_tiny_eigenvalue_sweep_matches_overlaps(th):
    """Every lambda in [0, 1] through one formula: a tiny lambda is a slow escape from the
    saddle (at t ~ (m*/4) log(1/lambda), inside the horizon 30 d for th >= 1e-16), lambda = 0
    never escapes.  Reference: overlap ODE with atol 1e-30 (tracks the ~1e-17 overlaps)."""
    W0, Ws = _signed_permutation(th)
    t = np.linspace(0.0, 240.0, 41)
    ex = exact_flow(W0, Ws, t, rtol=1e-12)
    assert ex["lam"][0] == pytest.approx(np.sin(th) ** 2, rel=1e-14, abs=0)
    assert ex["lam"][1] == 1.0
    _compare(ex, overlap_flow(W0, Ws, t, atol=1e-30), f"th={th}", _floor("overlap", 3))
    escaped = ex["chi"][-1] > 0.7  # chi(inf) = sqrt(2/3) = 0.816 after the escape
    assert escaped == (th > 0), ex["chi"][-1]


@pytest.mark.parametrize("th", [1e-4, 1e-6])
def test_issue_reproducer_tiny_lambda_random_rotation(th):
    """The issue's reproducer (random U): th = 1e-6 (lambda = 1e-12) took 51 s to t = 1 and
    did not reach t = 5.  Now to t = 30 d, through the escape, as the overlap ODE."""
    W0, Ws = _rotated(th)
    t = np.linspace(0.0, 240.0, 25)
    ex = exact_flow(W0, Ws, t, rtol=1e-12)
    _compare(ex, overlap_flow(W0, Ws, t, atol=1e-30), f"random U th={th}",
             _floor("overlap", 3))


@pytest.mark.parametrize("th", [1e-4, 1e-6, 1e-8])
def test_small_lambda_and_one_minus_lambda_to_relative_accuracy(th):
    """lambda = sin^2 and 1 - lambda = sin^2 of a random rotation, each to ~eps / sin."""
    W0, Ws = _rotated(th)
    ex = exact_flow(W0, Ws, [0.0])
    tol = 1e3 * EPS / th
    assert ex["lam"][0] == pytest.approx(np.sin(th) ** 2, rel=tol)
    U = _basis()
    W0 = np.stack([np.cos(th) * U[:, 1] + np.sin(th) * U[:, 5], U[:, 6]], 1) / np.sqrt(2)
    ex = exact_flow(W0, Ws, [0.0])
    assert ex["one_minus_lam"][-1] == pytest.approx(np.sin(th) ** 2, rel=tol)


def test_orthogonal_start_stays_on_the_saddle_to_30d():
    """W0 orthogonal to W* (all lambda = 0) is a saddle the flow never leaves (exact
    products: signed permutation).  Reaches t = 30 d like any other start."""
    rng = np.random.default_rng(3)
    U = np.eye(12)[:, rng.permutation(12)]
    W0, Ws = U[:, :4] / 2.0, U[:, 4:7] / np.sqrt(3)
    t = np.linspace(0.0, 30 * 12, 31)
    ex = exact_flow(W0, Ws, t, rtol=1e-11)
    assert np.all(ex["lam"] == 0.0) and np.all(ex["chi"] == 0.0)
    _compare(ex, overlap_flow(W0, Ws, t, atol=1e-30), "orthogonal start", _floor("overlap", 3))


@pytest.mark.slow
def test_late_risk_at_m_equal_m_star_matches_mpmath():
    """At m = m* the risk decays like e^{-4 t / m*}, below every double-precision reference
    floor; the (u, eta) state keeps it to ~1e-12 relative down to 1e-17 (mpmath reduction
    at 30 digits, which re-orthonormalises the input at that precision)."""
    from symflow.numerics.precision import exact_mp

    W0, Ws = orthonormal(6, 2, seed=0), orthonormal(6, 2, seed=1)
    t = [10.0, 20.0]
    mp = exact_mp(W0, Ws, t, dps=30)
    ex = exact_flow(W0, Ws, t, rtol=1e-12)
    assert ex["risk"][-1] < 1e-16
    np.testing.assert_allclose(ex["risk"], np.array(mp["risk"], dtype=float), rtol=1e-10)
    np.testing.assert_allclose(ex["phi"], np.array(mp["phi"], dtype=float), atol=1e-12)


# -------------------------------------------------------------- long horizons (item 8)


@pytest.mark.parametrize("d,m,ms", [(40, 20, 10), (40, 20, 20), (40, 10, 20), (40, 30, 20)])
def test_long_horizon_recovery(d, m, ms):
    W0 = orthonormal(d, m, seed=7)
    Ws = orthonormal(d, ms, seed=8)
    t = np.array([10.0 * d, 100.0 * d, 1000.0 * d, 1e6 * d])
    ex = exact_flow(W0, Ws, t)
    for key in ("risk", "phi", "chi", "dist", "log_F", "log_G"):
        assert np.all(np.isfinite(ex[key])), key
    assert np.all(ex["risk"] >= 0)
    chi_inf = min(1.0, np.sqrt(m / ms))
    assert abs(ex["chi"][-1] - chi_inf) < 1e-6
    if m < ms:  # rank-m critical point: tau -> 2 (m/m* - 1) / (2 + m), MATH.md section 6
        slope = (ex["phi"][-1] - ex["phi"][-2]) / (t[-1] - t[-2])
        assert slope == pytest.approx(2 * (m / ms - 1) / (2 + m), rel=1e-6)
    else:
        assert ex["risk"][-1] < 1e-8


@pytest.mark.parametrize("m,ms", [(6, 3), (3, 6), (4, 4)])
def test_general_long_horizon(m, ms):
    """Gaussian start and teacher to t = 1e6 d: finite, and the known end points (MATH.md
    section 7): recovery for m >= m*; for m < m* the rank-m critical point on the top-m
    eigenvectors of Z*, where stationarity 2 (c_k - mu_k) + tau = 0 gives
    c_k = mu_k - tau / 2, tau = -sum_{k > m} mu_k / (1 + m / 2) (= the slope of phi)."""
    d = 12
    W0, Ws = gaussian(d, m, seed=11), gaussian(d, ms, seed=12)
    t = np.array([10.0 * d, 1e3 * d, 1e6 * d])
    ex = exact_flow(W0, Ws, t)
    for key in ("risk", "phi", "chi", "dist"):
        assert np.all(np.isfinite(ex[key])), key
    mu = np.linalg.eigvalsh(Ws.T @ Ws)[::-1]
    if m >= ms:
        assert ex["risk"][-1] < 1e-10 and abs(ex["chi"][-1] - 1) < 1e-10
    else:
        tau = -np.sum(mu[m:]) / (1 + m / 2)
        c = mu[:m] - tau / 2
        chi_inf = np.sum(mu[:m] * c) / (np.linalg.norm(c) * np.linalg.norm(mu))
        assert abs(ex["chi"][-1] - chi_inf) < 1e-8
        slope = (ex["phi"][-1] - ex["phi"][-2]) / (t[-1] - t[-2])
        assert slope == pytest.approx(tau, rel=1e-8)


def test_t_start_positive_matches_t_start_zero():
    W0, Ws = orthonormal(30, 10, seed=9), orthonormal(30, 12, seed=10)
    t = np.linspace(0.0, 50.0, 6)
    a, b = exact_flow(W0, Ws, t), exact_flow(W0, Ws, t[1:])
    for key in ("phi", "risk", "chi"):
        np.testing.assert_allclose(b[key], a[key][1:], rtol=1e-8, atol=1e-12)


def test_structural_eigenvalues_are_exact():
    d, m, ms = 20, 15, 10  # 5 structural zeros, 5 structural ones
    ex = exact_flow(orthonormal(d, m, seed=11), orthonormal(d, ms, seed=12), [0.0, 1.0])
    assert np.all(ex["lam"][:5] == 0.0) and np.all(ex["lam"][-5:] == 1.0)
    assert np.all(ex["one_minus_lam"][-5:] == 0.0)
    assert np.all((ex["lam"][5:10] > 0) & (ex["lam"][5:10] < 1))
    np.testing.assert_allclose(ex["lam"] + ex["one_minus_lam"], 1.0, rtol=1e-15)


# ----------------------------------------------------------------- input precision (item 3)


def test_float32_orthonormal_input_is_polished_and_accepted():
    """An orthonormal matrix rounded to float32 (deviation ~4e-8) takes the orthonormal path,
    polished to the nearest orthonormal matrix; the flow differs from the float32 data's
    own flow (overlap ODE) by O(deviation)."""
    W0, Ws = orthonormal(20, 10, seed=1), orthonormal(20, 5, seed=2)
    W0f, Wsf = W0.astype(np.float32), Ws.astype(np.float32)
    t = np.linspace(0.0, 200.0, 11)
    tr = simulate(W0f, Wsf, t, method="exact")
    assert tr.meta["exact_path"] == "orthonormal"
    assert tr.meta["reorthonormalised"] == ["W0", "W_star"]
    dev = max(tr.meta["orthonormality"].values())
    assert 1e-9 < dev < 1e-6
    ref = overlap_flow(W0f.astype(float), Wsf.astype(float), t)
    np.testing.assert_allclose(tr.phi, ref[0], atol=100 * dev)
    np.testing.assert_allclose(tr.chi, ref[2], rtol=100 * dev)


def test_not_orthonormal_float64_takes_general_path():
    """Beyond the float64 tolerance (1e-10) the input is not orthonormal: general path, no
    polishing, still the exact flow of the given matrices."""
    W0, Ws = orthonormal(12, 4, seed=1), orthonormal(12, 3, seed=2)
    W0 = W0 + 1e-8 * np.random.default_rng(0).standard_normal(W0.shape)
    t = np.linspace(0.0, 60.0, 7)
    ex = exact_flow(W0, Ws, t, rtol=1e-12)
    assert ex["path"] == "general" and ex["reorthonormalised"] == []
    _compare(ex, weight_flow(W0, Ws, t), "perturbed orthonormal", _floor_general(Ws))


def test_orthonormal_tolerance_is_dtype_aware():
    assert E.orthonormal_tolerance(np.float64) == 1e-10
    assert 5e-7 < E.orthonormal_tolerance(np.float32) < 2e-6
    msg = E.not_orthonormal_message("W0", 3e-3, 1e-6, np.float32)
    for part in ("max |k W^T W - I| = 0.003", "tolerance 1e-06", "float32", 'method="overlaps"'):
        assert part in msg


# ------------------------------------------------------------------ Jacobians (item 4)


def _fd_jac(f, x, y, h=1e-6):
    return np.column_stack([(f(x, y + h * e) - f(x, y - h * e)) / (2 * h)
                            for e in np.eye(y.size)])


@pytest.mark.parametrize("x", [0.3, 40.0, 5e3])
def test_orthonormal_jacobian_matches_finite_differences(x):
    specs = [E._principal_angles(orthonormal(d, m, seed=d), orthonormal(d, ms, seed=d + 1))
             + (m, ms) for d, m, ms in ((20, 10, 5), (30, 6, 12), (16, 8, 8))]
    sysm = E._OrthoBatch(specs, [1.0, 2.0, 0.5])
    y = np.array([0.4, -0.3, 1.1, 0.2, 2.5, 1e-3])
    J = sysm.jac_dense(x, y)
    assert np.all(np.isfinite(J))
    np.testing.assert_allclose(J, _fd_jac(sysm.rhs, x, y), rtol=1e-6, atol=1e-9 * np.abs(J).max())
    band = sysm.jac_banded(x, y)  # LSODA's packed form of the same matrix
    for k, off in ((0, 1), (1, 0), (2, -1)):
        np.testing.assert_array_equal(band[k, max(off, 0): 6 + min(off, 0)], np.diag(J, off))
    np.testing.assert_array_equal(sysm.jac_sparse(x, y).toarray(), J)


@pytest.mark.parametrize("shape", [(12, 6, 3), (12, 3, 6), (12, 9, 6)])
def test_general_jacobian_matches_finite_differences(shape):
    d, m, ms = shape
    gs = E._General(gaussian(d, m, seed=1), gaussian(d, ms, seed=2))
    s = np.random.default_rng(0).uniform(0.0, 1.5, gs.r + 1)
    for t in (0.5, 30.0):
        J = gs.jac(t, s)
        assert np.all(np.isfinite(J))
        np.testing.assert_allclose(J, _fd_jac(gs.rhs, t, s), rtol=1e-5,
                                   atol=1e-8 * np.abs(J).max())


# -------------------------------------------------------------------- batching (item 5)


def test_batch_matches_overlaps_with_unequal_spectra():
    """Four instances of different d, m, m* (padded spectra) on one gamma grid, solved as
    one system; each against its own overlap ODE."""
    shapes = [(12, 6, 3), (16, 4, 8), (20, 10, 10), (10, 9, 5)]
    W0s = [orthonormal(d, m, seed=i) for i, (d, m, _) in enumerate(shapes)]
    Wss = [orthonormal(d, ms, seed=10 + i) for i, (d, _, ms) in enumerate(shapes)]
    gamma = np.linspace(0.0, 10.0, 9)
    trs = simulate_batch(W0s, Wss, gamma=gamma, rtol=1e-11, seeds=[0, 1, 2, 3])
    for tr, W0, Ws, (d, m, ms) in zip(trs, W0s, Wss, shapes):
        assert tr.meta["batch"] == 4 and tr.meta["solver"] == "BDF" and tr.meta["nfev"] > 0
        assert (tr.meta["d"], tr.meta["m"], tr.meta["m_star"]) == (d, m, ms)
        np.testing.assert_allclose(tr.gamma, gamma, rtol=1e-15)
        _compare(dict(phi=tr.phi, risk=tr.risk, chi=tr.chi), overlap_flow(W0, Ws, d * gamma),
                 f"batch d={d} m={m} m*={ms}", _floor("overlap", ms))


def test_batch_common_teacher_3d_starts_and_lsoda():
    """(n, d, m) starts with one teacher, t grid, LSODA (max-norm error test)."""
    W0s = np.stack([orthonormal(14, 5, seed=s) for s in range(3)])
    Ws = orthonormal(14, 7, seed=9)
    t = np.linspace(0.0, 100.0, 6)
    res = exact_flow_batch(W0s, Ws, t, rtol=1e-11, solver="LSODA")
    for r, W0 in zip(res, W0s):
        assert r["solver"] == "LSODA"
        _compare(r, overlap_flow(W0, Ws, t), "3-D batch", _floor("overlap", 7))


def test_batch_mixes_general_instances():
    W0s = [orthonormal(10, 4, seed=0), gaussian(10, 4, seed=1)]
    Ws = orthonormal(10, 3, seed=2)
    t = np.linspace(0.0, 50.0, 6)
    res = exact_flow_batch(W0s, Ws, t, rtol=1e-12)
    assert [r["path"] for r in res] == ["orthonormal", "general"]
    for r, W0 in zip(res, W0s):
        _compare(r, weight_flow(W0, Ws, t), r["path"], _floor_general(Ws))


@pytest.mark.parametrize("kw,msg", [
    (dict(W0=[]), "at least one"),
    (dict(W_star=[orthonormal(10, 3, seed=1)] * 2), "one per start"),
    (dict(seeds=[1]), "seeds"),
    (dict(method="gd"), "method"),
    (dict(gamma=None), "exactly one"),
])
def test_batch_bad_input(kw, msg):
    args = dict(W0=[orthonormal(10, 4, seed=0)] * 3, W_star=orthonormal(10, 3, seed=1),
                gamma=[0.0, 1.0])
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        simulate_batch(args.pop("W0"), args.pop("W_star"), **args)


# ------------------------------------------------------ general start and teacher (item 6)

GENERAL = [  # (d, m, m*)
    (20, 10, 5),    # m > m*
    (20, 10, 10),   # m = m*
    (20, 5, 10),    # m < m*
    (20, 15, 10),   # m + m* > d
    (20, 1, 10),    # m = 1
    (20, 20, 10),   # m = d
]


@pytest.mark.parametrize("d,m,ms", GENERAL)
def test_general_matches_weight_flow(d, m, ms):
    W0, Ws = gaussian(d, m, seed=1), gaussian(d, ms, seed=2)
    t = np.concatenate([[0.0, 0.5, 2.0], np.linspace(d / 2, 10 * d, 12)])
    ex = exact_flow(W0, Ws, t, rtol=1e-12)
    assert ex["path"] == "general" and ex["log_F"].shape == (t.size, ms + 1)
    _compare(ex, weight_flow(W0, Ws, t), f"general d={d} m={m} m*={ms}", _floor_general(Ws))


@pytest.mark.slow
@pytest.mark.parametrize("W0,Ws", [
    (gaussian(20, 25, seed=1), gaussian(20, 10, seed=2)),           # m > d
    (orthonormal(20, 8, seed=1), gaussian(20, 6, seed=2)),           # orthonormal start
    (gaussian(20, 8, seed=1), orthonormal(20, 6, seed=2)),           # orthonormal teacher
    (degenerate(gaussian(20, 8, seed=1)), gaussian(20, 6, seed=2)),  # zero row in W0
    (gaussian(20, 6, seed=1, normalize=False), gaussian(20, 12, seed=2, normalize=False)),
    (gaussian(40, 30, seed=3), gaussian(40, 20, seed=4)),
])
def test_general_matches_weight_flow_slow(W0, Ws):
    d = W0.shape[0]
    t = np.concatenate([[0.0, 0.5, 2.0], np.linspace(d / 2, 10 * d, 12)])
    _compare(exact_flow(W0, Ws, t, rtol=1e-12), weight_flow(W0, Ws, t), "general slow",
             _floor_general(Ws))


def test_general_per_row_scaling_branch(monkeypatch):
    """Beyond a spread of 1400 in log(1 + 4 F) (very long horizons) the rows get their own
    scales; force that branch from t = 0 and check it against the weight flow."""
    monkeypatch.setattr(E, "_SPREAD_MAX", -1.0)
    W0, Ws = gaussian(12, 6, seed=3), gaussian(12, 4, seed=4)
    t = np.linspace(0.0, 120.0, 9)
    _compare(exact_flow(W0, Ws, t, rtol=1e-12), weight_flow(W0, Ws, t), "per-row scaling",
             _floor_general(Ws))


def test_zero_start_and_zero_teacher():
    """Z = 0 is a fixed point (chi := 0); a zero teacher makes Z decay."""
    W0, Ws = gaussian(8, 3, seed=0), gaussian(8, 2, seed=1)
    t = np.linspace(0.0, 20.0, 5)
    ex = exact_flow(np.zeros((8, 3)), Ws, t)
    np.testing.assert_allclose(ex["phi"], -t * np.sum(Ws * Ws), rtol=1e-12)
    assert np.all(ex["chi"] == 0.0)
    ex = exact_flow(W0, np.zeros((8, 2)), t, rtol=1e-12)
    ref = overlap_flow(W0, np.zeros((8, 2)), t)
    np.testing.assert_allclose(ex["phi"], ref[0], rtol=1e-9)
    np.testing.assert_allclose(ex["risk"], ref[1], rtol=1e-8)


# ------------------------------------------------------------------------- input errors


@pytest.mark.parametrize("t", [[-1.0, 1.0], [2.0, 1.0], [1.0, 1.0], [np.nan], []])
def test_bad_times_raise(t):
    with pytest.raises(ValueError, match="t"):
        exact_flow(orthonormal(10, 3, seed=0), orthonormal(10, 2, seed=1), t)


def test_shape_mismatch_and_bad_solver_raise():
    with pytest.raises(ValueError, match="W_star"):
        exact_flow(orthonormal(10, 3, seed=0), orthonormal(11, 2, seed=1), [1.0])
    with pytest.raises(ValueError, match="solver"):
        exact_flow(orthonormal(10, 3, seed=0), orthonormal(10, 2, seed=1), [1.0], solver="x")
    with pytest.raises(TypeError, match="W0"):
        exact_flow("abc", orthonormal(10, 2, seed=1), [1.0])
