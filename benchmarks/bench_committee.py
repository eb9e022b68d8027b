"""Benchmark of the erf soft-committee ODE with the online-SGD lr^2 term (issue 12).

Run: python benchmarks/bench_committee.py [--smoke] [--profile]
(single-threaded BLAS recommended for comparable numbers: OPENBLAS_NUM_THREADS=1)

1. Right-hand side of the online-SGD overlap ODE of the soft committee machine
   (``Model("erf(z/sqrt(2))", K, K, loss_scale=0.5, noise=0.01)``, lr = 0.5) at
   K = M in {2, 4, 8, 16} (``--smoke``: {2, 3}), three ways:

   - symflow: ``model.kernels.overlap_flow`` + ``model.kernels.sgd_term`` (generated
     from the derivation), combined as ``lr * flow + lr^2 * sgd``; also the public
     ``Model.sgd_flow`` (the same plus input checks);
   - loop: a straightforward per-entry Python loop over the closed-form integrals of
     Saad & Solla (1995) / Goldt et al. (2019), typed in below from the literature
     (I3, I4, J2; scalar ``math`` calls, the way the public reference codes do it);
   - vectorised: the same closed forms by hand in numpy, broadcast over (j, k, p, q).

   All three are checked to agree to 1e-10 (max abs difference) before timing.  Times
   are the median of 5 batches (each batch >= 0.1 s or one call), ratios are within
   this run.  Goals: symflow within 1.5x of the hand-vectorised code, >= 50x faster than
   the loop.
2. Time to build the model (derivation + code generation + first kernel call) in a first
   process with a fresh, empty kernel cache ($SYMFLOW_CACHE in a temporary directory)
   against a second process that loads the cached kernels.
3. ``--profile``: where the time of symflow's RHS goes at the smallest K (every
   statement of the generated modules timed by an instrumented copy), and two variants
   of the generated SGD module (``np.clip`` replaced; the three identical block kernels
   merged into one call) timed against the hand-vectorised code.

Measured (2-core machine shared with other jobs, OPENBLAS_NUM_THREADS=1; single
timings vary by ~30 % between runs, the ratios less):

1. K = 2, 4, 8, 16: symflow 328, 363, 650, 4495 us; hand-vectorised 103, 111, 375,
   7378 us; loop 109, 1225, 17363, 264168 us.  symflow / vectorised = 3.2, 3.3, 1.7,
   0.61; loop / symflow = 0.3, 3.4, 27, 59 (the three agree to 3e-15).  Both goals are
   met at K = 16 only: below, a fixed cost of ~300 us per call dominates.
   ``Model.sgd_flow`` adds ~70 us of input checks.
2. First process (empty cache) 1.8 s: Model 1.34 s + first sgd_flow 0.21 s; second
   process 0.72 s: Model 0.49 s (imports of sympy and scipy.special to build and hash
   the spec; the code generator is not imported) + 0.01 s.  Build 3x faster cached.
3. K = 2: sgd_term 247 us = three identical four-field kernels ``_SS_phi4``,
   ``_ST_phi4``, ``_TT_phi4`` (52-60 us each: ~40 numpy calls on 16-element arrays; the
   last statement, with ``numpy.clip`` and three ``numpy.maximum`` guards, 21 us) +
   three block sums (26 us) + the noise term with ``np.where`` / ``np.eye`` masking
   (22 us); overlap_flow 91 us, of which overlap_grad 77 us (each returned expression
   padded with ``+ 0.0 * (x + y + z)``, ``np.where`` masks of the QQ diagonal).  One
   merged kernel call over the concatenated units (what the generator could emit when
   student and teacher share the activation): sgd_term 217 -> 80 us at K = 2, RHS /
   vectorised 3.4 -> 1.8 (K = 2), 1.7 (K = 4), 1.35 (K = 8), but 1.6 at K = 16 (the
   merged grid has 4/3 the entries of the three blocks): merge below a size threshold
   only.  Replacing ``numpy.clip`` alone changes little here.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

LR, NOISE = 0.5, 0.01
TWO_PI = 2.0 / math.pi
FOUR_PI2 = 4.0 / math.pi**2


# --------------------------------------------------------------- the literature


def I3(C, a, b, c):
    """E[g'(u_a) u_b g(u_c)], g = erf(z / sqrt 2) (Saad & Solla 1995)."""
    L3 = (1 + C[a][a]) * (1 + C[c][c]) - C[a][c] ** 2
    return TWO_PI / math.sqrt(L3) * (C[b][c] * (1 + C[a][a]) - C[a][b] * C[a][c]) / (1 + C[a][a])


def I4(C, a, b, c, d):
    """E[g'(u_a) g'(u_b) g(u_c) g(u_d)] (Saad & Solla 1995)."""
    L4 = (1 + C[a][a]) * (1 + C[b][b]) - C[a][b] ** 2
    L0 = (L4 * C[c][d] - C[b][c] * C[b][d] * (1 + C[a][a]) - C[a][c] * C[a][d] * (1 + C[b][b])
          + C[a][b] * C[a][c] * C[b][d] + C[a][b] * C[a][d] * C[b][c])
    L1 = (L4 * (1 + C[c][c]) - C[b][c] ** 2 * (1 + C[a][a]) - C[a][c] ** 2 * (1 + C[b][b])
          + 2 * C[a][b] * C[a][c] * C[b][c])
    L2 = (L4 * (1 + C[d][d]) - C[b][d] ** 2 * (1 + C[a][a]) - C[a][d] ** 2 * (1 + C[b][b])
          + 2 * C[a][b] * C[a][d] * C[b][d])
    return FOUR_PI2 / math.sqrt(L4) * math.asin(L0 / math.sqrt(L1 * L2))


def J2(C, a, b):
    """E[g'(u_a) g'(u_b)] (Saad & Solla 1995)."""
    return TWO_PI / math.sqrt(1 + C[a][a] + C[b][b] + C[a][a] * C[b][b] - C[a][b] ** 2)


def rhs_loop(Q, R, T, lr, noise):
    """dQ/dt, dR/dt of online SGD (t = samples / d, step lr / d), per entry in Python:
    dR_in = lr [sum_m I3(i, n, m) - sum_j I3(i, n, j)],
    dQ_ik = lr [sum_m (I3(i,k,m) + I3(k,i,m)) - sum_j (I3(i,k,j) + I3(k,i,j))]
            + lr^2 [sum_nm I4(i,k,n,m) - 2 sum_jn I4(i,k,j,n) + sum_jl I4(i,k,j,l)
                    + noise J2(i, k)]    (students j, l; teacher units n, m at K + n)."""
    K, M = R.shape
    C = np.block([[Q, R], [R.T, T]]).tolist()
    dQ = np.zeros((K, K))
    dR = np.zeros((K, M))
    for i in range(K):
        for n in range(M):
            v = 0.0
            for m in range(M):
                v += I3(C, i, K + n, K + m)
            for j in range(K):
                v -= I3(C, i, K + n, j)
            dR[i, n] = lr * v
    for i in range(K):
        for k in range(K):
            v = 0.0
            for m in range(M):
                v += I3(C, i, k, K + m) + I3(C, k, i, K + m)
            for j in range(K):
                v -= I3(C, i, k, j) + I3(C, k, i, j)
            w = noise * J2(C, i, k)
            for n in range(M):
                for m in range(M):
                    w += I4(C, i, k, K + n, K + m)
            for j in range(K):
                for n in range(M):
                    w -= 2 * I4(C, i, k, j, K + n)
            for j in range(K):
                for m in range(K):
                    w += I4(C, i, k, j, m)
            dQ[i, k] = lr * v + lr * lr * w
    return dQ, dR


def rhs_vectorised(Q, R, T, lr, noise):
    """The same ODE, hand-vectorised: I3 over (i, b, c), I4 over (i, k, a, b) for all
    units a, b (students then teacher units), summed with signs s = (+1)^K, (-1)^M."""
    K, M = R.shape
    C = np.block([[Q, R], [R.T, T]])
    dg = np.diag(C)
    s = np.concatenate([np.ones(K), -np.ones(M)])
    Cs = C[:K]  # student rows (K, n)
    # I3[i, b, c] = E[g'(u_i) u_b g(u_c)]
    Caa = 1 + dg[:K, None, None]
    Cac = Cs[:, None, :]
    I3v = TWO_PI / np.sqrt(Caa * (1 + dg[None, None, :]) - Cac**2) \
        * (C[None, :, :] * Caa - Cs[:, :, None] * Cac) / Caa
    A = -(I3v @ s)  # (K, n): -sum_c s_c I3[i, b, c]
    dQ = lr * (A[:, :K] + A[:, :K].T)
    dR = lr * A[:, K:]
    # I4[i, k, a, b] = E[g'(u_i) g'(u_k) g(u_a) g(u_b)]
    ii = 1 + dg[:K, None, None, None]
    kk = 1 + dg[None, :K, None, None]
    ik = Q[:, :, None, None]
    ia, ib = Cs[:, None, :, None], Cs[:, None, None, :]
    ka, kb = Cs[None, :, :, None], Cs[None, :, None, :]
    L4 = ii * kk - ik**2
    L0 = L4 * C[None, None] - ka * kb * ii - ia * ib * kk + ik * (ia * kb + ib * ka)
    L1 = L4 * (1 + dg[None, None, :, None]) - ka**2 * ii - ia**2 * kk + 2 * ik * ia * ka
    L2 = L4 * (1 + dg[None, None, None, :]) - kb**2 * ii - ib**2 * kk + 2 * ik * ib * kb
    I4v = FOUR_PI2 / np.sqrt(L4) * np.arcsin(L0 / np.sqrt(L1 * L2))
    S = np.einsum("ikab,a,b->ik", I4v, s, s)
    q = np.diag(Q)
    S += noise * TWO_PI / np.sqrt((1 + q[:, None]) * (1 + q[None, :]) - Q**2)
    return dQ + lr * lr * S, dR


# ------------------------------------------------------------------------ timing


_TIMING = {"batches": 5, "min_batch": 0.1}  # --smoke: one short batch


def per_call(fn, *args, batches=None, min_batch=None):
    """Median seconds per call over ``batches`` batches of >= ``min_batch`` seconds."""
    batches = _TIMING["batches"] if batches is None else batches
    min_batch = _TIMING["min_batch"] if min_batch is None else min_batch
    fn(*args)
    t0 = time.perf_counter()
    fn(*args)
    one = time.perf_counter() - t0
    n = max(1, int(min_batch / max(one, 1e-9)))
    out = []
    for _ in range(batches if one < 2.0 else 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(*args)
        out.append((time.perf_counter() - t0) / n)
    return float(np.median(out))


def overlaps(K, seed=0):
    rng = np.random.default_rng(seed)
    d = 4 * K
    W, Ws = rng.standard_normal((d, K)) / math.sqrt(d), rng.standard_normal((d, K)) / math.sqrt(d)
    return W.T @ W, W.T @ Ws, Ws.T @ Ws


def rhs_benchmark(Ks):
    from symflow import Model

    print(f"1. RHS of the online-SGD committee ODE (erf, lr = {LR}, noise = {NOISE}), "
          "K = M; microseconds per call")
    print(f"{'K':>3} {'symflow':>10} {'sgd_flow':>10} {'vectorised':>11} {'loop':>12} "
          f"{'sym/vec':>8} {'loop/sym':>9} {'max |diff|':>11}")
    rows = []
    for K in Ks:
        mod = Model("erf(z/sqrt(2))", K, K, loss_scale=0.5, noise=NOISE)
        kern = mod.kernels
        Q, R, T = overlaps(K)

        def sym(Q, R, T, kern=kern):
            dQ, dR = kern.overlap_flow(Q, R, T)
            return LR * dQ + LR * LR * kern.sgd_term(Q, R, T), LR * dR

        a = sym(Q, R, T)
        b = rhs_vectorised(Q, R, T, LR, NOISE)
        c = rhs_loop(Q, R, T, LR, NOISE)
        d = mod.sgd_flow(Q, R, T, LR)
        diff = max(float(np.max(np.abs(x - y))) for u, v in ((a, b), (a, c), (a, d))
                   for x, y in zip(u, v))
        scale = max(1.0, max(float(np.max(np.abs(x))) for x in a))
        if not diff <= 1e-10 * scale:
            raise SystemExit(f"K={K}: the three right-hand sides differ by {diff:.3g}")
        ts = per_call(sym, Q, R, T)
        tf = per_call(mod.sgd_flow, Q, R, T, LR)
        tv = per_call(rhs_vectorised, Q, R, T, LR, NOISE)
        tl = per_call(rhs_loop, Q, R, T, LR, NOISE, batches=3)
        rows.append(dict(K=K, symflow=ts, sgd_flow=tf, vectorised=tv, loop=tl, diff=diff))
        print(f"{K:>3} {ts * 1e6:>10.1f} {tf * 1e6:>10.1f} {tv * 1e6:>11.1f} {tl * 1e6:>12.1f} "
              f"{ts / tv:>8.2f} {tl / ts:>9.1f} {diff:>11.2e}")
    ok_vec = all(r["symflow"] <= 1.5 * r["vectorised"] for r in rows)
    ok_loop = all(r["loop"] >= 50 * r["symflow"] for r in rows)
    print(f"   goals: symflow within 1.5x of vectorised: {'met' if ok_vec else 'NOT met'}; "
          f">= 50x faster than the loop: {'met' if ok_loop else 'NOT met'} (every K)")
    return rows


_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from symflow import Model
t1 = time.perf_counter()
K = int(sys.argv[1])
mod = Model("erf(z/sqrt(2))", K, K, loss_scale=0.5, noise=0.01)
t2 = time.perf_counter()
Q = np.eye(K); R = 0.5 * np.eye(K); T = np.eye(K)
mod.sgd_flow(Q, R, T, 0.5)
t3 = time.perf_counter()
print(json.dumps(dict(import_s=t1 - t0, model_s=t2 - t1, sgd_s=t3 - t2,
                      derived="symflow.codegen.render" in sys.modules)))
"""


def build_benchmark(K):
    print(f"2. building Model('erf(z/sqrt(2))', {K}, {K}, loss_scale=0.5, noise=0.01) and its "
          "SGD term: fresh cache vs cached (two processes)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, SYMFLOW_CACHE=cache)
        res = []
        for label in ("first process (empty cache)", "second process (cached)"):
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", _CHILD, str(K)], env=env,
                               capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            r = json.loads(p.stdout)
            res.append(dict(r, wall=wall))
            print(f"   {label}: process {wall:.2f} s (import symflow {r['import_s']:.2f} s, "
                  f"Model {r['model_s']:.2f} s, first sgd_flow {r['sgd_s']:.2f} s, "
                  f"code generator imported: {r['derived']})")
        first, second = res
        build = lambda r: r["model_s"] + r["sgd_s"]  # noqa: E731
        print(f"   build (Model + first sgd_flow): {build(first):.2f} s -> {build(second):.3f} s "
              f"({build(first) / build(second):.0f}x); whole process "
              f"{first['wall'] / second['wall']:.1f}x")
    return res


class _Instrument(ast.NodeTransformer):
    """Time every top-level statement (and those inside ``with`` blocks) of the named
    functions of a generated module: ``_ACC[i] += perf_counter() - t0`` around each."""

    def __init__(self, funcs):
        self.funcs, self.labels = funcs, []

    def _timed(self, st, label):
        i = len(self.labels)
        self.labels.append(label.replace("\n", " ")[:96])
        return [ast.parse("_t0 = _pc()").body[0], st,
                ast.parse(f"_ACC[{i}] += _pc() - _t0").body[0]]

    def _wrap(self, body):
        out = []
        for st in body:
            if isinstance(st, ast.With):
                st.body = self._wrap(st.body)
                out.append(st)
            elif isinstance(st, ast.Return):
                assign = ast.Assign(targets=[ast.Name("_r", ast.Store())], value=st.value)
                out += self._timed(assign, "return " + ast.unparse(st.value))
                out.append(ast.parse("return _r").body[0])
            else:
                out += self._timed(st, ast.unparse(st))
        return out

    def visit_FunctionDef(self, node):
        if node.name in self.funcs:
            self.labels.append(f"--- {node.name}")
            node.body = self._wrap(node.body)
        return node


def line_profile(src, funcs, entry, args, n=200, passes=7):
    """(seconds per call, [(statement, seconds per call)]) of ``entry`` in the module
    ``src``; per statement the minimum over ``passes`` passes of ``n`` calls (the machine
    is shared: the minimum is the least disturbed)."""
    ins = _Instrument(set(funcs))
    tree = ast.fix_missing_locations(ins.visit(ast.parse(src)))
    acc = np.zeros(len(ins.labels) + 1)
    ns = {"_pc": time.perf_counter, "_ACC": acc}
    exec(compile(tree, "<instrumented>", "exec"), ns)
    f = ns[entry]
    f(*args)
    best, total = None, float("inf")
    for _ in range(passes):
        acc[:] = 0
        t0 = time.perf_counter()
        for _ in range(n):
            f(*args)
        total = min(total, (time.perf_counter() - t0) / n)
        best = acc / n if best is None else np.minimum(best, acc / n)
    return total, list(zip(ins.labels, best))


def _variant_sources(src):
    """The generated SGD module with ``numpy.clip(u, lo, hi)`` replaced by
    ``numpy.minimum(numpy.maximum(u, lo), hi)`` (same values; no Python-level dispatch)."""
    import re

    return re.sub(r"numpy\.clip\(", "_clip(", src) + (
        "\n\ndef _clip(u, lo, hi):\n    return numpy.minimum(numpy.maximum(u, lo), hi)\n")


def _merged(phi4, noise):
    """What the generator could emit when student and teacher share the activation: ONE
    evaluation of the (identical) four-field kernel on the concatenated units
    (m, m, m + m*, m + m*), weighted by w = (a, -a*), instead of three block calls."""
    def sgd_term(Q, M, P):
        K = Q.shape[0]
        C = np.block([[Q, M], [M.T, P]])
        dg, Cs = np.diag(C), C[:K]
        w = np.concatenate([np.ones(K), -np.ones(M.shape[1])])
        v = phi4(dg[:K, None, None, None], Q[:, :, None, None], Cs[:, None, :, None],
                 Cs[:, None, None, :], dg[None, :K, None, None], Cs[None, :, :, None],
                 Cs[None, :, None, :], dg[None, None, :, None], C[None, None],
                 dg[None, None, None, :])
        q = np.diag(Q)
        return np.einsum("jkpq,p,q->jk", v, w, w) + noise * TWO_PI / np.sqrt(
            (1 + q[:, None]) * (1 + q[None, :]) - Q**2)
    return sgd_term


def profile(Ks, threshold_us=0.9):
    from symflow import Model
    from symflow.numerics.model import _build, _build_sgd

    K = Ks[0]
    mod = Model("erf(z/sqrt(2))", K, K, loss_scale=0.5, noise=NOISE)
    Q, R, T = overlaps(K)
    print(f"3. where symflow's RHS spends its time, K = M = {K} (statements of the generated "
          f"modules taking >= {threshold_us} us per call; instrumented)")
    for src, funcs, entry in (
            (_build_sgd(mod.spec, "numpy", None)[0], ("sgd_term", "_SS_phi4", "_noise_phi"),
             "sgd_term"),
            (_build(mod.spec, "numpy")[0], ("overlap_flow", "overlap_grad", "_QQ_grad",
                                            "_QM_grad", "_QQ_dpsi"), "overlap_flow")):
        total, rows = line_profile(src, funcs, entry, (Q, R, T))
        print(f"   {entry}: {total * 1e6:.1f} us per call")
        for label, sec in rows:
            if label.startswith("---") or sec * 1e6 >= threshold_us:
                print(f"   {sec * 1e6:8.1f}  {label}")
    print("   variants of the generated SGD module (same values to 1e-12): no np.clip; one "
          "merged kernel call; both")
    print(f"   {'K':>3} {'vectorised':>11} {'flow':>8} {'sgd gen':>9} {'no clip':>9} "
          f"{'merged':>9} {'both':>9} {'RHS/vec gen':>12} {'RHS/vec both':>13}")
    for K in Ks:
        mod = Model("erf(z/sqrt(2))", K, K, loss_scale=0.5, noise=NOISE)
        Q, R, T = overlaps(K)
        src = _build_sgd(mod.spec, "numpy", None)[0]
        ns_gen, ns_nc = {}, {}
        exec(compile(src, "<gen>", "exec"), ns_gen)
        exec(compile(_variant_sources(src), "<noclip>", "exec"), ns_nc)
        fns = [ns_gen["sgd_term"], ns_nc["sgd_term"], _merged(ns_gen["_SS_phi4"], NOISE),
               _merged(ns_nc["_SS_phi4"], NOISE)]
        ref = fns[0](Q, R, T)
        assert all(np.max(np.abs(f(Q, R, T) - ref)) < 1e-12 for f in fns[1:])
        tv = per_call(rhs_vectorised, Q, R, T, LR, NOISE)
        tf = per_call(mod.kernels.overlap_flow, Q, R, T)
        ts = [per_call(f, Q, R, T) for f in fns]
        print(f"   {K:>3} {tv * 1e6:>11.1f} {tf * 1e6:>8.1f} " + " ".join(
            f"{x * 1e6:>9.1f}" for x in ts) + f" {(tf + ts[0]) / tv:>12.2f} "
            f"{(tf + ts[3]) / tv:>13.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (K in {2, 3})")
    ap.add_argument("--profile", action="store_true", help="profile symflow's RHS")
    args = ap.parse_args(argv)
    Ks = (2, 3) if args.smoke else (2, 4, 8, 16)
    if args.smoke:  # checks that the script runs: one short timing batch, no subprocesses
        _TIMING.update(batches=1, min_batch=0.005)
    rhs_benchmark(Ks)
    if not args.smoke:
        build_benchmark(2)
    if args.profile:
        profile(Ks)


if __name__ == "__main__":
    main()
