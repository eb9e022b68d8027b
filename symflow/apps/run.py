"""The main job: one gradient-flow run from a seeded instance, written to a directory.

``symflow run`` defaults reproduce one repetition of the top panel of the paper's
Figures 2/3 at d = 200: orthonormal start and teacher, (m, m*) = (d/2, d/4),
gamma in (0, 10] (MATH.md section 8).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from symflow._io import atomic_write
from symflow._validate import finite_float, positive_int
from symflow._validate import rng as _rng
from symflow.numerics import init as _init

__all__ = ["make_instance", "run_job", "simulate_instance", "resolve_method", "time_grid_gamma"]

INITS = ("orthonormal", "gaussian", "gaussian-raw", "degenerate")


def make_instance(d, m, m_star, init="orthonormal", teacher="orthonormal", seed=0):
    """Seeded student start W0 (d, m) and teacher W* (d, m*).

    ``init``/``teacher``: "orthonormal" (Haar, columns / sqrt(k)), "gaussian" (entries
    N(0, 1/(d k))), "gaussian-raw" (N(0, 1/k)), "degenerate" (gaussian with input
    direction 0 removed).  Student and teacher use independent streams spawned from
    ``seed`` (numpy SeedSequence).

    Parameters
    ----------
    d, m, m_star : int
        Input dimension, student and teacher widths.
    init, teacher : str
        One of ``INITS``.
    seed : int
        Seed of the numpy SeedSequence.

    Returns
    -------
    W0 : ndarray (d, m)
    W_star : ndarray (d, m_star)

    Raises
    ------
    ValueError
        Unknown init name, or orthonormal with k > d.
    """
    for name, val in (("init", init), ("teacher", teacher)):
        if val not in INITS:
            raise ValueError(f"{name} must be one of {INITS}, got {val!r}")
    _rng(seed, "seed")  # one error scheme for bad seeds (TypeError / ValueError)
    s_student, s_teacher = np.random.SeedSequence(seed).spawn(2)

    def build(kind, k, ss):
        rng = np.random.default_rng(ss)
        if kind == "orthonormal":
            return _init.orthonormal(d, k, seed=rng)
        if kind == "gaussian-raw":
            return _init.gaussian(d, k, seed=rng, normalize=False)
        W = _init.gaussian(d, k, seed=rng)
        return _init.degenerate(W) if kind == "degenerate" else W

    return build(init, m, s_student), build(teacher, m_star, s_teacher)


def time_grid_gamma(gamma_max, points):
    """Output grid in gamma = t / d.

    Parameters
    ----------
    gamma_max : float > 0
        Last point.
    points : int >= 2
        Number of points: 0, then ``points - 1`` log-spaced values from
        ``gamma_max * 1e-4`` to ``gamma_max`` (just ``[0, gamma_max]`` for 2).

    Returns
    -------
    ndarray (points,)

    Raises
    ------
    ValueError, TypeError
        Bad ``gamma_max`` or ``points``.
    """
    gamma_max = finite_float(gamma_max, "gamma_max", lo=0, lo_open=True)
    points = positive_int(points, "points", minimum=2)
    if points > 10**6:
        raise ValueError(f"points must be <= 1e6, got {points}")
    if points == 2:
        return np.array([0.0, gamma_max])
    return np.concatenate([[0.0], np.geomspace(gamma_max * 1e-4, gamma_max, points - 1)])


def resolve_method(method, init, teacher, general):
    """The simulation method ``run_job`` and the sweeps use.

    Parameters
    ----------
    method : {"auto", "exact", "overlaps", "weights", "gd"}
    init, teacher : str
        Start and teacher kinds (see :func:`make_instance`).
    general : bool
        True for a general model (activation, noise, weight decay) or online SGD.

    Returns
    -------
    str
        "auto" resolves to "exact" for the paper's gradient flow (any start and teacher:
        the exact reduction of MATH.md section 5), else "overlaps"; other methods are
        returned unchanged.

    Raises
    ------
    ValueError
        ``method="exact"`` with a general model or online SGD.
    """
    if general and method == "exact":
        raise ValueError('method="exact" is only for the paper\'s quadratic gradient flow; use '
                         'method="overlaps" (or "auto") with activation/noise/weight_decay/lr')
    if method == "auto":
        return "overlaps" if general else "exact"
    return method


def simulate_instance(d, m, m_star, gamma, init="orthonormal", teacher="orthonormal", seed=0,
                      method="auto", rtol=1e-10, eta=1e-2, progress=False, activation=None,
                      teacher_activation=None, noise=0.0, weight_decay=0.0, lr=None, atol=None,
                      solver="auto", max_time=600.0):
    """One simulation from the seeded instance of :func:`make_instance` (no files written).

    This is the computation of :func:`run_job` and of each cell of a ``simulate`` sweep.

    Parameters
    ----------
    d, m, m_star : int
        Input dimension and widths.
    gamma : array_like (n,)
        Output times in gamma = t / d (non-negative, increasing).
    init, teacher, seed :
        See :func:`make_instance`.
    method : {"auto", "exact", "overlaps", "weights", "gd"}
        See :func:`resolve_method`.
    rtol, atol, solver, eta, progress, max_time :
        Passed to :func:`symflow.numerics.simulators.simulate` (eta only for "gd";
        max_time only for "overlaps" / "weights" / "gd").
    activation, teacher_activation : str, optional
        Polynomial activations of a general :class:`symflow.Model` (default: the
        paper's z**2 with no model object); ``noise``, ``weight_decay`` likewise.
    lr : float, optional
        Online SGD limit with step lr/d (t = samples / d).

    Returns
    -------
    Trajectory
        With ``meta`` also holding init, teacher, the resolved method and the wall time
        of the simulation (``wall_time_s``, without the model derivation).

    Raises
    ------
    ValueError, TypeError
        Bad parameters (see :func:`symflow.numerics.simulators.simulate`).
    """
    from symflow.numerics.simulators import simulate

    model = None
    if activation is not None or teacher_activation is not None or noise or weight_decay:
        from symflow.numerics.model import Model

        model = Model(activation or "z**2", m, m_star, teacher_activation=teacher_activation,
                      noise=noise, weight_decay=weight_decay)
    method = resolve_method(method, init, teacher, model is not None or lr is not None)
    W0, Ws = make_instance(d, m, m_star, init, teacher, seed)
    t0 = time.perf_counter()
    traj = simulate(W0, Ws, gamma=gamma, method=method, rtol=rtol, atol=atol, solver=solver,
                    eta=eta if method == "gd" else None, seed=seed, progress=progress,
                    model=model, lr=lr,
                    max_time=max_time if method in ("overlaps", "weights", "gd") else None)
    traj.meta.update(init=init, teacher=teacher, wall_time_s=time.perf_counter() - t0)
    return traj


def plot_run(traj, path):
    """Plot risk, phi and chi against gamma (log-x) into a PNG (atomic write).

    Each panel has its y label; the title names d, m, m*, init, teacher, seed and method.

    Parameters
    ----------
    traj : Trajectory
        With ``meta`` holding d, m, m_star and method (and init, teacher, seed, model,
        lr, shown in the title when present).
    path : path-like
        Output PNG.

    Returns
    -------
    None
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = traj.gamma > 0
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    labels = {"risk": r"population risk $L$", "phi": r"$\varphi_d(\gamma)$",
              "chi": r"overlap $\chi_d(\gamma)$"}
    titles = {"risk": "risk (log scale)", "phi": r"$\varphi = \int_0^t \tau\,ds$",
              "chi": r"$\chi = \|M\|_F^2 / (\|Q\|_F \|P\|_F)$"}
    for ax, name in zip(axes, ("risk", "phi", "chi")):
        ax.plot(traj.gamma[sel], getattr(traj, name)[sel])
        ax.set_xscale("log")
        ax.set_xlabel(r"$\gamma = t/d$")
        ax.set_ylabel(labels[name])
        ax.set_title(titles[name], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    m = traj.meta
    extra = "" if m.get("model") in (None, "quadratic (paper)") else f", {m['model']}"
    sgd = "" if m.get("lr") is None else f", online SGD lr={m['lr']:g}"
    fig.suptitle(f"d={m['d']}, m={m['m']}, m*={m['m_star']}, init={m.get('init', '?')}, "
                 f"teacher={m.get('teacher', '?')}, seed={m.get('seed')}, "
                 f"method={m['method']}{sgd}{extra}", fontsize=10)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def run_job(d=200, m=100, m_star=50, init="orthonormal", teacher="orthonormal", seed=0,
            gamma_max=10.0, points=400, method="auto", out="symflow-run", progress=True,
            rtol=1e-10, eta=1e-2, plot=True, activation=None, teacher_activation=None,
            noise=0.0, weight_decay=0.0, lr=None, atol=None, solver="auto", max_time=600.0):
    """Run one simulation and write ``out``/trajectory.csv, meta.json and run.png.

    Parameters
    ----------
    d, m, m_star : int
        Input dimension and widths.
    init, teacher : str
        See :func:`make_instance`.
    seed : int
        Seed of the instance.
    gamma_max : float
        Horizon in gamma = t / d.
    points : int
        Number of output times (0 and log-spaced values).
    method : {"auto", "exact", "overlaps", "weights", "gd"}
        "auto": exact for the paper's gradient flow, overlaps for general models / SGD.
    out : path
        Output directory (created).
    eta : float
        Step for method="gd"; the output times are then rounded to the step grid
        (duplicates dropped, so there may be fewer than ``points``).
    rtol, atol, solver, max_time :
        Passed to :func:`symflow.numerics.simulators.simulate` (atol None: scaled to the
        state; solver "auto": DOP853 switching to LSODA when stiff; max_time: a budget
        in seconds, the run stops early with an estimate if projected beyond it).
    activation, teacher_activation : str, optional
        Polynomial activations for a general :class:`symflow.Model` (default: the
        paper's z**2 with no model object); ``noise``, ``weight_decay`` likewise.
    lr : float, optional
        Online SGD limit with step lr/d (t = samples / d); implies method="overlaps".

    Returns
    -------
    dict
        Summary: final risk, chi, phi, wall time, paths.

    Raises
    ------
    ValueError
        Bad parameters (see :func:`symflow.numerics.simulators.simulate`).
    """
    d, m, m_star = (positive_int(v, n) for v, n in ((d, "d"), (m, "m"), (m_star, "m_star")))
    gam = time_grid_gamma(gamma_max, points)
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a directory")
    general = activation is not None or teacher_activation is not None or bool(noise) or \
        bool(weight_decay) or lr is not None
    if resolve_method(method, init, teacher, general) == "gd":
        # output times on the step grid (regression: the default log grid rounded to
        # repeated steps, so `symflow run --method gd` always failed)
        eta = finite_float(eta, "eta", lo=0, lo_open=True)
        gam = np.unique(np.rint(gam * d / eta)) * eta / d
        if gam.size < 2:
            raise ValueError(f"eta={eta:g} is too coarse: the horizon t = {gamma_max * d:g} "
                             "is less than one step of gradient descent")
    traj = simulate_instance(d, m, m_star, gam, init=init, teacher=teacher, seed=seed,
                             method=method, rtol=rtol, atol=atol, solver=solver, eta=eta,
                             progress=progress, activation=activation,
                             teacher_activation=teacher_activation, noise=noise,
                             weight_decay=weight_decay, lr=lr, max_time=max_time)
    elapsed, method = traj.meta["wall_time_s"], traj.meta["method"]
    traj.meta.update(gamma_max=gamma_max, points=points)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    traj.to_csv(out / "trajectory.csv")
    atomic_write(out / "meta.json", lambda tmp: Path(tmp).write_text(
        json.dumps(traj.meta, indent=2, sort_keys=True, default=str) + "\n"))
    if plot:
        plot_run(traj, out / "run.png")
    return {"d": d, "m": m, "m_star": m_star, "method": method, "seed": seed,
            "gamma_max": gamma_max, "final_risk": float(traj.risk[-1]),
            "final_chi": float(traj.chi[-1]), "final_phi": float(traj.phi[-1]),
            "wall_time_s": elapsed, "out": str(out)}
