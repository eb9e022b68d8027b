"""Benchmark of the high-precision path (issue 5): digits obtained vs time.

Run: python benchmarks/bench_precision.py [--smoke]
The limit at gamma = 1 for (alpha, alpha*) = (0.5, 0.25) with ``limit(..., dps=D)`` for
D in {15, 30, 50}; digits = -log10 |value(D) - value(70)| (reference at dps 70), next to
the float solver (rtol 1e-13) in the same run.
(--smoke: gamma = 0.05, D = 15 against a reference at dps 25: checks that the script runs)
"""

import argparse
import time

import mpmath

from symflow.numerics.highdim import limit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="short horizon, low precision")
    smoke = ap.parse_args(argv).smoke
    a, s = 0.5, 0.25
    g, ref_dps, levels = ([0.05], 25, (15,)) if smoke else ([1.0], 70, (15, 30, 50))
    t0 = time.perf_counter()
    ref = limit(a, s, g, dps=ref_dps)
    t_ref = time.perf_counter() - t0
    print(f"reference dps={ref_dps}: {t_ref:.1f} s, phi({g[0]:g}) = "
          f"{mpmath.nstr(ref.phi[0], 40)}")
    t0 = time.perf_counter()
    fl = limit(a, s, g, rtol=1e-13)
    t_fl = time.perf_counter() - t0
    with mpmath.workdps(80):
        e = abs(mpmath.mpf(float(fl.phi[0])) - ref.phi[0])
    print(f"float solver rtol=1e-13: {t_fl * 1e3:.1f} ms, digits {-float(mpmath.log10(e)):.1f}")
    for dps in levels:
        t0 = time.perf_counter()
        r = limit(a, s, g, dps=dps)
        dt = time.perf_counter() - t0
        with mpmath.workdps(80):
            err = max(abs(r.phi[0] - ref.phi[0]), abs(r.chi[0] - ref.chi[0]))
        dig = -float(mpmath.log10(err)) if err > 0 else float("inf")
        print(f"dps={dps:>3}: {dt:7.1f} s, digits {dig:5.1f} (promised >= {dps - 5}), "
              f"time ratio vs float {dt / t_fl:.0f}x")


if __name__ == "__main__":
    main()
