"""Numpy kernels of the paper's model: overlaps, population risk, gradient, overlap flow.

Thin validated wrappers around the generated module
:mod:`symflow.generated.quadratic_numpy` (derived by :mod:`symflow.derivation.model`,
rendered by :mod:`symflow.codegen`).  Importing this module does not import sympy.

Conventions (MATH.md sections 1-4): W (d, m) with columns already carrying 1/sqrt(m),
W_star (d, m*); Z = W W^T; L = 1/4 E[(f_W - f*)^2]; Q = W^T W, M = W^T W*, P = W*^T W*.
"""

from __future__ import annotations

import numpy as np

from symflow._validate import as_matrix
from symflow.generated import quadratic_numpy as _gen

__all__ = ["overlaps", "risk_from_overlaps", "risk", "risk_grad", "overlap_grad", "overlap_flow",
           "weights_risk_dist"]


def _pair(W, W_star):
    W = as_matrix(W, "W")
    W_star = as_matrix(W_star, "W_star")
    if W.shape[0] != W_star.shape[0]:
        raise ValueError(f"W and W_star must have the same number of rows d, got W.shape={W.shape}"
                         f" and W_star.shape={W_star.shape}")
    return W, W_star


def _overlap_args(Q, M, P):
    Q = as_matrix(Q, "Q", min_ndim=2, max_ndim=64)
    M = as_matrix(M, "M", min_ndim=2, max_ndim=64)
    P = as_matrix(P, "P", min_ndim=2, max_ndim=64)
    m, ms = M.shape[-2:]
    if Q.shape[-2:] != (m, m):
        raise ValueError(f"Q must have shape (..., m, m) with m = M.shape[-2] = {m}, got {Q.shape}")
    if P.shape[-2:] != (ms, ms):
        raise ValueError(f"P must have shape (..., m_star, m_star) with m_star = M.shape[-1] = {ms}"
                         f", got {P.shape}")
    for A, name in ((Q, "Q"), (P, "P")):  # regression: a non-symmetric Q was accepted
        if A.size == 0:  # an empty batch: empty results
            continue
        asym = np.max(np.abs(A - np.swapaxes(A, -1, -2)))
        if asym > 1e-8 * max(float(np.max(np.abs(A))), 1e-300):
            raise ValueError(f"{name} must be symmetric (an overlap matrix), got "
                             f"max |{name} - {name}^T| = {asym:.3g}")
    try:
        np.broadcast_shapes(Q.shape[:-2], M.shape[:-2], P.shape[:-2])
    except ValueError as exc:
        raise ValueError(f"batch shapes of Q {Q.shape}, M {M.shape}, P {P.shape} do not "
                         "broadcast") from exc
    return Q, M, P


def _finite_overlaps(W, W_star):
    with np.errstate(over="ignore", invalid="ignore"):
        Q, M, P = W.T @ W, W.T @ W_star, W_star.T @ W_star
        ok = all(np.all(np.isfinite(A * A)) for A in (Q, M, P))
    if not ok:
        raise ValueError("W and W_star have entries too large: their overlaps (and the risk) "
                         "overflow double precision")
    return Q, M, P


def overlaps(W, W_star):
    """Overlap matrices of a student and a teacher.

    Parameters
    ----------
    W : array, shape (d, m)
        Student weights (columns carry the 1/sqrt(m) factor).
    W_star : array, shape (d, m_star)
        Teacher weights.

    Returns
    -------
    Q : ndarray (m, m)
        W^T W.
    M : ndarray (m, m_star)
        W^T W*.
    P : ndarray (m_star, m_star)
        W*^T W*.

    Raises
    ------
    ValueError
        Wrong ndim, zero-size widths, non-finite entries, or different d.

    Source: MATH.md section 2.
    """
    W, W_star = _pair(W, W_star)
    return _finite_overlaps(W, W_star)


def risk_from_overlaps(Q, M, P):
    """Population risk L(Q, M, P) = 1/2(|Q|^2 - 2|M|^2 + |P|^2) + 1/4 (tr Q - tr P)^2.

    Parameters
    ----------
    Q : array, shape (..., m, m)
    M : array, shape (..., m, m_star)
    P : array, shape (..., m_star, m_star)
        Overlaps; leading axes are batch axes and broadcast.

    Returns
    -------
    float or ndarray of shape (...)
        The population risk (generated from the derived expression).

    Raises
    ------
    ValueError
        Inconsistent shapes or non-finite entries.

    Source: MATH.md section 2.
    """
    Q, M, P = _overlap_args(Q, M, P)
    out = _gen.risk_from_overlaps(Q, M, P)
    return float(out) if np.ndim(out) == 0 else out


def overlap_grad(Q, M, P):
    """Derivatives of the risk with respect to the overlaps, G_Q = dL/dQ, G_M = dL/dM.

    Entries of Q are treated as independent variables (the gradient restricted to
    symmetric Q is (G_Q + G_Q^T)/2 per entry pair).

    Parameters
    ----------
    Q, M, P : arrays of shapes (..., m, m), (..., m, m_star), (..., m_star, m_star)

    Returns
    -------
    G_Q : ndarray (..., m, m)
    G_M : ndarray (..., m, m_star)

    Raises
    ------
    ValueError
        Inconsistent shapes or non-finite entries.

    Source: MATH.md sections 2-3 (derived by differentiation of the pair monomials).
    """
    return _gen.overlap_grad(*_overlap_args(Q, M, P))


def overlap_flow(Q, M, P):
    """Right-hand side of the gradient flow on the overlaps, (dQ/dt, dM/dt).

    Parameters
    ----------
    Q, M, P : arrays of shapes (..., m, m), (..., m, m_star), (..., m_star, m_star)

    Returns
    -------
    dQ : ndarray (..., m, m)
        -2 [2 (Q^2 - M M^T) + tau Q] for the paper's model, tau = tr Q - tr P.
    dM : ndarray (..., m, m_star)
        -[2 (Q M - M P) + tau M].
    (dP/dt = 0.)  Time unit: t (not gamma).

    Raises
    ------
    ValueError
        Inconsistent shapes or non-finite entries.

    Source: MATH.md section 4 (derived by the chain rule from the derived gradient).
    """
    return _gen.overlap_flow(*_overlap_args(Q, M, P))


def weights_risk_dist(W, W_star):
    """Risk and ``||Z - Z*||_F`` of the paper's model formed from the weights.

    From overlaps, L = 1/2 (|Q|^2 - 2 |M|^2 + |P|^2) + 1/4 (tr Q - tr P)^2 cancels large
    terms: its absolute floor is ~1e-16 ||P||_F^2 (and ~1e-8 ||P||_F for the distance).
    Here the difference A = Z - Z* is formed first, in the (m + m*)-dimensional span of
    [W, W*] (R factor of a thin QR, R = [R1, R2], A ~ R1 R1^T - R2 R2^T; directly
    W W^T - W* W*^T when m + m* >= d), and L = 1/4 [(tr A)^2 + 2 ||A||_F^2] (the
    Isserlis identity of MATH.md section 2), so the error is relative to A itself.

    Parameters
    ----------
    W : array (..., d, m)
    W_star : array (d, m_star) or (..., d, m_star)

    Returns
    -------
    risk, dist : arrays of shape ``W.shape[:-2]`` (floats for 2-D input)

    Source: MATH.md section 2.
    """
    W = np.asarray(W, dtype=float)
    Ws = np.broadcast_to(np.asarray(W_star, dtype=float), W.shape[:-2] + W_star.shape[-2:])
    d, m = W.shape[-2:]
    if m + Ws.shape[-1] < d:
        R = np.linalg.qr(np.concatenate([W, Ws], axis=-1), mode="r")
        R1, R2 = R[..., :m], R[..., m:]
        A = R1 @ np.swapaxes(R1, -1, -2) - R2 @ np.swapaxes(R2, -1, -2)
    else:
        A = W @ np.swapaxes(W, -1, -2) - Ws @ np.swapaxes(Ws, -1, -2)
    fro2 = np.sum(A * A, axis=(-2, -1))
    tr = np.trace(A, axis1=-2, axis2=-1)
    risk, dist = 0.5 * fro2 + 0.25 * tr**2, np.sqrt(fro2)
    if np.ndim(risk) == 0:
        return float(risk), float(dist)
    return risk, dist


def risk(W, W_star):
    """Population risk L(W) = 1/4 E_x[(f_W(x) - f*(x))^2], x ~ N(0, I_d).

    Parameters
    ----------
    W : array, shape (d, m)
    W_star : array, shape (d, m_star)

    Returns
    -------
    float

    Raises
    ------
    TypeError
        Non-real (e.g. complex or string) entries.
    ValueError
        Wrong ndim, zero-size widths, non-finite entries, different d, or entries so large
        that the overlaps overflow.

    Notes
    -----
    Formed from the weights (:func:`weights_risk_dist`), accurate relative to the risk
    itself; :func:`risk_from_overlaps` has an absolute floor ~1e-16 ||P||_F^2.

    Source: MATH.md section 2.
    """
    W, W_star = _pair(W, W_star)
    _finite_overlaps(W, W_star)
    return weights_risk_dist(W, W_star)[0]


def risk_grad(W, W_star):
    """Gradient of the population risk with respect to W.

    Parameters
    ----------
    W : array, shape (d, m)
    W_star : array, shape (d, m_star)

    Returns
    -------
    ndarray, shape (d, m)
        grad_W L = [2 (Z - Z*) + tau I_d] W for the paper's model.

    Raises
    ------
    ValueError
        Wrong ndim, zero-size widths, non-finite entries, or different d.

    Source: MATH.md section 3 (chain rule through Q = W^T W, M = W^T W*).
    """
    W, W_star = _pair(W, W_star)
    _finite_overlaps(W, W_star)
    return _gen.weight_grad(W, W_star)
