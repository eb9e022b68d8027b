"""Benchmark of the simulators, in particular the exact reduction (MATH.md section 5).

Run: python benchmarks/bench_simulate.py [--quick] [--big] [--smoke]
(--smoke: d = 20 only, one repetition per timing, one panel, gamma <= 1 in part 1, a short
gd prefix: checks that the script runs)
(single-threaded BLAS is recommended for comparable numbers: OPENBLAS_NUM_THREADS=1)

Every time is the median of 3 runs (wall clock), every ratio is against a baseline
measured in the same run:

1. methods: d in {20, 40, 80, 200}, (m, m*) = (d/2, d/4), orthonormal start and teacher,
   gamma up to 10 (41 points): exact, overlaps, weights and gd (eta = 1e-2) with the max
   error of phi and chi of each against exact.  gd runs 10 d / eta steps; where that is
   long, a prefix is timed and extrapolated linearly (the note says so).
2. one exact run, orthonormal, gamma in (0, 10], 400 points, rtol 1e-10, three panels
   (m, m*) = (d/2, d/4), (d/2, d/2), (d/4, d/2), d in {20, 40, 80, 200, 2000}: set-up
   (orthonormality check and principal angles, O(d m^2 + d m m*)) and ODE time (solve
   and observables), nfev; baselines: the same ODE with Radau (the solver of the earlier
   implementation, which also ran a Python Newton solve inside every right-hand side and
   was slower still: 0.7-1.4 s per run) and the whole run against method="overlaps"
   (d <= 80).  Also the ODE to the horizon gamma = 1e6.
3. batch: the 60 exact runs of Figures 2+3 (rtol 1e-5, 121 points): one
   ``simulate_batch`` call against one ``simulate`` call per run (CPU time).
4. general start and teacher (Gaussian, entries N(0, 1/(d k))), (m, m*) = (d/2, d/4),
   gamma up to 10 (41 points), rtol 1e-8: exact (general path) against the overlap ODE,
   max error of phi and chi; ``--big``: d = 2000, m = 1000, m* = 500 at rtol 1e-6 and
   1e-8 (about 10 s each; the overlap ODE there takes hours and is not run).

Measured (2-core machine shared with other jobs, OPENBLAS_NUM_THREADS=1, --big):
2. ODE of one exact run, d <= 200: 7-22 ms (nfev 670-2800), 6-24x faster than the same
   ODE with Radau; whole run 8-49x faster than method="overlaps" (d <= 80); to gamma = 1e6:
   6-23 ms.  d = 2000: ODE 26-57 ms, set-up 156-602 ms (the SVD of U^T U*).
3. Figures 2+3, 60 exact runs: 0.145 CPU-s as one batch, 0.28 s one solve per run (the
   earlier Radau path: 4.4 s).
4. general path, Gaussian, rtol 1e-8: 0.08-0.14 s for d = 20..200 (1.4-28x faster than
   overlaps, agreement 1e-7 in phi); d = 2000, m = 1000, m* = 500: 7.3 s at rtol 1e-6,
   11.5 s at rtol 1e-8.
"""

import argparse
import time

import numpy as np

from symflow.numerics import exact as ex
from symflow.numerics.init import gaussian, orthonormal
from symflow.numerics.simulators import simulate, simulate_batch

GD_STEP_BUDGET = 20_000
_SMOKE = {"on": False}  # --smoke: one repetition per timing, 1000 gd steps
PANELS = ((0.5, 0.25), (0.5, 0.5), (0.25, 0.5))


def _median_time(f, reps=3, clock=time.perf_counter):
    reps = 1 if _SMOKE["on"] else reps
    out, times = None, []
    for _ in range(reps):
        t0 = clock()
        out = f()
        times.append(clock() - t0)
    return float(np.median(times)), out


def methods(ds):
    print("1. methods, orthonormal (m, m*) = (d/2, d/4), gamma <= 10")
    print(f"{'d':>5} {'method':>9} {'wall s':>9} {'x exact':>8} {'err phi':>9} {'err chi':>9}"
          "  note")
    for d in ds:
        m, ms = d // 2, d // 4
        W0, Ws = orthonormal(d, m, seed=0), orthonormal(d, ms, seed=1)
        gam = np.linspace(0, 1 if _SMOKE["on"] else 10, 41)
        res = {}
        for meth in ("exact", "overlaps", "weights"):
            reps = 3 if meth == "exact" else 1
            wall, tr = _median_time(lambda: simulate(W0, Ws, gamma=gam, method=meth,
                                                     rtol=1e-10), reps)
            res[meth] = (wall, tr, "")
        exact = res["exact"][1]
        eta = 1e-2
        total = int(round(10 * d / eta))
        steps = min(total, 1000 if _SMOKE["on"] else GD_STEP_BUDGET)
        g_end = steps * eta / d
        gg = gam[gam <= g_end + 1e-12]
        t0 = time.perf_counter()
        tr = simulate(W0, Ws, gamma=gg, method="gd", eta=eta)
        wall = (time.perf_counter() - t0) * total / steps
        note = "" if steps == total else f"timed {steps}/{total} steps, extrapolated; " \
                                         f"error at gamma={g_end:.3g}"
        res["gd"] = (wall, tr, note)
        for meth in ("exact", "overlaps", "weights", "gd"):
            wall, tr, note = res[meth]
            n = len(tr.phi)
            ep = np.max(np.abs(tr.phi - exact.phi[:n]))
            ec = np.max(np.abs(tr.chi - exact.chi[:n]))
            print(f"{d:>5} {meth:>9} {wall:>9.3f} {wall / res['exact'][0]:>8.1f} {ep:>9.2e} "
                  f"{ec:>9.2e}  {note}")


def single_runs(ds):
    print("\n2. one exact run, orthonormal, gamma in (0, 10], 400 points, rtol 1e-10")
    print("   (set-up: orthonormality check and principal angles, O(d m^2 + d m m*);"
          " ODE: solve and observables)")
    print(f"{'d':>5} {'m':>5} {'m*':>5} | {'setup ms':>8} {'ODE ms':>8} {'nfev':>6} | "
          f"{'Radau ms':>9} {'nfev':>6} {'x':>6} | {'overlaps ms':>11} {'x':>6} | "
          f"{'1e6 d: ms':>9} {'nfev':>6}")
    gam = np.concatenate([[0.0], np.geomspace(1e-3, 10.0, 399)])
    for d in ds:
        for a, s in PANELS[:1] if _SMOKE["on"] else PANELS:
            m, ms = int(a * d), int(s * d)
            W0, Ws = orthonormal(d, m, seed=0), orthonormal(d, ms, seed=1)
            total, _ = _median_time(lambda: ex.exact_flow(W0, Ws, d * gam))
            spec = ex._principal_angles(W0, Ws) + (m, ms)

            def ode(x, solver=None):
                return ex._ortho_batch([spec], x, [1.0], 1e-10, 1e-13, solver)[0]

            t_ode, r = _median_time(lambda: ode(d * gam))
            radau, rr = _median_time(lambda: ode(d * gam, "Radau"), 1)
            line = (f"{d:>5} {m:>5} {ms:>5} | {1e3 * (total - t_ode):>8.1f} "
                    f"{1e3 * t_ode:>8.1f} {r['nfev']:>6} | {1e3 * radau:>9.1f} {rr['nfev']:>6} "
                    f"{radau / t_ode:>6.1f} | ")
            if d <= 80:
                ov, _ = _median_time(lambda: simulate(W0, Ws, gamma=gam, method="overlaps"), 1)
                line += f"{1e3 * ov:>11.1f} {ov / total:>6.1f} | "
            else:
                line += f"{'-':>11} {'-':>6} | "
            long, rl = _median_time(lambda: ode(d * 1e5 * gam), 1)
            print(line + f"{1e3 * long:>9.1f} {rl['nfev']:>6}", flush=True)


def batch(quick=False):
    from symflow.apps import figures
    from symflow.apps.run import make_instance

    cfg = figures._SETTINGS[quick]
    print(f"\n3. batch: the exact runs of Figures 2+3 (rtol 1e-5, {cfg['points']} points), "
          "CPU s")
    tasks = figures._flow_tasks(2, cfg["d23"], cfg["reps"], 0, "orthonormal", "exact",
                                cfg["points"])
    inst = [make_instance(tk["d"], tk["m"], tk["m_star"], "orthonormal", "orthonormal",
                          tk["seed"]) for tk in tasks]
    grid = tasks[0]["grid"]
    one, _ = _median_time(lambda: [simulate(a, b, gamma=grid, method="exact",
                                            rtol=figures.RTOL_EXACT) for a, b in inst],
                          clock=time.process_time)
    joint, trs = _median_time(lambda: simulate_batch([a for a, _ in inst],
                                                     [b for _, b in inst], gamma=grid,
                                                     rtol=figures.RTOL_EXACT),
                              clock=time.process_time)
    print(f"{len(tasks)} runs: one solve per run {one:.3f} s, one batch {joint:.3f} s "
          f"(x{one / joint:.1f}); batch: {trs[0].meta['solver']}, nfev "
          f"{trs[0].meta['nfev']}")


def general(ds, big):
    print("\n4. general start and teacher (Gaussian), (m, m*) = (d/2, d/4), gamma <= 10")
    print(f"{'d':>5} {'m':>5} {'m*':>5} {'rtol':>6} | {'exact s':>8} {'nfev':>6} {'njev':>5} "
          f"| {'overlaps s':>10} {'x':>6} {'err phi':>8} {'err chi':>8}")
    gam = np.concatenate([[0.0], np.geomspace(1e-3, 10.0, 40)])
    cases = [(d, d // 2, d // 4, 1e-8) for d in ds]
    if big:
        cases += [(2000, 1000, 500, 1e-6), (2000, 1000, 500, 1e-8)]
    for d, m, ms, rtol in cases:
        W0, Ws = gaussian(d, m, seed=0), gaussian(d, ms, seed=1)
        reps = 3 if d <= 200 else 1
        wall, tr = _median_time(lambda: simulate(W0, Ws, gamma=gam, method="exact",
                                                 rtol=rtol), reps)
        line = (f"{d:>5} {m:>5} {ms:>5} {rtol:>6.0e} | {wall:>8.3f} {tr.meta['nfev']:>6} "
                f"{tr.meta['njev']:>5} | ")
        if d <= 200:
            wo, ov = _median_time(lambda: simulate(W0, Ws, gamma=gam, method="overlaps",
                                                   rtol=1e-11), 1)
            line += (f"{wo:>10.3f} {wo / wall:>6.1f} {np.max(np.abs(tr.phi - ov.phi)):>8.1e} "
                     f"{np.max(np.abs(tr.chi - ov.chi)):>8.1e}")
        else:
            line += f"{'(hours)':>10}"
        print(line, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="d in {20, 40} only")
    ap.add_argument("--big", action="store_true", help="add d = 2000 to the general path")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    args = ap.parse_args(argv)
    _SMOKE["on"] = args.smoke
    ds = [20] if args.smoke else [20, 40] if args.quick else None
    methods(ds or [20, 40, 80, 200])
    single_runs(ds or [20, 40, 80, 200, 2000])
    batch(quick=args.smoke)
    general(ds or [20, 80, 200], args.big and not args.smoke)


if __name__ == "__main__":
    main()
