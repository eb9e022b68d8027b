"""Gaussian expectations of products of activations of jointly Gaussian fields, by rules.

The integrand is a product over zero-mean jointly Gaussian fields u_i (covariance C) of
one *factor* per field,

    u_i^k * shape(u_i),   shape in {1, H (Heaviside step), erf(a u), delta, exp(-c u^2)},

times a coefficient.  Every activation family of :mod:`symflow.engine.activations`
(polynomials, He_n, erf and the normal CDF, relu, leaky relu, |z|, sign, Heaviside) is a
linear combination of such factors (relu(u) = u H(u), sign(u) = 2 H(u) - 1, ...).  The
expectation is reduced by four rules, each a theorem, applied in this order:

1. **Absorption** (delta and Gaussian factors fold into the measure):
   E[delta(u_i) G] = (2 pi C_ii)^{-1/2} E'[G | u_i = 0] (u_i removed, C' the Schur
   complement C - C e_i e_i^T C / C_ii; a factor u_i^k with k >= 1 then vanishes), and
   E[exp(-c u_i^2) G] = (1 + 2 c C_ii)^{-1/2} E'[G] with
   C' = C - 2c / (1 + 2 c C_ii) C e_i e_i^T C.
2. **Stein** (Gaussian integration by parts) on a polynomial factor:
   E[u_i g] = sum_j C_ij E[d_j g]; the derivative of a shape is a shape of the table
   (H' = delta, erf(a u)' = 2a/sqrt(pi) exp(-a^2 u^2)), which rule 1 absorbs.
3. **Base cases** without polynomials: E[1] = 1, E[H(u)] = 1/2, E[erf(a u)] = 0 (zero
   mean, symmetric).
4. **Price** for products of K >= 2 shapes: d/dC_ij E[F] = E[d_i d_j F] (i != j), so
   F(C) = F(diag C) + integral of Price derivatives along a path from diag C (where the
   fields are independent and F factorises into base cases) to C.  Each Price
   derivative has two absorbed shapes, i.e. K - 2 shapes left (rules 1-4 again).
   - K <= 3: the derivative in C_ij depends on the (i, j) block only; the path moves one
     entry at a time and each integral has the form int_0^c s dc'/sqrt(r0 + r2 c'^2),
     done in closed form (the *arcsin rule*: s asin(c sqrt(-r2 / r0)) / sqrt(-r2)).
     This yields Sheppard's orthant formula P(u > 0, v > 0) = 1/4 + asin(rho)/(2 pi), the
     arcsin kernel of erf, and their cross terms.
   - K >= 4 (e.g. E[H H H H] in the online-SGD term of ReLU networks): the straight path
     C(t) = diag C + t offdiag C (t in [0, 1], positive semi-definite throughout), one
     integral in t of a closed-form integrand, returned as an unevaluated
     ``sympy.Integral`` that the code generator evaluates by tanh-sinh quadrature.

Every rule application can be recorded (``trace=``) for the derivation report.

Source: MATH.md section 9 (Stein, Price, absorption, Sheppard).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

__all__ = ["Factor", "ONE", "expect_product", "pair_expectation", "Trace"]


@dataclass(frozen=True)
class Factor:
    """u^power * shape(u) for one field u.

    ``shape``: "1", "H" (Heaviside step), "erf" (erf(param * u)), "delta" (Dirac delta)
    or "gauss" (exp(-param * u^2)).  ``param``: positive sympy number or symbol (erf scale
    a, Gaussian exponent c), None otherwise.
    """

    power: int = 0
    shape: str = "1"
    param: object = None

    def latex(self, u):
        us = sp.latex(u)
        head = "" if self.power == 0 else (us if self.power == 1 else f"{us}^{{{self.power}}}")
        if self.shape == "1":
            return head or "1"
        if self.shape == "H":
            body = f"H({us})"
        elif self.shape == "delta":
            body = f"\\delta({us})"
        elif self.shape == "erf":
            body = f"\\operatorname{{erf}}({sp.latex(self.param * u)})"
        else:
            body = f"e^{{-{sp.latex(self.param)} {us}^{{2}}}}"
        return f"{head} {body}".strip()


ONE = Factor()


class Trace:
    """Records the rules applied (name, LaTeX) for the derivation report."""

    def __init__(self):
        self.steps = []

    def add(self, rule, text):
        if len(self.steps) < 200:
            self.steps.append((rule, text))


class _Engine:
    def __init__(self, cov, trace=None):
        self.cache = {}
        self.trace = trace
        # an admissible point (unit variances, independent fields) at which the sign of a
        # non-vanishing integrand is read off (arcsin rule)
        n = cov.shape[0]
        self.point = {}
        for i in range(n):
            for j in range(n):
                for sym in sp.sympify(cov[i, j]).free_symbols:
                    self.point[sym] = 1 if i == j else self.point.get(sym, 0)

    # ------------------------------------------------------------------ helpers
    def _log(self, rule, factors, cov, note=""):
        if self.trace is None:
            return
        syms = sp.symbols(f"u_1:{len(factors) + 1}")
        prod = " ".join(f.latex(u) for f, u in zip(factors, syms))
        self.trace.add(rule, f"E[{prod}]" + (f"\\quad {note}" if note else ""))

    @staticmethod
    def _drop(factors, cov, i):
        keep = [j for j in range(len(factors)) if j != i]
        return (tuple(factors[j] for j in keep),
                sp.ImmutableMatrix(len(keep), len(keep), lambda a, b: cov[keep[a], keep[b]]))

    # --------------------------------------------------------------------- rules
    def expect(self, factors, cov):
        factors = tuple(factors)
        cov = sp.ImmutableMatrix(cov)
        # fields carrying no factor are integrated out (marginal of a Gaussian)
        idle = [i for i, f in enumerate(factors) if f == ONE]
        for i in reversed(idle):
            factors, cov = self._drop(factors, cov, i)
        if not factors:
            return sp.Integer(1)
        key = (factors, cov)
        if key in self.cache:
            return self.cache[key]
        val = self._reduce(factors, cov)
        self.cache[key] = val
        return val

    def _reduce(self, factors, cov):
        n = len(factors)
        # 1. absorption of delta / Gaussian factors
        for i, f in enumerate(factors):
            if f.shape == "delta":
                if f.power:
                    return sp.Integer(0)  # u^k delta(u) = 0 for k >= 1
                self._log("absorption", factors, cov, f"u_{i + 1} = 0")
                c = cov[:, i]
                sub = cov - c * c.T / cov[i, i]
                rest, rcov = self._drop(factors, sub, i)
                return self.expect(rest, rcov) / sp.sqrt(2 * sp.pi * cov[i, i])
            if f.shape == "gauss":
                self._log("absorption", factors, cov)
                c = cov[:, i]
                k = 2 * f.param
                sub = cov - k / (1 + k * cov[i, i]) * c * c.T
                new = factors[:i] + (Factor(f.power),) + factors[i + 1:]
                return self.expect(new, sub) / sp.sqrt(1 + k * cov[i, i])
        # 2. Stein on a polynomial factor
        for i, f in enumerate(factors):
            if f.power:
                self._log("Stein", factors, cov, f"\\text{{on }} u_{i + 1}")
                base = factors[:i] + (Factor(f.power - 1, f.shape, f.param),) + factors[i + 1:]
                total = sp.Integer(0)
                for j in range(n):
                    if cov[i, j] == 0:
                        continue
                    for coef, new in _derivative(base, j):
                        total += cov[i, j] * coef * self.expect(new, cov)
                return total
        # 3. base cases
        if n == 1:
            return sp.Rational(1, 2) if factors[0].shape == "H" else sp.Integer(0)
        # 4. Price
        return self._price(factors, cov)

    def _price(self, factors, cov):
        n = len(factors)
        at_zero = sp.Integer(1)  # independent fields: product of one-field base cases
        for f in factors:
            at_zero *= self.expect((f,), sp.ImmutableMatrix([[1]]))  # (scale-free)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if cov[i, j] != 0]
        self._log("Price", factors, cov, "d/dC_{ij} E[F] = E[\\partial_i \\partial_j F]")
        if n <= 3:
            total = at_zero
            for i, j in pairs:
                c = sp.Dummy("c", real=True)
                block = [[cov[i, i], c], [c, cov[j, j]]]
                integrand = self._price_derivative(factors, cov, i, j, block, c)
                total += _arcsin_rule(integrand, c, cov[i, j], self)
            return total
        t = sp.Dummy("t", positive=True)
        path = sp.ImmutableMatrix(n, n, lambda a, b: cov[a, b] if a == b else t * cov[a, b])
        integrand = sp.Integer(0)
        for i, j in pairs:
            d = sp.Integer(0)
            for ci, fi in _shape_derivative(factors[i]):
                for cj, fj in _shape_derivative(factors[j]):
                    new = list(factors)
                    new[i], new[j] = fi, fj
                    d += ci * cj * self.expect(new, path)
            integrand += cov[i, j] * d
        self._log("Price", factors, cov, "integral over t in [0, 1] (quadrature)")
        return at_zero + sp.Integral(integrand, (t, 0, 1))

    def _price_derivative(self, factors, cov, i, j, block, c):
        """E[d_i d_j F] with only the (i, j) block of the covariance kept (K <= 3: the
        remaining factor has zero mean after absorption, so only the block matters)."""
        n = len(factors)
        sub = sp.Matrix(cov)
        sub[i, j] = sub[j, i] = c
        d = sp.Integer(0)
        for ci, fi in _shape_derivative(factors[i]):
            for cj, fj in _shape_derivative(factors[j]):
                new = list(factors)
                new[i], new[j] = fi, fj
                rest = [k for k in range(n) if k not in (i, j)]
                # the third factor's expectation after absorbing i, j does not depend on
                # its correlations (zero-mean base case), so they are dropped
                keep = [i, j] + rest
                m = sp.ImmutableMatrix(len(keep), len(keep),
                                       lambda a, b: sub[keep[a], keep[b]]
                                       if (a < 2 and b < 2) or a == b else 0)
                d += ci * cj * self.expect([new[k] for k in keep], m)
        return d


def _shape_derivative(f):
    """d/du of a pure shape factor (no polynomial part): list of (coef, Factor)."""
    if f.power:
        raise ValueError("shape derivative of a factor with a polynomial part")
    if f.shape == "H":
        return [(sp.Integer(1), Factor(0, "delta"))]
    if f.shape == "erf":
        a = f.param
        return [(2 * a / sp.sqrt(sp.pi), Factor(0, "gauss", a**2))]
    raise ValueError(f"no Price rule for shape {f.shape!r}")


def _derivative(factors, j):
    """d/du_j of the product of factors: list of (coef, factors)."""
    f = factors[j]
    out = []
    if f.power:
        out.append((sp.Integer(f.power), factors[:j] + (Factor(f.power - 1, f.shape, f.param),)
                    + factors[j + 1:]))
    if f.shape == "1":
        return out
    if f.shape == "H":
        out.append((sp.Integer(1), factors[:j] + (Factor(f.power, "delta"),) + factors[j + 1:]))
    elif f.shape == "erf":
        a = f.param
        out.append((2 * a / sp.sqrt(sp.pi), factors[:j] + (Factor(f.power, "gauss", a**2),)
                    + factors[j + 1:]))
    else:  # delta / gauss never reach Stein (absorbed first)
        raise ValueError(f"unexpected shape {f.shape!r} under Stein")
    return out


def _arcsin_rule(integrand, c, upper, engine):
    """int_0^upper integrand(c) dc for integrand = s / sqrt(r0 + r2 c^2) (closed form).

    1 / integrand^2 must be a polynomial r0 + r2 c^2 in c (checked); then the integral is
    s * asin(upper sqrt(-r2 / r0)) / sqrt(-r2) (r2 < 0), or s * upper / sqrt(r0) (r2 = 0).
    Falls back to an unevaluated Integral when the form does not match.
    """
    integrand = sp.sympify(integrand)
    if integrand == 0:
        return sp.Integer(0)
    if c not in integrand.free_symbols:
        return integrand * upper
    # 1 / integrand^2 = r0 + r2 c^2 is checked numerically at random admissible points (30
    # digits) instead of by polynomial algebra, which costs seconds per integral on
    # four-field covariances; the code generator extracts common subexpressions anyway
    inv2 = 1 / integrand**2
    r0 = inv2.subs(c, 0)
    r2 = inv2.subs(c, 1) - r0
    if _is_quadratic(inv2, r0, r2, c, engine.point):
        # integrand = s / sqrt(r0 + r2 c^2) with s = +-1: it never vanishes, so its sign is
        # the sign at one admissible point (independent fields, unit variances)
        s = sp.sign(sp.N(integrand.subs(c, 0).subs(engine.point), 30))
        if s != 0:
            if engine.trace is not None:  # simplified for display only (small cases)
                cij = sp.Symbol("C_{ij}")

                def tidy(e):
                    return sp.simplify(e) if sp.count_ops(e) < 60 else e
                engine.trace.add("arcsin", sp.latex(sp.Eq(
                    sp.Integral(tidy(integrand), (c, 0, cij)),
                    tidy(s * sp.asin(cij * sp.sqrt(-r2 / r0)) / sp.sqrt(-r2)))))
            return s * sp.asin(upper * sp.sqrt(-r2 / r0)) / sp.sqrt(-r2)
    return sp.Integral(integrand, (c, 0, upper))


def _is_quadratic(inv2, r0, r2, c, point):
    """True if inv2(c) == r0 + r2 c^2 at three pseudo-random admissible points (diagonal
    covariance entries near 1, off-diagonal ones small, c in (0, 0.3)), to 20 digits."""
    import random

    rnd = random.Random(20240917)  # deterministic
    syms = sorted(inv2.free_symbols - {c}, key=str)
    for _ in range(3):
        vals = {sym: (1 + sp.Rational(rnd.randrange(1000), 1000) if point.get(sym, 0)
                      else sp.Rational(rnd.randrange(-100, 100), 1000)) for sym in syms}
        cv = sp.Rational(rnd.randrange(1, 300), 1000)
        vals[c] = cv
        lhs = sp.N(inv2.xreplace(vals), 30)
        rhs = sp.N((r0 + r2 * c**2).xreplace(vals), 30)
        if not (lhs.is_real and rhs.is_real) or abs(lhs - rhs) > 1e-20 * (1 + abs(lhs)):
            return False
    return True


def expect_product(factors, cov, trace=None):
    """E[prod_i factor_i(u_i)] for zero-mean Gaussian u with covariance ``cov``.

    Parameters
    ----------
    factors : sequence of Factor, length n
        One factor per field.
    cov : sympy Matrix (n, n)
        Covariance (symbolic entries allowed; diagonal entries must be positive).
    trace : Trace, optional
        Receives the rules applied.

    Returns
    -------
    sympy.Expr
        Closed form, possibly containing ``sympy.Integral`` over a path parameter for
        products of four or more step / erf shapes (rule 4).

    Source: MATH.md section 9.
    """
    return _Engine(cov, trace).expect(tuple(factors), cov)


def pair_expectation(terms1, terms2, cov, trace=None):
    """E[s1(u) s2(v)] for activations given as linear combinations of factors.

    Parameters
    ----------
    terms1, terms2 : list of (coefficient, Factor)
        s(u) = sum coefficient * factor(u).
    cov : sympy Matrix (2, 2)

    Returns
    -------
    sympy.Expr
    """
    eng = _Engine(cov, trace)
    total = sp.Integer(0)
    for c1, f1 in terms1:
        for c2, f2 in terms2:
            total += c1 * c2 * eng.expect((f1, f2), cov)
    return total
