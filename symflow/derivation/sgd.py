"""Online-SGD term of non-polynomial activations: four-field expectations by rule.

The lr^2 term of the online-SGD overlap ODE is (MATH.md section 9, as for polynomials in
:func:`symflow.derivation.model.derive_sgd_blocks`)

    E[g_j g_k] = 4 ls^2 a_j a_k ( sum_pq w_p w_q c_pq E[s'(h_j) s'(h_k) s_p(u_p) s_q(u_q)]
                                  + noise E[s'(h_j) s'(h_k)] ),

with blocks SS (p, q students), ST (x -2) and TT.  Each four-field expectation is derived
by the engine of :mod:`symflow.engine.gaussian` for a generic covariance (symbols
``c_ab``).  Unlike polynomials, step-type activations (relu: s' = H) make the generic
formula singular where slots coincide (j = k, p = j, ...: the covariance is then
singular and terms like 0 * inf appear), although the expectation itself is continuous
there.  So for each *coincidence pattern* (a set partition of the slots {j, k, p, q})
the expectation is derived again with the fields merged (the factors of merged slots
multiplied on one field, e.g. H(h) H(h) = H(h)); the kernel evaluates the generic formula
and overwrites the tuples whose fields coincide numerically (variance of the difference
below 1e-13 of the sum of variances: the same unit, identical units, or a student unit
equal to a teacher unit) with the pattern's formula.  Smooth activations (erf, polynomials) need no
patterns: their formulas are continuous at singular covariances.

Source: MATH.md section 9 (Stein, Price, absorption); Saad & Solla (1995) for erf.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symflow.derivation.model import C4, FOUR, _c4, _s, x, y, z

__all__ = ["GeneralSGDBlock", "derive_general_sgd", "set_partitions"]


@dataclass(frozen=True)
class GeneralSGDBlock:
    """coef * sum_{p,q} w_p w_q phi(c(h_j, h_k, u_p, u_q)) per (j, k), with the formulas
    of the coincidence ``patterns``: tuple of (partition, expression); a partition is a
    tuple of blocks of slot names, e.g. (("j", "k"), ("p",), ("q",)), and its expression
    uses the covariance symbols of the first slot of each block."""

    name: str
    p_kind: str
    q_kind: str
    coef: sp.Expr
    phi: sp.Expr
    patterns: tuple = ()


def set_partitions(items):
    """All set partitions of ``items`` (list), blocks in order of first appearance."""
    if not items:
        yield ()
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield ((first,),) + part
        for i in range(len(part)):
            yield part[:i] + ((first,) + part[i],) + part[i + 1:]


def _patterns():
    """Every way the four fields can coincide (set partitions other than all-distinct):
    identical fields arise from the same unit (j = k) but also from distinct units with
    identical weights, and from a student unit equal to a teacher unit (recovery)."""
    out = [tuple(tuple(sorted(blk, key=FOUR.index)) for blk in part)
           for part in set_partitions(list(FOUR)) if len(part) < 4]
    return sorted(out, key=lambda p: (len(p), p), reverse=True)


def derive_general_sgd(spec, trace=None):
    """SGD blocks and the noise pair functions for closed-form activations.

    Returns
    -------
    (list of GeneralSGDBlock, (noise_phi(x, y, z), noise_psi(x)))
        noise_* already include 4 ls^2 noise.

    Raises
    ------
    NotClosedForm
        For numeric activations, or a step activation whose derivative is a Dirac delta
        (sign, heaviside: the per-sample gradient is not a function, online SGD is not
        defined).
    """
    from symflow.engine.activations import (
        NotClosedForm,
        decompose,
        derivative_terms,
        multiply_terms,
    )
    from symflow.engine.gaussian import _Engine, pair_expectation

    ls = sp.sympify(spec.loss_scale)
    terms = {"S": decompose(spec.activation, _s), "T": decompose(spec.teacher_activation, _s)}
    ds = derivative_terms(terms["S"])
    if any(f.shape == "delta" for _, f in ds):
        raise NotClosedForm("the online-SGD term is not defined for step activations "
                            "(sign, heaviside): the per-sample gradient has a Dirac delta")
    cov4 = sp.Matrix(4, 4, lambda i, j: _c4(FOUR[i], FOUR[j]))
    step_like = any(f.shape == "H" for _, f in ds + terms["S"] + terms["T"])
    blocks = []
    for name, pk, qk, coef in (("SS", "S", "S", 1), ("ST", "S", "T", -2), ("TT", "T", "T", 1)):
        slot_terms = {"j": ds, "k": ds, "p": terms[pk], "q": terms[qk]}
        phi = _expect(_Engine(cov4, trace), [slot_terms[s] for s in FOUR], cov4)
        pats = []
        if step_like:
            for part in _patterns():
                merged = [multiply_terms(*[slot_terms[s] for s in blk]) for blk in part]
                reps = [blk[0] for blk in part]
                cov = sp.Matrix(len(part), len(part), lambda a, b: _c4(reps[a], reps[b]))
                pats.append((part, _expect(_Engine(cov, trace), merged, cov)))
        blocks.append(GeneralSGDBlock(name, pk, qk, 4 * ls**2 * coef, phi, tuple(pats)))
    pair = sp.Matrix([[x, z], [z, y]])
    nphi = sp.expand(4 * ls**2 * sp.sympify(spec.noise)) * pair_expectation(ds, ds, pair)
    npsi = nphi.subs({y: x, z: x}, simultaneous=True)
    return blocks, (sp.simplify(nphi), sp.simplify(npsi))


def _expect(engine, slot_terms, cov):
    """sum over term combinations of coef * E[prod factors] (one factor per field)."""
    total = sp.Integer(0)

    def rec(i, coef, factors):
        nonlocal total
        if i == len(slot_terms):
            total += coef * engine.expect(tuple(factors), cov)
            return
        for c, f in slot_terms[i]:
            rec(i + 1, coef * c, factors + [f])

    rec(0, sp.Integer(1), [])
    return total


SLOT_SYMBOLS = C4
