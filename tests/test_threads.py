"""BLAS is single-threaded inside the solvers and restored afterwards (issue 14)."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import symflow
from symflow import _threads
from symflow.numerics import highdim, simulators
from symflow.numerics.init import orthonormal


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture
def two_threads():
    """Run the test with BLAS at 2 threads outside the solvers (restored afterwards)."""
    from threadpoolctl import threadpool_limits

    if not _blas_threads():
        pytest.skip("no BLAS library visible to threadpoolctl")
    with threadpool_limits(2, user_api="blas"):
        yield


def _record(monkeypatch, module, name, seen):
    orig = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(_blas_threads())
        return orig(*args, **kwargs)
    monkeypatch.setattr(module, name, spy)


def test_solvers_run_single_threaded_and_restore(two_threads, monkeypatch):
    monkeypatch.delenv(_threads.ENV, raising=False)
    seen = []
    _record(monkeypatch, simulators, "_run_overlaps", seen)
    _record(monkeypatch, highdim, "_solve", seen)
    W0, Ws = orthonormal(6, 2, seed=0), orthonormal(6, 1, seed=1)
    symflow.simulate(W0, Ws, [0.0, 1.0])
    symflow.simulate_batch([W0, W0], Ws, [0.0, 1.0], method="overlaps")  # nested blocks
    symflow.limit(0.5, 0.25, [0.0, 1.0])
    assert len(seen) == 4 and all(n == [1] * len(n) for n in seen), seen
    assert _blas_threads() == [2] * len(_blas_threads())  # restored after every call


def test_env_override(two_threads, monkeypatch):
    seen = []
    _record(monkeypatch, highdim, "_solve", seen)
    monkeypatch.setenv(_threads.ENV, "off")
    symflow.limit(0.5, 0.25, [0.0, 1.0])
    monkeypatch.setenv(_threads.ENV, "2")
    with _threads.blas_threads(1):
        inner = _blas_threads()
    assert seen[0] == [2] * len(seen[0]) and inner == [2] * len(inner)


def test_nested_blocks_restore_once(two_threads, monkeypatch):
    monkeypatch.delenv(_threads.ENV, raising=False)
    with _threads.blas_threads(1):
        with _threads.blas_threads(1):
            pass
        assert set(_blas_threads()) == {1}  # the inner exit keeps the outer limit
    assert set(_blas_threads()) == {2}


def test_errors_propagate_and_restore(two_threads, monkeypatch):
    monkeypatch.delenv(_threads.ENV, raising=False)
    with pytest.raises(ValueError, match="gamma"):
        symflow.limit(0.5, 0.25, [1.0, 0.5])
    assert set(_blas_threads()) == {2}
    with pytest.raises(ValueError, match="n must be"):
        with _threads.blas_threads(0):
            pass


def test_wrapped_functions_keep_signature():
    import inspect

    assert "gamma" in inspect.signature(symflow.simulate).parameters
    assert symflow.limit.__module__ == "symflow.numerics.highdim"
    assert np.ndim(symflow.limit(0.5, 0.25, [0.0, 1.0]).phi) == 1


def test_without_threadpoolctl_nothing_is_limited(monkeypatch):
    """A source tree used without reinstalling (no threadpoolctl) must still run."""
    import sys

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import raises ImportError
    monkeypatch.setitem(_threads._state, "controller", None)
    monkeypatch.delenv(_threads.ENV, raising=False)
    assert np.isfinite(symflow.limit(0.5, 0.25, [0.0, 1.0]).phi[-1])
    assert _threads._state["controller"] is False


def test_instance_construction_and_exact_flow_are_limited_too(two_threads, monkeypatch):
    """The QR of init.orthonormal (the issue's 200 x 100 QR) and a direct exact_flow call."""
    from symflow.numerics import exact, init

    monkeypatch.delenv(_threads.ENV, raising=False)
    seen = []
    _record(monkeypatch, np.linalg, "qr", seen)
    _record(monkeypatch, exact, "_ortho_batch", seen)
    W0, Ws = init.orthonormal(200, 100, seed=0), init.orthonormal(200, 50, seed=1)
    exact.exact_flow(W0, Ws, [0.0, 1.0])
    assert len(seen) >= 3 and all(set(n) == {1} for n in seen), seen
    assert set(_blas_threads()) == {2}
