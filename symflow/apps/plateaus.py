"""``symflow plateaus``: the plateau of the erf committee machine and its escape time.

For the soft committee machine of Saad & Solla (K = M, erf(z/sqrt 2), T = I, loss 1/2)
the symmetric plateau is a saddle of the gradient flow (:func:`fixed_points`).  Started
at distance delta from it along its unstable eigenvector, the student escapes after a
time that grows like log(1/delta) / lambda_u, lambda_u the unstable eigenvalue of the
derived Jacobian.  The figure shows, for K = 2 and 3, the risk against time for several
delta with the plateau value eps* = (K/pi)(pi/6 - K asin(1/(2K))) and the measured
escape times (risk below eps*/2), and the escape time against log(1/delta) with the
predicted slope 1/lambda_u.  Files: plateaus.{png,pdf,csv,json} (written together).

Source: MATH.md section 9; Saad & Solla (1995).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

__all__ = ["plateau_escape", "escape_slope", "make_plateau_figure", "add_cli"]

ERF = "erf(z/sqrt(2))"


def plateau_escape(K, deltas, points=200, rtol=1e-10):
    """Escape from the symmetric plateau of the erf committee machine (K = M, T = I).

    Parameters
    ----------
    K : int >= 2
        Student and teacher width.
    deltas : sequence of float in (0, 0.1]
        Displacements along the unstable eigenvector of the plateau saddle.
    points : int
        Output times per run (0 and log-spaced), time t (= samples / d for online SGD
        with lr -> 0; here the gradient flow).

    Returns
    -------
    dict
        ``lambda_u``, ``plateau_risk`` (derived), ``plateau_risk_closed_form`` (Saad &
        Solla), ``escape_times`` (risk below half the plateau value; one per delta),
        ``slope`` (:func:`escape_slope` of the escape times), ``predicted_slope``
        (1/lambda_u), ``curves`` (list of (t, risk) arrays).

    Raises
    ------
    ValueError
        K < 2, no delta, or a delta outside (0, 0.1].
    """
    from symflow import Model, simulate
    from symflow._validate import positive_int
    from symflow.numerics.fixedpoints import fixed_points, from_state, state_vector

    K = positive_int(K, "K", minimum=2)
    deltas = [float(v) for v in deltas]
    if not deltas or any(not 0 < v <= 0.1 for v in deltas):
        raise ValueError(f"deltas must lie in (0, 0.1], got {deltas}")
    mod = Model(ERF, K, K, loss_scale=0.5)
    saddles = [f for f in fixed_points(mod, np.eye(K)) if f.kind == "saddle"
               and np.allclose(f.M, f.M[0, 0], atol=1e-9)]
    sad = saddles[0]
    lam = float(sad.eigenvalues[0].real)
    v = _escape_direction(sad, K)
    y0 = state_vector(sad.Q, sad.M)
    times, curves = [], []
    for delta in deltas:
        _, M = from_state(y0 + delta * v, K, K)  # Q = M M^T: the student in the teacher span
        horizon = 2.0 * math.log(1 / delta) / lam + 200.0
        t = np.concatenate([[0.0], np.geomspace(1e-2, horizon, points - 1)])
        tr = simulate(M.copy(), np.eye(K), t, model=mod, rtol=rtol,
                      events={"risk": sad.risk / 2})
        times.append(tr.events["risk"])
        curves.append((tr.t, tr.risk))
    slope = escape_slope(deltas, times)
    eps = K / math.pi * (math.pi / 6 - K * math.asin(1 / (2 * K)))
    return dict(K=K, lambda_u=lam, plateau_risk=float(sad.risk), plateau_risk_closed_form=eps,
                deltas=deltas, escape_times=times, slope=slope, predicted_slope=1 / lam,
                curves=curves)


def escape_slope(deltas, times):
    """Slope s of the escape time T(delta) = s log(1/delta) + C + b delta + O(delta^2).

    Along the unstable manifold xi' = lambda_u xi + a xi^2 + ..., and a start on the
    unstable eigenvector misses the manifold at O(delta^2): both shift T by O(delta).
    Fitting that term too (three or more deltas) removes the bias a straight line
    through delta ~ 1e-2 carries (K = 3 with deltas 1e-2, 1e-4,
    1e-6: line 5e-4 off 1/lambda_u, with the delta term 2e-7).

    Parameters
    ----------
    deltas, times : sequences of float, same length n >= 2
        Displacements and escape times (time t).

    Returns
    -------
    float
        Least-squares slope (a straight line when n = 2; NaN when n < 2).

    Source: the linearisation at the saddle (MATH.md section 9; Saad & Solla 1995).
    """
    d = np.asarray(deltas, dtype=float)
    if d.size < 2:
        return float("nan")
    cols = [np.log(1 / d), np.ones_like(d)] + ([d] if d.size >= 3 else [])
    return float(np.linalg.lstsq(np.stack(cols, axis=1), np.asarray(times, dtype=float),
                                 rcond=None)[0][0])


def _escape_direction(sad, K):
    """Unit vector of the unstable eigenspace closest to specialisation (M += I - 1/K).

    For K >= 3 the unstable eigenvalue of the plateau is degenerate (the eigenspace holds
    the M perturbations with zero row and column sums, dimension (K - 1)^2), so the
    eigenvector LAPACK returns is an arbitrary, machine-dependent member of it, and the
    finite-delta corrections of the escape time differ between members.  Projecting the
    specialisation direction (student i towards teacher i, Saad & Solla) onto the
    eigenspace gives one well-defined start on every machine; for K = 2 it also fixes the
    sign.
    """
    from symflow.numerics.fixedpoints import state_vector

    lam = sad.eigenvalues[0].real
    ev = sad.eigenvectors[:, np.abs(sad.eigenvalues - lam) <= 1e-8 * abs(lam)]
    target = state_vector(np.zeros((K, K)), np.eye(K) - 1.0 / K)
    coef = np.linalg.lstsq(ev, target.astype(complex), rcond=None)[0]
    v = (ev @ coef).real
    norm = np.linalg.norm(v)
    if norm < 1e-6 * np.linalg.norm(target):  # not in the eigenspace: keep LAPACK's vector
        return sad.eigenvectors[:, 0].real
    return v / norm


def make_plateau_figure(out="plateaus_out", quick=False, formats=("png", "pdf")):
    """Compute and write the plateau figure (see the module docstring).

    Parameters
    ----------
    out : path
        Output directory (created).
    quick : bool
        Fewer displacements (CI-sized).
    formats : sequence of {"png", "pdf", "svg"}

    Returns
    -------
    dict
        Summary: ``results`` (per K: lambda_u, slopes, escape times), ``reading``,
        ``quick``, ``wall_time_s``, ``out`` and ``files`` (every file written).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symflow import __version__
    from symflow._io import atomic_write_many

    formats = tuple(formats)
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    if bad or not formats:
        raise ValueError(f"formats must be among png, pdf, svg, got {formats}")
    t0 = time.perf_counter()
    deltas = [1e-2, 1e-4, 1e-6] if quick else [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8]
    res = {K: plateau_escape(K, deltas, points=80 if quick else 200) for K in (2, 3)}
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    rows = []
    for r, (K, rr) in enumerate(res.items()):
        ax = axes[r, 0]
        for delta, (t, risk), te in zip(rr["deltas"], rr["curves"], rr["escape_times"]):
            (line,) = ax.loglog(t[1:], risk[1:], label=f"$\\delta$ = {delta:.0e}")
            ax.axvline(te, color=line.get_color(), ls=":", lw=0.8)
            rows += [(K, delta, float(a), float(b)) for a, b in zip(t, risk)]
        ax.axhline(rr["plateau_risk_closed_form"], color="k", ls="--", lw=1,
                   label="plateau $\\epsilon^*$ (Saad & Solla)")
        ax.set_ylim(bottom=1e-10)  # below: the round-off floor of risks from overlaps
        ax.set_xlabel("$t$")
        ax.set_ylabel("$\\epsilon_g(t)$")
        ax.set_title(f"erf committee K = M = {K}: escape from the plateau")
        ax.legend(fontsize=7)
        ax = axes[r, 1]
        x = np.log(1 / np.array(rr["deltas"]))
        ax.plot(x, rr["escape_times"], "o", label="measured (risk < $\\epsilon^*/2$)")
        x0, y0 = x[0], rr["escape_times"][0]
        ax.plot(x, y0 + (x - x0) / rr["lambda_u"], "-",
                label=f"slope $1/\\lambda_u$ = {1 / rr['lambda_u']:.4g} (derived Jacobian)")
        ax.set_xlabel("$\\log(1/\\delta)$")
        ax.set_ylabel("escape time $t_{esc}$")
        ax.set_title(f"K = {K}: fitted slope {rr['slope']:.5g}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    summary = {"command": "plateaus", "version": __version__, "quick": bool(quick),
               "wall_time_s": time.perf_counter() - t0,
               "reading": ("The symmetric plateau is a saddle of the derived flow whose risk "
                           "equals Saad & Solla's closed form; the escape time grows "
                           "linearly in log(1/delta) with slope 1/lambda_u, lambda_u the "
                           "unstable eigenvalue of the derived Jacobian at the saddle."),
               "results": {str(K): {k: v for k, v in rr.items() if k != "curves"}
                           for K, rr in res.items()}}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv = "K,delta,t,risk\n" + "".join(f"{a},{b:.17g},{c:.17g},{d:.17g}\n"
                                       for a, b, c, d in rows)
    writers = {out / f"plateaus.{f}": (lambda tmp, f=f: fig.savefig(tmp, format=f, dpi=120))
               for f in formats}
    writers[out / "plateaus.csv"] = lambda tmp: Path(tmp).write_text(csv)
    writers[out / "plateaus.json"] = lambda tmp: Path(tmp).write_text(
        json.dumps(summary, indent=2, sort_keys=True) + "\n")
    atomic_write_many(writers)
    plt.close(fig)
    summary["out"] = str(out)
    summary["files"] = [str(p) for p in writers]
    return summary


def _handler(args):
    fmts = tuple(f.strip() for f in args.format.split(",") if f.strip())
    s = make_plateau_figure(out=args.out, quick=args.quick, formats=fmts)
    if args.json:
        from symflow.apps.cli import emit_json

        emit_json(args, {k: s[k] for k in ("quick", "reading", "results")},
                  out=s["out"], files=s["files"])
    else:
        for K, r in s["results"].items():
            print(f"K = {K}: lambda_u = {r['lambda_u']:.6g}, escape-time slope "
                  f"{r['slope']:.6g} vs 1/lambda_u = {r['predicted_slope']:.6g}")
        print(f"wrote {s['out']}/plateaus.* ({s['wall_time_s']:.1f} s)")
    return 0


def add_cli(subparsers):
    """Register ``symflow plateaus`` (argparse subparsers of the CLI)."""
    from symflow.apps.cli import HelpFormatter

    p = subparsers.add_parser(
        "plateaus", formatter_class=HelpFormatter,
        help="plateau of the erf committee machine and its escape time",
        description="Escape from the symmetric plateau of the erf committee machine (K = M "
        "= 2, 3): risk vs t for several displacements, and escape time vs log(1/delta) "
        "against the predicted slope 1/lambda_u (derived Jacobian).")
    p.add_argument("--out", default="plateaus_out", help="output directory")
    p.add_argument("--quick", action="store_true", help="three displacements only")
    p.add_argument("--format", default="png,pdf", help="comma-separated: png, pdf, svg")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_handler)
    return p
