"""Soft committee machines: the classic erf results of online learning, reproduced.

``symflow committee [--out DIR] [--quick] [--format png,pdf] [--json] [--seed S]``
writes two figures, each as PNG and/or PDF, CSV (the plotted data, long format) and JSON
(parameters, seeds, versions, summary numbers and a short reading of the figure):

- ``committee_plateau``: the symmetric plateau of Saad & Solla (1995) and its escape,
  K = M = 2 and 3, from a small random start, online SGD (the ODE of
  :meth:`symflow.Model.sgd_flow`) and the gradient flow, with the plateau value
  ``eps_g* = (K / pi) (pi / 6 - K asin(1 / (2K)))`` of the T = I teacher;
- ``committee_asymptotic``: the generalisation error reached by online SGD with label
  noise, against the learning rate, for students with K = 2, 4, 8 units and an M = 2
  teacher (the setting of Goldt et al. 2019, first layer trained, second layer a = 1).

Conventions (those of Saad & Solla and Goldt et al.): activation ``erf(z / sqrt(2))``,
``loss_scale = 1/2`` (loss ``(f - y)^2 / 2``), one-pass SGD with step ``lr / d`` on
fresh samples, time ``t = samples / d`` (their alpha), overlaps ``Q = W^T W``,
``M = W^T W*`` (their R), ``P = W*^T W*`` (their T), label noise variance
``noise = sigma^2``; the generalisation error is ``eps_g = risk - loss_scale * noise``
(``risk - noise / 2`` here).

Source: D. Saad and S. A. Solla, Phys. Rev. E 52, 4225 (1995); S. Goldt, M. Advani,
A. Saxe, F. Krzakala, L. Zdeborova, NeurIPS 2019 (arXiv 1906.08632).
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from symflow._io import atomic_write_many
from symflow._validate import finite_float, positive_int

__all__ = ["make_committee_figures", "plateau_value", "weights_from_overlaps",
           "symmetric_plateau", "sgd_fixed_point", "add_cli", "FORMATS"]

ACTIVATION = "erf(z/sqrt(2))"
LOSS_SCALE = 0.5
#: image formats accepted by ``formats`` / ``--format``
FORMATS = ("png", "pdf", "svg")

_SETTINGS = {
    False: dict(plateau_K=(2, 3), plateau_lrs=(0.1, 0.5), plateau_lr_t=1.0e3,
                plateau_points=400, asym_K=(2, 4, 8), asym_lrs=(0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
                asym_horizon=1.0e4, asym_points=81),
    True: dict(plateau_K=(2, 3), plateau_lrs=(0.5,), plateau_lr_t=1.0e3,
               plateau_points=160, asym_K=(2, 4, 8), asym_lrs=(0.05, 0.2, 0.8),
               asym_horizon=2.0e3, asym_points=41),
}
_RTOL = 1e-7  # ODE tolerance (the curves are converged to far below the line width)
_NOISE = 0.01  # sigma^2 of the asymptotic figure
_M_ASYM = 2  # teacher width of the asymptotic figure


# ------------------------------------------------------------------ building blocks


def plateau_value(K):
    """Generalisation error on the symmetric plateau of the erf committee (T = I).

    Parameters
    ----------
    K : int >= 1
        Student and teacher width (K = M).

    Returns
    -------
    float
        ``eps_g* = (K / pi) (pi / 6 - K asin(1 / (2K)))``: the value at the symmetric
        fixed point ``Q_ij = 1 / (2K - 1)``, ``R_in = 1 / sqrt(K (2K - 1))`` of the
        gradient flow (the ``lr -> 0`` limit of online SGD), loss ``(f - y)^2 / 2``,
        activation ``erf(z / sqrt(2))``.

    Raises
    ------
    TypeError, ValueError
        ``K`` not an integer >= 1.

    Source: Saad & Solla, Phys. Rev. E 52, 4225 (1995).
    """
    K = positive_int(K, "K")
    return K / math.pi * (math.pi / 6 - K * math.asin(1 / (2 * K)))


def weights_from_overlaps(Q, M, P, tol=1e-10):
    """Weights whose overlaps are exactly the given matrices.

    Parameters
    ----------
    Q : array (m, m)
        Student overlaps ``W^T W`` (symmetric).
    M : array (m, m*)
        Student-teacher overlaps ``W^T W*``.
    P : array (m*, m*)
        Teacher overlaps ``W*^T W*`` (symmetric).
    tol : float >= 0
        Relative tolerance on negative eigenvalues of the joint Gram matrix
        ``[[Q, M], [M^T, P]]`` (round-off; they are set to zero).

    Returns
    -------
    W : ndarray (m + m*, m)
    W_star : ndarray (m + m*, m*)
        In dimension d = m + m*, with ``W^T W = Q``, ``W^T W_star = M``,
        ``W_star^T W_star = P`` to round-off.  With ``simulate(..., t=...)`` (online
        SGD in ``t = samples / d`` or the gradient flow) only the overlaps matter, so
        these stand for weights in any dimension d >= m + m*.

    Raises
    ------
    ValueError
        Shapes that do not fit, non-finite or non-symmetric ``Q`` / ``P``, or a joint
        Gram matrix that is not positive semi-definite (no weights have these overlaps).
    TypeError
        Non-numeric input.
    """
    from symflow._validate import as_matrix

    Q, M, P = as_matrix(Q, "Q"), as_matrix(M, "M"), as_matrix(P, "P")
    m, ms = Q.shape[0], P.shape[0]
    if Q.shape != (m, m) or P.shape != (ms, ms) or M.shape != (m, ms):
        raise ValueError(f"Q, M, P must have shapes (m, m), (m, m*), (m*, m*); got "
                         f"{Q.shape}, {M.shape}, {P.shape}")
    tol = finite_float(tol, "tol", lo=0)
    C = np.block([[Q, M], [M.T, P]])
    scale = max(float(np.max(np.abs(C))), 1e-300)
    for A, name in ((Q, "Q"), (P, "P")):
        if np.max(np.abs(A - A.T)) > 1e-12 * scale:
            raise ValueError(f"{name} must be symmetric")
    lam, V = np.linalg.eigh(0.5 * (C + C.T))
    if lam[0] < -tol * scale - 1e-300:
        raise ValueError(f"the Gram matrix [[Q, M], [M^T, P]] has a negative eigenvalue "
                         f"{lam[0]:.3g}: no weights have these overlaps")
    B = V * np.sqrt(np.clip(lam, 0.0, None))  # rows: the m + m* vectors, C = B B^T
    return B[:m].T.copy(), B[m:].T.copy()


def _check_model(model, square=True):
    if not (hasattr(model, "kernels") and hasattr(model, "sgd_flow")):
        raise TypeError(f"model must be a symflow.Model, got {type(model).__name__}")
    if square and model.m != model.m_star:
        raise ValueError(f"the symmetric plateau needs m = m_star, got {model.m} and "
                         f"{model.m_star}")


def _sym(x, K):
    q, c, s = x
    return (c * np.ones((K, K)) + (q - c) * np.eye(K)), s * np.ones((K, K))


def symmetric_plateau(model, lr=None):
    """The symmetric (unspecialised) fixed point of a committee, K = M, teacher T = I.

    On the symmetric subspace ``Q = (q - c) I + c 11^T``, ``M = s 11^T`` (all student
    units alike, each equally close to every teacher unit; invariant under the flow
    when ``P = I``), the fixed point of the gradient flow (``lr=None``) or of the
    online-SGD ODE with learning rate ``lr`` is found by Newton's method (scipy
    ``root``) from the gradient-flow point of the erf committee,
    ``q = c = 1 / (2K - 1)``, ``s = 1 / sqrt(K (2K - 1))``.

    Parameters
    ----------
    model : symflow.Model
        With ``m = m_star = K`` (e.g. ``Model("erf(z/sqrt(2))", K, K, loss_scale=0.5)``).
    lr : float > 0, optional
        Learning rate of online SGD (step ``lr / d``); ``None``: gradient flow.

    Returns
    -------
    dict
        ``Q (K, K)``, ``M (K, K)``, ``risk``, ``eps_g`` (= risk - loss_scale * noise),
        ``residual`` (max |dQ/dt|, |dM/dt| there, in the full K x K space).

    Raises
    ------
    TypeError
        ``model`` is not a :class:`symflow.Model`.
    ValueError
        ``m != m_star``, bad ``lr``.
    RuntimeError
        Newton's method did not converge (residual above 1e-9).

    Source: Saad & Solla (1995), symmetric phase.
    """
    from scipy.optimize import root

    _check_model(model)
    K = model.m
    lr = None if lr is None else finite_float(lr, "lr", lo=0, lo_open=True)
    P = np.eye(K)

    def rhs(Q, M):
        return model.flow(Q, M, P) if lr is None else model.sgd_flow(Q, M, P, lr)

    def f(x):
        dQ, dM = rhs(*_sym(x, K))
        return [dQ[0, 0], dQ[0, 1] if K > 1 else x[1] - x[0], dM[0, 0]]

    x0 = [1 / (2 * K - 1), 1 / (2 * K - 1), 1 / math.sqrt(K * (2 * K - 1))]
    sol = root(f, x0, method="hybr", options=dict(xtol=1e-14))
    Q, M = _sym(sol.x, K)
    dQ, dM = rhs(Q, M)
    res = float(max(np.max(np.abs(dQ)), np.max(np.abs(dM))))
    if not np.isfinite(res) or res > 1e-9:
        raise RuntimeError(f"the symmetric fixed point was not found (residual {res:.3g}, "
                           f"lr={lr}); Newton's method needs a start near it")
    risk = model.risk(Q, M, P)
    return dict(Q=Q, M=M, risk=risk, eps_g=risk - float(model.spec.loss_scale)
                * float(model.spec.noise), residual=res)


def sgd_fixed_point(model, Q, M, P, lr):
    """Fixed point of the online-SGD overlap ODE near ``(Q, M)`` (Newton, scipy ``root``).

    Parameters
    ----------
    model : symflow.Model
    Q : array (m, m)
        Start (e.g. the end of a long :func:`symflow.simulate` run); symmetric.
    M : array (m, m_star)
    P : array (m_star, m_star)
        Teacher overlaps (fixed).
    lr : float > 0
        Learning rate (step ``lr / d``, ``t = samples / d``).

    Returns
    -------
    dict
        ``Q``, ``M`` at the fixed point, ``risk``, ``eps_g`` (risk - loss_scale * noise),
        ``residual`` (max |dQ/dt|, |dM/dt|).

    Raises
    ------
    TypeError
        ``model`` is not a :class:`symflow.Model`.
    ValueError
        Bad shapes or ``lr``.
    RuntimeError
        No fixed point near the start (residual above 1e-9): e.g. a run that was still
        drifting, such as an over-parameterised erf student whose superfluous units
        keep growing.
    """
    from scipy.optimize import root

    _check_model(model, square=False)
    lr = finite_float(lr, "lr", lo=0, lo_open=True)
    Q, M, P = (np.array(a, dtype=float) for a in (Q, M, P))
    model._check(Q, M, P)
    m = model.m
    iu = np.triu_indices(m)

    def unpack(x):
        A = np.zeros((m, m))
        A[iu] = x[:iu[0].size]
        A = A + np.triu(A, 1).T
        return A, x[iu[0].size:].reshape(M.shape)

    def f(x):
        dQ, dM = model.sgd_flow(*unpack(x), P, lr)
        return np.concatenate([dQ[iu], dM.ravel()])

    sol = root(f, np.concatenate([Q[iu], M.ravel()]), method="hybr",
               options=dict(xtol=1e-14))
    Qf, Mf = unpack(sol.x)
    dQ, dM = model.sgd_flow(Qf, Mf, P, lr)
    res = float(max(np.max(np.abs(dQ)), np.max(np.abs(dM))))
    if not np.isfinite(res) or res > 1e-9:
        raise RuntimeError(f"no fixed point of the online-SGD ODE near the start "
                           f"(residual {res:.3g})")
    risk = model.risk(Qf, Mf, P)
    return dict(Q=Qf, M=Mf, risk=risk, eps_g=risk - float(model.spec.loss_scale)
                * float(model.spec.noise), residual=res)


# ------------------------------------------------------------------------ runs


def _seed_rng(seed, *key):
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _small_start(K, rng):
    """Saad-Solla-like start: Q_ii ~ U(0.2, 0.5), Q_ik and R_in ~ U(0, 1e-3)."""
    Q = np.triu(rng.uniform(0.0, 1e-3, (K, K)), 1)
    Q = Q + Q.T + np.diag(rng.uniform(0.2, 0.5, K))
    R = rng.uniform(0.0, 1e-3, (K, K))
    return Q, R


def _plateau_stats(t, eps, eps_star):
    """Measured plateau (eps_g where |d log eps / d log t| is smallest between t = 1 and
    the escape) and escape time (first t with eps_g < eps_star / 10)."""
    below = np.nonzero((eps < 0.1 * eps_star) & (t > 0))[0]
    t_escape = float(t[below[0]]) if below.size else float("nan")
    ok = (t >= 1.0) & (eps > 0.5 * eps_star)
    if below.size:
        ok &= t < t_escape
    idx = np.nonzero(ok)[0]
    if idx.size < 3:
        return float("nan"), float("nan"), t_escape
    slope = np.gradient(np.log(eps[idx]), np.log(t[idx]))
    j = idx[int(np.argmin(np.abs(slope)))]
    return float(eps[j]), float(t[j]), t_escape


def _plateau_data(cfg, seed):
    from symflow import Model, simulate

    out = dict(curves=[], K={})
    for K in cfg["plateau_K"]:
        mod = Model(ACTIVATION, K, K, loss_scale=LOSS_SCALE)
        Q0, R0 = _small_start(K, _seed_rng(seed, 1, K))
        W0, Ws = weights_from_overlaps(Q0, R0, np.eye(K))
        eps_star = plateau_value(K)
        info = dict(eps_star=eps_star, Q0=Q0, R0=R0, runs={})
        lr_gf = max(cfg["plateau_lrs"])

        def grid(lr):  # every run to the same amount of learning lr * t
            return np.concatenate([[0.0], np.geomspace(0.1, cfg["plateau_lr_t"] / lr,
                                                       cfg["plateau_points"])])

        runs = [("sgd", lr, simulate(W0, Ws, grid(lr), model=mod, lr=lr, rtol=_RTOL))
                for lr in cfg["plateau_lrs"]]
        runs.append(("gradient_flow", lr_gf, simulate(W0, Ws, lr_gf * grid(lr_gf), model=mod,
                                                      rtol=_RTOL)))
        for kind, lr, tr in runs:
            t = tr.t if kind == "sgd" else tr.t / lr
            eps = np.asarray(tr.risk, dtype=float)  # noise = 0: eps_g = risk
            measured, t_flat, t_esc = _plateau_stats(t, eps, eps_star)
            sym = symmetric_plateau(mod, None if kind == "gradient_flow" else lr)
            info["runs"][f"{kind} lr={lr:g}"] = dict(
                dynamics=kind, lr=lr, plateau_measured=measured, plateau_time=t_flat,
                escape_time=t_esc, lr_times_escape_time=lr * t_esc,
                symmetric_fixed_point_eps_g=sym["eps_g"],
                symmetric_fixed_point_Q_diag=float(sym["Q"][0, 0]),
                symmetric_fixed_point_Q_off=float(sym["Q"][0, 1]),
                symmetric_fixed_point_R=float(sym["M"][0, 0]),
                final_eps_g=float(eps[-1]), nfev=tr.meta.get("nfev"),
                solver=tr.meta.get("solver"))
            out["curves"].append(dict(K=K, dynamics=kind, lr=lr, t=t, eps=eps,
                                      sym=sym["eps_g"]))
        out["K"][K] = info
    return out


def _worst_pair_cosine(Q, R, M):
    """Pairing of the superfluous units of a K > M student: drop the M units best aligned
    with a teacher unit; for each remaining unit, its most negative cosine with another
    unit; return the largest of these (close to -1: every such unit has an antiparallel
    partner, and their erf outputs cancel)."""
    nq = np.sqrt(np.diag(Q))
    C = Q / np.outer(nq, nq)
    np.fill_diagonal(C, 1.0)
    extra = np.argsort(-np.max(R / nq[:, None], axis=1))[M:]
    return float(max(C[j].min() for j in extra))


def _asymptotic_data(cfg, seed, noise):
    from symflow import Model, simulate
    from symflow.numerics.simulators import Diverged

    M = _M_ASYM
    H = cfg["asym_horizon"]
    tau = np.unique(np.concatenate([[0.0], np.geomspace(0.1, H, cfg["asym_points"]),
                                    [H / 2]]))
    out = dict(curves=[], final=[], tau=tau)
    for K in cfg["asym_K"]:
        mod = Model(ACTIVATION, K, M, loss_scale=LOSS_SCALE, noise=noise)
        n = K + M
        rng = _seed_rng(seed, 2, K)
        W0 = rng.standard_normal((n, K)) / math.sqrt(n)
        Ws = np.eye(n)[:, :M]
        for lr in cfg["asym_lrs"]:
            lr = float(lr)
            try:
                tr = simulate(W0, Ws, tau / lr, model=mod, lr=lr, rtol=1e-6, solver="BDF")
            except Diverged as exc:
                out["final"].append(dict(K=K, lr=lr, eps_g=float("nan"),
                                         eps_g_half=float("nan"), drift=float("nan"),
                                         diverged=str(exc)))
                continue
            eps = np.asarray(tr.risk, dtype=float) - LOSS_SCALE * noise
            half = int(np.argmin(np.abs(tau - H / 2)))
            row = dict(K=K, lr=lr, eps_g=float(eps[-1]), eps_g_half=float(eps[half]),
                       drift=float(eps[half] / eps[-1] - 1.0),
                       slope_ratio=float(eps[-1] / (lr * noise * K)),
                       Q_diag_final=np.diag(tr.Q[-1]).tolist(), nfev=tr.meta.get("nfev"),
                       solver=tr.meta.get("solver"))
            if K > M:
                row["worst_pair_cosine"] = _worst_pair_cosine(tr.Q[-1], tr.M[-1], M)
            if K == M:
                try:
                    fp = sgd_fixed_point(mod, tr.Q[-1], tr.M[-1], Ws.T @ Ws, lr)
                    row["fixed_point_eps_g"] = fp["eps_g"]
                except RuntimeError as exc:  # pragma: no cover - reported, not fatal
                    row["fixed_point_eps_g"] = f"not found: {exc}"
            out["final"].append(row)
            out["curves"].append(dict(K=K, lr=lr, t=tau / lr, tau=tau, eps=eps))
    # small-lr limit of the K = M asymptote: eps_g / (lr noise K) -> 1 / (2 sqrt(3) pi)
    mod = Model(ACTIVATION, M, M, loss_scale=LOSS_SCALE, noise=noise)
    lr = 1e-3
    fp = sgd_fixed_point(mod, np.eye(M), np.eye(M), np.eye(M), lr)
    out["small_lr_check"] = dict(K=M, lr=lr, eps_g=fp["eps_g"],
                                 ratio=fp["eps_g"] / (lr * noise * M),
                                 limit=1 / (2 * math.sqrt(3) * math.pi))
    return out


# ------------------------------------------------------------------------ output


def _versions():
    import matplotlib
    import scipy
    import sympy

    from symflow import __version__

    return dict(symflow=__version__, numpy=np.__version__, scipy=scipy.__version__,
                sympy=sympy.__version__, matplotlib=matplotlib.__version__,
                python=platform.python_version())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _plateau_figure(data, cfg):
    plt = _plt()
    Ks = cfg["plateau_K"]
    fig, axes = plt.subplots(1, len(Ks), figsize=(6.2 * len(Ks), 4.4), squeeze=False)
    for ax, K in zip(axes[0], Ks):
        info = data["K"][K]
        for i, c in enumerate(x for x in data["curves"] if x["K"] == K):
            ok = c["t"] > 0
            if c["dynamics"] == "sgd":
                col = _COLORS[i % len(_COLORS)]
                ax.loglog(c["t"][ok], c["eps"][ok], color=col, lw=1.6,
                          label=f"online SGD (ODE), lr = {c['lr']:g}")
                ax.axhline(c["sym"], color=col, lw=0.9, ls=":",
                           label=f"symmetric fixed point, lr = {c['lr']:g}: {c['sym']:.4f}")
            else:
                ax.loglog(c["t"][ok], c["eps"][ok], color="k", lw=1.2, ls="--",
                          label=f"gradient flow, time lr*t (lr = {c['lr']:g}, "
                                "no lr^2 term)")
        ax.axhline(info["eps_star"], color="tab:red", lw=1.0,
                   label=f"eps_g* = (K/pi)(pi/6 - K asin(1/2K)) = {info['eps_star']:.4f}")
        ax.set_ylim(1e-6, 1.0)
        ax.set_xlim(0.1, cfg["plateau_lr_t"] / min(cfg["plateau_lrs"]))
        ax.set_xlabel("t = samples / d")
        ax.set_ylabel("eps_g")
        ax.set_title(f"K = M = {K}, T = I, start Q_ii ~ U(0.2, 0.5), "
                     "Q_ik, R_in ~ U(0, 1e-3)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Soft committee machine (erf(z/sqrt 2), loss (f - y)^2 / 2): "
                 "the symmetric plateau and its escape (Saad & Solla 1995)", fontsize=10)
    fig.tight_layout()
    return fig


def _asymptotic_figure(data, cfg, noise, lr_show):
    plt = _plt()
    fig, (axl, axr) = plt.subplots(1, 2, figsize=(12.4, 4.6))
    lrs = np.array([float(v) for v in cfg["asym_lrs"]])
    guide = np.geomspace(lrs.min(), lrs.max(), 50)
    for i, K in enumerate(cfg["asym_K"]):
        col = _COLORS[i % len(_COLORS)]
        rows = [r for r in data["final"] if r["K"] == K]
        x = np.array([r["lr"] for r in rows])
        y = np.array([r["eps_g"] for r in rows])
        axl.loglog(x, y, "o-", color=col, lw=1.5, ms=4, label=f"K = {K}")
        axl.loglog(guide, guide * noise * K / (2 * math.sqrt(3) * math.pi), color=col,
                   lw=0.8, ls=":")
        for c in data["curves"]:
            if c["K"] == K and c["lr"] == lr_show:
                ok = c["tau"] > 0
                axr.loglog(c["tau"][ok], c["eps"][ok], color=col, lw=1.5, label=f"K = {K}")
    axl.plot([], [], "k:", lw=0.8, label="guide: lr sigma^2 K / (2 sqrt(3) pi)")
    axl.set_xlabel("learning rate lr (SGD step lr / d)")
    axl.set_ylabel(f"eps_g at lr*t = {cfg['asym_horizon']:g}")
    axl.set_title(f"M = 2 teacher, sigma^2 = {noise:g}, first layer trained (a = 1)",
                  fontsize=9)
    axr.set_xlabel("lr * t  (t = samples / d)")
    axr.set_ylabel("eps_g")
    axr.set_title(f"eps_g(t) at lr = {lr_show:g}: K = M converges, K > M keeps "
                  "drifting slowly", fontsize=9)
    for ax in (axl, axr):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Over-parameterised erf students under label noise: online SGD "
                 "(Goldt et al. 2019 setting)", fontsize=10)
    fig.tight_layout()
    return fig


def _csv_text(columns, rows):
    import csv
    import io

    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(columns)
    for r in rows:
        wr.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v
                     for v in (r.get(c, "") for c in columns)])
    return buf.getvalue()


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    return str(o)


def _write_text(path, text):
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def _fmt_t(x):
    return "never (within the run)" if not np.isfinite(x) else f"{x:.3g}"


def _plateau_reading(data, cfg):
    parts, esc = [], {}
    for K in cfg["plateau_K"]:
        info = data["K"][K]
        gf = next(v for v in info["runs"].values() if v["dynamics"] == "gradient_flow")
        sgd = [v for v in info["runs"].values() if v["dynamics"] == "sgd"]
        esc[K] = {v["lr"]: v["escape_time"] for v in sgd}
        s = "; ".join(
            f"online SGD lr = {v['lr']:g}: plateau {v['plateau_measured']:.4f} (symmetric "
            f"fixed point of the SGD ODE {v['symmetric_fixed_point_eps_g']:.4f}), escape "
            f"(eps_g < eps_g*/10) at t = {_fmt_t(v['escape_time'])} "
            f"(lr*t = {_fmt_t(v['lr_times_escape_time'])})" for v in sgd)
        parts.append(f"K = M = {K}: eps_g* = {info['eps_star']:.5f}; gradient flow plateau "
                     f"{gf['plateau_measured']:.5f}; {s}.")
    Ks = list(cfg["plateau_K"])
    lr0 = max(cfg["plateau_lrs"])
    longer = all(esc[b][lr0] > esc[a][lr0] for a, b in zip(Ks, Ks[1:]))
    run0 = data["K"][Ks[0]]["runs"][f"sgd lr={lr0:g}"]
    headline = (
        f"Online SGD (K = M = {Ks[0]}, lr = {lr0:g}) from a small random start is trapped "
        f"on the symmetric plateau (eps_g = {run0['plateau_measured']:.4f}, above Saad & "
        f"Solla's eps_g* = {data['K'][Ks[0]]['eps_star']:.4f}, its lr -> 0 limit) until "
        f"t = {_fmt_t(run0['escape_time'])}, then the units specialise and eps_g -> 0.")
    return headline, (
        "From a small random start the error first drops to the symmetric plateau, where "
        "all student units have the same overlap with every teacher unit (the "
        "unspecialised saddle); the O(1e-3) asymmetries of the start grow exponentially "
        "but slowly, and once they are O(1) the units specialise, one per teacher unit, "
        "and eps_g falls to zero (no noise). " + " ".join(parts) + " The gradient flow "
        "(the lr -> 0 limit, plotted against t = (its time) / lr) passes next to Saad & "
        "Solla's eps_g*; with a finite learning rate the lr^2 term of online SGD raises "
        "the plateau (to the symmetric fixed point of the SGD ODE, which the curve passes "
        "close to) and the plateau length in t scales like 1/lr (similar lr*t at escape). "
        + (f"The plateau is higher and, at lr = {lr0:g}, longer for larger K."
           if longer else "The plateau is higher for larger K."))


def _asymptotic_reading(data, cfg, noise, lr_show):
    Ks = cfg["asym_K"]
    rows = data["final"]

    def at(K, lr):
        return next(r for r in rows if r["K"] == K and r["lr"] == lr)

    def fin(v):
        return isinstance(v, float) and bool(np.isfinite(v))

    lrs = [float(v) for v in cfg["asym_lrs"]]
    lo, hi = lrs[0], lrs[-1]
    table = "; ".join(
        f"K = {K}: eps_g = {at(K, lo)['eps_g']:.3g} at lr = {lo:g}, {at(K, hi)['eps_g']:.3g} "
        f"at lr = {hi:g}" for K in Ks if fin(at(K, lo)["eps_g"]) and fin(at(K, hi)["eps_g"]))
    ratio = "; ".join(f"K = {K}: {at(K, lo)['slope_ratio']:.4f}" for K in Ks
                      if "slope_ratio" in at(K, lo))
    kM = [r for r in rows if r["K"] == _M_ASYM and fin(r.get("fixed_point_eps_g"))]
    fp = max((abs(r["fixed_point_eps_g"] / r["eps_g"] - 1) for r in kM), default=float("nan"))
    drifts = {K: [abs(at(K, lr)["drift"]) for lr in lrs if fin(at(K, lr)["drift"])]
              for K in Ks}
    drift = "; ".join(f"K = {K}: {100 * max(v):.2g} %" for K, v in drifts.items() if v)
    small = data["small_lr_check"]
    headline = (
        f"With label noise sigma^2 = {noise:g}, the error reached by online SGD grows with "
        "the learning rate and with the student width K (Goldt et al. 2019), about "
        "lr sigma^2 K / (2 sqrt(3) pi) at small lr; for K > M it still decays slowly at "
        f"lr*t = {cfg['asym_horizon']:g}.")
    cos = [r["worst_pair_cosine"] for r in rows if "worst_pair_cosine" in r]
    cos = f" (largest such cosine over the K > M runs: {max(cos):.4f})" if cos else ""
    return headline, (
        f"Online SGD with label noise sigma^2 = {noise:g} does not reach eps_g = 0: the "
        "noise keeps the weights fluctuating and eps_g settles at a level that grows with "
        "the learning rate and with the student width K. Goldt et al. (NeurIPS 2019) report "
        "this for sigmoidal students trained on the first layer only: the final "
        "generalisation error increases with lr and with K in the presence of noise, so "
        "over-parameterisation hurts online SGD. Here: "
        f"{table}. At the smallest lr, eps_g / (lr sigma^2 K) = {ratio}; the dotted guides "
        "are lr sigma^2 K / (2 sqrt(3) pi), the small-lr limit for K = M (stationary SGD "
        "noise at the teacher: weight covariance (lr sigma^2 / 2d) I, eps_g = tr(H Sigma) / "
        "2 with tr H = d K E[g'(v)^2] = d K 2 / (sqrt(3) pi)); the K = M = "
        f"{_M_ASYM} fixed point of the SGD ODE at lr = {small['lr']:g} gives "
        f"{small['ratio']:.5f} against {1 / (2 * math.sqrt(3) * math.pi):.5f}. For K = M the "
        "run has converged: Newton's method on the SGD ODE from its end state finds a "
        f"fixed point with the same eps_g (largest relative difference {fp:.1e}). For K > M "
        "it has not, and cannot: the superfluous units form pairs w_j ~ -w_k whose outputs "
        f"cancel (erf is odd){cos}, a flat direction along which the lr^2 noise term makes their "
        "norm grow without bound; as they saturate, their noise contribution decays slowly "
        "(a power law in t), so eps_g keeps drifting down towards the K = M value. Relative "
        f"change of eps_g between lr*t = {cfg['asym_horizon'] / 2:g} and "
        f"{cfg['asym_horizon']:g}, largest over lr: {drift}. The left panel therefore shows "
        f"eps_g after a fixed amount of learning, lr*t = {cfg['asym_horizon']:g}: the "
        "asymptote for K = M, a slowly decaying value for K > M (on this horizon nearly "
        f"linear in K); the right panel shows the time course at lr = {lr_show:g}.")


def _check_args(out, formats, seed, noise):
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(dict.fromkeys(formats))  # keep order, drop repeats
    if not formats:
        raise ValueError(f"formats must name at least one of {', '.join(FORMATS)}")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"formats must be a comma-separated subset of {','.join(FORMATS)}, "
                         f"got {bad[0]!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    noise = finite_float(noise, "noise", lo=0, lo_open=True, hi=1.0)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a directory")
    return out, formats, int(seed), noise


def make_committee_figures(out="committee_out", quick=False, formats=("png", "pdf"), seed=0,
                           noise=_NOISE):
    """Compute and write the two committee-machine figures.

    Parameters
    ----------
    out : path
        Output directory (created).  Written: ``committee_plateau.{png,pdf,csv,json}``
        and ``committee_asymptotic.{...}`` (each figure's files land together,
        atomically, after all its data is computed).
    quick : bool
        Smaller runs (about 10 s of CPU in all): the plateau at lr = 0.5 only; three
        learning rates (0.05, 0.2, 0.8) and lr*t up to 2000 for the asymptotic figure.
        Full (about 25 s): the plateau at lr = 0.1 and 0.5; six learning rates from 0.02
        to 1 and lr*t up to 1e4.  Plateau runs go to lr*t = 1000 (t = 1000 / lr).
    formats : str or sequence of str
        Image formats, a subset of :data:`FORMATS` (``"png,pdf"`` or a list).  The CSV
        and JSON files are always written.
    seed : int >= 0
        Root seed of the random starts: ``SeedSequence(seed, spawn_key=(figure, K))``
        with figure 1 (plateau) or 2 (asymptotic).
    noise : float in (0, 1]
        Label-noise variance sigma^2 of the asymptotic figure.

    Returns
    -------
    dict
        ``{"committee_plateau": {...}, "committee_asymptotic": {...}}``, each with
        ``files`` (paths), ``wall_time_s`` and ``summary`` (the numbers of the JSON).

    Raises
    ------
    ValueError
        Unknown format, negative or non-integer seed, noise out of range, ``out`` an
        existing file; nothing is written then.

    Notes
    -----
    Time ``t = samples / d`` (Saad & Solla's alpha), SGD step ``lr / d``, loss
    ``(f - y)^2 / 2``, ``eps_g = risk - noise / 2``.  The runs use
    :func:`symflow.simulate` with ``model=Model("erf(z/sqrt(2))", K, M,
    loss_scale=0.5, noise=...)`` and ``lr=`` (the online-SGD ODE), on weights built by
    :func:`weights_from_overlaps` (plateau) or Gaussian weights in dimension K + M
    (asymptotic: overlaps of order one, so no long symmetric plateau).  Sources: Saad &
    Solla, Phys. Rev. E 52, 4225 (1995); Goldt et al., NeurIPS 2019.
    """
    quick = bool(quick)
    out, formats, seed, noise = _check_args(out, formats, seed, noise)
    cfg = _SETTINGS[quick]
    out.mkdir(parents=True, exist_ok=True)
    base = dict(versions=_versions(), seed=seed, quick=quick, argv=list(sys.argv),
                conventions=dict(activation=ACTIVATION, loss_scale=LOSS_SCALE,
                                 time="t = samples / d (Saad & Solla's alpha)",
                                 sgd_step="lr / d per fresh sample x ~ N(0, I_d)",
                                 eps_g="risk - loss_scale * noise",
                                 overlaps="Q = W^T W, M = W^T W* (R), P = W*^T W* (T)"))
    summary = {}

    def finish(name, fig, cols, rows, params, extra, reading, t0):
        headline, reading = reading
        csv_text = _csv_text(cols, rows)
        wall = time.perf_counter() - t0
        meta = dict(base, figure=name, parameters=params, summary=extra, headline=headline,
                    reading=reading,
                    wall_time_s=wall)
        json_text = json.dumps(meta, indent=1, default=_json_default)
        writers = {out / f"{name}.{ext}": (lambda tmp, ext=ext: fig.savefig(
            tmp, format=ext, dpi=120)) for ext in formats}
        writers[out / f"{name}.csv"] = lambda tmp: _write_text(tmp, csv_text)
        writers[out / f"{name}.json"] = lambda tmp: _write_text(tmp, json_text)
        try:
            atomic_write_many(writers)
        finally:
            _plt().close(fig)
        summary[name] = dict(files=[str(p) for p in writers], wall_time_s=wall,
                             summary=extra)

    t0 = time.perf_counter()
    data = _plateau_data(cfg, seed)
    rows = []
    for c in data["curves"]:
        rows += [dict(K=c["K"], dynamics=c["dynamics"], lr=c["lr"], t=t, lr_t=c["lr"] * t,
                      eps_g=e) for t, e in zip(c["t"], c["eps"])]
    params = dict(K=list(cfg["plateau_K"]), M="K", T="identity", lrs=list(cfg["plateau_lrs"]),
                  lr_t_max=cfg["plateau_lr_t"], points=cfg["plateau_points"] + 1, rtol=_RTOL,
                  noise=0.0, start="Q_ii ~ U(0.2, 0.5), Q_ik (i < k) and R_in ~ U(0, 1e-3), "
                  "weights built by weights_from_overlaps; seed of K: SeedSequence(seed, "
                  "spawn_key=(1, K))",
                  gradient_flow=f"simulate(model=...) without lr at times lr * t, "
                  f"lr = {max(cfg['plateau_lrs']):g}",
                  start_overlaps={str(K): dict(Q=v["Q0"], R=v["R0"])
                                  for K, v in data["K"].items()})
    extra = {f"K={K}": dict(eps_star=v["eps_star"], runs=v["runs"])
             for K, v in data["K"].items()}
    fig = _plateau_figure(data, cfg)
    finish("committee_plateau", fig, ["K", "dynamics", "lr", "t", "lr_t", "eps_g"], rows,
           params, extra, _plateau_reading(data, cfg), t0)

    t0 = time.perf_counter()
    data = _asymptotic_data(cfg, seed, noise)
    lrs = [float(v) for v in cfg["asym_lrs"]]
    lr_show = min(lrs, key=lambda v: abs(math.log(v / 0.2)))
    rows = [dict(kind="final", K=r["K"], M=_M_ASYM, lr=r["lr"], noise=noise,
                 lr_t=cfg["asym_horizon"], eps_g=r["eps_g"]) for r in data["final"]]
    for c in data["curves"]:
        rows += [dict(kind="curve", K=c["K"], M=_M_ASYM, lr=c["lr"], noise=noise, t=t,
                      lr_t=tau, eps_g=e) for t, tau, e in zip(c["t"], c["tau"], c["eps"])]
    params = dict(K=list(cfg["asym_K"]), M=_M_ASYM, T="identity", noise=noise, lrs=lrs,
                  horizon_lr_t=cfg["asym_horizon"], points=int(data["tau"].size),
                  rtol=1e-6, solver="BDF", second_layer="a = a* = 1 (fixed)",
                  start="Gaussian W0 in dimension K + M, entries N(0, 1/(K + M)); teacher "
                  "the first M unit vectors; seed of K: SeedSequence(seed, spawn_key=(2, K))",
                  guide="lr * sigma^2 * K / (2 sqrt(3) pi)")
    extra = dict(final=data["final"], lr_shown_in_time_panel=lr_show,
                 small_lr_check=data["small_lr_check"])
    fig = _asymptotic_figure(data, cfg, noise, lr_show)
    finish("committee_asymptotic", fig, ["kind", "K", "M", "lr", "noise", "t", "lr_t", "eps_g"],
           rows, params, extra, _asymptotic_reading(data, cfg, noise, lr_show), t0)
    return summary


# --------------------------------------------------------------------------- CLI


def _handler(args):
    t0 = time.perf_counter()
    s = make_committee_figures(out=args.out, quick=args.quick, formats=args.format,
                               seed=args.seed)
    if args.json:
        from symflow.apps.cli import emit_json

        figs = [dict(figure=k, files=v["files"], wall_time_s=v["wall_time_s"])
                for k, v in s.items()]
        emit_json(args, {"figures": figs, "quick": args.quick, "seed": args.seed,
                         "formats": [f.strip() for f in args.format.split(",") if f.strip()]},
                  out=args.out, files=[f for g in figs for f in g["files"]])
        return 0
    for name, v in s.items():
        print(f"{name}: {v['wall_time_s']:6.2f} s -> {', '.join(v['files'])}")
    print(f"total {time.perf_counter() - t0:.2f} s")
    return 0


def add_cli(subparsers):
    """Add the ``committee`` subcommand to the ``symflow`` argparse subparsers.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``ArgumentParser.add_subparsers``; its parser class turns argparse errors
        into one-line messages.

    Returns
    -------
    argparse.ArgumentParser
        The ``committee`` parser, with ``func`` set to a handler ``handler(args) -> int``
        (raises ValueError on bad values, e.g. ``--format gif``).
    """
    from symflow.apps.cli import HelpFormatter, _seed

    p = subparsers.add_parser(
        "committee", formatter_class=HelpFormatter,
        help="soft committee machines: Saad-Solla plateau, noisy SGD asymptotics (PNG, PDF, "
        "CSV, JSON)",
        description="The classic erf soft-committee results with the online-SGD ODE: the "
        "symmetric plateau and its escape (K = M = 2, 3; Saad & Solla 1995) and the "
        "generalisation error of over-parameterised students under label noise against "
        "the learning rate (M = 2, K = 2, 4, 8; Goldt et al. 2019).  Writes "
        "committee_plateau.* and committee_asymptotic.* (images, CSV, JSON with a "
        "reading of the figure).  Full run about 25 s, --quick about 10 s.")
    p.add_argument("--out", default="committee_out", help="output directory")
    p.add_argument("--quick", action="store_true", help="fewer and shorter runs (~10 s)")
    p.add_argument("--format", default="png,pdf",
                   help=f"image formats, comma-separated subset of {','.join(FORMATS)} "
                   "(CSV and JSON are always written; default png,pdf)")
    p.add_argument("--json", action="store_true", help="print the written files as JSON")
    p.add_argument("--seed", type=_seed, default=0, help="root seed of the random starts")
    p.set_defaults(func=_handler)
    return p
