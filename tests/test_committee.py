"""Soft committee machines: the online-SGD ODE against plain one-pass SGD in weight space,
the symmetric plateau, the small-lr asymptote, and the ``symflow committee`` command.

The SGD reference below is plain numpy written for this test (fresh x ~ N(0, I_d) per
step, y = f*(x) + sqrt(noise) xi, step lr/d on the loss loss_scale (f - y)^2), and the
risk of its weights comes from closed forms typed in here (Saad & Solla's I2 for erf,
the arc-cosine kernel of Cho & Saul for relu), not from symflow.
"""

import json
import math

import numpy as np
import pytest
from scipy.special import erf

from symflow import Model, simulate
from symflow.apps import committee
from symflow.apps.cli import main

SQ2 = math.sqrt(2.0)


# ------------------------------------------------------------- independent reference


def _erf_pair(a, b, c):
    """E[g(u) g(v)], g = erf(z / sqrt 2), Var u = a, Var v = b, Cov = c (Saad-Solla I2)."""
    return 2 / np.pi * np.arcsin(c / np.sqrt((1 + a) * (1 + b)))


def _relu_pair(a, b, c):
    """E[relu(u) relu(v)] (arc-cosine kernel of degree 1, Cho & Saul 2009)."""
    n = np.sqrt(a * b)
    cos = np.clip(c / n, -1.0, 1.0)
    th = np.arccos(cos)
    return n / (2 * np.pi) * (np.sin(th) + (np.pi - th) * cos)


ACTS = {
    "erf": (lambda u: erf(u / SQ2), lambda u: math.sqrt(2 / math.pi) * np.exp(-u * u / 2),
            _erf_pair),
    "relu": (lambda u: np.maximum(u, 0.0), lambda u: (u > 0) * 1.0, _relu_pair),
}


def _risk(pair, Q, R, T, noise, loss_scale=0.5):
    """loss_scale E[(f - y)^2], second layers 1."""
    q, t = np.diag(Q), np.diag(T)
    e2 = (pair(q[:, None], q[None, :], Q).sum() + pair(t[:, None], t[None, :], T).sum()
          - 2 * pair(q[:, None], t[None, :], R).sum())
    return loss_scale * (e2 + noise)


def one_pass_sgd(act, W0, Ws, lr, noise, times, runs, seed, loss_scale=0.5):
    """Risk of ``runs`` independent one-pass SGD runs (same start, independent samples) at
    ``times`` (t = samples / d): array (len(times), runs)."""
    s, ds, pair = ACTS[act]
    d = W0.shape[0]
    rng = np.random.default_rng(seed)
    W = np.repeat(W0[None], runs, axis=0)  # (runs, d, K)
    T = Ws.T @ Ws
    out = np.empty((len(times), runs))
    k = 0
    for i, target in enumerate(np.rint(np.asarray(times) * d).astype(int)):
        while k < target:
            x = rng.standard_normal((runs, d))
            h = np.einsum("rd,rdk->rk", x, W)
            y = s(x @ Ws).sum(1) + math.sqrt(noise) * rng.standard_normal(runs)
            g = (2 * loss_scale * (s(h).sum(1) - y))[:, None] * ds(h)  # dloss/dh_j
            W -= (lr / d) * x[:, :, None] * g[:, None, :]
            k += 1
        out[i] = [_risk(pair, Wr.T @ Wr, Wr.T @ Ws, T, noise, loss_scale) for Wr in W]
    return out


# ------------------------------------------------- slow tier: ODE vs one-pass SGD


@pytest.mark.slow
@pytest.mark.parametrize("act, K, M", [("erf", 2, 2), ("relu", 2, 1), ("relu", 2, 2)])
def test_online_sgd_ode_matches_one_pass_sgd(act, K, M):
    """Mean risk of 40 independent one-pass SGD runs at d = 600 against the online-SGD ODE
    (within 4.5 standard errors at every time) and against the gradient flow without the
    lr^2 term (same time scale lr*t), which must be at least 10 standard errors away."""
    d, lr, noise, runs = 600, 0.5, 0.1, 40
    times = [0.5, 1.0, 2.0, 4.0]
    rng = np.random.default_rng(0)
    Ws = np.eye(d)[:, :M]
    W0 = Ws @ rng.uniform(0.0, 0.5, (M, K)) + rng.standard_normal((d, K)) * math.sqrt(0.3 / d)
    mod = Model("erf(z/sqrt(2))" if act == "erf" else "relu(z)", K, M, loss_scale=0.5,
                noise=noise)
    ode = simulate(W0, Ws, [0.0] + times, model=mod, lr=lr, rtol=1e-10)
    gf = simulate(W0, Ws, [0.0] + [lr * t for t in times], model=mod, rtol=1e-10)
    # the start: symflow's risk against the closed form typed in above
    assert ode.risk[0] == pytest.approx(
        _risk(ACTS[act][2], W0.T @ W0, W0.T @ Ws, Ws.T @ Ws, noise), rel=1e-12)
    sgd = one_pass_sgd(act, W0, Ws, lr, noise, times, runs, seed=1)
    mean = sgd.mean(axis=1)
    se = sgd.std(axis=1, ddof=1) / math.sqrt(runs)
    z_ode = (ode.risk[1:] - mean) / se
    z_gf = (gf.risk[1:] - mean) / se
    assert np.all(np.abs(z_ode) < 4.5), (z_ode, mean, se, ode.risk[1:])
    assert np.max(np.abs(z_gf)) > 10, (z_gf, mean, se, gf.risk[1:])
    assert np.all(np.abs(z_gf[1:]) > np.abs(z_ode[1:]))


# ---------------------------------------------------------------- building blocks


@pytest.fixture(scope="module")
def erf2():
    return Model("erf(z/sqrt(2))", 2, 2, loss_scale=0.5)


def test_plateau_value_and_symmetric_fixed_point(erf2):
    assert committee.plateau_value(2) == pytest.approx(
        2 / math.pi * (math.pi / 6 - 2 * math.asin(0.25)), rel=1e-15)
    gf = committee.symmetric_plateau(erf2)
    assert gf["eps_g"] == pytest.approx(committee.plateau_value(2), rel=1e-12)
    assert np.allclose(gf["Q"], 1 / 3, atol=1e-12)  # Q_ij = 1/(2K - 1), all i, j
    assert np.allclose(gf["M"], 1 / math.sqrt(6), atol=1e-12)
    # a finite learning rate raises the plateau; lr -> 0 recovers eps_g*
    e = [committee.symmetric_plateau(erf2, lr)["eps_g"] for lr in (1e-4, 0.1, 0.5)]
    assert e[0] == pytest.approx(gf["eps_g"], rel=1e-3)
    assert gf["eps_g"] < e[0] < e[1] < e[2]
    with pytest.raises(ValueError, match="m = m_star"):
        committee.symmetric_plateau(Model("erf(z/sqrt(2))", 3, 2, loss_scale=0.5))
    with pytest.raises(TypeError, match="model"):
        committee.symmetric_plateau("erf")
    with pytest.raises(ValueError, match="K"):
        committee.plateau_value(0)


def test_small_lr_asymptote():
    """Near the teacher, SGD noise of step lr/d has weight covariance (lr sigma^2 / 2d) I, so
    eps_g = tr(H Sigma) / 2 -> lr sigma^2 K E[g'(v)^2] / 2 = lr sigma^2 K / (2 sqrt(3) pi):
    an independent small-lr derivation against the fixed point of the derived ODE."""
    noise, lr = 0.01, 1e-4
    for K in (1, 3):
        mod = Model("erf(z/sqrt(2))", K, K, loss_scale=0.5, noise=noise)
        fp = committee.sgd_fixed_point(mod, np.eye(K), np.eye(K), np.eye(K), lr)
        assert fp["residual"] < 1e-12
        assert fp["eps_g"] / (lr * noise * K) == pytest.approx(
            1 / (2 * math.sqrt(3) * math.pi), rel=2e-4)


def test_weights_from_overlaps():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((7, 5))
    C = A.T @ A
    Q, M, P = C[:3, :3], C[:3, 3:], C[3:, 3:]
    W, Ws = committee.weights_from_overlaps(Q, M, P)
    assert W.shape == (5, 3) and Ws.shape == (5, 2)
    for got, want in ((W.T @ W, Q), (W.T @ Ws, M), (Ws.T @ Ws, P)):
        assert np.allclose(got, want, rtol=0, atol=1e-12 * np.max(np.abs(C)))
    with pytest.raises(ValueError, match="negative eigenvalue"):
        committee.weights_from_overlaps(np.eye(2), 2 * np.ones((2, 1)), np.eye(1))
    with pytest.raises(ValueError, match="shapes"):
        committee.weights_from_overlaps(np.eye(2), np.ones((3, 1)), np.eye(1))
    with pytest.raises(ValueError, match="symmetric"):
        committee.weights_from_overlaps(np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros((2, 1)),
                                        np.eye(1))


# ------------------------------------------------------------------- the command


TINY = dict(plateau_K=(2,), plateau_lrs=(0.5,), plateau_lr_t=300.0, plateau_points=40,
            asym_K=(2, 3), asym_lrs=(0.3,), asym_horizon=100.0, asym_points=15)


def test_committee_command_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(committee._SETTINGS, True, TINY)
    out = tmp_path / "c"
    assert main(["committee", "--quick", "--out", str(out), "--seed", "3", "--json",
                 "--format", "svg,png"]) == 0
    printed = json.loads(capsys.readouterr().out)
    # the common --json scheme of docs/usage.md
    assert printed["command"] == "committee" and printed["out"] == str(out)
    assert printed["wall_time_s"] > 0 and printed["formats"] == ["svg", "png"]
    assert [f["figure"] for f in printed["figures"]] == ["committee_plateau",
                                                          "committee_asymptotic"]
    assert sorted(printed["files"]) == sorted(str(p) for p in out.iterdir())
    # only the requested image formats, plus CSV and JSON
    assert sorted(p.suffix for p in out.iterdir()) == sorted([".csv", ".json", ".png", ".svg"]
                                                             * 2)
    for name in ("committee_plateau", "committee_asymptotic"):
        for ext in ("png", "svg", "csv", "json"):
            p = out / f"{name}.{ext}"
            assert p.is_file() and p.stat().st_size > 0, p
            assert str(p) in printed["files"]
        meta = json.loads((out / f"{name}.json").read_text())
        assert meta["seed"] == 3 and meta["quick"] is True
        assert set(meta["versions"]) >= {"symflow", "numpy", "scipy", "sympy"}
        assert len(meta["reading"]) > 200 and meta["wall_time_s"] > 0
        assert 50 < len(meta["headline"]) < 400
        assert meta["conventions"]["loss_scale"] == 0.5
    plateau = json.loads((out / "committee_plateau.json").read_text())
    run = plateau["summary"]["K=2"]["runs"]["gradient_flow lr=0.5"]
    assert run["symmetric_fixed_point_eps_g"] == pytest.approx(committee.plateau_value(2))
    header = (out / "committee_asymptotic.csv").read_text().splitlines()[0]
    assert header == "kind,K,M,lr,noise,t,lr_t,eps_g"
    rows = json.loads((out / "committee_asymptotic.json").read_text())["summary"]["final"]
    assert {r["K"] for r in rows} == {2, 3} and all(r["eps_g"] > 0 for r in rows)


@pytest.mark.parametrize("argv, msg", [
    (["--format", "gif"], "format"),
    (["--format", ","], "format"),
    (["--seed", "-1"], "seed"),
    (["--seed", "x"], "seed"),
    (["--bogus"], "unrecognized"),
])
def test_committee_command_bad_input(argv, msg, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["committee", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("symflow: error:") and msg in err[0]
    assert not out.exists()


def test_committee_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["committee", "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a directory" in err[0]


@pytest.mark.parametrize("kwargs, exc", [
    (dict(formats="png,jpg"), ValueError), (dict(formats=[]), ValueError),
    (dict(seed=-2), ValueError), (dict(seed=1.5), ValueError), (dict(noise=0), ValueError),
    (dict(noise="a"), TypeError),
])
def test_make_committee_figures_bad_arguments(tmp_path, kwargs, exc):
    with pytest.raises(exc):
        committee.make_committee_figures(out=tmp_path / "o", quick=True, **kwargs)
    assert not (tmp_path / "o").exists()
