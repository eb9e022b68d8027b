"""symflow.sweep / `symflow sweep`: specs, equality with plain loops, resume, Dask, errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import symflow
from symflow.apps.cli import main
from symflow.apps.run import make_instance
from symflow.apps.sweep.dataset import first_crossing
from symflow.apps.sweep.spec import load_spec

# alpha = alpha* (0.3, 0.3), alpha + alpha* = 1 (0.3, 0.7), alpha = 1, alpha* = 1,
# alpha < alpha* (0.1 vs 0.3, 0.7, 1.0)
LIMIT_SPEC = {
    "job": "limit",
    "fixed": {"gamma": [0.0, 0.5, 1.0, 2.0, 5.0]},
    "grid": {"alpha": [0.1, 0.3, 1.0], "alpha_star": [0.3, 0.7, 1.0, 0.15]},
}
SIM_SPEC = {
    "job": "simulate",
    "fixed": {"d": 12, "m_star": 2, "init": "gaussian", "teacher": "gaussian",
              "method": "overlaps", "gamma": {"start": 0.0, "stop": 2.0, "num": 5}},
    "grid": {"m": [2, 3], "seed": [0, 1]},
}


def _spec(base, **changes):
    spec = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in changes.items():
        if "." in key:
            table, name = key.split(".")
            if value is None:
                spec[table].pop(name)
            else:
                spec[table][name] = value
        else:
            spec[key] = value
    return spec


def assert_same_results(a, b):
    """Equal datasets, except timings (solver_wall_time_s, run_* attrs)."""
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        if name != "solver_wall_time_s":
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    for name in a.coords:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    strip = {k: v for k, v in a.attrs.items() if not k.startswith("run_")}
    assert strip == {k: v for k, v in b.attrs.items() if not k.startswith("run_")}


# ------------------------------------------------------------------------- the spec


def test_spec_defaults_ranges_and_toml_roundtrip(tmp_path):
    spec = load_spec({"job": "simulate", "description": "widths",
                      "fixed": {"gamma": {"start": 0.0, "stop": 1.0, "num": 3}, "d": 400},
                      "grid": {"m": {"start": 100, "stop": 400, "num": 4},
                               "noise": {"start": 0.01, "stop": 1.0, "num": 3,
                                         "scale": "log"},
                               "init": ["gaussian", "orthonormal"]}})
    assert spec.axes["m"] == [100, 200, 300, 400] and all(type(v) is int for v in spec.axes["m"])
    np.testing.assert_allclose(spec.axes["noise"], [0.01, 0.1, 1.0])
    np.testing.assert_array_equal(spec.gamma, [0.0, 0.5, 1.0])
    assert spec.fixed == {"d": 400, "m_star": 50, "teacher": "orthonormal", "seed": 0,
                          "method": "auto", "weight_decay": 0.0, "rtol": 1e-10}
    assert spec.shape == (4, 3, 2) and spec.n_cells == 24
    first = next(spec.cells())
    assert first["m"] == 100 and first["noise"] == 0.01 and first["init"] == "gaussian"
    assert "lr" not in first and "activation" not in first  # absent = not used
    arr = load_spec({"job": "limit", "fixed": {"gamma": np.array([0.0, 1.0])},
                     "grid": {"alpha": np.linspace(0.2, 1.0, 5), "alpha_star": [0.5]}})
    assert arr.axes["alpha"] == np.linspace(0.2, 1.0, 5).tolist()
    assert type(arr.axes["alpha"][0]) is float and "np." not in arr.to_toml()
    path = tmp_path / "s.toml"
    path.write_text(spec.to_toml())
    again = load_spec(path)
    assert again.source == spec.source and again.digest() == spec.digest()
    assert again.axes == spec.axes


@pytest.mark.parametrize("changes,exc,match", [
    (dict(job="train"), ValueError, "job must be one of"),
    ({"grid.beta": [0.1]}, ValueError, r"unknown parameter grid\.beta"),
    ({"fixed.alpha": 0.5}, ValueError, r"both in \[fixed\] and in \[grid\]"),
    ({"grid.alpha": []}, ValueError, r"grid\.alpha is an empty axis"),
    ({"grid.alpha": [0.5, 1.5]}, ValueError, r"grid\.alpha must be <= 1"),
    ({"grid.alpha_star": [0.0, 0.5]}, ValueError, r"grid\.alpha_star must be > 0"),
    ({"grid.alpha": [0.5, 0.5]}, ValueError, "repeated"),
    ({"grid.alpha": {"start": 0.1, "stop": 1.0}}, ValueError, "start, stop, num"),
    ({"grid.alpha": {"start": 0.0, "stop": 1.0, "num": 3, "scale": "log"}}, ValueError,
     "log range"),
    ({"grid.alpha": "0.5"}, TypeError, "list of values"),
    ({"grid.gamma": [1.0]}, ValueError, "time axis"),
    ({"fixed.gamma": None}, ValueError, r"fixed\.gamma .* is required"),
    ({"fixed.gamma": [0.0, 2.0, 1.0]}, ValueError, "increasing"),
    ({"grid.alpha": None, "grid.alpha_star": None}, ValueError, "at least one axis"),
    ({"grid.alpha": None}, ValueError, "'alpha' of job 'limit' is missing"),
    ({"fixed.rtol": 0.5}, ValueError, r"fixed\.rtol must be <= 0\.01"),
    (dict(threshold=1.5), ValueError, "threshold"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(extra=1), ValueError, "unknown top-level"),
])
def test_bad_limit_specs(changes, exc, match):
    with pytest.raises(exc, match=match):
        load_spec(_spec(LIMIT_SPEC, **changes))


@pytest.mark.parametrize("changes,match", [
    ({"fixed.init": "orthonormal", "grid.m": [2, 13]}, "m <= d"),
    ({"fixed.method": "exact"}, "exact"),
    ({"fixed.activation": "sin(z)"}, "activation"),
    ({"fixed.lr": 0.1, "fixed.method": "weights"}, "lr"),
    ({"fixed.method": "gd"}, "method must be one of"),
    ({"grid.seed": [0, -1]}, "seed"),
])
def test_bad_simulate_specs(changes, match):
    with pytest.raises(ValueError, match=match):
        load_spec(_spec(SIM_SPEC, **changes))


def test_first_crossing():
    g = np.array([0.0, 1.0, 2.0, 4.0])
    vals = np.array([[0.5, 0.8, 0.995, 1.0],     # crosses 0.99 between gamma 1 and 2
                     [0.995, 0.999, 1.0, 1.0],   # already above at gamma[0]
                     [0.1, 0.2, 0.3, 0.4]])      # never
    out = first_crossing(g, vals, 0.99)
    assert out[0] == pytest.approx(1.0 + (0.99 - 0.8) / (0.995 - 0.8))
    assert out[1] == 0.0 and np.isnan(out[2])


# ------------------------------------------- sweep == a plain loop, cell by cell


def _loop_crossing(gam, chi, level):
    """Independent of first_crossing: a scalar loop over the grid."""
    for i, c in enumerate(chi):
        if c >= level:
            if i == 0:
                return gam[0]
            return gam[i - 1] + (level - chi[i - 1]) / (c - chi[i - 1]) * (gam[i] - gam[i - 1])
    return np.nan


def test_limit_sweep_equals_loop_over_limit():
    """Batched sweep (batch_size 5: three tasks of mixed cells) vs symflow.limit per cell,
    to solver tolerance; batch_size 1 runs each cell alone: then equal exactly."""
    ds = symflow.sweep(_spec(LIMIT_SPEC, batch_size=5), client="synchronous", progress=False)
    one = symflow.sweep(_spec(LIMIT_SPEC, batch_size=1), client="synchronous", progress=False)
    gam = np.array(LIMIT_SPEC["fixed"]["gamma"])
    assert ds.chi.dims == ("alpha", "alpha_star", "gamma") and ds.chi.shape == (3, 4, 5)
    assert ds.attrs["n_tasks"] == 3 and one.attrs["n_tasks"] == 12
    for a in LIMIT_SPEC["grid"]["alpha"]:
        for s in LIMIT_SPEC["grid"]["alpha_star"]:
            ref = symflow.limit(a, s, gam)
            cell = ds.sel(alpha=a, alpha_star=s)
            assert np.all(np.abs(cell.phi.values - ref.phi) <= 1e-8 * (1 + np.abs(ref.phi)))
            assert np.abs(cell.chi.values - ref.chi).max() <= 1e-9
            exact = one.sel(alpha=a, alpha_star=s)
            np.testing.assert_array_equal(exact.phi.values, ref.phi)
            np.testing.assert_array_equal(exact.chi.values, ref.chi)
            assert exact.chi_final == ref.chi[-1]
            assert exact.gamma_to_threshold.values == pytest.approx(
                _loop_crossing(gam, ref.chi, 0.99), nan_ok=True, rel=1e-12)
            assert bool(exact.recovered) == (ref.chi[-1] >= 0.99)
            assert float(exact.chi_infinity) == ref.chi_final
            assert exact.solver_nfev == ref.meta["nfev"]
    assert not bool(ds.recovered.sel(alpha=0.1, alpha_star=1.0))
    assert bool(ds.recovered.sel(alpha=1.0, alpha_star=0.3))
    assert "risk" not in ds  # not defined for the limit


def test_simulate_sweep_equals_loop_over_simulate():
    ds = symflow.sweep(SIM_SPEC, client="synchronous", progress=False)
    gam = np.linspace(0.0, 2.0, 5)
    for m in (2, 3):
        for seed in (0, 1):
            W0, Ws = make_instance(12, m, 2, "gaussian", "gaussian", seed)
            ref = symflow.simulate(W0, Ws, gamma=gam, method="overlaps")
            cell = ds.sel(m=m, seed=seed)
            for name in ("phi", "chi", "risk"):
                np.testing.assert_array_equal(cell[name].values, getattr(ref, name))
            assert cell.solver_nfev == ref.meta["nfev"] and cell.solver_method == "overlaps"


def test_outputs_spec_plot_and_cache(tmp_path):
    import xarray as xr

    from symflow.apps.sweep import plot_phase

    out = tmp_path / "run"
    ds = symflow.sweep(LIMIT_SPEC, client="synchronous", out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["cache", "phase.png", "results.nc",
                                                      "spec.toml"]
    assert len(list((out / "cache").iterdir())) == ds.attrs["n_tasks"] == 1
    assert (out / "phase.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_spec(out / "spec.toml").digest() == ds.attrs["spec_sha256"]
    with xr.open_dataset(out / "results.nc") as back:
        back.load()
    assert_same_results(back, ds)
    assert back.recovered.dtype == bool and back.attrs["symflow_version"] == symflow.__version__
    # a second run reads every task from the cache; resume=False recomputes them
    again = symflow.sweep(LIMIT_SPEC, client="synchronous", out=out, progress=False)
    assert again.attrs["run_tasks_from_cache"] == 1
    assert_same_results(again, ds)
    fresh = symflow.sweep(LIMIT_SPEC, client="synchronous", out=out, resume=False,
                          progress=False)
    assert fresh.attrs["run_tasks_from_cache"] == 0
    # another spec in the same directory: its own cache entries, never the old ones
    other = symflow.sweep(_spec(LIMIT_SPEC, **{"fixed.rtol": 1e-9}), client="synchronous",
                          out=out, progress=False)
    assert other.attrs["run_tasks_from_cache"] == 0
    assert len(list((out / "cache").iterdir())) == 2
    plot_phase(ds, tmp_path / "chi1.png", var="chi", gamma=1.0)
    plot_phase(ds, tmp_path / "g99.png", var="gamma_to_threshold")
    with pytest.raises(ValueError, match="gamma must be one of"):
        plot_phase(ds, tmp_path / "x.png", var="chi", gamma=0.7)
    with pytest.raises(ValueError, match="var must be"):
        plot_phase(ds, tmp_path / "x.png", var="nope")
    assert not list(tmp_path.rglob("*.tmp"))


def test_cache_ignores_foreign_or_corrupt_entries(tmp_path):
    out = tmp_path / "run"
    ds = symflow.sweep(LIMIT_SPEC, client="synchronous", out=out, progress=False)
    (entry,) = (out / "cache").iterdir()
    entry.write_bytes(b"not an npz")
    again = symflow.sweep(LIMIT_SPEC, client="synchronous", out=out, progress=False)
    assert again.attrs["run_tasks_from_cache"] == 0
    assert_same_results(again, ds)


def test_local_cluster_one_worker_equals_synchronous():
    """The default executor: a LocalCluster (here one worker process).  Regression: its
    workers ran with Dask's MALLOC_TRIM_THRESHOLD_, which made numpy-heavy cells ~4x
    slower (glibc's dynamic mmap threshold off); they must run without it, and with
    single-threaded BLAS."""
    import os

    from symflow.apps.sweep.scheduler import _client

    spec = _spec(LIMIT_SPEC, batch_size=4)
    with _client(1) as c:
        env = list(c.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                                  os.environ.get("OPENBLAS_NUM_THREADS"))).values())
        ds = symflow.sweep(spec, client=c, progress=False)
    assert env == [(None, "1")]
    assert_same_results(ds, symflow.sweep(spec, client="synchronous", progress=False))


def test_import_stays_light():
    code = ("import sys, symflow, symflow.apps.cli as c; c.build_parser(); symflow.sweep; "
            "print(sorted(m for m in ('dask', 'distributed', 'xarray', 'sympy', 'netCDF4') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ CLI

LIMIT_TOML = """job = "limit"
[fixed]
gamma = [0.5, 1.0, 2.0]
[grid]
alpha = { start = 0.2, stop = 1.0, num = 3 }
alpha_star = [0.25, 0.5]
"""


def _write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cli_writes_outputs(tmp_path, capsys):
    spec = _write(tmp_path, LIMIT_TOML)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--scheduler", "synchronous"]) == 0
    stdout = capsys.readouterr().out
    assert "sweep limit: 6 cells in 1 tasks (0 from cache, 1 computed)" in stdout
    assert (out / "results.nc").is_file() and (out / "phase.png").is_file()
    assert main(["sweep", str(spec), "--out", str(out), "--scheduler", "synchronous"]) == 0
    assert "(1 from cache, 0 computed)" in capsys.readouterr().out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("text,extra,match", [
    ('job = "train"\n[fixed]\ngamma = [1.0]\n[grid]\nalpha = [0.5]\n', [], "job must be"),
    (LIMIT_TOML.replace("alpha_star", "alpha_starr"), [], "unknown parameter"),
    (LIMIT_TOML.replace("[0.25, 0.5]", "[]"), [], "empty axis"),
    (LIMIT_TOML.replace("stop = 1.0", "stop = 1.2"), [], "alpha must be <= 1"),
    (LIMIT_TOML.replace("[fixed]", "[fixed"), [], "not valid TOML"),
    (LIMIT_TOML, ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers"),
    (LIMIT_TOML, ["--scheduler", "127.0.0.1"], "scheduler address"),
    (LIMIT_TOML, ["--scheduler", "tcp://127.0.0.1:{port}"], "cannot reach the Dask scheduler"),
])
def test_cli_bad_input_one_line_exit_2_nothing_written(text, extra, match, tmp_path, capsys,
                                                         monkeypatch):
    import symflow.apps.sweep.scheduler as sch

    monkeypatch.setattr(sch, "CONNECT_TIMEOUT_S", 1)
    spec = _write(tmp_path, text)
    out = tmp_path / "out"
    extra = [e.format(port=_free_port()) for e in extra]
    assert main(["sweep", str(spec), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("symflow: error:") and match in err[0], err
    assert not out.exists()


def test_cli_bad_spec_subprocess_no_traceback(tmp_path):
    spec = _write(tmp_path, LIMIT_TOML.replace("alpha_star = [0.25, 0.5]",
                                               "alpha_star = [0.25, 0.5]\nbeta = [1]"))
    proc = subprocess.run([sys.executable, "-m", "symflow", "sweep", str(spec), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "symflow: error: unknown parameter grid.beta for job 'limit' (known: gamma, alpha, "
        "alpha_star, rtol, method)"]
    assert not (tmp_path / "out").exists()


RESUME_TOML = """job = "simulate"
[fixed]
d = 30
m = 8
m_star = 5
init = "gaussian"
teacher = "gaussian"
method = "overlaps"
gamma = { start = 0.0, stop = 10.0, num = 5 }
[grid]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
"""


def test_resume_after_kill(tmp_path):
    """Kill a sweep (SIGKILL, no cleanup) once some tasks are cached; the rerun computes
    only the others, leaves the cached files alone, and equals an uninterrupted run."""
    import xarray as xr

    spec = _write(tmp_path, RESUME_TOML)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "symflow", "sweep", str(spec), "--out", str(out),
           "--scheduler", "synchronous"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(list((out / "cache").glob("*.npz"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "sweep ended early"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "cache").glob("*.npz")}
    assert 2 <= len(done) < 8 and not (out / "results.nc").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({len(done)} from cache, {8 - len(done)} computed)" in rerun.stdout
    assert "\r" not in rerun.stderr  # no progress-bar updates when stderr is not a tty
    for p, stamp in done.items():
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp  # not recomputed
    assert not list(out.rglob("*.tmp"))
    with xr.open_dataset(out / "results.nc") as resumed:
        resumed.load()
    assert_same_results(resumed, symflow.sweep(spec, client="synchronous", progress=False))


# ------------------------------------------------------------- a real Dask cluster


@pytest.mark.slow
def test_cli_on_a_dask_cluster_equals_local_run(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1; the CLI with
    --scheduler gives the local (synchronous) result, and the workers run single-threaded
    BLAS.  About 6-12 s wall and three interpreters' start-up of CPU: slow tier (the
    default tier keeps the one-worker LocalCluster test)."""
    from dask.distributed import Client

    bindir = Path(sys.executable).parent
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ, DASK_DISTRIBUTED__LOGGING__DISTRIBUTED="error")
    procs = [subprocess.Popen([bindir / "dask", "scheduler", "--host", "127.0.0.1", "--port",
                               "0", "--no-dashboard", "--scheduler-file", sched_file],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists():
            assert time.monotonic() < deadline and procs[0].poll() is None
            time.sleep(0.1)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [bindir / "dask", "worker", "--scheduler-file", sched_file, "--nthreads", "1",
                 "--no-dashboard", "--host", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        with Client(scheduler_file=str(sched_file), timeout=30) as c:
            c.wait_for_workers(2, timeout=60)
            address = c.scheduler.address
            blas = c.run(lambda: os.environ.get("OPENBLAS_NUM_THREADS"))
            assert len(blas) == 2 and set(blas.values()) == {"1"}
        spec = tmp_path / "spec.toml"
        text = LIMIT_TOML.replace('job = "limit"', 'job = "limit"\nbatch_size = 2')
        spec.write_text(text)
        out = tmp_path / "out"
        run = subprocess.run([sys.executable, "-m", "symflow", "sweep", str(spec), "--out",
                              str(out), "--scheduler", address], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert "6 cells in 3 tasks (0 from cache, 3 computed)" in run.stdout
        import xarray as xr

        with xr.open_dataset(out / "results.nc") as remote:
            remote.load()
        assert_same_results(remote, symflow.sweep(spec, client="synchronous", progress=False))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_worker_with_another_version_is_an_error(monkeypatch, tmp_path):
    """A task computed by another symflow version is never stored or mixed in."""
    import symflow.apps.sweep.scheduler as sch

    real = sch.run_task

    def other_version(*args):
        return dict(real(*args), version=np.array("0.0.old"))

    monkeypatch.setattr(sch, "run_task", other_version)
    with pytest.raises(RuntimeError, match="0.0.old"):
        symflow.sweep(LIMIT_SPEC, client="synchronous", out=tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()
