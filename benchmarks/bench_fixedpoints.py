"""Benchmark of issue 15: fixed points of the erf committee and the symmetric ansatz.

1. Fixed-point search + classification for K = M = 8 (erf, T = I): wall time, number and
   kinds of fixed points, size of the reduced symmetric ODE (4 scalars) vs the full one
   (K (K + 1) / 2 + K^2 overlaps).
2. ``simulate`` on the symmetric ansatz (method="symmetric") vs the full overlap ODE at
   K = 100 (gradient flow, t in [0, T]): state sizes, wall times, speed-up, and the
   largest difference of the risk between the two (same run).

Run: ``python benchmarks/bench_fixedpoints.py`` (``--smoke``: K = 4 and 10, short horizon).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from symflow import Model, simulate
from symflow.numerics.fixedpoints import fixed_points
from symflow.numerics.init import from_overlaps

ERF = "erf(z/sqrt(2))"


def bench_fixed_points(K):
    mod = Model(ERF, K, K, loss_scale=0.5)
    mod.flow(np.eye(K), np.eye(K), np.eye(K))  # derivation and kernels built (cached)
    t0 = time.perf_counter()
    fps = fixed_points(mod, np.eye(K))
    dt = time.perf_counter() - t0
    kinds = {}
    for f in fps:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    print(f"fixed points, erf K = M = {K}: {len(fps)} found in {dt:.2f} s {kinds}; "
          f"reduced state 4 scalars vs full {K * (K + 1) // 2 + K * K}")
    for f in fps:
        print(f"   {f.kind:8s} risk {f.risk:.6g}  unstable {f.n_unstable}  "
              f"residual {f.residual:.1e}")


def bench_ansatz(K, horizon):
    mod = Model(ERF, K, K, loss_scale=0.5)
    q, c, r, s = 0.5, 0.1 / K, 0.2, 0.05 / K  # a valid Gram matrix for any K
    Q = (q - c) * np.eye(K) + c * np.ones((K, K))
    M = (r - s) * np.eye(K) + s * np.ones((K, K))
    W0, Ws = from_overlaps(Q, M, np.eye(K))
    t = np.linspace(0, horizon, 11)
    simulate(W0, Ws, t[:2], model=mod, method="symmetric")  # warm-up
    t0 = time.perf_counter()
    a = simulate(W0, Ws, t, model=mod, method="symmetric")
    ta = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = simulate(W0, Ws, t, model=mod)
    tb = time.perf_counter() - t0
    print(f"symmetric ansatz vs full ODE, K = {K}, t <= {horizon:g}: state {a.meta['state_size']}"
          f" vs {2 * K * K + 1}; {ta * 1e3:.1f} ms vs {tb:.2f} s: speed-up {tb / ta:.0f}x; "
          f"max |risk difference| {np.max(np.abs(a.risk - b.risk)):.1e}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes")
    args = ap.parse_args(argv)
    bench_fixed_points(2 if args.smoke else 8)
    bench_ansatz(4 if args.smoke else 100, 1.0 if args.smoke else 50.0)


if __name__ == "__main__":
    main()
