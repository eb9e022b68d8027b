"""Reproduce the paper's Figures 1-6 with one command (MATH.md section 8).

``symflow figures [--figure N ...] [--out DIR] [--quick] [--reps R] [--seed S] [--jobs J]``
writes, for each figure N, ``figN.png``, ``figN.pdf``, ``figN.csv`` (the plotted data,
long format) and ``figN.json`` (parameters, seeds, package version, wall time, summary
numbers) into the output directory.  Every file is written atomically (temporary file
then ``os.replace``), after all the data of the figure has been computed.

Seeds: the instance of (figure, panel, d, repetition) is built by
``symflow.apps.run.make_instance(..., seed=s)`` with
``s = SeedSequence(seed, spawn_key=(figure, panel, d, rep)).generate_state(1)[0]``;
(Figures 2 and 3 share their runs, with figure = 2).  ``s`` is written to the CSV, so
any single run can be redone with ``symflow run --seed s`` (same d, m, m*, init).

Times: ``gamma = t / d`` for Figures 2-4 and 6, the flow time ``t`` for Figure 5.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from symflow._io import atomic_write_many

__all__ = ["make_figures", "add_cli", "FIGURES", "PANELS", "instance_seed"]

FIGURES = (1, 2, 3, 4, 5, 6)
#: (alpha, alpha*) = (m/d, m*/d) of the three panels of Figures 2-4 and 6.
PANELS = ((0.5, 0.25), (0.5, 0.5), (0.25, 0.5))
#: solver tolerance of the (general exact) runs of Figure 4.
RTOL_RUNS = 1e-6
#: tolerance of method="exact" in Figures 2-3 (error ~1e-6 on phi, chi; measured).
RTOL_EXACT = 1e-5

_SETTINGS = {
    False: dict(fig1_d=2000, d23=(20, 40, 80, 200), d4=(20, 40, 80, 200),
                dm5=((20, 10), (40, 20), (100, 50)), reps=5, points=121),
    True: dict(fig1_d=400, d23=(20, 40, 80), d4=(20, 40), dm5=((20, 10), (40, 20)),
               reps=2, points=61),
}
_GAMMA_MAX = 10.0
_T5 = 25.0  # horizon (time t) of Figure 5
_FIT5 = (20.0, 25.0)  # t window of the fit of c in c exp(-4 mu t) (if above roundoff)


def instance_seed(seed, figure, panel, d, rep):
    """Seed of one run, derived deterministically from the command's ``seed``.

    Parameters
    ----------
    seed : int >= 0
        The ``--seed`` of the command.
    figure, panel, d, rep : int >= 0
        Figure number, panel index, dimension and repetition index.

    Returns
    -------
    int
        ``SeedSequence(seed, spawn_key=(figure, panel, d, rep)).generate_state(1)[0]``,
        to be passed to :func:`symflow.apps.run.make_instance`.
    """
    ss = np.random.SeedSequence(seed, spawn_key=(figure, panel, d, rep))
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def _gamma_grid(points):
    return np.geomspace(1e-3, _GAMMA_MAX, points)


# --------------------------------------------------------------------------- runs


def _result(tr, W_star, wall):
    """Result dict of one run: the plotted curves and the teacher's spectrum summary."""
    ev = np.linalg.eigvalsh(W_star.T @ W_star)  # nonzero eigenvalues of Z* = W* W*^T
    return dict(phi=tr.phi, chi=tr.chi, risk=tr.risk, mu=float(ev[ev > 1e-12 * ev[-1]].min()),
                p2=float(np.sum(ev**2)), wall_time_s=wall)  # p2 = ||P||_F^2 = ||Z*||_F^2


def _run(task):
    """One finite-d run (executed in a worker process); returns (task, result dict)."""
    from symflow import simulate
    from symflow.apps.run import make_instance

    t0 = time.perf_counter()
    W0, Ws = make_instance(task["d"], task["m"], task["m_star"], task["init"], task["init"],
                           task["seed"])
    grid = {task["axis"]: task["grid"]}
    tr = simulate(W0, Ws, method=task["method"], rtol=task["rtol"], **grid)
    return task, _result(tr, Ws, time.perf_counter() - t0)


def _run_batch(tasks):
    """All ``tasks`` (one method, tolerance and grid) as one ``simulate_batch`` call in this
    process: for method="exact" a single vectorised solve (all 60 runs of Figures 2-3:
    0.22 CPU-s measured, against 0.33 s for one solve per run and 4.4 s for the earlier
    Radau path).  Each result's wall_time_s is its share of the batch."""
    from symflow import simulate_batch
    from symflow.apps.run import make_instance

    t0 = time.perf_counter()
    inst = [make_instance(tk["d"], tk["m"], tk["m_star"], tk["init"], tk["init"], tk["seed"])
            for tk in tasks]
    trs = simulate_batch([a for a, _ in inst], [b for _, b in inst], method=tasks[0]["method"],
                         rtol=tasks[0]["rtol"], seeds=[tk["seed"] for tk in tasks],
                         **{tasks[0]["axis"]: tasks[0]["grid"]})
    wall = (time.perf_counter() - t0) / len(tasks)
    return [_result(tr, Ws, wall) for tr, (_, Ws) in zip(trs, inst)]


_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class _Serial:
    """Executor interface (submit, map) running every task in this process."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        fut = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # delivered through the future, like a pool
            fut.set_exception(exc)
        return fut

    def map(self, fn, iterable):
        return [fn(v) for v in iterable]


@contextlib.contextmanager
def _pool(jobs):
    """Process pool whose workers use single-threaded BLAS.

    ``jobs == 1`` runs the tasks in this process.  Workers are spawned (not forked) with
    ``OPENBLAS_NUM_THREADS=1`` etc. unless the
    user set these variables: multi-threaded BLAS on small (100 x 100) matrices in
    several processes on a busy machine was measured ~100x slower per product.
    """
    if jobs == 1:  # in this process (no spawn and re-import cost)
        yield _Serial()
        return
    old = {k: os.environ.get(k) for k in _BLAS_ENV}
    for k in _BLAS_ENV:
        os.environ.setdefault(k, "1")
    try:
        with ProcessPoolExecutor(max_workers=jobs,
                                 mp_context=multiprocessing.get_context("spawn")) as ex:
            yield ex
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_all(tasks, pool, progress):
    """Run ``tasks`` (list of dicts) on the executor ``pool``; results in task order."""
    from tqdm.auto import tqdm

    order = sorted(range(len(tasks)), key=lambda i: -tasks[i]["cost"])  # long ones first
    results = [None] * len(tasks)
    bar = tqdm(total=len(tasks), unit="run", desc="symflow figures",
               disable=None if progress else True, leave=False)
    try:
        futs = {pool.submit(_run, tasks[i]): i for i in order}
        for f in as_completed(futs):
            results[futs[f]] = f.result()[1]
            bar.update()
    finally:
        bar.close()
    return results


def _flow_tasks(figure, ds, reps, seed, init, method, points):
    grid = _gamma_grid(points)
    tasks = []
    for p, (a, s) in enumerate(PANELS):
        for d in ds:
            m, ms = round(a * d), round(s * d)
            for r in range(reps):
                cost = (m * m + m * ms) * (50 if method == "overlaps" else 0) + 1000
                tasks.append(dict(figure=figure, panel=p, d=d, m=m, m_star=ms, rep=r,
                                  seed=instance_seed(seed, figure, p, d, r), init=init,
                                  method=method, axis="gamma", grid=grid, cost=cost,
                                  rtol=RTOL_EXACT if method == "exact" else RTOL_RUNS))
    return tasks


def _fig5_tasks(dm, reps, seed):
    t = np.linspace(0.0, _T5, 251)
    tasks = []
    for p, half in enumerate((True, False)):
        for d, m in dm:
            ms = m // 2 if half else m
            for r in range(reps):
                tasks.append(dict(figure=5, panel=p, d=d, m=m, m_star=ms, rep=r,
                                  seed=instance_seed(seed, 5, p, d, r), init="gaussian-raw",
                                  method="exact", rtol=1e-10, axis="t", grid=t,
                                  cost=(m * m + m * ms) * 50))
    return tasks


# ------------------------------------------------------------------------ output


def _write_file(path, text):
    with open(path, "w", newline="") as fh:
        fh.write(text)


def _csv_text(columns, rows):
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(columns)
    for row in rows:
        wr.writerow([_fmt(row.get(c, "")) for c in columns])
    return buf.getvalue()


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return v


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
#: PNG resolution (the PDF and SVG are vector graphics)
DPI = 150
FORMATS = ("png", "pdf", "svg")
#: what the shaded bands and lines of Figures 2-5 are (also written to figN.json)
BANDS = "lines: mean over the repetitions; shaded bands: min-max over the repetitions"
_TEX = {"phi": r"\varphi", "chi": r"\chi"}


def _band(ax, x, curves, color, label):
    """Mean line and min-max band of ``curves`` (reps, n)."""
    curves = np.asarray(curves)
    ax.fill_between(x, curves.min(0), curves.max(0), color=color, alpha=0.25, lw=0)
    ax.plot(x, curves.mean(0), color=color, lw=1.2, label=label)


def _panel_title(a, s):
    return (rf"$\alpha = {a:g}$, $\alpha^* = {s:g}$  "
            rf"($m = {a:g}\,d$, $m^* = {s:g}\,d$)")


def _qlabel(q, d="d"):
    """Mathtext of quantity q ("phi", "chi") at dimension d, e.g. phi_d(gamma)."""
    return rf"${_TEX[q]}_{{{d}}}(\gamma)$"


# ----------------------------------------------------------------------- figures


def _spectrum(args):
    """Eigenvalues of one Y_d (run in a worker process)."""
    from symflow.numerics.wachter import sample_overlap_spectrum

    return sample_overlap_spectrum(*args[:3], seed=args[3])


def _figure1(cfg, seed, reps, pool):
    from symflow.numerics.wachter import wachter_atoms, wachter_density, wachter_edges

    d, a, s = cfg["fig1_d"], 0.3, 0.5
    edges = np.linspace(0.0, 1.0, 51)
    bw = edges[1] - edges[0]
    centers = 0.5 * (edges[1:] + edges[:-1])
    rows, hists, n0, n1 = [], [], [], []
    seeds = [instance_seed(seed, 1, 0, d, r) for r in range(reps)]
    for r, (sd, lam) in enumerate(zip(seeds, pool.map(_spectrum, [(d, a, s, sd)
                                                                  for sd in seeds]))):
        atom = (lam == 0.0) | (lam == 1.0)
        n0.append(int(np.sum(lam == 0.0)))
        n1.append(int(np.sum(lam == 1.0)))
        h = np.histogram(lam[~atom], bins=edges)[0] / (d * bw)
        hists.append(h)
        rows += [dict(kind="histogram", d=d, rep=r, seed=sd, x=x, value=v)
                 for x, v in zip(centers, h)]
    hists = np.array(hists)
    xs = np.linspace(0.0, 1.0, 2001)[1:-1]
    dens = wachter_density(xs, a, s)
    rows += [dict(kind="density", d="inf", x=x, value=v) for x, v in zip(xs, dens)]
    atoms = wachter_atoms(a, s)
    rows += [dict(kind="atom", d="inf", x=loc, value=mass) for loc, mass in atoms]
    r1, r2 = wachter_edges(a, s)
    mean_h = hists.mean(0)
    exact_bins = np.array([wachter_density(np.linspace(lo, lo + bw, 201), a, s).mean()
                           for lo in edges[:-1]])  # bin averages of the density

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.bar(centers, mean_h, width=bw, color="tab:blue", alpha=0.5,
           label=rf"eigenvalues of $Y_d$, $d = {d}$ (mean of {reps} draws)")
    ax.errorbar(centers, mean_h, yerr=[mean_h - hists.min(0), hists.max(0) - mean_h],
                fmt="none", ecolor="tab:blue", lw=0.8, capsize=1.5,
                label=f"error bars: min-max over the {reps} draws")
    ax.plot(xs, dens, color="k", lw=1.3, label=r"Wachter density ($d = \infty$)")
    for loc, mass in atoms:
        ax.axvline(loc, color="tab:red", lw=2, label=f"atom {mass:.2f} at {loc:g}")
    ax.set_xlabel(r"eigenvalue $\lambda$ of $Y_d = U^\top U_* U_*^\top U$")
    ax.set_ylabel(r"density: counts / ($d\,\times$ bin width)")
    ax.set_title(rf"Fig. 1: spectrum of $Y_d$, $\alpha = {a}$, $\alpha^* = {s}$"
                 + ("" if atoms else " (no atoms)"))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.3 * max(mean_h.max(), dens[(xs > r1 + 0.02) & (xs < r2 - 0.02)].max()))
    ax.legend(fontsize=8, loc="upper center")
    fig.tight_layout()
    summary = dict(edges=[r1, r2], atoms=atoms, exact_zeros=n0, exact_ones=n1,
                   continuous_mass_empirical=float(mean_h.sum() * bw),
                   continuous_mass_theory=min(a, s) - max(a + s - 1, 0.0),
                   max_abs_hist_minus_bin_average=float(np.max(np.abs(mean_h - exact_bins))))
    summary["caption"] = (
        f"Eigenvalues of Y_d = U^T U* U*^T U (U, U* Haar, m = {round(a * d)}, "
        f"m* = {round(s * d)}, d = {d}): histogram with {edges.size - 1} bins, counts / "
        f"(d * bin width), bar height = mean over {reps} independent draws, error bars = "
        f"min-max over the draws; black line: the Wachter density (d = infinity); "
        "exact 0 / 1 eigenvalues (atoms) are counted separately (exact_zeros, exact_ones).")
    summary["error_bars"] = f"min-max over the {reps} draws of each bin (bars: mean)"
    params = dict(d=d, alpha=a, alpha_star=s, m=round(a * d), m_star=round(s * d),
                  reps=reps, bins=edges.size - 1, seeds=seeds)
    return fig, ["kind", "d", "rep", "seed", "x", "value"], rows, params, summary


def _limits(grid, rtol=1e-10):
    from symflow import limit

    return [limit(a, s, np.concatenate([[0.0], grid]), rtol=rtol) for a, s in PANELS]


def _flow_rows(tasks, results, lims, grid, quantity):
    rows = []
    for task, res in zip(tasks, results):
        rows += [dict(panel=task["panel"], d=task["d"], m=task["m"], m_star=task["m_star"],
                      rep=task["rep"], seed=task["seed"], gamma=g, value=v)
                 for g, v in zip(grid, res[quantity])]
    for p, lim in enumerate(lims):
        rows += [dict(panel=p, d="inf", gamma=g, value=v)
                 for g, v in zip(grid, getattr(lim, quantity)[1:])]
    return rows


def _gap_summary(tasks, results, lims, quantity):
    """Mean over reps of max_gamma |q_d - q_inf| per panel and d."""
    out = {}
    for p in range(len(PANELS)):
        ref = getattr(lims[p], quantity)[1:]
        per_d = {}
        for task, res in zip(tasks, results):
            if task["panel"] == p:
                per_d.setdefault(task["d"], []).append(np.max(np.abs(res[quantity] - ref)))
        out[f"panel{p}"] = {str(d): float(np.mean(v)) for d, v in per_d.items()}
    return out


def _curves(tasks, results, quantity, panel, d):
    return [res[quantity] for t, res in zip(tasks, results) if t["panel"] == panel
            and t["d"] == d]


def _flow_axes(axes, tasks, results, lims, grid, quantity, ds, ref_label, ref_style="--"):
    """Top-row panels: q_d(gamma) per d (mean line, min-max band) and the limit."""
    for p, ax in enumerate(axes):
        for i, d in enumerate(ds):
            _band(ax, grid, _curves(tasks, results, quantity, p, d), _COLORS[i % len(_COLORS)],
                  f"$d = {d}$")
        ax.plot(grid, getattr(lims[p], quantity)[1:], "k", ls=ref_style, lw=1.3,
                label=ref_label, zorder=4)
        ax.set_xscale("log")
        ax.set_xlabel(r"$\gamma = t/d$")
        ax.set_ylabel(_qlabel(quantity))
        ax.grid(alpha=0.3)


def _diff_axes(axes, tasks, results, lims, grid, quantity, ds):
    """Bottom-row panels: q_d(gamma) - q_inf(gamma) per d (mean line, min-max band)."""
    for p, ax in enumerate(axes):
        ref = getattr(lims[p], quantity)[1:]
        for i, d in enumerate(ds):
            _band(ax, grid, np.asarray(_curves(tasks, results, quantity, p, d)) - ref,
                  _COLORS[i % len(_COLORS)], f"$d = {d}$")
        ax.axhline(0.0, color="k", ls="--", lw=1.0)
        ax.set_xscale("log")
        ax.set_xlabel(r"$\gamma = t/d$")
        ax.set_ylabel(_qlabel(quantity) + " $-$ " + _qlabel(quantity, r"\infty"))
        ax.grid(alpha=0.3)


def _slope_inset(ax, panel, tasks, results, lim, grid, ds):
    """Inset of Fig. 2 (alpha < alpha*): phi + 4 gamma on a linear gamma axis, where the
    late-time guide phi = -4 gamma is the horizontal line 0 (on the main axes it lies
    under the limit curve, phi_inf = -4 gamma - 0.43)."""
    ins = ax.inset_axes([0.1, 0.42, 0.46, 0.36])
    sel = grid >= 1.0
    for i, d in enumerate(ds):
        c = np.asarray(_curves(tasks, results, "phi", panel, d))[:, sel]
        ins.plot(grid[sel], (c + 4 * grid[sel]).mean(0), color=_COLORS[i % len(_COLORS)],
                 lw=1.0)
    ins.plot(grid[sel], lim.phi[1:][sel] + 4 * grid[sel], "k--", lw=1.1)
    ins.axhline(0.0, color="tab:purple", ls=":", lw=1.4)
    ins.set_title(r"$\varphi + 4\gamma$ against $\gamma \geq 1$ (linear)", fontsize=7,
                  pad=2)
    ins.tick_params(labelsize=6, pad=1)
    ins.grid(alpha=0.3)
    return ins


def _figure_flow(figure, quantity, tasks, results, lims, cfg, reps, ds, init):
    grid = _gamma_grid(cfg["points"])
    plt = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.2), sharex=True)
    _flow_axes(axes[0], tasks, results, lims, grid, quantity, ds,
               r"$d = \infty$ (limit)")
    _diff_axes(axes[1], tasks, results, lims, grid, quantity, ds)
    for p, ax in enumerate(axes[0]):
        a, s = PANELS[p]
        ax.set_title(_panel_title(a, s), fontsize=9)
        if quantity == "chi":
            ax.axhline(min(1.0, np.sqrt(a / s)), color="tab:purple", lw=1.0, ls=":",
                       label=r"$\chi_\infty = \min(1, \sqrt{\alpha/\alpha^*})$")
        elif a < s:
            ax.plot(grid, -4.0 * grid, color="tab:purple", lw=1.4, ls=":", zorder=5,
                    label=r"guide $-4\gamma$ (inset: $\varphi + 4\gamma$)")
            _slope_inset(ax, p, tasks, results, lims[p], grid, ds)
            ax.legend(fontsize=7, loc="lower left")
    for ax in axes[0]:
        ax.tick_params(labelbottom=True)
    axes[0, 0].legend(fontsize=7, loc="upper left" if quantity == "phi" else "lower right")
    axes[1, 0].legend(fontsize=7, loc="best")
    what = _qlabel(quantity)
    fig.suptitle(f"Fig. {figure}: {what}, orthonormal start and teacher; bottom: difference "
                 rf"to $d = \infty$; {reps} repetitions (line: mean, band: min-max)",
                 fontsize=11)
    fig.tight_layout()
    rows = _flow_rows(tasks, results, lims, grid, quantity)
    summary = {f"mean_over_reps_max_abs_{quantity}_d_minus_limit":
               _gap_summary(tasks, results, lims, quantity),
               "bands": BANDS,
               "caption": (f"Top: {quantity}_d(gamma) for d in {list(ds)}, orthonormal start "
                           f"and teacher, method exact, {reps} repetitions per d; dashed "
                           f"black: d = infinity (symflow.limit).  Bottom: {quantity}_d - "
                           f"{quantity}_inf.  {BANDS}.")}
    return fig, rows, summary


def _figure4(tasks, results, lims, cfg, reps, ds):
    grid = _gamma_grid(cfg["points"])
    plt = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    rows = []
    for row, q in enumerate(("phi", "chi")):
        _flow_axes(axes[row], tasks, results, lims, grid, q, ds,
                   r"orthonormal $d = \infty$ (reference)", ref_style=":")
        for p, ax in enumerate(axes[row]):
            if row == 0:
                ax.set_title(_panel_title(*PANELS[p]), fontsize=9)
        for r in _flow_rows(tasks, results, lims, grid, q):
            r["quantity"] = q
            rows.append(r)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[1, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(r"Fig. 4: Gaussian start and teacher (entries $N(0, 1/(d k))$), "
                 f"{reps} repetitions (line: mean, band: min-max)", fontsize=11)
    fig.tight_layout()
    summary = {"final_chi_mean": {
        f"panel{p}": {str(d): float(np.mean([res["chi"][-1] for t, res in zip(tasks, results)
                                             if t["panel"] == p and t["d"] == d]))
                      for d in ds} for p in range(3)},
        "bands": BANDS,
        "caption": (f"phi_d(gamma) (top) and chi_d(gamma) (bottom) for d in {list(ds)}, "
                    "Gaussian start and teacher (entries N(0, 1/(d m)), N(0, 1/(d m*))), "
                    f"method exact, {reps} repetitions; dotted: the orthonormal d = "
                    f"infinity solution, a reference only.  {BANDS}.")}
    return fig, rows, summary


def _fit5(t, L, mu, p2, exponential):
    """Late-time summary of one Figure 5 run (time t, not gamma).

    Values below ``floor = 1e-12 ||P||_F^2`` are not used (the risk of the exact
    reduction is formed from non-negative per-direction terms, but the fits stay on the
    range where every method resolves it).
    m* = m: c and the slope of log L on the last 5 time units before t = 25 or before L
    first reaches the floor; m* = m/2: slope of log L against log t on t in [15, 25]
    (-2 for L ~ 1/t^2).
    """
    floor = 1e-12 * p2
    below = np.nonzero((L <= floor) & (t > 0))[0]
    valid = t < t[below[0]] if below.size else np.ones(t.size, bool)
    out = dict(mu=mu, floor=floor, t2_risk_at_T=float(t[-1] ** 2 * L[-1]))
    if exponential:
        t_end = t[valid][-1]
        win = valid & (t >= t_end - (_FIT5[1] - _FIT5[0]))
        c = float(np.exp(np.mean(np.log(L[win]) + 4 * mu * t[win])))
        slope = float(np.polyfit(t[win], np.log(L[win]), 1)[0])
        out.update(c=c, fit_window=[float(t[win][0]), float(t_end)], late_log_slope=slope,
                   slope_over_minus_4mu=slope / (-4 * mu))
    else:
        win = valid & (t >= 15.0)
        out.update(loglog_slope=float(np.polyfit(np.log(t[win]), np.log(L[win]), 1)[0]))
    return out, valid


def _figure5(tasks, results, cfg, reps):
    t = tasks[0]["grid"]
    plt = _plt()
    fig, (axl, axr) = plt.subplots(1, 2, figsize=(12, 4.4))
    rows, fits = [], []
    for i, (d, m) in enumerate(cfg["dm5"]):
        col = _COLORS[i % len(_COLORS)]
        for p in (0, 1):
            group = [(tk, res) for tk, res in zip(tasks, results)
                     if tk["panel"] == p and tk["d"] == d]
            gfits = []
            for tk, res in group:
                f, valid = _fit5(t, res["risk"], res["mu"], res["p2"], exponential=p == 1)
                f = dict(panel=p, d=d, m=m, m_star=tk["m_star"], rep=tk["rep"],
                         seed=tk["seed"], **f)
                gfits.append((f, valid))
                c = f.get("c", np.nan)
                rows += [dict(panel=p, d=d, m=m, m_star=tk["m_star"], rep=tk["rep"],
                              seed=tk["seed"], t=tt, risk=v, t2_risk=tt * tt * v, mu=res["mu"],
                              c_fit=c, fit_curve=c * np.exp(-4 * res["mu"] * tt))
                         for tt, v in zip(t, res["risk"])]
            fits += [f for f, _ in gfits]
            if p == 0:
                slopes = [f["loglog_slope"] for f, _ in gfits]
                _band(axl, t[1:], [t[1:] ** 2 * res["risk"][1:] for _, res in group], col,
                      rf"$d = {d}$, $m = {m}$, $m^* = {m // 2}$; "
                      rf"$d\log L / d\log t = {np.median(slopes):.2f}$ ($t \geq 15$, median)")
            else:
                (f, valid), (_, res) = gfits[0], group[0]
                ratio = np.median([g["slope_over_minus_4mu"] for g, _ in gfits])
                axr.semilogy(t[valid], res["risk"][valid], color=col, lw=1.3,
                             label=rf"$d = {d}$, $m = m^* = {m}$ (rep 0); late slope / "
                                   rf"$(-4\mu) = {ratio:.2f}$ (median of {len(gfits)})")
                axr.semilogy(t, f["c"] * np.exp(-4 * res["mu"] * t), color=col, ls="--",
                             lw=1)
    axl.set_xlabel(r"flow time $t$")
    axl.set_ylabel(r"$t^2 L(t)$")
    axl.set_title(rf"$m^* = m/2$: $L \sim 1/t^2$ ({reps} repetitions; line: mean, band: "
                  "min-max)", fontsize=9)
    axr.set_xlabel(r"flow time $t$")
    axr.set_ylabel(r"risk $L(t)$")
    axr.set_title(r"$m^* = m$: $L(t)$ (solid) vs $c\,e^{-4\mu t}$ (dashed, $c$ fitted at "
                  r"late $t$)", fontsize=9)
    for ax in (axl, axr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(r"Fig. 5: unnormalised Gaussian start and teacher (entries $N(0, 1/k)$); "
                 r"$\mu$ = smallest nonzero eigenvalue of $Z^*$", fontsize=11)
    fig.tight_layout()
    caption = (f"Unnormalised Gaussian start and teacher, (d, m) in {list(cfg['dm5'])}, "
               f"{reps} repetitions.  Left (m* = m/2): t^2 L(t), {BANDS}.  Right (m* = m): "
               "L(t) of repetition 0 (solid) and c exp(-4 mu t) (dashed) with c fitted on "
               "the fit window; mu = smallest nonzero eigenvalue of Z*.")
    return fig, rows, dict(fits=fits, bands=BANDS, caption=caption)


def _figure6(cfg):
    from symflow import limit

    g = np.linspace(0.0, 3.0, 301)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows, summary = [], {}
    for p, (a, s) in enumerate(PANELS):
        lim = limit(a, s, g, rtol=1e-12)
        gap = lim.chi_final - lim.chi
        rows += [dict(panel=p, alpha=a, alpha_star=s, gamma=x, chi=c, chi_inf=lim.chi_final,
                      gap=v) for x, c, v in zip(g, lim.chi, gap)]
        ok = gap > 1e-12  # below: solver noise (rtol = 1e-12)
        ax.semilogy(g[ok], gap[ok], color=_COLORS[p],
                    label=rf"$\alpha = {a:g}$, $\alpha^* = {s:g}$")
        summary[f"panel{p}"] = dict(chi_inf=lim.chi_final,
                                    gap_at={str(x): float(gap[np.argmin(abs(g - x))])
                                            for x in (0.5, 1.0, 2.0, 3.0)})
    ax.set_xlabel(r"$\gamma = t/d$")
    ax.set_ylabel(r"$\chi_\infty - \chi(\gamma)$")
    ax.set_title(r"Fig. 6: convergence of the overlap in the limit $d = \infty$", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    cols = ["panel", "alpha", "alpha_star", "gamma", "chi", "chi_inf", "gap"]
    summary["caption"] = ("chi_inf - chi(gamma) of the d = infinity limit (symflow.limit, "
                          "rtol 1e-12), chi_inf = min(1, sqrt(alpha / alpha*)), log scale; "
                          "values below 1e-12 (solver noise) are not drawn.")
    return fig, cols, rows, dict(gamma_max=3.0, points=g.size, rtol=1e-12), summary


# --------------------------------------------------------------------------- API


MAX_REPS = 1000  # each repetition is a full set of runs (regression: --reps 1e7 was accepted)


def _check_formats(formats):
    if isinstance(formats, str):
        formats = [f for f in formats.split(",") if f.strip()]
    fmts = []
    for f in formats:
        if not isinstance(f, str) or f.strip().lower() not in FORMATS:
            raise ValueError(f"formats must be among {FORMATS}, got {f!r}")
        if f.strip().lower() not in fmts:
            fmts.append(f.strip().lower())
    if not fmts:
        raise ValueError(f"formats must name at least one of {FORMATS}")
    return tuple(fmts)


def _check_args(figures, reps, seed, jobs):
    figs = sorted(set(int(f) for f in figures))
    if not figs:
        raise ValueError("give at least one figure number (1-6)")
    bad = [f for f in figs if f not in FIGURES]
    if bad:
        raise ValueError(f"figure numbers must be in 1..6, got {bad[0]}")
    if reps is not None and (int(reps) != reps or reps < 1 or reps > MAX_REPS):
        raise ValueError(f"reps must be an integer in [1, {MAX_REPS}], got {reps!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if jobs is not None and (int(jobs) != jobs or jobs < 1):
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    return figs


def make_figures(figures=FIGURES, out="figures_out", quick=False, reps=None, seed=0,
                 jobs=None, progress=True, formats=("png", "pdf")):
    """Compute and write the paper's Figures 1-6 (MATH.md section 8).

    Parameters
    ----------
    figures : iterable of int in 1..6
        Figures to make (2 and 3 share their runs).
    out : path
        Output directory (created).  For each figure N: figN.png, figN.pdf (see
        ``formats``), figN.csv (plotted data, long format; Figures 2-4 and 6 in
        gamma = t / d, Figure 5 in t) and figN.json (parameters, seeds, version, wall
        time, summary numbers, a caption saying what lines, bands and error bars are).
    quick : bool
        Smaller d and fewer repetitions (all figures in well under 30 s): Fig. 1 at
        d = 400, Figs. 2-3 at d in {20, 40, 80}, Fig. 4 at d in {20, 40}, Fig. 5 at
        (d, m) in {(20, 10), (40, 20)}, 2 repetitions, coarser gamma grid.
        Full: d = 2000; {20, 40, 80, 200}; {20, 40, 80, 200}; (20,10), (40,20),
        (100,50); 5 repetitions.
    reps : int >= 1, optional
        Repetitions (independent instances) per (panel, d); default 5 (quick: 2).
    seed : int >= 0
        Root seed; see :func:`instance_seed`.
    jobs : int >= 1, optional
        Worker processes (default ``os.cpu_count()``).
    progress : bool
        tqdm bar over the runs (shown only on a terminal).
    formats : sequence of {"png", "pdf", "svg"} or a comma-separated str
        Image formats written (PNG at 150 dpi; PDF and SVG are vector graphics).

    Returns
    -------
    dict
        ``{N: {"files": [paths], "wall_time_s": float}}`` plus ``"data_time_s"`` (time of
        the finite-d runs of each group: "fig1", "fig23", "fig4", "fig5", "fig6").

    Raises
    ------
    ValueError
        Figure number outside 1..6, reps or jobs < 1, negative seed, unknown format.

    Notes
    -----
    Figures 2-3 use ``method="exact"`` (orthonormal start and teacher) with
    ``rtol = 1e-5`` (error ~1e-6 against rtol = 1e-10, invisible in the plots), all runs
    as one vectorised solve (:func:`symflow.simulate_batch`); Figures 4
    and 5 use ``method="exact"`` on its general path (any start; rtol 1e-6 and 1e-10); the
    d = inf curves come from
    :func:`symflow.limit` (module symflow.numerics.highdim).  Source: MATH.md section 8.
    """
    from symflow import __version__

    figs = _check_args(figures, reps, seed, jobs)
    formats = _check_formats(formats)
    seed = int(seed)
    cfg = _SETTINGS[bool(quick)]
    reps = cfg["reps"] if reps is None else int(reps)
    jobs = (os.cpu_count() or 1) if jobs is None else int(jobs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = _gamma_grid(cfg["points"])
    summary = {"data_time_s": {}}
    base = dict(version=__version__, seed=seed, quick=bool(quick), reps=reps, jobs=jobs,
                formats=list(formats), argv=sys.argv,
                source="MATH.md section 8; Martin, Bach, Biroli (AISTATS 2024)")

    def image_writer(fig, fmt):
        return lambda tmp: fig.savefig(tmp, format=fmt, dpi=DPI)

    def finish(n, fig, cols, rows, params, extra, t0):
        """Write figN.{formats,csv,json}; wall time counted from t0 to the last file."""
        csv_text = _csv_text(cols, rows)
        wall = time.perf_counter() - t0
        meta = dict(base, figure=n, parameters=params, summary=extra, wall_time_s=wall)
        json_text = json.dumps(meta, indent=1, default=_json_default)
        writers = {out / f"fig{n}.{fmt}": image_writer(fig, fmt) for fmt in formats}
        writers[out / f"fig{n}.csv"] = lambda tmp: _write_file(tmp, csv_text)
        writers[out / f"fig{n}.json"] = lambda tmp: _write_file(tmp, json_text)
        try:  # the files of a figure land together (or not at all)
            atomic_write_many(writers)
        finally:
            _plt().close(fig)
        summary[n] = dict(files=[str(p) for p in writers], wall_time_s=wall)

    with _pool(jobs) as pool:  # workers start on the first submitted run
        if 1 in figs:
            t0 = time.perf_counter()
            fig, cols, rows, params, extra = _figure1(cfg, seed, reps, pool)
            summary["data_time_s"]["fig1"] = time.perf_counter() - t0
            finish(1, fig, cols, rows, params, extra, t0)

        flow_cols = ["panel", "d", "m", "m_star", "rep", "seed", "gamma", "value"]
        if 2 in figs or 3 in figs:
            t0 = time.perf_counter()
            tasks = _flow_tasks(2, cfg["d23"], reps, seed, "orthonormal", "exact", cfg["points"])
            results = _run_batch(tasks)
            lims = _limits(grid)
            data_t = time.perf_counter() - t0
            summary["data_time_s"]["fig23"] = data_t
            params = dict(panels=PANELS, d=cfg["d23"], gamma=[grid[0], _GAMMA_MAX],
                          points=grid.size, init="orthonormal", method="exact", rtol=RTOL_EXACT,
                          run_wall_time_s=[r["wall_time_s"] for r in results])
            for n, q in ((2, "phi"), (3, "chi")):
                if n in figs:
                    t1 = time.perf_counter()
                    fig, rows, extra = _figure_flow(n, q, tasks, results, lims, cfg, reps,
                                                    cfg["d23"], "orthonormal")
                    extra["data_time_s"] = data_t
                    finish(n, fig, flow_cols[:-1] + [q], [dict(r, **{q: r["value"]}) for r in rows],
                           params, extra, t1 - data_t)

        if 4 in figs:
            t0 = time.perf_counter()
            tasks = _flow_tasks(4, cfg["d4"], reps, seed, "gaussian", "exact", cfg["points"])
            results = _run_all(tasks, pool, progress)
            lims = _limits(grid)
            summary["data_time_s"]["fig4"] = time.perf_counter() - t0
            fig, rows, extra = _figure4(tasks, results, lims, cfg, reps, cfg["d4"])
            params = dict(panels=PANELS, d=cfg["d4"], gamma=[grid[0], _GAMMA_MAX],
                          points=grid.size, init="gaussian", method="exact", rtol=RTOL_RUNS,
                          run_wall_time_s=[r["wall_time_s"] for r in results])
            finish(4, fig, ["quantity"] + flow_cols, rows, params, extra, t0)

        if 5 in figs:
            t0 = time.perf_counter()
            tasks = _fig5_tasks(cfg["dm5"], reps, seed)
            results = _run_all(tasks, pool, progress)
            summary["data_time_s"]["fig5"] = time.perf_counter() - t0
            fig, rows, extra = _figure5(tasks, results, cfg, reps)
            params = dict(dm=cfg["dm5"], m_star=["m/2 (panel 0)", "m (panel 1)"], t_max=_T5,
                          fit_window=_FIT5, init="gaussian-raw", method="exact", rtol=1e-10,
                          run_wall_time_s=[r["wall_time_s"] for r in results])
            cols = ["panel", "d", "m", "m_star", "rep", "seed", "t", "risk", "t2_risk", "mu",
                    "c_fit", "fit_curve"]
            finish(5, fig, cols, rows, params, extra, t0)

        if 6 in figs:
            t0 = time.perf_counter()
            fig, cols, rows, params, extra = _figure6(cfg)
            summary["data_time_s"]["fig6"] = time.perf_counter() - t0
            finish(6, fig, cols, rows, params, extra, t0)
    return summary


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    return str(o)


# --------------------------------------------------------------------------- CLI


def _handler(args):
    t0 = time.perf_counter()
    s = make_figures(figures=args.figure or FIGURES, out=args.out, quick=args.quick,
                     reps=args.reps, seed=args.seed, jobs=args.jobs,
                     progress=not (args.no_progress or args.json), formats=args.format)
    figs = [dict(figure=n, files=s[n]["files"], wall_time_s=s[n]["wall_time_s"])
            for n in FIGURES if n in s]
    if args.json:
        from symflow.apps.cli import emit_json

        emit_json(args, {"figures": figs, "quick": args.quick, "seed": args.seed,
                         "formats": _check_formats(args.format),
                         "data_time_s": s["data_time_s"]},
                  out=args.out, files=[f for g in figs for f in g["files"]])
        return 0
    for g in figs:
        exts = " ".join(Path(f).suffix for f in g["files"][1:])
        print(f"figure {g['figure']}: {g['wall_time_s']:6.2f} s  -> {g['files'][0]} (+ {exts})")
    print(f"total {time.perf_counter() - t0:.2f} s")
    return 0


def add_cli(subparsers):
    """Add the ``figures`` subcommand to the ``symflow`` argparse subparsers.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``ArgumentParser.add_subparsers``; its parser class turns argparse errors
        into one-line messages.

    Returns
    -------
    argparse.ArgumentParser
        The ``figures`` parser, with ``func`` set to a handler ``handler(args) -> int``
        (raises ValueError on bad values, e.g. ``--figure 9``).
    """
    from symflow.apps.cli import HelpFormatter, _pos_int, _seed

    p = subparsers.add_parser("figures", formatter_class=HelpFormatter,
                              help="reproduce the paper's Figures 1-6 (PNG, PDF, CSV, JSON)",
                              description="Compute and write the paper's Figures 1-6: for "
                              "each figure N, figN.png/.pdf (or --format), figN.csv (the "
                              "plotted data) and figN.json (parameters, seeds, caption, "
                              "summary numbers).  See docs/figures.md.")
    p.add_argument("--figure", type=int, nargs="+", metavar="N",
                   help="figures to make, 1..6 (default: all)")
    p.add_argument("--out", default="figures_out", help="output directory")
    p.add_argument("--quick", action="store_true",
                   help="smaller d and fewer repetitions (< 30 s for all figures)")
    p.add_argument("--reps", type=_pos_int, default=None,
                   help=f"repetitions per (panel, d), 1 to {MAX_REPS} (default 5, quick 2)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="root seed; run seeds derive from it (numpy SeedSequence)")
    p.add_argument("--jobs", type=_pos_int, default=None,
                   help="worker processes (default: one per core)")
    p.add_argument("--format", default="png,pdf", metavar="FMT[,FMT]",
                   help=f"image formats, comma-separated, among {','.join(FORMATS)}")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (shown only when stderr is a terminal)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout (keys: docs/usage.md)")
    p.set_defaults(func=_handler)
    return p
