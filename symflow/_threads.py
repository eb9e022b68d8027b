"""Single-threaded BLAS inside the solvers (issue 14).

The solvers call BLAS/LAPACK on small matrices thousands of times per run (products of
m x m overlaps, the QR and triangular solves of the exact reduction, the block Jacobians
of the limit).  A multithreaded OpenBLAS wakes its threads on each call, and on a busy
machine they compete with the other processes: a 200 x 100 QR was measured 200x slower
than single-threaded, and the general exact path at d = 1000 (m = 500, m* = 250) took
6.2 s instead of 1.3-1.6 s (2-core machine, measured with ``threadpoolctl``).

:func:`blas_threads` limits every BLAS library loaded in the process (via
``threadpoolctl``) for the duration of a block and restores the previous limits on exit;
:func:`single_threaded_blas` decorates the public entry points (``simulate``,
``simulate_batch``, ``limit``, ``exact_flow``, ``exact_flow_batch``, and the instance
builders ``init.orthonormal`` and ``sample_overlap_spectrum``, whose QR is the issue's
example).  Nested and concurrent blocks share one limit: the first
block to enter sets it, the last to leave restores it.  Cost: about 1 ms once (the
library scan), then 20-60 us per outermost block (measured).

The environment variable ``SYMFLOW_BLAS_THREADS`` overrides the limit: an integer
``N >= 1`` uses N threads, ``0`` or ``off`` leaves BLAS untouched.  Without
``threadpoolctl`` (a declared dependency, missing only in an environment that was not
reinstalled) nothing is limited.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

__all__ = ["blas_threads", "single_threaded_blas", "ENV"]

ENV = "SYMFLOW_BLAS_THREADS"

_lock = threading.Lock()
_state = {"depth": 0, "limiter": None, "controller": None}


def _limit_from_env(default):
    raw = os.environ.get(ENV, "").strip().lower()
    if not raw:
        return default
    if raw in ("0", "off", "none"):
        return None
    try:
        n = int(raw)
    except ValueError:
        return default  # a malformed value must not break a solver: keep the default
    return n if n >= 1 else None


def _controller():
    """The process's ThreadpoolController, or False if threadpoolctl is not installed
    (a source tree used without reinstalling: the solvers then run unlimited)."""
    if _state["controller"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _state["controller"] = False
        else:
            _state["controller"] = ThreadpoolController()
    return _state["controller"]


@contextlib.contextmanager
def blas_threads(n=1):
    """Limit BLAS to ``n`` threads inside the block (process-wide, restored on exit).

    Parameters
    ----------
    n : int >= 1
        Threads per BLAS library; the environment variable ``SYMFLOW_BLAS_THREADS``
        overrides it (``0``/``off``: no limit).

    Raises
    ------
    ValueError
        ``n < 1``.
    TypeError
        ``n`` not an integer.
    """
    from symflow._validate import positive_int

    n = _limit_from_env(positive_int(n, "n"))
    with _lock:
        if _state["depth"] == 0 and n is not None and _controller():
            _state["limiter"] = _controller().limit(limits=n, user_api="blas")
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0 and _state["limiter"] is not None:
                limiter, _state["limiter"] = _state["limiter"], None
                limiter.restore_original_limits()


def single_threaded_blas(fn):
    """Decorator: run ``fn`` inside ``blas_threads(1)`` (signature and docstring kept)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with blas_threads(1):
            return fn(*args, **kwargs)
    return wrapper
