"""Command-line interface: symflow risk|run|limit|check|derive|figures|sweep.

Errors in the arguments print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CLIError(message)


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


def _cmd_risk(args):
    import numpy as np

    from symflow.numerics.init import gaussian
    from symflow.numerics.kernels import risk
    from symflow.numerics.montecarlo import monte_carlo_risk

    if not 2 <= args.samples <= MAX_SAMPLES:
        raise CLIError(f"--samples must be in [2, {MAX_SAMPLES:.0e}], got {args.samples}")
    rng = np.random.default_rng(args.seed)
    s1, s2, s3 = (int(v) for v in rng.integers(0, 2**63 - 1, size=3))
    W = gaussian(args.d, args.m, seed=s1)
    W_star = gaussian(args.d, args.m_star, seed=s2)
    exact = risk(W, W_star)
    est, se = monte_carlo_risk(W, W_star, args.samples, seed=s3)
    out = {"d": args.d, "m": args.m, "m_star": args.m_star, "seed": args.seed,
           "samples": args.samples, "risk": exact, "monte_carlo": est, "stderr": se,
           "z_score": (est - exact) / se if se > 0 else 0.0}
    if args.json:
        print(json.dumps(out))
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
    general = args.activation or args.teacher_activation or args.noise or args.weight_decay
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
                rtol=args.rtol, atol=args.atol, solver=args.solver)
    if args.json:
        print(json.dumps(s))
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

    if not 2 <= args.points <= MAX_POINTS:
        raise CLIError(f"--points must be in [2, {MAX_POINTS:.0e}], got {args.points}")
    gam = np.linspace(0.0, args.gamma_max, args.points)
    tr = limit(args.alpha, args.alpha_star, gam, rtol=args.rtol)
    out = {"alpha": args.alpha, "alpha_star": args.alpha_star, "gamma_max": args.gamma_max,
           "final_phi": float(tr.phi[-1]), "final_chi": float(tr.chi[-1]),
           "chi_infinity": tr.chi_final, "wall_time_s": tr.meta["wall_time_s"]}
    if args.out:
        d = Path(args.out)
        d.mkdir(parents=True, exist_ok=True)
        tr.to_csv(d / "limit.csv")
        out["out"] = str(d / "limit.csv")
    if args.json:
        print(json.dumps(out))
    else:
        print(f"limit alpha={args.alpha:g} alpha*={args.alpha_star:g}: gamma={args.gamma_max:g} "
              f"phi={out['final_phi']:.10g} chi={out['final_chi']:.10g} "
              f"(chi(inf)={tr.chi_final:.6g}, {out['wall_time_s'] * 1e3:.1f} ms)")
        if args.out:
            print(f"wrote {out['out']}")
    return 0


def _cmd_check(args):
    from symflow.apps.check import format_table, run_checks, to_json

    res = run_checks(dps=args.dps, quick=args.quick)
    print(to_json(res) if args.json else format_table(res))
    return 0 if all(r.passed for r in res) else 1


def _cmd_derive(args):
    from pathlib import Path

    from symflow.apps import derive

    if args.check:
        if args.out and not Path(args.out).is_dir():
            raise CLIError(f"--out {args.out!r} is not a directory")
        stale = derive.check(Path(args.out) if args.out else derive.ROOT)
        for p in stale:
            print(f"stale: {p}")
        if stale:
            print(f"{len(stale)} artefact(s) differ from a fresh derivation; run 'symflow derive'",
                  file=sys.stderr)
            return 1
        print("all derived artefacts are up to date")
        return 0
    paths = derive.write_all(Path(args.out) if args.out else derive.ROOT)
    print(f"wrote {len(paths)} artefacts under {args.out or derive.ROOT}")
    return 0


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
    from symflow import __version__

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = _Parser(prog="symflow", description="Learning dynamics of teacher-student shallow "
                "networks (Martin, Bach, Biroli 2024): derived kernels, simulators, the "
                "d = infinity limit, high-precision checks and the paper's figures.")
    p.add_argument("--version", action="version", version=f"symflow {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    def add(name, **kw):
        return sub.add_parser(name, formatter_class=fmt, **kw)

    r = add("risk", help="derived population risk vs Monte Carlo on a random instance",
            description="Derived population risk of a random Gaussian instance (entries "
            "N(0, 1/(d k))) next to a direct Monte Carlo estimate and its standard error.")
    r.add_argument("--d", type=_pos_int, default=20, help="input dimension")
    r.add_argument("--m", type=_pos_int, default=10, help="student width")
    r.add_argument("--m-star", type=_pos_int, default=5, help="teacher width")
    r.add_argument("--seed", type=_seed, default=0, help="seed of the instance and the samples")
    r.add_argument("--samples", type=int, default=200_000, help="Monte Carlo samples (>= 2)")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
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
    r.add_argument("--init", choices=INITS, default="orthonormal", help="student start")
    r.add_argument("--teacher", choices=INITS, default="orthonormal", help="teacher weights")
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
    r.add_argument("--activation", default=None,
                   help='student activation polynomial, e.g. "z**3" (general Model)')
    r.add_argument("--teacher-activation", default=None)
    r.add_argument("--noise", type=_float, default=0.0, help="label-noise variance")
    r.add_argument("--weight-decay", type=_float, default=0.0)
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
                   help="ODE method for --method overlaps/weights (auto: DOP853, switching to "
                   "LSODA when the run turns stiff)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--out", default="symflow-run", help="output directory")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=_cmd_run)
    r = add("limit", help="high-dimensional limit phi(gamma), chi(gamma)",
            description="The d = infinity limit with alpha = m/d, alpha* = m*/d (orthonormal "
            "start and teacher, MATH.md section 6).")
    r.add_argument("--alpha", type=_float, required=True, help="m / d in (0, 1]")
    r.add_argument("--alpha-star", type=_float, required=True, help="m* / d in (0, 1]")
    r.add_argument("--gamma-max", type=_pos_float, default=10.0, help="horizon in gamma")
    r.add_argument("--points", type=_pos_int, default=201,
                   help="equally spaced output points (>= 2)")
    r.add_argument("--rtol", type=_pos_float, default=1e-10, help="solver tolerance")
    r.add_argument("--out", default=None, help="directory for limit.csv")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=_cmd_limit)

    r = add("check", help="high-precision verification suite (exit 1 on failure)",
            description="Independent cross-checks (numpy vs mpmath kernels and solvers, "
            "closed forms vs quadrature, exact Isserlis identity, limit vs finite d); prints "
            "check, max error, tolerance, pass.  The full suite takes about 2 minutes.")
    r.add_argument("--dps", type=_pos_int, default=30, help="mpmath decimal digits (>= 15)")
    r.add_argument("--quick", action="store_true", help="small cases only (about a minute)")
    r.add_argument("--json", action="store_true",
                   help="print a JSON list of {name, max_error, tolerance, passed}")
    r.set_defaults(func=_cmd_check)

    r = add("derive", help="regenerate derivations/ and the generated kernels",
            description="Run every derivation and write derivations/*.md, "
            "symflow/generated/*.py and derivations/manifest.json (byte-identical across runs).")
    r.add_argument("--out", default=None, help="root directory (default: the source tree)")
    r.add_argument("--check", action="store_true",
                   help="exit 1 naming every artefact that differs from a fresh derivation")
    r.set_defaults(func=_cmd_derive)

    try:
        from symflow.apps.figures import add_cli as _figures_cli
    except ImportError:  # pragma: no cover - figures module optional while developing
        _figures_cli = None
    if _figures_cli is not None:
        _figures_cli(sub)
    from symflow.apps.sweep.cli import add_cli as _sweep_cli

    _sweep_cli(sub)
    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return p


_EXTRA_COMMANDS = []
_EXTRA_COMMANDS.append(lambda sub: __import__("symflow.apps.committee", fromlist=["add_cli"]).add_cli(sub))  # noqa: E501


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
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            raise CLIError("a command is required (risk, run, limit, check, derive, figures, "
                           "sweep); see 'symflow --help'")
        return args.func(args)
    except CLIError as exc:
        print(f"symflow: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FloatingPointError) as exc:
        print(f"symflow: error: {exc}", file=sys.stderr)
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
