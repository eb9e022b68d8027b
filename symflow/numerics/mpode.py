"""Ordinary differential equations at mpmath precision (Gragg-Bulirsch-Stoer extrapolation).

One small integrator for the high-precision solvers of :mod:`symflow.numerics.precision`
(overlap ODE, exact reduction, high-dimensional limit; MATH.md sections 4-6):
``integrate(rhs, y0, times, dps)`` returns the state at each output time to about
``dps`` digits.

Method: Gragg's modified midpoint rule with step numbers n_j = 2 j (the harmonic
sequence) over a macro step H, whose error has an expansion in even powers of H / n_j,
extrapolated to H / n -> 0 by the Aitken-Neville scheme (polynomial extrapolation in
(H / n)^2).  Column k of the extrapolation table is a method of order 2 k; the
difference of the last two columns estimates the local error.  The step size and the
column (order) are chosen as in ODEX (Hairer, Norsett, Wanner, "Solving Ordinary
Differential Equations I", section II.9): per unit step the cheapest column that meets
the tolerance.  At 30 digits the order settles near 24, at 50 digits near 36.

Everything runs at the working precision ``dps + GUARD_DPS`` digits (the guard digits
absorb the round-off of the midpoint recursion and of the extrapolation); the local
error per step is held below ``10^-dps * max(1, |y_i|)`` in every component.  No
derivatives of the right-hand side are needed, so any function of mpf numbers works
(the generated mpmath kernels as they are).

Only ``rhs(t, y) -> sequence of mpf`` is called: explicit method for non-stiff
problems (the three solvers on the horizons they are used for, t <= a few d).

Source: MATH.md sections 4-6 (the problems); the method is textbook (see above).
"""

from __future__ import annotations

import math

__all__ = ["integrate", "tolerance", "GUARD_DPS", "METHODS"]

GUARD_DPS = 5  # extra working digits over the target dps
METHODS = ("gbs", "odefun")
_MAX_STEPS = 100_000
_SAFETY, _SAFETY_EXP = 0.94, 0.65  # ODEX step-size safety factors
_FAC_MIN, _FAC_MAX = 0.02, 4.0  # bounds on the step-size change per step


def tolerance(dps):
    """Local error tolerance of :func:`integrate` at ``dps`` digits: ``10^-dps`` (mpf)."""
    import mpmath

    return mpmath.mpf(10) ** (-dps)


def _columns(dps):
    """(first, largest) extrapolation column for the target digits (order = 2 column)."""
    return max(3, round(0.35 * dps)), max(6, dps // 2 + 8)


def _midpoint(rhs, t, y, f0, h, n):
    """Gragg's modified midpoint rule: n substeps of h / n from (t, y), f0 = rhs(t, y)."""
    hs = h / n
    h2 = 2 * hs
    z0 = y
    z1 = [a + hs * b for a, b in zip(y, f0)]
    for i in range(1, n):
        fz = rhs(t + i * hs, z1)
        z0, z1 = z1, [a + h2 * b for a, b in zip(z0, fz)]
    return z1


def _check_rhs(f, n):
    if len(f) != n:
        raise ValueError(f"rhs returned {len(f)} components for a state of size {n}")
    return f


def _gbs(rhs, t0, y0, times, dps):
    import mpmath

    tol = tolerance(dps)
    k_first, k_max = _columns(dps)
    # Aitken-Neville weights 1 / ((n_j / n_{j-i})^2 - 1) = (j - i)^2 / (j^2 - (j - i)^2)
    weight = {(j, i): mpmath.mpf((j - i) ** 2) / (j * j - (j - i) ** 2)
              for j in range(2, k_max + 1) for i in range(1, j)}
    work = [1 + j * j for j in range(k_max + 2)]  # rhs calls of columns 1..j (+ f0)

    n = len(y0)
    t, y = t0, list(y0)
    f0 = _check_rhs(rhs(t, y), n)
    stats = dict(nfev=1, steps=0, rejected=0, min_order=None, max_order=0)
    k, h, rejected_last = k_first, None, False
    out = []
    for t_out in times:
        while t < t_out:
            if h is None:  # first step: O(1) relative change of the state, at most the span
                fmax = max(abs(v) for v in f0)
                ymax = max(1, max(abs(v) for v in y))
                h = t_out - t if fmax == 0 else min(t_out - t, ymax / fmax / 2)
            if stats["steps"] + stats["rejected"] >= _MAX_STEPS:
                raise RuntimeError(f"integrate: more than {_MAX_STEPS} steps before t = "
                                   f"{mpmath.nstr(t_out, 8)} (stiff or singular problem?)")
            rest = t_out - t
            clipped = rest <= h  # the step lands on the output time
            # just over one step left: two equal steps rather than a full and a tiny one
            step = rest if clipped else (rest / 2 if rest < 2 * h else h)
            if t + step == t:
                raise RuntimeError(f"integrate: step size underflow at t = {mpmath.nstr(t, 8)}")
            table, H, W, accepted = [], {}, {}, None
            for j in range(1, min(k + 1, k_max) + 1):
                row = [_midpoint(rhs, t, y, f0, step, 2 * j)]
                stats["nfev"] += 2 * j - 1
                for i in range(1, j):
                    c = weight[j, i]
                    row.append([a + (a - b) * c for a, b in zip(row[i - 1], table[-1][i - 1])])
                table.append(row)
                if j < 2:
                    continue
                err = float(max(abs(a - b) / max(1, abs(a)) for a, b in zip(row[-1], row[-2]))
                            / tol)
                if not math.isfinite(err):
                    err = math.inf
                fac = _SAFETY * (_SAFETY_EXP / max(err, 1e-300)) ** (1.0 / (2 * j - 1))
                H[j] = step * min(_FAC_MAX, max(_FAC_MIN, fac))
                W[j] = work[j] / H[j]
                if j >= k - 1 and err <= 1:
                    accepted = j
                    break
            if accepted is None:  # retry with a smaller step (and no higher column)
                stats["rejected"] += 1
                last = max(H)
                h = min(H[last], step / 2)
                k = max(2, min(k, last))
                rejected_last = True
                continue
            j = accepted
            t = t_out if clipped else t + step
            y = table[-1][-1]
            stats["steps"] += 1
            order = 2 * j
            stats["max_order"] = max(stats["max_order"], order)
            stats["min_order"] = order if stats["min_order"] is None else min(
                stats["min_order"], order)
            # next column and step: least work per unit step among j - 1, j, j + 1
            if j >= 3 and W[j - 1] < 0.9 * W[j]:
                k_new, h_new = j - 1, H[j - 1]
            elif j < k_max and (j - 1 not in W or W[j] < 0.9 * W[j - 1]):
                k_new, h_new = j + 1, H[j] * work[j + 1] / work[j]
            else:
                k_new, h_new = j, H[j]
            if rejected_last:  # no growth right after a rejection
                k_new, h_new = min(k_new, j), min(h_new, step)
            rejected_last = False
            h = max(h, h_new) if clipped else h_new  # a step cut at an output time
            k = k_new
            if t < t_out or t_out != times[-1]:
                f0 = _check_rhs(rhs(t, y), n)
                stats["nfev"] += 1
        out.append(list(y))
    return out, stats


def _odefun(rhs, t0, y0, times, dps):
    """The former path: ``mpmath.odefun`` (Taylor series by numerical differentiation)
    at ``mp.dps = dps``; kept as an independent reference and for benchmarks."""
    import mpmath

    calls = [0]

    def counted(t, y):
        calls[0] += 1
        return rhs(t, y)

    with mpmath.workdps(dps):
        sol = mpmath.odefun(counted, t0, list(y0))
        out = [list(y0) if t == t0 else list(sol(t)) for t in times]
    return out, dict(nfev=calls[0])


def integrate(rhs, y0, times, dps, *, t0=0, method="gbs"):
    """Solve ``y' = rhs(t, y)``, ``y(t0) = y0`` at mpmath precision.

    Parameters
    ----------
    rhs : callable ``rhs(t, y) -> sequence of mpf``
        Right-hand side; ``y`` is a list of mpf of the size of ``y0``.  Called at the
        working precision (``dps + GUARD_DPS`` digits for "gbs").
    y0 : sequence of numbers (mpf, int, float), length n >= 1
        Initial state (floats are taken exactly).
    times : sequence of numbers, non-decreasing, >= t0
        Output times (the variable of ``rhs``: t or gamma = t / d, as the caller uses).
        The integration steps land on each of them (no interpolation).
    dps : int >= 10
        Target decimal digits: local error per step <= ``10^-dps * max(1, |y_i|)``.
    t0 : number
        Initial time.
    method : {"gbs", "odefun"}
        "gbs": Gragg-Bulirsch-Stoer extrapolation at ``dps + GUARD_DPS`` digits (see the
        module docstring).  "odefun": ``mpmath.odefun`` at ``dps`` digits, the former
        path (its Taylor coefficients come from finite differences at many times the
        working precision: 13 to 53 times slower on the limit and the exact reduction);
        a reference for tests and benchmarks.

    Returns
    -------
    ys : list of lists of mpf, shape (len(times), n)
        The state at each output time, at the working precision.
    stats : dict
        "integrator" (method), "dps", "nfev" (rhs calls); for "gbs" also "work_dps",
        "tol" (float), "steps" (accepted), "rejected", "min_order", "max_order" (order
        2 k of the extrapolated values used).

    Raises
    ------
    ValueError
        Bad ``times`` (decreasing, before ``t0``, empty), empty ``y0``, ``dps < 10``,
        unknown ``method``, or ``rhs`` returning the wrong number of components.
    TypeError
        ``dps`` not an integer.
    RuntimeError
        More than 100000 steps, or step size underflow (stiff or singular problem).
    """
    import mpmath

    from symflow._validate import positive_int

    dps = positive_int(dps, "dps", minimum=10)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    work_dps = dps + GUARD_DPS if method == "gbs" else dps
    with mpmath.workdps(work_dps):
        y0 = [mpmath.mpf(v) for v in y0]
        if not y0:
            raise ValueError("y0 must have at least one component")
        t0 = mpmath.mpf(t0)
        times = [mpmath.mpf(t) for t in times]
        if not times:
            raise ValueError("times must not be empty")
        if times[0] < t0 or any(b < a for a, b in zip(times, times[1:])):
            raise ValueError("times must be non-decreasing and >= t0")
        if method == "odefun":
            ys, stats = _odefun(rhs, t0, y0, times, dps)
        else:
            ys, stats = _gbs(rhs, t0, y0, times, dps)
            stats.update(work_dps=mpmath.mp.dps, tol=float(tolerance(dps)))
    return ys, dict(integrator=method, dps=dps, **stats)
