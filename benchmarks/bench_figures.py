"""Benchmark of the data of Figures 2+3 (issue 7): symflow vs the reference algorithm.

Run: python benchmarks/bench_figures.py [--quick] [--smoke]
(--smoke: d = 20 only, one repetition, a short gd prefix: checks that the script runs)

symflow: exactly what ``symflow figures --figure 2 3`` computes (method="exact",
rtol = 1e-5, d in {20, 40, 80, 200}, 3 panels, 5 repetitions, all runs as one vectorised
solve in one process, plus the d = inf limit).
Reference: explicit gradient descent (method="gd", eta = 1e-2, 10 d / eta steps per run,
as in the paper's code) on the same instances, single process.  Full gd runs are done
at d = 20; for larger d a prefix of the steps is timed (about GD_TIME_BUDGET_S per
panel) and the time extrapolated linearly to 10 d / eta steps and to all repetitions --
the output says so.  Accuracy: max |phi - phi_exact| and |chi - chi_exact| over the
gamma grid (up to the gamma the gd prefix reached), against method="exact" at
rtol = 1e-10, repetition 0 of each (panel, d).  gd runs on the figure's gamma grid
snapped to its step grid (t = eta * steps, repeated steps dropped: at d = 20 the first
points of the log grid are less than one step apart), and the exact reference is
evaluated at those same snapped times.
"""

import argparse
import contextlib
import time

import numpy as np

from symflow import simulate
from symflow.apps import figures
from symflow.apps.run import make_instance

ETA = 1e-2
GD_TIME_BUDGET_S = 1.5
GD_FULL_UP_TO_D = 20


def _snap(grid, d, eta, g_end):
    """The gamma grid up to g_end (and g_end itself) snapped to gd's step grid: times
    t = eta * steps, distinct, positive steps only (as ``symflow run --method gd``)."""
    gg = grid[grid <= g_end + 1e-12]
    if gg.size == 0 or gg[-1] < g_end:
        gg = np.append(gg, g_end)
    steps = np.unique(np.rint(gg * d / eta).astype(np.int64))
    return steps[steps > 0] * eta / d


def _gd_run(task, grid, budget_s=None):
    d = task["d"]
    budget_s = GD_TIME_BUDGET_S if budget_s is None else budget_s
    W0, Ws = make_instance(d, task["m"], task["m_star"], "orthonormal", "orthonormal",
                           task["seed"])
    total = int(round(10 * d / ETA))
    if d <= GD_FULL_UP_TO_D and budget_s >= GD_TIME_BUDGET_S:
        steps = total
    else:  # estimate the cost of one step, then time a prefix of about the budget
        t0 = time.perf_counter()
        simulate(W0, Ws, t=np.array([0.0, 50 * ETA]), method="gd", eta=ETA)
        per_step = (time.perf_counter() - t0) / 50
        steps = int(min(total, max(100, budget_s / per_step)))
    g_end = steps * ETA / d
    gg = _snap(grid, d, ETA, g_end)
    t0 = time.perf_counter()
    tr = simulate(W0, Ws, gamma=gg, method="gd", eta=ETA)
    wall = time.perf_counter() - t0
    ex = simulate(W0, Ws, gamma=tr.gamma, method="exact", rtol=1e-10)  # same (snapped) times
    assert np.array_equal(tr.gamma, ex.gamma)
    return dict(steps=steps, total=total, wall=wall, wall_full=wall * total / steps,
                g_end=g_end, err_phi=np.max(np.abs(tr.phi - ex.phi)),
                err_chi=np.max(np.abs(tr.chi - ex.chi)))


def _compare(task, res, grid, budget_s=None):
    """Accuracy of symflow's run and gd timing/accuracy for one instance (in a worker)."""
    W0, Ws = make_instance(task["d"], task["m"], task["m_star"], "orthonormal",
                           "orthonormal", task["seed"])
    ref = simulate(W0, Ws, gamma=grid, method="exact", rtol=1e-10)
    gd = _gd_run(task, grid, budget_s)
    gd.update(sym_err_phi=np.max(np.abs(res["phi"] - ref.phi)),
              sym_err_chi=np.max(np.abs(res["chi"] - ref.chi)))
    return gd


def _symflow_data(tasks, grid):
    t0 = time.perf_counter()
    results = figures._run_batch(tasks)
    figures._limits(grid)
    return results, time.perf_counter() - t0


def _row(task, res, tasks, results, grid, budget, ex):
    """Print the row of one (panel, d); returns the extrapolated gd time of its reps."""
    same = [r for tk, r in zip(tasks, results)
            if tk["panel"] == task["panel"] and tk["d"] == task["d"]]
    gd = (_compare(task, res, grid, budget) if ex is None
          else ex.submit(_compare, task, res, grid, budget).result())
    sym_s = sum(r["wall_time_s"] for r in same)
    note = ("full run" if gd["steps"] == gd["total"] else
            f"extrapolated; gd err at gamma<={gd['g_end']:.3g}")
    print(f"{task['panel']:>5} {task['d']:>4} {task['m']:>4} {task['m_star']:>4} | "
          f"{sym_s:>9.3f} {gd['sym_err_phi']:>8.1e} {gd['sym_err_chi']:>8.1e} | "
          f"{gd['wall_full'] * len(same):>9.1f} {gd['steps']:>8}/{gd['total']:<8} "
          f"{gd['err_phi']:>8.1e} {gd['err_chi']:>8.1e} {note}", flush=True)
    return gd["wall_full"] * len(same)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the --quick figure settings")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny run (d = 20, 1 repetition, 0.05 s gd prefix): checks the script")
    args = ap.parse_args(argv)
    cfg = figures._SETTINGS[args.quick or args.smoke]
    reps, ds, seed = cfg["reps"], cfg["d23"], 0
    budget = None
    if args.smoke:
        reps, ds, budget = 1, (20,), 0.05
    grid = figures._gamma_grid(cfg["points"])
    tasks = figures._flow_tasks(2, ds, reps, seed, "orthonormal", "exact", cfg["points"])

    results1, sym_wall1 = _symflow_data(tasks, grid)

    print(f"Figures 2+3 data: {len(tasks)} runs (d in {list(ds)}, 3 panels, {reps} reps), "
          f"gamma in [{grid[0]:g}, {grid[-1]:g}], {grid.size} points; symflow method=exact "
          f"rtol={figures.RTOL_EXACT:g}; errors vs exact rtol=1e-10 (rep 0)")
    print(f"{'panel':>5} {'d':>4} {'m':>4} {'m*':>4} | {'symflow s':>9} {'err phi':>8} "
          f"{'err chi':>8} | {'gd s':>9} {'steps timed':>17} {'err phi':>8} "
          f"{'err chi':>8} note")
    gd_total = 0.0
    # one worker process with single-threaded BLAS, as the symflow workers (--smoke: in
    # this process, no worker start-up)
    pool = contextlib.nullcontext() if args.smoke else figures._pool(1)
    with pool as ex:
        for task, res in zip(tasks, results1):
            if task["rep"] == 0:
                gd_total += _row(task, res, tasks, results1, grid, budget, ex)
    print(f"(time columns: all {reps} repetitions of the row)")
    print(f"symflow, Figures 2+3 data incl. d = inf limit: {sym_wall1:.2f} s on 1 process")
    print(f"reference gd (eta = {ETA}), same runs, 1 process: {gd_total:.0f} s "
          f"(= {gd_total / 3600:.2f} h; extrapolated from timed prefixes where noted)")
    print(f"speed ratio gd / symflow: {gd_total / sym_wall1:.0f}x (1 process each)")


if __name__ == "__main__":
    main()
