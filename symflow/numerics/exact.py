"""Exact finite-d reduction of the gradient flow (MATH.md section 5).

For an orthonormal start ``W0 = U / sqrt(m)`` and an orthonormal teacher
``W* = U* / sqrt(m*)`` the flow of MATH.md section 3 is solved by two scalars
``F(t), G(t)`` and the eigenvalues ``lambda_k`` of ``Y_d = U^T U* U*^T U``:

    F' = (4/m) e^{-2 phi},   G' = (4/m) e^{-2 phi} E,   E = e^{4 t / m*},
    phi = 1/4 sum_k log D_k - t,   D_k = F (1 - lambda_k) + G lambda_k.

Numerical formulation (all in log form, no overflow for any t):

* state ``y = (log F, log H)`` with ``H = G / E``; for ``m >= m*`` both stay of order
  ``log t``, so the solver's tolerance applies to O(1) numbers;
* ``r`` = number of nonzero ``lambda_k``; for ``lambda_k > 0``,
  ``log D_k = 4 t / m* + log(lambda_k H + (1 - lambda_k) F / E)``, hence
  ``phi = (r / m* - 1) t + 1/4 [sum_{lambda=0} log F + sum_{lambda>0} log(lambda H + ...)]``
  (the O(t) parts cancel exactly in integer arithmetic when ``r = m*``);
* ``Z = sum_k c_k v_k v_k^T`` with orthogonal ``v_k``; in the orthogonal 2-d block
  ``span(P* u_k, P_perp u_k)`` of each ``lambda_k > 0``,
  ``Z - Z* = [[eps_k / m*, c a b], [c a b, c b^2]]`` with ``a^2 = E lambda_k``,
  ``b^2 = 1 - lambda_k``, ``1 + eps_k = m* c_k E lambda_k`` and ``rho_k = b^2 / a^2``;
  ``lambda_k = 0`` gives a 1-d block ``c_k``; teacher directions orthogonal to
  ``span(U)`` give ``-1/m*`` each.  So, with ``n0 = m* - r``,

      ||Z - Z*||^2 = sum_{lambda=0} c_k^2
                     + sum_{lambda>0} [ (eps_k/m*)^2 + ((1 + eps_k)/m*)^2 rho_k (2 + rho_k) ]
                     + n0 / m*^2,
      tau = sum_{lambda=0} c_k + (1/m*) sum_{lambda>0} [eps_k + (1 + eps_k) rho_k] - n0/m*,
      tr(Z Z*) = (1/m*^2) sum_{lambda>0} (1 + eps_k),

  a sum of non-negative terms for the distance: no cancellation of large terms, the
  small quantities ``eps_k = expm1(...)`` are formed from O(1) logarithms.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from symflow._validate import as_matrix, finite_float, time_grid

__all__ = ["exact_flow"]

_ORTHO_RTOL = 1e-10
_ETA_ATOL_FACTOR = 1e-10  # eta -> 0 carries the late-time risk


def _orthonormal_width(W, name):
    """Return k if ``W^T W = I_k / k`` to ~1e-10 relative, else None."""
    k = W.shape[1]
    gram = W.T @ W
    return k if np.max(np.abs(k * gram - np.eye(k))) <= _ORTHO_RTOL * max(1.0, k) else None


def _spectrum(W0, W_star):
    """Eigenvalues of Y_d with the exact zeros / ones set exactly (ascending)."""
    d, m = W0.shape
    ms = W_star.shape[1]
    U = W0 * np.sqrt(m)
    Us = W_star * np.sqrt(ms)
    lam = np.linalg.svd(U.T @ Us, compute_uv=False) ** 2  # descending, length min(m, ms)
    lam = np.sort(np.concatenate([lam, np.zeros(max(m - ms, 0))]))
    lam = np.clip(lam, 0.0, 1.0)
    n_zero = max(m - ms, 0)
    n_one = max(m + ms - d, 0)
    lam[:n_zero] = 0.0
    if n_one:
        lam[m - n_one:] = 1.0
    return lam


class _Reduced:
    """Closed-form quantities of MATH.md section 5 in log form.

    State ``(log F, eta)`` with ``eta = log(m*/m) - 2 phi - log H`` (``H = G / E``):
    ``(log H)' = (4/m*) expm1(eta)`` and ``1 + eps_k -> e^eta`` at late times, so the
    small quantity that drives the risk is itself a state variable and the solver's
    relative tolerance applies to it.  ``log H`` is recovered from ``(t, log F, eta)``
    by a globally convergent Newton iteration (the defining equation is concave and
    strictly decreasing in ``log H``).
    """

    def __init__(self, lam, m, ms):
        self.m, self.ms = m, ms
        pos = lam > 0
        self.n_zero = int(np.sum(~pos))
        self.r = int(np.sum(pos))
        lp = lam[pos]
        with np.errstate(divide="ignore"):
            self.log_l = np.log(lp)
            self.log_1ml = np.log1p(-lp)  # -inf for lambda = 1
        self.c_eta = np.log(ms / m)
        self._lH = 0.0  # warm start of the Newton iteration

    def log_b(self, t, lF, lH):
        """log(lambda H + (1 - lambda) F / E) for the lambda > 0 directions."""
        return np.logaddexp(self.log_1ml + lF - 4.0 * t / self.ms, self.log_l + lH)

    def phi(self, t, lF, lH):
        return (self.r / self.ms - 1.0) * t + 0.25 * (
            self.n_zero * lF + np.sum(self.log_b(t, lF, lH))
        )

    def log_h(self, t, lF, eta):
        """Solve ``c_eta - eta - 2 phi(t, lF, lH) - lH = 0`` for ``lH = log H``."""
        x = self._lH
        for _ in range(100):
            lb = self.log_b(t, lF, x)
            g = (
                self.c_eta - eta - 2.0 * (self.r / self.ms - 1.0) * t
                - 0.5 * (self.n_zero * lF + np.sum(lb)) - x
            )
            dg = -1.0 - 0.5 * np.sum(np.exp(self.log_l + x - lb))
            step = g / dg
            x -= step
            if abs(step) <= 4e-16 * (1.0 + abs(x)):
                break
        self._lH = x
        return x

    def parts(self, t, lF, eta):
        """Return (lH, c0, eps, rho, tau) at one time."""
        lH = self.log_h(t, lF, eta)
        log_rho = self.log_1ml - self.log_l - 4.0 * t / self.ms
        rho = np.exp(log_rho)
        eps = np.expm1(eta - np.logaddexp(0.0, log_rho + lF - lH))
        c0 = np.exp(eta + lH - lF) / self.ms  # c_k of the lambda_k = 0 directions
        n0 = self.ms - self.r
        tau = self.n_zero * c0 + (np.sum(eps + (1.0 + eps) * rho) - n0) / self.ms
        return lH, c0, eps, rho, tau

    def rhs(self, t, y):
        lF, eta = y
        lH, _, _, _, tau = self.parts(t, lF, eta)
        return [
            (4.0 / self.ms) * np.exp(eta + lH - lF),
            -2.0 * tau - (4.0 / self.ms) * np.expm1(eta),
        ]

    def stats(self, t, lF, eta):
        """Return (phi, risk, chi, dist, log H) at one time."""
        ms = self.ms
        lH, c0, eps, rho, tau = self.parts(t, lF, eta)
        n0 = ms - self.r
        dist2 = (
            self.n_zero * c0**2
            + (np.sum(eps**2 + (1.0 + eps) ** 2 * rho * (2.0 + rho)) + n0) / ms**2
        )
        zzs = np.sum(1.0 + eps) / ms**2
        # ||Z||_F^2 = sum_k (c_k |v_k|^2)^2
        z2 = self.n_zero * c0**2 + np.sum(((1.0 + eps) * (1.0 + rho)) ** 2) / ms**2
        chi = zzs / np.sqrt(z2 / ms)
        ph = 0.5 * (self.c_eta - eta - lH)
        return ph, 0.5 * dist2 + 0.25 * tau**2, chi, np.sqrt(dist2), lH


def exact_flow(W0, W_star, t, rtol=1e-10, atol=1e-12):
    """Exact two-scalar reduction of the gradient flow for orthonormal start and teacher.

    Solves ``dW/dt = -[2 (Z - Z*) + tau I] W`` (MATH.md section 3) through the
    Riccati solution of MATH.md section 5: two scalar ODEs for ``log F`` and
    ``log G`` integrated with ``scipy.integrate.solve_ivp`` (Radau: the reduced ODE is
    mildly stiff at late times, so explicit methods need O(t) steps), plus the
    eigenvalues ``lambda_k`` of ``Y_d = U^T U* U*^T U``.  Cost is independent of
    ``d`` beyond the eigenvalues and grows slowly with ``t``; any horizon (e.g.
    ``t = 1000 d``) is safe from overflow.  Measured agreement with the weight-space
    flow (d <= 100, t <= 10 d): phi, chi, risk to ~1e-10 relative or better.

    Parameters
    ----------
    W0 : array_like, shape (d, m)
        Orthonormal start ``U / sqrt(m)`` (``W0^T W0 = I_m / m`` to ~1e-10 relative).
    W_star : array_like, shape (d, m*)
        Orthonormal teacher ``U* / sqrt(m*)`` (``W*^T W* = I_{m*} / m*``).
    t : array_like, shape (n,)
        Times of the flow (time ``t``, not ``gamma = t / d``), finite, non-negative,
        strictly increasing; ``t[0]`` may be 0 or positive.
    rtol, atol : float
        Tolerances of ``solve_ivp`` on the internal state ``(log F, eta)`` (see
        ``_Reduced``); ``eta`` gets ``atol * 1e-10`` so that it is tracked
        relatively while it decays (it carries the late-time risk).
    Returns
    -------
    dict
        ``"t"`` (n,): the requested times;
        ``"risk"`` (n,): ``L = 1/2 ||Z - Z*||_F^2 + 1/4 (tr Z - tr Z*)^2``;
        ``"phi"`` (n,): ``phi(t) = int_0^t tau(s) ds``, ``tau = tr Z - tr Z*``;
        ``"chi"`` (n,): ``tr(Z Z*) / (||Z||_F ||Z*||_F)``;
        ``"dist"`` (n,): ``||Z - Z*||_F``;
        ``"log_F"``, ``"log_G"`` (n,): the two scalars of MATH.md section 5;
        ``"lam"`` (m,): eigenvalues of ``Y_d``, ascending, with the
        ``(m - m*)_+`` exact zeros and ``(m + m* - d)_+`` exact ones set exactly.

    Raises
    ------
    TypeError
        If ``W0`` / ``W_star`` are not real arrays or tolerances are not numbers.
    ValueError
        If shapes mismatch, ``t`` is not a valid time grid, tolerances are not
        positive, or start / teacher are not orthonormal (use
        ``method="overlaps"``).
    RuntimeError
        If ``solve_ivp`` reports failure.
    """
    W0 = as_matrix(W0, "W0")
    W_star = as_matrix(W_star, "W_star")
    t = time_grid(t, "t")
    rtol = finite_float(rtol, "rtol", lo=0.0, lo_open=True)
    atol = finite_float(atol, "atol", lo=0.0, lo_open=True)
    if W0.shape[0] != W_star.shape[0]:
        raise ValueError(
            f"W0 and W_star must have the same number of rows d, got {W0.shape} and "
            f"{W_star.shape}"
        )
    for W, name in ((W0, "W0"), (W_star, "W_star")):
        if W.shape[1] > W.shape[0] or _orthonormal_width(W, name) is None:
            raise ValueError(
                f'method="exact" needs orthonormal start and teacher (W^T W = I/k); '
                f'{name} is not orthonormal: use method="overlaps" instead'
            )
    m, ms = W0.shape[1], W_star.shape[1]
    lam = _spectrum(W0, W_star)
    red = _Reduced(lam, m, ms)

    y0 = [0.0, red.c_eta]
    y = np.tile(np.array(y0)[:, None], (1, t.size))
    if t[-1] > 0:
        sol = solve_ivp(
            red.rhs, (0.0, t[-1]), y0, method="Radau", t_eval=t,
            rtol=rtol, atol=[atol, atol * _ETA_ATOL_FACTOR],
        )
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed: {sol.message}")
        y = sol.y
    out = {k: np.empty(t.size) for k in ("phi", "risk", "chi", "dist", "lH")}
    for i, ti in enumerate(t):
        red._lH = 0.0 if i == 0 else out["lH"][i - 1]
        (out["phi"][i], out["risk"][i], out["chi"][i], out["dist"][i],
         out["lH"][i]) = red.stats(ti, y[0, i], y[1, i])
    return {
        "t": t,
        "risk": out["risk"],
        "phi": out["phi"],
        "chi": out["chi"],
        "dist": out["dist"],
        "log_F": y[0].copy(),
        "log_G": out["lH"] + 4.0 * t / ms,
        "lam": lam,
    }
