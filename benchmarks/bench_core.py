"""Benchmark of the foundation (issue 2): the moment engine and the risk kernel.

Run: python benchmarks/bench_core.py [--smoke]
(--smoke: a degree-4 polynomial and a batch of 100, once: checks that the script runs)
- time of ``expect`` on a degree-8 polynomial in 4 fields with symbolic covariance;
- throughput of the generated ``risk_from_overlaps`` batched over 10^4 instances at
  m = m* = 10 against a hand-written numpy expression of MATH.md section 2, same run.
"""

import argparse
import time

import numpy as np
import sympy as sp

from symflow.engine.moments import expect
from symflow.generated import quadratic_numpy
from symflow.numerics.kernels import risk_from_overlaps


def best_of(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def hand_written(Q, M, P):
    tq = np.trace(Q, axis1=-2, axis2=-1)
    tp = np.trace(P, axis1=-2, axis2=-1)
    return (0.5 * (np.sum(Q**2, axis=(-2, -1)) - 2 * np.sum(M**2, axis=(-2, -1))
                   + np.sum(P**2, axis=(-2, -1))) + 0.25 * (tq - tp) ** 2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    smoke = ap.parse_args(argv).smoke
    f = sp.symbols("x0:4")
    C = sp.Matrix(4, 4, lambda i, j: sp.Symbol(f"c{min(i, j)}{max(i, j)}"))
    poly = (f[0] + 2 * f[1] - f[2] + f[3]) ** 4 * (f[0] * f[1] + f[2] * f[3] - f[1] ** 2) ** 2
    if smoke:
        poly = (f[0] + 2 * f[1] - f[2] + f[3]) ** 2 * (f[0] * f[1] + f[2] * f[3])
    t_exp = best_of(lambda: expect(poly, f, C), repeat=1 if smoke else 3)
    print(f"expect, degree-{sp.Poly(poly, *f).total_degree()} polynomial in 4 fields, "
          f"symbolic covariance: {t_exp:.3f} s (target < 1 s at degree 8)")

    rng = np.random.default_rng(0)
    n, m = (100 if smoke else 10_000), 10
    W = rng.standard_normal((n, 20, m)) / np.sqrt(20 * m)
    Ws = rng.standard_normal((20, m)) / np.sqrt(20 * m)
    Q = np.swapaxes(W, -1, -2) @ W
    M = np.swapaxes(W, -1, -2) @ Ws
    P = np.broadcast_to(Ws.T @ Ws, Q.shape)
    assert np.allclose(risk_from_overlaps(Q, M, P), hand_written(Q, M, P), rtol=1e-12)
    rep = 1 if smoke else 5
    t_api = best_of(lambda: risk_from_overlaps(Q, M, P), rep)
    t_gen = best_of(lambda: quadratic_numpy.risk_from_overlaps(Q, M, P), rep)
    t_hand = best_of(lambda: hand_written(Q, M, P), rep)
    print(f"risk_from_overlaps, batch {n}, m = m* = 10: hand-written {t_hand * 1e3:.2f} ms; "
          f"generated kernel {t_gen * 1e3:.2f} ms ({n / t_gen:.3g} instances/s, "
          f"ratio {t_gen / t_hand:.2f}); public API with input validation "
          f"{t_api * 1e3:.2f} ms (ratio {t_api / t_hand:.2f})")


if __name__ == "__main__":
    main()
