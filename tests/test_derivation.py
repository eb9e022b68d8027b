"""Derived risk / gradient / overlap ODE against independent symbolic paths."""

import pytest
import sympy as sp

from symflow.derivation.model import (
    PAPER_MODEL,
    chain_rule_flow,
    direct_entrywise_risk,
    entrywise_risk,
    entrywise_weight_flow,
    overlap_gradients,
    risk_sum_expr,
)


def _math_md_risk(Q, M, P):
    return (sp.Rational(1, 2) * (sum(e**2 for e in Q) - 2 * sum(e**2 for e in M)
                                 + sum(e**2 for e in P))
            + sp.Rational(1, 4) * (Q.trace() - P.trace()) ** 2)


@pytest.mark.parametrize("m, ms", [(1, 1), (3, 2), (2, 4), (2, 2)])
def test_trace_form_equals_entrywise(m, ms):
    pair_form, (Q, M, P) = entrywise_risk(PAPER_MODEL, m, ms)
    direct, _ = direct_entrywise_risk(PAPER_MODEL, m, ms)   # one expect over m + m* fields
    assert sp.expand(pair_form - direct) == 0
    assert sp.expand(direct - _math_md_risk(Q, M, P)) == 0
    # the indexed-sum (arbitrary width) form evaluated at these widths
    msym, mssym = sp.symbols("m m_star", integer=True, positive=True)
    s = risk_sum_expr(PAPER_MODEL).subs({msym: m, mssym: ms}).doit()
    rep = {}
    for name, mat in (("Q", Q), ("M", M), ("P", P)):
        base = sp.IndexedBase(name)
        rep.update({base[i, j]: mat[i, j] for i in range(mat.rows) for j in range(mat.cols)})
    assert sp.expand(s.xreplace(rep) - direct) == 0


@pytest.mark.parametrize("d, m, ms", [(2, 1, 1), (3, 2, 1), (2, 2, 3)])
def test_overlap_flow_from_weight_space_gradient(d, m, ms):
    dQ_w, dM_w, W, V = entrywise_weight_flow(PAPER_MODEL, d, m, ms)
    GQ, GM, (Q, M, P) = overlap_gradients(PAPER_MODEL, m, ms)
    dQ, dM = chain_rule_flow(GQ, GM, Q, M, P)
    Qw, Mw, Pw = W.T * W, W.T * V, V.T * V
    sub = {}
    for mat, val in ((Q, Qw), (M, Mw), (P, Pw)):
        for i in range(mat.rows):
            for j in range(mat.cols):
                sub[mat[i, j]] = val[i, j]
    assert (dQ.xreplace(sub) - dQ_w).applyfunc(sp.expand) == sp.zeros(m, m)
    assert (dM.xreplace(sub) - dM_w).applyfunc(sp.expand) == sp.zeros(m, ms)
    # MATH.md section 4
    tau = Q.trace() - P.trace()
    assert (dQ + 2 * (2 * (Q * Q - M * M.T) + tau * Q)).applyfunc(sp.expand) == sp.zeros(m, m)
    assert (dM + (2 * (Q * M - M * P) + tau * M)).applyfunc(sp.expand) == sp.zeros(m, ms)
