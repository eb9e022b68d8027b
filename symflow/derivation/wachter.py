"""Symbolic derivation of the high-dimensional limit (MATH.md section 6).

This module imports sympy; the runtime (``symflow.numerics.wachter``,
``symflow.numerics.highdim``) only uses the numpy kernels generated from :func:`kernels`.

Notation (MATH.md section 6): mu is the limiting spectral measure of Y_d (mass alpha),
mu_ac its absolutely continuous part with density
sqrt((r2 - lam)(lam - r1)) / (2 pi lam (1 - lam)) on [r1, r2].  We write
sigma(dlam) = sqrt((r2 - lam)(lam - r1)) / (2 pi) dlam, so that
dmu_ac = sigma(dlam) / (lam (1 - lam)).  Every integral the limit needs is
int h(lam) dmu_ac with h rational in lam; partial fractions in lam reduce it to the
single closed form H(a, b) = int sigma(dlam) / (a + b lam) (and its a-derivative).

Runtime variables (all bounded, so nothing overflows for long horizons):
  u = 1/J = exp(-log J) in (0, 1],   v = J/E = exp(log J - 4 gamma/alpha*) in (0, 1],
  s = J Theta'(J - 1) + (alpha + alpha* - 1)_+.
"""

from __future__ import annotations

import sympy as sp

lam = sp.Symbol("lam", real=True)
z = sp.Symbol("z", real=True)
x = sp.Symbol("x", nonnegative=True)
u = sp.Symbol("u", positive=True)
v = sp.Symbol("v", positive=True)
a, b = sp.symbols("a b", real=True)
r1, r2 = sp.symbols("r1 r2", nonnegative=True)
alpha, alpha_star = sp.symbols("alpha alpha_star", positive=True)
gamma = sp.Symbol("gamma", nonnegative=True)

_c = (r1 + r2) / 2  # centre of the support
_R2 = (r2 - r1) ** 2 / 4  # squared half-width


def edges():
    """Edges (r1, r2) of the support of mu_ac in terms of (alpha, alpha*) (MATH.md 6)."""
    p = sp.sqrt(alpha * (1 - alpha_star))
    q = sp.sqrt(alpha_star * (1 - alpha))
    return (p - q) ** 2, (p + q) ** 2


def density():
    """Density of mu_ac in lam on [r1, r2] (MATH.md 6)."""
    return sp.sqrt((r2 - lam) * (lam - r1)) / (2 * sp.pi * lam * (1 - lam))


def stieltjes_sigma():
    """Step 1: G(z) = int sigma(dlam)/(z - lam) = (z - c - sqrt((z - r1)(z - r2)))/2.

    Returned in the rationalised form R^2 / (2 (z - c + sqrt(...))) (for z >= r2), which
    has no cancellation; ``stieltjes_check`` shows the two forms agree.
    """
    return _R2 / (2 * (z - _c + sp.sqrt((z - r1) * (z - r2))))


def stieltjes_check():
    """Difference of the textbook and rationalised forms of G; simplifies to 0."""
    textbook = (z - _c - sp.sqrt((z - r1) * (z - r2))) / 2
    sq = sp.sqrt((z - r1) * (z - r2))
    # multiply through by the (nonzero) conjugate z - c + sq and use sq^2 = (z-r1)(z-r2)
    diff = sp.expand((textbook - stieltjes_sigma()) * 2 * (z - _c + sq))
    return sp.simplify(diff.subs(sq**2, (z - r1) * (z - r2)))


def H(a_, b_):
    """Step 2: H(a, b) = int sigma(dlam)/(a + b lam), valid when a + b lam > 0 on [r1, r2].

    From G by homogeneity: H(a, b) = G(-a/b)/(-b) for b > 0 (branch ~ z at infinity),
    = G(a/|b|)/|b| for b < 0; both give this single formula, which is free of
    cancellation because every term of the denominator is non-negative.
    """
    return _R2 / (2 * (a_ + _c * b_ + sp.sqrt((a_ + r1 * b_) * (a_ + r2 * b_))))


def H2(a_, b_):
    """int sigma(dlam)/(a + b lam)^2 = -dH/da, written with positive terms only."""
    S = sp.sqrt((a_ + r1 * b_) * (a_ + r2 * b_))
    return _R2 * (1 + (a_ + _c * b_) / S) / (2 * (a_ + _c * b_ + S) ** 2)


def H2_check():
    """-dH/da minus H2: simplifies to 0."""
    return sp.simplify(-sp.diff(H(a, b), a) - H2(a, b))


def partial_fractions(h):
    """Step 3: coefficients (A, B, C1, C2) with h/(lam (1 - lam)) =
    A/lam + B/(1 - lam) + C1/(a + b lam) + C2/(a + b lam)^2  (h = N(lam)/(a + b lam)^k).

    Solved as a linear system in the coefficients, then simplified with a + b = 1 kept
    symbolic (a, b are substituted by the caller).
    """
    A, B, C1, C2 = sp.symbols("A B C1 C2")
    w = a + b * lam
    target = sp.together(h / (lam * (1 - lam)))
    ansatz = A / lam + B / (1 - lam) + C1 / w + C2 / w**2
    num = sp.numer(sp.together((target - ansatz) * lam * (1 - lam) * w**2))
    eqs = sp.Poly(sp.expand(num), lam).all_coeffs()
    sol = sp.solve(eqs, [A, B, C1, C2], dict=True)[0]
    return tuple(sol.get(s, sp.Integer(0)) for s in (A, B, C1, C2))


def integrate_mu_ac(h, a_, b_):
    """int h dmu_ac in closed form for h rational in lam with pole only at a + b lam = 0.

    Returns an expression in (a_, b_, r1, r2) built from H; coefficients are factored
    after substituting (a, b) -> (a_, b_).
    """
    coeffs = partial_fractions(h)
    A, B, C1, C2 = (sp.factor(sp.simplify(cf.subs({a: a_, b: b_}))) for cf in coeffs)
    return A * H(0, 1) + B * H(1, -1) + C1 * H(a_, b_) + C2 * H2(a_, b_)


def theta_prime_x():
    """Theta'(x) = int lam/(1 + x lam) dmu_ac (x >= 0, stable for moderate x)."""
    return integrate_mu_ac(lam / (a + b * lam), 1, x)


def jtheta_prime_u():
    """J Theta'(J - 1) = int lam/(u + (1 - u) lam) dmu_ac with u = 1/J in (0, 1]."""
    return integrate_mu_ac(lam / (a + b * lam), u, 1 - u)


def overlap_k_u():
    """K = int ((e + (1 - e) lam)/(u + (1 - u) lam))^2 dmu_ac with e = 1/E = u v.

    Enters the overlap chi (MATH.md 6): B = (alpha - alpha*)_+ + (p + K)/v^2.
    The numerator uses e = v a so that the coefficient of 1/lam is v^2 (no 1/u).
    """
    e = v * a
    return integrate_mu_ac((e + (1 - e) * lam) ** 2 / (a + b * lam) ** 2, u, 1 - u)


def overlap_rewrite_check():
    """Identity behind K: (1 + (E-1) lam)/(1 + (J-1) lam) = (e + (1-e) lam)/(v (u + (1-u) lam))
    with J = 1/u, E = J/v, e = u v.  Returns the simplified difference (0)."""
    J = 1 / u
    E = J / v
    e = u * v
    lhs = (1 + (E - 1) * lam) / (1 + (J - 1) * lam)
    rhs = (e + (1 - e) * lam) / (v * (u + (1 - u) * lam))
    return sp.simplify(lhs - rhs)


def limit_system():
    """Steps 4-6: the limit system from the finite-d reduction (MATH.md 5 -> 6).

    Finite d, gamma units (t = d gamma):  F' = (4/alpha) e^{-2 phi}, G' = F' E,
    phi_d = 1/4 sum_k log(F (1 - lam_k) + G lam_k) - d gamma.  Replacing the empirical
    measure (1/d) sum_k delta_{lam_k} by mu (atoms at 0 contribute log F, atoms at 1
    log G) gives phi_d = d C / 4 + o(d) with
    C = alpha log F + Theta(J - 1) + p log J - 4 gamma, p = (alpha + alpha* - 1)_+.
    phi_d = O(1) forces C = 0 for all gamma, i.e. dC/dgamma = 0, which is linear in
    e^{-2 phi} and gives phi.  Returns a dict of sympy expressions.
    """
    F, J, E, phi, p = sp.symbols("F J E phi p", positive=True)
    Theta = sp.Function("Theta")
    w = sp.Symbol("w", positive=True)  # w = e^{-2 phi}
    C = alpha * sp.log(F) + Theta(J - 1) + p * sp.log(J) - 4 * gamma
    Fp = 4 / alpha * w
    Jp = Fp * (E - J) / F  # J = G/F, G' = E F'
    dC = alpha * Fp / F + Theta(J - 1).diff(J) * Jp + p * Jp / J - 4
    w_sol = sp.solve(sp.Eq(dC, 0), w)[0]
    exp2phi = sp.simplify(1 / w_sol)
    # runtime variables: J = 1/u, E = J/v, J Theta'(J-1) = s - p
    s = sp.Symbol("s", positive=True)
    tp = sp.Symbol("tp")
    sub = {E: J / v}
    exp2phi_s = sp.simplify(exp2phi.subs(Theta(J - 1).diff(J), tp).subs(tp, (s - p) / J).subs(sub))
    dlogf = sp.simplify((Fp / F).subs(w, 1 / exp2phi).subs(Theta(J - 1).diff(J), (s - p) / J)
                        .subs(sub))
    dlogj = sp.simplify((Jp / J).subs(w, 1 / exp2phi).subs(Theta(J - 1).diff(J), (s - p) / J)
                        .subs(sub))
    # F e^{2 phi} = D depends on (v, s) only: phi = (log D - log F)/2
    D = sp.simplify(exp2phi_s * F)
    return {"constraint": C, "dC": dC, "exp2phi": exp2phi, "D": D,
            "dlogf": dlogf, "dlogj": dlogj}


def chi_expr():
    """Step 7: chi = A/sqrt(alpha* B) (MATH.md 6) in runtime variables.

    With J Theta'(J-1) = s - p and the rewrite of ``overlap_rewrite_check``:
    A = (E/J) s = s/v,  B = q0 + (p + K)/v^2, q0 = (alpha - alpha*)_+.
    """
    s, p, q0, K = sp.symbols("s p q0 K", nonnegative=True)
    A = s / v
    B = q0 + (p + K) / v**2
    return sp.simplify(A / sp.sqrt(alpha_star * B)), (s, p, q0, K)


def kernels():
    """Scalar closed forms needed at runtime: (name, args, expr, doc)."""
    sys_ = limit_system()
    s, p = sp.symbols("s p", positive=True)
    logf, logv = sp.symbols("logf logv", real=True)
    D = sys_["D"]
    # log D written with log v passed in (v may underflow): D = (alpha v + (1-v) s)/(alpha v)
    Dnum = sp.factor(D * alpha * v)
    phi = (sp.log(Dnum) - sp.log(alpha) - logv - logf) / 2
    chi, chi_args = chi_expr()
    s_, p_, q0_, K_ = chi_args
    e1, e2 = edges()
    return [
        ("wachter_r1", (alpha, alpha_star), e1, "lower edge r1 of mu_ac (MATH.md 6)"),
        ("wachter_r2", (alpha, alpha_star), e2, "upper edge r2 of mu_ac (MATH.md 6)"),
        ("wachter_density", (lam, r1, r2), density(),
         "density of mu_ac at lam in (r1, r2) (MATH.md 6)"),
        ("theta_prime", (x, r1, r2), theta_prime_x(),
         "Theta'(x) = int lam/(1 + x lam) dmu_ac; x >= 0 moderate (MATH.md 6)"),
        ("jtheta_prime", (u, r1, r2), jtheta_prime_u(),
         "J Theta'(J - 1) as a function of u = 1/J in (0, 1] (MATH.md 6)"),
        ("overlap_k", (u, v, r1, r2), overlap_k_u(),
         "K = int ((e + (1-e) lam)/(u + (1-u) lam))^2 dmu_ac, e = u v (MATH.md 6 chi)"),
        ("limit_dlogf", (v, s, alpha), sys_["dlogf"],
         "d log F / d gamma in terms of v = J/E and s = J Theta'(J-1) + p (MATH.md 6)"),
        ("limit_dlogj", (v, s, alpha), sys_["dlogj"],
         "d log J / d gamma in terms of v and s (MATH.md 6)"),
        ("limit_phi", (logf, logv, v, s, alpha), phi,
         "phi = (log(F e^{2 phi}) - log F)/2 from (log F, log v, v, s) (MATH.md 6)"),
        ("limit_chi", (v, s_, p_, q0_, K_, alpha_star), chi,
         "overlap chi = A/sqrt(alpha* B) in runtime variables (MATH.md 6)"),
    ]
