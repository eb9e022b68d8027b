"""Wachter law: closed forms of section 6 against independent quadrature (MATH.md 6)."""

import math

import mpmath as mp
import numpy as np
import pytest
from scipy import integrate

from symflow.numerics import wachter as W

# (alpha, alpha*) covering alpha > alpha*, alpha < alpha*, alpha = alpha* (x^{-1/2} edge),
# alpha + alpha* > 1 (atom at 1), alpha + alpha* = 1 (r2 = 1), alpha = 1, alpha* = 1.
CASES = [(0.5, 0.25), (0.25, 0.5), (0.5, 0.5), (0.3, 0.3), (0.7, 0.6), (0.3, 0.7),
         (0.6, 0.4), (0.9, 0.9), (1.0, 0.3), (0.4, 1.0), (1.0, 1.0), (0.05, 0.02)]


def ref_edges(a, s):
    """Edges typed from MATH.md 6 (independent of the generated kernels)."""
    p, q = math.sqrt(a * (1 - s)), math.sqrt(s * (1 - a))
    return max((p - q) ** 2, 0.0), min((p + q) ** 2, 1.0)


def quad_mu(h, a, s, points=None):
    """int h dmu_ac by QUADPACK QAWS: weight (lam - r1)^e1 (r2 - lam)^e2 absorbs the sqrt
    edges, and the x^{-1/2} (r1 = 0) or (1 - lam)^{-1/2} (r2 = 1) edges exactly."""
    r1, r2 = ref_edges(a, s)
    if r2 - r1 < 1e-14:
        return 0.0
    e1 = -0.5 if r1 == 0 else 0.5
    e2 = -0.5 if r2 == 1 else 0.5

    def f(lam):
        w = h(lam) / (2 * math.pi)
        if r1 != 0:
            w /= lam
        if r2 != 1:
            w /= 1 - lam
        return w

    return integrate.quad(f, r1, r2, weight="alg", wvar=(e1, e2), epsabs=1e-14,
                          epsrel=1e-13, limit=500)[0]


def mp_mu(h, a, s, extra=(), upper=None):
    """int h dmu_ac (over [r1, upper] if given) with mpmath tanh-sinh at 30 digits
    (it copes with the algebraic endpoint singularities)."""
    with mp.workdps(30):
        r1, r2 = (mp.mpf(t) for t in ref_edges(a, s))
        if r2 - r1 < mp.mpf(1e-14):
            return 0.0
        dens = lambda l: mp.sqrt((r2 - l) * (l - r1)) / (2 * mp.pi * l * (1 - l))  # noqa: E731
        pts = [r1] + [mp.mpf(p) for p in extra if r1 < p < r2] + [r2]
        if upper is not None:
            pts = [r1, mp.mpf(upper)]
        return float(mp.quad(lambda l: h(l) * dens(l), pts))


def test_derivation_identities():
    """Symbolic steps of symflow.derivation.wachter simplify to zero."""
    from symflow.derivation import wachter as D

    assert D.stieltjes_check() == 0
    assert D.H2_check() == 0
    assert D.overlap_rewrite_check() == 0


def test_generated_kernels_match_derivation():
    """Generated numpy module is in sync with the sympy expressions (mpmath evaluation)."""
    import sympy as sp

    from symflow.derivation.wachter import kernels
    from symflow.generated import limit_numpy as K

    rng = np.random.default_rng(0)
    for name, args, expr, _ in kernels():
        f = sp.lambdify(args, expr, "mpmath")
        names = [str(a) for a in args]
        for _ in range(3):
            vals = dict(zip(names, rng.uniform(0.1, 0.45, len(args))))
            if "r2" in vals:
                vals["r2"] = vals["r1"] + 0.5  # support inside (0, 1)
            if "lam" in vals:
                vals["lam"] = vals["r1"] + 0.25
            x = [vals[n] for n in names]
            assert float(getattr(K, name)(*x)) == pytest.approx(float(f(*x)), rel=1e-13)


@pytest.mark.parametrize("a,s", CASES)
def test_edges_atoms_and_total_mass(a, s):
    r1, r2 = W.wachter_edges(a, s)
    assert (r1, r2) == pytest.approx(ref_edges(a, s), abs=1e-15)
    assert (r1 == 0) == (a == s)
    atoms = dict(W.wachter_atoms(a, s))
    ac = quad_mu(lambda lam: 1.0, a, s)
    # density as implemented, integrated with QAWS-free adaptive quad where it is bounded
    assert ac + sum(atoms.values()) == pytest.approx(a, abs=1e-12)
    if r2 - r1 > 1e-12:
        dens = lambda t: float(W.wachter_density(t, a, s))  # noqa: E731
        lo, hi = r1 + 1e-300, r2
        got = integrate.quad(dens, lo, hi, limit=500, epsabs=1e-11)[0]
        assert got == pytest.approx(ac, abs=1e-7)  # x^{-1/2} edges limit plain quad
    assert W.wachter_density(np.array([-1.0, 0.0, r1, r2, 1.0, 2.0]), a, s)[[0, 2, 3, 5]].sum() == 0


@pytest.mark.parametrize("a,s", CASES)
def test_theta_prime_closed_form_vs_quadrature(a, s):
    """Closed form vs QAWS to 1e-12, on x from 0 to 1e8 (both branches of theta_prime)."""
    xs = np.array([0.0, 1e-9, 0.3, 1.0, 1.0000001, 2.5, 40.0, 1e4, 1e8, -0.4])
    got = W.theta_prime(xs, a, s)
    for x, g in zip(xs, got):
        ref = quad_mu(lambda lam: lam / (1 + x * lam), a, s)
        assert g == pytest.approx(ref, abs=1e-12, rel=1e-11), (x, g, ref)


@pytest.mark.parametrize("a,s", [(0.5, 0.25), (0.5, 0.5), (0.3, 0.7), (0.7, 0.6)])
def test_theta_prime_vs_mpmath(a, s):
    for x in [0.0, 0.7, 3.0, 1e3]:
        ref = mp_mu(lambda lam: lam / (1 + x * lam), a, s, extra=[1 / (1 + x)])
        assert float(W.theta_prime(x, a, s)) == pytest.approx(ref, abs=1e-13, rel=1e-12)


def mp_theta_of_logj(y, a, s):
    """Theta(e^y - 1) = int log(1 - lam + e^y lam) dmu_ac by mpmath tanh-sinh at 40 digits;
    at r2 = 1 in lam = 1 - w^2, which makes the (1 - lam)^{-1/2} edge and the feature of
    width e^y there smooth in w (independent of the QAWS rule of the package)."""
    r1, r2 = ref_edges(a, s)
    with mp.workdps(40):
        mr1, mr2, ey = mp.mpf(r1), mp.mpf(r2), mp.exp(y)
        if r2 < 1:
            def f(l):
                d1 = mp.sqrt(l - mr1) / l if r1 else 1 / mp.sqrt(l)
                return d1 * mp.sqrt(mr2 - l) / (1 - l) / (2 * mp.pi) * mp.log(1 - l + ey * l)
            return float(mp.quad(f, [mr1, (mr1 + mr2) / 2, mr2]))

        def g(w):
            l = 1 - w * w
            d1 = mp.sqrt(max(l - mr1, 0)) / l if r1 else 1 / mp.sqrt(max(l, mp.mpf(10) ** -80))
            return d1 / mp.pi * mp.log(w * w + ey * l)
        top = mp.sqrt(1 - mr1)
        pts = {mp.mpf(0), top / 2, top} | ({mp.exp(y / 2), mp.exp(y / 4)} if y < 0 else set())
        return float(mp.quad(g, sorted(p for p in pts if p <= top)))


@pytest.mark.parametrize("a,s", CASES)
def test_theta_vs_mpmath(a, s):
    """theta / theta_of_logj (QAWS quadrature) vs mpmath at 40 digits, x in (-1, 1e12]."""
    r1, r2 = ref_edges(a, s)
    for x in [0.0, 0.5, 3.0, 1e3, 1e12, -0.5]:
        ref = 0.0 if r2 - r1 < 1e-14 else mp_theta_of_logj(math.log1p(x), a, s)
        assert float(W.theta(x, a, s)) == pytest.approx(ref, abs=2e-13, rel=1e-12), x


@pytest.mark.parametrize("a,s", [(0.5, 0.25), (0.5, 0.5), (0.3, 0.7), (0.25, 0.25),
                                 (0.9, 0.95)])
def test_theta_of_logj_extreme_arguments(a, s):
    """Regression: theta_of_logj gave -5.68 instead of -0.2158 at y = -400 and NaN at
    y = -710 (closed form of J Theta'(J - 1) overflowing at u = 1/J > 1e150)."""
    ys = np.array([-710.0, -400.0, -40.0, -10.0, 10.0, 1e3, 1.6e4])
    got = W.theta_of_logj(ys, a, s)
    for y, v in zip(ys, got):
        assert v == pytest.approx(mp_theta_of_logj(y, a, s), abs=1e-13 * (1 + abs(y))), y


@pytest.mark.parametrize("a,s", CASES)
def test_overlap_k_vs_quadrature(a, s):
    """K(u, v) closed form (private helper used for chi) vs QAWS, incl. tiny u and v."""
    r1, r2 = W.wachter_edges(a, s)
    for u in [1.0, 0.6, 1e-3, 1e-9]:
        for v in [1.0, 0.3, 1e-6]:
            e = u * v

            def h(lam, e=e, u=u):
                return ((e + (1 - e) * lam) / (u + (1 - u) * lam)) ** 2

            ref = quad_mu(h, a, s)
            got = float(W._overlap_k(u, v, r1, r2))
            assert got == pytest.approx(ref, abs=1e-11, rel=1e-11), (u, v)


@pytest.mark.parametrize("d,a,s", [(1000, 0.3, 0.5), (600, 0.75, 0.5), (500, 0.5, 0.5)])
def test_sample_spectrum_matches_law(d, a, s):
    """Empirical measure (1/d) sum delta_{lam_k} vs mu: CDF distance O(1/d), exact atoms."""
    lam = W.sample_overlap_spectrum(d, a, s, seed=1)
    m, ms = round(a * d), round(s * d)
    assert lam.shape == (m,) and np.all(np.diff(lam) >= 0)
    assert np.all((lam >= 0) & (lam <= 1))
    assert np.sum(lam == 0) >= max(m - ms, 0) and np.sum(lam == 1) == max(m + ms - d, 0)
    r1, r2 = W.wachter_edges(a, s)
    atom0 = dict(W.wachter_atoms(a, s)).get(0.0, 0.0)
    for x in np.linspace(r1, r2, 9)[1:-1]:
        ref = atom0 + mp_mu(lambda t: 1, a, s, upper=x)
        emp = np.sum(lam <= x) / d
        assert emp == pytest.approx(ref, abs=10.0 / d), x


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), float("inf")])
def test_bad_alpha(bad):
    with pytest.raises(ValueError, match="alpha"):
        W.wachter_edges(bad, 0.5)
    with pytest.raises(ValueError, match="alpha_star"):
        W.theta_prime(1.0, 0.5, bad)
    with pytest.raises(ValueError, match="alpha"):
        W.wachter_density([0.5], bad, 0.5)


def test_bad_other_inputs():
    with pytest.raises(TypeError, match="alpha"):
        W.wachter_atoms("a", 0.5)
    with pytest.raises(ValueError, match="x"):
        W.theta_prime([-1.0], 0.5, 0.5)
    with pytest.raises(ValueError, match="x"):
        W.theta([np.nan], 0.5, 0.5)
    with pytest.raises(ValueError, match="d"):
        W.sample_overlap_spectrum(0, 0.5, 0.5)
    with pytest.raises(ValueError, match="m"):
        W.sample_overlap_spectrum(3, 0.1, 0.5)
