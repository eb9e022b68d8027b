"""Non-polynomial activations (issue 12): the rule engine against the literature's closed
forms and Monte Carlo, derived kernels against finite differences, the weight-space flow,
mpmath, and averaged one-pass SGD.  Every reference here is independent of the engine."""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from scipy import integrate
from scipy.special import erf

from symflow import Model, simulate
from symflow.engine.activations import parse_activation
from symflow.engine.gaussian import Factor, expect_product
from symflow.numerics.init import gaussian

H, R = Factor(0, "H"), Factor(1, "H")


def ERF(a):
    return Factor(0, "erf", a)


def _cov(rng, n):
    A = rng.standard_normal((n, n))
    return A @ A.T / n + 0.3 * np.eye(n)


def _num(expr):
    """Float value of an engine result (integrals by mpmath quadrature)."""
    expr = sp.sympify(expr)
    for itg in expr.atoms(sp.Integral):
        (t, lo, hi), = itg.limits
        f = sp.lambdify(t, itg.function, "mpmath")
        expr = expr.xreplace({itg: sp.Float(mpmath.quad(f, [float(lo), float(hi)]), 30)})
    return float(expr.evalf(30))


def _mc(factors, C, rng, n=400_000):
    L = np.linalg.cholesky(C)
    u = rng.standard_normal((n, len(factors))) @ L.T
    v = np.ones(n)
    for i, f in enumerate(factors):
        w = u[:, i] ** f.power
        if f.shape == "H":
            w = w * (u[:, i] > 0)
        elif f.shape == "erf":
            w = w * erf(float(f.param) * u[:, i])
        v = v * w
    return v.mean(), v.std() / np.sqrt(n)


# ------------------------------------------------------------ closed forms of the literature
X, Y = sp.symbols("x y", positive=True)
Z = sp.Symbol("z", real=True)
COV = sp.Matrix([[X, Z], [Z, Y]])
POINTS = [(1.3, 0.7, 0.2), (0.4, 2.0, -0.85), (1.0, 1.0, 0.999), (2.5, 0.3, 0.0)]


@pytest.mark.parametrize("factors, reference", [
    # Sheppard: P(u > 0, v > 0) = 1/4 + asin(rho) / (2 pi)
    ((H, H), lambda x, y, z: 0.25 + math.asin(z / math.sqrt(x * y)) / (2 * math.pi)),
    # Cho & Saul (2009), arc-cosine kernel of degree 1
    ((R, R), lambda x, y, z: math.sqrt(x * y) / (2 * math.pi) * (
        math.sqrt(1 - (z * z / (x * y))) + (math.pi - math.acos(z / math.sqrt(x * y)))
        * z / math.sqrt(x * y))),
    # erf(u / sqrt 2) kernel (Saad & Solla I2)
    ((ERF(1 / sp.sqrt(2)), ERF(1 / sp.sqrt(2))),
     lambda x, y, z: 2 / math.pi * math.asin(z / math.sqrt((1 + x) * (1 + y)))),
])
def test_two_point_closed_forms_match_the_literature(factors, reference):
    expr = expect_product(factors, COV)
    for x, y, z in POINTS:
        val = float(expr.subs({X: x, Y: y, Z: z}).evalf(20))
        assert val == pytest.approx(reference(x, y, z), rel=1e-13, abs=1e-14)


def test_sign_kernel_and_j2():
    """E[sign u sign v] = (2/pi) asin(rho); Saad-Solla J2 = E[g'(u) g'(v)] for
    g = erf(z / sqrt 2): (2/pi) (1 + x + y + x y - z^2)^(-1/2)."""
    mod = Model("sign(z)", 2, 1)
    phi = mod.pair_moments["QQ"]
    x, y, z = sorted(phi.free_symbols, key=str)
    for xv, yv, zv in POINTS:
        got = float(phi.subs({x: xv, y: yv, z: zv}))
        assert got == pytest.approx(2 / math.pi * math.asin(zv / math.sqrt(xv * yv)), rel=1e-13)
    g1 = Factor(0, "gauss", sp.Rational(1, 2))
    j2 = (sp.sqrt(2 / sp.pi)) ** 2 * expect_product((g1, g1), COV)
    for xv, yv, zv in POINTS:
        ref = 2 / math.pi / math.sqrt(1 + xv + yv + xv * yv - zv * zv)
        assert float(j2.subs({X: xv, Y: yv, Z: zv})) == pytest.approx(ref, rel=1e-13)


def _saad_solla_i3(C):
    l3 = (1 + C[0, 0]) * (1 + C[2, 2]) - C[0, 2] ** 2
    return 2 / math.pi / math.sqrt(l3) * (C[1, 2] * (1 + C[0, 0]) - C[0, 1] * C[0, 2]) / (
        1 + C[0, 0])


def _saad_solla_i4(C):
    l4 = (1 + C[0, 0]) * (1 + C[1, 1]) - C[0, 1] ** 2
    l0 = (l4 * C[2, 3] - C[1, 2] * C[1, 3] * (1 + C[0, 0]) - C[0, 2] * C[0, 3] * (1 + C[1, 1])
          + C[0, 1] * C[0, 2] * C[1, 3] + C[0, 1] * C[0, 3] * C[1, 2])
    l1 = (l4 * (1 + C[2, 2]) - C[1, 2] ** 2 * (1 + C[0, 0]) - C[0, 2] ** 2 * (1 + C[1, 1])
          + 2 * C[0, 1] * C[0, 2] * C[1, 2])
    l2 = (l4 * (1 + C[3, 3]) - C[1, 3] ** 2 * (1 + C[0, 0]) - C[0, 3] ** 2 * (1 + C[1, 1])
          + 2 * C[0, 1] * C[0, 3] * C[1, 3])
    return 4 / math.pi**2 / math.sqrt(l4) * math.asin(l0 / math.sqrt(l1 * l2))


def test_saad_solla_i3_i4():
    """I3 = E[g'(u1) u2 g(u3)] and I4 = E[g'(u1) g'(u2) g(u3) g(u4)], g = erf(z/sqrt 2),
    as printed in Saad & Solla (1995) / Goldt et al. (2019), typed here."""
    a = 1 / sp.sqrt(2)
    dg = (sp.sqrt(2 / sp.pi), Factor(0, "gauss", sp.Rational(1, 2)))
    rng = np.random.default_rng(5)
    for _ in range(3):
        C = _cov(rng, 4)
        Cs = sp.Matrix(C).applyfunc(lambda v: sp.Rational(v).limit_denominator(10**8))
        Cr = np.array(Cs.tolist(), dtype=float)
        i3 = dg[0] * expect_product((dg[1], Factor(1), ERF(a)), Cs[:3, :3])
        assert float(i3) == pytest.approx(_saad_solla_i3(Cr[:3, :3]), rel=1e-12)
        i4 = dg[0] ** 2 * expect_product((dg[1], dg[1], ERF(a), ERF(a)), Cs)
        assert _num(i4) == pytest.approx(_saad_solla_i4(Cr), rel=1e-12)


@pytest.mark.parametrize("factors", [
    (H, H, H), (R, H, H), (H, H, ERF(1)), (ERF(1), ERF(sp.Rational(1, 2)), H),
    (R, R, ERF(sp.Rational(1, 2))), (Factor(2, "H"), ERF(1)), (Factor(3, "erf", 1), R),
])
def test_engine_against_monte_carlo(factors):
    rng = np.random.default_rng(len(factors) * 7 + factors[0].power)
    C = _cov(rng, len(factors))
    Cs = sp.Matrix(C).applyfunc(lambda v: sp.Rational(v).limit_denominator(10**9))
    val = _num(expect_product(factors, Cs))
    m, se = _mc(factors, np.array(Cs.tolist(), dtype=float), rng)
    assert abs(val - m) < 5 * se


@pytest.mark.slow
def test_four_step_product_quadrature_against_orthant_probability():
    """E[H H H H] (no closed form: Price path integral by quadrature) vs scipy's
    multivariate normal CDF (Genz, accuracy ~1e-6 here) and Monte Carlo."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(0)
    C = _cov(rng, 4)
    Cs = sp.Matrix(C).applyfunc(lambda v: sp.Rational(v).limit_denominator(10**9))
    Cf = np.array(Cs.tolist(), dtype=float)
    val = _num(expect_product((H, H, H, H), Cs))
    ref = multivariate_normal(mean=np.zeros(4), cov=Cf).cdf(np.zeros(4))
    assert val == pytest.approx(ref, abs=2e-5)


# --------------------------------------------------------------------------- models
ACTS = {
    "relu(z)": lambda u: np.maximum(u, 0),
    "erf(z/sqrt(2))": lambda u: erf(u / np.sqrt(2)),
    "sign(z)": np.sign,
    "abs(z) + 0.1*z**2": lambda u: np.abs(u) + 0.1 * u * u,
    "leaky_relu(z, 0.2)": lambda u: np.where(u > 0, u, 0.2 * u),
    "ncdf(z)": lambda u: 0.5 * (1 + erf(u / np.sqrt(2))),
    "gelu(z)": lambda u: 0.5 * u * (1 + erf(u / np.sqrt(2))),
    "tanh(z)": np.tanh,
    # regressions: a transcendental coefficient printed as numpy.pi in a module that
    # imports only np (NameError); erf(z)**2 lambdified to math.erf (TypeError)
    "pi*z**2 + exp(1)*z": lambda u: np.pi * u * u + np.e * u,
    "erf(z)**2": lambda u: erf(u) ** 2,
}


def _instance(seed, d=8, m=3, ms=2):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((d, m)) / np.sqrt(d), rng.standard_normal((d, ms)) / np.sqrt(d)


@pytest.mark.parametrize("act, tact", [(a, None) for a in ACTS] + [("relu(z)", "erf(z/sqrt(2))"),
                                                                  ("erf(z/sqrt(2))", "relu(z)"),
                                                                  ("tanh(z)", "z**2")])
def test_model_risk_against_monte_carlo(act, tact):
    W, Ws = _instance(1)
    mod = Model(act, 3, 2, teacher_activation=tact, loss_scale=0.5, a=[1.0, -0.5, 2.0],
                noise=0.1)
    f, g = ACTS[act], ACTS.get(tact or act, lambda u: u * u)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200_000, 8))
    y = g(x @ Ws).sum(1) + np.sqrt(0.1) * rng.standard_normal(len(x))
    v = 0.5 * (f(x @ W) @ mod.a - y) ** 2
    risk = mod.risk(W.T @ W, W.T @ Ws, Ws.T @ Ws)
    assert abs(risk - v.mean()) < 5 * v.std() / np.sqrt(len(v))


@pytest.mark.parametrize("act, tact", [("relu(z)", None), ("erf(z/sqrt(2))", "relu(z)"),
                                       ("tanh(z)", None), ("leaky_relu(z, 0.2) + 0.1*z**2", None),
                                       ("erf(z)", "sigmoid(z)")])
def test_weight_gradient_against_finite_differences(act, tact):
    W, Ws = _instance(3, d=6)
    mod = Model(act, 3, 2, teacher_activation=tact, loss_scale=0.5, a=[1.0, -0.5, 2.0],
                weight_decay=0.01)

    def L(V):
        return mod.risk(V.T @ V, V.T @ Ws, Ws.T @ Ws) + 0.0

    g = mod.weight_grad(W, Ws)
    fd = np.zeros_like(W)
    h = 1e-6
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        fd[idx] = (L(Wp) - L(Wm)) / (2 * h)
    # central differences: error ~ h^2 L''' + eps L / h ~ 1e-10 relative
    assert np.max(np.abs(fd - g)) <= 1e-8 * np.max(np.abs(g))


def test_price_partials_agree_with_differentiation():
    """Partials of the pair function come from Price's rule (expectations of derivatives);
    sympy's derivative of the closed form is an independent path (away from |rho| = 1)."""
    from symflow.derivation.model import _s, pair_functions, x, y, z

    for s1, s2 in [("relu(z)", "erf(z)"), ("gelu(z)", "abs(z)"), ("z*erf(2*z)", "relu(z)")]:
        a1 = parse_activation(s1).subs(sp.Symbol("z", real=True), _s)
        a2 = parse_activation(s2).subs(sp.Symbol("z", real=True), _s)
        pf = pair_functions(a1, a2, "QM", False)
        for pt in ({x: 1.3, y: 0.7, z: 0.2}, {x: 0.5, y: 2.0, z: -0.6}):
            for part, var in ((pf.d_x, x), (pf.d_y, y), (pf.d_z, z)):
                ref = float(sp.diff(pf.phi, var).subs(pt).evalf(20))
                assert float(part.subs(pt).evalf(20)) == pytest.approx(ref, rel=1e-12,
                                                                       abs=1e-13)


@pytest.mark.parametrize("act", ["relu(z)", "erf(z/sqrt(2))",
                                 pytest.param("tanh(z)", marks=pytest.mark.slow)])
def test_overlap_flow_matches_weight_space_flow(act):
    W0, Ws = gaussian(6, 2, seed=4), gaussian(6, 2, seed=5)
    mod = Model(act, 2, 2, loss_scale=0.5)
    t = [0.0, 2.0, 6.0]
    a = simulate(W0, Ws, t, model=mod, rtol=1e-11)
    b = simulate(W0, Ws, t, model=mod, method="weights", rtol=1e-11)
    assert np.allclose(a.risk, b.risk, rtol=1e-8, atol=1e-14)
    assert np.allclose(a.M, b.M, rtol=1e-7, atol=1e-10)


def test_numeric_family_accuracy():
    """tanh pair expectation by the trapezoid rule vs adaptive quadrature (scipy, 1e-13),
    at variances up to 16; the documented accuracy is 1e-9."""
    from symflow.engine.quadrature import gauss_pair

    for x, y, z in [(1.0, 0.5, 0.3), (4.0, 3.0, -2.0), (16.0, 9.0, 6.0)]:
        def inner(u, x=x, y=y, z=z):
            mu, s = z / x * u, math.sqrt(y - z * z / x)
            return integrate.quad(lambda b: math.tanh(mu + s * b) * math.exp(-b * b / 2),
                                  -40, 40, epsabs=1e-14, limit=200)[0] / math.sqrt(2 * math.pi)
        ref = integrate.quad(lambda u: math.tanh(u) * inner(u) * math.exp(-u * u / (2 * x)),
                             -40 * math.sqrt(x), 40 * math.sqrt(x), epsabs=1e-13,
                             limit=200)[0] / math.sqrt(2 * math.pi * x)
        assert abs(gauss_pair(np.tanh, np.tanh, x, y, z) - ref) < 1e-9


def test_callable_activation_matches_its_expression():
    W, Ws = _instance(6)
    Q, M, P = W.T @ W, W.T @ Ws, Ws.T @ Ws
    a, b = Model(np.tanh, 3, 2), Model("tanh(z)", 3, 2)
    assert a.risk(Q, M, P) == pytest.approx(b.risk(Q, M, P), rel=1e-12)
    for u, v in zip(a.flow(Q, M, P), b.flow(Q, M, P)):
        assert np.allclose(u, v, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("K", [2, 3])
def test_saad_solla_symmetric_plateau(K):
    """The symmetric plateau of the erf committee (K = M, T = I): Q_ij = C = 1/(2K - 1),
    R_in = S = 1/sqrt(K (2K - 1)) is a fixed point of the gradient flow, with
    eps_g = (K/pi) (pi/6 - K asin(1/(2K))) (Saad & Solla 1995)."""
    mod = Model("erf(z/sqrt(2))", K, K, loss_scale=0.5)
    Q = np.full((K, K), 1 / (2 * K - 1))
    M = np.full((K, K), 1 / math.sqrt(K * (2 * K - 1)))
    dQ, dM = mod.flow(Q, M, np.eye(K))
    assert np.max(np.abs(dQ)) < 1e-14 and np.max(np.abs(dM)) < 1e-14
    eps = K / math.pi * (math.pi / 6 - K * math.asin(1 / (2 * K)))
    assert mod.risk(Q, M, np.eye(K)) == pytest.approx(eps, rel=1e-13)


def _sgd_mc(mod, W, Ws, f, df, noise, n, rng):
    acc = np.zeros((mod.m, mod.m))
    acc2 = np.zeros_like(acc)
    for _ in range(4):
        x = rng.standard_normal((n // 4, W.shape[0]))
        h = x @ W
        y = f(x @ Ws) @ mod.a_star + np.sqrt(noise) * rng.standard_normal(n // 4)
        G = (2 * float(mod.spec.loss_scale) * (f(h) @ mod.a - y))[:, None] * mod.a * df(h)
        prod = G[:, :, None] * G[:, None, :]
        acc += prod.sum(0)
        acc2 += (prod**2).sum(0)
    mean = acc / n
    return mean, np.sqrt(acc2 / n - mean**2) / np.sqrt(n)


@pytest.mark.parametrize("act", [
    "erf(z/sqrt(2))",
    pytest.param("relu(z)", marks=pytest.mark.slow),
])
def test_sgd_term_against_monte_carlo(act):
    f, df = {"erf(z/sqrt(2))": (ACTS["erf(z/sqrt(2))"],
                                lambda u: math.sqrt(2 / math.pi) * np.exp(-u * u / 2)),
             "relu(z)": (ACTS["relu(z)"], lambda u: (u > 0) * 1.0)}[act]
    W, Ws = _instance(7, d=6)
    mod = Model(act, 3, 2, loss_scale=0.5, a=[1.0, -0.5, 2.0], noise=0.3)
    S = mod.kernels.sgd_term(W.T @ W, W.T @ Ws, Ws.T @ Ws)
    mean, se = _sgd_mc(mod, W, Ws, f, df, 0.3, 1_000_000, np.random.default_rng(8))
    assert np.all(np.abs(S - mean) < 5 * se)


def test_relu_sgd_coincident_units():
    """Aligned units (j = k, p = j, p = q: singular covariances) use the pattern formulas:
    finite, symmetric, and continuous with slightly perturbed, non-singular overlaps."""
    W, Ws = _instance(9, d=6)
    W[:, 1] = W[:, 0]  # two identical student units
    mod = Model("relu(z)", 3, 2, loss_scale=0.5)
    Q, M, P = W.T @ W, W.T @ Ws, Ws.T @ Ws
    S = mod.kernels.sgd_term(Q, M, P)
    assert np.all(np.isfinite(S)) and np.allclose(S, S.T)
    Wp = W.copy()
    Wp[:, 1] += 1e-7 * np.random.default_rng(0).standard_normal(6)
    Sp = mod.kernels.sgd_term(Wp.T @ Wp, Wp.T @ Ws, P)
    assert np.allclose(S, Sp, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ["relu(z)", "erf(z/sqrt(2))"])
def test_mpmath_kernels_agree_with_numpy_and_with_more_digits(act):
    W, Ws = _instance(10, d=5)
    Q, M, P = W.T @ W, W.T @ Ws, Ws.T @ Ws
    mod = Model(act, 3, 2, loss_scale=0.5, a=[1.0, -0.5, 2.0], noise=0.1)
    r30, r40 = mod.risk(Q, M, P, dps=30), mod.risk(Q, M, P, dps=40)
    assert float(r30) == pytest.approx(mod.risk(Q, M, P), rel=1e-13)
    with mpmath.workdps(40):
        assert abs(r30 - r40) < mpmath.mpf(10) ** -28
    for a, b in zip(mod.flow(Q, M, P), mod.flow(Q, M, P, dps=30)):
        assert np.allclose(a, np.array(b, dtype=float), rtol=1e-12, atol=1e-15)


def test_dps_keeps_exact_inputs():
    """With dps, an mpf input (1/3 at 50 digits) is not rounded through float64: the
    result differs from the one of the rounded input at the 1e-17 level."""
    mod = Model("erf(z)", 1, 1)
    with mpmath.workdps(50):
        third = mpmath.mpf(1) / 3
        exact = mod.risk([[third]], [[third / 2]], [[mpmath.mpf(1)]], dps=50)
        rounded = mod.risk([[float(third)]], [[float(third / 2)]], [[1.0]], dps=50)
        again = mod.risk(np.array([[third]], dtype=object), [[third / 2]], [[1]], dps=50)
        assert abs(exact - rounded) > mpmath.mpf(10) ** -25
        assert abs(exact - again) < mpmath.mpf(10) ** -45


@pytest.mark.parametrize("act, msg", [
    ("sin(z)", "unknown function"), ("erf(0*z)", "erf"), ("exp(z**2)", "unknown|constant"),
    ("relu(z)**8 * z", "degree"), ("erf(-2*z)", "erf"), ("8**8**8**8", "exponent"),
    ("10**8**8", "exponent"), ("tanh(z) + relu(z)", "smooth"),
    ("z**2**3", "exponent"), ("leaky_relu(z, z)", "slope"),
    ("erf(z*1e-300)", "scale a in"), ("erf(1e7*z)", "scale a in"),
])
def test_bad_activations(act, msg):
    with pytest.raises(ValueError, match=msg):
        Model(act, 2, 1)


def test_bad_callables_and_divergent_expectations():
    with pytest.raises(ValueError, match="non-finite"):
        Model(lambda u: np.log(u), 2, 1)
    with pytest.raises(ValueError, match="grows faster"):
        Model(sp.exp(sp.Symbol("z") ** 2 / 10), 2, 1)
    with pytest.raises(NotImplementedError, match="closed-form"):
        Model("tanh(z)", 2, 1).sgd_flow(np.eye(2), np.ones((2, 1)), np.eye(1), 0.1)
    with pytest.raises(ValueError, match="step activations"):
        Model("sign(z)", 2, 1).sgd_flow(np.eye(2), np.ones((2, 1)), np.eye(1), 0.1)


def test_second_process_loads_cached_kernels(tmp_path):
    """Kernels are cached on disk by a hash of the spec: a second process does not derive
    them (the code generator is imported only when kernels are rendered)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from symflow import Model; "
            "m = Model('relu(z) + 0.1*z**2', 2, 1); "
            "m.risk(np.eye(2), np.ones((2, 1)), np.eye(1)); "
            "print('symflow.codegen.render' in sys.modules)")
    env = dict(__import__("os").environ, SYMFLOW_CACHE=str(tmp_path))
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True)
    assert first.stdout.strip() == "True", first.stderr
    assert second.stdout.strip() == "False", second.stderr


def test_model_report_shows_the_derived_forms():
    rep = Model("relu(z)", 2, 1, teacher_activation="erf(z/sqrt(2))", loss_scale=0.5).report()
    assert "\\phi_{QQ}(x, y, z)" in rep and "\\operatorname{asin}" in rep
    assert "\\dot Q = -(S Q + Q S + G_M M^T + M G_M^T)" in rep


@pytest.mark.parametrize("dps", [None, 30])
def test_invalid_overlaps_are_named(dps):
    """Regression: Q = -I gave NaN with only a RuntimeWarning (float) and a bare
    ZeroDivisionError (dps); a NaN entry went through."""
    mod = Model("erf(z/sqrt(2))", 2, 2)
    eye = np.eye(2)
    for args, name in (((-eye, 0.5 * eye, eye), "Q"), ((eye, 0.5 * eye, -eye), "P"),
                       ((eye, np.full((2, 2), np.nan), eye), "M")):
        with pytest.raises(ValueError, match=f"^{name} (entries )?must"):
            mod.risk(*args, dps=dps)
    with pytest.raises(ValueError, match="^Q must"):
        mod.flow(-eye, 0.5 * eye, eye)


def test_second_layer_grad_names_a():
    """Regression: a of the wrong length died in a numpy broadcast message."""
    mod = Model("erf(z/sqrt(2))", 2, 2)
    eye = np.eye(2)
    for a, match in (([1.0, 2.0, 3.0], "a must have shape"), ([np.nan, 1.0], "a must be")):
        with pytest.raises(ValueError, match=match):
            mod.second_layer_grad(eye, 0.5 * eye, eye, a=a)


def test_empty_batch_gives_empty_results():
    """Regression: an empty batch died in numpy's "zero-size array to reduction"."""
    from symflow import risk_from_overlaps

    Q, M, P = np.zeros((0, 2, 2)), np.zeros((0, 2, 1)), np.zeros((0, 1, 1))
    assert risk_from_overlaps(Q, M, P).shape == (0,)
    mod = Model("erf(z/sqrt(2))", 2, 1)
    assert mod.risk(Q, M, P).shape == (0,)
    assert [x.shape for x in mod.flow(Q, M, P)] == [(0, 2, 2), (0, 2, 1)]


@pytest.mark.parametrize("act", ["relu(z)", "abs(z)", "leaky_relu(z, 0.2)",
                                 "relu(z) + 0.1*z**2"])
def test_perfect_recovery_is_exact_for_any_teacher_norm(act):
    """Regression: the correlation z / (sqrt(x) sqrt(y)) rounds to 1 - eps at aligned
    units, and asin's square-root singularity made relu's risk at Q = M = P = 2 equal
    3.4e-9 (1e-16 at dps = 30) and its flow 3e-9 for a Gaussian teacher, so perfect
    recovery was no fixed point.  Now atan2 of the exact zero x y - z^2.  The reference
    is the definition: L(W*, W*) = 0 and grad L(W*) = 0."""
    W = gaussian(50, 2, seed=0)
    P = W.T @ W
    mod = Model(act, 2, 2)
    assert abs(mod.risk(P, P, P)) < 1e-15 * np.sum(P * P)
    assert max(np.max(np.abs(g)) for g in mod.flow(P, P, P)) < 1e-14 * np.sum(P * P)
    two = [[2.0]]
    one = Model(act, 1, 1)
    assert abs(one.risk(two, two, two)) < 1e-15
    assert abs(one.risk(two, two, two, dps=30)) < mpmath.mpf(10) ** -28
