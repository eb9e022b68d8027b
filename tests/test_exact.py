"""exact_flow (MATH.md section 5) against two independent paths.

References, both integrated with scipy's DOP853 at rtol 1e-11:
* the weight-space gradient flow dW/dt = -[2 (Z - Z*) + tau I] W (MATH.md section 3),
* the overlap ODEs for (Q, M) (MATH.md section 4),
each augmented with phi' = tau.  The reference risk is formed from Z - Z* and has an
absolute error floor (see ``_floor``), so risks are compared relative to risk + floor;
at m = m* the risk decays like e^{-4 t / m*} below that floor.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from symflow.numerics.exact import exact_flow
from symflow.numerics.init import degenerate, gaussian, orthonormal

REL = 1e-8


def _stats_from(Q, M, P, phi):
    tau = np.trace(Q) - np.trace(P)
    mm = np.sum(M * M)
    risk = 0.5 * (np.sum(Q * Q) - 2 * mm + np.sum(P * P)) + 0.25 * tau**2
    chi = mm / (np.linalg.norm(Q) * np.linalg.norm(P))
    return phi, risk, chi


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


def overlap_flow(W0, Ws, t):
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
    sol = solve_ivp(rhs, (0.0, t[-1]), y0, method="DOP853", t_eval=t, rtol=1e-11, atol=1e-14)
    assert sol.success
    out = [_stats_from(y[: m * m].reshape(m, m), y[m * m: -1].reshape(m, ms), P, y[-1])
           for y in sol.y.T]
    return [np.array(v) for v in zip(*out)]


def _compare(ex, ref, what, floor):
    phi, risk, chi = ref
    scale_phi = 1.0 + np.abs(phi)
    np.testing.assert_array_less(np.abs(ex["phi"] - phi) / scale_phi, REL, err_msg=f"phi {what}")
    np.testing.assert_array_less(np.abs(ex["chi"] - chi) / chi, REL, err_msg=f"chi {what}")
    rel = np.abs(ex["risk"] - risk) / (risk + floor)
    np.testing.assert_array_less(rel, REL, err_msg=f"risk {what}")


# Absolute accuracy of the references' risk (measured): the weight flow forms it from
# Z - Z*, error up to ~3e-20 at m = m* once the risk is ~1e-12; the overlap flow forms it
# as ||Q||^2 - 2||M||^2 + ||P||^2 from Q, M with ~1e-11 solver error, error up to
# ~7e-13 / m*^2.  Risks are compared relative to risk + floor, floor = error / REL.
def _floor(kind, ms):
    return 1e-10 if kind == "weight" else 1e-4 / ms**2

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
def test_matches_weight_and_overlap_flow(d, m, ms):
    W0 = orthonormal(d, m, seed=1)
    Ws = orthonormal(d, ms, seed=2)
    t = np.concatenate([[0.0, 0.5, 2.0], np.linspace(d / 2, 10 * d, 20)])
    ex = exact_flow(W0, Ws, t)
    for name, e in (("t", t), ("lam", None)):
        if e is not None:
            np.testing.assert_array_equal(ex[name], e)
    assert ex["lam"].shape == (m,)
    _compare(ex, weight_flow(W0, Ws, t), f"weight flow d={d} m={m} m*={ms}",
             _floor("weight", ms))
    _compare(ex, overlap_flow(W0, Ws, t), f"overlap flow d={d} m={m} m*={ms}",
             _floor("overlap", ms))


@pytest.mark.parametrize("d,m,ms", [(100, 50, 25), (100, 25, 50)])
def test_d100_matches_overlap_flow(d, m, ms):
    W0 = orthonormal(d, m, seed=3)
    Ws = orthonormal(d, ms, seed=4)
    t = np.linspace(0.0, 10 * d, 11)
    _compare(exact_flow(W0, Ws, t), overlap_flow(W0, Ws, t), f"d={d} m={m} m*={ms}",
             _floor("overlap", ms))


@pytest.mark.slow
@pytest.mark.parametrize("d,m,ms", [(100, 50, 50), (100, 60, 50), (100, 1, 100), (80, 40, 20)])
def test_d100_matches_weight_flow_slow(d, m, ms):
    W0 = orthonormal(d, m, seed=5)
    Ws = orthonormal(d, ms, seed=6)
    t = np.linspace(0.0, 10 * d, 11)
    _compare(exact_flow(W0, Ws, t), weight_flow(W0, Ws, t), f"d={d} m={m} m*={ms}",
             _floor("weight", ms))


@pytest.mark.parametrize("d,m,ms", [(40, 20, 10), (40, 20, 20), (40, 10, 20), (40, 30, 20)])
def test_long_horizon_recovery(d, m, ms):
    W0 = orthonormal(d, m, seed=7)
    Ws = orthonormal(d, ms, seed=8)
    t = np.array([10.0 * d, 100.0 * d, 1000.0 * d])
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


def test_t_start_positive_matches_t_start_zero():
    W0, Ws = orthonormal(30, 10, seed=9), orthonormal(30, 12, seed=10)
    t = np.linspace(0.0, 50.0, 6)
    a, b = exact_flow(W0, Ws, t), exact_flow(W0, Ws, t[1:])
    for key in ("phi", "risk", "chi"):
        np.testing.assert_allclose(b[key], a[key][1:], rtol=1e-8, atol=1e-12)


def test_exact_eigenvalues_are_set():
    d, m, ms = 20, 15, 10  # 5 exact zeros, 5 exact ones
    ex = exact_flow(orthonormal(d, m, seed=11), orthonormal(d, ms, seed=12), [0.0, 1.0])
    assert np.all(ex["lam"][:5] == 0.0) and np.all(ex["lam"][-5:] == 1.0)
    assert np.all((ex["lam"][5:10] > 0) & (ex["lam"][5:10] < 1))


@pytest.mark.parametrize("W0", [gaussian(20, 5, seed=0), degenerate(orthonormal(20, 5, seed=0))])
def test_non_orthonormal_start_raises(W0):
    with pytest.raises(ValueError, match='method="overlaps"'):
        exact_flow(W0, orthonormal(20, 5, seed=1), [1.0])
    with pytest.raises(ValueError, match='method="overlaps"'):
        exact_flow(orthonormal(20, 5, seed=1), W0, [1.0])


@pytest.mark.parametrize("t", [[-1.0, 1.0], [2.0, 1.0], [1.0, 1.0], [np.nan], []])
def test_bad_times_raise(t):
    with pytest.raises(ValueError, match="t"):
        exact_flow(orthonormal(10, 3, seed=0), orthonormal(10, 2, seed=1), t)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="W_star"):
        exact_flow(orthonormal(10, 3, seed=0), orthonormal(11, 2, seed=1), [1.0])
