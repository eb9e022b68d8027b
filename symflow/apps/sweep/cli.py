"""``symflow sweep SPEC.toml --out DIR [--scheduler ADDRESS] [--workers N] [--no-resume]``."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["add_cli"]


def _handler(args):
    from symflow.apps.cli import CLIError
    from symflow.apps.sweep.scheduler import sweep
    from symflow.apps.sweep.spec import load_spec

    if args.scheduler is not None and args.workers is not None:
        raise CLIError("--workers sizes the local cluster; it cannot be combined with "
                       "--scheduler (the cluster there has its own workers)")
    spec = load_spec(args.spec)  # ValueError/TypeError: one line, exit 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {args.out!r} exists and is not a directory")
    client = args.scheduler if args.scheduler is not None else args.workers
    t0 = time.perf_counter()
    try:
        ds = sweep(spec, client=client, out=out, resume=not args.no_resume,
                   progress=not args.no_progress)
    except ConnectionError as exc:
        raise CLIError(str(exc)) from None
    cached = ds.attrs["run_tasks_from_cache"]
    files = [out / "results.nc", out / "spec.toml", out / "phase.png"]
    if args.json:
        from symflow.apps.cli import emit_json

        emit_json(args, {"job": spec.job, "n_cells": spec.n_cells,
                         "n_tasks": int(ds.attrs["n_tasks"]), "tasks_from_cache": int(cached),
                         "tasks_computed": int(ds.attrs["n_tasks"] - cached),
                         "spec_sha256": ds.attrs["spec_sha256"]}, out=out, files=files)
        return 0
    print(f"sweep {spec.job}: {spec.n_cells} cells in {ds.attrs['n_tasks']} tasks "
          f"({cached} from cache, {ds.attrs['n_tasks'] - cached} computed) in "
          f"{time.perf_counter() - t0:.2f} s")
    print(f"wrote {out / 'results.nc'}, spec.toml, phase.png")
    return 0


def add_cli(subparsers):
    """Add the ``sweep`` subcommand to the ``symflow`` argparse subparsers.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``ArgumentParser.add_subparsers``; its parser class turns argparse errors
        into one-line messages.

    Returns
    -------
    argparse.ArgumentParser
        The ``sweep`` parser, with ``func`` set to a handler ``handler(args) -> int``.
    """
    from symflow.apps.cli import HelpFormatter, _pos_int

    p = subparsers.add_parser(
        "sweep", formatter_class=HelpFormatter,
        help="run a grid of limit/simulate jobs on Dask (xarray results, resumable)",
        description="Run the grid of a sweep spec (TOML; see docs/sweeps.md) on a local "
        "Dask cluster or an existing one, caching finished tasks in OUT/cache; writes "
        "OUT/results.nc (netCDF), OUT/spec.toml and OUT/phase.png.  Rerunning resumes.")
    p.add_argument("spec", metavar="SPEC.toml", help="sweep spec file")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler of an existing cluster (tcp://host:port), or "
                   "'synchronous' to run in this process; default: a local cluster")
    p.add_argument("--workers", type=_pos_int, default=None, metavar="N",
                   help="worker processes of the local cluster (default: one per core)")
    p.add_argument("--no-resume", action="store_true",
                   help="recompute every task instead of reusing OUT/cache")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (shown only when stderr is a terminal)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout (keys: docs/usage.md)")
    p.set_defaults(func=_handler)
    return p
