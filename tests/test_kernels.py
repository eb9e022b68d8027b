"""Generated numpy kernels against Monte Carlo, finite differences and closed forms."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symflow
from symflow.numerics.kernels import overlap_flow, overlaps, risk, risk_from_overlaps, risk_grad
from symflow.numerics.montecarlo import monte_carlo_risk, monte_carlo_risk_grad


def _instance(d, m, ms, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((d, m)) / np.sqrt(d * m),
            scale * rng.standard_normal((d, ms)) / np.sqrt(d * ms))


CASES = [(1, 1, 1), (4, 1, 1), (1, 3, 2), (3, 5, 2), (6, 2, 4), (8, 4, 4)]


@pytest.mark.parametrize("d, m, ms", CASES)
def test_risk_vs_monte_carlo(d, m, ms):
    W, Ws = _instance(d, m, ms, seed=d * 100 + m * 10 + ms, scale=2.0)
    est, se = monte_carlo_risk(W, Ws, 200_000, seed=1)
    assert abs(est - risk(W, Ws)) < 5 * se


@pytest.mark.parametrize("d, m, ms", CASES)
def test_grad_vs_monte_carlo(d, m, ms):
    W, Ws = _instance(d, m, ms, seed=7 + d + m + ms, scale=2.0)
    est, se = monte_carlo_risk_grad(W, Ws, 100_000, seed=2)
    z = np.abs(est - risk_grad(W, Ws)) / se
    # several entries: allow 5 sigma after a Bonferroni-sized margin
    assert np.max(z) < 5.0 + np.log(W.size)


@pytest.mark.parametrize("d, m, ms", CASES)
def test_grad_vs_finite_differences(d, m, ms):
    W, Ws = _instance(d, m, ms, seed=11, scale=2.0)
    g = risk_grad(W, Ws)
    h = 1e-5
    fd = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        fd[idx] = (risk(Wp, Ws) - risk(Wm, Ws)) / (2 * h)
    assert np.linalg.norm(fd - g) <= 1e-6 * max(np.linalg.norm(g), 1e-3)


def test_risk_matches_weight_space_closed_form():
    """Generated overlap kernel (derived by the Isserlis engine) vs the weight-space
    closed form of MATH.md section 2, typed here; the overlap path has an absolute
    round-off floor of a few eps * (||Q||_F + ||P||_F)^2."""
    W, Ws = _instance(7, 3, 5, seed=5)
    A = W @ W.T - Ws @ Ws.T
    ref = 0.5 * np.sum(A * A) + 0.25 * np.trace(A) ** 2
    Q, M, P = W.T @ W, W.T @ Ws, Ws.T @ Ws
    floor = 16 * np.finfo(float).eps * (np.linalg.norm(Q) + np.linalg.norm(P)) ** 2
    assert abs(risk_from_overlaps(Q, M, P) - ref) <= 1e-14 * ref + floor
    assert np.isclose(risk(W, Ws), ref, rtol=1e-13)
    g = (2 * A + np.trace(A) * np.eye(7)) @ W
    assert np.allclose(risk_grad(W, Ws), g, rtol=1e-12, atol=1e-15)


def test_batched_risk_and_flow():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 3, 6, 4))
    Ws = rng.standard_normal((6, 2))
    Q = np.swapaxes(W, -1, -2) @ W
    M = np.swapaxes(W, -1, -2) @ Ws
    P = Ws.T @ Ws
    out = risk_from_overlaps(Q, M, P)
    assert out.shape == (5, 3)
    dQ, dM = overlap_flow(Q, M, P)
    assert dQ.shape == (5, 3, 4, 4) and dM.shape == (5, 3, 4, 2)
    for i, j in [(0, 0), (4, 2)]:
        assert np.isclose(out[i, j], risk(W[i, j], Ws), rtol=1e-13)
        tau = np.trace(Q[i, j]) - np.trace(P)
        ref = -2 * (2 * (Q[i, j] @ Q[i, j] - M[i, j] @ M[i, j].T) + tau * Q[i, j])
        assert np.allclose(dQ[i, j], ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 10**6))
def test_properties(d, m, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d, m))
    Ws = rng.standard_normal((d, m)) * 0.5
    assert risk(W, Ws) >= 0
    O, _ = np.linalg.qr(rng.standard_normal((m, m)))
    assert np.isclose(risk(W @ O, Ws), risk(W, Ws), rtol=1e-10, atol=1e-12)
    assert abs(risk(Ws @ O, Ws)) < 1e-12 * (1 + np.sum(Ws**2) ** 2)


def test_overlaps_shapes():
    W, Ws = _instance(5, 3, 2, seed=0)
    Q, M, P = overlaps(W, Ws)
    assert Q.shape == (3, 3) and M.shape == (3, 2) and P.shape == (2, 2)


@pytest.mark.parametrize("W, Ws, msg", [
    (np.ones((3, 2)), np.ones((4, 2)), "same number of rows"),
    (np.ones(3), np.ones((3, 2)), "W must have shape"),
    (np.ones((3, 0)), np.ones((3, 2)), "nonzero"),
    (np.full((3, 2), np.nan), np.ones((3, 2)), "finite"),
    (np.ones((3, 2)), np.ones((2, 3, 2)), "W_star must have shape"),
])
def test_bad_inputs(W, Ws, msg):
    with pytest.raises(ValueError, match=msg):
        risk(W, Ws)
    with pytest.raises(ValueError, match=msg):
        risk_grad(W, Ws)


def test_bad_samples():
    W, Ws = _instance(3, 2, 2, seed=0)
    with pytest.raises(ValueError, match="n_samples"):
        monte_carlo_risk(W, Ws, 1)
    with pytest.raises(TypeError, match="n_samples"):
        monte_carlo_risk_grad(W, Ws, 2.5)


def test_bad_overlap_shapes():
    with pytest.raises(ValueError, match="Q must have shape"):
        risk_from_overlaps(np.eye(3), np.ones((2, 1)), np.eye(1))
    with pytest.raises(ValueError, match="P must have shape"):
        risk_from_overlaps(np.eye(2), np.ones((2, 1)), np.eye(2))


def test_monte_carlo_seeded_and_chunked(monkeypatch):
    import symflow.numerics.montecarlo as mc

    W, Ws = _instance(4, 2, 3, seed=0)
    a = monte_carlo_risk(W, Ws, 5000, seed=4)
    assert a == monte_carlo_risk(W, Ws, 5000, seed=4)
    monkeypatch.setattr(mc, "_MAX_BYTES", 8 * 64 * 10)  # force many small chunks
    b = monte_carlo_risk(W, Ws, 5000, seed=5)
    assert abs(b[0] - risk(W, Ws)) < 5 * b[1]


def test_import_does_not_load_sympy():
    import subprocess
    import sys

    code = ("import sys, symflow, symflow.numerics.kernels, symflow.numerics.montecarlo; "
            "symflow.risk; print('sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert callable(symflow.expect)


def test_complex_string_and_overflowing_inputs_rejected():
    """Regressions: complex entries were silently truncated, huge W gave inf/NaN."""
    W, Ws = _instance(3, 2, 1, seed=0)
    with pytest.raises(TypeError, match="W must be a real"):
        risk(W * (1 + 1j), Ws)
    with pytest.raises(TypeError, match="W_star"):
        risk(W, [["1"], ["2"], ["3"]])
    with pytest.raises(ValueError, match="too large"):
        risk_grad(W * 1e200, Ws)
    with pytest.raises(ValueError, match="too large"):
        monte_carlo_risk(W * 1e200, Ws, 10)


@pytest.mark.parametrize("d, m", [(20, 5), (8, 6), (30, 1)])
def test_risk_from_weights_has_no_cancellation_floor(d, m):
    """Regression: risk(W, W*) with W* = 1e3 N(0,1), W = W* + 1e-6 noise gave 0.0078 for a
    true 0.00015 (formed from overlaps, floor ~1e-16 ||P||^2 ~ 1e-2).  Reference: with
    D = W - W* (exact in floating point, Sterbenz), Z - Z* = D W^T + W* D^T has entries
    accurate to eps |W| |D|; the package's error is bounded by ~(m + m*) eps max|W|^2 per
    entry of Z - Z*, i.e. relative ~1e-6 here."""
    rng = np.random.default_rng(d)
    Ws = 1e3 * rng.standard_normal((d, m))
    W = Ws + 1e-6 * rng.standard_normal((d, m))
    D = W - Ws
    A = D @ W.T + Ws @ D.T
    ref = 0.25 * (np.trace(A) ** 2 + 2 * np.sum(A * A))
    bound = 2 * m * np.finfo(float).eps * np.max(np.abs(W)) ** 2 * d
    got = risk(W, Ws)
    assert abs(got - ref) <= 4 * bound * np.sqrt(ref) + 1e-12 * ref
    from symflow.numerics.kernels import weights_risk_dist

    _, dist = weights_risk_dist(W, Ws)
    assert abs(dist - np.linalg.norm(A)) <= 4 * bound


def test_adversarial_inputs_found_in_issue_17():
    """Regressions: each of these once returned a silent wrong value or an internal error."""
    import sympy as sp

    from symflow import expect
    from symflow.numerics import init
    from symflow.numerics.wachter import wachter_density

    rng = np.random.default_rng(3)
    W, Ws = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    # Monte Carlo at scale 1e40: a finite standard error, scaled like the risk (c^4)
    est, se = monte_carlo_risk(W * 1e40, Ws * 1e40, 2000, seed=1)
    est1, se1 = monte_carlo_risk(W, Ws, 2000, seed=1)
    assert np.isfinite(se) and np.isclose(est, est1 * 1e160) and np.isclose(se, se1 * 1e160)
    with pytest.raises(ValueError, match="too large"):
        monte_carlo_risk(W * 1e100, Ws, 100, seed=1)
    # E[x^2000] = 1999!! C^1000 (no RecursionError)
    x = sp.Symbol("x")
    assert expect(x**2000, [x], sp.Matrix([[2]])) == sp.factorial2(1999) * 2**1000
    with pytest.raises(ValueError, match="finite"):
        wachter_density(np.nan, 0.5, 0.25)
    Q = np.array([[1.0, 0.5], [0.1, 1.0]])
    with pytest.raises(ValueError, match="symmetric"):
        risk_from_overlaps(Q, np.zeros((2, 1)), np.eye(1))
    # one error scheme for seeds: TypeError for a non-integer, ValueError for a negative
    for f in (lambda s: init.gaussian(3, 2, seed=s),
              lambda s: monte_carlo_risk(W, Ws, 10, seed=s)):
        with pytest.raises(TypeError, match="seed"):
            f(1.5)
        with pytest.raises(ValueError, match="seed"):
            f(-1)
