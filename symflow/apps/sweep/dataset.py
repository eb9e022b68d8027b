"""Sweep results as an xarray.Dataset: assembly, summaries, netCDF output, phase plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from symflow.apps.sweep.jobs import VARIABLES

__all__ = ["build_dataset", "write_outputs", "plot_phase", "phase_figure", "first_crossing"]

_LONG_NAMES = {
    "phi": "phi(gamma) = int_0^t tau(s) ds",
    "chi": "overlap chi = ||M||^2 / (||Q|| ||P||)",
    "risk": "population risk",
    "chi_final": "chi at the last output time",
    "gamma_to_threshold": "first gamma with chi >= threshold",
    "recovered": "chi_final >= threshold",
    "chi_infinity": "chi(infinity) = min(1, sqrt(alpha / alpha*)) (theory)",
    "solver_nfev": "right-hand-side evaluations (limit: of the batched solve; -1: not "
                   "reported)",
    "solver_wall_time_s": "solver wall time in seconds (limit: of the batched solve)",
    "solver_method": "ODE solver used",
}


def first_crossing(gamma, values, level):
    """First time at which ``values`` reaches ``level``, by linear interpolation.

    Parameters
    ----------
    gamma : ndarray (n,)
        Increasing times.
    values : ndarray (..., n)
    level : float

    Returns
    -------
    ndarray (...)
        gamma where values first reaches level (between the first grid point at or above
        it and the one before); ``gamma[0]`` if ``values[..., 0] >= level``; NaN if never.
    """
    values = np.asarray(values, dtype=float)
    above = values >= level
    hit = above.any(axis=-1)
    i1 = np.argmax(above, axis=-1)
    i0 = np.maximum(i1 - 1, 0)
    c0 = np.take_along_axis(values, i0[..., None], -1)[..., 0]
    c1 = np.take_along_axis(values, i1[..., None], -1)[..., 0]
    g0, g1 = gamma[i0], gamma[i1]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(c1 > c0, (level - c0) / (c1 - c0), 1.0)
    g = np.where(i1 == 0, gamma[0], g0 + np.clip(frac, 0.0, 1.0) * (g1 - g0))
    return np.where(hit, g, np.nan)


def build_dataset(spec, tasks, results):
    """Assemble task results into the sweep's xarray.Dataset (see ``sweep``).

    Parameters
    ----------
    spec : Spec
    tasks : list of (key, cells)
        From ``plan_tasks(spec)``.
    results : list of dict
        ``run_task`` output of each task, same order.

    Returns
    -------
    xarray.Dataset
    """
    import xarray as xr

    from symflow import __version__

    shape, n = spec.shape, spec.gamma.size
    axes = list(spec.axes)
    dims = axes + ["gamma"]

    def cat(name):
        return np.concatenate([r[name] for r in results])

    data = {name: (dims, cat(name).reshape(shape + (n,))) for name in VARIABLES[spec.job]}
    chi = data["chi"][1]
    chi_final = chi[..., -1]
    data["chi_final"] = (axes, chi_final)
    data["gamma_to_threshold"] = (axes, first_crossing(spec.gamma, chi, spec.threshold))
    data["recovered"] = (axes, chi_final >= spec.threshold)
    if spec.job == "limit":
        cells = [c for _, cs in tasks for c in cs]
        a = np.array([c["alpha"] for c in cells]).reshape(shape)
        s = np.array([c["alpha_star"] for c in cells]).reshape(shape)
        data["chi_infinity"] = (axes, np.minimum(1.0, np.sqrt(a / s)))
    data["solver_nfev"] = (axes, cat("nfev").reshape(shape))
    data["solver_wall_time_s"] = (axes, cat("wall_time_s").reshape(shape))
    data["solver_method"] = (axes, cat("method").astype(str).reshape(shape))
    coords = {name: np.asarray(values) for name, values in spec.axes.items()}
    coords["gamma"] = spec.gamma
    ds = xr.Dataset({k: (d, v, {"long_name": _LONG_NAMES[k]}) for k, (d, v) in data.items()},
                    coords=coords)
    ds["gamma"].attrs.update(long_name="gamma = t / d (high-dimensional time)")
    ds["gamma_to_threshold"].attrs.update(units="gamma", threshold=spec.threshold)
    ds.attrs.update(
        title=f"symflow sweep ({spec.job})", job=spec.job, spec=spec.to_toml(),
        spec_sha256=spec.digest(), symflow_version=__version__, threshold=spec.threshold,
        n_cells=spec.n_cells, n_tasks=len(tasks), batch_size=spec.batch_size,
        source="MATH.md section 6" if spec.job == "limit" else "MATH.md sections 3-5",
        solver_statistics="solver_nfev solver_wall_time_s solver_method (per cell)")
    return ds


def write_outputs(ds, spec, out):
    """Write out/results.nc, out/spec.toml and out/phase.png together, atomically.

    Parameters
    ----------
    ds : xarray.Dataset
        From ``build_dataset``.
    spec : Spec
    out : path-like
        Created if missing.

    Returns
    -------
    list of Path
        The three files.
    """
    from symflow._io import atomic_write_many

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = phase_figure(ds)
    paths = [out / "results.nc", out / "spec.toml", out / "phase.png"]

    def write_toml(tmp):
        Path(tmp).write_text(spec.to_toml(), encoding="utf-8")

    import matplotlib.pyplot as plt

    try:
        atomic_write_many({
            paths[0]: lambda tmp: ds.to_netcdf(tmp, engine="netcdf4"),
            paths[1]: write_toml,
            paths[2]: lambda tmp: fig.savefig(tmp, format="png", dpi=110),
        })
    finally:
        plt.close(fig)
    return paths


def plot_phase(ds, path, var="chi_final", gamma=None):
    """Heat map of a sweep variable over the first two grid axes, written as a PNG.

    Parameters
    ----------
    ds : xarray.Dataset
        A sweep result (``symflow.sweep`` or ``xarray.open_dataset(".../results.nc")``).
    path : path-like
        Output PNG (written atomically).
    var : str
        Variable to show: a summary (``chi_final``, ``gamma_to_threshold``, ...) or a
        time-dependent variable (``chi``, ``phi``, ``risk``) at time ``gamma``.
    gamma : float, optional
        Output time for a time-dependent ``var``: one of ``ds.gamma`` (to a relative
        1e-9, so 1.0 finds 0.9999999999999998 of a log range); default the last.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        Unknown ``var``, or ``gamma`` not an output time.

    Notes
    -----
    Further axes are fixed at their first value (named in the title).  When the first
    two axes are (alpha, alpha_star) or (m, m_star), the line alpha = alpha* (m = m*)
    is drawn: strong recovery iff alpha >= alpha* (MATH.md section 6).
    """
    import matplotlib.pyplot as plt

    from symflow._io import atomic_write

    fig = phase_figure(ds, var, gamma)
    try:
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)


def _edges(values):
    """Cell edges around sorted centres (geometric midpoints on a log-spaced axis)."""
    v = np.asarray(values, dtype=float)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5]) if v[0] <= 0 else v[0] * np.array([0.8, 1.25])
    log = _is_log(v)
    w = np.log(v) if log else v
    mid = 0.5 * (w[1:] + w[:-1])
    e = np.concatenate([[2 * w[0] - mid[0]], mid, [2 * w[-1] - mid[-1]]])
    return np.exp(e) if log else e


def _is_log(v):
    v = np.asarray(v, dtype=float)
    if v.size < 3 or np.any(v <= 0):
        return False
    r = v[1:] / v[:-1]
    return bool(np.allclose(r, r[0], rtol=1e-6) and not np.allclose(np.diff(v), v[1] - v[0]))


def phase_figure(ds, var="chi_final", gamma=None):
    """The matplotlib Figure of :func:`plot_phase` (the caller closes it).

    Parameters
    ----------
    ds, var, gamma :
        As in :func:`plot_phase`.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Unknown ``var``, or ``gamma`` not an output time.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if var not in ds.data_vars:
        raise ValueError(f"var must be a variable of the dataset {sorted(ds.data_vars)}, "
                         f"got {var!r}")
    da = ds[var]
    title = da.attrs.get("long_name", var)
    if var == "chi_final":
        title = f"chi at the last output time, gamma = {float(ds.gamma[-1]):g}"
    elif var == "gamma_to_threshold":
        title = f"first gamma with chi >= {ds.attrs.get('threshold', da.attrs.get('threshold'))}" \
            f" (grey: not within gamma <= {float(ds.gamma[-1]):g})"
    if "gamma" in da.dims:
        times = ds.gamma.values
        hit = [times.size - 1] if gamma is None else \
            np.flatnonzero(np.isclose(times, gamma, rtol=1e-9, atol=0.0))
        if len(hit) != 1:
            shown = times.tolist() if times.size <= 12 else f"{times.size} times"
            raise ValueError(f"gamma must be one of the output times ({shown}), got {gamma!r}")
        g = float(times[hit[0]])
        da = da.isel(gamma=hit[0])
        title = f"{var} at gamma = {g:g}"
    axes = list(da.dims)
    fixed = {a: da[a].values[0] for a in axes[2:]}
    if fixed:
        da = da.isel({a: 0 for a in axes[2:]})
        title += " (" + ", ".join(f"{a} = {v}" for a, v in fixed.items()) + ")"
    z = np.asarray(da.values, dtype=float)
    fig, ax = plt.subplots(figsize=(6.2, 4.8))
    if len(axes) == 1:
        x = ds[axes[0]].values
        ax.plot(np.arange(x.size) if x.dtype.kind in "OUS" else x, z, marker="o")
        ax.set_xlabel(axes[0])
        ax.set_ylabel(var)
    else:
        xs, ys = (ds[a].values for a in axes[:2])
        cat = [v.dtype.kind in "OUS" for v in (xs, ys)]
        ex = np.arange(xs.size + 1) - 0.5 if cat[0] else _edges(xs)
        ey = np.arange(ys.size + 1) - 0.5 if cat[1] else _edges(ys)
        finite = z[np.isfinite(z)]
        norm = None
        if finite.size and finite.min() > 0 and finite.max() > 20 * finite.min():
            norm = LogNorm(finite.min(), finite.max())
        cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
        mesh = ax.pcolormesh(ex, ey, np.ma.masked_invalid(z.T), cmap=cmap, norm=norm,
                             shading="flat")
        fig.colorbar(mesh, ax=ax, label=var)
        for a, vals, is_cat, setter in ((axes[0], xs, cat[0], ax.set_xticks),
                                        (axes[1], ys, cat[1], ax.set_yticks)):
            if is_cat:
                setter(np.arange(vals.size), [str(v) for v in vals])
        if not cat[0] and _is_log(xs):
            ax.set_xscale("log")
        if not cat[1] and _is_log(ys):
            ax.set_yscale("log")
        ax.set_xlabel(axes[0])
        ax.set_ylabel(axes[1])
        pair = set(axes[:2])
        if not any(cat) and pair in ({"alpha", "alpha_star"}, {"m", "m_star"}):
            lo = max(ex.min(), ey.min())
            hi = min(ex.max(), ey.max())
            name = "alpha = alpha*" if "alpha" in pair else "m = m*"
            ax.plot([lo, hi], [lo, hi], "w--", lw=1.5,
                    label=f"{name}: strong recovery iff {name.replace('=', '>=')}")
            ax.legend(loc="lower right", fontsize=8, framealpha=0.6)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
