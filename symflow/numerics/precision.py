"""High-precision (mpmath) solvers of the gradient flow and of its d -> infinity limit.

The overlap ODE (generated mpmath kernels, same derivation as the numpy ones), the
exact reduction and the limit system are integrated by
:func:`symflow.numerics.mpode.integrate`: Gragg-Bulirsch-Stoer extrapolation at
``dps + GUARD_DPS`` working digits with a local error tolerance of ``10^-dps`` per step
(relative for components above 1).  Set-up and observables are computed at the same
working precision; the returned numbers are rounded to ``dps`` digits.  Measured
accuracy: the results at ``dps`` and at ``dps + 10`` agree to about ``dps`` digits for
t <= 2 d on small instances (see ``symflow check``); we promise ``dps - 5`` digits for
gamma <= 2.

``integrator="odefun"`` selects the former path, ``mpmath.odefun`` at ``dps`` digits,
kept as an independent reference for tests and benchmarks: 13 to 53 times slower for the
limit and the exact reduction at dps 30-50, 1.4 to 3 times for the overlap ODE, whose
cost is the generated matrix kernel (about 1 ms a call at any precision; GBS calls it
more often than odefun, which calls it fewer times at many times the precision);
see ``benchmarks/bench_precision.py``.

Cost grows with the state size (``m^2 + m m*`` for "overlaps", two scalars for "exact")
and with the horizon: intended for verification on small instances, not production runs.

Source: MATH.md sections 4-6.
"""

from __future__ import annotations

import numpy as np

__all__ = ["simulate_mp", "overlaps_mp", "exact_mp", "to_mp_matrix"]


def to_mp_matrix(A):
    """Convert a matrix to ``mpmath.matrix`` (exact binary values of floats).

    Parameters
    ----------
    A : 2-D array, nested list or mpmath.matrix

    Returns
    -------
    mpmath.matrix

    Raises
    ------
    ValueError
        If ``A`` is not 2-D.
    """
    import mpmath

    if isinstance(A, mpmath.matrix):
        return A.copy()
    arr = np.asarray(A)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {arr.shape}")
    return mpmath.matrix([[mpmath.mpf(v) if not isinstance(v, mpmath.mpf) else v for v in row]
                          for row in arr.tolist()])


def _observables(Q, M, P):
    import mpmath

    from symflow.generated import quadratic_mpmath as K

    def fro2(A):
        return mpmath.fsum(A[i, j] ** 2 for i in range(A.rows) for j in range(A.cols))

    nq, nm, npp = fro2(Q), fro2(M), fro2(P)
    risk = K.risk_from_overlaps(Q, M, P)
    return risk, nm / mpmath.sqrt(nq * npp), mpmath.sqrt(max(nq - 2 * nm + npp, 0))


def _grid(times, name):
    """``times`` as a list of mpf, checked non-negative and non-decreasing (ValueError)."""
    import mpmath

    try:
        out = [mpmath.mpf(t) for t in times]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a sequence of real numbers, got {times!r}") from exc
    if not out:
        raise ValueError(f"{name} must not be empty")
    if out[0] < 0 or any(b < a for a, b in zip(out, out[1:])):
        raise ValueError(f"{name} must be >= 0 and non-decreasing")
    if any(not mpmath.isfinite(t) for t in out):
        raise ValueError(f"{name} must be finite")
    return out


def _check_dps(dps):
    from symflow._validate import check_dps

    return check_dps(dps)


def _check_integrator(integrator):
    from symflow.numerics.mpode import METHODS

    if integrator not in METHODS:
        raise ValueError(f"integrator must be one of {METHODS}, got {integrator!r}")


def _rounded(out, dps):
    """Round every list of ``out`` to ``dps`` digits (the stats entry is kept as is)."""
    import mpmath

    with mpmath.workdps(dps):
        return {k: (v if k == "stats" else [+x for x in v]) for k, v in out.items()}


def overlaps_mp(W0, W_star, times, dps=30, integrator="gbs"):
    """Overlap ODE (MATH.md section 4) in mpmath at ``dps`` digits.

    Parameters
    ----------
    W0 : array or mpmath.matrix, shape (d, m)
    W_star : array or mpmath.matrix, shape (d, m_star)
    times : sequence of float or mpf, non-decreasing, >= 0 (time t, not gamma)
    dps : int in [15, 100] (symflow._validate.MAX_DPS_ODE: the cost grows steeply)
        Decimal digits of the result (the work runs at ``dps + GUARD_DPS``).
    integrator : {"gbs", "odefun"}
        See :func:`symflow.numerics.mpode.integrate` ("odefun": the former, slow path).

    Returns
    -------
    dict
        Lists of mpf (rounded to ``dps`` digits), one entry per time: "t", "risk", "phi",
        "chi", "dist"; and "stats", the integrator statistics (dict).

    Raises
    ------
    ValueError, TypeError
        Bad ``times``, ``dps`` or ``integrator`` (named).
    """
    import mpmath

    from symflow.generated import quadratic_mpmath as K
    from symflow.numerics.mpode import GUARD_DPS, integrate

    dps = _check_dps(dps)
    _check_integrator(integrator)
    with mpmath.workdps(dps + GUARD_DPS):
        times = _grid(times, "times")
        W0, Ws = to_mp_matrix(W0), to_mp_matrix(W_star)
        m, ms = W0.cols, Ws.cols
        Q0, M0, P = W0.T * W0, W0.T * Ws, Ws.T * Ws
        trP = mpmath.fsum(P[i, i] for i in range(ms))
        nq = m * m

        def unpack(y):
            Q = mpmath.matrix(m, m)
            M = mpmath.matrix(m, ms)
            for i in range(m):
                for j in range(m):
                    Q[i, j] = y[i * m + j]
                for k in range(ms):
                    M[i, k] = y[nq + i * ms + k]
            return Q, M

        def rhs(_t, y):
            Q, M = unpack(y)
            dQ, dM = K.overlap_flow(Q, M, P)
            return ([dQ[i, j] for i in range(m) for j in range(m)]
                    + [dM[i, k] for i in range(m) for k in range(ms)]
                    + [mpmath.fsum(Q[i, i] for i in range(m)) - trP])

        y0 = ([Q0[i, j] for i in range(m) for j in range(m)]
              + [M0[i, k] for i in range(m) for k in range(ms)] + [mpmath.mpf(0)])
        ys, stats = integrate(rhs, y0, times, dps, method=integrator)
        out = {k: [] for k in ("t", "risk", "phi", "chi", "dist")}
        for t, y in zip(times, ys):
            Q, M = unpack(y)
            r, c, dd = _observables(Q, M, P)
            for k, v in zip(out, (t, r, y[-1], c, dd)):
                out[k].append(v)
    out["stats"] = stats
    return _rounded(out, dps)


def _orthonormalise(W):
    """mpmath QR of W * sqrt(k), signs fixed so the result is close to W * sqrt(k)."""
    import mpmath

    k = W.cols
    U, R = mpmath.qr(W * mpmath.sqrt(k), mode="skinny")
    for j in range(k):
        if R[j, j] < 0:
            for i in range(U.rows):
                U[i, j] = -U[i, j]
    return U


def exact_mp(W0, W_star, times, dps=30, integrator="gbs"):
    """Exact reduction of MATH.md section 5 in mpmath (orthonormal start and teacher).

    ``W0`` and ``W_star`` are re-orthonormalised at the working precision (they are
    only orthonormal to double precision when given as float arrays); the state
    (F, H = G e^{-4 t / m*}) is integrated by :func:`symflow.numerics.mpode.integrate`.

    Parameters
    ----------
    W0 : array or mpmath.matrix, shape (d, m), W0^T W0 = I/m
    W_star : array or mpmath.matrix, shape (d, m_star), W*^T W* = I/m*
    times : sequence, non-decreasing, >= 0 (time t)
    dps : int in [15, 100] (symflow._validate.MAX_DPS_ODE: the cost grows steeply)
    integrator : {"gbs", "odefun"}

    Returns
    -------
    dict
        Lists of mpf (rounded to ``dps`` digits): "t", "risk", "phi", "chi", "dist";
        and "stats", the integrator statistics (dict).

    Raises
    ------
    ValueError, TypeError
        Bad ``times``, ``dps`` or ``integrator`` (named).
    """
    import mpmath

    from symflow.numerics.mpode import GUARD_DPS, integrate

    dps = _check_dps(dps)
    _check_integrator(integrator)
    with mpmath.workdps(dps + GUARD_DPS):
        times = _grid(times, "times")
        U, Us = _orthonormalise(to_mp_matrix(W0)), _orthonormalise(to_mp_matrix(W_star))
        m, ms = U.cols, Us.cols
        A = U.T * Us
        lam, _ = mpmath.eigsy(A * A.T)
        lam = [min(max(v, mpmath.mpf(0)), mpmath.mpf(1)) for v in lam]
        four_m = mpmath.mpf(4) / m

        # state (F, H), H = G e^{-4 t / m*}, which stays O(t) (G grows like e^{4 t / m*});
        # e^{-2 phi} = e^{2 t} prod_k D_k^{-1/2}: one exp and one sqrt per evaluation
        def phi_of(t, F, G):
            return mpmath.fsum(mpmath.log(F * (1 - v) + G * v) for v in lam) / 4 - t

        def rhs(t, y):
            F, H = y
            E = mpmath.exp(4 * t / ms)
            prod = mpmath.fprod(F * (1 - v) + H * E * v for v in lam)
            e = four_m * mpmath.exp(2 * t) / mpmath.sqrt(prod)
            return [e, e - mpmath.mpf(4) / ms * H]

        one = mpmath.mpf(1)
        ys, stats = integrate(rhs, [one, one], times, dps, method=integrator)
        out = {k: [] for k in ("t", "risk", "phi", "chi", "dist")}
        for t, y in zip(times, ys):
            E = mpmath.exp(4 * t / ms)
            F, G = y[0], y[1] * E
            phi = phi_of(t, F, G)
            c = [mpmath.exp(-2 * phi) / (m * (F * (1 - v) + G * v)) for v in lam]
            v2 = [1 - v + E * v for v in lam]
            trZ = mpmath.fsum(ck * vk for ck, vk in zip(c, v2))
            nz2 = mpmath.fsum((ck * vk) ** 2 for ck, vk in zip(c, v2))
            zzs = E / ms * mpmath.fsum(ck * v for ck, v in zip(c, lam))
            dist2 = nz2 - 2 * zzs + one / ms
            risk = dist2 / 2 + (trZ - 1) ** 2 / 4
            chi = zzs / (mpmath.sqrt(nz2) / mpmath.sqrt(ms))
            for k, val in zip(out, (t, risk, phi, chi, mpmath.sqrt(max(dist2, 0)))):
                out[k].append(val)
    out["stats"] = stats
    return _rounded(out, dps)


def simulate_mp(W0, W_star, times, method="overlaps", dps=30, seed=None):
    """High-precision counterpart of :func:`symflow.numerics.simulators` (``dps=`` there).

    Parameters
    ----------
    W0, W_star : arrays (d, m), (d, m_star)
    times : 1-D array of times t
    method : {"overlaps", "exact"}
    dps : int in [15, 100] (symflow._validate.MAX_DPS_ODE: the cost grows steeply)
    seed : recorded in meta

    Returns
    -------
    Trajectory
        Object arrays of ``mpmath.mpf`` (t, gamma, risk, phi, chi, dist); Q, M None.

    Raises
    ------
    ValueError
        ``method`` not in {"overlaps", "exact"}, ``dps < 15``, or (exact) a start or
        teacher that is not orthonormal.

    Source: MATH.md sections 4-5.
    """
    import mpmath

    from symflow import __version__
    from symflow.numerics.simulators import Trajectory

    dps = _check_dps(dps)
    if method not in ("overlaps", "exact"):
        raise ValueError(f'dps is supported for method="overlaps" or "exact", got {method!r}')
    W0a, Wsa = (np.asarray(A.tolist() if isinstance(A, mpmath.matrix) else A, dtype=float)
                for A in (W0, W_star))
    d, m = W0a.shape
    if method == "exact":
        from symflow.numerics import exact as ex

        for A, Aa, name in ((W0, W0a, "W0"), (W_star, Wsa, "W_star")):
            dtype = ex._raw_dtype(A)
            dev, tol = ex.orthonormal_deviation(Aa), ex.orthonormal_tolerance(dtype)
            if not dev <= tol:
                raise ValueError('method="exact" with dps= needs an orthonormal start and '
                                 "teacher: " + ex.not_orthonormal_message(name, dev, tol, dtype))
        r = exact_mp(W0, W_star, times, dps)
    else:
        r = overlaps_mp(W0, W_star, times, dps)
    stats = r.pop("stats")
    arr = {k: np.array(v, dtype=object) for k, v in r.items()}
    with mpmath.workdps(dps):
        gamma = np.array([t / d for t in r["t"]], dtype=object)
    meta = dict(d=d, m=m, m_star=Wsa.shape[1], method=method, dps=dps, seed=seed,
                solver="mpmath." + stats["integrator"], version=__version__,
                **_meta_stats(stats))
    return Trajectory(t=arr["t"], gamma=gamma, risk=arr["risk"], phi=arr["phi"], chi=arr["chi"],
                      dist=arr["dist"], meta=meta)


def _meta_stats(stats):
    """Integrator statistics for a result's ``meta`` (without the duplicated dps)."""
    return {k: v for k, v in stats.items() if k not in ("dps",)}


def limit_mp(alpha, alpha_star, gamma, dps=30, integrator="gbs"):
    """High-dimensional limit (MATH.md section 6) in mpmath at ``dps`` digits.

    Same state and generated right-hand side as :func:`symflow.numerics.highdim.limit`
    ((log F, log J), kernels of :mod:`symflow.generated.limit_mpmath`), integrated by
    :func:`symflow.numerics.mpode.integrate`.

    Parameters
    ----------
    alpha, alpha_star : float in (0, 1]
        Read through their shortest decimal representation (0.3 means 3/10).
    gamma : sequence of gamma = t/d values, non-decreasing, >= 0
    dps : int in [15, 100] (symflow._validate.MAX_DPS_ODE: the cost grows steeply)
    integrator : {"gbs", "odefun"}

    Returns
    -------
    dict
        Lists of mpf (rounded to ``dps`` digits): "gamma", "phi", "chi", "log_F",
        "log_J"; and "stats", the integrator statistics (dict).

    Raises
    ------
    ValueError, TypeError
        Bad ``gamma``, ``dps`` or ``integrator`` (named).
    """
    import mpmath

    from symflow.generated import limit_mpmath as K
    from symflow.numerics.mpode import GUARD_DPS, integrate

    dps = _check_dps(dps)
    _check_integrator(integrator)
    with mpmath.workdps(dps + GUARD_DPS):
        gamma = _grid(gamma, "gamma")
        # floats are read through their shortest decimal repr, so 0.3 means 3/10 exactly
        # at every dps (alpha + alpha* = 1 then holds exactly for 0.3, 0.7)
        a, s_ = mpmath.mpf(repr(float(alpha))), mpmath.mpf(repr(float(alpha_star)))
        # clamp as the float path does: r1 = 0 exactly when alpha = alpha*, r2 <= 1
        r1 = min(max(K.wachter_r1(a, s_), mpmath.mpf(0)), mpmath.mpf(1))
        r2 = min(max(K.wachter_r2(a, s_), r1), mpmath.mpf(1))
        if a == s_:
            r1 = mpmath.mpf(0)
        if a + s_ == 1:
            r2 = mpmath.mpf(1)
        p = max(a + s_ - 1, mpmath.mpf(0))
        q0 = max(a - s_, mpmath.mpf(0))

        has_ac = r2 > r1  # no continuous part when r1 = r2 (e.g. alpha = alpha* = 1)

        def pieces(g, log_j):
            log_v = log_j - 4 * g / s_
            u = mpmath.exp(-log_j)
            jt = K.jtheta_prime(u, r1, r2) if has_ac else mpmath.mpf(0)
            return log_v, mpmath.exp(log_v), u, jt + p

        def rhs(g, y):
            _, v, _, s = pieces(g, y[1])
            return [K.limit_dlogf(v, s, a), K.limit_dlogj(v, s, a)]

        zero = mpmath.mpf(0)
        ys, stats = integrate(rhs, [zero, zero], gamma, dps, method=integrator)
        out = {k: [] for k in ("gamma", "phi", "chi", "log_F", "log_J")}
        for g, (lf, lj) in zip(gamma, ys):
            log_v, v, u, s = pieces(g, lj)
            phi = K.limit_phi(lf, log_v, v, s, a)
            kk = K.overlap_k(u, v, r1, r2) if has_ac else mpmath.mpf(0)
            chi = K.limit_chi(v, s, p, q0, kk, s_)
            for k, val in zip(out, (g, phi, chi, lf, lj)):
                out[k].append(val)
    out["stats"] = stats
    return _rounded(out, dps)
