"""Benchmark of the data of Figures 2+3 (issue 7): symflow vs the reference algorithm.

Run: python benchmarks/bench_figures.py [--quick]

symflow: exactly what ``symflow figures --figure 2 3`` computes (method="exact",
rtol = 1e-5, d in {20, 40, 80, 200}, 3 panels, 5 repetitions, all runs as one vectorised
solve in one process, plus the d = inf limit).
Reference: explicit gradient descent (method="gd", eta = 1e-2, 10 d / eta steps per run,
as in the paper's code) on the same instances, single process.  Full gd runs are done
at d = 20; for larger d a prefix of the steps is timed (about GD_TIME_BUDGET_S per
panel) and the time extrapolated linearly to 10 d / eta steps and to all repetitions --
the output says so.  Accuracy: max |phi - phi_exact| and |chi - chi_exact| over the
gamma grid (up to the gamma the gd prefix reached), against method="exact" at
rtol = 1e-10, repetition 0 of each (panel, d).
"""

import argparse
import time

import numpy as np

from symflow import simulate
from symflow.apps import figures
from symflow.apps.run import make_instance

ETA = 1e-2
GD_TIME_BUDGET_S = 1.5
GD_FULL_UP_TO_D = 20


def _gd_run(task, grid):
    d = task["d"]
    W0, Ws = make_instance(d, task["m"], task["m_star"], "orthonormal", "orthonormal",
                           task["seed"])
    total = int(round(10 * d / ETA))
    if d <= GD_FULL_UP_TO_D:
        steps = total
    else:  # estimate the cost of one step, then time a prefix of about the budget
        t0 = time.perf_counter()
        simulate(W0, Ws, t=np.array([0.0, 50 * ETA]), method="gd", eta=ETA)
        per_step = (time.perf_counter() - t0) / 50
        steps = int(min(total, max(100, GD_TIME_BUDGET_S / per_step)))
    g_end = steps * ETA / d
    gg = grid[grid <= g_end + 1e-12]
    if gg.size == 0 or gg[-1] < g_end:
        gg = np.append(gg, g_end)
    t0 = time.perf_counter()
    tr = simulate(W0, Ws, gamma=gg, method="gd", eta=ETA)
    wall = time.perf_counter() - t0
    ex = simulate(W0, Ws, gamma=gg, method="exact", rtol=1e-10)
    return dict(steps=steps, total=total, wall=wall, wall_full=wall * total / steps,
                g_end=g_end, err_phi=np.max(np.abs(tr.phi - ex.phi)),
                err_chi=np.max(np.abs(tr.chi - ex.chi)))


def _compare(task, res, grid):
    """Accuracy of symflow's run and gd timing/accuracy for one instance (in a worker)."""
    W0, Ws = make_instance(task["d"], task["m"], task["m_star"], "orthonormal",
                           "orthonormal", task["seed"])
    ref = simulate(W0, Ws, gamma=grid, method="exact", rtol=1e-10)
    gd = _gd_run(task, grid)
    gd.update(sym_err_phi=np.max(np.abs(res["phi"] - ref.phi)),
              sym_err_chi=np.max(np.abs(res["chi"] - ref.chi)))
    return gd


def _symflow_data(tasks, grid):
    t0 = time.perf_counter()
    results = figures._run_batch(tasks)
    figures._limits(grid)
    return results, time.perf_counter() - t0


def main(quick=False):
    cfg = figures._SETTINGS[quick]
    reps, ds, seed = cfg["reps"], cfg["d23"], 0
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
    with figures._pool(1) as pool:  # single-threaded BLAS, as the symflow workers
        for task, res in zip(tasks, results1):
            if task["rep"] != 0:
                continue
            same = [r for tk, r in zip(tasks, results1)
                    if tk["panel"] == task["panel"] and tk["d"] == task["d"]]
            gd = pool.submit(_compare, task, res, grid).result()
            sym_s = sum(r["wall_time_s"] for r in same)
            gd_total += gd["wall_full"] * len(same)
            note = ("full run" if gd["steps"] == gd["total"] else
                    f"extrapolated; gd err at gamma<={gd['g_end']:.3g}")
            print(f"{task['panel']:>5} {task['d']:>4} {task['m']:>4} {task['m_star']:>4} | "
                  f"{sym_s:>9.3f} {gd['sym_err_phi']:>8.1e} {gd['sym_err_chi']:>8.1e} | "
                  f"{gd['wall_full'] * len(same):>9.1f} {gd['steps']:>8}/{gd['total']:<8} "
                  f"{gd['err_phi']:>8.1e} {gd['err_chi']:>8.1e} {note}")
    print(f"(time columns: all {reps} repetitions of the row)")
    print(f"symflow, Figures 2+3 data incl. d = inf limit: {sym_wall1:.2f} s on 1 process")
    print(f"reference gd (eta = {ETA}), same runs, 1 process: {gd_total:.0f} s "
          f"(= {gd_total / 3600:.2f} h; extrapolated from timed prefixes where noted)")
    print(f"speed ratio gd / symflow: {gd_total / sym_wall1:.0f}x (1 process each)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the --quick figure settings")
    a = ap.parse_args()
    main(quick=a.quick)
