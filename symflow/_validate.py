"""Input validation shared by the public API (errors name the argument)."""

from __future__ import annotations

import numbers

import numpy as np


def as_matrix(x, name, *, min_ndim=2, max_ndim=None):
    """Return ``x`` as a finite float array with ``min_ndim <= ndim``; ValueError otherwise.

    Trailing two axes are the matrix axes, leading axes (if allowed) are batch axes.
    """
    try:
        raw = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real array, got {type(x).__name__}") from exc
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array (int or float), got dtype "
                        f"{raw.dtype}")
    arr = raw.astype(float)
    max_ndim = min_ndim if max_ndim is None else max_ndim
    if not (min_ndim <= arr.ndim <= max_ndim):
        shape = "(d, k)" if max_ndim == 2 else "(..., rows, cols)"
        raise ValueError(f"{name} must have shape {shape}, got ndim={arr.ndim} shape={arr.shape}")
    if arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ValueError(f"{name} must have nonzero dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values")
    return arr


def positive_int(x, name, minimum=1, maximum=None, why=""):
    """Return ``x`` as an int in [minimum, maximum]; TypeError/ValueError naming ``name``
    otherwise (``why`` is appended to the message of a value above ``maximum``)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {x!r}")
    if x < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {x}")
    if maximum is not None and x > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {x}{why}")
    return int(x)


#: Largest ``dps`` of the high-precision ODE paths (limit, simulate, check).  Their cost
#: grows steeply with the digits (limit to gamma = 1 measured: dps 30 0.7 s, 60 1.4 s,
#: 100 11.6 s); closed-form evaluations (``Model.risk(..., dps=)``) allow
#: :data:`MAX_DPS_CLOSED_FORM`.
MAX_DPS_ODE = 100
MAX_DPS_CLOSED_FORM = 10_000


def check_dps(dps, ode=True):
    """``dps`` as an int in [15, MAX_DPS_ODE] (``ode``) or [15, MAX_DPS_CLOSED_FORM]."""
    if ode:
        return positive_int(dps, "dps", minimum=15, maximum=MAX_DPS_ODE,
                            why=" (the integrator's cost grows steeply with the digits: "
                            "about 12 s for a limit curve to gamma = 1 at 100)")
    return positive_int(dps, "dps", minimum=15, maximum=MAX_DPS_CLOSED_FORM)


def finite_float(x, name, *, lo=None, hi=None, lo_open=False, hi_open=False):
    """Return ``x`` as a finite float within the given bounds; ValueError naming ``name``."""
    if isinstance(x, (bool, str, bytes, complex)) or np.iscomplexobj(x):
        raise TypeError(f"{name} must be a real number, got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real number, got {x!r}") from exc
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {x!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        rel = ">" if lo_open else ">="
        raise ValueError(f"{name} must be {rel} {lo}, got {v}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        rel = "<" if hi_open else "<="
        raise ValueError(f"{name} must be {rel} {hi}, got {v}")
    return v


def time_grid(t, name="t"):
    """Return a 1-D float array of finite, non-negative, strictly increasing times."""
    raw = np.atleast_1d(np.asarray(t))
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got dtype {raw.dtype}")
    arr = raw.astype(float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of times, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative, got min {arr.min()}")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name} must be strictly increasing")
    return arr


def rng(seed, name="seed"):
    """``numpy.random.default_rng(seed)`` with one error scheme for every public function.

    Accepts None, a non-negative integer, a ``numpy.random.SeedSequence`` or a
    ``numpy.random.Generator`` (returned as is).  TypeError for other types (bool, float,
    str, ...), ValueError for a negative integer; both name ``name``.
    """
    if seed is None or isinstance(seed, (np.random.Generator, np.random.SeedSequence)):
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be None, a non-negative int, a SeedSequence or a numpy "
                        f"Generator, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed}")
    return np.random.default_rng(int(seed))
