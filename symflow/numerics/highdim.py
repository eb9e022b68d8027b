"""High-dimensional limit of the gradient flow, orthonormal start (MATH.md section 6).

The state is (log F, log J); with v = J/E = exp(log J - 4 gamma/alpha*), u = 1/J and
s = J Theta'(J - 1) + (alpha + alpha* - 1)_+ the system reads (generated kernels)

    (log F)' = 4 v / (alpha v + (1 - v) s),   (log J)' = 4 (1 - v) / (alpha v + (1 - v) s),
    phi = (log(alpha v + (1 - v) s) - log alpha - log v - log F) / 2,

all bounded for any horizon (0 < u, v <= 1), so nothing overflows.  The conserved
quantity alpha log F + Theta(J - 1) + (alpha + alpha* - 1)_+ log J - 4 gamma = 0 is
not imposed; it is a check (see ``conservation_residual``).

``limit`` also takes arrays of (alpha, alpha*): the cells are stacked into one state
(log F_0, log J_0, log F_1, ...) and solved together with the same generated kernels
(block-diagonal Jacobian), which is what a phase diagram over (alpha, alpha*) needs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import odeint, solve_ivp

from symflow._io import atomic_write
from symflow._threads import single_threaded_blas
from symflow._validate import finite_float, time_grid
from symflow.generated import limit_numpy as _k
from symflow.numerics.wachter import (
    _U_MIN,
    _alphas,
    _jtheta_prime,
    _overlap_k,
    theta_of_logj,
    wachter_edges,
)


@dataclass(frozen=True)
class LimitTrajectory:
    """Solution of the limit system on a gamma grid (MATH.md section 6).

    One curve (``limit`` called with scalar ``alpha``, ``alpha_star``) or a batch of
    curves (called with arrays): a batch has the broadcast shape ``B`` of the inputs
    (``batch_shape``), every curve shares the gamma grid, and the curve of cell ``i``
    is ``traj.cell(i)`` (or ``traj.phi[i]``, ...).

    Attributes
    ----------
    alpha, alpha_star : float, or ndarray B
        Width ratios m/d, m*/d of each curve.
    gamma : ndarray (n,)
        High-dimensional time gamma = t/d, increasing, >= 0 (shared by all curves).
    phi : ndarray (n,) or B + (n,)
        phi(gamma), the limit of phi_d(gamma) = int_0^{d gamma} tau(s) ds.
    chi : ndarray (n,) or B + (n,)
        Overlap chi(gamma) in [0, 1].
    log_F, log_J : ndarray (n,) or B + (n,)
        log F and log J = log(G/F); always finite (F, J themselves may overflow).
    meta : dict
        Solver information: method, rtol and atol used, nfev (right-hand-side
        evaluations of the whole solve, shared by a batch), Wachter edges r1, r2 and atom
        masses atom0, atom1 (floats, or arrays B for a batch), wall time, n_cells.
    """

    alpha: float | np.ndarray
    alpha_star: float | np.ndarray
    gamma: np.ndarray
    phi: np.ndarray
    chi: np.ndarray
    log_F: np.ndarray
    log_J: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def batch_shape(self):
        """Shape B of a batch of curves; ``()`` for a single curve."""
        return np.shape(self.alpha)

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
        """chi(infinity) = min(1, sqrt(alpha / alpha*)) (MATH.md section 6); float for
        one curve, ndarray B for a batch."""
        if not self.batch_shape:
            return min(1.0, float(np.sqrt(self.alpha / self.alpha_star)))
        return np.minimum(1.0, np.sqrt(self.alpha / self.alpha_star))

    def cell(self, index):
        """One curve of a batch.

        Parameters
        ----------
        index : int or tuple of int
            Position in ``batch_shape`` (numpy indexing, negative allowed).

        Returns
        -------
        LimitTrajectory
            With float ``alpha``, ``alpha_star`` and arrays (n,); per-cell entries of
            ``meta`` (r1, r2, atom0, atom1) are picked, shared ones (nfev, ...) kept.

        Raises
        ------
        TypeError
            If this is a single curve.
        IndexError, ValueError
            If ``index`` is out of range or does not select exactly one cell.
        """
        shape = self.batch_shape
        if not shape:
            raise TypeError("cell(): this LimitTrajectory is a single curve, not a batch")
        a = np.asarray(self.alpha)[index]
        if np.ndim(a) != 0:
            raise ValueError(f"index must select one cell of the batch shape {shape}, "
                             f"got {index!r}")
        meta = {k: (v[index].item() if isinstance(v, np.ndarray) and v.shape == shape else v)
                for k, v in self.meta.items()}
        return LimitTrajectory(float(a), float(np.asarray(self.alpha_star)[index]), self.gamma,
                               self.phi[index], self.chi[index], self.log_F[index],
                               self.log_J[index], meta)

    def to_csv(self, path):
        """Write the curve(s) to ``path`` atomically (temporary file, then ``os.replace``).

        One curve: columns gamma, phi, chi, log_F, log_J.  A batch: long format with
        columns alpha, alpha_star, gamma, phi, chi, log_F, log_J, one row per cell and
        time (cells in C order of ``batch_shape``).
        """
        cols = [self.gamma, self.phi, self.chi, self.log_F, self.log_J]
        header = "gamma,phi,chi,log_F,log_J"
        if self.batch_shape:
            n = self.gamma.size
            cols = ([np.repeat(np.ravel(self.alpha), n), np.repeat(np.ravel(self.alpha_star), n),
                     np.tile(self.gamma, int(np.prod(self.batch_shape)))]
                    + [np.ravel(c) for c in cols[1:]])
            header = "alpha,alpha_star," + header
        data = np.column_stack([np.asarray(c, dtype=float) for c in cols])
        atomic_write(path, lambda tmp: np.savetxt(tmp, data, delimiter=",", fmt="%.17g",
                                                  header=header, comments=""))


def _exp(a):
    a = np.asarray(a)
    if a.dtype == object:  # mpmath numbers (dps=): regression, np.exp raised TypeError
        import mpmath

        return np.array([mpmath.exp(v) for v in a.ravel()], dtype=object).reshape(a.shape)
    with np.errstate(over="ignore"):
        return np.exp(a)


def _pieces(gamma, log_j, alpha, alpha_star, r1, r2, p):
    """(log v, v, u, s) from gamma and log J (arrays or scalars; the cell parameters
    alpha_star, r1, r2, p may be arrays broadcasting against gamma and log J)."""
    log_v = np.minimum(log_j - 4.0 * gamma / alpha_star, 0.0)
    u = np.exp(-log_j)
    s = _jtheta_prime(u, r1, r2) + p
    return log_v, np.exp(log_v), u, s


_METHODS = ("auto", "odeint", "DOP853", "Radau", "LSODA")
_RTOL_FLOOR = 100 * np.finfo(float).eps  # scipy's solve_ivp floor (it warns below); ODEPACK too
_LOG_U_MIN = math.log(_U_MIN)
_MAX_STEPS = 200_000  # odeint steps between two output times


def _rhs_one(a, s, r1, r2, p):
    """Right-hand side of one cell in Python floats (the generated kernels accept scalars;
    numpy calls on length-1 arrays would cost 5x more per evaluation)."""
    c4, ac = 4.0 / s, r2 > r1

    def rhs(g, y):
        lj = float(y[1])
        v = math.exp(min(lj - c4 * g, 0.0))
        sv = p
        if ac:
            sv += _k.jtheta_prime(math.exp(min(max(-lj, _LOG_U_MIN), 700.0)), r1, r2)
        return [_k.limit_dlogf(v, sv, a), _k.limit_dlogj(v, sv, a)]
    return rhs


def _rhs_many(a, s, r1, r2, p):
    """Right-hand side of N cells on the interleaved state (log F_0, log J_0, log F_1, ...):
    cell i touches entries 2i, 2i + 1 only, so the Jacobian is block diagonal (upper
    bandwidth 1, lower 0)."""
    c4, ac = 4.0 / s, r2 > r1
    full = bool(ac.all())
    r1d, r2d = np.where(ac, r1, 0.25), np.where(ac, r2, 0.75)  # dummies where mu_ac = 0

    def rhs(g, y):
        lj = y[1::2]
        v = np.exp(np.minimum(lj - c4 * g, 0.0))
        jt = _k.jtheta_prime(np.exp(np.maximum(np.minimum(-lj, 700.0), _LOG_U_MIN)), r1d, r2d)
        sv = p + (jt if full else np.where(ac, jt, 0.0))
        out = np.empty(y.shape)
        out[0::2] = _k.limit_dlogf(v, sv, a)
        out[1::2] = _k.limit_dlogj(v, sv, a)
        return out
    return rhs


def _block_sparsity(n_cells):
    """Jacobian pattern of the interleaved state: d(log F_i)'/d(log J_i), d(log J_i)'/d(log J_i)."""
    from scipy.sparse import csr_matrix

    rows = np.arange(2 * n_cells)
    cols = rows | 1  # row 2i and 2i + 1 both depend on column 2i + 1 only
    return csr_matrix((np.ones(rows.size), (rows, cols)), shape=(2 * n_cells, 2 * n_cells))


def _solve(a, s, r1, r2, p, gamma, rtol, method):
    """log F, log J of shape (N, n) for 1-D cell arrays a, s, r1, r2, p of length N.

    Returns (log_f, log_j, stats): stats holds method, rtol, atol actually used, nfev."""
    n_cells = a.size
    if method == "DOP853" and n_cells > 1:
        # its error estimate mixes a 5th- and a 3rd-order estimator over all components,
        # so one smooth cell can hide another's error: no per-cell bound in one system
        parts = [_solve(*(x[i:i + 1] for x in (a, s, r1, r2, p)), gamma, rtol, method)
                 for i in range(n_cells)]
        stats = dict(parts[0][2], nfev=sum(q[2]["nfev"] for q in parts), cell_by_cell=True)
        return (np.concatenate([q[0] for q in parts]), np.concatenate([q[1] for q in parts]),
                stats)
    if n_cells == 1:
        rhs = _rhs_one(*(float(x[0]) for x in (a, s, r1, r2, p)))
    else:
        rhs = _rhs_many(a, s, r1, r2, p)
    if method == "Radau" and n_cells > 1:
        # its error norm is the RMS over the 2N components: rtol / sqrt(N) bounds the
        # error of every cell by rtol (LSODA's max-norm needs no such scaling)
        rtol = max(rtol / math.sqrt(n_cells), _RTOL_FLOOR)
    atol = 1e-3 * rtol
    stats = {"method": method, "rtol": rtol, "atol": atol, "nfev": 0}
    y0 = np.zeros(2 * n_cells)
    if gamma[-1] == 0:
        zeros = np.zeros((n_cells, gamma.size))
        return zeros, zeros.copy(), stats
    if method == "odeint":
        t = gamma if gamma[0] == 0 else np.concatenate([[0.0], gamma])
        band = {"ml": 0, "mu": 1} if n_cells > 1 else {}
        y, info = odeint(rhs, y0, t, tfirst=True, rtol=rtol, atol=atol, mxstep=_MAX_STEPS,
                         full_output=True, **band)
        if info["message"] != "Integration successful.":
            raise RuntimeError(f"limit ODE failed (odeint): {info['message']}")
        y = y[t.size - gamma.size:].T
        stats.update(nfev=int(info["nfe"][-1]), njev=int(info["nje"][-1]),
                     stiff=bool(np.any(info["mused"] == 2)))
    else:
        kw = {}
        if n_cells > 1 and method == "Radau":
            kw["jac_sparsity"] = _block_sparsity(n_cells)
        elif n_cells > 1 and method == "LSODA":
            kw.update(lband=0, uband=1)
        sol = solve_ivp(rhs, (0.0, gamma[-1]), y0, method=method, t_eval=gamma, rtol=rtol,
                        atol=atol, **kw)
        if not sol.success:
            raise RuntimeError(f"limit ODE failed ({method}): {sol.message}")
        y = sol.y
        stats.update(nfev=int(sol.nfev), njev=int(sol.njev))
    return y[0::2], y[1::2], stats


def _cells(alpha, alpha_star):
    """Validated, broadcast float arrays of a batch (errors name the argument and cell)."""
    arrs = []
    for x, name in ((alpha, "alpha"), (alpha_star, "alpha_star")):
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a real number or array, got {x!r}") from exc
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
        arrs.append(arr.astype(float))
    try:
        a, s = np.broadcast_arrays(*arrs)
    except ValueError:
        raise ValueError(f"alpha and alpha_star must broadcast together, got shapes "
                         f"{arrs[0].shape} and {arrs[1].shape}") from None
    if a.size == 0:
        raise ValueError(f"alpha and alpha_star must not be empty, got shape {a.shape}")
    for idx in np.ndindex(a.shape):
        try:
            _alphas(a[idx], s[idx])
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{exc} (cell {idx})") from None
    return a.copy(), s.copy()


@single_threaded_blas
def limit(alpha, alpha_star, gamma, rtol=1e-10, method="auto", dps=None):
    """Solve the high-dimensional limit ODE (orthonormal start and teacher).

    Parameters
    ----------
    alpha, alpha_star : float in (0, 1], or array_like
        Width ratios m/d and m*/d.  Scalars give one curve.  Arrays (any shapes that
        broadcast together, e.g. a meshgrid, or an (N,) list of cells) give a batch of
        curves of the broadcast shape B, solved as one vectorised ODE system.
    gamma : array_like (n,)
        Output times gamma = t/d: 1-D, finite, >= 0, strictly increasing (0 allowed),
        at most 1e6; shared by all curves.  The ODE is always integrated from gamma = 0.
    rtol : float in [1e-14, 1e-2]
        Relative tolerance; atol = 1e-3 * rtol.  Values below 100 machine epsilons
        (2.2e-14, the smallest scipy's solvers accept) are raised to it; meta["rtol"]
        holds the value used.  The default gives chi to about 1e-10 and phi to about
        1e-9 (1 + |phi|) on gamma in [0, 10] (measured against rtol = 1e-13).
    method : {"auto", "odeint", "DOP853", "Radau", "LSODA"}
        "auto" = "odeint": ODEPACK LSODA through ``scipy.integrate.odeint`` (Adams,
        switching to BDF with a banded finite-difference Jacobian where the system is
        stiff, i.e. alpha < alpha* on long horizons; its error test is a max-norm, so in
        a batch every cell is held to rtol).  "DOP853", "Radau", "LSODA":
        ``scipy.integrate.solve_ivp``; a batch is one system with a block-diagonal
        ``jac_sparsity`` (Radau, with rtol / sqrt(N) against its RMS error norm) or
        bands (LSODA), except DOP853, whose error estimate mixes all components: it
        solves a batch cell by cell.
    dps : int in [15, 100], optional
        High precision: integrate the same generated right-hand side in mpmath at ``dps``
        digits (:func:`symflow.numerics.precision.limit_mp`: Gragg-Bulirsch-Stoer
        extrapolation, :mod:`symflow.numerics.mpode`), cell by cell for a batch.  The
        arrays of the result then hold ``mpmath.mpf``; accurate to about dps - 5 digits
        for gamma <= 2 (measured: dps digits); about 0.3 s per unit of gamma at dps = 30,
        1 s at dps = 50.  meta: method "mpmath.gbs", integrator statistics.

    Returns
    -------
    LimitTrajectory
        For scalar alpha, alpha_star: float ``alpha``, ``alpha_star`` and arrays (n,).
        For a batch: arrays ``alpha``, ``alpha_star`` of shape B and phi, chi, log_F,
        log_J of shape B + (n,); ``cell(i)`` is one curve.  A batch agrees with
        per-cell calls to solver tolerance (not bit for bit: the step sizes are shared).

    Raises
    ------
    ValueError, TypeError
        Naming the bad argument (alpha, alpha_star outside (0, 1] or NaN, with the cell
        index for a batch; shapes that do not broadcast; gamma not a non-negative
        increasing 1-D array; rtol out of range; unknown method).
    RuntimeError
        If the ODE solver fails.

    Source: MATH.md section 6 (derived from section 5 in docs/limit_derivation_notes.md).
    """
    batched = np.ndim(alpha) > 0 or np.ndim(alpha_star) > 0
    if batched:
        a, s = _cells(alpha, alpha_star)
    else:
        a, s = _alphas(alpha, alpha_star)
    gamma = time_grid(gamma, "gamma")
    if gamma[-1] > 1e6:
        raise ValueError(f"gamma must be <= 1e6, got max {gamma[-1]:.3g}")
    rtol = finite_float(rtol, "rtol", lo=1e-14, hi=1e-2)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if dps is not None:
        if not batched:
            return _limit_dps(a, s, gamma, dps)
        return _batch_dps(a, s, gamma, dps)
    t0 = time.perf_counter()
    af, sf = np.ravel(a), np.ravel(s)
    edges = np.array([wachter_edges(x, y) for x, y in zip(af, sf)]).reshape(-1, 2)
    r1, r2 = edges[:, 0], edges[:, 1]
    p, q0 = np.maximum(af + sf - 1.0, 0.0), np.maximum(af - sf, 0.0)
    log_f, log_j, stats = _solve(af, sf, r1, r2, p, gamma, max(rtol, _RTOL_FLOOR),
                                 "odeint" if method == "auto" else method)
    col = (slice(None), None)  # cell parameters as columns against the gamma axis
    log_v, v, u, sv = _pieces(gamma, log_j, af[col], sf[col], r1[col], r2[col], p[col])
    phi = np.asarray(_k.limit_phi(log_f, log_v, v, sv, af[col]), float)
    K = _overlap_k(u, v, r1[col], r2[col])
    chi = np.asarray(_k.limit_chi(v, sv, p[col], q0[col], K, sf[col]), float)
    meta = dict(stats, wall_time_s=time.perf_counter() - t0, n_cells=af.size,
                source="MATH.md section 6")
    shape = np.shape(a)
    if not batched:
        meta.update(r1=float(r1[0]), r2=float(r2[0]), atom0=float(q0[0]), atom1=float(p[0]))
        return LimitTrajectory(a, s, gamma, phi[0], chi[0], log_f[0], log_j[0], meta)
    meta.update(r1=r1.reshape(shape), r2=r2.reshape(shape), atom0=q0.reshape(shape),
                atom1=p.reshape(shape))
    full = shape + (gamma.size,)
    return LimitTrajectory(a, s, gamma, phi.reshape(full), chi.reshape(full),
                           log_f.reshape(full), log_j.reshape(full), meta)


def _limit_dps(alpha, alpha_star, gamma, dps):
    """One curve of ``limit(..., dps=)``: :func:`symflow.numerics.precision.limit_mp`
    (Gragg-Bulirsch-Stoer at dps + 5 working digits, local tolerance 10^-dps); meta holds
    the integrator statistics (steps, rejected, nfev, orders, tol, work_dps)."""
    from symflow._validate import check_dps
    from symflow.numerics.precision import _meta_stats, limit_mp

    dps = check_dps(dps)
    t0 = time.perf_counter()
    r = limit_mp(alpha, alpha_star, gamma, dps)
    stats = r.pop("stats")
    arr = {k: np.array(v, dtype=object) for k, v in r.items()}
    meta = dict(method="mpmath." + stats["integrator"], dps=dps, **_meta_stats(stats),
                wall_time_s=time.perf_counter() - t0, source="MATH.md section 6")
    return LimitTrajectory(alpha, alpha_star, gamma, arr["phi"], arr["chi"], arr["log_F"],
                           arr["log_J"], meta)


def _batch_dps(a, s, gamma, dps):
    t0 = time.perf_counter()
    curves = [_limit_dps(float(a[i]), float(s[i]), gamma, dps) for i in np.ndindex(a.shape)]
    full = a.shape + (gamma.size,)

    def stack(name):
        out = np.empty(full, dtype=object)
        for i, c in zip(np.ndindex(a.shape), curves):
            out[i] = getattr(c, name)
        return out

    first = curves[0].meta
    meta = {"method": first["method"], "dps": first["dps"], "integrator": first["integrator"],
            "n_cells": a.size, "nfev": sum(c.meta["nfev"] for c in curves),
            "steps": sum(c.meta.get("steps", 0) for c in curves),
            "wall_time_s": time.perf_counter() - t0, "source": "MATH.md section 6"}
    return LimitTrajectory(a, s, gamma, stack("phi"), stack("chi"), stack("log_F"),
                           stack("log_J"), meta)


def conservation_residual(traj):
    """Conserved quantity of the limit system along a trajectory (should vanish).

    Parameters
    ----------
    traj : LimitTrajectory
        Float (not ``dps``) solution; one curve or a batch.

    Returns
    -------
    ndarray (n,), or B + (n,) for a batch
        alpha log F + Theta(J - 1) + (alpha + alpha* - 1)_+ log J - 4 gamma, with Theta
        by quadrature (``theta_of_logj``), independent of the ODE's right-hand side.

    Source: MATH.md section 6.
    """
    if traj.batch_shape:
        out = np.empty(traj.batch_shape + traj.gamma.shape)
        for idx in np.ndindex(traj.batch_shape):
            out[idx] = conservation_residual(traj.cell(idx))
        return out
    a, s = traj.alpha, traj.alpha_star
    p = max(a + s - 1.0, 0.0)
    th = theta_of_logj(traj.log_J, a, s)
    return a * traj.log_F + th + p * traj.log_J - 4.0 * traj.gamma
