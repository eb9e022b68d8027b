"""Symbolic derivations (import sympy).  Run them all with ``symflow derive``."""
