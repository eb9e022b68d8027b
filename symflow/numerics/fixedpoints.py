"""Fixed points of the overlap ODE, their stability, the symmetric ansatz and the critical
learning rate of online SGD (committee machines: Saad & Solla 1995, Goldt et al. 2019).

State coordinates: the upper-triangular entries Q_ij (i <= j) and all entries M_in
(MATH.md section 4; committee-machine papers write R for M and T for P).  The Jacobian of
the gradient flow is the derived one (``overlap_flow_jvp`` of the generated kernels:
second partials of the pair functions, product rule on the chain rule), evaluated on
all unit directions at once as a batch.

The *symmetric ansatz* for K = M with P = p I and unit second-layer weights: Q = (q - c)
I + c J, M = (r - s) I + s J (J the all-ones matrix; R diagonal r, off-diagonal s as in
Saad & Solla).  Matrices a I + b J form a commutative algebra, (a1 I + b1 J)(a2 I + b2 J)
= a1 a2 I + (a1 b2 + b1 a2 + K b1 b2) J, and the flow maps the ansatz into itself, so
the overlap ODE reduces exactly to four scalars (q, c, r, s) for any K: the overlap
gradients are pair-function values at the four distinct entries, dQ/dt = -(4 G_Q Q +
2 G_M M), dM/dt = -(2 G_Q M + G_M P) in that algebra.

Source: MATH.md sections 4 and 9.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FixedPoint", "fixed_points", "jacobian", "state_vector", "from_state",
           "SymmetricAnsatz", "critical_learning_rate"]


def _sizes(model):
    m, ms = model.m, model.m_star
    return m, ms, m * (m + 1) // 2


def state_vector(Q, M):
    """(upper-triangular Q_ij, i <= j; M row-major) as one vector (..., n)."""
    Q, M = np.asarray(Q, dtype=float), np.asarray(M, dtype=float)
    iu = np.triu_indices(Q.shape[-1])
    return np.concatenate([Q[..., iu[0], iu[1]], M.reshape(M.shape[:-2] + (-1,))], axis=-1)


def from_state(y, m, ms):
    """Inverse of :func:`state_vector`: (Q (..., m, m) symmetric, M (..., m, ms))."""
    y = np.asarray(y, dtype=float)
    nq = m * (m + 1) // 2
    iu = np.triu_indices(m)
    Q = np.zeros(y.shape[:-1] + (m, m))
    Q[..., iu[0], iu[1]] = y[..., :nq]
    Q[..., iu[1], iu[0]] = y[..., :nq]
    return Q, y[..., nq:].reshape(y.shape[:-1] + (m, ms))


def _ns(model):
    from symflow.numerics.model import _build

    return _build(model.spec)[1]


def _kw(model):
    return dict(a=model.a, a_star=model.a_star) if model.spec.weighted else {}


def jacobian(model, Q, M, P, lr=None, fd_step=1e-6):
    """Jacobian of the overlap ODE in the state coordinates of :func:`state_vector`.

    Parameters
    ----------
    model : symflow.Model
        Closed-form activations (polynomial, erf, relu family).
    Q, M, P : arrays (m, m), (m, m*), (m*, m*)
    lr : float, optional
        Online SGD: the Jacobian of the drift lr * flow + lr^2 * E[g g^T] (the second
        term by central differences of the generated ``sgd_term``, step ``fd_step`` times
        the scale of the overlaps: accurate to ~1e-9 relative).  Default: gradient flow
        (time t).

    Returns
    -------
    ndarray (n, n), n = m (m + 1) / 2 + m m*

    Raises
    ------
    NotImplementedError
        Numeric (quadrature) activations.
    """
    m, ms, nq = _sizes(model)
    n = nq + m * ms
    ns = _ns(model)
    E = np.eye(n)
    tQ, tM = from_state(E, m, ms)  # unit directions as a batch (tQ symmetric)
    ddQ, ddM = ns["overlap_flow_jvp"](Q, M, P, **_kw(model), tQ=tQ, tM=tM)
    J = state_vector(ddQ, ddM).T  # column k: derivative along direction k
    if lr is None:
        return J
    scale = fd_step * max(float(np.max(np.abs(Q))), float(np.max(np.abs(P))), 1e-300)
    Jsgd = np.empty((n, n))
    y0 = state_vector(Q, M)
    for k in range(n):
        yp, ym = y0.copy(), y0.copy()
        yp[k] += scale
        ym[k] -= scale
        Sp = model.kernels.sgd_term(*from_state(yp, m, ms), P)
        Sm = model.kernels.sgd_term(*from_state(ym, m, ms), P)
        Jsgd[:, k] = state_vector((Sp - Sm) / (2 * scale), np.zeros((m, ms)))
    return lr * J + lr * lr * Jsgd


def _drift(model, Q, M, P, lr):
    dQ, dM = (model.flow(Q, M, P) if lr is None else model.sgd_flow(Q, M, P, lr))
    return state_vector(dQ, dM)


@dataclass
class FixedPoint:
    """A fixed point of the overlap ODE.

    Attributes
    ----------
    Q : ndarray (m, m)
    M : ndarray (m, m*)
        (R in committee-machine papers.)
    risk : float
        Population risk there (for online SGD the generalisation risk of the model),
        clipped at 0 (risks formed from overlaps carry round-off ~eps ||P||_F^2).
    eigenvalues : ndarray (n,), complex
        Of the Jacobian (time t; sorted by decreasing real part).
    eigenvectors : ndarray (n, n), complex
        Columns: the eigenvectors in the state coordinates of :func:`state_vector`.
    kind : str
        "minimum" (all real parts < 0: stable), "maximum" (all > 0), "saddle",
        "marginal" (none > 0, some within ``eig_tol`` of 0) or "non-smooth" (the flow
        is not differentiable there, e.g. relu units aligned with each other or with a
        teacher unit, as at perfect recovery: its second Price derivatives grow like
        1 / sqrt(1 - rho^2); eigenvalues and eigenvectors are NaN).
    n_unstable : int
        Eigenvalues with real part > 0 (-1 when "non-smooth").
    residual : float
        max |flow| at the point after Newton's polish.
    meta : dict
        Start index, Newton iterations.
    """

    Q: np.ndarray
    M: np.ndarray
    risk: float
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    kind: str
    n_unstable: int
    residual: float
    meta: dict = field(default_factory=dict)


def _classify(ev, tol):
    re = ev.real
    n_up = int(np.sum(re > tol))
    n_down = int(np.sum(re < -tol))
    if n_up == 0 and n_down == len(ev):
        kind = "minimum"
    elif n_down == 0 and n_up == len(ev):
        kind = "maximum"
    elif n_up == 0:
        kind = "marginal"
    else:
        kind = "saddle"
    return kind, n_up


def _teacher_overlaps(P, ms):
    """P as a finite symmetric positive semi-definite (ms, ms) float matrix."""
    from symflow._validate import as_matrix

    if np.ndim(P) != 2:
        raise ValueError(f"P must have shape ({ms}, {ms}), got shape {np.shape(P)}")
    P = as_matrix(P, "P")
    if P.shape != (ms, ms):
        raise ValueError(f"P must have shape ({ms}, {ms}), got {P.shape}")
    if np.max(np.abs(P - P.T)) > 1e-8 * max(float(np.max(np.abs(P))), 1e-300):
        raise ValueError("P must be symmetric (the teacher overlaps W*^T W*)")
    low = _min_eigenvalue(P)
    if low < 0:
        raise ValueError(f"P must be positive semi-definite (the teacher overlaps W*^T W*), "
                         f"its smallest eigenvalue is {low:.3g}")
    return P


def _min_eigenvalue(G, rel=1e-8):
    """Smallest eigenvalue of the symmetric part of G, or 0 when it is within ``rel`` of
    the largest |diagonal entry| (round-off of a positive semi-definite matrix)."""
    G = 0.5 * (G + G.T)
    low = float(np.linalg.eigvalsh(G)[0])
    return 0.0 if low >= -rel * max(float(np.max(np.abs(np.diag(G)))), 1e-300) else low


def _realisable(Q, M, P):
    """The Gram matrix [[Q, M], [M^T, P]] is positive semi-definite (up to round-off):
    some weights W, W* have these overlaps."""
    return _min_eigenvalue(np.block([[Q, M], [M.T, P]])) == 0.0


def _correlations(Q, M, P):
    """Q_ij / sqrt(Q_ii Q_jj) and M_in / sqrt(Q_ii P_nn) as one vector."""
    with np.errstate(all="ignore"):
        q = np.sqrt(np.maximum(np.diag(Q), 0.0))
        p = np.sqrt(np.maximum(np.diag(P), 0.0))
        c = np.concatenate([(Q / np.outer(q, q)).ravel(), (M / np.outer(q, p)).ravel()])
    return np.nan_to_num(c)


def _newton(model, Q, M, P, lr, tol, max_iter):
    m, ms, _ = _sizes(model)
    y = state_vector(Q, M)
    F = _drift(model, Q, M, P, lr)
    for it in range(max_iter):
        res = float(np.max(np.abs(F)))
        if res <= tol:
            return y, res, it
        J = jacobian(model, *from_state(y, m, ms), P, lr)
        if not np.all(np.isfinite(J)):  # the flow is not differentiable here
            break
        try:
            step = np.linalg.lstsq(J, -F, rcond=None)[0]
        except np.linalg.LinAlgError:
            break
        lam = 1.0
        while lam > 1e-6:  # damped Newton: accept a step that reduces the residual
            yn = y + lam * step
            Qn, Mn = from_state(yn, m, ms)
            if np.all(np.linalg.eigvalsh(Qn) > -1e-12):
                Fn = _drift(model, Qn, Mn, P, lr)
                if np.all(np.isfinite(Fn)) and np.max(np.abs(Fn)) < max(res, 1e-300) * (
                        1 - 1e-4 * lam):
                    break
            lam *= 0.5
        else:
            break
        y, F = yn, Fn
    return y, float(np.max(np.abs(F))), max_iter


def fixed_points(model, P, starts=None, lr=None, tol=1e-12, max_iter=60, grid=5,
                 dedup=1e-7, eig_tol=1e-9):
    """Fixed points of the overlap ODE of ``model`` with teacher overlaps ``P``.

    Parameters
    ----------
    model : symflow.Model
        Closed-form activations (polynomial, erf, relu family).
    P : array (m*, m*)
        Teacher overlaps (T in committee-machine papers).
    starts : list of (Q, M), optional
        Initial guesses.  Default: fixed points of the symmetric ansatz (K = M, unit
        second-layer weights: :class:`SymmetricAnsatz`) for ``p I`` with
        ``p = trace(P) / m*``, found from a ``grid`` of starts in (q, c, r, s), and the
        perfect-recovery point Q = M = P when m = m*.  When P is not a multiple of the
        identity (e.g. a Gaussian teacher), Newton continues these points to P; points
        that do not continue (P far from p I) are dropped: pass ``starts`` then.
    lr : float, optional
        Fixed points of the online-SGD drift instead of the gradient flow.
    tol : float > 0
        Newton's polish stops at max |flow| <= tol (the derived Jacobian).
    max_iter : int
        Newton iterations per start.
    grid : int in [2, 20]
        Points per axis of the default starts' grid (6 grid^2 root solves of the ansatz).
    dedup : float
        Fixed points closer than this (max-norm on the state) are merged.
    eig_tol : float
        Real parts within +-eig_tol count as zero ("marginal").

    Returns
    -------
    list of FixedPoint
        Sorted by risk.  Points where Newton did not reach ``tol`` are dropped, and so
        are overlaps that no weights have (the Gram matrix [[Q, M], [M^T, P]] not
        positive semi-definite: the closed forms continue there, the flow never goes
        there) and points where the flow itself is not finite (sign units aligned with each
        other or with a teacher unit).  Of a ray of fixed points (scale-invariant
        activations: same risk and correlations) one member is kept.

    Raises
    ------
    TypeError
        ``model`` not a :class:`symflow.Model`; non-numeric arguments.
    ValueError
        P not a symmetric positive semi-definite (m*, m*) matrix; shapes of the starts;
        ``tol``, ``dedup`` not positive; ``grid`` outside [2, 20]; default starts for a
        model outside the symmetric ansatz.

    Source: MATH.md sections 4 and 9; Saad & Solla (1995).
    """
    from symflow._validate import finite_float, positive_int
    from symflow.numerics.model import Model

    if not isinstance(model, Model):
        raise TypeError(f"model must be a symflow.Model, got {type(model).__name__}")
    tol = finite_float(tol, "tol", lo=0, lo_open=True)
    dedup = finite_float(dedup, "dedup", lo=0, lo_open=True)
    eig_tol = finite_float(eig_tol, "eig_tol", lo=0)
    max_iter = positive_int(max_iter, "max_iter")
    # grid^2 * 6 root solves of the ansatz: 150 at the default, 2400 at the ceiling
    grid = positive_int(grid, "grid", minimum=2, maximum=20)
    m, ms, _ = _sizes(model)
    P = _teacher_overlaps(P, ms)
    if starts is None:
        ans = SymmetricAnsatz(model, float(np.trace(P)) / ms)
        with np.errstate(all="ignore"):  # the grid explores invalid overlaps too
            starts = [ans.full(*v) for v in ans.fixed_points(grid=grid, lr=lr)]
        if m == ms:
            starts.append((P.copy(), P.copy()))
    out = []
    for k, start in enumerate(starts):
        if not (isinstance(start, (tuple, list)) and len(start) == 2):
            raise ValueError(f"starts must be a list of (Q, M) pairs; starts[{k}] is not one")
        Q0, M0 = np.asarray(start[0], dtype=float), np.asarray(start[1], dtype=float)
        if Q0.shape != (m, m) or M0.shape != (m, ms):
            raise ValueError(f"starts[{k}] must be (Q ({m}, {m}), M ({m}, {ms}))")
        with np.errstate(all="ignore"):
            y, res, it = _newton(model, Q0, M0, P, lr, tol, max_iter)
        if not res <= tol:  # (NaN: the flow is singular there, e.g. sign at aligned units)
            continue
        if any(np.max(np.abs(y - state_vector(f.Q, f.M))) < dedup for f in out):
            continue
        Q, M = from_state(y, m, ms)
        if not _realisable(Q, M, P):  # overlaps no weights have: not a point of the flow
            continue
        # scale-invariant activations (sign, heaviside) have rays of fixed points: one
        # per ray (same risk and same correlations)
        risk = max(0.0, float(model.risk(Q, M, P)))  # round-off ~eps ||P||^2: -1e-17 is 0
        corr = _correlations(Q, M, P)
        if any(abs(f.risk - risk) <= 1e-9 * max(1.0, risk)
               and np.max(np.abs(corr - _correlations(f.Q, f.M, P))) < dedup for f in out):
            continue
        with np.errstate(all="ignore"):
            J = jacobian(model, Q, M, P, lr)
        if np.all(np.isfinite(J)):
            ev, vec = np.linalg.eig(J)
            order = np.argsort(-ev.real, kind="stable")
            ev, vec = ev[order], vec[:, order]
            kind, n_up = _classify(ev, eig_tol)
        else:  # second Price derivatives of relu ~ 1/sqrt(1 - rho^2) at aligned units
            ev = np.full(J.shape[0], np.nan + 0j)
            vec = np.full(J.shape, np.nan + 0j)
            kind, n_up = "non-smooth", -1
        out.append(FixedPoint(Q, M, risk, ev, vec, kind, n_up, res,
                              dict(start=k, newton_iterations=it)))
    return sorted(out, key=lambda f: f.risk)


class SymmetricAnsatz:
    """The exact reduction of the overlap ODE to (q, c, r, s) for K = M, P = p I and unit
    second-layer weights (see the module docstring).

    Parameters
    ----------
    model : symflow.Model
        m = m_star = K, unit second-layer weights.
    P : array (K, K) or float
        Teacher overlaps p I (a float is p).

    Raises
    ------
    ValueError
        m != m_star, P not a multiple of the identity, non-unit second-layer weights.
    """

    def __init__(self, model, P=1.0):
        K = model.m
        if model.m_star != K:
            raise ValueError(f"the symmetric ansatz needs m = m_star, got {model.m}, "
                             f"{model.m_star}")
        P = np.asarray(P, dtype=float)
        p = float(P) if P.ndim == 0 else float(P[0, 0])
        if P.ndim and (P.shape != (K, K) or np.max(np.abs(P - p * np.eye(K))) > 1e-10 * abs(p)):
            raise ValueError("P must be p I (teacher units orthogonal with equal norms) for "
                             "the symmetric ansatz")
        if not (np.all(model.a == 1) and np.all(model.a_star == 1)):
            raise ValueError("the symmetric ansatz needs unit second-layer weights")
        self.model, self.K, self.p = model, K, p
        self.ns = _ns(model)
        sp_ = model.spec
        self.coef = {b.name: float(b.coef) for b in _blocks(model)}
        self.wd = float(sp_.weight_decay)
        self.const = float(sp_.loss_scale * sp_.noise)

    # algebra of a I + b J
    def _mul(self, u, v):
        return u[0] * v[0], u[0] * v[1] + u[1] * v[0] + self.K * u[1] * v[1]

    def gradients(self, q, c, r, s):
        """(G_Q, G_M) in the algebra: pairs (a, b) of a I + b J (broadcast over arrays)."""
        ns, K, p, cf = self.ns, self.K, self.p, self.coef
        dx, dy, dz = ns["_QQ_grad"](q, q, c)
        go = cf["QQ"] * dz
        gd = cf["QQ"] * ((K - 1) * (dx + dy) + ns["_QQ_dpsi"](q)) + self.wd / 2
        mx_d, mz_d = ns["_QM_grad"](q, p, r)
        mx_o, mz_o = ns["_QM_grad"](q, p, s)
        gd = gd + cf["QM"] * (mx_d + (K - 1) * mx_o)
        gmd, gmo = cf["QM"] * mz_d, cf["QM"] * mz_o
        return (gd - go, go), (gmd - gmo, gmo)

    def rhs(self, q, c, r, s):
        """(dq, dc, dr, ds)/dt of the gradient flow (time t)."""
        GQ, GM = self.gradients(q, c, r, s)
        Q, M, P = (q - c, c), (r - s, s), (self.p, 0.0)
        a = self._mul(GQ, Q)
        b = self._mul(GM, M)
        dQ = (-(4 * a[0] + 2 * b[0]), -(4 * a[1] + 2 * b[1]))
        e = self._mul(GQ, M)
        f = self._mul(GM, P)
        dM = (-(2 * e[0] + f[0]), -(2 * e[1] + f[1]))
        return dQ[0] + dQ[1], dQ[1], dM[0] + dM[1], dM[1]

    def risk(self, q, c, r, s):
        """Population risk on the ansatz."""
        ns, K, p, cf = self.ns, self.K, self.p, self.coef
        qq = K * (K - 1) * ns["_QQ_phi"](q, q, c) + K * ns["_QQ_psi"](q)
        qm = K * ns["_QM_phi"](q, p, r) + K * (K - 1) * ns["_QM_phi"](q, p, s)
        pp = K * (K - 1) * ns["_PP_phi"](p, p, 0.0) + K * ns["_PP_psi"](p)
        return self.const + cf["QQ"] * qq + cf["QM"] * qm + cf["PP"] * pp + self.wd / 2 * K * q

    def full(self, q, c, r, s):
        """The (Q, M) matrices of an ansatz point."""
        K, E = self.K, np.eye(self.K)
        return (q - c) * E + c * np.ones((K, K)), (r - s) * E + s * np.ones((K, K))

    def simulate(self, start, t, rtol=1e-10, atol=1e-13):
        """Integrate the reduced ODE (LSODA) from ``start`` = (q, c, r, s) at times ``t``.

        Returns
        -------
        dict with "t", "q", "c", "r", "s", "risk", "phi" (arrays (n,)) and "nfev"
        """
        from scipy.integrate import solve_ivp

        from symflow._validate import time_grid

        t = time_grid(t, "t")
        K, p = self.K, self.p

        def f(_t, y):
            return [*self.rhs(*y[:4]), K * (y[0] - p)]

        if t[-1] == 0:
            Y, nfev = np.array(list(start) + [0.0])[:, None] * np.ones((1, t.size)), 0
        else:
            sol = solve_ivp(f, (0.0, t[-1]), list(start) + [0.0], method="LSODA", t_eval=t,
                            rtol=rtol, atol=atol)
            if not sol.success:
                raise RuntimeError(f"symmetric-ansatz ODE failed: {sol.message}")
            Y, nfev = sol.y, sol.nfev
        q, c, r, s, phi = Y
        return dict(t=t, q=q, c=c, r=r, s=s, phi=phi, risk=self.risk(q, c, r, s), nfev=nfev)

    def fixed_points(self, grid=5, lr=None, tol=1e-13):
        """Fixed points (q, c, r, s) of the reduced gradient flow from a grid of starts.

        Root finding (scipy ``root``, hybrid method) on the four scalar equations; roots
        with q >= |c| (Q positive semi-definite) are kept, duplicates merged.  ``lr`` is
        not supported here (the gradient-flow ansatz); online-SGD fixed points are found
        from these starts by :func:`fixed_points`.
        """
        from scipy.optimize import root

        K, p = self.K, self.p
        found = []
        vals = np.linspace(0.05, 1.0, grid)
        for q0 in vals * p:
            for c_frac in (0.0, 0.5, 0.95):
                for r0 in vals * np.sqrt(q0 * p):
                    for s_frac in (0.0, 1.0):
                        x0 = [q0, c_frac * q0, r0, s_frac * r0]
                        sol = root(lambda v: self.rhs(*v), x0, method="hybr", tol=1e-14)
                        v = sol.x
                        if not sol.success or np.max(np.abs(self.rhs(*v))) > 1e-10:
                            continue
                        if v[0] <= 0 or abs(v[1]) > v[0] * (1 + 1e-12) or \
                                v[0] + (K - 1) * v[1] < -1e-12:
                            continue
                        if not any(np.max(np.abs(v - w)) < 1e-7 for w in found):
                            found.append(v)
        return found


def _blocks(model):
    from symflow.numerics.model import _blocks as b

    return b(model.spec)


def critical_learning_rate(model, P, lr_max=100.0, rtol=1e-8):
    """Largest online-SGD learning rate for which perfect recovery stays stable.

    At Q = M = P (m = m*, student equal to teacher; no label noise, so it is a fixed
    point of the drift for every lr), the Jacobian of the drift lr flow + lr^2 E[g g^T]
    is lr (J_f + lr J_s): stable while every eigenvalue of J_f + lr J_s has a negative
    real part.  The crossing is found by bisection on lr.

    Parameters
    ----------
    model : symflow.Model
        m = m_star, no label noise.
    P : array (m, m)
    lr_max : float
        Upper end of the search.
    rtol : float
        Relative accuracy of the returned lr.

    Returns
    -------
    float
        lr_c (inf if stable up to ``lr_max``).

    Raises
    ------
    ValueError
        m != m_star, noise > 0 (perfect recovery is then not a fixed point), or perfect
        recovery unstable already as lr -> 0.
    """
    P = np.asarray(P, dtype=float)
    if model.m != model.m_star:
        raise ValueError("the critical learning rate is defined at perfect recovery: m must "
                         "equal m_star")
    if float(model.spec.noise) != 0:
        raise ValueError("with label noise perfect recovery is not a fixed point of online "
                         "SGD; use noise = 0")
    Jf = jacobian(model, P, P, P)
    Js = (jacobian(model, P, P, P, lr=1.0) - Jf)  # lr = 1: J_f + J_s

    def growth(lr):
        return float(np.max(np.linalg.eigvals(Jf + lr * Js).real))

    if growth(1e-12) >= 0:
        raise ValueError("perfect recovery is not stable for the gradient flow")
    if growth(lr_max) < 0:
        return float("inf")
    lo, hi = 0.0, lr_max
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if growth(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)
