"""Exact finite-d reduction of the gradient flow (MATH.md section 5).

Two formulations, both exact at every finite ``d`` and both in log form (no overflow for
any horizon):

**Orthonormal start and teacher** (``W0 = U / sqrt(m)``, ``W* = U* / sqrt(m*)``): two
scalars.  With ``lambda_k`` (k = 1..min(m, m*)) the squared cosines of the principal
angles between ``span(U)`` and ``span(U*)`` (the eigenvalues of ``Y_d = U^T U* U*^T U``
that are not structural zeros), MATH.md's ``F, G`` give ``s0 = log F``,
``s1 = log G - 4 t / m*`` and the state

    u = s0 - s1,      eta = log(m*/m) - 2 phi - s1,

which solves the closed, autonomous-in-``(u, eta)`` system

    u'   = (4/m*) (e^{eta - u} - expm1(eta)),
    eta' = -2 tau - (4/m*) expm1(eta),
    m* tau = k expm1(eta) - e^eta S + e^{eta - u} (S + n_z) - n_0,
    S = sum_k sigma_k,   sigma_k = expit(log((1 - lambda_k) / lambda_k) + u - 4 t / m*),

with ``u(0) = 0``, ``eta(0) = log(m*/m)``, ``k = min(m, m*)``, ``n_z = (m - m*)_+``
(student directions orthogonal to the teacher), ``n_0 = (m* - m)_+`` (teacher directions
the student cannot reach).  ``sigma_k in [0, 1]`` is the share of the perpendicular part in
``D_k = F (1 - lambda_k) + G lambda_k``; every ``lambda_k in [0, 1]`` -- 0, round-off,
1e-16, 1 -- goes through the same formula, so tiny eigenvalues (a slow escape from a
saddle) cost nothing extra and ``lambda = 0`` is the continuous limit of tiny ``lambda``.
``phi`` follows without any equation solve: ``1/4 log det K - t`` is linear in ``s1``,

    s1 = (log(m*/m) - eta - 2 R) / (1 + m/2),   phi = (log(m*/m) - eta - s1) / 2,
    R = (k/m* - 1) t + (sum_k log(lambda_k + (1 - lambda_k) e^{u - 4t/m*}) + n_z u) / 4.

Observables come from 2 x 2 blocks (one per principal angle; ``p = e^eta (1 - sigma)``,
``q = e^{eta - u} sigma`` are ``m*`` times the teacher and perpendicular weights of
``Z``): ``m*^2 ||Z - Z*||^2 = sum_k [(p - 1)^2 + 2 p q + q^2] + n_z q0^2 + n_0`` with
``q0 = e^{eta - u}``, ``m* tau`` as above, ``m*^2 ||Z||^2 = sum_k (p + q)^2 + n_z q0^2``,
``m*^2 tr(Z Z*) = sum_k p`` -- sums of non-negative terms (``p - 1`` is formed by expm1),
so the risk keeps its relative accuracy as it decays.  The eigenvalues are computed from
both cosines (SVD of ``U^T U*``) and sines (SVD of the projection of ``U`` onto the
complement of ``span(U*)``), so that ``lambda`` and ``1 - lambda`` are each accurate.

**General start and teacher** (``Z* = sum_k mu_k u_k u_k^T``):
``K = I + 4 F_0 W0^T P_perp W0 + 4 sum_k F_k W0^T u_k u_k^T W0`` with
``F_k' = e^{-2 phi} e^{4 mu_k t}``, ``F_0' = e^{-2 phi}``.  State
``s_j = log(1 + 4 F_j) - 4 mu_j t`` (``mu_0 = 0``), ``s_j' = 4 e^{-2 phi - s_j} - 4 mu_j``,
``s_j(0) = 0``.  ``log det K`` is evaluated in a fixed basis of R^m adapted to the
grading ``F_1 >= F_2 >= ... >= F_0`` (teacher directions sorted by ``mu``, which orders
the ``F`` for every ``t``): QR of ``B = W0^T [u_1 .. u_r]`` makes the teacher part upper
trapezoidal, the remaining rows (owned by ``F_0``) are diagonalised once.  Scaled by
``D_i = sqrt(1 + 4 F_owner(i))`` (the matrix ``D^{-1} K D^{-1}``) every entry is bounded
and the matrix well conditioned; since Cholesky's relative accuracy does not depend on a
diagonal scaling, one common scale is used while no entry underflows, ``D`` itself beyond
(horizons of ~1e5 d and more).  The ``F_0`` block is eliminated exactly by a Schur
complement, leaving one Cholesky factorisation of an ``n_t x n_t`` matrix
(``n_t = rank B``) per right-hand side.  The Jacobian is diagonal plus rank one,
``J = -diag(v) - v g^T / 2`` with ``v_j = 4 e^{-2 phi - s_j}`` and
``g_j = d log det K / d log(1 + 4 F_j)`` (implicit differentiation through ``log det K``).

**Integration.**  Both systems are stiff (tr Z relaxes at a rate ~2, the rest at rates
~4 mu) and are integrated by ``scipy.integrate.solve_ivp`` in the variable
``log(1 + t / t0)`` (``t0`` a natural time scale) with the analytic Jacobians: LSODA for
one orthonormal instance (its right-hand side costs microseconds, so the Fortran stepping
wins), BDF for batches and the general path.  Measured global error: about 100 rtol
(relative) on phi, chi and risk.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla
from scipy.integrate import solve_ivp
from scipy.special import expit

from symflow._threads import single_threaded_blas
from symflow._validate import as_matrix, finite_float, time_grid

__all__ = ["exact_flow", "exact_flow_batch", "orthonormal_deviation", "orthonormal_tolerance",
           "not_orthonormal_message", "SOLVERS"]

#: solve_ivp methods accepted by the exact reduction (implicit ones get the analytic Jacobian)
SOLVERS = ("LSODA", "BDF", "Radau", "DOP853", "RK45", "RK23")
_IMPLICIT = ("LSODA", "BDF", "Radau")
_EPS = np.finfo(float).eps
_ORTHO_TOL64 = 1e-10   # accepted |k W^T W - I| for float64 input
_POLISH_ABOVE = 1e-12  # accepted input further from orthonormal than this is polished
_SINE_BELOW = 1e-3     # 1 - lambda below this is taken from the sines (relative accuracy)
_DENSE_MAX = 128       # batches up to this many instances get a dense Jacobian
_SPREAD_MAX = 600.0    # general path: one row scale while the spread of log(1 + 4F) < this


# ----------------------------------------------------------------------------- input


def _raw_dtype(x):
    """dtype of ``x`` before conversion to float64 (float64 for non-float input)."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        dt = np.asarray(x).dtype
    return dt if np.issubdtype(dt, np.floating) else np.dtype(float)


def orthonormal_tolerance(dtype):
    """Accepted ``max |k W^T W - I|`` for input of this floating dtype.

    Parameters
    ----------
    dtype : numpy floating dtype
        The dtype of the input before conversion to float64.

    Returns
    -------
    float
        ``max(1e-10, 8 eps(dtype))``: 1e-10 for float64, ~9.5e-7 for float32 (an
        orthonormal matrix rounded to float32 deviates by about 0.3 eps(float32) = 4e-8,
        measured for d <= 2000).
    """
    return max(_ORTHO_TOL64, 8.0 * float(np.finfo(dtype).eps))


def orthonormal_deviation(W):
    """``max |k W^T W - I_k|`` of a ``(d, k)`` matrix (``inf`` if ``k > d``).

    Parameters
    ----------
    W : ndarray, shape (d, k)

    Returns
    -------
    float
        0 for an exactly orthonormal ``W = U / sqrt(k)``.
    """
    d, k = W.shape
    if k > d:
        return np.inf
    return float(np.max(np.abs(k * (W.T @ W) - np.eye(k))))


def not_orthonormal_message(name, dev, tol, dtype):
    """Error text for a start or teacher that an orthonormal-only path cannot take.

    Parameters
    ----------
    name : str
        Argument name ("W0" or "W_star").
    dev, tol : float
        Measured ``max |k W^T W - I|`` and the tolerance.
    dtype : numpy dtype
        Input dtype (named in the text).

    Returns
    -------
    str
    """
    return (f'{name} is not orthonormal: max |k W^T W - I| = {dev:.3g} exceeds the tolerance '
            f'{tol:.2g} for {np.dtype(dtype).name} input; method="overlaps" works for any '
            'start and teacher')


def _polish(W):
    """Nearest orthonormal ``U / sqrt(k)`` (polar factor by Newton-Schulz iteration)."""
    k = W.shape[1]
    U = W * np.sqrt(k)
    for _ in range(4):
        G = U.T @ U
        if np.max(np.abs(G - np.eye(k))) <= 4 * _EPS:
            break
        U = U @ (1.5 * np.eye(k) - 0.5 * G)
    return U / np.sqrt(k)


def _orthonormal_or_none(W, dtype):
    """``(W', deviation, polished)`` if ``W`` is orthonormal within the dtype tolerance."""
    dev = orthonormal_deviation(W)
    if not dev <= orthonormal_tolerance(dtype):
        return None, dev, False
    if dev > _POLISH_ABOVE:
        return _polish(W), dev, True
    return W, dev, False


def _principal_angles(W0, W_star):
    """``lambda_k`` and ``1 - lambda_k`` (k = 1..min(m, m*)), each to relative accuracy.

    ``lambda = cos^2`` of the principal angles between the column spaces: cosines from the
    SVD of ``U^T U*``; where ``1 - lambda < 1e-3`` the sines come from the SVD of
    ``P_perp U V`` (``V``: the corresponding singular vectors), and the
    ``(m + m* - d)_+`` structural ones are set exactly.  Descending ``lambda``.
    """
    d, m = W0.shape
    ms = W_star.shape[1]
    U, Us = W0 * np.sqrt(m), W_star * np.sqrt(ms)
    V, cos, Vst = np.linalg.svd(U.T @ Us, full_matrices=False)
    cos = np.minimum(cos, 1.0)
    lam, oml = cos * cos, (1.0 - cos) * (1.0 + cos)
    n_one = max(m + ms - d, 0)
    n_sin = max(int(np.sum(oml < _SINE_BELOW)), n_one)
    if n_sin:
        perp = U @ V[:, :n_sin] - Us @ (Vst[:n_sin].T * cos[:n_sin])
        sin = np.linalg.svd(perp, compute_uv=False)[::-1]  # ascending <-> descending cos
        sin[:n_one] = 0.0
        sin = np.minimum(sin, 1.0)
        oml[:n_sin], lam[:n_sin] = sin * sin, (1.0 - sin) * (1.0 + sin)
    return lam, oml


def _default_solver(solver, single_orthonormal):
    """Default solver, measured fastest for each case (rtol 1e-6 .. 1e-10):

    * one orthonormal instance: LSODA -- its right-hand side costs ~3 us, so the
      per-step overhead decides, and LSODA steps in Fortran (median 18 ms per run against
      ~100 ms for scipy's BDF);
    * a batch, or the general path (right-hand side O(n_t^3)): BDF -- fewest evaluations
      and no outliers (LSODA sometimes stays in its non-stiff mode: up to 9x more).
    """
    if solver is not None:
        return solver
    return "LSODA" if single_orthonormal else "BDF"


def _check_solver(solver):
    if solver is None:
        return None
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    return solver


def _solve(rhs, jac, y0, x, x0, solver, rtol, atol, **options):
    """Integrate ``dy/dx = rhs(x, y)`` from 0, outputs at ``x``; returns (Y, stats).

    The integration variable is ``xi = log(1 + x / x0)`` (``x0``: the shortest natural
    time scale): the late phase, where the solution changes on the scale of ``x`` itself,
    then has O(1) scales, and LSODA's switch to its stiff method was measured to be far
    more reliable (median 18 ms, worst 100 ms over 120 runs at rtol 1e-10, against a
    worst 340 ms in ``x``).  ``Y`` has shape (len(x), len(y0)).
    """
    y0 = np.asarray(y0, dtype=float)
    stats = dict(solver=solver, nfev=0, njev=0, nlu=0)
    if x[-1] == 0:
        return np.tile(y0, (x.size, 1)), stats

    def f(xi, y):
        return rhs(x0 * math.expm1(xi), y) * (x0 * math.exp(xi))

    if solver in _IMPLICIT:
        options["jac"] = lambda xi, y: jac(x0 * math.expm1(xi), y) * (x0 * math.exp(xi))
    xi = np.log1p(x / x0)
    sol = solve_ivp(f, (0.0, float(xi[-1])), y0, method=solver, t_eval=xi, rtol=rtol,
                    atol=atol, **options)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed ({solver}): {sol.message}")
    stats.update(nfev=int(sol.nfev), njev=int(sol.njev), nlu=int(sol.nlu))
    return sol.y.T, stats


# ------------------------------------------------------------- orthonormal: 2 scalars


class _OrthoBatch:
    """n independent orthonormal instances as one vectorised system.

    Instance ``i`` runs on its own clock ``t = scale[i] * x``; the state is interleaved,
    ``y = (u_0, eta_0, u_1, eta_1, ...)``, so the Jacobian is block diagonal with 2 x 2
    blocks.  Spectra of unequal length are padded: padded blocks have ``sigma = 0`` in
    the right-hand side and weight 0 in the observables.  For ``n = 1`` the scalar parts
    run on Python floats (4x less overhead per call than on length-1 arrays); the
    formulas are the same code.
    """

    def __init__(self, specs, scale):
        n = len(specs)
        kmax = max(1, max(lam.size for lam, *_ in specs))
        self.mask = np.zeros((n, kmax))
        self.ll = np.zeros((n, kmax))         # log lambda
        self.l1 = np.full((n, kmax), -np.inf)  # log(1 - lambda); padding: lambda = 1
        for i, (lam, oml, _, _) in enumerate(specs):
            k = lam.size
            self.mask[i, :k] = 1.0
            with np.errstate(divide="ignore"):
                self.ll[i, :k], self.l1[i, :k] = np.log(lam), np.log(oml)
        with np.errstate(invalid="ignore"):
            self.delta = self.l1 - self.ll   # log((1 - lambda) / lambda), -inf on padding
        m = np.array([s[2] for s in specs], dtype=float)
        ms = np.array([s[3] for s in specs], dtype=float)
        scale = np.asarray(scale, dtype=float)
        self.m, self.ms, self.n, self.scale = m, ms, n, scale
        self.c = np.log(ms / m)
        self.rate = 4.0 / ms
        # constants of the right-hand side (per instance; Python floats when n = 1)
        consts = dict(k=np.minimum(m, ms), nz=np.maximum(m - ms, 0.0),
                      n0=np.maximum(ms - m, 0.0), ms=ms, rate_x=self.rate * scale,
                      tau_x=-2.0 * scale / ms)
        self.k, self.nz, self.n0 = consts["k"], consts["nz"], consts["n0"]
        if n == 1:
            consts = {key: float(v[0]) for key, v in consts.items()}
            self._exp, self._expm1 = math.exp, math.expm1
        else:
            self._exp, self._expm1 = np.exp, np.expm1
        self._c = consts

    def y0(self):
        return np.column_stack([np.zeros(self.n), self.c]).ravel()

    def _state(self, x, y, squares=False):
        """u, eta and the sums S = sum_k sigma_k (and sum_k sigma_k^2)."""
        c = self._c
        if self.n == 1:
            u, eta = y.tolist()
            sig = expit(self.delta[0] + (u - c["rate_x"] * x))
            S = float(sig.sum())
            S2 = float(sig @ sig) if squares else None
        else:
            u, eta = y[0::2], y[1::2]
            sig = expit(self.delta + (u - c["rate_x"] * x)[:, None])
            S = sig.sum(axis=1)
            S2 = np.einsum("ij,ij->i", sig, sig) if squares else None
        return u, eta, S, S2

    def rhs(self, x, y):
        c = self._c
        u, eta, S, _ = self._state(x, y)
        eu, em1 = self._exp(eta - u), self._expm1(eta)
        ms_tau = (c["k"] - S) * em1 - S + eu * (S + c["nz"]) - c["n0"]
        du = c["rate_x"] * (eu - em1)
        deta = c["tau_x"] * ms_tau - c["rate_x"] * em1
        return np.column_stack([du, deta]).ravel() if self.n > 1 else np.array([du, deta])

    def jac_blocks(self, x, y):
        """(n, 2, 2) blocks of the Jacobian of ``rhs`` (d/dy of the rhs in x)."""
        c = self._c
        u, eta, S, S2 = self._state(x, y, squares=True)
        e, eu = self._exp(eta), self._exp(eta - u)
        ms_dtau_deta = e * (c["k"] - S) + eu * (S + c["nz"])
        ms_dtau_du = -(e * (S - S2) + eu * (S2 + c["nz"]))
        J = np.empty((self.n, 2, 2))
        J[:, 0, 0] = -c["rate_x"] * eu
        J[:, 0, 1] = c["rate_x"] * (eu - e)
        J[:, 1, 0] = c["tau_x"] * ms_dtau_du
        J[:, 1, 1] = c["tau_x"] * ms_dtau_deta - c["rate_x"] * e
        return J

    def jac_dense(self, x, y):
        """Block-diagonal Jacobian as a dense (2 n, 2 n) array."""
        J = np.zeros((self.n, 2, self.n, 2))
        i = np.arange(self.n)
        J[i, :, i, :] = self.jac_blocks(x, y)
        return J.reshape(2 * self.n, 2 * self.n)

    def jac_banded(self, x, y):
        """Jacobian in LSODA's packed band format (lband = uband = 1)."""
        J = self.jac_blocks(x, y)
        band = np.zeros((3, 2 * self.n))
        band[1, 0::2], band[1, 1::2] = J[:, 0, 0], J[:, 1, 1]
        band[0, 1::2], band[2, 0::2] = J[:, 0, 1], J[:, 1, 0]
        return band

    def jac_sparse(self, x, y):
        """Block-diagonal Jacobian as a sparse matrix (BDF, Radau)."""
        from scipy.sparse import block_diag

        return block_diag(list(self.jac_blocks(x, y)), format="csc")

    def observables(self, x, Y):
        """Per-instance dicts of (n_x,) arrays from the states Y (n_x, 2 n)."""
        out = []
        for i in range(self.n):
            kk = int(self.mask[i].sum())
            ll, l1, dl = self.ll[i, :kk], self.l1[i, :kk], self.delta[i, :kk]
            t = self.scale[i] * x
            u, eta = Y[:, 2 * i], Y[:, 2 * i + 1]
            ms, m, nz, n0, c = self.ms[i], self.m[i], self.nz[i], self.n0[i], self.c[i]
            xs = (u - self.rate[i] * t)[:, None]
            xi = dl + xs
            sig = expit(xi)
            pm1 = np.expm1(eta[:, None] - np.logaddexp(0.0, xi))
            p = pm1 + 1.0
            q0 = np.exp(eta - u)
            q = q0[:, None] * sig
            z = np.logaddexp(ll, l1 + xs).sum(axis=1)
            R = (self.k[i] / ms - 1.0) * t + 0.25 * (z + nz * u)
            s1 = (c - eta - 2.0 * R) / (1.0 + 0.5 * m)
            tau = ((pm1 + q).sum(axis=1) + nz * q0 - n0) / ms
            dist2 = ((pm1 * pm1 + 2.0 * p * q + q * q).sum(axis=1) + nz * q0**2 + n0) / ms**2
            z2 = ((p + q) ** 2).sum(axis=1) + nz * q0**2
            with np.errstate(invalid="ignore", divide="ignore"):
                chi = np.where(z2 > 0, p.sum(axis=1) / np.sqrt(ms * z2), 0.0)
            # phi(0) = 0 by definition; the formula carries round-off of c - eta - s1
            phi = np.where(t == 0.0, 0.0, 0.5 * (c - eta - s1))
            out.append(dict(t=t, risk=0.5 * dist2 + 0.25 * tau**2, phi=phi,
                            chi=chi, dist=np.sqrt(dist2), log_F=u + s1,
                            log_G=s1 + self.rate[i] * t))
        return out


def _ortho_batch(specs, x, scale, rtol, atol, solver):
    """Solve the orthonormal reduction of all ``specs`` as one system; list of dicts."""
    sysm = _OrthoBatch(specs, scale)
    n = sysm.n
    solver = _default_solver(solver, n == 1)
    options = {}
    if solver == "LSODA":
        # LSODA's error test uses the weighted max-norm: each instance meets rtol.  Dense
        # Jacobian up to 256 states (LSODA's stiffness switching was measured to work much
        # better with it than with the banded form, up to 9x fewer steps), banded above.
        if n <= _DENSE_MAX:
            jac = sysm.jac_dense
        else:
            jac = sysm.jac_banded
            options.update(lband=1, uband=1)
    else:
        # the other solvers use the RMS norm over all 2 n components: tighten by sqrt(n)
        rtol, atol = rtol / np.sqrt(n), atol / np.sqrt(n)
        jac = sysm.jac_dense if n <= _DENSE_MAX else sysm.jac_sparse
    x0 = float(np.min(sysm.ms / 4.0 / sysm.scale))
    Y, stats = _solve(sysm.rhs, jac, sysm.y0(), x, x0, solver, rtol, atol, **options)
    res = sysm.observables(x, Y)
    for r in res:
        r.update(stats)
    return res


# --------------------------------------------------------------- general: r + 1 scalars


class _General:
    """General start and teacher (see the module docstring), one instance."""

    def __init__(self, W0, W_star):
        d, m = W0.shape
        if m > d:  # Z0 = W0 W0^T has rank <= d: an equivalent (d, d) start
            W0 = sla.qr(W0.T, mode="r")[0][:d].T
            m = d
        Us, sv, _ = np.linalg.svd(W_star, full_matrices=False)
        mu = sv * sv
        keep = mu > max(W_star.shape) * _EPS * (mu[0] if mu.size else 0.0)
        Us, mu = Us[:, keep], mu[keep]
        r = mu.size
        B = W0.T @ Us
        Wp = W0 - Us @ B.T  # P_perp W0
        # QR of B with the columns in decreasing mu (the order of the F_k for every t);
        # a column in the span of the previous ones (exactly: pivot at round-off) owns no
        # row and goes to the end
        tol = 100.0 * _EPS * np.sqrt(max(d, m)) * np.linalg.norm(W0)
        order, n_def = np.arange(r), 0
        while True:
            Q, R = sla.qr(B[:, order])
            piv = np.abs(np.diag(R))
            bad = np.flatnonzero(piv[: r - n_def] <= tol)
            if bad.size == 0 or bad[0] >= r - n_def - 1:
                n_t = min(m, r - n_def - (bad.size > 0))
                break
            order = np.concatenate([np.delete(order, bad[0]), [order[bad[0]]]])
            n_def += 1
        self.mu, self.n_t, self.m, self.r = mu[order], n_t, m, r
        self.R = np.asfortranarray(R[:n_t])
        self.mask = np.triu(np.ones((n_t, r), dtype=bool))
        norms = np.linalg.norm(B[:, order[:n_t]], axis=0)
        self.min_pivot = float(np.min(piv[:n_t] / norms)) if n_t else 1.0
        Y = Wp @ Q
        C = Y.T @ Y
        c2, V2 = np.linalg.eigh(C[n_t:, n_t:])
        c2[c2 <= m * _EPS * max(np.max(np.abs(c2), initial=0.0), 1e-300)] = 0.0
        self.c2, self.C11 = c2, np.asfortranarray(C[:n_t, :n_t])
        self.C12 = np.ascontiguousarray(C[:n_t, n_t:] @ V2)
        with np.errstate(divide="ignore"):
            self.log_c2 = np.log(c2)
        self.mu_all = np.concatenate([[0.0], self.mu])

    def _factor(self, t, s):
        """Cholesky factor of the row-scaled Schur complement S at (t, s), and phi.

        Rows are scaled by ``e^{lr_i}``: while the spread of ``a = log(1 + 4 F)`` is below
        ``_SPREAD_MAX`` (no underflow of ``e^{a - max(a)}``) one scale ``lr_i = max(a) / 2``
        for all rows, so that the teacher factor is ``R diag(.)`` (triangular, LAPACK
        lauum) -- graded entries, which Cholesky handles with the same relative accuracy
        (it is invariant under diagonal scaling); beyond that (very long horizons)
        ``lr_i = a_i / 2``, which bounds every entry by the entries of ``R``.
        """
        nt, R = self.n_t, self.R
        a0, sT = s[0], s[1:]
        aT = sT + 4.0 * self.mu * t
        top = np.max(aT, initial=0.0)
        uniform = top - np.min(aT, initial=0.0) < _SPREAD_MAX
        if uniform:
            lr = np.full(nt, 0.5 * top)
            drow = top - aT[:nt]  # 2 lr - a, formed without cancellation
            Tp = R * np.exp(0.5 * (aT - top))
        else:
            lr, drow = 0.5 * aT[:nt], np.zeros(nt)
            ex = 0.5 * ((sT[None, :] - sT[:nt, None])
                        + 4.0 * t * (self.mu[None, :] - self.mu[:nt, None]))
            Tp = R * np.exp(np.where(self.mask, ex, -np.inf))
        om0, e0 = -np.expm1(-a0), np.exp(-a0)
        delta = e0 + om0 * self.c2
        w = np.exp(0.5 * a0 - lr)
        ww = np.exp(a0 - top) if uniform else np.outer(w, w)
        T = Tp * np.sqrt(-np.expm1(-aT))  # Fortran order, as R: no copies for LAPACK
        # only the upper triangle of S is formed (all dpotrf reads): T T^T by lauum on the
        # triangular part, the F_0 part om0 ww o (C11 - om0 C12 Delta^-1 C12^T) by syrk
        S = sla.lapack.dlauum(T[:, :nt], lower=0)[0] if nt else np.zeros((0, 0), order="F")
        if self.r > nt:
            S += T[:, nt:] @ T[:, nt:].T
        S += om0 * ww * self.C11
        Cw = (self.C12 / np.sqrt(delta)) * (w[0] if uniform and nt else w[:, None])
        if Cw.size:
            S = sla.blas.dsyrk(-om0**2, Cw.T, beta=1.0, c=S, trans=1, overwrite_c=1)
        S[np.diag_indices(nt)] += np.exp(-2.0 * lr)
        U, info = sla.lapack.dpotrf(S, lower=0, clean=1, overwrite_a=1)
        if info != 0:
            raise RuntimeError(f"exact reduction lost positive definiteness at t = {t:g} "
                               f"(smallest relative pivot of W0^T U* {self.min_pivot:.2g}); "
                               'use method="overlaps"')
        with np.errstate(divide="ignore"):
            l_e0 = np.logaddexp(0.0, a0 + np.log(om0) + self.log_c2)
        # log det K = sum_own a + sum(2 log U_ii + drow) + sum l_e0, and the O(t) parts of
        # sum_own a cancel against t tr Z* exactly
        logdet = np.sum(2.0 * np.log(np.diag(U)) + drow)
        phi = 0.25 * (np.sum(sT[:nt]) + np.sum(l_e0) + logdet) - t * np.sum(self.mu[nt:])
        return dict(U=U, Tp=Tp, phi=phi, om0=om0, e0=e0, delta=delta, w=w, ww=ww)

    def _lsolve(self, U, B):
        """U^{-T} B (U: upper Cholesky factor, S = U^T U)."""
        return sla.solve_triangular(U, B, trans="T", lower=False, check_finite=False)

    def _grad(self, f):
        """g = d log det K / d log(1 + 4 F_j) (j = 0..r), X = U^-T T' and M0 (see stats).

        ``g_k = ||column k of X||^2`` (teacher), ``g_0 = sum c2 / Delta + tr(S^-1 M0)``
        with ``M0`` the derivative of the F_0 part of S (scaled).
        """
        U, om0, e0, delta = f["U"], f["om0"], f["e0"], f["delta"]
        X = self._lsolve(U, f["Tp"])
        Cb = self.C12 * np.sqrt(om0 * (2.0 * e0 + om0 * self.c2)) / delta
        M0 = f["ww"] * (self.C11 - Cb @ Cb.T)
        Sinv = sla.lapack.dpotri(U, lower=0)[0]  # upper triangle of S^-1
        Sinv = np.triu(Sinv) + np.triu(Sinv, 1).T
        g0 = np.sum(self.c2 / delta) + np.sum(Sinv * M0)
        return np.concatenate([[g0], np.sum(X * X, axis=0)]), X, M0

    def rhs(self, t, s):
        phi = self._factor(t, s)["phi"]
        return 4.0 * np.exp(-2.0 * phi - s) - 4.0 * self.mu_all

    def jac(self, t, s):
        f = self._factor(t, s)
        g = self._grad(f)[0]
        v = 4.0 * np.exp(-2.0 * f["phi"] - s)
        J = -0.5 * np.outer(v, g)
        J[np.diag_indices(v.size)] -= v
        return J

    def stats(self, t, s):
        """(phi, risk, chi, dist) at one time from the state s."""
        f = self._factor(t, s)
        g, X, M0 = self._grad(f)
        LM = self._lsolve(f["U"], self._lsolve(f["U"], M0).T)  # U^-T M0 U^-1
        v = 4.0 * np.exp(-2.0 * f["phi"] - s)
        v0, vT = v[0], v[1:]
        Xv = X * np.sqrt(vT)
        Z_tt = 0.25 * (Xv.T @ Xv)          # u_k^T Z u_l, teacher directions
        A_t = Xv @ Xv.T                    # teacher part of L^-1 K' L^-T (scaled)
        A_0 = v0 * LM                      # F_0 part of the same
        H = self._lsolve(f["U"], f["w"][:, None] * self.C12 * (f["e0"] * f["delta"] ** -1.5))
        # 16 (2 ||Z_TP||^2 + ||Z_PP||^2): everything of Z outside the teacher block
        perp = (2.0 * np.sum(A_t * A_0) + np.sum(A_0 * A_0) + 2.0 * v0**2 * np.sum(H * H)
                + np.sum((v0 * self.c2 / f["delta"]) ** 2)) / 16.0
        dZ = Z_tt - np.diag(self.mu)
        dist2 = np.sum(dZ * dZ) + perp
        tau = np.trace(dZ) + 0.25 * v0 * g[0]
        z2 = np.sum(Z_tt * Z_tt) + perp
        zzs = np.sum(self.mu * np.diag(Z_tt))
        den = np.sqrt(z2) * np.linalg.norm(self.mu)
        chi = zzs / den if den > 0 else 0.0
        return f["phi"], 0.5 * dist2 + 0.25 * tau**2, chi, np.sqrt(dist2)


def _general(W0, W_star, t, rtol, atol, solver):
    gs = _General(W0, W_star)
    # log-time scale: a tenth of the fastest teacher time 1 / (4 mu_max) (measured: ~20%
    # fewer evaluations than 1 / (4 mu_max) itself, d = 20..200, rtol 1e-6..1e-10)
    x0 = 0.025 / gs.mu[0] if gs.r else 1.0
    Y, stats = _solve(gs.rhs, gs.jac, np.zeros(gs.r + 1), t, x0,
                      _default_solver(solver, False), rtol, atol)
    vals = np.array([gs.stats(ti, yi) for ti, yi in zip(t, Y)]).reshape(t.size, 4)
    vals[t == 0.0, 0] = 0.0  # phi(0) = 0 by definition (the formula carries round-off)
    a = Y + np.outer(t, 4.0 * gs.mu_all)  # log(1 + 4 F_j)
    with np.errstate(divide="ignore"):
        log_F = a + np.log(-np.expm1(-a)) - np.log(4.0)
    return dict(t=t, phi=vals[:, 0], risk=vals[:, 1], chi=vals[:, 2], dist=vals[:, 3],
                mu=gs.mu.copy(), log_F=log_F, min_pivot=gs.min_pivot, **stats)


# ------------------------------------------------------------------------ public API


def _validate(W0, W_star, rtol, atol, solver):
    dtypes = (_raw_dtype(W0), _raw_dtype(W_star))
    W0 = as_matrix(W0, "W0")
    W_star = as_matrix(W_star, "W_star")
    if W0.shape[0] != W_star.shape[0]:
        raise ValueError(f"W0 and W_star must have the same number of rows d, got {W0.shape} "
                         f"and {W_star.shape}")
    rtol = finite_float(rtol, "rtol", lo=0.0, lo_open=True, hi=0.1)
    atol = rtol * 1e-3 if atol is None else finite_float(atol, "atol", lo=0.0, lo_open=True)
    return W0, W_star, dtypes, rtol, atol, _check_solver(solver)


def _classify(W0, W_star, dtypes):
    """Orthonormal spec ``(lam, 1 - lam, m, m*)`` and info, or None for the general path."""
    (U, dev0, pol0), (Us, dev1, pol1) = (_orthonormal_or_none(W, dt)
                                         for W, dt in zip((W0, W_star), dtypes))
    info = dict(orthonormality={"W0": dev0, "W_star": dev1},
                reorthonormalised=[n for n, p in (("W0", pol0), ("W_star", pol1)) if p])
    if U is None or Us is None:
        return None, info
    lam, oml = _principal_angles(U, Us)
    return (lam, oml, W0.shape[1], W_star.shape[1]), info


def _finish_ortho(res, spec):
    lam, oml, m, ms = spec
    nz = max(m - ms, 0)
    res["lam"] = np.concatenate([np.zeros(nz), lam[::-1]])
    res["one_minus_lam"] = np.concatenate([np.ones(nz), oml[::-1]])
    res["path"] = "orthonormal"
    return res


@single_threaded_blas
def exact_flow(W0, W_star, t, rtol=1e-10, atol=None, solver=None):
    """Exact reduction of the gradient flow (Riccati solution, MATH.md section 5).

    Solves ``dW/dt = -[2 (Z - Z*) + tau I] W`` (MATH.md section 3) through
    ``Z(t) = Phi W0 K(t)^{-1} W0^T Phi``.  Orthonormal start and teacher
    (``W^T W = I / k`` within :func:`orthonormal_tolerance` of the input dtype) take the
    two-scalar path, any other start or teacher the general path with ``r + 1`` scalars
    (``r = rank W*``); see the module docstring for both formulations.  Cost is independent
    of ``d`` beyond an ``O(d m^2)`` set-up; any horizon is safe from overflow.

    Orthonormal input that deviates from ``W^T W = I / k`` by more than 1e-12 (but within
    the tolerance, e.g. an orthonormal matrix rounded to float32) is replaced by its
    nearest orthonormal matrix (polar factor); the result says so in
    ``"reorthonormalised"``.

    Parameters
    ----------
    W0 : array_like, shape (d, m)
        Initial student weights (columns carry ``1/sqrt(m)``).
    W_star : array_like, shape (d, m*)
        Teacher weights.
    t : array_like, shape (n,)
        Times of the flow (time ``t``, not ``gamma = t / d``): finite, non-negative,
        strictly increasing; ``t[0]`` may be 0 or positive.
    rtol, atol : float
        Tolerances of ``solve_ivp`` (``0 < rtol <= 0.1``; ``atol`` default
        ``rtol * 1e-3``).
    solver : str, optional
        A ``solve_ivp`` method in :data:`SOLVERS`; implicit ones ("LSODA", "BDF",
        "Radau") get the analytic Jacobian.  Default: "LSODA" on the orthonormal path,
        "BDF" on the general one (measured fastest for each).

    Returns
    -------
    dict
        ``"t"`` (n,): the requested times; ``"risk"``, ``"phi"``, ``"chi"``, ``"dist"``
        (n,): ``L``, ``int_0^t tau``, ``tr(Z Z*) / (||Z||_F ||Z*||_F)``, ``||Z - Z*||_F``;
        ``"path"``: "orthonormal" or "general"; ``"solver"``, ``"nfev"``, ``"njev"``,
        ``"nlu"``: the solver that ran and its statistics; ``"orthonormality"``: measured
        ``max |k W^T W - I|`` of W0 and W_star; ``"reorthonormalised"``: list of the
        polished inputs.  Orthonormal path: ``"log_F"``, ``"log_G"`` (n,) (MATH.md's
        ``F, G``), ``"lam"`` and ``"one_minus_lam"`` (m,): eigenvalues of ``Y_d``
        ascending, and one minus them (each to relative accuracy; the ``(m - m*)_+``
        structural zeros and ``(m + m* - d)_+`` ones exact).  General path: ``"mu"``
        (r,): nonzero eigenvalues of ``Z*`` (descending up to teacher directions missing
        from W0, which come last); ``"log_F"`` (n, r + 1): ``log F_j(t)``, column 0 the
        perpendicular ``F_0``, columns 1.. aligned with ``"mu"``; ``"min_pivot"``:
        smallest relative pivot of the QR of ``W0^T U*`` (accuracy degrades like
        ``eps / min_pivot^2`` at late times when it is tiny).

    Raises
    ------
    TypeError
        Non-numeric weights or tolerances.
    ValueError
        Shapes mismatch, non-finite weights, invalid ``t``, tolerances out of range,
        unknown ``solver``.
    RuntimeError
        ``solve_ivp`` failed, or the general path lost positive definiteness (columns of
        ``W0^T U*`` nearly dependent, ``min_pivot`` tiny; use ``method="overlaps"``).

    Source: MATH.md section 5.
    """
    W0, W_star, dtypes, rtol, atol, solver = _validate(W0, W_star, rtol, atol, solver)
    t = time_grid(t, "t")
    spec, info = _classify(W0, W_star, dtypes)
    if spec is None:
        res = _general(W0, W_star, t, rtol, atol, solver)
        res["path"] = "general"
    else:
        res = _finish_ortho(_ortho_batch([spec], t, [1.0], rtol, atol, solver)[0], spec)
    res["t"] = t
    res.update(info)
    return res


@single_threaded_blas
def exact_flow_batch(W0, W_star, x, scale=None, rtol=1e-10, atol=None,
                     solver=None):
    """Many independent exact reductions; the orthonormal ones as one vectorised system.

    Instance ``i`` is evaluated at times ``scale[i] * x`` (e.g. ``x = gamma`` and
    ``scale = d_i``).  All orthonormal instances are integrated together (state of size
    ``2 n``, block-diagonal Jacobian: LSODA banded, BDF/Radau sparse; for solvers with
    an RMS error norm the tolerances are divided by ``sqrt(n)`` so that every instance
    meets ``rtol``); general instances are solved one by one as in :func:`exact_flow`.

    Parameters
    ----------
    W0 : sequence of n arrays (d_i, m_i), or array (n, d, m)
        Starts.
    W_star : array (d, m*) shared by all, or a sequence of n arrays (d_i, m*_i)
        Teachers.
    x : array_like, shape (T,)
        Common grid (non-negative, strictly increasing).
    scale : array_like, shape (n,), optional
        Positive time scale of each instance (default 1: times ``x``).
    rtol, atol, solver
        As in :func:`exact_flow` (per instance).

    Returns
    -------
    list of n dicts
        As returned by :func:`exact_flow`, with ``"t" = scale[i] * x``; the solver
        statistics of the orthonormal ones are those of the joint system.

    Raises
    ------
    TypeError, ValueError
        As :func:`exact_flow`; also an empty batch, ``W_star`` not matching the number
        of starts, or a bad ``scale``.
    RuntimeError
        As :func:`exact_flow`.

    Source: MATH.md section 5.
    """
    starts = list(W0) if not isinstance(W0, np.ndarray) or W0.ndim == 3 else None
    if starts is None:
        raise ValueError(f"W0 must be a sequence of (d, m) arrays or an (n, d, m) array, got "
                         f"shape {np.shape(W0)}")
    n = len(starts)
    if n == 0:
        raise ValueError("W0 must hold at least one start")
    if isinstance(W_star, np.ndarray) and W_star.ndim == 2:
        teachers = [W_star] * n
    else:
        teachers = list(W_star)
        if len(teachers) != n:
            raise ValueError(f"W_star must be one (d, m*) array or {n} of them (one per "
                             f"start), got {len(teachers)}")
    x = time_grid(x, "x")
    scale = np.ones(n) if scale is None else np.asarray(scale, dtype=float).reshape(-1)
    if scale.shape != (n,) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ValueError(f"scale must hold {n} positive finite numbers, got {scale!r}")
    items = [_validate(a, b, rtol, atol, solver) for a, b in zip(starts, teachers)]
    rtol, atol, solver = items[0][3], items[0][4], items[0][5]
    classified = [_classify(a, b, dt) for a, b, dt, *_ in items]
    out = [None] * n
    ortho = [i for i, (spec, _) in enumerate(classified) if spec is not None]
    if ortho:
        res = _ortho_batch([classified[i][0] for i in ortho], x, scale[ortho], rtol, atol,
                           solver)
        for i, r in zip(ortho, res):
            out[i] = _finish_ortho(r, classified[i][0])
    for i, (spec, _) in enumerate(classified):
        if spec is None:
            W, Ws = items[i][0], items[i][1]
            out[i] = dict(_general(W, Ws, scale[i] * x, rtol, atol, solver), path="general")
        out[i]["t"] = scale[i] * x
        out[i].update(classified[i][1])
    return out
