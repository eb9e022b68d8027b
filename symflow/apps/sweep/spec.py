"""Sweep specifications: a job, its fixed parameters and the grid axes.

A spec is a TOML file or the same structure as a Python dict::

    job = "limit"                      # or "simulate"
    threshold = 0.99                   # optional: chi level of the summaries
    batch_size = 200                   # optional: cells per task
    [fixed]
    gamma = [0.5, 1.0, 2.0, 5.0]       # the time axis (list, or start/stop/num)
    [grid]
    alpha = { start = 0.05, stop = 1.0, num = 20 }
    alpha_star = [0.25, 0.5]

``load_spec`` validates everything that can be checked without running a job (names,
types, ranges, empty or repeated axis values, per-cell consistency) and returns a
:class:`Spec`; no file is written and no heavy module is imported.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symflow._validate import finite_float, positive_int, time_grid

__all__ = ["Spec", "load_spec", "JOBS"]

_REQUIRED = object()
MAX_CELLS = 1_000_000
MAX_TIMES = 100_000


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _int(minimum):
    def check(v, name):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return positive_int(v, name, minimum=minimum)
    check.integer = True  # a range axis of this parameter is rounded to integers
    return check


def _float(lo=None, hi=None, lo_open=False):
    def check(v, name):
        return finite_float(v, name, lo=lo, hi=hi, lo_open=lo_open)
    return check


def _choice(options):
    def check(v, name):
        if not isinstance(v, str) or v not in options:
            raise ValueError(f"{name} must be one of {tuple(options)}, got {v!r}")
        return v
    return check


def _text(v, name):
    if not isinstance(v, str) or not v.strip():
        raise TypeError(f"{name} must be a non-empty string, got {v!r}")
    return v


def _ratio(v, name):
    from symflow.numerics.wachter import ALPHA_MIN

    v = finite_float(v, name, lo=0.0, hi=1.0, lo_open=True)
    if v < ALPHA_MIN:
        raise ValueError(f"{name} = {v:g} is below the supported range [{ALPHA_MIN:g}, 1]")
    return v


_INITS = ("orthonormal", "gaussian", "gaussian-raw", "degenerate")  # symflow.apps.run.INITS

# job -> parameter -> (default or _REQUIRED or None for "absent", validator)
JOBS = {
    "limit": {
        "alpha": (_REQUIRED, _ratio),
        "alpha_star": (_REQUIRED, _ratio),
        "rtol": (1e-10, _float(1e-14, 1e-2)),
        "method": ("auto", _choice(("auto", "odeint", "DOP853", "Radau", "LSODA"))),
    },
    "simulate": {
        "d": (200, _int(1)),
        "m": (100, _int(1)),
        "m_star": (50, _int(1)),
        "init": ("orthonormal", _choice(_INITS)),
        "teacher": ("orthonormal", _choice(_INITS)),
        "seed": (0, _int(0)),
        "method": ("auto", _choice(("auto", "exact", "overlaps", "weights"))),
        "activation": (None, _text),
        "teacher_activation": (None, _text),
        "noise": (0.0, _float(0.0)),
        "weight_decay": (0.0, _float(0.0)),
        "lr": (None, _float(0.0, lo_open=True)),
        "rtol": (1e-10, _float(1e-14, 0.1)),
    },
}
_TOP = {"job", "fixed", "grid", "threshold", "batch_size", "description"}
_RANGE_KEYS = {"start", "stop", "num", "scale"}
DEFAULT_BATCH = {"limit": 200, "simulate": 1}


@dataclass(frozen=True)
class Spec:
    """A validated sweep specification (see the module docstring for the format).

    Attributes
    ----------
    job : {"limit", "simulate"}
    gamma : ndarray (n,)
        Output times in gamma = t / d.
    fixed : dict
        Parameters that are the same in every cell (defaults filled in; parameters
        that are absent, e.g. ``lr``, are omitted).
    axes : dict of str -> list
        Grid axes in order, each a list of distinct values (Python scalars).
    threshold : float
        chi level of the summaries ``gamma_to_threshold`` and ``recovered``.
    batch_size : int
        Cells per task.
    description : str
    source : dict
        The normalised spec as written to ``spec.toml`` (axis ranges kept as ranges).
    """

    job: str
    gamma: np.ndarray
    fixed: dict
    axes: dict
    threshold: float
    batch_size: int
    description: str
    source: dict

    @property
    def shape(self):
        """Grid shape: one length per axis."""
        return tuple(len(v) for v in self.axes.values())

    @property
    def n_cells(self):
        """Number of grid cells."""
        return math.prod(self.shape)

    def cells(self):
        """Parameter dicts of every cell, in C order of the axes (fixed values included)."""
        names = list(self.axes)
        for values in itertools.product(*self.axes.values()):
            yield {**self.fixed, **dict(zip(names, values))}

    def to_toml(self):
        """The normalised spec as TOML text (``load_spec`` of it gives an equal Spec)."""
        return to_toml(self.source)

    def digest(self):
        """SHA-256 of the normalised spec (canonical JSON)."""
        text = json.dumps(self.source, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if _is_int(v):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} to TOML")


def to_toml(source):
    """TOML text of a normalised spec dict (top-level scalars, then [fixed] and [grid])."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in source.items() if not isinstance(v, dict)]
    for table in ("fixed", "grid"):
        lines += ["", f"[{table}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in source[table].items()]
    return "\n".join(lines) + "\n"


def _axis_values(raw, name, check):
    """(values, normalised definition) of an axis given as a list or a range table."""
    if isinstance(raw, dict):
        extra = set(raw) - _RANGE_KEYS
        if extra or not {"start", "stop", "num"} <= set(raw):
            raise ValueError(f"{name}: a range needs start, stop, num (and optionally "
                             f"scale = 'lin' or 'log'), got keys {sorted(raw)}")
        start = finite_float(raw["start"], f"{name}.start")
        stop = finite_float(raw["stop"], f"{name}.stop")
        num = positive_int(raw["num"], f"{name}.num", minimum=1)
        if num > MAX_CELLS:
            raise ValueError(f"{name}.num must be <= {MAX_CELLS}, got {num}")
        scale = raw.get("scale", "lin")
        if scale not in ("lin", "log"):
            raise ValueError(f"{name}.scale must be 'lin' or 'log', got {scale!r}")
        if scale == "log":
            if start <= 0 or stop <= 0:
                raise ValueError(f"{name}: a log range needs start, stop > 0")
            vals = np.geomspace(start, stop, num)
        else:
            vals = np.linspace(start, stop, num)
        vals = [float(v) for v in vals]
        norm = {"start": start, "stop": stop, "num": num}
        if scale == "log":
            norm["scale"] = "log"
    elif isinstance(raw, (list, tuple, np.ndarray)):
        if isinstance(raw, np.ndarray):
            if raw.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {raw.shape}")
            raw = raw.tolist()  # Python scalars (exact floats) for the spec and the keys
        if not raw:
            raise ValueError(f"{name} is an empty axis")
        vals, norm = list(raw), None
    else:
        raise TypeError(f"{name} must be a list of values or a table {{start, stop, num}}, "
                        f"got {raw!r}")
    out = []
    for v in vals:
        if isinstance(v, (list, dict)):
            raise TypeError(f"{name}: axis values must be numbers or strings, got {v!r}")
        if norm is not None and getattr(check, "integer", False):
            r = round(v)  # an integer range such as {start = 100, stop = 400, num = 4}
            if abs(v - r) > 1e-9 * max(1.0, abs(v)):
                raise ValueError(f"{name} must be integers, but the range gives {v!r}")
            v = r
        out.append(check(v, name))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated values {out}")
    return out, (norm if norm is not None else out)


def _gamma(raw):
    if isinstance(raw, dict):
        vals, norm = _axis_values(raw, "fixed.gamma", _float(0.0))
        vals = np.array(vals)
    elif isinstance(raw, (list, tuple, np.ndarray)) or _is_real(raw):
        vals = raw
        norm = None
    else:
        raise TypeError(f"fixed.gamma must be a list of times or a table {{start, stop, num}}, "
                        f"got {raw!r}")
    arr = time_grid(vals, "fixed.gamma")
    if arr.size > MAX_TIMES:
        raise ValueError(f"fixed.gamma has {arr.size} times; at most {MAX_TIMES}")
    if arr[-1] > 1e6:
        raise ValueError(f"fixed.gamma must be <= 1e6, got max {arr[-1]:.3g}")
    return arr, (norm if norm is not None else arr.tolist())


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def load_spec(spec):
    """Read and validate a sweep spec.

    Parameters
    ----------
    spec : dict, Spec, str or path-like
        A dict with the structure of the TOML format (module docstring), an existing
        :class:`Spec` (returned as is), or the path of a TOML file.

    Returns
    -------
    Spec

    Raises
    ------
    ValueError, TypeError
        Unreadable TOML, unknown job, unknown or missing parameter, a parameter both
        fixed and on the grid, empty or repeated axis values, values out of range (for
        example alpha outside (0, 1]), inconsistent cells (an orthonormal start with
        m > d, method "exact" with a general model), too many cells.  Messages name the
        key (``grid.alpha``, ``fixed.rtol``).
    OSError
        If the file cannot be read.
    """
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, (str, Path)):
        spec = _read_toml(spec)
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a dict or the path of a TOML file, got "
                        f"{type(spec).__name__}")
    unknown = sorted(set(spec) - _TOP)
    if unknown:
        raise ValueError(f"unknown top-level key(s) {unknown} in the spec (known: "
                         f"{sorted(_TOP)})")
    job = spec.get("job")
    if job not in JOBS:
        raise ValueError(f"job must be one of {sorted(JOBS)}, got {job!r}")
    params = JOBS[job]
    fixed_raw, grid_raw = spec.get("fixed", {}), spec.get("grid")
    for key, table in (("fixed", fixed_raw), ("grid", grid_raw)):
        if not isinstance(table, dict):
            raise TypeError(f"[{key}] must be a table of parameters, got {table!r}")
    if not grid_raw:
        raise ValueError("[grid] must name at least one axis")
    if "gamma" in grid_raw:
        raise ValueError("gamma is the time axis of every cell: give it in [fixed], "
                         "not in [grid]")
    if "gamma" not in fixed_raw:
        raise ValueError("fixed.gamma (the output times, in gamma = t / d) is required")
    for key, table in (("fixed", fixed_raw), ("grid", grid_raw)):
        for name in table:
            if name != "gamma" and name not in params:
                raise ValueError(f"unknown parameter {key}.{name} for job {job!r} (known: "
                                 f"gamma, {', '.join(params)})")
    both = sorted(set(fixed_raw) & set(grid_raw))
    if both:
        raise ValueError(f"parameter(s) {both} are both in [fixed] and in [grid]")
    gamma, gamma_norm = _gamma(fixed_raw["gamma"])
    fixed, fixed_norm = {}, {"gamma": gamma_norm}
    for name, (default, check) in params.items():
        if name in grid_raw:
            continue
        if name in fixed_raw:
            fixed[name] = check(fixed_raw[name], f"fixed.{name}")
            fixed_norm[name] = fixed[name]
        elif default is _REQUIRED:
            raise ValueError(f"parameter {name!r} of job {job!r} is missing: give it in "
                             "[fixed] or [grid]")
        elif default is not None:
            fixed[name] = default
            fixed_norm[name] = default
    axes, grid_norm = {}, {}
    for name, raw in grid_raw.items():
        axes[name], grid_norm[name] = _axis_values(raw, f"grid.{name}", params[name][1])
    n_cells = math.prod(len(v) for v in axes.values())
    if n_cells > MAX_CELLS:
        raise ValueError(f"the grid has {n_cells} cells; at most {MAX_CELLS}")
    threshold = finite_float(spec.get("threshold", 0.99), "threshold", lo=0.0, hi=1.0,
                             lo_open=True)
    batch = positive_int(spec.get("batch_size", DEFAULT_BATCH[job]), "batch_size")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise TypeError(f"description must be a string, got {description!r}")
    source = {"job": job}
    if description:
        source["description"] = description
    source.update(threshold=threshold, batch_size=batch, fixed=fixed_norm, grid=grid_norm)
    out = Spec(job, gamma, fixed, axes, threshold, batch, description, source)
    if job == "simulate":
        _check_simulate_cells(out)
    return out


def _read_toml(path):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"spec file {str(path)!r} does not exist or is not a file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None


def _check_simulate_cells(spec):
    """Per-cell consistency of a simulate sweep, before anything runs."""
    from symflow.apps.run import resolve_method

    checked = set()
    for cell in spec.cells():
        for kind, k, what in ((cell["init"], cell["m"], "m"),
                              (cell["teacher"], cell["m_star"], "m_star")):
            if kind == "orthonormal" and k > cell["d"]:
                raise ValueError(f"cell {_brief(spec, cell)}: an orthonormal start or teacher "
                                 f"needs {what} <= d")
        general = any(cell.get(k) for k in ("activation", "teacher_activation", "noise",
                                            "weight_decay", "lr"))
        try:
            method = resolve_method(cell["method"], cell["init"], cell["teacher"], general)
        except ValueError as exc:
            raise ValueError(f"cell {_brief(spec, cell)}: {exc}") from None
        if method == "exact" and not cell["init"] == cell["teacher"] == "orthonormal":
            raise ValueError(f"cell {_brief(spec, cell)}: method 'exact' needs orthonormal "
                             "init and teacher")
        if cell.get("lr") is not None and method != "overlaps":
            raise ValueError(f"cell {_brief(spec, cell)}: lr (online SGD) needs method "
                             "'overlaps' or 'auto'")
        for key in ("activation", "teacher_activation"):
            act = cell.get(key)
            if act is not None and act not in checked:
                from symflow.numerics.model import _activation_expr

                _activation_expr(act, "monomial", key)  # parse only; no derivation
                checked.add(act)


def _brief(spec, cell):
    return "(" + ", ".join(f"{k}={cell[k]!r}" for k in spec.axes) + ")"
