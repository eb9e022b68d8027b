"""The sweep scheduler: cells -> tasks -> Dask (or in-process) -> cache -> xarray.Dataset.

Cells are cut into tasks of ``spec.batch_size`` cells in C order of the axes.  Each task
has a content key: the SHA-256 of (job, cell parameters, output times, package version).
With an output directory, every finished task is stored atomically as
``DIR/cache/<key>.npz`` by the process that called :func:`sweep` (workers need no shared
file system); a later run with ``resume=True`` loads the tasks whose keys it finds and
computes only the others.  A different spec or package version gives other keys, so
results are never mixed, and since tasks are fixed by the spec alone, a resumed sweep
returns exactly the dataset of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from symflow.apps.sweep.jobs import VARIABLES, run_task
from symflow.apps.sweep.spec import load_spec

__all__ = ["sweep", "plan_tasks", "CONNECT_TIMEOUT_S"]

CONNECT_TIMEOUT_S = 10  # seconds to reach a --scheduler address


def plan_tasks(spec):
    """Tasks of a spec: a list of (key, cells), ``spec.batch_size`` cells each, C order.

    Parameters
    ----------
    spec : Spec

    Returns
    -------
    list of (str, list of dict)
        The key is the hex SHA-256 of the job, the cells' parameters, the output times
        and ``symflow.__version__`` (canonical JSON).
    """
    from symflow import __version__

    cells = list(spec.cells())
    gamma = [float(g) for g in spec.gamma]
    tasks = []
    for i in range(0, len(cells), spec.batch_size):
        chunk = cells[i:i + spec.batch_size]
        text = json.dumps({"job": spec.job, "version": __version__, "gamma": gamma,
                           "cells": chunk}, sort_keys=True, separators=(",", ":"))
        tasks.append((hashlib.sha256(text.encode()).hexdigest(), chunk))
    return tasks


def sweep(spec, client=None, out=None, resume=True, progress=True):
    """Run a grid of ``limit`` or ``simulate`` jobs on Dask and collect an xarray.Dataset.

    Parameters
    ----------
    spec : dict, path-like or Spec
        The sweep spec (TOML file or the same as a dict; see docs/sweeps.md).
    client : None, int, str, dask.distributed.Client or "synchronous"
        Where tasks run.  None: a local Dask cluster with one single-threaded worker
        process per core, closed afterwards; an int: the same with that many workers;
        a str "tcp://host:port": the scheduler of an existing cluster; a Client: used as
        is (not closed); "synchronous": in this process, one task after the other (no
        Dask; for debugging and small grids).
    out : path-like, optional
        Output directory.  With it, finished tasks are cached in ``out/cache`` and the
        results are written as ``out/results.nc`` (netCDF4), ``out/spec.toml`` (the
        normalised spec) and ``out/phase.png`` (heat map of ``chi_final`` over the first
        two axes), all three together and atomically.
    resume : bool
        Reuse cached tasks of ``out`` (same job, cells, times and package version).
        False recomputes every task (and overwrites its cache entry).
    progress : bool
        tqdm progress bar over cells on stderr (shown only when stderr is a terminal).

    Returns
    -------
    xarray.Dataset
        Dimensions: one per grid axis (in spec order), then ``gamma`` (the output times,
        gamma = t / d).  Variables: ``phi``, ``chi`` (and ``risk`` for ``simulate``) over
        all dimensions; summaries over the axes: ``chi_final`` (chi at the last time),
        ``gamma_to_threshold`` (first gamma with chi >= threshold, linear interpolation
        on the output grid; NaN if never), ``recovered`` (chi_final >= threshold),
        ``chi_infinity`` (limit only: min(1, sqrt(alpha / alpha*))); per-cell solver
        statistics ``solver_nfev``, ``solver_wall_time_s``, ``solver_method``.  Attrs:
        ``spec`` (TOML text), ``spec_sha256``, ``symflow_version``, ``job``,
        ``threshold``, ``n_cells``, ``n_tasks``, ``batch_size``, and about this run
        ``run_tasks_from_cache``, ``run_wall_time_s``.

    Raises
    ------
    ValueError, TypeError
        Bad spec (see :func:`symflow.apps.sweep.spec.load_spec`), bad ``client`` or
        ``out``; errors of the jobs themselves.
    ConnectionError
        The scheduler address cannot be reached (nothing is written then).
    RuntimeError
        A solver failed, a worker died too often (Dask's KilledWorker), or a worker runs
        another symflow version (its result is neither stored nor used).

    Source: docs/sweeps.md; jobs ``symflow.limit`` (MATH.md section 6) and
    ``symflow.simulate`` (sections 3-5).
    """
    from symflow import __version__
    from symflow.apps.sweep.dataset import build_dataset, write_outputs

    spec = load_spec(spec)
    _check_client(client)
    out = None if out is None else Path(out)
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a directory")
    tasks = plan_tasks(spec)
    results = [None] * len(tasks)
    cache = None if out is None else out / "cache"
    if cache is not None and resume and cache.is_dir():
        _remove_stale_temporaries(cache)
        for i, (key, cells) in enumerate(tasks):
            results[i] = _load(cache / f"{key}.npz", key, spec.job, len(cells))
    n_cached = sum(r is not None for r in results)
    todo = [i for i, r in enumerate(results) if r is None]
    t0 = time.perf_counter()
    bar = _bar(spec.n_cells, sum(len(tasks[i][1]) for i, r in enumerate(results)
                                 if r is not None), progress)
    try:
        if todo:
            with _executor(client) as execute:
                for i, res in execute(spec, tasks, todo):
                    worker_version = str(res.pop("version"))
                    if worker_version != __version__:
                        raise RuntimeError(f"a worker runs symflow {worker_version} but this "
                                           f"process {__version__}: install one version on "
                                           "every worker")
                    results[i] = res
                    if cache is not None:
                        cache.mkdir(parents=True, exist_ok=True)
                        _store(cache / f"{tasks[i][0]}.npz", tasks[i][0], res)
                    bar.update(len(tasks[i][1]))
    finally:
        bar.close()
    ds = build_dataset(spec, tasks, results)
    ds.attrs["run_tasks_from_cache"] = n_cached
    ds.attrs["run_wall_time_s"] = time.perf_counter() - t0
    if out is not None:
        write_outputs(ds, spec, out)
    return ds


def _check_client(client):
    if client is None or client == "synchronous" or hasattr(client, "submit"):
        return
    if isinstance(client, bool) or not isinstance(client, (int, str)):
        raise TypeError(f"client must be None, an int, a scheduler address, a "
                        f"dask.distributed.Client or 'synchronous', got {client!r}")
    if isinstance(client, int) and client < 1:
        raise ValueError(f"client (number of local workers) must be >= 1, got {client}")
    if isinstance(client, str) and "://" not in client:
        raise ValueError(f"client must be a scheduler address like tcp://host:8786 or "
                         f"'synchronous', got {client!r}")


def _bar(total, initial, enabled):
    from tqdm.auto import tqdm

    # disable=None: tqdm switches itself off when stderr is not a terminal, so logs and
    # pipes get no carriage-return updates
    return tqdm(total=total, initial=initial, unit="cell", desc="sweep",
                disable=None if enabled else True, leave=False)


@contextlib.contextmanager
def _executor(client):
    """Yield execute(spec, tasks, todo) -> iterator of (task index, result)."""
    if client == "synchronous":
        def serial(spec, tasks, todo):
            for i in todo:
                yield i, run_task(spec.job, spec.gamma, tasks[i][1])
        yield serial
        return
    with _client(client) as c:
        def on_dask(spec, tasks, todo):
            from dask.distributed import as_completed

            # pure=False: fresh keys, so a rerun on the same cluster never meets the
            # cancellation of an earlier run's tasks
            futures = {c.submit(run_task, spec.job, spec.gamma, tasks[i][1], pure=False): i
                       for i in todo}
            try:
                for fut in as_completed(futures, loop=c.loop):
                    yield futures[fut], _result(fut)
            finally:
                pending = [f for f in futures if not f.done()]
                if pending:  # interrupted or failed: stop the rest
                    c.cancel(pending)
        yield on_dask


def _result(fut):
    from dask.distributed import KilledWorker

    try:
        return fut.result()
    except KilledWorker as exc:
        raise RuntimeError(f"a Dask worker died while running {exc.args[0]} too often "
                           "(see the worker logs)") from None


@contextlib.contextmanager
def _client(client):
    if hasattr(client, "submit"):
        yield client
        return
    from dask.distributed import Client, LocalCluster

    if isinstance(client, str):
        try:
            c = Client(client, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot reach the Dask scheduler at {client} within "
                                  f"{CONNECT_TIMEOUT_S} s ({type(exc).__name__})") from None
        with c:
            yield c
        return
    import dask

    n = client if isinstance(client, int) else (os.cpu_count() or 1)
    # One single-threaded worker process per core: the nannies start the workers with
    # OMP/MKL/OPENBLAS_NUM_THREADS=1 (distributed.nanny.pre-spawn-environ), but not with
    # its MALLOC_TRIM_THRESHOLD_: any value of it switches off glibc's dynamic mmap
    # threshold, so every large numpy temporary is mmap'ed and unmapped again (measured:
    # an overlaps solve at d = 300 3.8x slower, 4.4 s vs 1.15 s, at any threshold).
    # (None unsets a variable: distributed.nanny._get_env_variables)
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
            LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster, set_as_default=False) as c:
        yield c


# ---------------------------------------------------------------------------- cache


def _store(path, key, res):
    from symflow._io import atomic_write

    arrays = dict(res, key=np.array(key))

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    atomic_write(path, write)


def _load(path, key, job, n_cells):
    """A cached task result, or None if absent or not this task's (never raises)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            res = {name: z[name] for name in (*VARIABLES[job], "nfev", "wall_time_s",
                                               "method")}
    except Exception:  # unreadable or foreign file: recompute the task
        return None
    if any(res[name].shape[0] != n_cells for name in res):
        return None
    return res


def _remove_stale_temporaries(cache):
    """Temporary files of writes interrupted by a hard kill (``symflow._io`` names)."""
    for p in cache.glob(".*.npz.*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
