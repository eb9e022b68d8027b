"""symflow: learning dynamics of teacher-student shallow networks under Gaussian inputs.

Symbolic derivations (sympy, Isserlis/Wick) of the population risk, its gradient and
the overlap ODEs of the quadratic-activation network of Martin, Bach and Biroli
(AISTATS 2024), turned into generated numpy and mpmath kernels, with simulators of the
gradient flow at finite d and in the high-dimensional limit.  See MATH.md for the
conventions.  ``import symflow`` does not import sympy; the symbolic parts
(``symflow.expect``, ``symflow.derivation``) load it on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "expect": "symflow.engine.moments",
    "overlaps": "symflow.numerics.kernels",
    "risk_from_overlaps": "symflow.numerics.kernels",
    "risk": "symflow.numerics.kernels",
    "risk_grad": "symflow.numerics.kernels",
    "overlap_grad": "symflow.numerics.kernels",
    "overlap_flow": "symflow.numerics.kernels",
    "monte_carlo_risk": "symflow.numerics.montecarlo",
    "monte_carlo_risk_grad": "symflow.numerics.montecarlo",
    "simulate": "symflow.numerics.simulators",
    "simulate_batch": "symflow.numerics.simulators",
    "Trajectory": "symflow.numerics.simulators",
    "limit": "symflow.numerics.highdim",
    "LimitTrajectory": "symflow.numerics.highdim",
    "wachter_density": "symflow.numerics.wachter",
    "wachter_atoms": "symflow.numerics.wachter",
    "sample_overlap_spectrum": "symflow.numerics.wachter",
    "Model": "symflow.numerics.model",
    "fixed_points": "symflow.numerics.fixedpoints",
    "sweep": "symflow.apps.sweep",
}
_SUBMODULES = {"init": "symflow.numerics.init"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'symflow' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
