"""Derivation of the population risk, its gradient and the overlap flow.

A model is a teacher-student pair of shallow networks with polynomial activations.
The population risk is a sum over *pairs* of hidden units of Gaussian expectations:
with local fields h_i = W[:, i].x and g_k = W*[:, k].x,

    E[(f - f*)^2] = sum_ij a_i a_j E[s(h_i) s(h_j)] - 2 sum_ik a_i a*_k E[s(h_i) s*(g_k)]
                    + sum_kl a*_k a*_l E[s*(g_k) s*(g_l)],

and each pair expectation is a polynomial ``phi(x, y, z)`` in the pair's covariance
``[[x, z], [z, y]]`` (x, y: diagonal entries of Q or P; z: the entry of Q, M or P),
computed by the Isserlis engine :func:`symflow.engine.moments.expect`.  The same formula
holds for i = j (the pair then has x = y = z).  Summing ``phi`` over pairs gives the
trace/matrix form for any widths; expanding it for given widths gives the entry-wise
polynomial, which is checked against a direct ``expect`` of (f - f*)^2 over all
m + m* fields (tests).

The gradient with respect to the overlaps follows by differentiating each monomial
``x^p y^q z^r`` (sympy), and the gradient in weight space and the overlap ODEs by the
chain rule for Q = W^T W, M = W^T W* (MATH.md sections 3-4):

    grad_W L = W (G_Q + G_Q^T) + W* G_M^T,
    dQ/dt = -(S Q + Q S + G_M M^T + M G_M^T),   dM/dt = -(S M + G_M P),  S = G_Q + G_Q^T,

where G_Q = dL/dQ, G_M = dL/dM treat all entries as independent.

Source: MATH.md sections 2-4.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symflow.engine.moments import expect

__all__ = ["ModelSpec", "Block", "PAPER_MODEL", "derive_blocks", "risk_sum_expr",
           "entrywise_risk", "direct_entrywise_risk", "entrywise_weight_flow",
           "chain_rule_flow"]

# pair covariance variables
x, y = sp.symbols("x y", positive=True)
z = sp.Symbol("z", real=True)
_u, _v = sp.symbols("u v", real=True)
_s = sp.Symbol("s", real=True)


@dataclass(frozen=True)
class ModelSpec:
    """A teacher-student model to derive.

    Attributes
    ----------
    name : str
        Identifier used for generated modules (``symflow/generated/<name>_numpy.py``).
    activation, teacher_activation : sympy.Expr
        Polynomials in the symbol ``s`` (module attribute ``symflow.derivation.model._s``).
    loss_scale : sympy number
        Risk = loss_scale * E[(f - y)^2] + weight_decay / 2 * ||W||_F^2.
    noise, weight_decay : sympy number
        Label-noise variance and L2 penalty.
    weighted : bool
        If True the generated kernels take second-layer weights ``a``, ``a_star``.
    """

    name: str
    activation: sp.Expr
    teacher_activation: sp.Expr
    loss_scale: sp.Expr = sp.Rational(1, 4)
    noise: sp.Expr = sp.Integer(0)
    weight_decay: sp.Expr = sp.Integer(0)
    weighted: bool = False
    description: str = ""


PAPER_MODEL = ModelSpec(
    name="quadratic",
    activation=_s**2,
    teacher_activation=_s**2,
    description="Quadratic activation, unit second layer, loss 1/4 E[(f - f*)^2] "
    "(Martin, Bach, Biroli 2024; MATH.md sections 1-4).",
)


@dataclass(frozen=True)
class Block:
    """One pair sum  coef * sum_ij u_i v_j phi(X_ii, Y_jj, C_ij).

    ``row``/``col``: overlap matrix whose diagonal gives x / y ('Q' or 'P');
    ``cross``: matrix holding z ('Q', 'M' or 'P'); ``row_weight``/``col_weight``:
    'a' or 'a_star'; ``monomials``: list of (coefficient, p, q, r) for
    coef * x^p y^q z^r (coefficient already includes the block factor).
    """

    name: str
    row: str
    col: str
    cross: str
    row_weight: str
    col_weight: str
    phi: sp.Expr
    monomials: tuple | None = field(default_factory=tuple)
    coef: sp.Expr = sp.Integer(1)
    pair: object = None  # PairFunctions for non-polynomial activations (monomials None)


def pair_moment(sig1, sig2):
    """E[sig1(u) sig2(v)] for (u, v) ~ N(0, [[x, z], [z, y]]) via Isserlis (polynomial)."""
    cov = sp.Matrix([[x, z], [z, y]])
    return expect(sp.expand(sig1.subs(_s, _u) * sig2.subs(_s, _v)), [_u, _v], cov)


def _block_parts(spec):
    ls = sp.sympify(spec.loss_scale)
    return [
        ("QQ", "Q", "Q", "Q", "a", "a", ls, spec.activation, spec.activation),
        ("QM", "Q", "P", "M", "a", "a_star", -2 * ls, spec.activation, spec.teacher_activation),
        ("PP", "P", "P", "P", "a_star", "a_star", ls, spec.teacher_activation,
         spec.teacher_activation),
    ]


def derive_blocks(spec: ModelSpec, trace=None):
    """Pair blocks of the risk of ``spec``: list of :class:`Block` (QQ, QM, PP).

    Polynomial activations: pair moments by Isserlis, as monomials (``Block.monomials``).
    Any other activation: the pair functions of :func:`pair_functions` (closed forms by
    the rules of :mod:`symflow.engine.gaussian`, or Gauss-Hermite nodes for the numeric
    family), in ``Block.pair`` with ``monomials = None``.
    """
    polynomial = all(activation_kind(a) == "polynomial"
                     for a in (spec.activation, spec.teacher_activation))
    blocks = []
    for name, row, col, cross, rw, cw, coef, s1, s2 in _block_parts(spec):
        if polynomial:
            phi = pair_moment(s1, s2)
            poly = sp.Poly(sp.expand(coef * phi), x, y, z)
            monos = tuple((c, p, q, r) for (p, q, r), c in sorted(poly.terms()))
            blocks.append(Block(name, row, col, cross, rw, cw, phi, monos, coef))
        else:
            pf = pair_functions(s1, s2, name, diagonal=row == col, trace=trace)
            blocks.append(Block(name, row, col, cross, rw, cw, pf.phi, None, coef, pf))
    return blocks


# ------------------------------------------------------------ general activations
def activation_kind(act):
    """'polynomial', 'closed' (sum of z^k {1, H, erf(a z)} terms: closed forms by rules)
    or 'numeric' (tanh, sigmoid, softplus, callables: Gauss-Hermite-type quadrature)."""
    from symflow.engine.activations import NotClosedForm, decompose

    if not isinstance(act, sp.Expr):
        return "numeric"
    if act.is_polynomial(_s):
        return "polynomial"
    try:
        decompose(act, _s)
    except NotClosedForm:
        return "numeric"
    return "closed"


@dataclass(frozen=True)
class PairFunctions:
    """Pair expectation phi(x, y, z) = E[s1(u) s2(v)], (u, v) ~ N(0, [[x, z], [z, y]]),
    its partial derivatives by Price's theorem, and for diagonal blocks (i = j, the same
    field twice) psi(x) = phi(x, x, x) with its derivative.

    ``d_z = E[s1' s2']``, ``d_x = E[s1'' s2] / 2``, ``d_y = E[s1 s2''] / 2`` (Price: the
    derivatives are expectations of derivatives, computed by the same engine, so no
    cancelling singular terms appear at aligned units, where sympy's derivative of the
    closed form has inf - inf).  ``numeric``: the expressions are calls of
    ``gauss_pair_<block>(a, b, x, y, z)`` = E[s1^(a)(u) s2^(b)(v)] and
    ``gauss_single_<block>(a, b, x)`` = E[s1^(a)(u) s2^(b)(u)], evaluated by quadrature;
    ``derivatives`` then holds (s1, s1', u s1'), (s2, s2', u s2') as sympy expressions in
    ``_s`` (or placeholders for callables).
    """

    phi: sp.Expr
    d_x: sp.Expr
    d_y: sp.Expr
    d_z: sp.Expr
    psi: sp.Expr | None
    d_psi: sp.Expr | None
    numeric: bool = False
    derivatives: tuple = ()


def pair_functions(s1, s2, name, diagonal, trace=None):
    """Pair functions of the activations ``s1`` (row) and ``s2`` (column); see
    :class:`PairFunctions`.  ``diagonal``: also derive psi (i = j terms)."""
    kinds = {activation_kind(s1), activation_kind(s2)}
    if "numeric" in kinds:
        return _numeric_pair_functions(s1, s2, name, diagonal)
    from symflow.engine.activations import decompose, derivative_terms
    from symflow.engine.gaussian import pair_expectation

    cov = sp.Matrix([[x, z], [z, y]])
    t1, t2 = decompose(s1, _s), decompose(s2, _s)
    d1, d2 = derivative_terms(t1), derivative_terms(t2)

    def E(a, b):
        return _tidy(pair_expectation(a, b, cov, trace))

    phi = E(t1, t2)
    d_z = E(d1, d2)
    # Price: d/dx E[s1(u) s2(v)] = E[s1''(u) s2(v)] / 2; with Stein on u s1'(u) s2(v),
    # E[u s1' s2] = x E[s1'' s2] + z E[s1' s2'], so only first derivatives are needed (a
    # step activation's s'' = delta' is not): d_x = (E[u s1' s2] - z d_z) / (2 x)
    d_x = _tidy((E(_times_z(d1), t2) - z * d_z) / (2 * x))
    d_y = _tidy((E(t1, _times_z(d2)) - z * d_z) / (2 * y))
    psi = d_psi = None
    if diagonal:
        psi = _tidy(phi.subs({y: x, z: x}, simultaneous=True))
        d_psi = _tidy(sp.diff(psi, x))
    return PairFunctions(phi, d_x, d_y, d_z, psi, d_psi)


def _times_z(terms):
    from symflow.engine.gaussian import Factor

    return [(c, Factor(f.power + 1, f.shape, f.param)) for c, f in terms]


def _tidy(e):
    """Simplification for small expressions only, and only when it shortens them
    (``sympy.simplify`` takes tens of seconds on the larger ones and often lengthens
    them; the code generator extracts common subexpressions anyway)."""
    e = sp.sympify(e)
    if e.has(sp.Integral) or sp.count_ops(e) > 80:
        return e
    s = sp.simplify(e)
    return s if sp.count_ops(s) <= sp.count_ops(e) else e


def _numeric_pair_functions(s1, s2, name, diagonal):
    for act in (s1, s2):
        if activation_kind(act) == "closed":
            from symflow.engine.activations import decompose

            if any(f.shape == "H" for _, f in decompose(act, _s)):
                raise ValueError("a numeric activation (tanh, sigmoid, softplus, callable) "
                                 "can be paired only with smooth activations (polynomials, "
                                 f"erf, other numeric ones), not with the step-type {act}")
    # index 0: s, 1: s', 2: u s'(u).  As for the closed forms (Price + Stein) only first
    # derivatives enter: d_x = (E[u s1' s2] - z E[s1' s2']) / (2x), and for one field
    # d/dx E[h(u)] = E[u h'(u)] / (2x) with h = s1 s2
    pair = sp.Function(f"gauss_pair_{name}")
    single = sp.Function(f"gauss_single_{name}")
    phi = pair(0, 0, x, y, z)
    d_z = pair(1, 1, x, y, z)
    d_x = (pair(2, 0, x, y, z) - z * d_z) / (2 * x)
    d_y = (pair(0, 2, x, y, z) - z * d_z) / (2 * y)
    psi = d_psi = None
    if diagonal:
        psi = single(0, 0, x)
        d_psi = (single(2, 0, x) + single(0, 2, x)) / (2 * x)
    ders = tuple((a, sp.diff(a, _s), _s * sp.diff(a, _s)) if isinstance(a, sp.Expr) else
                 (a, 1, 2) for a in (s1, s2))
    return PairFunctions(phi, d_x, d_y, d_z, psi, d_psi, True, ders)


def constant_term(spec: ModelSpec):
    """Risk term independent of the overlaps: loss_scale * noise."""
    return sp.sympify(spec.loss_scale) * sp.sympify(spec.noise)


# ---------------------------------------------------------------- symbolic forms
def _mat(name, rows, cols):
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}{j}", real=True))


def overlap_symbols(m, m_star):
    """Symbolic symmetric Q (m x m), general M (m x m*), symmetric P (m* x m*)."""
    Q = sp.Matrix(m, m, lambda i, j: sp.Symbol(f"Q_{min(i, j)}{max(i, j)}", real=True))
    P = sp.Matrix(m_star, m_star,
                  lambda i, j: sp.Symbol(f"P_{min(i, j)}{max(i, j)}", real=True))
    M = _mat("M", m, m_star)
    return Q, M, P


def risk_sum_expr(spec: ModelSpec):
    """The risk as an indexed double sum for arbitrary widths (trace/matrix form).

    Returns a sympy expression in IndexedBase objects Q, M, P, a, a_star with
    symbolic widths m, m_star (``sympy.Sum``); ``.doit()`` at given widths
    reproduces the entry-wise polynomial.
    """
    m, ms = sp.symbols("m m_star", integer=True, positive=True)
    i, j = sp.symbols("i j", integer=True)
    base = {n: sp.IndexedBase(n) for n in ("Q", "M", "P", "a", "a_star")}
    width = {"Q": m, "P": ms}
    total = constant_term(spec)
    for b in derive_blocks(spec):
        term = 0
        if b.monomials is None:  # pair function (phi is continuous at i = j)
            term = b.coef * b.phi.subs({x: base[b.row][i, i], y: base[b.col][j, j],
                                        z: base[b.cross][i, j]}, simultaneous=True)
        for c, p, q, r in b.monomials or ():
            term += c * base[b.row][i, i] ** p * base[b.col][j, j] ** q \
                * base[b.cross][i, j] ** r
        if spec.weighted:
            term = base[b.row_weight][i] * base[b.col_weight][j] * term
        total += sp.Sum(term, (i, 0, width[b.row] - 1), (j, 0, width[b.col] - 1))
    if spec.weight_decay != 0:
        total += spec.weight_decay / 2 * sp.Sum(base["Q"][i, i], (i, 0, m - 1))
    return total


def entrywise_risk(spec: ModelSpec, m, m_star, a=None, a_star=None):
    """Risk for given widths as a polynomial in the entries of Q, M, P (from the pair sums)."""
    Q, M, P = overlap_symbols(m, m_star)
    mats = {"Q": Q, "M": M, "P": P}
    a = [1] * m if a is None else list(a)
    a_star = [1] * m_star if a_star is None else list(a_star)
    w = {"a": a, "a_star": a_star}
    total = constant_term(spec)
    for b in derive_blocks(spec):
        X, Y, C = mats[b.row], mats[b.col], mats[b.cross]
        for ii in range(X.shape[0]):
            for jj in range(Y.shape[0]):
                total += w[b.row_weight][ii] * w[b.col_weight][jj] * b.phi.subs(
                    {x: X[ii, ii], y: Y[jj, jj], z: C[ii, jj]}, simultaneous=True) \
                    * _block_coef(spec, b)
    total += spec.weight_decay / 2 * Q.trace()
    return sp.expand(total), (Q, M, P)


def _block_coef(spec, b):
    ls = sp.sympify(spec.loss_scale)
    return -2 * ls if b.name == "QM" else ls


def _network(spec: ModelSpec, m, m_star, a=None, a_star=None):
    """Symbolic overlaps, joint covariance of all local fields, fields, f and f*."""
    Q, M, P = overlap_symbols(m, m_star)
    cov = sp.Matrix(sp.BlockMatrix([[Q, M], [M.T, P]]))
    h = sp.symbols(f"h0:{m}", real=True)
    g = sp.symbols(f"g0:{m_star}", real=True)
    a = [1] * m if a is None else list(a)
    a_star = [1] * m_star if a_star is None else list(a_star)
    f = sum(a[i] * spec.activation.subs(_s, h[i]) for i in range(m))
    fs = sum(a_star[k] * spec.teacher_activation.subs(_s, g[k]) for k in range(m_star))
    return (Q, M, P), cov, h, g, a, f, fs


def direct_entrywise_risk(spec: ModelSpec, m, m_star, a=None, a_star=None):
    """Independent path: loss_scale * E[(f - f*)^2] by one ``expect`` over all m + m* fields."""
    (Q, M, P), cov, h, g, _, f, fs = _network(spec, m, m_star, a, a_star)
    val = spec.loss_scale * (expect(sp.expand((f - fs) ** 2), list(h) + list(g), cov)
                             + spec.noise)
    return sp.expand(val + spec.weight_decay / 2 * Q.trace()), (Q, M, P)


def overlap_gradients(spec: ModelSpec, m, m_star):
    """G_Q = dL/dQ and G_M = dL/dM, entries treated as independent (symbolic, small widths)."""
    # differentiate the pair sums in general (non-symmetric) Q and P, then symmetrise
    Qg = _mat("Q", m, m)
    Ps = _mat("P", m_star, m_star)
    Q, M, P = overlap_symbols(m, m_star)
    mats = {"Q": Qg, "M": M, "P": Ps}
    total = 0
    for b in derive_blocks(spec):
        X, Y, C = mats[b.row], mats[b.col], mats[b.cross]
        for ii in range(X.shape[0]):
            for jj in range(Y.shape[0]):
                total += b.phi.subs({x: X[ii, ii], y: Y[jj, jj], z: C[ii, jj]},
                                    simultaneous=True) * _block_coef(spec, b)
    total += spec.weight_decay / 2 * Qg.trace()
    GQ = Qg.applyfunc(lambda e: sp.diff(total, e))
    GM = M.applyfunc(lambda e: sp.diff(total, e))
    sym = {Qg[i, j]: Q[i, j] for i in range(m) for j in range(m)}
    sym.update({Ps[i, j]: P[i, j] for i in range(m_star) for j in range(m_star)})
    return GQ.subs(sym), GM.subs(sym), (Q, M, P)


def chain_rule_flow(GQ, GM, Q, M, P):
    """Overlap ODE right-hand side from the overlap gradients (chain rule, matrix form)."""
    S = GQ + GQ.T
    dQ = -(S * Q + Q * S + GM * M.T + M * GM.T)
    dM = -(S * M + GM * P)
    return dQ, dM


def entrywise_weight_flow(spec: ModelSpec, d, m, m_star):
    """Independent path at small (d, m, m*): dQ/dt and dM/dt from dW/dt = -grad_W L.

    W and W* are d x m and d x m* matrices of symbols; the risk is the entry-wise
    polynomial with Q = W^T W, M = W^T W*, P = W*^T W*; grad_W is computed by sympy
    differentiation with respect to each entry of W; then
    dQ/dt = -(grad^T W + W^T grad), dM/dt = -grad^T W*.

    Returns (dQ, dM, W, Ws) as sympy matrices in the entries of W and W*.
    """
    W = _mat("W", d, m)
    Ws = _mat("V", d, m_star)
    L, (Q, M, P) = entrywise_risk(spec, m, m_star)
    Qw, Mw, Pw = W.T * W, W.T * Ws, Ws.T * Ws
    sub = {}
    for i in range(m):
        for j in range(i, m):
            sub[Q[i, j]] = Qw[i, j]
        for k in range(m_star):
            sub[M[i, k]] = Mw[i, k]
    for k in range(m_star):
        for l in range(k, m_star):
            sub[P[k, l]] = Pw[k, l]
    Lw = L.xreplace(sub)
    grad = W.applyfunc(lambda e: sp.diff(Lw, e))
    dQ = (-(grad.T * W + W.T * grad)).applyfunc(sp.expand)
    dM = (-(grad.T * Ws)).applyfunc(sp.expand)
    return dQ, dM, W, Ws


# ------------------------------------------------------------------ online SGD
# four-body covariance symbols among (h_j, h_k, u_p, u_q)
FOUR = ("j", "k", "p", "q")
C4 = {(a, b): sp.Symbol(f"c_{a}{b}", real=True)
      for i, a in enumerate(FOUR) for b in FOUR[i:]}


def _c4(a, b):
    return C4[(a, b)] if (a, b) in C4 else C4[(b, a)]


@dataclass(frozen=True)
class SGDBlock:
    """coef * sum_{p,q} w_p w'_q phi(cov(h_j, h_k, u_p, u_q)) for each (j, k).

    ``p_kind``/``q_kind``: 'S' (student unit: overlaps with h via Q) or 'T' (teacher
    unit: via M, among teachers via P).  ``phi`` is a polynomial in the symbols
    :data:`C4`.
    """

    name: str
    p_kind: str
    q_kind: str
    coef: sp.Expr
    phi: sp.Expr


SGD_MAX_TERMS = 200_000  # default budget: terms of one four-field SGD moment polynomial


def derive_sgd_blocks(spec: ModelSpec, max_terms=SGD_MAX_TERMS):
    """Blocks of the eta^2 term E[g_j g_k] of online SGD (without the a_j a_k factor).

    g_j = 2 loss_scale (f - y) a_j s'(h_j); with y = f* + sqrt(noise) xi,
    E[g_j g_k] = 4 ls^2 a_j a_k ( E[(f - f*)^2 s'(h_j) s'(h_k)] + noise E[s'(h_j) s'(h_k)] ),
    and (f - f*)^2 expands into student-student, student-teacher (x -2) and
    teacher-teacher pair sums: each a four-field Gaussian expectation (Isserlis).
    Returns (list of SGDBlock, noise pair polynomial in (x, y, z) for E[s'(h_j) s'(h_k)]).

    Polynomial activations use the integer Isserlis tables of
    :func:`symflow.engine.moments.expect_polynomial_generic` with the term budget
    ``max_terms`` (estimated before deriving: :class:`BudgetExceeded` names the
    estimate; None disables the budget).
    """
    from symflow.engine.moments import expect_polynomial_generic

    ls = sp.sympify(spec.loss_scale)
    ds = sp.diff(spec.activation, _s)
    fields = sp.symbols("f_j f_k f_p f_q", real=True)
    cov = sp.Matrix(4, 4, lambda i, j: _c4(FOUR[i], FOUR[j]))
    act = {"S": spec.activation, "T": spec.teacher_activation}
    blocks = []
    for name, pk, qk, coef in (("SS", "S", "S", 1), ("ST", "S", "T", -2), ("TT", "T", "T", 1)):
        factors = [sp.Poly(ds, _s), sp.Poly(ds, _s), sp.Poly(act[pk], _s),
                   sp.Poly(act[qk], _s)]
        terms = {(): sp.Integer(1)}
        for f in factors:  # product of one-field polynomials: exponents concatenate
            terms = {k + (e,): c * fc for k, c in terms.items()
                     for (e,), fc in f.terms()}
        if all(sp.sympify(c).is_Rational for c in terms.values()):
            phi = expect_polynomial_generic(terms, cov, max_terms)
        else:  # irrational coefficients: the sympy path
            expr = sp.Add(*[c * sp.Mul(*[fi**e for fi, e in zip(fields, k)])
                            for k, c in terms.items()])
            phi = expect(expr, fields, cov)
        blocks.append(SGDBlock(name, pk, qk, 4 * ls**2 * coef, phi))
    noise_pair = sp.expand(4 * ls**2 * sp.sympify(spec.noise) * pair_moment(ds, ds))
    return blocks, noise_pair


def entrywise_sgd_term(spec: ModelSpec, m, m_star, a=None, a_star=None):
    """Independent path: E[g_j g_k] for given widths by one ``expect`` over m + m* fields.

    Returns (m x m sympy Matrix, (Q, M, P)).
    """
    (Q, M, P), cov, h, g, a, f, fs = _network(spec, m, m_star, a, a_star)
    ls = sp.sympify(spec.loss_scale)
    ds = sp.diff(spec.activation, _s)
    out = sp.zeros(m, m)
    fields = list(h) + list(g)
    for j in range(m):
        for k in range(m):
            w = 4 * ls**2 * a[j] * a[k] * ds.subs(_s, h[j]) * ds.subs(_s, h[k])
            out[j, k] = expect(sp.expand(w * (f - fs) ** 2), fields, cov) + expect(
                sp.expand(w * spec.noise), fields, cov)
    return out, (Q, M, P)


def polynomial_pair_functions(b):
    """:class:`PairFunctions` of a polynomial block (partials by differentiation of the
    Isserlis polynomial, exact; psi = phi(x, x, x))."""
    phi = sp.expand(b.phi)
    psi = sp.expand(phi.subs({y: x, z: x}, simultaneous=True))
    return PairFunctions(phi, sp.diff(phi, x), sp.diff(phi, y), sp.diff(phi, z), psi,
                         sp.diff(psi, x))


def second_partials(pf):
    """Second derivatives of a pair function for the Jacobian of the flow:
    (xx, xy, xz, yy, yz, zz) of phi and psi''(x), by differentiating the first partials
    (which came from Price's rule).  Numeric (quadrature) pair functions: None."""
    if pf.numeric:
        return None
    return ((sp.diff(pf.d_x, x), sp.diff(pf.d_x, y), sp.diff(pf.d_x, z),
             sp.diff(pf.d_y, y), sp.diff(pf.d_y, z), sp.diff(pf.d_z, z)),
            None if pf.d_psi is None else sp.diff(pf.d_psi, x))
