"""Gradient-flow simulators: overlaps, weights, exact (Riccati) and gradient descent.

``simulate`` returns a :class:`Trajectory` aligned with the requested times.  All
methods share the conventions of MATH.md sections 3-5: time ``t`` of the plain
gradient flow dW/dt = -grad_W L (``gamma = t / d``), ``phi(t) = int_0^t tau(s) ds``
integrated with the state, ``chi = ||M||_F^2 / (||Q||_F ||P||_F)`` and
``dist = ||Z - Z*||_F``.
"""

from __future__ import annotations

import json
import time
import types
from dataclasses import dataclass, field

import numpy as np

from symflow._io import atomic_write
from symflow._threads import single_threaded_blas
from symflow._validate import finite_float, time_grid
from symflow.generated import quadratic_numpy as _gen
from symflow.numerics.kernels import _pair, weights_risk_dist

__all__ = ["Trajectory", "simulate", "simulate_batch", "METHODS", "SOLVERS", "Diverged",
           "TooSlow"]

METHODS = ("overlaps", "weights", "exact", "gd", "symmetric")


@dataclass
class Trajectory:
    """Result of :func:`simulate`.

    Attributes
    ----------
    t : ndarray (n,)
        Times of the gradient flow (for ``method="gd"``: ``eta * steps``).
    gamma : ndarray (n,)
        ``t / d``.
    risk, phi, chi, dist : ndarray (n,)
        Population risk, ``phi(t) = int_0^t tr(Z - Z*)``, overlap ``chi`` and
        ``||Z - Z*||_F`` at those times.
    Q : ndarray (n, m, m) or None
        ``W^T W`` (None for ``method="exact"``, which fixes Z only up to a rotation of W).
    M : ndarray (n, m, m_star) or None
        ``W^T W*`` (R in committee-machine papers).
    a : ndarray (n, m) or None
        Second-layer weights when they are trained (``Model(train_second_layer=True)``).
    events : dict
        Event times (time t; None if it did not occur before the last time), for the
        ``events`` requested from :func:`simulate`: "risk" (first time the risk falls
        below the level), "specialisation" (first time max_n (max_i |M_in| - min_i
        |M_in|) exceeds the threshold), "plateau_entry" / "plateau_exit" (first time the
        relative decay rate -d log L / dt falls below the rate, and the next time it
        rises above it again).
    meta : dict
        Parameters (d, m, m_star, method, rtol, atol, solver, eta), seed if known,
        package version, solver statistics.
    """

    t: np.ndarray
    gamma: np.ndarray
    risk: np.ndarray
    phi: np.ndarray
    chi: np.ndarray
    dist: np.ndarray
    Q: np.ndarray | None = None
    M: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    a: np.ndarray | None = None
    events: dict = field(default_factory=dict)

    COLUMNS = ("t", "gamma", "risk", "phi", "chi", "dist")

    def to_csv(self, path):
        """Write the columns t, gamma, risk, phi, chi, dist (and a_0, a_1, ... for a trained
        second layer) to ``path`` (atomic)."""
        cols = [np.asarray(getattr(self, c), dtype=float) for c in self.COLUMNS]
        names = list(self.COLUMNS)
        if self.a is not None:
            cols += list(np.asarray(self.a, dtype=float).T)
            names += [f"a_{i}" for i in range(self.a.shape[-1])]
        data = np.column_stack(cols)
        _atomic(path, lambda fh: np.savetxt(fh, data, delimiter=",", header=",".join(
            names), comments="", fmt="%.17g"), mode="w")

    def to_npz(self, path):
        """Write every array, the events and the metadata (as JSON) to ``path`` (.npz,
        atomic)."""
        arrays = {c: np.asarray(getattr(self, c), dtype=float) for c in self.COLUMNS}
        arrays["events"] = np.array(json.dumps(self.events, sort_keys=True, default=str))
        for name in ("Q", "M", "a"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        arrays["meta"] = np.array(json.dumps(self.meta, sort_keys=True, default=str))
        _atomic(path, lambda fh: np.savez(fh, **arrays), mode="wb")


def _atomic(path, write, mode):
    def w(tmp):
        with open(tmp, mode) as fh:
            write(fh)
    atomic_write(path, w)


def observables(Q, M, P, kern=_gen):
    """Risk, chi and dist from overlaps, batched over leading axes.

    Parameters
    ----------
    Q, M, P : arrays (..., m, m), (..., m, m_star), (..., m_star, m_star)
    kern : namespace with ``risk_from_overlaps``
        Default: the paper's generated kernels.

    Returns
    -------
    risk, chi, dist : arrays of shape Q.shape[:-2]
        chi = ||M||^2 / (||Q|| ||P||) (0 for Q = 0), clipped to [0, 1]; risk clipped at 0
        (round-off of the overlap representation).

    Source: MATH.md sections 2 and 4.
    """
    nq = np.sum(Q * Q, axis=(-2, -1))
    nm = np.sum(M * M, axis=(-2, -1))
    npp = np.sum(P * P, axis=(-2, -1))
    # chi := 0 for a zero student (Z = 0 has no overlap with Z*); values outside the valid
    # ranges (chi > 1, risk < 0 by ~1e-16 ||P||^2 when Z ~ Z*) are round-off of the
    # overlap representation and are clipped
    den = np.sqrt(nq * npp)
    chi = np.clip(np.divide(nm, den, out=np.zeros_like(nm), where=den > 0), 0.0, 1.0)
    dist = np.sqrt(np.maximum(nq - 2 * nm + npp, 0.0))
    return np.maximum(kern.risk_from_overlaps(Q, M, P), 0.0), chi, dist


def _progress(total, enabled, d=None):
    """Progress display of a run to time ``total``, counting in gamma = t / d when ``d``
    is given (the caller gave gamma), else in t; None when not ``enabled``.  A bar on a
    terminal, plain lines every 10 s otherwise (:mod:`symflow._progress`)."""
    if not enabled:
        return None
    from symflow._progress import make_progress

    if d:
        return make_progress(float(total) / d, unit="gamma", scale=float(d))
    return make_progress(float(total), unit="t")


class _Tick:
    """Called with the solver time t; advances the display in its unit (t / scale)."""

    def __init__(self, bar):
        self.bar, self.last = bar, 0.0
        self.scale = getattr(bar, "scale", 1.0) or 1.0

    def __call__(self, t):
        if self.bar is not None and t > self.last:
            self.bar.update((t - self.last) / self.scale)
            self.last = t

    def close(self):
        if self.bar is not None:
            self.bar.close()


SOLVERS = ("auto", "RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA")
IMPLICIT_MAX_STATE = 2000  # auto: dense finite-difference Jacobians up to this state size
_STIFF_NFEV = 4000  # auto: after this many evaluations, ...
_STIFF_PROJECTED = 2e4  # ... switch when the explicit method projects more than this many


class TooSlow(ValueError):
    """A run projected to exceed its time budget (``simulate(..., max_time=)``)."""


class Diverged(FloatingPointError):
    """The integrated flow left every finite scale (blow-up); carries the time ``t``."""

    def __init__(self, message, t):
        super().__init__(message)
        self.t = t


def _solver_class(name):
    import scipy.integrate as si

    return getattr(si, name)


class _Events:
    """First crossings of event functions, located on the solver's dense output.

    ``specs``: list of (name, g, direction, after) with g(y) a scalar, direction -1 for a
    downward and +1 for an upward crossing of 0, and ``after`` the name of an event that
    must have happened first (or None).  Crossings are bracketed between steps and
    refined by Brent's method on the interpolant (to 1e-10 of the step)."""

    def __init__(self, specs):
        self.specs = specs
        self.times = {name: None for name, *_ in specs}
        self.prev = None

    def check(self, t0, y0, t1, y1, dense):
        from scipy.optimize import brentq

        g0 = [g(y0) for _, g, _, _ in self.specs] if self.prev is None else self.prev
        g1 = [g(y1) for _, g, _, _ in self.specs]
        for k, (name, g, direction, after) in enumerate(self.specs):
            if self.times[name] is not None or (after and self.times[after] is None):
                continue
            a, b = g0[k], g1[k]
            if np.isfinite(a) and np.isfinite(b) and (a > 0 >= b if direction < 0 else
                                                       a < 0 <= b):
                lo = max(t0, self.times[after]) if after else t0
                try:
                    self.times[name] = float(brentq(lambda s: g(dense(s)), lo, t1,
                                                    xtol=1e-10 * max(t1 - t0, 1e-300)))
                except ValueError:
                    self.times[name] = float(t1)
        self.prev = g1


def _integrate(rhs, y0, t, solver, rtol, atol, tick, diverged_hint, scale, events=None,
               max_time=None):
    """Integrate ``y' = rhs(s, y)`` from 0 and return ``(Y (n_state, n_t), stats)``.

    ``solver="auto"``: DOP853 (explicit, 8th order) while the problem is not stiff; when,
    after ``_STIFF_NFEV`` evaluations, the current step size projects more than
    max(``_STIFF_PROJECTED``, 50 n) further evaluations to the horizon (n the state size;
    the signature of stiffness:
    the step is limited by stability, not accuracy), the run continues from the current
    state with LSODA (ODEPACK; BDF with a finite-difference Jacobian), provided the
    state has at most ``IMPLICIT_MAX_STATE`` entries.  ``stats["solver"]`` names what
    ran (e.g. ``"DOP853 -> LSODA at t=12.5"``), with nfev / njev / nlu summed.

    The last entry of the state is the running integral phi.  A non-finite right-hand
    side, or a state entry (phi excluded) 1e10 times larger than ``scale``, raises
    :class:`Diverged` ("diverged near t = ..." plus ``diverged_hint``): a gradient flow
    of the population risk stays in a sublevel set, so only a drift that is not a
    gradient (online SGD) can get there.
    """
    y0 = np.asarray(y0, dtype=float)
    stats = {"solver": solver, "nfev": 0, "njev": 0, "nlu": 0}
    if t[-1] == 0:  # only the initial time requested
        return y0[:, None].copy(), stats
    limit = 1e10 * max(scale, 1e-300)

    def diverged(s):
        return Diverged(f"the flow diverged near t = {s:.6g}{diverged_hint}", s)

    def f(s, y):
        tick(s)
        with np.errstate(over="ignore", invalid="ignore"):
            out = rhs(s, y)
        if not np.all(np.isfinite(out)):
            raise diverged(s)
        return out

    out = np.empty((y0.size, t.size))
    out[:, t == 0] = y0[:, None]
    names = ["DOP853" if solver == "auto" else solver]
    s0, y, k = 0.0, y0, int(np.searchsorted(t, 0.0, side="right"))
    prev_y = y0.copy()

    started = time.perf_counter()
    while True:
        method = names[-1]
        st = _solver_class(method)(f, s0, y, float(t[-1]), rtol=rtol, atol=atol)
        switch = solver == "auto" and method == "DOP853" and y0.size <= IMPLICIT_MAX_STATE
        while st.status == "running":
            t_old = st.t
            msg = st.step()
            if np.max(np.abs(st.y[:-1])) > limit:  # the last entry, phi, grows with t
                raise diverged(st.t)
            if st.status == "failed":
                raise RuntimeError(f"{method} failed near t = {st.t:.6g}: {msg}")
            j = int(np.searchsorted(t, st.t, side="right"))
            dense = None
            if j > k:
                dense = st.dense_output()
                out[:, k:j] = dense(t[k:j]).reshape(y0.size, j - k)
                k = j
            if events is not None and st.t > t_old:
                events.check(t_old, prev_y, st.t, st.y, dense or st.dense_output())
            prev_y = st.y.copy()
            if max_time is not None and st.t < t[-1]:
                spent = time.perf_counter() - started
                projected = spent * t[-1] / max(st.t, 1e-300)
                # judged once a tenth of the budget is spent: earlier, the adaptive step
                # is still ramping up and a linear projection overestimates (a relu
                # online-SGD run of 9 s was projected at 1530 s after 2 s)
                if spent > 0.1 * max_time and projected > max_time:
                    raise TooSlow(
                        f"this run would take about {projected:.3g} s ({spent:.3g} s for "
                        f"{100 * st.t / t[-1]:.2g}% of the horizon, {st.nfev} evaluations "
                        f"so far with {method}: the ODE is stiff or large here), over the "
                        f"budget of {max_time:g} s; use a shorter horizon or smaller "
                        "widths, or raise the budget (max_time)")
            if switch and st.nfev > _STIFF_NFEV and st.t < t[-1]:
                h = st.t - t_old
                # the implicit method costs ~n evaluations per Jacobian: worth it once the
                # explicit one projects more than max(2e4, 50 n) further evaluations
                if h > 0 and 12.0 * (t[-1] - st.t) / h > max(_STIFF_PROJECTED,
                                                            50.0 * y0.size):
                    break
        for key in ("nfev", "njev", "nlu"):
            stats[key] += int(getattr(st, key, 0) or 0)
        if st.status != "running":
            break
        s0, y = st.t, st.y.copy()
        names.append("LSODA")
        stats["switch_t"] = float(s0)
    stats["solver"] = names[0] if len(names) == 1 else \
        f"{names[0]} -> {names[1]} at t={stats['switch_t']:.6g}"
    return out, stats


def default_atol(rtol, blocks):
    """Absolute tolerances scaled to the state, one value per entry.

    ``blocks``: list of ``(size, scale)``; entries of a block get ``1e-3 * rtol * scale``
    (``scale`` is the magnitude below which the block's relative accuracy does not
    matter, e.g. min(|Q(0)|, |P|) for Q: a start of scale 1e-60 is resolved, regression
    of issue 17 item 3).  Scales of 0 fall back to 1e-300.
    """
    return np.concatenate([np.full(n, 1e-3 * rtol * max(float(sc), 1e-300)) for n, sc in blocks])


def _amax(A):
    return float(np.max(np.abs(A))) if np.size(A) else 0.0


def _run_symmetric(W0, Ws, times, model, rtol, meta, lr):
    """The exact four-scalar reduction on the symmetric ansatz (``SymmetricAnsatz``)."""
    from symflow.numerics.fixedpoints import SymmetricAnsatz

    if model is None:
        raise ValueError('method="symmetric" needs a model (e.g. the erf committee machine)')
    if lr is not None:
        raise ValueError('method="symmetric" integrates the gradient flow (lr is not '
                         'supported)')
    Q0, M0, P = W0.T @ W0, W0.T @ Ws, Ws.T @ Ws
    ans = SymmetricAnsatz(model, P)
    K = ans.K
    off = ~np.eye(K, dtype=bool)
    v = (Q0[0, 0], Q0[0, 1] if K > 1 else 0.0, M0[0, 0], M0[0, 1] if K > 1 else 0.0)
    Qa, Ma = ans.full(*v)
    scale = max(_amax(Q0), _amax(P))
    if np.max(np.abs(Qa - Q0)) > 1e-10 * scale or np.max(np.abs(Ma - M0)) > 1e-10 * scale:
        raise ValueError('method="symmetric" needs a start on the symmetric ansatz: equal '
                         'diagonal and equal off-diagonal entries of Q and of M')
    del off
    r = ans.simulate(v, times, rtol=rtol, atol=1e-3 * rtol * scale)
    E, J = np.eye(K), np.ones((K, K))
    Q = (r["q"] - r["c"])[:, None, None] * E + r["c"][:, None, None] * J
    M = (r["r"] - r["s"])[:, None, None] * E + r["s"][:, None, None] * J
    _, chi, dist = observables(Q, M, P, model.kernels)
    meta.update(solver="LSODA", nfev=int(r["nfev"]), state_size=5,
                full_state_size=K * K + K * K + 1)
    d = W0.shape[0]
    return Trajectory(t=times, gamma=times / d, risk=r["risk"], phi=r["phi"], chi=chi,
                      dist=dist, Q=Q, M=M, meta=meta)


def _spread(M):
    """max_n (max_i |M_in| - min_i |M_in|): how far the students have specialised."""
    A = np.abs(M)
    return float(np.max(np.max(A, axis=0) - np.min(A, axis=0)))


def _event_specs(events, risk_of, flow_of, grad_of, M_of):
    """Event functions on the state for :class:`_Events` (see ``Trajectory.events``)."""
    if not events:
        return None
    specs = []
    for key, val in events.items():
        val = finite_float(val, f"events[{key!r}]", lo=0, lo_open=True)
        if key == "risk":
            specs.append(("risk", lambda y, v=val: risk_of(y) - v, -1, None))
        elif key == "specialisation":
            specs.append(("specialisation", lambda y, v=val: _spread(M_of(y)) - v, 1, None))
        elif key == "plateau_rate":
            def rate(y, v=val):
                G, D = grad_of(y), flow_of(y)
                dL = sum(float(np.sum(g * dd)) for g, dd in zip(G, D))
                return -dL / max(risk_of(y), 1e-300) - v
            specs += [("plateau_entry", rate, -1, None), ("plateau_exit", rate, 1,
                                                           "plateau_entry")]
        else:
            raise ValueError(f"events keys must be 'risk', 'specialisation' or "
                             f"'plateau_rate', got {key!r}")
    return _Events(specs)


def _run_overlaps(W0, Ws, t, solver, rtol, atol, tick, flow=_gen.overlap_flow, hint="",
                  second=None, events=None, kern=_gen, max_time=None):
    """Overlap ODE; ``second``: (a0, da(Q, M, a), dL/da(Q, M, a)) for a trained second
    layer (the flow then takes a as an argument: flow(Q, M, P, a))."""
    m, ms = W0.shape[1], Ws.shape[1]
    Q0, M0, P = W0.T @ W0, W0.T @ Ws, Ws.T @ Ws
    trP = np.trace(P)
    nq, nm = m * m, m * ms
    na = 0 if second is None else m
    if atol is None:
        q, pp = _amax(Q0), _amax(P)
        blocks = [(nq, min(q, pp)), (nm, np.sqrt(q * pp))]
        if na:
            blocks.append((na, max(_amax(second[0]), 1e-300)))
        atol = default_atol(rtol, blocks + [(1, np.trace(Q0) + trP)])

    def unpack(y):
        Q = y[:nq].reshape(m, m)
        return 0.5 * (Q + Q.T), y[nq:nq + nm].reshape(m, ms), y[nq + nm:nq + nm + na]

    def rhs(_s, y):
        Q, M, a = unpack(y)
        if second is None:
            dQ, dM = flow(Q, M, P)
            return np.concatenate([dQ.ravel(), dM.ravel(), [np.trace(Q) - trP]])
        dQ, dM = flow(Q, M, P, a)
        return np.concatenate([dQ.ravel(), dM.ravel(), second[1](Q, M, a),
                               [np.trace(Q) - trP]])

    ev = None
    if events:
        def risk_of(y):
            Q, M, a = unpack(y)
            return float(kern.risk_from_overlaps(Q, M, P, *_a_args(kern, a)))

        def grad_of(y):
            Q, M, a = unpack(y)
            G = kern.overlap_grad(Q, M, P, *_a_args(kern, a))
            return G if second is None else (*G, second[2](Q, M, a))

        def flow_of(y):
            r = rhs(0.0, y)
            parts = [r[:nq].reshape(m, m), r[nq:nq + nm].reshape(m, ms)]
            return parts if second is None else parts + [r[nq + nm:nq + nm + na]]

        ev = _event_specs(events, risk_of, flow_of, grad_of, lambda y: unpack(y)[1])
    a0 = [] if second is None else list(second[0])
    y0 = np.concatenate([Q0.ravel(), M0.ravel(), a0, [0.0]])
    Y, stats = _integrate(rhs, y0, t, solver, rtol, atol, tick, hint,
                          scale=max(_amax(Q0), _amax(P), abs(np.trace(Q0) - trP)), events=ev,
                          max_time=max_time)
    Y = Y.T
    Q = Y[:, :nq].reshape(-1, m, m)
    Q = 0.5 * (Q + np.swapaxes(Q, -1, -2))
    M = Y[:, nq:nq + nm].reshape(-1, m, ms)
    a = Y[:, nq + nm:nq + nm + na] if na else None
    return Q, M, Y[:, -1], None, stats, atol, a, (ev.times if ev else {})


def _a_args(kern, a):
    """Second-layer arguments of a raw (unbound) kernel when a is trained."""
    return () if a is None or len(a) == 0 else (a, kern.a_star)


def _run_weights(W0, Ws, t, solver, rtol, atol, tick, kern=_gen, hint="", second=None,
                 events=None, max_time=None):
    d, m = W0.shape
    n = d * m
    na = 0 if second is None else m
    sq = np.sum(Ws * Ws)
    if atol is None:
        blocks = [(n, min(_amax(W0), _amax(Ws)))]
        if na:
            blocks.append((na, max(_amax(second[0]), 1e-300)))
        atol = default_atol(rtol, blocks + [(1, np.sum(W0 * W0) + sq)])

    def rhs(_s, y):
        W = y[:n].reshape(d, m)
        if second is None:
            g = kern.weight_grad(W, Ws)
            return np.concatenate([-g.ravel(), [np.sum(W * W) - sq]])
        a = y[n:n + na]
        g = kern.weight_grad_a(W, Ws, a)
        return np.concatenate([-g.ravel(), second[1](W.T @ W, W.T @ Ws, a),
                               [np.sum(W * W) - sq]])

    ev = None
    if events:
        P = Ws.T @ Ws

        def over(y):
            W = y[:n].reshape(d, m)
            return W.T @ W, W.T @ Ws, (y[n:n + na] if na else None)

        def risk_of(y):
            Q, M, a = over(y)
            return float(kern.risk_from_overlaps(Q, M, P, *_a_args(kern, a)))

        def grad_of(y):
            Q, M, a = over(y)
            G = kern.overlap_grad(Q, M, P, *_a_args(kern, a))
            return G if second is None else (*G, second[2](Q, M, a))

        def flow_of(y):
            W = y[:n].reshape(d, m)
            r = rhs(0.0, y)
            dW = r[:n].reshape(d, m)
            parts = [W.T @ dW + dW.T @ W, dW.T @ Ws]
            return parts if second is None else parts + [r[n:n + na]]

        ev = _event_specs(events, risk_of, flow_of, grad_of, lambda y: over(y)[1])
    a0 = [] if second is None else list(second[0])
    Y, stats = _integrate(rhs, np.concatenate([W0.ravel(), a0, [0.0]]), t, solver, rtol, atol,
                          tick, hint, scale=max(_amax(W0), _amax(Ws), abs(np.sum(W0 * W0) - sq)),
                          events=ev, max_time=max_time)
    Wt = Y[:n].T.reshape(-1, d, m)
    WtT = np.swapaxes(Wt, -1, -2)
    a = Y[n:n + na].T if na else None
    return WtT @ Wt, WtT @ Ws, Y[-1], Wt, stats, atol, a, (ev.times if ev else {})


def _run_gd(W0, Ws, t, eta, tick, kern=_gen, max_time=None):
    if t[-1] / eta > 1e10:
        raise ValueError(f"t / eta = {t[-1] / eta:.3g} steps of gradient descent: too many "
                         "(at most 1e10); use a larger eta or a gradient-flow method")
    steps = np.rint(t / eta).astype(np.int64)
    if np.any(np.diff(steps) <= 0) or np.any((t > 0) & (steps == 0)):
        raise ValueError(f"eta={eta} is too coarse for the requested times: after rounding "
                         "t to multiples of eta they are no longer distinct and positive; use a "
                         "smaller eta or fewer output times")
    W = W0.copy()
    sq = np.sum(Ws * Ws)
    P = Ws.T @ Ws
    Qs, Ms, Wts, phis = [], [], [], []
    phi, k = 0.0, 0
    started = time.perf_counter()

    def diverged():
        return FloatingPointError(f"gradient descent diverged by step {k} (t = {k * eta:g}): "
                                  f"eta={eta} is too large for this instance")

    with np.errstate(over="ignore", invalid="ignore"):
        for target in steps:
            while k < target:
                Q = W.T @ W
                G_Q, G_M = kern.overlap_grad(Q, W.T @ Ws, P)
                phi += eta * (np.trace(Q) - sq)
                W = W - eta * (W @ (G_Q + G_Q.T) + Ws @ G_M.T)
                k += 1
                if k % 16 == 0:
                    if not np.isfinite(phi):
                        raise diverged()
                    if k % 256 == 0:
                        tick(k * eta)
                        if max_time is not None:  # steps cost the same: a fair projection
                            spent = time.perf_counter() - started
                            projected = spent * steps[-1] / k
                            if spent > min(1.0, 0.1 * max_time) and projected > max_time:
                                raise TooSlow(
                                    f"this run would take about {projected:.3g} s "
                                    f"({steps[-1]:.3g} steps of gradient descent), over the "
                                    f"budget of {max_time:g} s; use a larger eta, a shorter "
                                    "horizon or a gradient-flow method, or raise the budget "
                                    "(max_time)")
            Q = W.T @ W
            if not (np.all(np.isfinite(Q)) and np.isfinite(phi)
                    and np.all(np.isfinite(Q * Q))):
                raise diverged()
            Qs.append(Q)
            Ms.append(W.T @ Ws)
            Wts.append(W)
            phis.append(phi)
    return np.array(Qs), np.array(Ms), np.array(phis), np.array(Wts), steps




def _tolerances(rtol, atol, solver, exact):
    """Validated (rtol, atol); ValueError for an unknown solver.  atol None stays None
    (state-scaled) except for the exact reduction (rtol * 1e-3 on its internal state)."""
    if solver is not None and solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    rtol = finite_float(rtol, "rtol", lo=0, lo_open=True, hi=0.1)
    if atol is not None:
        return rtol, finite_float(atol, "atol", lo=0, lo_open=True)
    return rtol, rtol * 1e-3 if exact else None


def _meta(d, m, ms, method, rtol, atol, solver, seed, eta=None, model=None, lr=None):
    from symflow import __version__

    return dict(d=d, m=m, m_star=ms, method=method, rtol=rtol, atol=atol, solver=solver,
                eta=eta, seed=seed, version=__version__,
                model=repr(model) if model is not None else "quadratic (paper)", lr=lr)


def _exact_meta(r):
    """Solver statistics and input diagnostics of an exact_flow result, for ``meta``."""
    return dict(solver=r["solver"], nfev=r["nfev"], njev=r["njev"], nlu=r["nlu"],
                exact_path=r["path"], orthonormality=r["orthonormality"],
                reorthonormalised=r["reorthonormalised"])


@single_threaded_blas
def simulate(W0, W_star, t=None, *, gamma=None, method="overlaps", rtol=1e-10, atol=None,
             eta=None, solver="auto", seed=None, progress=False, dps=None, model=None,
             lr=None, events=None, max_time=600.0):
    """Simulate the gradient flow of the population risk from ``W0``.

    Parameters
    ----------
    W0 : array, shape (d, m)
        Initial student weights (columns carry 1/sqrt(m)).
    W_star : array, shape (d, m_star)
        Teacher weights.
    t : array-like, shape (n,), optional
        Non-negative, strictly increasing times of the flow dW/dt = -grad_W L.
    gamma : array-like, shape (n,), optional
        The same in units of gamma = t / d (give exactly one of ``t``, ``gamma``).
    method : {"overlaps", "weights", "exact", "gd"}
        ``"overlaps"``: integrate the overlap ODE of MATH.md section 4 (cost independent
        of d); ``"weights"``: integrate dW/dt in R^{d x m} (reference path);
        ``"exact"``: Riccati reduction of MATH.md section 5 (any start and teacher: two
        scalars for orthonormal ones, ``rank W* + 1`` otherwise; see
        :func:`symflow.numerics.exact.exact_flow`); ``"gd"``: explicit gradient descent with
        step ``eta`` (t = eta * steps; times are rounded to the nearest step);
        ``"symmetric"``: the exact reduction to four scalars on the symmetric ansatz of a
        committee machine (``model`` with m = m*, P = p I, unit second layer, a start with
        equal diagonal / off-diagonal overlaps; :class:`symflow.numerics.fixedpoints.
        SymmetricAnsatz`), for large K.
    rtol : float in (0, 0.1]
        Relative tolerance of the ODE solver.
    atol : float, optional
        Absolute tolerance.  Default for "overlaps" / "weights": scaled to the state,
        ``1e-3 * rtol * scale`` per block with scale min(max|Q(0)|, max|P|) for Q,
        sqrt(max|Q(0)| max|P|) for M, min(max|W0|, max|W*|) for W, tr Q(0) + tr P for
        phi, so that a small start (e.g. W0 of scale 1e-60) is resolved rather than
        rounded to the saddle at 0; for "exact": ``1e-3 * rtol`` on its internal state.
    eta : float
        Step of ``method="gd"`` (required there, ignored elsewhere).
    solver : {"auto", "DOP853", "LSODA", "BDF", "Radau", "RK45", "RK23"}
        ODE method.  "auto" (default): for "overlaps" / "weights" DOP853, switching to
        LSODA (implicit, finite-difference Jacobian) when the run turns stiff, for states
        of at most ``IMPLICIT_MAX_STATE`` entries (e.g. gamma = 1e4 at d = 6 takes about
        a second instead of two minutes); for "exact" LSODA (orthonormal start and
        teacher) or BDF (general), with the analytic Jacobian.  ``meta["solver"]`` names
        what ran.
    seed : int, optional
        Recorded in ``meta`` (the caller's seed of W0 / W_star), not used otherwise.
    progress : bool
        Show a tqdm progress bar when the run takes more than a second.
    dps : int, optional
        High precision (mpmath) for ``method="overlaps"`` or ``"exact"``; see
        :func:`symflow.numerics.precision.simulate_mp`.
    model : symflow.Model, optional
        A general model (activations, weights, noise, weight decay); default: the
        paper's quadratic model.  Methods "overlaps", "weights", "gd".
    lr : float, optional
        Online-SGD limit with step lr/d (``Model.sgd_flow``), ``method="overlaps"``
        only; t is then (samples seen) / d.
    max_time : float or None
        Time budget in seconds (methods "overlaps", "weights", "gd"; not for "exact",
        whose cost does not grow with the horizon, nor for ``dps=``): once a tenth of
        the budget has passed (gd: a second), a run whose projected duration exceeds it
        stops with a :class:`TooSlow` error giving the estimate.  Default 600 s, so
        that no call runs for hours unannounced (e.g. online SGD far above the critical
        learning rate); ``None`` or ``inf``: no budget.
    events : dict, optional
        Event detection (methods "overlaps", "weights"): ``{"risk": level,
        "specialisation": threshold, "plateau_rate": rate}`` (any subset); the first
        crossing times are located on the solver's dense output and returned in
        ``Trajectory.events`` (see there).

    Returns
    -------
    Trajectory
        Arrays aligned with the requested times.

    Raises
    ------
    ValueError
        Bad shapes, non-finite weights, bad times, unknown method or solver, missing
        ``eta``.
    Diverged (a FloatingPointError)
        The flow blew up (e.g. online SGD with too large a learning rate); the message
        gives the time, and nothing is returned.
    RuntimeError
        The ODE solver failed.

    Notes
    -----
    Risk and dist of the paper's model come from the weights for methods "weights" and
    "gd" (:func:`symflow.numerics.kernels.weights_risk_dist`, relative accuracy) and
    from the exact reduction's per-direction terms for "exact"; from overlaps (method
    "overlaps", general models) they have an absolute floor of ~1e-16 ||P||_F^2 (risk)
    and ~1e-8 ||P||_F (dist).

    Source: MATH.md sections 3-5.
    """
    raw = (W0, W_star)  # method="exact" reads the input dtype (orthonormality tolerance)
    W0, W_star = _pair(W0, W_star)
    d, m = W0.shape
    ms = W_star.shape[1]
    if (t is None) == (gamma is None):
        raise ValueError("give exactly one of t (time) or gamma (= t / d)")
    times = time_grid(t, "t") if t is not None else d * time_grid(gamma, "gamma")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if times[-1] > 1e6 * d:
        raise ValueError(f"horizon gamma = t/d = {times[-1] / d:.3g} is too long (at most 1e6)")
    rtol, atol = _tolerances(rtol, atol, solver, exact=method == "exact")
    if model is not None and not hasattr(model, "kernels"):
        raise TypeError(f"model must be a symflow.Model, got {type(model).__name__}")
    if method == "gd":
        if eta is None:
            raise ValueError('method="gd" needs the step eta (e.g. eta=1e-2)')
        eta = finite_float(eta, "eta", lo=0, lo_open=True)
    kern = _gen if model is None else model.kernels
    if model is not None and (W0.shape[1] != model.m or W_star.shape[1] != model.m_star):
        raise ValueError(f"W0 must have m = {model.m} columns and W_star m_star = "
                         f"{model.m_star} for this model, got {W0.shape} and {W_star.shape}")
    if (model is not None or lr is not None) and (method == "exact" or dps is not None):
        raise ValueError('method="exact" and dps= are only for the paper\'s gradient flow; '
                         'use method="overlaps" with model= or lr=')
    if max_time is not None and not (isinstance(max_time, (int, float))
                                     and max_time == float("inf")):
        max_time = finite_float(max_time, "max_time", lo=0, lo_open=True)
    else:
        max_time = None  # (inf: no budget)
    if events is not None:
        if not isinstance(events, dict):
            raise TypeError(f"events must be a dict such as {{'risk': 1e-3}}, got "
                            f"{type(events).__name__}")
        if events and method not in ("overlaps", "weights"):
            raise ValueError(f'events need method="overlaps" or "weights" (located on the '
                             f'solver\'s dense output), got {method!r}')
    if lr is not None:
        lr = finite_float(lr, "lr", lo=0, lo_open=True)
        if method != "overlaps":
            raise ValueError(f'lr (online SGD limit) needs method="overlaps", got {method!r}')
    if dps is not None:
        from symflow.numerics.precision import simulate_mp

        if events:
            raise ValueError("events are located on the double-precision solvers' dense "
                             "output; drop events or dps")

        return simulate_mp(*raw, times, method=method, dps=dps, seed=seed)
    if method == "exact" and solver == "auto":
        solver = None  # exact_flow's default for its path
    meta = _meta(d, m, ms, method, rtol, atol, solver, seed, eta=eta, model=model, lr=lr)
    hint = ""
    if lr is None:
        flow = kern.overlap_flow
    else:
        hint = f" (gamma = {{:.6g}}): lr = {lr:g} is too large for online SGD here; use a " \
               "smaller lr"

        def flow(Q, M, P):
            dQ, dM = kern.overlap_flow(Q, M, P)
            return lr * dQ + lr * lr * kern.sgd_term(Q, M, P), lr * dM
    if method == "symmetric":
        return _run_symmetric(W0, W_star, times, model, rtol, meta, lr)
    second = None
    if model is not None and getattr(model, "train_second_layer", False):
        if method not in ("overlaps", "weights"):
            raise ValueError('a trained second layer needs method="overlaps" or "weights"')
        raw, a_star, ratio = model.raw, model.a_star, model.second_layer_lr
        step = 1.0 if lr is None else lr
        kern = types.SimpleNamespace(
            risk_from_overlaps=raw.risk_from_overlaps, overlap_grad=raw.overlap_grad,
            a_star=a_star, weight_grad_a=lambda W, Ws, a: raw.weight_grad(W, Ws, a, a_star))

        def da(Q, M, a):
            return -ratio * step * model._dl_da(Q, M, Ws_P, a)

        Ws_P = W_star.T @ W_star
        second = (model.a.copy(), da, lambda Q, M, a: model._dl_da(Q, M, Ws_P, a))
        if lr is None:
            def flow(Q, M, P, a):
                return raw.overlap_flow(Q, M, P, a, a_star)
        else:
            def flow(Q, M, P, a):
                dQ, dM = raw.overlap_flow(Q, M, P, a, a_star)
                return lr * dQ + lr * lr * raw.sgd_term(Q, M, P, a, a_star), lr * dM
        meta.update(train_second_layer=True, second_layer_lr=ratio)
    tick = _Tick(_progress(times[-1], progress, d if gamma is not None else None))
    Wt = a_t = None
    ev_times = {}
    try:
        if method == "exact":
            from symflow.numerics.exact import exact_flow

            r = exact_flow(*raw, times, rtol=rtol, atol=atol, solver=solver)
            meta.update(_exact_meta(r))
            return Trajectory(t=times, gamma=times / d, risk=r["risk"], phi=r["phi"],
                              chi=r["chi"], dist=r["dist"], meta=meta)
        if method in ("overlaps", "weights"):
            try:
                if method == "overlaps":
                    out = _run_overlaps(W0, W_star, times, solver, rtol, atol, tick, flow,
                                        hint, second=second, events=events, kern=kern,
                                        max_time=max_time)
                else:
                    out = _run_weights(W0, W_star, times, solver, rtol, atol, tick, kern,
                                       hint, second=second, events=events,
                                       max_time=max_time)
                Q, M, phi, Wt, stats, atol_used, a_t, ev_times = out
            except Diverged as exc:
                raise Diverged(str(exc).format(exc.t / d), exc.t) from None
            meta.update(stats)
            if atol is None:
                meta["atol"] = "state-scaled: min {:.3g}, max {:.3g}".format(
                    float(np.min(atol_used)), float(np.max(atol_used)))
        else:
            Q, M, phi, Wt, steps = _run_gd(W0, W_star, times, eta, tick, kern, max_time)
            times = steps * eta
            meta.update(steps=int(steps[-1]), nfev=int(steps[-1]), solver="gradient descent")
    finally:
        tick.close()
    P = W_star.T @ W_star
    if a_t is not None:
        risk, chi, dist = observables(Q, M, P, types.SimpleNamespace(
            risk_from_overlaps=lambda Q, M, P: kern.risk_from_overlaps(Q, M, P, a_t,
                                                                       kern.a_star)))
    else:
        risk, chi, dist = observables(Q, M, P, kern)
    if Wt is not None and model is None:  # no cancellation: risk and dist from Z - Z*
        risk, dist = weights_risk_dist(Wt, W_star)
    return Trajectory(t=times, gamma=times / d, risk=risk, phi=phi, chi=chi, dist=dist, Q=Q,
                      M=M, meta=meta, a=a_t, events=ev_times)




@single_threaded_blas
def simulate_batch(W0, W_star, t=None, *, gamma=None, method="exact", rtol=1e-10, atol=None,
                   solver="auto", seeds=None):
    """Simulate many independent instances, e.g. the repetitions x dimensions of a figure.

    With ``method="exact"`` all orthonormal instances are integrated as one vectorised
    system (2 scalars each, block-diagonal Jacobian; spectra of unequal size are
    padded and masked), general ones one by one (see
    :func:`symflow.numerics.exact.exact_flow_batch`); other methods call
    :func:`simulate` once per instance.

    Parameters
    ----------
    W0 : sequence of n arrays (d_i, m_i), or array (n, d, m)
        Starts; dimensions and widths may differ between instances.
    W_star : array (d, m*), or sequence of n arrays (d_i, m*_i)
        One teacher shared by all starts (then all d_i = d), or one per start.
    t : array-like, shape (T,), optional
        Common times of the flow for every instance.
    gamma : array-like, shape (T,), optional
        Common grid in ``gamma = t / d``: instance ``i`` is run to ``t = d_i * gamma``
        (give exactly one of ``t``, ``gamma``).
    method : {"exact", "overlaps", "weights"}
        See :func:`simulate`.
    rtol, atol : float
        Per-instance tolerances (as in :func:`simulate`; for a joint exact solve with a
        solver whose error norm is the RMS over all components -- BDF, Radau -- they are
        divided by ``sqrt(n)`` internally).
    solver : str
        ``solve_ivp`` method or "auto" (default): "BDF" for a joint exact solve of several
        instances and for general ones, "LSODA" for a single orthonormal one, and the
        automatic choice of :func:`simulate` for the other methods.
    seeds : sequence of n ints, optional
        Recorded in the ``meta`` of each trajectory.

    Returns
    -------
    list of n Trajectory
        In the order of ``W0``; ``meta["batch"]`` is n and, for the joint exact solve,
        the solver statistics are those of the joint system.

    Raises
    ------
    ValueError
        Empty batch, ``W_star`` count not matching, both or neither of ``t``/``gamma``,
        bad times, unknown method, a horizon beyond ``1e6 d``, ``seeds`` of the wrong
        length; and every error of :func:`simulate`.
    TypeError
        Non-numeric weights.
    RuntimeError
        The ODE solver failed.

    Source: MATH.md sections 3-5.
    """
    from symflow.numerics.exact import exact_flow_batch

    if method not in ("exact", "overlaps", "weights"):
        raise ValueError(f'method must be "exact", "overlaps" or "weights" for a batch, got '
                         f"{method!r}")
    if isinstance(W0, np.ndarray) and W0.ndim != 3:
        raise ValueError(f"W0 must be a sequence of (d, m) arrays or an (n, d, m) array, got "
                         f"shape {W0.shape}")
    starts = list(W0)
    n = len(starts)
    if n == 0:
        raise ValueError("W0 must hold at least one start")
    teachers = ([W_star] * n if isinstance(W_star, np.ndarray) and W_star.ndim == 2
                else list(W_star))
    if len(teachers) != n:
        raise ValueError(f"W_star must be one (d, m*) array or {n} of them (one per start), "
                         f"got {len(teachers)}")
    seeds = [None] * n if seeds is None else list(seeds)
    if len(seeds) != n:
        raise ValueError(f"seeds must hold {n} values (one per start), got {len(seeds)}")
    if (t is None) == (gamma is None):
        raise ValueError("give exactly one of t (time) or gamma (= t / d)")
    pairs = [_pair(a, b) for a, b in zip(starts, teachers)]
    ds = np.array([a.shape[0] for a, _ in pairs], dtype=float)
    x = time_grid(t, "t") if t is not None else time_grid(gamma, "gamma")
    scale = np.ones(n) if t is not None else ds
    if np.any(x[-1] * scale > 1e6 * ds):
        raise ValueError(f"horizon gamma = t/d up to {np.max(x[-1] * scale / ds):.3g} is too "
                         "long (at most 1e6)")
    if method != "exact":
        kw = dict(t=x) if t is not None else dict(gamma=x)
        out = [simulate(a, b, method=method, rtol=rtol, atol=atol, solver=solver, seed=sd,
                        **kw) for a, b, sd in zip(starts, teachers, seeds)]
        for tr in out:
            tr.meta["batch"] = n
        return out
    rtol, atol = _tolerances(rtol, atol, solver, exact=True)
    res = exact_flow_batch(starts, teachers, x, scale=scale, rtol=rtol, atol=atol,
                           solver=None if solver == "auto" else solver)
    out = []
    for (a, b), r, sd, d in zip(pairs, res, seeds, ds):
        meta = dict(_meta(a.shape[0], a.shape[1], b.shape[1], "exact", rtol, atol, None, sd),
                    batch=n, **_exact_meta(r))
        out.append(Trajectory(t=r["t"], gamma=r["t"] / d, risk=r["risk"], phi=r["phi"],
                              chi=r["chi"], dist=r["dist"], meta=meta))
    return out
