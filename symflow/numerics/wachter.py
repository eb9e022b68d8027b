"""Wachter (Jacobi) law of the overlap spectrum and its transforms (MATH.md section 6).

mu is the limit of (1/d) sum_{k=1}^m delta_{lambda_k}, lambda_k the eigenvalues of
Y_d = U^T U* U*^T U (d -> infinity, m/d -> alpha, m*/d -> alpha*); it has mass alpha.
The closed forms are generated from ``symflow.derivation.wachter`` (no sympy here).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import integrate

from symflow._threads import single_threaded_blas
from symflow._validate import finite_float, positive_int
from symflow._validate import rng as _rng
from symflow.generated import limit_numpy as _k

_U_MIN = 1e-300  # u = 1/J is clipped here; contributions below are O(sqrt(u))


ALPHA_MIN = 1e-6  # below this the limit ODE is too stiff / ill-conditioned in double


def _alphas(alpha, alpha_star):
    a = finite_float(alpha, "alpha", lo=0.0, hi=1.0, lo_open=True)
    s = finite_float(alpha_star, "alpha_star", lo=0.0, hi=1.0, lo_open=True)
    for v, name in ((a, "alpha"), (s, "alpha_star")):
        if v < ALPHA_MIN:
            raise ValueError(f"{name} = {v:g} is below the supported range [{ALPHA_MIN:g}, 1]")
    return a, s


def wachter_edges(alpha, alpha_star):
    """Edges of the absolutely continuous part of mu.

    Parameters
    ----------
    alpha, alpha_star : float in (0, 1]
        Width ratios m/d and m*/d.

    Returns
    -------
    (r1, r2) : tuple of float
        r_{1,2} = (sqrt(alpha (1 - alpha*)) -/+ sqrt(alpha* (1 - alpha)))^2, clipped to
        [0, 1] against rounding (r1 = 0 iff alpha = alpha*, r2 = 1 iff alpha + alpha* = 1).
        r1 = r2 (no continuous part) when alpha = 1 or alpha* = 1.

    Raises
    ------
    ValueError, TypeError
        If alpha or alpha_star is not a finite number in (0, 1].

    Source: MATH.md section 6.
    """
    a, s = _alphas(alpha, alpha_star)
    r1 = 0.0 if a == s else min(max(float(_k.wachter_r1(a, s)), 0.0), 1.0)
    # 1 - r2 = (sqrt(alpha alpha*) - sqrt((1 - alpha)(1 - alpha*)))^2, formed directly:
    # 1 - (generated r2) loses every digit near alpha + alpha* = 1 (regression: r2 was
    # 1 - 2.2e-16 at (0.1, 0.9), chi off by 7.5e-9); the edge is set exactly when
    # alpha + alpha* = 1 in the decimal reading of the floats, as the mpmath path does
    one_minus_r2 = (np.sqrt(a * s) - np.sqrt((1.0 - a) * (1.0 - s))) ** 2
    if _sums_to_one(a, s):
        r2 = 1.0
    elif one_minus_r2 < 0.5:
        r2 = 1.0 - one_minus_r2
    else:
        r2 = float(_k.wachter_r2(a, s))
    return r1, min(max(r2, r1), 1.0)


def _sums_to_one(a, s):
    """alpha + alpha* == 1 for the decimals the floats print as (0.3 + 0.7, 0.1 + 0.9)."""
    return Fraction(repr(float(a))) + Fraction(repr(float(s))) == 1


def wachter_atoms(alpha, alpha_star):
    """Atoms of the limiting spectral measure mu of Y_d / d.

    Parameters
    ----------
    alpha, alpha_star : float in [1e-6, 1]
        m / d and m* / d.

    Returns
    -------
    list of (location, mass)
        Mass (alpha - alpha*)_+ at 0 and (alpha + alpha* - 1)_+ at 1; atoms of zero mass
        are omitted.

    Raises
    ------
    ValueError, TypeError
        Bad ``alpha`` or ``alpha_star``.

    Source: MATH.md section 6.
    """
    a, s = _alphas(alpha, alpha_star)
    atoms = [(0.0, max(a - s, 0.0)), (1.0, max(a + s - 1.0, 0.0))]
    return [(loc, mass) for loc, mass in atoms if mass > 0]


def wachter_density(x, alpha, alpha_star):
    """Density of the absolutely continuous part of mu.

    Parameters
    ----------
    x : array_like, any shape
        Points in [0, 1] (eigenvalue scale of Y_d, not divided by d).
    alpha, alpha_star : float in (0, 1]

    Returns
    -------
    ndarray, shape of x
        sqrt((r2 - x)(x - r1)) / (2 pi x (1 - x)) on the open interval (r1, r2), 0 elsewhere
        (including the edges; at alpha = alpha* it diverges like x^{-1/2} at 0).  Its
        integral is the continuous mass min(alpha, alpha*) - (alpha + alpha* - 1)_+, so a
        histogram of ``sample_overlap_spectrum(d, ...)`` with counts / (d * binwidth)
        approximates it (plus the atoms of ``wachter_atoms``).

    Source: MATH.md section 6.
    """
    r1, r2 = wachter_edges(alpha, alpha_star)
    x = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(x)):  # regression: NaN used to give density 0
        raise ValueError("x must contain only finite values")
    inside = (x > r1) & (x < r2)
    if r2 <= r1:
        return np.zeros_like(x)
    xs = np.where(inside, x, 0.5 * (r1 + r2))
    return np.where(inside, _k.wachter_density(xs, r1, r2), 0.0)


def _on_edges(kernel, r1, r2, *args):
    """``kernel(*args, r1, r2)`` where mu has a continuous part (r2 > r1), else 0.

    r1, r2 may be scalars or arrays broadcasting against ``args`` (one pair of edges per
    cell of a batch); cells without a continuous part get dummy edges, so the closed
    form never sees 0/0.
    """
    r1, r2 = np.asarray(r1, dtype=float), np.asarray(r2, dtype=float)
    ac = r2 > r1
    shape = np.broadcast_shapes(r1.shape, *(np.shape(x) for x in args))
    if not ac.any():
        return np.zeros(shape)
    if ac.all():
        return np.broadcast_to(kernel(*args, r1, r2), shape).astype(float)
    out = kernel(*args, np.where(ac, r1, 0.25), np.where(ac, r2, 0.75))
    return np.where(ac, out, 0.0)


def _jtheta_prime(u, r1, r2):
    """J Theta'(J - 1) at u = 1/J (array), 0 where there is no continuous part."""
    return _on_edges(_k.jtheta_prime, r1, r2, np.maximum(np.asarray(u, dtype=float), _U_MIN))


def _overlap_k(u, v, r1, r2):
    return _on_edges(_k.overlap_k, r1, r2, np.maximum(np.asarray(u, dtype=float), _U_MIN), v)


def _as_x(x):
    x = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(x)) or np.any(x <= -1):
        raise ValueError("x must be finite and > -1")
    return x


def theta_prime(x, alpha, alpha_star):
    """Theta'(x) = int lambda / (1 + x lambda) dmu_ac(lambda), closed form.

    Parameters
    ----------
    x : array_like, any shape, entries > -1 (in the limit system x = J - 1 >= 0)
    alpha, alpha_star : float in (0, 1]

    Returns
    -------
    ndarray, shape of x
        Uses the generated closed form in x for x <= 1 and, to avoid overflow, the form
        J Theta'(J - 1) in u = 1/J = 1/(1 + x) for x > 1.

    Raises
    ------
    ValueError
        If x has entries <= -1 or non-finite, or alpha/alpha_star is bad.

    Source: MATH.md section 6; derivation in ``symflow.derivation.wachter``.
    """
    r1, r2 = wachter_edges(alpha, alpha_star)
    x = _as_x(x)
    if r2 <= r1:
        return np.zeros_like(x)
    small = x <= 1
    xs = np.where(small, x, 0.0)
    xl = np.where(small, 1.0, x)
    return np.where(small, _k.theta_prime(xs, r1, r2),
                    _k.jtheta_prime(1.0 / (1.0 + xl), r1, r2) / (1.0 + xl))


def theta_of_logj(y, alpha, alpha_star):
    """Theta(e^y - 1) = int log(1 + (e^y - 1) lambda) dmu_ac(lambda), for log J = y.

    Parameters
    ----------
    y : array_like, any shape, finite (y = log J = log(1 + x))
    alpha, alpha_star : float in (0, 1]

    Returns
    -------
    ndarray, shape of y
        Direct quadrature of the Wachter density (independent of the closed form of
        Theta' used by the limit ODE): the edge behaviour sqrt(lambda - r1) sqrt(r2 -
        lambda) (or lambda^{-1/2}, (1 - lambda)^{-1/2} at r1 = 0, r2 = 1) is the
        algebraic weight of QUADPACK's QAWS rule (``scipy.integrate.quad``,
        ``weight="alg"``), and the integrand log((1 - lambda) + e^y lambda) is formed
        with ``logaddexp``, so nothing overflows or cancels for any finite y.  Measured
        against mpmath quadrature at 40 digits: absolute error <= 1e-13 (1 + |y|).

    Raises
    ------
    ValueError
        Non-finite y or bad alpha / alpha_star.

    Source: MATH.md section 6 (Theta(x) = int log(1 + x lambda) dmu_ac).
    """
    r1, r2 = wachter_edges(alpha, alpha_star)
    y = np.asarray(y, dtype=float)
    if not np.all(np.isfinite(y)):
        raise ValueError("y must be finite")
    out = np.zeros(y.shape)
    if r2 <= r1:
        return out
    # density = w(lambda) * (lambda - r1)^al (r2 - lambda)^be with al, be = +-1/2 and a
    # smooth w (regression: the earlier integral of J Theta'(J - 1) in log J gave -5.68
    # instead of -0.2158 at y = -400 and NaN at y = -710)
    al = -0.5 if r1 == 0 else 0.5
    be = -0.5 if r2 == 1 else 0.5

    def smooth(lam):
        return (1.0 if r1 == 0 else 1.0 / lam) * (1.0 if r2 == 1 else 1.0 / (1.0 - lam)) \
            / (2.0 * np.pi)

    opts = dict(epsabs=1e-14, epsrel=1e-13, limit=200)
    for idx, yy in np.ndenumerate(y):
        yy = float(yy)
        if r2 == 1.0 and yy < 0:
            out[idx] = _theta_edge_one(yy, r1, opts)
            continue

        def f(lam, yy=yy):
            with np.errstate(divide="ignore"):  # log1p(-1) = -inf at r2 = 1 is harmless
                return smooth(lam) * np.logaddexp(np.log1p(-lam), yy + np.log(lam))

        out[idx] = integrate.quad(f, r1, r2, weight="alg", wvar=(al, be), **opts)[0]
    return out


def _theta_edge_one(y, r1, opts):
    """Theta(e^y - 1) for r2 = 1 and y < 0: log(1 - lambda + e^y lambda) has a feature of
    width e^y at lambda = 1 where the density diverges like (1 - lambda)^{-1/2}.  With
    lambda = 1 - w^2 the density times dlambda is smooth at w = 0 and the feature has
    width e^{y/2}: a plain rule resolves it on [0, c], c = min(50 e^{y/2}, top / 2), and
    the rest [c, top] (top = sqrt(1 - r1)) carries the algebraic weight of the r1 edge,
    lambda - r1 = (top - w)(top + w)."""
    top = np.sqrt(1.0 - r1)
    ex = 0.5 if r1 > 0 else -0.5  # density ~ (lambda - r1)^(+1/2), or lambda^(-1/2) at r1 = 0

    def g(w):  # 2 w * density(1 - w^2) * log(w^2 + e^y (1 - w^2)) / (lambda - r1)^ex
        lam = 1.0 - w * w
        with np.errstate(divide="ignore"):  # w = 0 or lambda = 0 at an edge: log -> -inf
            return np.logaddexp(2.0 * np.log(w), y + np.log(lam)) \
                * (1.0 if r1 == 0 else 1.0 / lam) / np.pi

    c = min(50.0 * np.exp(0.5 * y), 0.5 * top)
    pts = [p for p in (np.exp(0.5 * y), 5.0 * np.exp(0.5 * y)) if p < c] or None
    head = integrate.quad(lambda w: g(w) * ((top - w) * (top + w)) ** ex, 0.0, c, points=pts,
                          **opts)[0]
    tail = integrate.quad(lambda w: g(w) * (top + w) ** ex, c, top, weight="alg",
                          wvar=(0.0, ex), **opts)[0]
    return head + tail


def theta(x, alpha, alpha_star):
    """Theta(x) = int log(1 + x lambda) dmu_ac(lambda).

    Parameters
    ----------
    x : array_like, any shape, entries > -1
    alpha, alpha_star : float in (0, 1]

    Returns
    -------
    ndarray, shape of x
        Computed as ``theta_of_logj(log1p(x))`` (quadrature of the closed form of
        Theta' in log J, which has no edge singularities even at alpha = alpha*).

    Raises
    ------
    ValueError
        If x has entries <= -1 or non-finite, or alpha/alpha_star is bad.

    Source: MATH.md section 6.
    """
    _alphas(alpha, alpha_star)
    return theta_of_logj(np.log1p(_as_x(x)), alpha, alpha_star)


@single_threaded_blas
def sample_overlap_spectrum(d, alpha, alpha_star, seed=None):
    """Eigenvalues of Y_d = U^T U* U*^T U for independent Haar orthonormal U, U*.

    Parameters
    ----------
    d : int >= 1
        Ambient dimension.
    alpha, alpha_star : float in (0, 1]
        m = round(alpha d) and m* = round(alpha* d) columns (each must be >= 1).
    seed : int, numpy Generator or None
        Passed to ``numpy.random.default_rng``.

    Returns
    -------
    lam : ndarray, shape (m,)
        The m eigenvalues in [0, 1], ascending (cosines^2 of the principal angles between
        the column spans; absolute accuracy ~1e-15).  By rotation invariance the wider of
        U, U* is taken as coordinate vectors and only the other is drawn (same law).
        Eigenvalues that are 0 or 1 in exact arithmetic ((m - m*)_+ zeros,
        (m + m* - d)_+ ones) are set exactly.
        Normalisation: the measure (1/d) sum_k delta_{lam_k} (mass m/d) tends to mu, so
        a histogram with counts / (d * binwidth) approximates ``wachter_density`` and
        the fractions (number of exact 0s or 1s)/d approximate ``wachter_atoms``.

    Raises
    ------
    ValueError, TypeError
        Bad d, alpha, alpha_star, or m, m* rounding to 0.

    Source: MATH.md sections 5 and 6.
    """
    d = positive_int(d, "d")
    a, s = _alphas(alpha, alpha_star)
    m, ms = round(a * d), round(s * d)
    if m < 1 or ms < 1:
        raise ValueError(f"d too small: m = round(alpha d) = {m}, m* = round(alpha* d) = {ms}")
    rng = _rng(seed)
    # Rotation invariance: the spectrum of Y_d depends only on the relative position of
    # the two column spans, so fixing the wider one to coordinate vectors e_1..e_k and
    # drawing the narrower one Haar (QR of a Gaussian, sign-fixed) has the same law and
    # needs one QR of a d x min(m, m*) matrix.
    k_small, k_big = min(m, ms), max(m, ms)
    q, r = np.linalg.qr(rng.standard_normal((d, k_small)))
    q *= np.sign(np.diag(r))
    block = q[:k_big]  # = U^T U* (or its transpose), k_big x k_small
    ev = np.linalg.eigvalsh(block.T @ block)  # nonzero part of the spectrum of Y_d
    lam = np.zeros(m)
    lam[m - ev.size:] = np.sort(np.clip(ev, 0.0, 1.0))
    n_one = max(m + ms - d, 0)
    if n_one:
        lam[m - n_one:] = 1.0
    return lam
