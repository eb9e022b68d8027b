"""High-precision integrator (symflow.numerics.mpode) and the mpmath solvers built on it.

The integrator is checked against closed-form solutions at dps - 5 digits; the overlap
ODE and the exact reduction (two independent formulations, MATH.md sections 4 and 5)
against each other at 30 digits.  No test depends on timing.
"""

import mpmath
import numpy as np
import pytest

from symflow.numerics.mpode import GUARD_DPS, integrate


def _err(ys, exact, dps):
    """Largest |y - exact| relative to max(1, |exact|), at dps + 20 digits."""
    with mpmath.workdps(dps + 20):
        return max(abs(a - b) / max(1, abs(b)) for y, e in zip(ys, exact) for a, b in zip(y, e))


@pytest.mark.parametrize("dps", [30, 50])
def test_exponential(dps):
    times = [0, 0.5, 1, 2]
    ys, stats = integrate(lambda t, y: [y[0]], [1], times, dps)
    with mpmath.workdps(dps + 20):
        exact = [[mpmath.exp(mpmath.mpf(t))] for t in times]
    assert ys[0] == [1]
    assert _err(ys, exact, dps) < mpmath.mpf(10) ** (5 - dps)
    assert stats["integrator"] == "gbs" and stats["steps"] > 0 and stats["nfev"] > stats["steps"]
    assert stats["work_dps"] == dps + GUARD_DPS and stats["tol"] == 10.0 ** -dps
    assert 4 <= stats["min_order"] <= stats["max_order"]


@pytest.mark.parametrize("dps", [30, 45])
def test_riccati_airy(dps):
    """y' = t - y^2, y(0) = 0: y = u'/u with u'' = t u, u'(0) = 0, i.e.
    u = Bi'(0) Ai(t) - Ai'(0) Bi(t) (time-dependent, nonlinear)."""
    times = [0.5, 1.5, 3]
    ys, _ = integrate(lambda t, y: [t - y[0] ** 2], [0], times, dps)
    with mpmath.workdps(dps + 20):
        c1, c2 = mpmath.airybi(0, 1), -mpmath.airyai(0, 1)

        def exact(t):
            t = mpmath.mpf(t)
            u = c1 * mpmath.airyai(t) + c2 * mpmath.airybi(t)
            return [(c1 * mpmath.airyai(t, 1) + c2 * mpmath.airybi(t, 1)) / u]

        ref = [exact(t) for t in times]
    assert _err(ys, ref, dps) < mpmath.mpf(10) ** (5 - dps)


def test_linear_system_against_expm():
    """y' = A y (eigenvalues -1 +- 3i and -0.5): y(t) = expm(A t) y0."""
    dps = 30
    A = [[-1, 3, 0], [-3, -1, 1], [0, 0, -0.5]]
    y0 = [1, -2, 0.5]
    times = [0.25, 1, 4]

    def rhs(_t, y):
        return [sum(a * v for a, v in zip(row, y)) for row in A]

    ys, _ = integrate(rhs, y0, times, dps)
    with mpmath.workdps(dps + 20):
        ref = [list(mpmath.expm(mpmath.matrix(A) * t) * mpmath.matrix(y0)) for t in times]
    assert _err(ys, ref, dps) < mpmath.mpf(10) ** (5 - dps)


def test_output_times_do_not_change_the_solution():
    """Steps land on every output time; the values agree with a run without them."""
    dps = 30
    rhs = lambda t, y: [t - y[0] ** 2]  # noqa: E731
    dense, _ = integrate(rhs, [0], [0.1 * k for k in range(1, 21)], dps)
    (single,), _ = integrate(rhs, [0], [2], dps)
    with mpmath.workdps(dps + GUARD_DPS):
        assert abs(dense[-1][0] - single[0]) < mpmath.mpf(10) ** (3 - dps)


def test_odefun_reference_method_agrees():
    ys, stats = integrate(lambda t, y: [-y[0] * t], [1], [0, 1], 15, method="odefun")
    assert stats["integrator"] == "odefun" and stats["nfev"] > 0
    with mpmath.workdps(15):
        assert abs(ys[1][0] - mpmath.exp(-0.5)) < 1e-13


def test_singular_problem_raises():
    """y' = y^2, y(0) = 1 blows up at t = 1."""
    with pytest.raises(RuntimeError, match="integrate"):
        integrate(lambda t, y: [y[0] ** 2], [1], [2], 15)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(times=[1, 0.5]), ValueError, "times"),
    (dict(times=[-1]), ValueError, "times"),
    (dict(times=[]), ValueError, "times"),
    (dict(y0=[]), ValueError, "y0"),
    (dict(dps=5), ValueError, "dps"),
    (dict(dps=30.0), TypeError, "dps"),
    (dict(method="rk4"), ValueError, "method"),
    (dict(rhs=lambda t, y: [y[0], y[0]]), ValueError, "rhs"),
])
def test_integrate_bad_inputs(kw, exc, match):
    args = dict(rhs=lambda t, y: [y[0]], y0=[1], times=[1], dps=20)
    args.update(kw)
    with pytest.raises(exc, match=match):
        integrate(args.pop("rhs"), args.pop("y0"), args.pop("times"), **args)


# ------------------------------------------------------------------ the mpmath solvers
def _mp_orthonormal(d, k, seed, dps):
    """Orthonormal (columns of norm 1/sqrt(k)) mpmath matrix, exact to dps digits, so that
    both formulations start from the same point."""
    from symflow.numerics.init import orthonormal
    from symflow.numerics.precision import _orthonormalise, to_mp_matrix

    with mpmath.workdps(dps):
        return _orthonormalise(to_mp_matrix(orthonormal(d, k, seed=seed))) / mpmath.sqrt(k)


def test_overlaps_mp_vs_exact_mp():
    """Overlap ODE (m^2 + m m* numbers, generated kernels) and exact reduction (F, G;
    MATH.md section 5) are independent formulations: they agree to ~dps - 5 digits."""
    from symflow.numerics.precision import exact_mp, overlaps_mp

    dps = 30
    W0, Ws = _mp_orthonormal(5, 2, 0, dps + 10), _mp_orthonormal(5, 1, 1, dps + 10)
    t = [0, 1, 3]
    ov = overlaps_mp(W0, Ws, t, dps)
    ex = exact_mp(W0, Ws, t, dps)
    assert ov["stats"]["integrator"] == ex["stats"]["integrator"] == "gbs"
    with mpmath.workdps(dps):
        for k in ("risk", "phi", "chi", "dist"):
            for a, b in zip(ov[k], ex[k]):
                assert isinstance(a, mpmath.mpf)
                assert abs(a - b) < mpmath.mpf(10) ** -25 * max(1, abs(b)), (k, a, b)


def test_simulate_dps_meta_and_types():
    from symflow.numerics.init import orthonormal
    from symflow.numerics.simulators import simulate

    W0, Ws = orthonormal(4, 1, seed=0), orthonormal(4, 1, seed=1)
    t = [0.0, 1.0, 2.0]
    hp = simulate(W0, Ws, t, method="exact", dps=20)
    assert hp.meta["solver"] == "mpmath.gbs" and hp.meta["steps"] > 0
    assert hp.meta["dps"] == 20 and hp.meta["tol"] == 1e-20
    assert hp.phi.dtype == object and all(isinstance(v, mpmath.mpf) for v in hp.phi)
    lo = simulate(W0, Ws, t, method="exact", rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(lo.phi, np.array(hp.phi, dtype=float), atol=1e-9)


@pytest.mark.parametrize("fn", ["overlaps_mp", "exact_mp", "limit_mp"])
def test_mp_solvers_bad_inputs(fn):
    from symflow.numerics import init, precision

    f = getattr(precision, fn)
    args = ((0.5, 0.25) if fn == "limit_mp"
            else (init.orthonormal(4, 1, seed=0), init.orthonormal(4, 1, seed=1)))
    name = "gamma" if fn == "limit_mp" else "times"
    with pytest.raises(ValueError, match=name):
        f(*args, [1.0, 0.5], 20)
    with pytest.raises(ValueError, match="dps"):
        f(*args, [1.0], 10)
    with pytest.raises(ValueError, match="dps must be an integer <= 100"):  # unbounded cost
        f(*args, [1.0], 2000)
    with pytest.raises(ValueError, match="integrator"):
        f(*args, [1.0], 20, integrator="euler")


def test_dps_ceilings():
    """limit(dps=) and simulate(dps=) refuse digits whose cost is unbounded (dps 2000 ran
    for minutes); closed-form Model evaluations allow far more."""
    from symflow import Model, limit

    with pytest.raises(ValueError, match="<= 100"):
        limit(0.5, 0.25, [0.0, 1.0], dps=101)
    mod = Model("erf(z/sqrt(2))", 1, 1)
    assert abs(float(mod.risk([[1.0]], [[0.5]], [[1.0]], dps=1000))
               - mod.risk([[1.0]], [[0.5]], [[1.0]])) < 1e-15
    with pytest.raises(ValueError, match="<= 10000"):
        mod.risk([[1.0]], [[0.5]], [[1.0]], dps=10001)
