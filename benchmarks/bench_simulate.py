"""Benchmark of the simulators (issue 3).

Run: python benchmarks/bench_simulate.py [--quick]
For d in {20, 40, 80, 200}, (m, m*) = (d/2, d/4), orthonormal start and teacher, up to
gamma = 10: wall time of the exact, overlaps, weights and gd (eta = 1e-2) methods in the
same run, with the max error of phi and chi of each against the exact method.  gd runs
10 d / eta steps; where that is long, a prefix of the steps is timed, the time
extrapolated linearly and the error measured at the gamma the prefix reached.
"""

import sys
import time

import numpy as np

from symflow.numerics.init import orthonormal
from symflow.numerics.simulators import simulate

GD_STEP_BUDGET = 20_000


def main(quick=False):
    ds = [20, 40] if quick else [20, 40, 80, 200]
    print(f"{'d':>4} {'method':>9} {'wall s':>9} {'x exact':>8} {'err phi':>9} {'err chi':>9}"
          "  note")
    for d in ds:
        m, ms = d // 2, d // 4
        W0, Ws = orthonormal(d, m, seed=0), orthonormal(d, ms, seed=1)
        gam = np.linspace(0, 10, 41)
        res = {}
        for meth in ("exact", "overlaps", "weights"):
            t0 = time.perf_counter()
            tr = simulate(W0, Ws, gamma=gam, method=meth, rtol=1e-10)
            res[meth] = (time.perf_counter() - t0, tr, "")
        ex = res["exact"][1]
        eta = 1e-2
        total = int(round(10 * d / eta))
        steps = min(total, GD_STEP_BUDGET)
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
            ep = np.max(np.abs(tr.phi - ex.phi[:n]))
            ec = np.max(np.abs(tr.chi - ex.chi[:n]))
            print(f"{d:>4} {meth:>9} {wall:>9.3f} {wall / res['exact'][0]:>8.2f} {ep:>9.2e} "
                  f"{ec:>9.2e}  {note}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
