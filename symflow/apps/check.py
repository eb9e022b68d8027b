"""``symflow check``: high-precision verification suite.

Every ``_check_*`` function takes ``(quick, dps)`` and returns ``(max_error, tolerance)``.

Each check compares two independent computations and reports the largest error
against a tolerance set by the method:

- numpy vs mpmath kernels (both generated from one derivation by different backends:
  einsum vs explicit loops) at random points;
- numpy solvers at tight rtol vs the mpmath solvers (``mpmath.odefun``);
- mpmath solver at ``dps`` vs ``dps + 10`` (its own accuracy, target dps - 5 digits);
- Theta' closed form vs ``mpmath.quad`` of the Wachter density;
- the Isserlis identity E[(x^T A x)^2] = (tr A)^2 + 2 tr A^2 exactly in rationals;
- limit values vs the MATH.md reference table and vs finite-d extrapolation.

Source: MATH.md sections 2-6.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["CheckResult", "run_checks", "CHECKS", "check_names", "select_checks", "format_table",
           "to_json"]


@dataclass
class CheckResult:
    """One row of the check table (``seconds``: wall time, ``cpu_seconds``: CPU time)."""

    name: str
    max_error: float
    tolerance: float
    passed: bool
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _mp_to_np(x):
    import mpmath

    if isinstance(x, mpmath.matrix):
        return np.array(x.tolist(), dtype=float)
    return float(x)


# ------------------------------------------------------------------------- kernels
def _random_overlaps(rng, d, m, ms):
    W = rng.standard_normal((d, m)) / np.sqrt(d * m)
    Ws = rng.standard_normal((d, ms)) / np.sqrt(d * ms)
    return W, Ws


def _check_model_kernels(quick, dps):
    """numpy vs mpmath generated kernels of the paper's model (relative, worst case)."""
    import mpmath

    from symflow.generated import quadratic_mpmath as KM
    from symflow.generated import quadratic_numpy as KN

    rng = np.random.default_rng(2024)
    shapes = [(1, 1, 1), (3, 2, 1), (5, 2, 4), (6, 4, 3)]
    if not quick:
        shapes += [(12, 7, 5), (9, 9, 9)]
    err = 0.0
    with mpmath.workdps(dps):
        for d, m, ms in shapes:
            W, Ws = _random_overlaps(rng, d, m, ms)
            Q, M, P = W.T @ W, W.T @ Ws, Ws.T @ Ws
            mQ, mM, mP = (mpmath.matrix(A.tolist()) for A in (Q, M, P))
            err = max(err, _rel(KN.risk_from_overlaps(Q, M, P),
                                _mp_to_np(KM.risk_from_overlaps(mQ, mM, mP))))
            for a, b in zip(KN.overlap_grad(Q, M, P), KM.overlap_grad(mQ, mM, mP)):
                err = max(err, _rel(a, _mp_to_np(b)))
            for a, b in zip(KN.overlap_flow(Q, M, P), KM.overlap_flow(mQ, mM, mP)):
                err = max(err, _rel(a, _mp_to_np(b)))
            err = max(err, _rel(KN.weight_grad(W, Ws), _mp_to_np(
                KM.weight_grad(mpmath.matrix(W.tolist()), mpmath.matrix(Ws.tolist())))))
    return err, 1e-12


def _check_limit_kernels(quick, dps):
    """numpy vs mpmath generated closed forms of the limit at random admissible points."""
    import mpmath

    from symflow.generated import limit_mpmath as KM
    from symflow.generated import limit_numpy as KN
    from symflow.numerics.wachter import wachter_edges

    rng = np.random.default_rng(7)
    n = 20 if quick else 100
    err = 0.0
    with mpmath.workdps(dps):
        for _ in range(n):
            a, s = rng.uniform(0.05, 1.0, size=2)
            r1, r2 = wachter_edges(a, s)
            if r2 - r1 < 1e-6:
                continue
            u, v = rng.uniform(0.01, 1.0, size=2)
            x = rng.uniform(0.0, 5.0)
            lam = rng.uniform(r1, r2)
            mr1, mr2 = mpmath.mpf(r1), mpmath.mpf(r2)
            pairs = [
                (KN.jtheta_prime(u, r1, r2), KM.jtheta_prime(mpmath.mpf(u), mr1, mr2)),
                (KN.theta_prime(x, r1, r2), KM.theta_prime(mpmath.mpf(x), mr1, mr2)),
                (KN.overlap_k(u, v, r1, r2), KM.overlap_k(mpmath.mpf(u), mpmath.mpf(v), mr1,
                                                          mr2)),
                (KN.wachter_density(lam, r1, r2), KM.wachter_density(mpmath.mpf(lam), mr1, mr2)),
                (KN.limit_dlogf(v, x + 0.1, a), KM.limit_dlogf(mpmath.mpf(v),
                                                              mpmath.mpf(x + 0.1), mpmath.mpf(a))),
            ]
            for p_np, p_mp in pairs:
                err = max(err, _rel(p_np, float(mpmath.re(p_mp))))
    return err, 1e-12


# ----------------------------------------------------------------- closed forms
def _check_theta_prime_quad(quick, dps):
    """Theta'(x) closed form (float path) vs mpmath.quad of the Wachter density."""
    import mpmath

    from symflow.numerics.wachter import theta_prime, wachter_edges

    cases = [(0.5, 0.25), (0.5, 0.5), (0.25, 0.5), (0.7, 0.6)]
    if not quick:
        cases += [(0.3, 0.7), (1.0, 0.4), (0.2, 0.2), (0.9, 0.95), (0.05, 0.6)]
    xs = [-0.5, 0.0, 0.7, 3.0, 50.0] if quick else [-0.9, -0.5, 0.0, 0.3, 1.0, 3.0, 50.0, 1e4]
    err = 0.0
    with mpmath.workdps(dps):
        for a, s in cases:
            r1, r2 = (mpmath.mpf(v) for v in wachter_edges(a, s))
            for x in xs:
                def integrand(lam, r1=r1, r2=r2, x=x):
                    dens = mpmath.sqrt((r2 - lam) * (lam - r1)) / (2 * mpmath.pi * lam * (1 - lam))
                    return dens * lam / (1 + x * lam)
                ref = mpmath.quad(integrand, [r1, r2])
                err = max(err, abs(float(theta_prime(x, a, s)) - float(ref))
                          / max(abs(float(ref)), 1e-300))
    return err, 1e-12


def _check_isserlis(quick, dps):
    """E[(x^T A x)^2] = (tr A)^2 + 2 tr(A^2) exactly in rationals (x ~ N(0, I))."""
    import sympy as sp

    from symflow.engine.moments import expect

    rng = np.random.default_rng(11)
    worst = 0
    for n in ((2, 3) if quick else (2, 3, 4, 5)):
        vals = rng.integers(-9, 10, size=(n, n))
        dens = rng.integers(1, 7, size=(n, n))
        A = sp.Matrix(n, n, lambda i, j: sp.Rational(int(vals[min(i, j), max(i, j)]),
                                                     int(dens[min(i, j), max(i, j)])))
        xs = sp.symbols(f"x0:{n}")
        xv = sp.Matrix(xs)
        lhs = expect(sp.expand((xv.T * A * xv)[0, 0] ** 2), xs, sp.eye(n))
        rhs = A.trace() ** 2 + 2 * (A * A).trace()
        if not isinstance(lhs, sp.Rational):
            return float("inf"), 0.0
        worst = max(worst, abs(lhs - rhs))
    return float(worst), 0.0


# ------------------------------------------------------------------------- solvers
def _instance(d, m, ms, seed):
    from symflow.numerics.init import orthonormal

    return orthonormal(d, m, seed=seed), orthonormal(d, ms, seed=seed + 1)


def _check_overlaps_solver(quick, dps):
    """simulate(method="overlaps", rtol=1e-13) vs the mpmath overlap solver (phi, chi, risk)."""
    from symflow.numerics.precision import overlaps_mp
    from symflow.numerics.simulators import simulate

    d, m, ms = (6, 2, 1) if quick else (8, 3, 2)
    W0, Ws = _instance(d, m, ms, 3)
    t = [0.0, 0.5 * d, d] if quick else [0.0, 0.5 * d, d, 2.0 * d]
    ref = overlaps_mp(W0, Ws, t, dps)
    tr = simulate(W0, Ws, t, method="overlaps", rtol=1e-13, atol=1e-16)
    err = max(float(np.max(np.abs(getattr(tr, k) - np.array(ref[k], dtype=float))))
              for k in ("phi", "chi", "risk"))
    return err, 1e-9


def _check_exact_solver(quick, dps):
    """simulate(method="exact", rtol=1e-13) vs the mpmath exact reduction (phi, chi, risk)."""
    from symflow.numerics.precision import exact_mp
    from symflow.numerics.simulators import simulate

    d, m, ms = (6, 2, 1) if quick else (10, 4, 3)
    W0, Ws = _instance(d, m, ms, 5)
    t = [0.0, 0.25 * d] if quick else [0.0, 0.5 * d, d, 2.0 * d]
    ref = exact_mp(W0, Ws, t, dps)
    tr = simulate(W0, Ws, t, method="exact", rtol=1e-13, atol=1e-16)
    err = max(float(np.max(np.abs(getattr(tr, k) - np.array(ref[k], dtype=float))))
              for k in ("phi", "chi", "risk"))
    return err, 1e-9


def _limit_cases(quick):
    return [(0.5, 0.25)] if quick else [(0.5, 0.25), (0.5, 0.5), (0.25, 0.5), (0.75, 0.5)]


def _check_limit_solver(quick, dps):
    """limit(rtol=1e-13) vs limit(dps=...) (mpmath.odefun), phi and chi."""
    from symflow.numerics.highdim import limit

    g = [0.0, 0.5] if quick else [0.0, 0.5, 1.0, 2.0]
    err = 0.0
    for a, s in _limit_cases(quick):
        ref = limit(a, s, g, dps=dps)
        tr = limit(a, s, g, rtol=1e-13)
        for k in ("phi", "chi"):
            err = max(err, float(np.max(np.abs(getattr(tr, k) - np.array(getattr(ref, k),
                                                                          dtype=float)))))
    return err, 1e-9


def _check_limit_mp_digits(quick, dps):
    """mpmath limit at dps vs dps + 10 (its own accuracy): error <= 10^-(dps - 5), gamma = 1."""
    import mpmath

    from symflow.numerics.precision import limit_mp

    err = mpmath.mpf(0)
    g = [0.25] if quick else [1.0]
    for a, s in _limit_cases(True):
        lo = limit_mp(a, s, g, dps)
        hi = limit_mp(a, s, g, dps + 10)
        for k in ("phi", "chi"):
            with mpmath.workdps(dps + 10):
                err = max(err, abs(lo[k][0] - hi[k][0]))
    return float(err), 10.0 ** (-(dps - 5))


# Reference values of MATH.md section 6 (independent solver, accurate to ~1e-6)
_TABLE = {
    (0.5, 0.25): ((0.095078, 0.279260, 0.462015), (0.995715, 0.999311, 0.999852)),
    (0.5, 0.5): ((-0.544457, -0.667043, -0.692482), (0.907329, 0.984893, 0.999643)),
    (0.25, 0.5): ((-2.413721, -4.431188, -8.431523), (0.683820, 0.706633, 0.707107)),
}


def _check_limit_table(quick, dps):
    """limit() vs the MATH.md reference table (phi, chi at gamma = 0.5, 1, 2)."""
    from symflow.numerics.highdim import limit

    err = 0.0
    for (a, s), (phis, chis) in _TABLE.items():
        tr = limit(a, s, [0.5, 1.0, 2.0])
        err = max(err, float(np.max(np.abs(tr.phi - phis))), float(np.max(np.abs(tr.chi - chis))))
    return err, 2e-6


def _check_finite_d_extrapolation(quick, dps):
    """Limit phi, chi at gamma = 1 vs the exact finite-d flow extrapolated in 1/d.

    phi_d(1) averaged over seeds at several d is fitted by a + b/d; |a - phi_inf| is
    the error (finite-d corrections of linear statistics of the Jacobi ensemble are
    O(1/d), fluctuations O(1/d) too).  All runs of a case are one
    :func:`symflow.simulate_batch` call (method "exact"); measured 10-13 s wall for the
    full row, about 40% of it building the orthonormal instances (QR at d = 1600), the
    rest the principal angles and the joint solve.
    """
    from symflow.numerics.highdim import limit
    from symflow.numerics.simulators import simulate_batch

    ds = [50, 100, 200] if quick else [200, 400, 800, 1600]
    reps = 2 if quick else 4
    err = 0.0
    for a, s in ((0.5, 0.25),) if quick else ((0.5, 0.25), (0.5, 0.5), (0.75, 0.5)):
        lim = limit(a, s, [0.0, 1.0])
        inst = [_instance(d, int(round(a * d)), int(round(s * d)), 100 * r + d)
                for d in ds for r in range(reps)]
        trs = simulate_batch([w for w, _ in inst], [w for _, w in inst], gamma=[0.0, 1.0],
                             method="exact")
        for k in ("phi", "chi"):
            means = np.array([getattr(tr, k)[1] for tr in trs]).reshape(len(ds), reps).mean(1)
            coef = np.polyfit(1.0 / np.array(ds), means, 1)
            err = max(err, abs(coef[1] - getattr(lim, k)[1]))
    return err, 1e-2 if quick else 3e-3


CHECKS = [
    ("kernels: quadratic model numpy vs mpmath", _check_model_kernels),
    ("kernels: limit closed forms numpy vs mpmath", _check_limit_kernels),
    ("Theta' closed form vs mpmath.quad of the density", _check_theta_prime_quad),
    ("Isserlis identity in exact rationals", _check_isserlis),
    ("solver: overlaps (rtol 1e-13) vs mpmath", _check_overlaps_solver),
    ("solver: exact (rtol 1e-13) vs mpmath", _check_exact_solver),
    ("solver: limit (rtol 1e-13) vs mpmath", _check_limit_solver),
    ("mpmath limit: dps vs dps + 10", _check_limit_mp_digits),
    ("limit vs MATH.md reference table", _check_limit_table),
    ("limit vs finite-d extrapolation", _check_finite_d_extrapolation),
]


def check_names():
    """Names of the rows of the suite, in order (``CHECKS``)."""
    return [name for name, _ in CHECKS]


def select_checks(only=None):
    """The checks selected by ``only`` (case-insensitive substrings of the names).

    Parameters
    ----------
    only : iterable of str, optional
        Substrings; a check runs if its name contains any of them.  None or empty: all.

    Returns
    -------
    list of (name, function)

    Raises
    ------
    ValueError
        ``only`` matches no check (the message lists the names).
    TypeError
        ``only`` is a single string or holds a non-string.
    """
    if only is None:
        return list(CHECKS)
    if isinstance(only, str):
        raise TypeError(f"only must be a list of strings, got the string {only!r}")
    only = list(only)
    if any(not isinstance(o, str) for o in only):
        raise TypeError(f"only must hold strings, got {only!r}")
    if not only:
        return list(CHECKS)
    keys = [o.lower() for o in only]
    sel = [(n, fn) for n, fn in CHECKS if any(k in n.lower() for k in keys)]
    if not sel:
        raise ValueError(f"only={only!r} matches no check; the checks are: "
                         + "; ".join(check_names()))
    return sel


def run_checks(dps=30, quick=False, only=None, on_result=None):
    """Run the check suite.

    Parameters
    ----------
    dps : int in [15, 100] (symflow._validate.MAX_DPS_ODE: the cost grows steeply)
        Working precision of the mpmath references.
    quick : bool
        Smaller instances and fewer cases (CI; about 3 CPU-s, the full suite about 20).
    only : iterable of str, optional
        Case-insensitive substrings of check names to run (see :func:`select_checks`).
    on_result : callable, optional
        Called with each :class:`CheckResult` as soon as its check finishes (the CLI
        prints the row there), in the order of ``CHECKS``.

    Returns
    -------
    list of CheckResult
        ``seconds`` is the wall time of the row, ``cpu_seconds`` its CPU time.

    Raises
    ------
    ValueError, TypeError
        ``dps`` below 15 or not an integer; ``only`` matching nothing.

    Notes
    -----
    A check that raises is a failing row (error inf, the exception in its name).  BLAS
    is limited to one thread while the checks run (:mod:`symflow._threads`).
    """
    import mpmath

    from symflow._threads import blas_threads
    from symflow._validate import check_dps

    dps = check_dps(dps)
    selected = select_checks(only)
    out = []
    for name, fn in selected:
        t0, c0 = time.perf_counter(), time.process_time()
        with mpmath.workdps(dps), blas_threads(1):
            try:
                err, tol = fn(quick, dps)
            except Exception as exc:  # a crashing check is a failing check
                err, tol = float("inf"), 0.0
                name = f"{name} [{type(exc).__name__}: {exc}]"
        ok = bool(np.isfinite(err) and err <= tol)
        res = CheckResult(name, float(err), float(tol), ok, time.perf_counter() - t0,
                          time.process_time() - c0)
        out.append(res)
        if on_result is not None:
            on_result(res)
    return out


def format_header(width):
    """Header line of the check table; ``width`` is the width of the name column."""
    return f"{'check':<{width}}  {'max error':>10}  {'tolerance':>10}  pass   time"


def format_row(result, width):
    """One row of the check table (name, max error, tolerance, pass, wall seconds)."""
    r = result
    return (f"{r.name:<{width}}  {r.max_error:>10.2e}  {r.tolerance:>10.1e}  "
            f"{'yes' if r.passed else 'NO ':<4} {r.seconds:>6.1f}s")


def format_table(results):
    """Plain-text table of check results.

    Parameters
    ----------
    results : list of CheckResult

    Returns
    -------
    str
        Header and one row per check: name, max error, tolerance, pass, seconds.
    """
    w = max([len(r.name) for r in results] + [5])
    return "\n".join([format_header(w)] + [format_row(r, w) for r in results])


def to_json(results):
    """JSON text of check results.

    Parameters
    ----------
    results : list of CheckResult

    Returns
    -------
    str
        A JSON list of {name, max_error, tolerance, passed, seconds, cpu_seconds}
        (``symflow check --json`` wraps it in the common CLI object, key ``checks``).
    """
    return json.dumps([asdict(r) for r in results])
