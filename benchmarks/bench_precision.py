"""Benchmark of the high-precision path (issues 5 and 14): time and verified digits.

Run: python benchmarks/bench_precision.py [--quick] [--no-odefun] [--smoke]

1. The limit at gamma = 1 for the three MATH.md cases with ``limit(..., dps=D)``
   (Gragg-Bulirsch-Stoer, symflow.numerics.mpode), D in {30, 50}, next to the former
   ``mpmath.odefun`` path (``limit_mp(..., integrator="odefun")``) in the same run.
   digits = -log10 max(|phi - ref|, |chi - ref|), ref = the GBS path at D + 10 (what
   ``symflow check`` verifies); "agree" = digits of |GBS - odefun| (independent
   integrators).
2. ``simulate(..., dps=D)`` for method "overlaps" (d, m, m*) = (8, 3, 2) and "exact"
   (10, 4, 3) up to t = 2 d (the instances of the full ``symflow check``), same columns.

``--smoke``: gamma = 0.05 at D = 15 against D = 25 only (checks that the script runs).
``--quick``: D = 30 only.  ``--no-odefun``: skip the former path (the slow part: about
9 minutes for everything on one core, 2 without it).  Goals (issue 14): the three limit
cases together <= 3 s at D = 30 (former path 21 s) and <= 20 s at D = 50 (160 s).

Measured (shared 2-core machine, mpmath's python backend, no gmpy2; one run):

    case                 dps   GBS s  odefun s  ratio  digits (GBS, odefun, agree)
    limit (0.5, 0.25)     30    0.38      8.25   22.0  29.9 31.3 29.9
    limit (0.5, 0.5)      30    0.23      5.42   23.2  31.3 30.8 30.7
    limit (0.25, 0.5)     30    0.49      6.64   13.4  31.9 31.9 (identical)
    limit (0.5, 0.25)     50    1.14     59.98   52.8  49.9 50.9 49.9
    limit (0.5, 0.5)      50    0.85     43.52   51.3  49.8 51.2 49.8
    limit (0.25, 0.5)     50    1.42     59.44   41.8  49.3 51.2 49.3
    overlaps (8, 3, 2)    30   11.24     16.18    1.4  30.9 30.9 30.9
    overlaps (8, 3, 2)    50   29.91     95.20    3.2  50.2 51.2 50.2
    exact (10, 4, 3)      30    0.78     10.64   13.7  30.9 31.2 30.7
    exact (10, 4, 3)      50    2.95    105.91   35.9  50.4 51.2 50.3

Limit, three cases together: 1.1 s at D = 30 (20.3 s before), 3.4 s at D = 50 (163 s).
The overlap path gains least: its right-hand side (the generated matrix kernel, about
1 ms a call at any precision, mostly mpmath.matrix overhead) dominates, and GBS calls
it about k^2 times per step of order 2 k (9444 calls here) where odefun gets its Taylor
coefficients from few calls at many times the precision (2544 calls), which costs
little when a call's time does not depend on the precision.
"""

import argparse
import time

import mpmath
import numpy as np

from symflow.numerics.highdim import limit
from symflow.numerics.init import orthonormal
from symflow.numerics.precision import exact_mp, limit_mp, overlaps_mp
from symflow.numerics.simulators import simulate

CASES = [(0.5, 0.25), (0.5, 0.5), (0.25, 0.5)]


def _timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def _digits(x, ref, keys):
    with mpmath.workdps(100):
        err = max(abs(mpmath.mpf(a) - mpmath.mpf(b)) for k in keys
                  for a, b in zip(x[k], ref[k]))
    return -float(mpmath.log10(err)) if err > 0 else float("inf")


def _row(label, dps, t_new, t_old, dig_new, dig_old, agree, stats):
    def opt(x, fmt):
        return "-" if x is None else format(x, fmt)

    ratio = None if t_old is None else t_old / t_new
    print(f"{label:<22} {dps:>4} {t_new:>9.2f} {opt(t_old, '.2f'):>9} {opt(ratio, '.1f'):>7} "
          f"{dig_new:>7.1f} {opt(dig_old, '.1f'):>7} {opt(agree, '.1f'):>7}   "
          f"steps {stats['steps']} (rejected {stats['rejected']}), nfev {stats['nfev']}, "
          f"order {stats['min_order']}-{stats['max_order']}")


def _header(title):
    print(f"\n{title}")
    print(f"{'case':<22} {'dps':>4} {'GBS s':>9} {'odefun s':>9} {'ratio':>7} {'digits':>7} "
          f"{'odefun':>7} {'agree':>7}   GBS statistics")


def bench_limit(dps_list, odefun):
    _header("limit(alpha, alpha*, [1.0], dps=D): GBS vs the former mpmath.odefun path")
    keys = ("phi", "chi")
    for dps in dps_list:
        for a, s in CASES:
            new, t_new = _timed(limit, a, s, [1.0], dps=dps)
            ref = limit_mp(a, s, [1.0], dps + 10)
            new_d = {k: getattr(new, k) for k in keys}
            dig_new = _digits(new_d, ref, keys)
            old = t_old = dig_old = agree = None
            if odefun:
                old, t_old = _timed(limit_mp, a, s, [1.0], dps, integrator="odefun")
                dig_old, agree = _digits(old, ref, keys), _digits(old, new_d, keys)
            _row(f"({a}, {s})", dps, t_new, t_old, dig_new, dig_old, agree,
                 new.meta)


def bench_simulate(dps_list, odefun):
    _header("simulate(..., dps=D) up to t = 2 d: GBS vs the former mpmath.odefun path")
    keys = ("phi", "chi", "risk")
    for method, (d, m, ms), fn in (("overlaps", (8, 3, 2), overlaps_mp),
                                   ("exact", (10, 4, 3), exact_mp)):
        W0, Ws = orthonormal(d, m, seed=3), orthonormal(d, ms, seed=4)
        t = [0.0, 0.5 * d, d, 2.0 * d]
        for dps in dps_list:
            new, t_new = _timed(simulate, W0, Ws, t, method=method, dps=dps)
            ref = fn(W0, Ws, t, dps + 10)
            new_d = {k: getattr(new, k) for k in keys}
            dig_new = _digits(new_d, ref, keys)
            old = t_old = dig_old = agree = None
            if odefun:
                old, t_old = _timed(fn, W0, Ws, t, dps, integrator="odefun")
                dig_old, agree = _digits(old, ref, keys), _digits(old, new_d, keys)
            _row(f"{method} {(d, m, ms)}", dps, t_new, t_old, dig_new, dig_old, agree,
                 new.meta)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="dps 30 only")
    ap.add_argument("--no-odefun", action="store_true", help="skip the former (slow) path")
    ap.add_argument("--smoke", action="store_true", help="tiny: gamma 0.05, dps 15 vs 25")
    args = ap.parse_args(argv)
    if args.smoke:
        new, t_new = _timed(limit, 0.5, 0.25, [0.05], dps=15)
        ref = limit_mp(0.5, 0.25, [0.05], 25)
        dig = _digits({k: getattr(new, k) for k in ("phi", "chi")}, ref, ("phi", "chi"))
        print(f"smoke: limit dps 15 at gamma 0.05: {t_new:.2f} s, digits {dig:.1f}")
        return
    dps_list = [30] if args.quick else [30, 50]
    fl, t_fl = _timed(limit, 0.5, 0.25, [1.0], rtol=1e-13)
    ref = limit_mp(0.5, 0.25, [1.0], 40)
    print(f"float solver rtol=1e-13, (0.5, 0.25): {t_fl * 1e3:.1f} ms, digits "
          f"{_digits({'phi': np.asarray(fl.phi)}, ref, ('phi',)):.1f}")
    bench_limit(dps_list, not args.no_odefun)
    bench_simulate(dps_list, not args.no_odefun)


if __name__ == "__main__":
    main()
