"""Initialisations of student and teacher weights (MATH.md sections 1, 5 and 8).

Weights are ``(d, k)`` arrays whose columns already carry the ``1/sqrt(k)`` factor,
so that ``Z = W W^T`` is the matrix of MATH.md section 1.  The same functions build
students (``k = m``) and teachers (``k = m*``).  Randomness comes only from
``np.random.default_rng(seed)``: the same seed gives the same bytes.
"""

from __future__ import annotations

import numpy as np

from symflow._threads import single_threaded_blas
from symflow._validate import as_matrix, positive_int
from symflow._validate import rng as _rng

__all__ = ["orthonormal", "gaussian", "degenerate", "from_overlaps"]


@single_threaded_blas
def orthonormal(d, k, seed=None):
    """Haar-distributed orthonormal columns scaled by ``1/sqrt(k)``.

    ``W = U / sqrt(k)`` with ``U^T U = I_k`` and ``U`` uniformly (Haar) distributed
    on the Stiefel manifold: QR of a standard Gaussian ``(d, k)`` matrix with the
    signs of ``diag(R)`` moved into ``Q``.  Source: MATH.md sections 5 and 8
    (orthonormal start ``W0 = U / sqrt(m)`` and teacher ``W* = U* / sqrt(m*)``).

    Parameters
    ----------
    d : int
        Input dimension, ``d >= 1``.
    k : int
        Number of columns (width ``m`` or ``m*``), ``1 <= k <= d``.
    seed : None, int or numpy.random.Generator, optional
        Passed to ``np.random.default_rng``.

    Returns
    -------
    W : ndarray, shape (d, k)
        ``W^T W = I_k / k`` up to rounding.

    Raises
    ------
    TypeError
        If ``d`` or ``k`` is not an integer, or ``seed`` is not accepted by numpy.
    ValueError
        If ``d < 1``, ``k < 1`` or ``k > d`` (no ``k`` orthonormal vectors in R^d).
    """
    d = positive_int(d, "d")
    k = positive_int(k, "k")
    if k > d:
        raise ValueError(f"k must be <= d for orthonormal columns, got k={k} > d={d}")
    g = _rng(seed).standard_normal((d, k))
    q, r = np.linalg.qr(g, mode="reduced")
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    return q * signs / np.sqrt(k)


def gaussian(d, k, seed=None, normalize=True):
    """I.i.d. Gaussian weights.

    Entries ``N(0, 1/(d k))`` (``normalize=True``, MATH.md section 8 experiment 4:
    ``E[W^T W] = I_k / k``), or ``N(0, 1/k)`` (``normalize=False``, experiment 5:
    raw neuron vectors ``N(0, I_d)`` times ``1/sqrt(k)``).

    Parameters
    ----------
    d : int
        Input dimension, ``d >= 1``.
    k : int
        Number of columns (width ``m`` or ``m*``), ``k >= 1``; ``k > d`` is allowed.
    seed : None, int or numpy.random.Generator, optional
        Passed to ``np.random.default_rng``.
    normalize : bool, default True
        Include the extra ``1/sqrt(d)`` factor.

    Returns
    -------
    W : ndarray, shape (d, k)

    Raises
    ------
    TypeError
        If ``d`` or ``k`` is not an integer, ``normalize`` is not a bool, or ``seed``
        is not accepted by numpy.
    ValueError
        If ``d < 1`` or ``k < 1``.
    """
    d = positive_int(d, "d")
    k = positive_int(k, "k")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {normalize!r}")
    scale = 1.0 / np.sqrt(d * k) if normalize else 1.0 / np.sqrt(k)
    return _rng(seed).standard_normal((d, k)) * scale


def degenerate(W, direction=0):
    """Copy of ``W`` with one input direction removed (row ``direction`` set to 0).

    A start whose span misses a direction of the teacher span keeps missing it
    under the flow (MATH.md section 7).  Compose with the constructors above, e.g.
    ``degenerate(gaussian(d, m, seed=0), direction=0)``.

    Parameters
    ----------
    W : array_like, shape (d, k)
        Weights (student or teacher).
    direction : int, default 0
        Index of the input coordinate ``e_direction`` to remove, ``0 <= direction < d``;
        negative indices count from the end as in numpy.

    Returns
    -------
    W_deg : ndarray, shape (d, k)
        A new float array; ``W`` is not modified.  ``W_deg^T e_direction = 0``.

    Raises
    ------
    TypeError
        If ``W`` is not a real array or ``direction`` is not an integer.
    ValueError
        If ``W`` is not 2-D / finite, or ``direction`` is out of range.
    """
    W = np.array(as_matrix(W, "W"), dtype=float, copy=True)
    if isinstance(direction, (bool, np.bool_)) or not isinstance(direction, (int, np.integer)):
        raise TypeError(f"direction must be an integer, got {direction!r}")
    d = W.shape[0]
    if not -d <= direction < d:
        raise ValueError(f"direction must be in [-{d}, {d}), got {direction}")
    W[direction, :] = 0.0
    return W


def from_overlaps(Q, M, P, d=None):
    """Weights with prescribed overlaps: W^T W = Q, W^T W* = M, W*^T W* = P.

    Parameters
    ----------
    Q : array (m, m), M : array (m, m_star), P : array (m_star, m_star)
        A joint Gram matrix [[Q, M], [M^T, P]] that is positive semi-definite.
    d : int, optional
        Input dimension (>= m + m_star; default m + m_star); extra rows are zero.

    Returns
    -------
    W : ndarray (d, m), W_star : ndarray (d, m_star)

    Raises
    ------
    ValueError
        Shapes, or a joint Gram matrix with a negative eigenvalue (beyond round-off).

    Notes
    -----
    W = V^T (first m columns) from the eigendecomposition G = U diag(l) U^T,
    V = diag(sqrt(l)) U^T: exact up to round-off, for singular G too.
    """
    Q, M, P = (np.asarray(A, dtype=float) for A in (Q, M, P))
    m, ms = M.shape
    if Q.shape != (m, m) or P.shape != (ms, ms):
        raise ValueError(f"Q, M, P must have shapes (m, m), (m, m*), (m*, m*), got "
                         f"{Q.shape}, {M.shape}, {P.shape}")
    G = np.block([[Q, M], [M.T, P]])
    G = 0.5 * (G + G.T)
    lam, U = np.linalg.eigh(G)
    if lam[0] < -1e-10 * max(lam[-1], 1e-300):
        raise ValueError(f"the overlaps are not a Gram matrix: eigenvalue {lam[0]:.3g} < 0")
    n = m + ms
    d = n if d is None else positive_int(d, "d")
    if d < n:
        raise ValueError(f"d must be >= m + m_star = {n}, got {d}")
    V = np.zeros((d, n))
    V[:n] = np.sqrt(np.maximum(lam, 0.0))[:, None] * U.T
    return V[:, :m].copy(), V[:, m:].copy()
