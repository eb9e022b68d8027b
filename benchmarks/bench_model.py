"""Benchmark of the general Model (issue 8).

Run: python benchmarks/bench_model.py [--smoke]
(--smoke: m in {2, 4}, 5 calls per timing: checks that the script runs)
- derivation + code generation time for cubic activations at m = m* = 4 (gradient flow
  and the online-SGD eta^2 term), cold (cache cleared);
- cost of one overlap-ODE right-hand side evaluation vs m (gradient flow and SGD),
  against the paper's generated quadratic kernel in the same run.
"""

import argparse
import time

import numpy as np

from symflow.generated import quadratic_numpy as paper
from symflow.numerics.model import Model, _build, _build_sgd


def per_call(fn, *args, n=200):
    fn(*args)
    t0 = time.perf_counter()
    for _ in range(n):
        fn(*args)
    return (time.perf_counter() - t0) / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="small widths, few calls")
    smoke = ap.parse_args(argv).smoke
    _build.cache_clear()
    _build_sgd.cache_clear()
    t0 = time.perf_counter()
    mod = Model("z**3", 4, 4)
    t1 = time.perf_counter()
    _build_sgd(mod.spec)
    t2 = time.perf_counter()
    print(f"derive + generate, cubic, m = m* = 4: gradient flow {t1 - t0:.2f} s, SGD eta^2 "
          f"term {t2 - t1:.2f} s, total {t2 - t0:.2f} s (goal < 60 s)")
    _build.cache_clear()
    _build_sgd.cache_clear()
    t0 = time.perf_counter()
    Model("z**3 + z**2", 4, 4, teacher_activation="He(3, z)")
    print(f"derive + generate, z^3 + z^2 student / He_3 teacher: {time.perf_counter() - t0:.2f} s")
    print(f"{'m':>4} {'quad paper us':>14} {'quad Model us':>14} {'cubic GF us':>12} "
          f"{'cubic SGD us':>13}")
    rng = np.random.default_rng(0)
    for m in (2, 4) if smoke else (2, 4, 8, 16, 32):
        W = rng.standard_normal((64, m)) / 8
        Ws = rng.standard_normal((64, m)) / 8
        Q, M, P = W.T @ W, W.T @ Ws, Ws.T @ Ws
        quad = Model("z**2", m, m)
        cub = Model("z**3", m, m)
        n = 5 if smoke else 200
        tp = per_call(paper.overlap_flow, Q, M, P, n=n)
        tq = per_call(quad.flow, Q, M, P, n=n)
        tc = per_call(cub.flow, Q, M, P, n=n)
        ts = per_call(cub.sgd_flow, Q, M, P, 0.1, n=5 if smoke else 20 if m >= 16 else 100)
        print(f"{m:>4} {tp * 1e6:>14.1f} {tq * 1e6:>14.1f} {tc * 1e6:>12.1f} {ts * 1e6:>13.1f}")
    del mod


if __name__ == "__main__":
    main()
