"""Benchmark of symflow.numerics.highdim (MATH.md section 6): wall time per curve on gamma
in [0, 10] and accuracy, against the reference approach (fixed-step explicit Euler, step 2e-5).

Run: python benchmarks/bench_limit.py [--euler-fraction F] [--repeat R] [--smoke]
(--smoke: a 3 x 3 grid, one repetition, 0.1% of the Euler steps: checks the script runs)

Part 1 (batch): a 20 x 20 (alpha, alpha*) grid in [0.05, 1]^2 on gamma in [0, 10] (101
points) as one batched ``limit(A, S, gamma)`` call, against serial Python loops over
``limit(a, s, gamma)`` in the same run (the default method, and method="DOP853", the
default before batching); CPU seconds (time.process_time, best of R), the ratio, and the
largest batch-vs-loop difference.  Goals: grid <= 0.5 CPU-s, one curve <= 5 ms.

Part 2 (one curve):
Accuracy is measured against symflow.numerics.highdim at rtol = 1e-13 (DOP853; agrees with an
independent (F, J)-variables quadrature solver to ~1e-10, see tests/test_limit.py).
Euler integrates the same right-hand side (log F, log J) with step 2e-5; with
--euler-fraction F < 1 only the first F of the steps are run and the time is extrapolated
(the error is then reported on the part that was run).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from symflow.generated import limit_numpy as _k
from symflow.numerics.highdim import _pieces, limit
from symflow.numerics.wachter import wachter_edges

CASES = [(0.5, 0.25), (0.5, 0.5), (0.25, 0.5)]
H = 2e-5
T = 10.0


def euler(a, s, n_steps, h=H):
    """Explicit Euler on the limit system; returns phi on the grid gamma = h * (0..n)."""
    r1, r2 = wachter_edges(a, s)
    p = max(a + s - 1, 0.0)
    f = y = 0.0
    out_every = int(round(0.1 / h))
    g_out, phi_out = [], []
    for i in range(n_steps + 1):
        g = i * h
        log_v, v, _, ss = _pieces(g, y, a, s, r1, r2, p)
        if i % out_every == 0:
            g_out.append(g)
            phi_out.append(float(_k.limit_phi(f, log_v, v, ss, a)))
        df, dy = float(_k.limit_dlogf(v, ss, a)), float(_k.limit_dlogj(v, ss, a))
        f += h * df
        y += h * dy
    return np.array(g_out), np.array(phi_out)


def _cpu(fn, repeat):
    """Best CPU time of ``repeat`` calls and the last result."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def bench_grid(repeat, n=20):
    ax = np.linspace(0.05, 1.0, n)
    A, S = np.meshgrid(ax, ax, indexing="ij")
    grid = np.linspace(0.0, T, 101)
    t_batch, tr = _cpu(lambda: limit(A, S, grid), repeat)
    print(f"{n} x {n} grid, gamma in [0, {T:g}] (101 points), CPU seconds (best of {repeat}):")
    print(f"  batched limit(A, S, gamma)      {t_batch:8.3f} s   (nfev {tr.meta['nfev']}, "
          f"stiff part: {tr.meta['stiff']})")
    for method in ("auto", "DOP853"):
        t_loop, cells = _cpu(lambda: [limit(a, s, grid, method=method)
                                      for a, s in zip(A.ravel(), S.ravel())], 1)
        err = max(max(np.abs(c.phi - p).max(), np.abs(c.chi - x).max())
                  for c, p, x in zip(cells, tr.phi.reshape(-1, grid.size),
                                     tr.chi.reshape(-1, grid.size)))
        print(f"  serial loop, method={method!r:9} {t_loop:8.3f} s   batch is "
              f"{t_loop / t_batch:5.1f}x faster; max |batch - loop| (phi, chi) {err:.1e}")
    t_one = min(_cpu(lambda: limit(a, s, grid), repeat)[0] for a, s in CASES)
    print(f"one curve (best case of {CASES}): {1e3 * t_one:.2f} ms CPU")
    print()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--euler-fraction", type=float, default=0.1,
                    help="fraction of the Euler steps run (time extrapolated)")
    ap.add_argument("--repeat", type=int, default=5, help="repetitions of each timing")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    args = ap.parse_args(argv)
    if args.smoke:
        args.euler_fraction, args.repeat = 1e-3, 1
    bench_grid(args.repeat, n=3 if args.smoke else 20)
    n_total = int(round(T / H))
    n_run = int(round(args.euler_fraction * n_total))
    print(f"gamma in [0, {T}], Euler step {H} ({n_total} steps); Euler runs {n_run} steps"
          f" ({args.euler_fraction:.0%}) and its time is extrapolated x{n_total / n_run:.1f}")
    print(f"{'case':>12} {'limit ms':>9} {'nfev':>5} {'err phi':>9} {'err chi':>9} "
          f"{'Euler s':>9} {'Euler err':>9} {'speedup':>8} {'err ratio':>9}")
    grid = np.linspace(0.0, T, 101)
    for a, s in CASES:
        ref = limit(a, s, grid, rtol=1e-13)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            tr = limit(a, s, grid)
            times.append(time.perf_counter() - t0)
        t_lim = min(times)
        err_phi = np.abs(tr.phi - ref.phi).max()
        err_chi = np.abs(tr.chi - ref.chi).max()
        t0 = time.perf_counter()
        g_e, phi_e = euler(a, s, n_run)
        t_eu = (time.perf_counter() - t0) * n_total / n_run
        ref_e = limit(a, s, g_e, rtol=1e-13).phi
        err_eu = np.abs(phi_e - ref_e).max()
        print(f"{str((a, s)):>12} {1e3 * t_lim:9.2f} {tr.meta['nfev']:5d} {err_phi:9.1e} "
              f"{err_chi:9.1e} {t_eu:9.2f} {err_eu:9.1e} {t_eu / t_lim:8.0f} "
              f"{err_eu / max(err_phi, 1e-16):9.1e}")
    print("err: max over the output grid of |phi - phi_ref| (chi likewise); Euler err over "
          f"gamma in [0, {n_run * H:g}] only.")


if __name__ == "__main__":
    main()
