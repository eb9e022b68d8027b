"""Committee machines in full (issue 15): trained second layer, derived Jacobian, fixed
points and their stability, the symmetric ansatz, the critical learning rate, events and
escape times.  References: finite differences, the weight-space flow, mpmath, the
closed forms of Saad & Solla, direct integration."""

import math

import mpmath
import numpy as np
import pytest

from symflow import Model, simulate
from symflow.numerics.fixedpoints import (
    SymmetricAnsatz,
    critical_learning_rate,
    fixed_points,
    from_state,
    jacobian,
    state_vector,
)
from symflow.numerics.init import from_overlaps, gaussian
from symflow.numerics.model import _build

ERF = "erf(z/sqrt(2))"

EPS = np.finfo(float).eps


def _overlaps(seed, m=3, ms=2, d=6):
    rng = np.random.default_rng(seed)
    W, Ws = rng.standard_normal((d, m)) / 2.5, rng.standard_normal((d, ms)) / 2.5
    return W.T @ W, W.T @ Ws, Ws.T @ Ws


@pytest.mark.parametrize("act, a", [("z**2", None), ("relu(z)", [1.0, -0.5, 2.0]),
                                    (ERF, None), ("z**3 + z", [1.0, 2.0, 3.0]),
                                    ("gelu(z)", None)])
def test_jacobian_against_finite_differences_and_mpmath(act, a):
    Q, M, P = _overlaps(1)
    mod = Model(act, 3, 2, a=a, loss_scale=0.5, weight_decay=0.01)
    J = jacobian(mod, Q, M, P)
    y = state_vector(Q, M)
    h = 1e-6
    fd = np.empty_like(J)
    for k in range(y.size):
        yp, ym = y.copy(), y.copy()
        yp[k] += h
        ym[k] -= h
        fd[:, k] = (state_vector(*mod.flow(*from_state(yp, 3, 2), P))
                    - state_vector(*mod.flow(*from_state(ym, 3, 2), P))) / (2 * h)
    # central differences: O(h^2) truncation + O(eps/h) round-off
    assert np.max(np.abs(fd - J)) <= 1e-8 * np.max(np.abs(J))
    ns = _build(mod.spec, "mpmath")[1]
    kw = {"a": list(mod.a), "a_star": list(mod.a_star)} if mod.spec.weighted else {}
    tQ, tM = from_state(np.eye(y.size)[3], 3, 2)
    with mpmath.workdps(30):
        mp = ns["overlap_flow_jvp"](Q, M, P, **kw, tQ=tQ, tM=tM)
    num = state_vector(*(np.array(v.tolist(), dtype=float) for v in mp))
    assert np.allclose(num, J[:, 3], rtol=1e-12, atol=1e-13 * np.max(np.abs(J)))


@pytest.mark.parametrize("K", [2, 3])
def test_fixed_points_of_the_erf_committee(K):
    """The symmetric plateau (Saad & Solla: risk (K/pi)(pi/6 - K asin(1/(2K)))) is a
    saddle; perfect recovery is a minimum; both polished to 1e-12."""
    mod = Model(ERF, K, K, loss_scale=0.5)
    fps = fixed_points(mod, np.eye(K))
    kinds = {f.kind for f in fps}
    assert {"minimum", "saddle"} <= kinds
    best = fps[0]
    assert best.kind == "minimum" and best.risk < 1e-14
    assert np.allclose(best.Q, np.eye(K), atol=1e-10) and np.allclose(np.abs(best.M), np.eye(K),
                                                                       atol=1e-10)
    plateau = [f for f in fps if f.kind == "saddle" and np.allclose(f.M, f.M[0, 0], atol=1e-9)]
    eps = K / math.pi * (math.pi / 6 - K * math.asin(1 / (2 * K)))
    assert plateau and plateau[0].risk == pytest.approx(eps, rel=1e-12)
    assert plateau[0].n_unstable >= 1 and plateau[0].residual <= 1e-12
    for f in fps:
        assert np.max(np.abs(state_vector(*mod.flow(f.Q, f.M, np.eye(K))))) <= 1e-12


def _weight_space_gradient(mod, f, P, h=1e-5):
    """Central differences of the risk in weight space at the fixed point f."""
    W, W_star = from_overlaps(f.Q, f.M, P)
    grad = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        E = np.zeros_like(W)
        E[idx] = h
        risk = [mod.risk((W + s * E).T @ (W + s * E), (W + s * E).T @ W_star, P)
                for s in (1, -1)]
        grad[idx] = (risk[0] - risk[1]) / (2 * h)
    return grad


@pytest.mark.parametrize("act", ["relu(z)", "sign(z)"])
def test_fixed_points_of_non_smooth_activations(act):
    """Regression: relu / sign crashed in LAPACK (NaN Jacobian at aligned units: the
    second Price derivatives ~ 1 / sqrt(1 - rho^2)), and sign returned one "saddle" per
    point of a ray of fixed points (23 copies).  Each smooth point is stationary in
    weight space (finite differences); relu's perfect recovery is reported as
    "non-smooth" with zero risk."""
    mod = Model(act, 2, 2)
    P = np.eye(2)
    fps = fixed_points(mod, P)
    assert fps and len({(f.kind, round(f.risk, 9)) for f in fps}) == len(fps)
    for f in fps:
        if f.kind == "non-smooth":
            assert f.n_unstable == -1 and np.all(np.isnan(f.eigenvalues))
        else:
            assert np.all(np.isfinite(f.eigenvalues))
            # truncation h^2 |L'''| (L''' ~ 1e2 near aligned units) and round-off eps / h
            assert np.max(np.abs(_weight_space_gradient(mod, f, P))) < 1e-7
    if act == "relu(z)":
        assert fps[0].kind == "non-smooth" and fps[0].risk < 1e-14
        assert any(f.kind == "saddle" for f in fps)


def test_fixed_points_for_a_teacher_that_is_not_p_identity():
    """Regression: fixed_points(model, P) raised for a Gaussian teacher (P not p I, the
    README's example).  The ansatz points continue to P; each is a stationary point of the
    risk in weight space (central finite differences, an independent path), and the
    plateau is a saddle with an escape direction."""
    mod = Model(ERF, 2, 2, loss_scale=0.5)
    Ws = gaussian(200, 2, seed=1)
    P = Ws.T @ Ws
    fps = fixed_points(mod, P)
    kinds = [f.kind for f in fps]
    assert set(kinds) == {"minimum", "saddle"}  # (minima: Q = M = P up to permutations)
    assert all(0 <= f.risk < 1e-14 for f in fps if f.kind == "minimum")  # round-off clipped
    assert all(f.n_unstable >= 1 and f.risk > 1e-4 for f in fps if f.kind == "saddle")
    for f in fps:
        grad = _weight_space_gradient(mod, f, P)
        # Central differences: truncation ~h^2 |L'''| ~ 1e-10, round-off ~ eps / h ~ 1e-11.
        # from_overlaps factors the Gram matrix of (Q, M, P), singular at the minima
        # (student = teacher): a Gram matrix exact to eps fixes the weights only to
        # ~sqrt(eps) in its null directions, and the gradient is linear in that error
        # (measured: 1.5e-8 at one of the two permuted minima, 1.5e-11 at the other; machine
        # dependent).  A point off by 1e-6 in the
        # overlaps (Q + 1e-6 I) gives gradients 6e-4 to 8e-4 here: three orders above it.
        assert np.max(np.abs(grad)) < 10 * np.sqrt(EPS) * (1 + np.linalg.norm(P))


def test_symmetric_ansatz_is_the_full_flow_restricted():
    K = 4
    mod = Model(ERF, K, K, loss_scale=0.5, weight_decay=0.01)
    ans = SymmetricAnsatz(mod, np.eye(K))
    rng = np.random.default_rng(0)
    for _ in range(3):
        q, c_frac, r, s = rng.uniform(0.2, 1.0), rng.uniform(-0.2, 0.8), rng.uniform(
            -0.5, 0.5), rng.uniform(-0.3, 0.3)
        v = (q, c_frac * q, r, s)
        Q, M = ans.full(*v)
        dQ, dM = mod.flow(Q, M, np.eye(K))
        full = (dQ[0, 0], dQ[0, 1], dM[0, 0], dM[0, 1])
        assert np.allclose(ans.rhs(*v), full, rtol=1e-13, atol=1e-15)
        # the flow maps the ansatz into itself
        assert np.allclose(dQ, ans.full(*full[:2], 0, 0)[0], atol=1e-14)
        assert ans.risk(*v) == pytest.approx(mod.risk(Q, M, np.eye(K)), rel=1e-13)


def test_simulate_on_the_symmetric_ansatz_matches_the_full_ode():
    K = 5
    mod = Model(ERF, K, K, loss_scale=0.5)
    q, c, r, s = 0.5, 0.1, 0.2, 0.05
    Q = (q - c) * np.eye(K) + c * np.ones((K, K))
    M = (r - s) * np.eye(K) + s * np.ones((K, K))
    W0, Ws = from_overlaps(Q, M, np.eye(K))
    t = [0.0, 5.0, 20.0, 60.0]
    a = simulate(W0, Ws, t, model=mod, method="symmetric", rtol=1e-11)
    b = simulate(W0, Ws, t, model=mod, rtol=1e-11)
    assert a.meta["state_size"] == 5 and a.meta["full_state_size"] == 2 * K * K + 1
    assert np.allclose(a.risk, b.risk, rtol=1e-8, atol=1e-13)
    assert np.allclose(a.M, b.M, rtol=1e-8, atol=1e-11)
    with pytest.raises(ValueError, match="symmetric ansatz"):
        simulate(gaussian(12, K, seed=0), from_overlaps(Q, M, np.eye(K), d=12)[1], t,
                 model=mod, method="symmetric")


def test_second_layer_training_against_the_weight_space_flow(tmp_path):
    W0, Ws = gaussian(12, 3, seed=1), gaussian(12, 2, seed=2)
    mod = Model(ERF, 3, 2, loss_scale=0.5, train_second_layer=True, a=[0.5, -0.3, 0.2],
                second_layer_lr=0.7)
    t = [0.0, 1.0, 5.0, 20.0]
    A = simulate(W0, Ws, t, model=mod, rtol=1e-11)
    B = simulate(W0, Ws, t, model=mod, method="weights", rtol=1e-11)
    assert A.a.shape == (4, 3) and np.allclose(A.a[0], [0.5, -0.3, 0.2])
    assert np.allclose(A.a, B.a, rtol=1e-8, atol=1e-11)
    assert np.allclose(A.risk, B.risk, rtol=1e-8, atol=1e-12)
    assert A.risk[-1] < A.risk[0]
    # dL/da against central differences of the risk in a
    Q, M, P = W0.T @ W0, W0.T @ Ws, Ws.T @ Ws
    g = mod.second_layer_grad(Q, M, P)
    h = 1e-6
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        fd = (mod.raw.risk_from_overlaps(Q, M, P, mod.a + e, mod.a_star)
              - mod.raw.risk_from_overlaps(Q, M, P, mod.a - e, mod.a_star)) / (2 * h)
        assert fd == pytest.approx(g[i], rel=1e-8, abs=1e-12)
    A.to_csv(tmp_path / "a.csv")
    header = (tmp_path / "a.csv").read_text().splitlines()[0]
    assert header.endswith("a_0,a_1,a_2")
    A.to_npz(tmp_path / "a.npz")
    assert np.load(tmp_path / "a.npz")["a"].shape == (4, 3)


def test_critical_learning_rate_against_direct_integration():
    """Perfect recovery of the erf committee (K = M = 2) under online SGD is stable below
    lr_c and unstable above it: a small perturbation decays / grows."""
    mod = Model(ERF, 2, 2, loss_scale=0.5)
    P = np.eye(2)
    lr_c = critical_learning_rate(mod, P)
    assert 0.5 < lr_c < 10
    rng = np.random.default_rng(1)
    W = np.eye(2) + 1e-4 * rng.standard_normal((2, 2))
    dist = {}
    for f in (0.9, 1.1):
        tr = simulate(W, np.eye(2), [0.0, 150.0], model=mod, lr=f * lr_c, rtol=1e-10)
        dist[f] = np.max(np.abs(tr.M[-1] - np.eye(2))) / np.max(np.abs(tr.M[0] - np.eye(2)))
    assert dist[0.9] < 0.1 and dist[1.1] > 10


def test_events_are_located_on_the_trajectory():
    W0, Ws = gaussian(12, 3, seed=1), gaussian(12, 2, seed=2)
    mod = Model(ERF, 3, 2, loss_scale=0.5)
    ref = simulate(W0, Ws, [0.0, 50.0], model=mod, rtol=1e-11)
    level = 0.5 * (ref.risk[0] + ref.risk[-1])
    tr = simulate(W0, Ws, [0.0, 50.0], model=mod, rtol=1e-11,
                  events={"risk": level, "specialisation": 0.3, "plateau_rate": 0.05})
    te = tr.events["risk"]
    assert 0 < te < 50
    at = simulate(W0, Ws, [0.0, te], model=mod, rtol=1e-11)
    assert at.risk[-1] == pytest.approx(level, rel=1e-7)
    ts = tr.events["specialisation"]
    if ts is not None:
        M = simulate(W0, Ws, [0.0, ts], model=mod, rtol=1e-11).M[-1]
        spread = np.max(np.max(np.abs(M), 0) - np.min(np.abs(M), 0))
        assert spread == pytest.approx(0.3, rel=1e-6)
    with pytest.raises(ValueError, match="events"):
        simulate(W0, Ws, [0.0, 1.0], model=mod, events={"foo": 1.0})


def test_escape_time_scales_with_the_unstable_eigenvalue():
    """From the plateau of the erf committee (K = M = 2) displaced by delta along the
    unstable eigenvector, the escape time grows like log(1/delta) / lambda_u."""
    mod = Model(ERF, 2, 2, loss_scale=0.5)
    sad = [f for f in fixed_points(mod, np.eye(2)) if f.kind == "saddle"][0]
    lam = sad.eigenvalues[0].real
    v = sad.eigenvectors[:, 0].real
    y0 = state_vector(sad.Q, sad.M)
    deltas = [1e-3, 1e-5, 1e-7]
    times = []
    for delta in deltas:
        _, M = from_state(y0 + delta * v, 2, 2)
        horizon = 1.5 * math.log(1 / delta) / lam + 100.0  # well past the escape
        tr = simulate(M.copy(), np.eye(2), [0.0, horizon], model=mod, rtol=1e-10,
                      events={"risk": sad.risk / 2})
        times.append(tr.events["risk"])
    slope = np.polyfit(np.log(1 / np.array(deltas)), times, 1)[0]
    assert slope == pytest.approx(1 / lam, rel=1e-3)


@pytest.mark.slow
def test_plateaus_command_writes_its_files(tmp_path, capsys):
    from symflow.apps.cli import main

    assert main(["plateaus", "--quick", "--out", str(tmp_path), "--format", "png",
                 "--json"]) == 0
    import json

    printed = json.loads(capsys.readouterr().out)  # the common --json scheme
    assert printed["command"] == "plateaus" and printed["out"] == str(tmp_path)
    assert sorted(printed["files"]) == sorted(str(p) for p in tmp_path.iterdir())
    assert printed["wall_time_s"] > 0 and set(printed["results"]) == {"2", "3"}
    data = json.loads((tmp_path / "plateaus.json").read_text())
    for r in data["results"].values():
        # fit with the O(delta) term: measured 2e-7 off (a line: 5e-4 at K = 3)
        assert r["slope"] == pytest.approx(r["predicted_slope"], rel=1e-5)
    assert (tmp_path / "plateaus.png").exists() and (tmp_path / "plateaus.csv").exists()


def test_plateaus_bad_input(capsys):
    from symflow.apps.cli import main

    assert main(["plateaus", "--format", "gif"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "formats" in err[0]


@pytest.mark.parametrize("args, kw, exc, match", [
    (("erf", np.eye(2)), {}, TypeError, "model must be a symflow.Model"),
    ((None, -np.eye(2)), {}, ValueError, "P must be positive semi-definite"),
    ((None, [[1.0, 2.0], [0.0, 1.0]]), {}, ValueError, "P must be symmetric"),
    ((None, [[1.0, np.nan], [np.nan, 1.0]]), {}, ValueError, "P must"),
    ((None, np.eye(2)), dict(tol=-1.0), ValueError, "tol must be > 0"),
    ((None, np.eye(2)), dict(grid=1000), ValueError, "grid must be an integer <= 20"),
    ((None, 1.0), {}, ValueError, r"P must have shape \(2, 2\)"),
    ((None, np.eye(2)), dict(starts=[(np.eye(2),)]), ValueError, "starts must be"),
    ((None, np.eye(2)), dict(starts="ab"), ValueError, "starts must be"),
])
def test_fixed_points_bad_input(args, kw, exc, match):
    """Regression (adversarial pass): grid=1000 ran for minutes, tol=-1 returned [],
    a string model died in AttributeError and a non-PSD P in LinAlgError."""
    mod = Model(ERF, 2, 2)
    with pytest.raises(exc, match=match):
        fixed_points(mod if args[0] is None else args[0], args[1], **kw)


def test_fixed_points_are_realisable_and_include_relu_recovery():
    """Regressions: (a) an erf student of a relu teacher returned 14 points of one risk,
    13 of them overlaps no weights have (Gram matrix with eigenvalue -0.032); (b) relu
    with a Gaussian teacher lost perfect recovery (flow 3e-9 there, above tol)."""
    mod = Model(ERF, 2, 2, teacher_activation="relu(z)")
    fps = fixed_points(mod, np.eye(2))
    assert 1 <= len(fps) <= 3
    for f in fps:
        G = np.block([[f.Q, f.M], [f.M.T, np.eye(2)]])
        assert np.linalg.eigvalsh(G)[0] >= -1e-8
        from_overlaps(f.Q, f.M, np.eye(2))  # weights exist
    W = gaussian(50, 2, seed=0)
    P = W.T @ W
    fps = fixed_points(Model("relu(z)", 2, 2), P)
    assert fps[0].kind == "non-smooth" and fps[0].risk < 1e-15
    assert np.allclose(fps[0].Q, P, atol=1e-12) and np.allclose(fps[0].M, P, atol=1e-12)
