"""Command-line interface: symflow risk|run|limit|check|derive|figures|sweep|committee|plateaus.

Errors in the arguments print one line to stderr and exit with status 2; messages name
flags (``--alpha must be <= 1``), not the API arguments behind them.

``--json`` (every command) prints one JSON object on stdout with the common keys
``command`` (the subcommand), ``wall_time_s`` (wall time of the whole command, after
argument parsing), ``out`` (output directory or file, null if nothing is written) and
``files`` (the files written), plus the command's own snake_case keys
(docs/usage.md, "Machine-readable output").
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import sys
import time


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CLIError(message)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where the help text does not state the default itself
    and the default is informative (not None / False), so no flag reads
    "(default 0.01) (default: None)"."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower():
            return text
        if (action.default is None or action.default is False
                or action.default is argparse.SUPPRESS or not action.option_strings):
            return text
        return text + " (default: %(default)s)"


def emit_json(args, payload, out=None, files=()):
    """Print the ``--json`` object of a command: ``payload`` plus the common keys.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (``args.command``; ``args._t0`` set by the dispatcher).
    payload : dict
        The command's own keys (snake_case, JSON-serialisable).
    out : str or path, optional
        Output directory or file (null if the command wrote nothing).
    files : iterable of str or path
        Files written.
    """
    obj = {"command": args.command}
    obj.update(payload)
    obj["out"] = None if out is None else str(out)
    obj["files"] = [str(f) for f in files]
    obj["wall_time_s"] = time.perf_counter() - getattr(args, "_t0", time.perf_counter())
    print(json.dumps(obj, default=_json_default))
    sys.stdout.flush()


def _json_default(o):
    import numpy as np

    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    return str(o)


def _int_at_least(minimum, what):
    """argparse type: an integer >= ``minimum`` (``what`` names it in the error)."""
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            v = None
        if v is None or v < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v
    return parse


_pos_int = _int_at_least(1, "a positive integer")
MAX_SAMPLES = 10**9  # risk --samples: ~1 min per 1e8 samples at d = 20 (regression: 1e12)
MAX_POINTS = 10**6  # limit --points (regression: 1e8 points took 12.6 GB)
_seed = _int_at_least(0, "a non-negative integer seed")


def _budget(args):
    """``--max-time`` in seconds, or None for no budget (0 or inf); CLIError if negative
    or NaN."""
    if not args.max_time >= 0:  # (NaN too)
        raise CLIError(f"--max-time must be >= 0 seconds (0: no budget), got {args.max_time}")
    return args.max_time if 0 < args.max_time < math.inf else None


def _cmd_risk(args):
    import numpy as np

    from symflow.numerics.init import gaussian
    from symflow.numerics.kernels import risk
    from symflow.numerics.montecarlo import monte_carlo_risk

    if not 2 <= args.samples <= MAX_SAMPLES:
        raise CLIError(f"--samples must be in [2, {MAX_SAMPLES:.0e}], got {args.samples}")
    budget = _budget(args)
    per_sample = args.d * (args.m + args.m_star)  # multiply-adds of one sample
    if budget is not None and per_sample * args.samples > 1e12:  # ~1 h at 3e8 per s (measured)
        raise CLIError(f"this Monte Carlo estimate needs about {per_sample * args.samples:.2g} "
                       f"multiply-adds (--samples x --d x (--m + --m-star)); use fewer "
                       "--samples or a smaller instance, or --max-time 0")
    rng = np.random.default_rng(args.seed)
    s1, s2, s3 = (int(v) for v in rng.integers(0, 2**63 - 1, size=3))
    W = gaussian(args.d, args.m, seed=s1)
    W_star = gaussian(args.d, args.m_star, seed=s2)
    exact = risk(W, W_star)
    pilot = min(args.samples, max(2, int(1e8 // per_sample)))  # ~0.1 s
    if budget is not None and pilot < args.samples:
        t0 = time.perf_counter()
        monte_carlo_risk(W, W_star, pilot, seed=s3)
        projected = (time.perf_counter() - t0) * args.samples / pilot
        if projected > budget:
            raise CLIError(f"this Monte Carlo estimate would take about {projected:.3g} s "
                           f"(from {pilot} samples), over the budget of {budget:g} s; "
                           "use fewer --samples or a smaller instance, or raise --max-time")
    est, se = monte_carlo_risk(W, W_star, args.samples, seed=s3)
    out = {"d": args.d, "m": args.m, "m_star": args.m_star, "seed": args.seed,
           "samples": args.samples, "risk": exact, "monte_carlo": est, "stderr": se,
           "z_score": (est - exact) / se if se > 0 else 0.0}
    if args.json:
        emit_json(args, out)
    else:
        print(f"random instance d={args.d} m={args.m} m*={args.m_star} seed={args.seed} "
              "(Gaussian start and teacher, entries N(0, 1/(d k)))")
        print(f"population risk (derived) : {exact:.10g}")
        print(f"Monte Carlo ({args.samples} samples): {est:.10g} +- {se:.3g}  "
              f"(z = {out['z_score']:+.2f})")
    return 0


def _cmd_run(args):
    from symflow.apps.run import run_job

    if args.lr is not None and not args.sgd:
        raise CLIError("--lr is the learning rate of --sgd; add --sgd or drop --lr")
    if args.eta is not None and args.method != "gd":
        raise CLIError("--eta is the step of --method gd; add --method gd or drop --eta")
    budget = _budget(args)
    general = args.activation or args.teacher_activation or args.noise or args.weight_decay
    for flag, k, kind in (("--m", args.m, args.init), ("--m-star", args.m_star, args.teacher)):
        if kind == "orthonormal" and k > args.d:
            raise CLIError(f"{flag} must be <= --d for orthonormal weights, got {k} > {args.d}")
    if (general or args.sgd) and args.method == "exact":
        raise CLIError("--method exact is only for the paper's quadratic gradient flow; use "
                       "--method overlaps (or auto) with --activation/--noise/--weight-decay/--sgd")

    s = run_job(d=args.d, m=args.m, m_star=args.m_star, init=args.init, teacher=args.teacher,
                seed=args.seed, gamma_max=args.gamma_max, points=args.points,
                method=args.method, out=args.out, progress=not (args.json or args.no_progress),
                eta=1e-2 if args.eta is None else args.eta,
                activation=args.activation, teacher_activation=args.teacher_activation,
                noise=args.noise, weight_decay=args.weight_decay,
                lr=(0.1 if args.lr is None else args.lr) if args.sgd else None,
                rtol=args.rtol, atol=args.atol, solver=args.solver,
                max_time=budget)
    if args.json:
        payload = dict(s, solve_time_s=s["wall_time_s"])
        del payload["wall_time_s"], payload["out"]
        emit_json(args, payload, out=s["out"],
                  files=[f"{s['out']}/{f}" for f in ("trajectory.csv", "meta.json", "run.png")])
    else:
        print(f"d={s['d']} m={s['m']} m*={s['m_star']} method={s['method']} seed={s['seed']}: "
              f"gamma={s['gamma_max']:g}  risk={s['final_risk']:.6g}  chi={s['final_chi']:.6f}  "
              f"phi={s['final_phi']:.6f}  ({s['wall_time_s']:.2f} s)")
        print(f"wrote {s['out']}/trajectory.csv, meta.json, run.png")
    return 0


def _cmd_limit(args):
    from pathlib import Path

    import numpy as np

    from symflow.numerics.highdim import limit

    if args.gamma is not None:
        if args.gamma_max is not None or args.points is not None:
            raise CLIError("--gamma gives the output points explicitly; drop --gamma-max and "
                           "--points")
        if len(args.gamma) > MAX_POINTS:
            raise CLIError(f"--gamma must have at most {MAX_POINTS:.0e} points, got "
                           f"{len(args.gamma)}")
        gam = np.asarray(args.gamma, dtype=float)
    else:
        gamma_max = 10.0 if args.gamma_max is None else args.gamma_max
        points = 201 if args.points is None else args.points
        if not 2 <= points <= MAX_POINTS:
            raise CLIError(f"--points must be in [2, {MAX_POINTS:.0e}], got {points}")
        gam = np.linspace(0.0, gamma_max, points)
    tr = limit(args.alpha, args.alpha_star, gam, rtol=args.rtol)
    out = {"alpha": args.alpha, "alpha_star": args.alpha_star,
           "gamma_max": float(tr.gamma[-1]), "points": int(tr.gamma.size),
           "final_phi": float(tr.phi[-1]), "final_chi": float(tr.chi[-1]),
           "chi_infinity": tr.chi_final, "solve_time_s": tr.meta["wall_time_s"],
           "gamma": tr.gamma.tolist(), "phi": tr.phi.tolist(), "chi": tr.chi.tolist()}
    path = None
    if args.out:
        d = Path(args.out)
        if d.exists() and not d.is_dir():
            raise CLIError(f"--out {args.out!r} exists and is not a directory")
        d.mkdir(parents=True, exist_ok=True)
        path = d / "limit.csv"
        tr.to_csv(path)
    if args.json:
        emit_json(args, out, out=path, files=[path] if path else [])
        return 0
    if args.gamma is not None and len(gam) <= 20:
        print(f"limit alpha={args.alpha:g} alpha*={args.alpha_star:g} "
              f"(chi(inf)={tr.chi_final:.6g}, {out['solve_time_s'] * 1e3:.1f} ms)")
        print(f"{'gamma':>12} {'phi':>18} {'chi':>18}")
        for g, p_, c in zip(tr.gamma, tr.phi, tr.chi):
            print(f"{g:>12.6g} {p_:>18.10g} {c:>18.10g}")
    else:
        print(f"limit alpha={args.alpha:g} alpha*={args.alpha_star:g}: "
              f"gamma={out['gamma_max']:g} phi={out['final_phi']:.10g} "
              f"chi={out['final_chi']:.10g} (chi(inf)={tr.chi_final:.6g}, "
              f"{out['solve_time_s'] * 1e3:.1f} ms)")
    if path:
        print(f"wrote {path}")
    return 0


def _cmd_check(args):
    from symflow._validate import check_dps
    from symflow.apps.check import (
        check_names,
        format_header,
        format_row,
        run_checks,
        select_checks,
    )

    check_dps(args.dps)  # before the header: a bad --dps prints nothing but its error
    try:
        selected = select_checks(args.only)
    except ValueError:
        raise CLIError(f"--only {' '.join(args.only)!r} matches no check; the checks are: "
                       + "; ".join(check_names())) from None
    width = max(len(n) for n, _ in selected)
    # rows appear as they finish (flushed); with --json stdout carries only the JSON
    # object, and the rows go to stderr when it is a terminal
    stream = sys.stderr if args.json else sys.stdout
    show = not args.json or stream.isatty()

    def row(r):
        if show:
            print(format_row(r, max(width, len(r.name))), file=stream, flush=True)

    if show:
        print(format_header(width), file=stream, flush=True)
    c0 = time.process_time()
    res = run_checks(dps=args.dps, quick=args.quick, only=args.only, on_result=row)
    cpu = time.process_time() - c0
    passed = all(r.passed for r in res)
    if args.json:
        from dataclasses import asdict

        emit_json(args, {"quick": args.quick, "dps": args.dps, "passed": passed,
                         "n_checks": len(res), "n_failed": sum(not r.passed for r in res),
                         "cpu_time_s": cpu, "checks": [asdict(r) for r in res]})
    else:
        wall = time.perf_counter() - args._t0
        print(f"{sum(r.passed for r in res)}/{len(res)} checks passed in {wall:.1f} s "
              f"({cpu:.1f} CPU-s)", flush=True)
    return 0 if passed else 1


def _cmd_derive(args):
    from pathlib import Path

    from symflow.apps import derive

    root = Path(args.out) if args.out else derive.ROOT
    if args.check:
        if args.out and not Path(args.out).is_dir():
            raise CLIError(f"--out {args.out!r} is not a directory")
        stale = derive.check(root)
        if args.json:
            emit_json(args, {"check": True, "up_to_date": not stale, "stale": stale})
            return 1 if stale else 0
        for p in stale:
            print(f"stale: {p}")
        if stale:
            print(f"{len(stale)} artefact(s) differ from a fresh derivation; run 'symflow derive'",
                  file=sys.stderr)
            return 1
        print("all derived artefacts are up to date")
        return 0
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CLIError(f"--out {args.out!r} exists and is not a directory")
    paths = derive.write_all(root)
    if args.json:
        emit_json(args, {"check": False, "n_files": len(paths)}, out=root,
                  files=[root / p for p in paths])
        return 0
    print(f"wrote {len(paths)} artefacts under {root}")
    return 0


def _count(s):
    """An integer, also written as 1e6 or 1_000_000."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if not (math.isfinite(v) and v == int(v)):
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}")
    return int(v)


def _float(s):
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None


def _pos_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {s!r}")
    return v


def build_parser():
    """The ``symflow`` argument parser (subcommands risk, run, limit, check, derive,
    figures, sweep, committee, plateaus); each subparser's defaults hold ``func`` (the handler) and
    ``_flags`` (API argument name -> flag, for error messages)."""
    from symflow import __version__

    p = _Parser(prog="symflow", description="Learning dynamics of teacher-student shallow "
                "networks under Gaussian inputs: derived population risk, gradient-flow and "
                "online-SGD overlap ODEs for any activation (quadratic networks of Martin, "
                "Bach, Biroli 2024; erf/ReLU committee machines of Saad & Solla 1995, Goldt "
                "et al. 2019), simulators, the d = infinity limit, fixed points and "
                "plateaus, sweeps on Dask, high-precision checks and the papers' figures.  "
                "Every command takes --json (one JSON object on stdout).")
    p.add_argument("--version", action="version", version=f"symflow {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    def add(name, **kw):
        return sub.add_parser(name, formatter_class=HelpFormatter, **kw)

    json_help = "print one JSON object on stdout (keys: docs/usage.md)"
    r = add("risk", help="derived population risk vs Monte Carlo on a random instance",
            description="Derived population risk of a random Gaussian instance (entries "
            "N(0, 1/(d k))) next to a direct Monte Carlo estimate and its standard error.")
    r.add_argument("--d", type=_pos_int, default=20, help="input dimension")
    r.add_argument("--m", type=_pos_int, default=10, help="student width")
    r.add_argument("--m-star", type=_pos_int, default=5, help="teacher width")
    r.add_argument("--seed", type=_seed, default=0, help="seed of the instance and the samples")
    r.add_argument("--samples", type=_count, default=200_000,
                   help=f"Monte Carlo samples, 2 to {MAX_SAMPLES:.0e}")
    r.add_argument("--max-time", type=_float, default=120.0,
                   help="time budget in seconds: a Monte Carlo estimate projected (from a "
                   "small pilot) to take longer is refused with the estimate (0: no budget)")
    r.add_argument("--json", action="store_true", help=json_help)
    r.set_defaults(func=_cmd_risk)
    from symflow.apps.run import INITS
    from symflow.numerics.simulators import SOLVERS

    r = add("run", help="main job: one gradient-flow run (paper Fig. 2/3, top panel)",
            description="One seeded run of the gradient flow; writes OUT/trajectory.csv "
            "(t, gamma, risk, phi, chi, dist), OUT/meta.json and OUT/run.png.  Defaults: one "
            "repetition of the top panel of the paper's Figures 2/3 at d = 200.")
    r.add_argument("--d", type=_pos_int, default=200, help="input dimension")
    r.add_argument("--m", type=_pos_int, default=100, help="student width")
    r.add_argument("--m-star", type=_pos_int, default=50, help="teacher width")
    r.add_argument("--init", choices=INITS, default="orthonormal",
                   help="student start: orthonormal (Haar, columns / sqrt(m)), gaussian "
                   "(entries N(0, 1/(d m))), gaussian-raw (N(0, 1/m)), degenerate (gaussian "
                   "with input direction 0 removed)")
    r.add_argument("--teacher", choices=INITS, default="orthonormal",
                   help="teacher weights (same kinds as --init, width m*)")
    r.add_argument("--seed", type=_seed, default=0, help="seed of start and teacher")
    r.add_argument("--gamma-max", type=_pos_float, default=10.0,
                   help="horizon in gamma = t / d")
    r.add_argument("--points", type=_pos_int, default=400,
                   help="output times: gamma = 0 and points - 1 log-spaced values")
    r.add_argument("--method", choices=("auto", "exact", "overlaps", "weights", "gd"),
                   default="auto", help="auto: exact (Riccati reduction, any start) for the "
                   "paper's gradient flow, overlaps for --activation/--noise/--sgd runs; gd is "
                   "the slow reference algorithm (gamma_max * d / eta steps: minutes at "
                   "d = 200)")
    r.add_argument("--eta", type=_pos_float, default=None,
                   help="step of --method gd (default 0.01; t = eta * steps)")
    r.add_argument("--activation", default=None, metavar="POLY",
                   help='student activation, a polynomial of degree <= 8 in one variable, '
                   'e.g. "z**3" or "He(3, z)" (default: the paper\'s z**2; any of '
                   "--activation/--teacher-activation/--noise/--weight-decay selects a "
                   "general symflow.Model and --method overlaps)")
    r.add_argument("--teacher-activation", default=None, metavar="POLY",
                   help="teacher activation, same syntax (default: the student's)")
    r.add_argument("--noise", type=_float, default=0.0,
                   help="label-noise variance sigma^2 (labels y = f*(x) + sigma xi); adds "
                   "1/4 sigma^2 to the risk")
    r.add_argument("--weight-decay", type=_float, default=0.0,
                   help="L2 penalty: risk + weight_decay / 2 * ||W||_F^2 (gradient-flow "
                   "convention; with --sgd the SGD step is lr / d times its gradient)")
    r.add_argument("--sgd", action="store_true",
                   help="online-SGD limit (step lr/d, t = samples/d) instead of gradient flow")
    r.add_argument("--lr", type=_pos_float, default=None,
                   help="learning rate of --sgd (default 0.1; SGD step lr / d)")
    r.add_argument("--rtol", type=_pos_float, default=1e-10,
                   help="relative tolerance of the ODE solver")
    r.add_argument("--atol", type=_pos_float, default=None,
                   help="absolute tolerance (default: scaled to the state, 1e-3 * rtol * "
                   "the scale of each block, so small starts are resolved)")
    r.add_argument("--solver", choices=SOLVERS, default="auto",
                   help="ODE method (auto: LSODA/BDF for --method exact, DOP853 switching "
                   "to LSODA when the run turns stiff for overlaps/weights)")
    r.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it counts in gamma; on a terminal a bar, "
                   "otherwise one line every 10 s for runs longer than a second)")
    r.add_argument("--max-time", type=_float, default=120.0,
                   help="time budget in seconds: a run projected to take longer stops with "
                   "an estimate once a tenth of the budget is spent (0: no budget)")
    r.add_argument("--out", default="symflow-run", help="output directory")
    r.add_argument("--json", action="store_true", help=json_help)
    r.set_defaults(func=_cmd_run)
    r = add("limit", help="high-dimensional limit phi(gamma), chi(gamma)",
            description="The d = infinity limit with alpha = m/d, alpha* = m*/d (orthonormal "
            "start and teacher, MATH.md section 6).  Output points: --gamma G1 G2 ... or "
            "--points equally spaced values in [0, --gamma-max].")
    r.add_argument("--alpha", type=_float, required=True, help="m / d in (0, 1]")
    r.add_argument("--alpha-star", type=_float, required=True, help="m* / d in (0, 1]")
    r.add_argument("--gamma", type=_float, nargs="+", default=None, metavar="G",
                   help="explicit output points in gamma = t / d (non-negative, increasing; "
                   "replaces --gamma-max/--points)")
    r.add_argument("--gamma-max", type=_pos_float, default=None,
                   help="horizon in gamma (default 10)")
    r.add_argument("--points", type=_pos_int, default=None,
                   help="equally spaced output points from 0 to --gamma-max, >= 2 "
                   "(default 201)")
    r.add_argument("--rtol", type=_pos_float, default=1e-10, help="solver tolerance")
    r.add_argument("--out", default=None, help="directory for limit.csv (default: no file)")
    r.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout, with the curve (arrays gamma, phi, "
                   "chi)")
    r.set_defaults(func=_cmd_limit)

    r = add("check", help="high-precision verification suite (exit 1 on failure)",
            description="Independent cross-checks (numpy vs mpmath kernels and solvers, "
            "closed forms vs quadrature, exact Isserlis identity, limit vs finite d); prints "
            f"each row as it finishes: check, max error, tolerance, pass, time.  {CHECK_TIMES}")
    r.add_argument("--dps", type=_pos_int, default=30,
                   help="mpmath decimal digits (15 to 100; the cost grows steeply with them)")
    r.add_argument("--quick", action="store_true",
                   help="small cases only (" + CHECK_TIME_QUICK + ")")
    r.add_argument("--only", action="append", default=None, metavar="NAME",
                   help="run only the checks whose name contains NAME (case-insensitive; "
                   "repeatable; default: all)")
    r.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout; key checks: a list of {name, "
                   "max_error, tolerance, passed, seconds, cpu_seconds}")
    r.set_defaults(func=_cmd_check)

    r = add("derive", help="regenerate derivations/ and the generated kernels",
            description="Run every derivation and write derivations/*.md, "
            "symflow/generated/*.py and derivations/manifest.json (byte-identical across runs).")
    r.add_argument("--out", default=None, help="root directory (default: the source tree)")
    r.add_argument("--check", action="store_true",
                   help="exit 1 naming every artefact that differs from a fresh derivation")
    r.add_argument("--json", action="store_true", help=json_help)
    r.set_defaults(func=_cmd_derive)

    from symflow.apps.figures import add_cli as _figures_cli
    from symflow.apps.sweep.cli import add_cli as _sweep_cli

    _figures_cli(sub)
    _sweep_cli(sub)
    for extra in _EXTRA_COMMANDS:
        extra(sub)
    for name, parser in sub.choices.items():
        if name != "sweep":  # sweep's errors name keys of the spec file, not flags
            parser.set_defaults(_flags=_flag_names(parser))
    return p


# Check suite timings quoted in --help (measured, see docs/usage.md)
CHECK_TIMES = ("The full suite needs about 20 CPU-s (measured 17 s on a quiet 2-core "
               "machine; more wall time on a loaded one): finite-d extrapolation and the "
               "mpmath rows take most of it; --quick about 3 CPU-s.")
CHECK_TIME_QUICK = "about 3 CPU-s, measured 2.8 s on a quiet machine"


def _flag_names(parser):
    """API argument name -> flag of ``parser`` (``alpha_star`` -> ``--alpha-star``)."""
    out = {}
    for a in parser._actions:
        longs = [o for o in a.option_strings if o.startswith("--")]
        if longs and a.dest not in ("help", "json"):
            out[a.dest] = longs[0]
    out.update(_ALIASES.get(parser.prog.split()[-1], {}))
    return out


# API wordings that name a flag without being its dest
_ALIASES = {"figures": {"figure numbers": "--figure", "figures": "--figure",
                        "formats": "--format"}}


def flag_message(message, flags):
    """Rewrite API argument names in an error message as the CLI flags behind them.

    A name is replaced where it is the subject of the message: at its start, after
    "; ", ": " or "(", or anywhere directly followed by " must" (``alpha must be <= 1``
    -> ``--alpha must be <= 1``, ``eta=500 is too coarse`` -> ``--eta=500 ...``).

    Parameters
    ----------
    message : str
    flags : dict
        API name -> flag (from :func:`build_parser`).

    Returns
    -------
    str
    """
    if not flags:
        return message
    names = sorted(flags, key=len, reverse=True)  # alpha_star before alpha
    alt = "|".join(re.escape(n) for n in names)
    pat = re.compile(rf"(?:^|(?<=; )|(?<=: )|(?<=\())({alt})(?=[\s:=,)])"
                     rf"|(?<![\w\-])({alt})(?=\s+must\b)")
    return pat.sub(lambda m: flags[m.group(1) or m.group(2)], message)


def _plateaus_cli(sub):
    from symflow.apps.plateaus import add_cli

    add_cli(sub)


def _committee_cli(sub):
    from symflow.apps.committee import add_cli

    add_cli(sub)


_EXTRA_COMMANDS = [_plateaus_cli, _committee_cli]


def main(argv=None):
    """Entry point of the ``symflow`` console script; returns the exit status.

    0 success, 1 failure of a computation or check, 2 bad arguments or input,
    130 interrupted.  Errors are one line on stderr.
    """
    import warnings

    import numpy as np

    parser = build_parser()
    try:
        # SIGTERM behaves like Ctrl-C, so temporary output files are cleaned up
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not in the main thread (e.g. called from a test runner thread)
        pass
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return _dispatch(parser, argv)
    except KeyboardInterrupt:
        print("symflow: interrupted", file=sys.stderr)
        return 130


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _dispatch(parser, argv):
    args = None
    try:
        args = parser.parse_args(argv)
        args._t0 = time.perf_counter()
        if not getattr(args, "command", None):
            raise CLIError("a command is required (risk, run, limit, check, derive, figures, "
                           "sweep, committee, plateaus); see 'symflow --help'")
        return args.func(args)
    except CLIError as exc:
        print(f"symflow: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FloatingPointError) as exc:
        msg = flag_message(str(exc), getattr(args, "_flags", None))
        print(f"symflow: error: {msg}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. --out is an existing file or not writable
        print(f"symflow: error: cannot write output: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # sizes too large for this machine
        print(f"symflow: error: not enough memory ({exc}); use smaller sizes", file=sys.stderr)
        return 2
    except (RuntimeError, OverflowError) as exc:
        msg = str(exc) or type(exc).__name__
        print(f"symflow: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
