"""Direct Monte Carlo estimates of the population risk and its gradient.

Samples x ~ N(0, I_d) and averages the per-sample loss 1/4 (f_W(x) - f*(x))^2 and its
gradient; independent of the symbolic derivation (used as the reference in tests).
Work is chunked so that memory stays below about 256 MB for any ``n_samples``.

Source: MATH.md sections 1-3.
"""

from __future__ import annotations

import numpy as np

from symflow._validate import positive_int
from symflow._validate import rng as _rng
from symflow.numerics.kernels import _finite_overlaps, _pair

__all__ = ["monte_carlo_risk", "monte_carlo_risk_grad"]

_MAX_BYTES = 200 * 2**20  # all per-chunk arrays together; total stays under ~256 MB


def _chunks(n, d, m, m_star, per_sample_floats):
    per = 8 * (2 * (d + m + m_star) + per_sample_floats)
    size = max(1, min(n, _MAX_BYTES // per))
    start = 0
    while start < n:
        yield min(size, n - start)
        start += size


def _run(W, W_star, n_samples, seed, grad):
    W, W_star = _pair(W, W_star)
    _finite_overlaps(W, W_star)
    n = positive_int(n_samples, "n_samples", minimum=2)
    rng = _rng(seed)
    # the risk is homogeneous of degree 4 in (W, W*) (its gradient of degree 3): sample
    # at unit scale, so that (f - f*)^2 cannot overflow (regression: W* 1e40 gave a NaN
    # standard error), and scale back
    scale = max(float(np.max(np.abs(W))), float(np.max(np.abs(W_star))), 1e-300)
    W, W_star = W / scale, W_star / scale
    power = scale ** (3 if grad else 4)
    if not np.isfinite(power):
        raise ValueError(f"W and W_star have entries too large ({scale:.3g}): the risk "
                         "overflows double precision")
    d, m = W.shape
    shape = (d, m) if grad else ()
    s1 = np.zeros(shape)
    s2 = np.zeros(shape)
    for size in _chunks(n, d, m, W_star.shape[1], 2 * d * m if grad else 0):
        x = rng.standard_normal((size, d))
        h = x @ W                      # (size, m) local fields
        r = np.sum(h**2, axis=1) - np.sum((x @ W_star) ** 2, axis=1)  # f - f*
        if grad:
            # d/dW 1/4 (f - f*)^2 = (f - f*) x h^T  (per sample)
            g = (r[:, None, None] * x[:, :, None]) * h[:, None, :]
            s1 += g.sum(axis=0)
            s2 += (g**2).sum(axis=0)
        else:
            v = 0.25 * r**2
            s1 += v.sum()
            s2 += (v**2).sum()
    mean = s1 / n
    var = np.maximum(s2 / n - mean**2, 0.0) * n / (n - 1)
    se = np.sqrt(var / n) * power
    mean = mean * power
    if not grad:
        return float(mean), float(se)
    return mean, se


def monte_carlo_risk(W, W_star, n_samples, seed=None):
    """Monte Carlo estimate of the population risk.

    Parameters
    ----------
    W : array, shape (d, m)
    W_star : array, shape (d, m_star)
    n_samples : int >= 2
        Number of Gaussian inputs.
    seed : int, numpy Generator or None
        Seed for ``numpy.random.default_rng``.

    Returns
    -------
    estimate : float
        Sample mean of 1/4 (f_W(x) - f*(x))^2.
    stderr : float
        Its standard error (sample standard deviation / sqrt(n_samples)).

    Raises
    ------
    ValueError
        Bad shapes / non-finite weights / n_samples < 2.

    Source: MATH.md section 2 (definition of L).
    """
    return _run(W, W_star, n_samples, seed, grad=False)


def monte_carlo_risk_grad(W, W_star, n_samples, seed=None):
    """Monte Carlo estimate of grad_W L with per-entry standard errors.

    Parameters
    ----------
    W : array, shape (d, m)
    W_star : array, shape (d, m_star)
    n_samples : int >= 2
    seed : int, numpy Generator or None

    Returns
    -------
    estimate : ndarray, shape (d, m)
        Sample mean of (f - f*) x (W^T x)^T.
    stderr : ndarray, shape (d, m)
        Entry-wise standard errors.

    Raises
    ------
    ValueError
        Bad shapes / non-finite weights / n_samples < 2.

    Source: MATH.md section 3.
    """
    return _run(W, W_star, n_samples, seed, grad=True)
