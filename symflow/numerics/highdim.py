"""High-dimensional limit of the gradient flow, orthonormal start (MATH.md section 6).

The state is (log F, log J); with v = J/E = exp(log J - 4 gamma/alpha*), u = 1/J and
s = J Theta'(J - 1) + (alpha + alpha* - 1)_+ the system reads (generated kernels)

    (log F)' = 4 v / (alpha v + (1 - v) s),   (log J)' = 4 (1 - v) / (alpha v + (1 - v) s),
    phi = (log(alpha v + (1 - v) s) - log alpha - log v - log F) / 2,

all bounded for any horizon (0 < u, v <= 1), so nothing overflows.  The conserved
quantity alpha log F + Theta(J - 1) + (alpha + alpha* - 1)_+ log J - 4 gamma = 0 is
not imposed; it is a check (see ``conservation_residual``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

from symflow._io import atomic_write
from symflow._validate import finite_float, time_grid
from symflow.generated import limit_numpy as _k
from symflow.numerics.wachter import (
    _alphas,
    _jtheta_prime,
    _overlap_k,
    theta_of_logj,
    wachter_edges,
)


@dataclass(frozen=True)
class LimitTrajectory:
    """Solution of the limit system on a gamma grid (MATH.md section 6).

    Attributes
    ----------
    alpha, alpha_star : float
    gamma : ndarray (n,)
        High-dimensional time gamma = t/d, increasing, >= 0.
    phi : ndarray (n,)
        phi(gamma), the limit of phi_d(gamma) = int_0^{d gamma} tau(s) ds.
    chi : ndarray (n,)
        Overlap chi(gamma) in [0, 1].
    log_F, log_J : ndarray (n,)
        log F and log J = log(G/F); always finite (F, J themselves may overflow).
    meta : dict
        Solver information (method, rtol, atol, nfev, edges r1, r2, atoms, wall time).
    """

    alpha: float
    alpha_star: float
    gamma: np.ndarray
    phi: np.ndarray
    chi: np.ndarray
    log_F: np.ndarray
    log_J: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def F(self):
        """F(gamma) = exp(log_F); may be inf for long horizons (use log_F); mpmath numbers
        for a ``dps`` solution."""
        return _exp(self.log_F)

    @property
    def J(self):
        """J(gamma) = G/F = exp(log_J); may be inf for long horizons (use log_J); mpmath
        numbers for a ``dps`` solution."""
        return _exp(self.log_J)

    @property
    def chi_final(self):
        """chi(infinity) = min(1, sqrt(alpha / alpha*)) (MATH.md section 6)."""
        return min(1.0, float(np.sqrt(self.alpha / self.alpha_star)))

    def to_csv(self, path):
        """Write columns gamma, phi, chi, log_F, log_J to ``path`` atomically.

        Writes a temporary file in the same directory, then ``os.replace``.
        """
        data = np.column_stack([np.asarray(c, dtype=float) for c in
                                (self.gamma, self.phi, self.chi, self.log_F, self.log_J)])
        atomic_write(path, lambda tmp: np.savetxt(tmp, data, delimiter=",", fmt="%.17g",
                                                  header="gamma,phi,chi,log_F,log_J",
                                                  comments=""))


def _exp(a):
    a = np.asarray(a)
    if a.dtype == object:  # mpmath numbers (dps=): regression, np.exp raised TypeError
        import mpmath

        return np.array([mpmath.exp(v) for v in a.ravel()], dtype=object).reshape(a.shape)
    with np.errstate(over="ignore"):
        return np.exp(a)


def _pieces(gamma, log_j, alpha, alpha_star, r1, r2, p):
    """(log v, v, u, s) from gamma and log J (arrays or scalars)."""
    log_v = np.minimum(log_j - 4.0 * gamma / alpha_star, 0.0)
    u = np.exp(-log_j)
    s = _jtheta_prime(u, r1, r2) + p
    return log_v, np.exp(log_v), u, s


_METHODS = ("auto", "DOP853", "Radau", "LSODA")


def _choose_method(alpha, alpha_star, horizon):
    """DOP853, unless alpha < alpha* and the horizon is long: there log J relaxes at a rate
    ~ 2.5/alpha onto E, and the explicit step count (~ 7 horizon/alpha evaluations)
    exceeds the ~ 4000 evaluations Radau needs."""
    if alpha < alpha_star and 7.0 * horizon / alpha > 2e4:
        return "Radau"
    return "DOP853"


def limit(alpha, alpha_star, gamma, rtol=1e-10, method="auto", dps=None):
    """Solve the high-dimensional limit ODE (orthonormal start and teacher).

    Parameters
    ----------
    alpha, alpha_star : float in (0, 1]
        Width ratios m/d and m*/d.
    gamma : array_like (n,)
        Output times gamma = t/d: 1-D, finite, >= 0, strictly increasing (0 allowed).
        The ODE is always integrated from gamma = 0.
    rtol : float in [1e-14, 1e-2]
        Relative tolerance of the solve_ivp method (see ``method``); atol = 1e-3 * rtol.
        The default gives phi and chi to about 1e-9 absolute on gamma in [0, 10].
    method : {"auto", "DOP853", "Radau", "LSODA"}
        scipy.integrate.solve_ivp method; "auto" uses DOP853 and switches to Radau for
        the stiff long-horizon regime alpha < alpha* (see meta["method"]).
    dps : int >= 15, optional
        High precision: integrate the same generated right-hand side in mpmath
        (``mpmath.odefun``) at ``dps`` digits (:func:`symflow.numerics.precision.limit_mp`).
        The arrays of the result then hold ``mpmath.mpf``; accurate to about dps - 5
        digits for gamma <= 2 (slow: seconds per point at dps = 30).

    Returns
    -------
    LimitTrajectory

    Raises
    ------
    ValueError, TypeError
        Naming the bad argument (alpha, alpha_star outside (0, 1] or NaN, gamma not a
        non-negative increasing 1-D array, rtol out of range).
    RuntimeError
        If the ODE solver fails.

    Source: MATH.md section 6 (derived from section 5 in docs/limit_derivation_notes.md).
    """
    alpha, alpha_star = _alphas(alpha, alpha_star)
    gamma = time_grid(gamma, "gamma")
    if gamma[-1] > 1e6:
        raise ValueError(f"gamma must be <= 1e6, got max {gamma[-1]:.3g}")
    rtol = finite_float(rtol, "rtol", lo=1e-14, hi=1e-2)
    atol = 1e-3 * rtol
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if dps is not None:
        return _limit_dps(alpha, alpha_star, gamma, dps)
    if method == "auto":
        method = _choose_method(alpha, alpha_star, gamma[-1])
    r1, r2 = wachter_edges(alpha, alpha_star)
    p = max(alpha + alpha_star - 1.0, 0.0)
    q0 = max(alpha - alpha_star, 0.0)

    def rhs(g, state):
        _, v, _, s = _pieces(g, state[1], alpha, alpha_star, r1, r2, p)
        return [_k.limit_dlogf(v, s, alpha), _k.limit_dlogj(v, s, alpha)]

    t0 = time.perf_counter()
    if gamma[-1] > 0:
        sol = solve_ivp(rhs, (0.0, gamma[-1]), [0.0, 0.0], method=method, t_eval=gamma,
                        rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"limit ODE failed: {sol.message}")
        log_f, log_j, nfev = sol.y[0], sol.y[1], sol.nfev
    else:
        log_f, log_j, nfev = np.zeros(1), np.zeros(1), 0
    log_v, v, u, s = _pieces(gamma, log_j, alpha, alpha_star, r1, r2, p)
    phi = _k.limit_phi(log_f, log_v, v, s, alpha)
    K = _overlap_k(u, v, r1, r2)
    chi = _k.limit_chi(v, s, p, q0, K, alpha_star)
    meta = {"method": method, "rtol": rtol, "atol": atol, "nfev": int(nfev),
            "r1": r1, "r2": r2, "atom0": q0, "atom1": p,
            "wall_time_s": time.perf_counter() - t0, "source": "MATH.md section 6"}
    return LimitTrajectory(alpha, alpha_star, gamma, np.asarray(phi, float),
                           np.asarray(chi, float), log_f, log_j, meta)


def _limit_dps(alpha, alpha_star, gamma, dps):
    from symflow._validate import positive_int
    from symflow.numerics.precision import limit_mp

    dps = positive_int(dps, "dps", minimum=15)
    t0 = time.perf_counter()
    r = limit_mp(alpha, alpha_star, gamma, dps)
    arr = {k: np.array(v, dtype=object) for k, v in r.items()}
    meta = {"method": "mpmath.odefun", "dps": dps, "wall_time_s": time.perf_counter() - t0,
            "source": "MATH.md section 6"}
    return LimitTrajectory(alpha, alpha_star, gamma, arr["phi"], arr["chi"], arr["log_F"],
                           arr["log_J"], meta)


def conservation_residual(traj):
    """Conserved quantity of the limit system along a trajectory (should vanish).

    Parameters
    ----------
    traj : LimitTrajectory
        Float (not ``dps``) solution.

    Returns
    -------
    ndarray (n,)
        alpha log F + Theta(J - 1) + (alpha + alpha* - 1)_+ log J - 4 gamma, with Theta
        by quadrature (``theta_of_logj``), independent of the ODE's right-hand side.

    Source: MATH.md section 6.
    """
    a, s = traj.alpha, traj.alpha_star
    p = max(a + s - 1.0, 0.0)
    th = theta_of_logj(traj.log_J, a, s)
    return a * traj.log_F + th + p * traj.log_J - 4.0 * traj.gamma
