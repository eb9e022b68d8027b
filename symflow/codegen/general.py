"""Code generation for non-polynomial activations: pair functions evaluated elementwise.

For polynomial models the risk is a sum of monomial contractions (:mod:`.render`).  For
any other activation each block of the risk is ``coef * sum_ij w_i w_j phi(X_ii, Y_jj,
C_ij)`` with a closed-form (or quadrature) ``phi``; the generated module defines, per
block, ``_<B>_phi(x, y, z)``, ``_<B>_grad(x, y, z)`` (Price-derived partials) and, for
the diagonal blocks, ``_<B>_psi(x)`` / ``_<B>_dpsi(x)`` (the i = j terms, one field
twice), each printed after sympy's common-subexpression elimination.  The kernels
broadcast them over the unit pairs (numpy) or loop over them (mpmath).

Printing is defensive where Gaussian closed forms touch the boundary of their domain
(aligned units, |rho| = 1): fractional powers clamp their base at 0 and ``asin`` clips
its argument to [-1, 1], so round-off of order eps cannot produce NaN.  Integrals left
by Price's rule (four or more step shapes) become tanh-sinh quadratures
(:func:`symflow.engine.quadrature.quad01`; ``mpmath.quad`` in the mpmath backend).
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import NumPyPrinter, SciPyPrinter
from sympy.printing.pycode import MpmathPrinter

__all__ = ["function_source", "general_risk_lines", "general_grad_lines", "pair_helpers",
           "numeric_activation_source"]


class _NumpyGauss(SciPyPrinter):
    def _print_Pow(self, expr, rational=False):
        b, e = expr.as_base_exp()
        if e.is_Rational and not e.is_Integer and not b.is_number:
            base = f"numpy.maximum({self._print(b)}, 0.0)"
            if e == sp.Rational(1, 2):
                return f"numpy.sqrt({base})"
            if e == -sp.Rational(1, 2):
                return f"(1/numpy.sqrt({base}))"
            return f"{base}**({self._print(e)})"
        return super()._print_Pow(expr, rational=rational)

    def _print_asin(self, expr):
        return f"numpy.arcsin(numpy.clip({self._print(expr.args[0])}, -1.0, 1.0))"

    def _print_Function(self, expr):
        name = expr.func.__name__
        if name.startswith(("gauss_pair_", "gauss_single_")):
            kind, block = name.split("_")[1], name.split("_", 2)[2]
            a, b = (int(v) for v in expr.args[:2])
            rest = ", ".join(self._print(v) for v in expr.args[2:])
            fn = "_gauss_pair" if kind == "pair" else "_gauss_single_product"
            return f"{fn}(_ACT_{block}[0][{a}], _ACT_{block}[1][{b}], {rest})"
        return super()._print_Function(expr)


class _MpmathGauss(MpmathPrinter):
    def _print_Pow(self, expr, rational=False):
        b, e = expr.as_base_exp()
        if e.is_Rational and not e.is_Integer and not b.is_number:
            base = f"max({self._print(b)}, 0)"
            return f"mpmath.power({base}, mpmath.mpf({e.p})/{e.q})"
        return super()._print_Pow(expr, rational=rational)

    def _print_asin(self, expr):
        return f"mpmath.asin(min(max({self._print(expr.args[0])}, -1), 1))"

    def _print_Rational(self, expr):
        return f"(mpmath.mpf({expr.p})/mpmath.mpf({expr.q}))"

    def _print_Function(self, expr):
        name = expr.func.__name__
        if name.startswith(("gauss_pair_", "gauss_single_")):
            raise NotImplementedError("numeric (quadrature) activations have no mpmath "
                                      "backend; use dps= only with closed-form activations")
        return super()._print_Function(expr)


PRINTERS = {"numpy": _NumpyGauss, "mpmath": _MpmathGauss}


def function_source(name, args, exprs, backend, broadcast=True):
    """Source of ``def name(*args)`` returning ``exprs`` (a tuple if several).

    Common subexpressions are extracted (``sympy.cse``, deterministic symbol names);
    each ``sympy.Integral`` over [0, 1] becomes a nested integrand function and a
    quadrature call.  With ``broadcast`` (numpy), results are broadcast to the shape of
    the arguments (a constant still returns one value per pair).
    """
    printer = PRINTERS[backend]()
    exprs = [sp.sympify(e) for e in exprs]
    integrals = sorted({i for e in exprs for i in e.atoms(sp.Integral)}, key=sp.srepr)
    lines = [f"def {name}({', '.join(str(a) for a in args)}):"]
    repl = {}
    for k, integral in enumerate(integrals):
        (var, lo, hi), = integral.limits
        if (lo, hi) != (0, 1):
            raise ValueError(f"only integrals over [0, 1] are generated, got {integral}")
        t = sp.Symbol("t", positive=True)
        body = function_source(f"_f{k}", [t] + list(args), [integral.function.subs(var, t)],
                               backend, broadcast=False)
        lines += ["    " + ln for ln in body.splitlines()]
        placeholder = sp.Symbol(f"_I{k}")
        repl[integral] = placeholder
        arglist = ", ".join(str(a) for a in args)
        if backend == "numpy":
            lines.append(f"    _I{k} = _quad01(lambda t: _f{k}(t, {arglist}), "
                         f"numpy.broadcast({arglist}).ndim)")
        else:
            lines.append(f"    _I{k} = mpmath.quad(lambda t: _f{k}(t, {arglist}), [0, 1])")
    exprs = [_stable_asin(e.xreplace(repl)) for e in exprs]
    subs, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_x"), order="canonical")
    for sym, val in subs:
        lines.append(f"    {sym} = {printer.doprint(val)}")
    outs = [printer.doprint(e) for e in reduced]
    if broadcast and backend == "numpy" and args:
        zero = " + ".join(str(a) for a in args)
        outs = [f"{o} + 0.0 * ({zero})" for o in outs]
    lines.append(f"    return {outs[0] if len(outs) == 1 else ', '.join(outs)}")
    return "\n".join(lines) + "\n"


def _stable_asin(expr):
    """asin(N / sqrt(D)) -> atan2(N, sqrt(D - N^2)) for polynomials N, D.

    The closed forms carry correlations as ``z / (sqrt(x) sqrt(y))``: at aligned units
    (z^2 = x y, e.g. perfect recovery with teacher norms other than 1) the rounded
    product of square roots gives |rho| = 1 - eps, and asin's square-root singularity
    turns that into an error of sqrt(eps) ~ 1e-8 (relu's risk at Q = M = P = 2 was
    3.4e-9; at dps = 30, 1e-16).  atan2 of the exact-zero x y - z^2 is exactly +-pi/2.
    Arguments not of that form are left alone.
    """
    def rewrite(arg):
        # cheap structural test, no simplification (the relu SGD terms hold hundreds of
        # asin; powdenest / simplify on them took seconds to minutes)
        free = sorted(arg.free_symbols, key=str)
        if not free or _larger_than(arg, 40) or arg.has(sp.Integral):
            return sp.asin(arg)
        # (expand also cleans Schur-complement leftovers such as
        # sqrt(4 pi^2 x y - 4 pi^2 x (y - 1/x)) = 2 pi of mixed activations)
        n, den = sp.fraction(sp.expand(arg))
        roots = sp.Mul.make_args(den)
        if not all((f.is_Pow and f.exp == sp.Rational(1, 2)) or (f.is_number and f > 0)
                   for f in roots) or not any(f.is_Pow for f in roots):
            return sp.asin(arg)
        D = sp.expand(den**2)  # den = sqrt(D) > 0
        if not (n.is_polynomial(*free) and D.is_polynomial(*free)):
            return sp.asin(arg)
        return sp.atan2(n, sp.sqrt(D - n**2))

    mapping = {}
    for a in expr.atoms(sp.asin):
        new = rewrite(a.args[0])
        if new != a:
            mapping[a] = new
    return expr.xreplace(mapping) if mapping else expr


def _larger_than(expr, n):
    """More than n nodes in the expression tree (stops counting at n + 1)."""
    for k, _ in enumerate(sp.preorder_traversal(expr)):
        if k >= n:
            return True
    return False


def numeric_activation_source(block, pair):
    """Module-level ``_ACT_<block> = ((s1, s1', s1''), (s2, s2', s2''))`` as numpy lambdas
    (quadrature path), or None when an activation is a Python callable (bound at run
    time, see :class:`symflow.numerics.model.Model`)."""
    from symflow.derivation.model import _s

    printer = _NumpyGauss()
    u = sp.Symbol("u", real=True)
    sides = []
    for ders in pair.derivatives:
        if not all(isinstance(d, sp.Expr) for d in ders):
            return None
        sides.append("(" + ", ".join(f"lambda u: {printer.doprint(d.subs(_s, u))} + 0.0 * u"
                                     for d in ders) + ")")
    return f"_ACT_{block} = ({sides[0]}, {sides[1]})\n"


def block_pair(b):
    """PairFunctions of a block (derived ones, or from the monomials of a polynomial)."""
    from symflow.derivation.model import polynomial_pair_functions

    return b.pair if b.pair is not None else polynomial_pair_functions(b)


def pair_helpers(blocks, backend):
    """Source of the per-block pair functions (see the module docstring)."""
    from symflow.derivation.model import x, y, z

    out = []
    for b in blocks:
        pf = block_pair(b)
        if pf.numeric and backend == "numpy":
            src = numeric_activation_source(b.name, pf)
            out.append(src if src is not None else f"_ACT_{b.name} = None  # bound at run time\n")
        out.append(function_source(f"_{b.name}_phi", (x, y, z), [pf.phi], backend))
        grads = _needed_partials(b)
        if grads:
            out.append(function_source(f"_{b.name}_grad", (x, y, z),
                                       [getattr(pf, g) for g in grads], backend))
        if b.row == b.col:
            out.append(function_source(f"_{b.name}_psi", (x,), [pf.psi], backend))
            if b.cross in ("Q", "M"):
                out.append(function_source(f"_{b.name}_dpsi", (x,), [pf.d_psi], backend))
    return "\n\n".join(out)


def _needed_partials(b):
    """Partials of phi the gradient needs: P is constant along the flow."""
    return {"Q": ("d_x", "d_y", "d_z"), "M": ("d_x", "d_z"), "P": ()}[b.cross]


def _weights(spec, b, backend):
    if not spec.weighted:
        return None, None
    r, c = b.row_weight, b.col_weight
    if backend == "numpy":
        return f"{r}[..., :, None] * {c}[..., None, :]", f"{r} * {r}"
    return f"{r}[i] * {c}[j]", f"{r}[i] * {r}[i]"


def general_risk_lines(spec, blocks, be):
    """Body of ``risk_from_overlaps`` for pair-function blocks (numpy or mpmath)."""
    num = be.name == "numpy"
    diag = {"Q": "dQ", "P": "dP"}
    if num:
        lines = ["    dQ = np.diagonal(Q, axis1=-2, axis2=-1)",
                 "    dP = np.diagonal(P, axis1=-2, axis2=-1)",
                 f"    out = {be.num(_const(spec))} + 0.0 * dQ[..., 0]"]
    else:
        lines = [f"    out = {be.num(_const(spec))}"]
    for b in blocks:
        w, wd = _weights(spec, b, be.name)
        c = be.num(b.coef)
        if num:
            X, Y = f"{diag[b.row]}[..., :, None]", f"{diag[b.col]}[..., None, :]"
            if b.row == b.col:
                lines += [f"    off = ~np.eye({b.cross}.shape[-1], dtype=bool)  # {b.name}",
                          f"    v = np.where(off, _{b.name}_phi({X}, {Y}, "
                          f"np.where(off, {b.cross}, 0.0)), 0.0)"]
                dsum = f"_{b.name}_psi({diag[b.row]})" + (f" * {wd}" if wd else "")
                lines.append(f"    out = out + {c} * (np.sum(v{' * ' + w if w else ''}, "
                             f"axis=(-2, -1)) + np.sum({dsum}, axis=-1))")
            else:
                lines += [f"    v = _{b.name}_phi({X}, {Y}, {b.cross})  # {b.name}",
                          f"    out = out + {c} * np.sum(v{' * ' + w if w else ''}, "
                          "axis=(-2, -1))"]
        else:
            term = (f"(_{b.name}_psi({b.row}[i, i]) if i == j else "
                    f"_{b.name}_phi({b.row}[i, i], {b.col}[j, j], {b.cross}[i, j]))"
                    if b.row == b.col else
                    f"_{b.name}_phi({b.row}[i, i], {b.col}[j, j], {b.cross}[i, j])")
            lines.append(f"    out += {c} * mpmath.fsum({term}{' * ' + w if w else ''} "
                         f"for i in range({b.row}.rows) for j in range({b.col}.rows))"
                         f"  # {b.name}")
    if spec.weight_decay != 0:
        half = be.num(spec.weight_decay / 2)
        lines.append(f"    out = out + {half} * np.sum(dQ, axis=-1)" if num else
                     f"    out += {half} * mpmath.fsum(Q[i, i] for i in range(Q.rows))")
    lines.append("    return out")
    return lines


def general_grad_lines(spec, blocks, be):
    """Body of ``overlap_grad`` for pair-function blocks (numpy or mpmath)."""
    num = be.name == "numpy"
    if num:
        lines = ["    dQ = np.diagonal(Q, axis1=-2, axis2=-1)",
                 "    dP = np.diagonal(P, axis1=-2, axis2=-1)",
                 "    G_Q = np.zeros(np.broadcast_shapes(Q.shape, M.shape[:-2] + Q.shape[-2:]))",
                 "    G_M = np.zeros(np.broadcast_shapes(M.shape, Q.shape[:-2] + M.shape[-2:]))",
                 "    g_dQ = np.zeros(G_Q.shape[:-1])"]
    else:
        lines = ["    G_Q = mpmath.zeros(Q.rows, Q.cols)",
                 "    G_M = mpmath.zeros(M.rows, M.cols)"]
    for b in blocks:
        if b.cross == "P":
            continue
        w, wd = _weights(spec, b, be.name)
        c = be.num(b.coef)
        mul = f" * {w}" if w else ""
        if num and b.cross == "Q":
            lines += ["    off = ~np.eye(Q.shape[-1], dtype=bool)  # QQ",
                      "    dx, dy, dz = _QQ_grad(dQ[..., :, None], dQ[..., None, :], "
                      "np.where(off, Q, 0.0))",
                      f"    G_Q = G_Q + {c} * np.where(off, dz{mul}, 0.0)",
                      f"    g_dQ = g_dQ + {c} * (np.sum(np.where(off, dx{mul}, 0.0), axis=-1) "
                      f"+ np.sum(np.where(off, dy{mul}, 0.0), axis=-2) + _QQ_dpsi(dQ)"
                      f"{' * ' + wd if wd else ''})"]
        elif num:
            lines += [f"    dx, dz = _{b.name}_grad(dQ[..., :, None], dP[..., None, :], M)"
                      f"  # {b.name}",
                      f"    G_M = G_M + {c} * dz{mul}",
                      f"    g_dQ = g_dQ + {c} * np.sum(dx{mul}, axis=-1)"]
        elif b.cross == "Q":
            lines += ["    for i in range(Q.rows):  # QQ",
                      "        for j in range(Q.rows):",
                      "            if i == j:",
                      f"                G_Q[i, i] += {c} * _QQ_dpsi(Q[i, i])"
                      + (f" * {wd}" if wd else ""),
                      "                continue",
                      "            dx, dy, dz = _QQ_grad(Q[i, i], Q[j, j], Q[i, j])",
                      f"            G_Q[i, j] += {c} * dz{mul}",
                      f"            G_Q[i, i] += {c} * dx{mul}",
                      f"            G_Q[j, j] += {c} * dy{mul}"]
        else:
            lines += [f"    for i in range(M.rows):  # {b.name}",
                      "        for j in range(M.cols):",
                      f"            dx, dz = _{b.name}_grad(Q[i, i], P[j, j], M[i, j])",
                      f"            G_M[i, j] += {c} * dz{mul}",
                      f"            G_Q[i, i] += {c} * dx{mul}"]
    half = be.num(spec.weight_decay / 2) if spec.weight_decay != 0 else None
    if num:
        if half:
            lines.append(f"    g_dQ = g_dQ + {half}")
        lines += ["    idx = np.arange(Q.shape[-1])",
              "    G_Q[..., idx, idx] += g_dQ  # diagonal terms, in place",
                  "    return G_Q, G_M"]
    else:
        if half:
            lines += ["    for i in range(Q.rows):", f"        G_Q[i, i] += {half}"]
        lines.append("    return G_Q, G_M")
    return lines


def _const(spec):
    return sp.sympify(spec.loss_scale) * sp.sympify(spec.noise)


# ----------------------------------------------------------------- online SGD
_SLOTS = ("j", "k", "p", "q")
_NP_AXES = {"j": 0, "k": 1, "p": 2, "q": 3}


def _slot_array(a, b, kind):
    """numpy source of the covariance of slots a, b broadcast over (..., j, k, p, q)."""
    ka, kb = kind[a], kind[b]
    if a == b:
        src = "dQ" if ka == "S" else "dP"
        shape = ["None"] * 4
        shape[_NP_AXES[a]] = ":"
        return f"{src}[..., {', '.join(shape)}]"
    src = {("S", "S"): "Q", ("S", "T"): "M", ("T", "S"): "M_T", ("T", "T"): "P"}[(ka, kb)]
    shape = ["None"] * 4
    shape[_NP_AXES[a]], shape[_NP_AXES[b]] = ":", ":"
    # the two indexed axes keep their order a < b in (j, k, p, q)
    return f"{src}[..., {', '.join(shape)}]"


def render_general_sgd(spec, sgd_blocks, noise, backend):
    """Source of ``sgd_term`` for closed-form activations (see
    :mod:`symflow.derivation.sgd`): generic four-field formula, overwritten on the
    coincident index tuples by the formula of their pattern."""
    from symflow.derivation.model import C4, x, y, z

    num = backend == "numpy"
    syms = sorted(C4.values(), key=str)
    helpers = []
    for b in sgd_blocks:
        helpers.append(function_source(f"_{b.name}_phi4", syms, [b.phi], backend,
                                       broadcast=False))
        for i, (part, expr) in enumerate(b.patterns):
            args = sorted(expr.free_symbols & set(syms), key=str)
            helpers.append(function_source(f"_{b.name}_pattern{i}", args, [expr], backend,
                                           broadcast=False))
    nphi, npsi = noise
    if nphi != 0:
        helpers.append(function_source("_noise_phi", (x, y, z), [nphi], backend))
        helpers.append(function_source("_noise_psi", (x,), [npsi], backend))
    wname = {"S": "a", "T": "a_star"}
    from symflow.codegen.render import _sig

    lines = ["", "", "_COINCIDE = 1e-13  # relative variance of a difference below which two "
             "fields are one", "", "", f"def sgd_term({_sig(spec)}):",
             '    """eta^2 term of the online-SGD overlap ODE: E[g_j g_k] (m x m).\n\n'
             '    dQ/dt = eta * (gradient-flow dQ/dt) + eta^2 * sgd_term, t = samples / d.\n'
             '    """']
    if num:
        lines += ["    Q, M, P = (np.asarray(Q, dtype=float), np.asarray(M, dtype=float),"
                  " np.asarray(P, dtype=float))",
                  "    dQ = np.diagonal(Q, axis1=-2, axis2=-1)",
                  "    dP = np.diagonal(P, axis1=-2, axis2=-1)",
                  "    M_T = np.swapaxes(M, -1, -2)",
                  "    m, ms = Q.shape[-1], P.shape[-1]",
                  "    out = 0.0 * Q",
                  "    n_of = {'S': m, 'T': ms}",
                  "    with np.errstate(invalid='ignore', divide='ignore', over='ignore'):"]
        for b in sgd_blocks:
            kind = {"j": "S", "k": "S", "p": b.p_kind, "q": b.q_kind}
            lines.append(f"        # block {b.name}")
            for s in syms:
                a_, b_ = str(s)[2], str(s)[3]
                lines.append(f"        {s} = {_slot_array(a_, b_, kind)}")
            lines.append(f"        v = _{b.name}_phi4({', '.join(str(s) for s in syms)})")
            if b.patterns:  # fields coincide: variance of the difference ~ 0
                for ai, a_ in enumerate(_SLOTS):
                    for b_ in _SLOTS[ai + 1:]:
                        lines.append(f"        co_{a_}{b_} = c_{a_}{a_} + c_{b_}{b_} - 2 * "
                                     f"c_{a_}{b_} <= _COINCIDE * (c_{a_}{a_} + c_{b_}{b_})")
            for i, (part, expr) in enumerate(b.patterns):
                conds = []
                block_of = {s: bi for bi, blk in enumerate(part) for s in blk}
                for ai, a_ in enumerate(_SLOTS):
                    for b_ in _SLOTS[ai + 1:]:
                        neg = "" if block_of[a_] == block_of[b_] else "~"
                        conds.append(f"{neg}co_{a_}{b_}")
                args = ", ".join(str(s) for s in sorted(expr.free_symbols & set(syms),
                                                          key=str))
                lines.append(f"        v = np.where({' & '.join(conds)}, "
                             f"_{b.name}_pattern{i}({args}), v)  # {part}")
            w = (f" * {wname[b.p_kind]}[..., None, None, :, None]"
                 f" * {wname[b.q_kind]}[..., None, None, None, :]") if spec.weighted else ""
            lines.append(f"        full = Q.shape[:-2] + (m, m, n_of['{b.p_kind}'], "
                         f"n_of['{b.q_kind}'])")
            lines.append(f"        out = out + {_num(b.coef, backend)} * np.sum(np.broadcast_to("
                         f"v{w}, full), axis=(-2, -1))")
        if nphi != 0:
            lines += ["    off = ~np.eye(m, dtype=bool)",
                      "    out = out + np.where(off, _noise_phi(dQ[..., :, None], "
                      "dQ[..., None, :], np.where(off, Q, 0.0)), 0.0)",
                      "    out = out + np.eye(m) * _noise_psi(dQ)[..., :, None]"]
        if spec.weighted:
            lines.append("    out = out * a[..., :, None] * a[..., None, :]")
        lines.append("    return out")
    else:
        lines += ["    Q, M, P = mpmath.matrix(Q), mpmath.matrix(M), mpmath.matrix(P)",
                  "    m, ms = Q.rows, P.rows",
                  "    out = mpmath.zeros(m, m)",
                  "    mats = {'SS': Q, 'ST': M, 'TS': M.T, 'TT': P}",
                  "    n_of = {'S': m, 'T': ms}",
                  "    for j in range(m):",
                  "        for k in range(m):",
                  "            acc = []"]
        for b in sgd_blocks:
            kind = {"j": "S", "k": "S", "p": b.p_kind, "q": b.q_kind}
            lines += [f"            for p in range(n_of['{b.p_kind}']):  # {b.name}",
                      f"                for q in range(n_of['{b.q_kind}']):",
                      "                    idx = {'j': j, 'k': k, 'p': p, 'q': q}"]
            for s in syms:
                a_, b_ = str(s)[2], str(s)[3]
                lines.append(f"                    {s} = mats['{kind[a_]}{kind[b_]}']"
                             f"[idx['{a_}'], idx['{b_}']]")
            if b.patterns:
                lines.append("                    tol = mpmath.eps * 1000")
                for ai, a_ in enumerate(_SLOTS):
                    for b_ in _SLOTS[ai + 1:]:
                        lines.append(f"                    co_{a_}{b_} = c_{a_}{a_} + c_{b_}{b_}"
                                     f" - 2 * c_{a_}{b_} <= tol * (c_{a_}{a_} + c_{b_}{b_})")
            branch = "if"
            for i, (part, expr) in enumerate(b.patterns):
                block_of = {s: bi for bi, blk in enumerate(part) for s in blk}
                conds = []
                for ai, a_ in enumerate(_SLOTS):
                    for b_ in _SLOTS[ai + 1:]:
                        neg = "" if block_of[a_] == block_of[b_] else "not "
                        conds.append(f"{neg}co_{a_}{b_}")
                args = ", ".join(str(s) for s in sorted(expr.free_symbols & set(syms),
                                                          key=str))
                lines += [f"                    {branch} {' and '.join(conds)}:",
                          f"                        v = _{b.name}_pattern{i}({args})"]
                branch = "elif"
            call = f"_{b.name}_phi4({', '.join(str(s) for s in syms)})"
            if b.patterns:
                lines += ["                    else:", f"                        v = {call}"]
            else:
                lines.append(f"                    v = {call}")
            w = (f" * {wname[b.p_kind]}[p] * {wname[b.q_kind]}[q]") if spec.weighted else ""
            lines.append(f"                    acc.append({_num(b.coef, backend)} * v{w})")
        if nphi != 0:
            lines.append("            acc.append(_noise_psi(Q[j, j]) if j == k else "
                         "_noise_phi(Q[j, j], Q[k, k], Q[j, k]))")
        w = " * a[j] * a[k]" if spec.weighted else ""
        lines += [f"            out[j, k] = mpmath.fsum(acc){w}", "    return out"]
    return "\n\n".join(helpers) + "\n".join(lines) + "\n"


def _num(c, backend):
    c = sp.nsimplify(c)
    if backend == "mpmath" and c.is_Rational:
        return f"(mpmath.mpf({c.p})/mpmath.mpf({c.q}))"
    return f"({NumPyPrinter().doprint(c)})" if backend == "numpy" else f"({c})"



# --------------------------------------------- Jacobian (JVP) and pair values
def jacobian_helpers(blocks, backend):
    """Second partials of the pair functions: ``_<B>_hess`` (xx, xy, xz, yy, yz, zz for QQ;
    xx, xz, zz for QM) and ``_QQ_d2psi``; None for numeric (quadrature) models."""
    from symflow.derivation.model import second_partials, x, y, z

    out = []
    for b in blocks:
        if b.cross == "P":
            continue
        sec = second_partials(block_pair(b))
        if sec is None:
            return None
        hess, d2psi = sec
        parts = hess if b.cross == "Q" else (hess[0], hess[2], hess[5])
        out.append(function_source(f"_{b.name}_hess", (x, y, z), parts, backend))
        if b.cross == "Q":
            out.append(function_source(f"_{b.name}_d2psi", (x,), [d2psi], backend))
    return "\n\n".join(out)


def jacobian_source(spec, blocks, backend):
    """Source of ``pair_values``, ``overlap_grad_jvp`` and ``overlap_flow_jvp``.

    ``overlap_flow_jvp(Q, M, P, tQ, tM)`` is the directional derivative of the overlap
    flow along (tQ, tM) (tQ symmetric), by the product rule on the chain-rule template of
    ``overlap_flow`` with ``overlap_grad_jvp`` from the second partials of the pair
    functions; batched over leading axes (numpy), so a full Jacobian is one call with
    the unit directions as a batch.  ``pair_values`` returns the unweighted pair
    matrices V_QQ (diagonal: psi) and V_QM (gradient in the second-layer weights:
    dL/da = 2 coef_QQ V_QQ a + coef_QM V_QM a*).
    """
    from symflow.codegen.render import _sig

    helpers = jacobian_helpers(blocks, backend)
    sig = _sig(spec)
    wsig = ", a, a_star" if spec.weighted else ""
    num = backend == "numpy"
    coef = {b.name: _num(b.coef, backend) for b in blocks}
    out = []
    if num:
        out += ["def pair_values(Q, M, P):",
                '    """Pair matrices V_QQ (..., m, m) (diagonal: the i = j terms) and V_QM '
                '(..., m, m*),\n    without block coefficients or second-layer weights."""',
                "    Q, M, P = (np.asarray(Q, dtype=float), np.asarray(M, dtype=float),"
                " np.asarray(P, dtype=float))",
                "    dQ = np.diagonal(Q, axis1=-2, axis2=-1)",
                "    dP = np.diagonal(P, axis1=-2, axis2=-1)",
                "    off = ~np.eye(Q.shape[-1], dtype=bool)",
                "    V_QQ = np.where(off, _QQ_phi(dQ[..., :, None], dQ[..., None, :], "
                "np.where(off, Q, 0.0)), 0.0) + _QQ_psi(dQ)[..., :, None] * "
                "np.eye(Q.shape[-1])",
                "    V_QM = _QM_phi(dQ[..., :, None], dP[..., None, :], M)",
                "    return V_QQ, V_QM", ""]
    else:
        out += ["def pair_values(Q, M, P):",
                '    """Pair matrices V_QQ (diagonal: the i = j terms) and V_QM (mpmath)."""',
                "    Q, M, P = mpmath.matrix(Q), mpmath.matrix(M), mpmath.matrix(P)",
                "    V_QQ = mpmath.matrix(Q.rows, Q.rows)",
                "    V_QM = mpmath.matrix(M.rows, M.cols)",
                "    for i in range(Q.rows):",
                "        for j in range(Q.rows):",
                "            V_QQ[i, j] = _QQ_psi(Q[i, i]) if i == j else "
                "_QQ_phi(Q[i, i], Q[j, j], Q[i, j])",
                "        for k in range(M.cols):",
                "            V_QM[i, k] = _QM_phi(Q[i, i], P[k, k], M[i, k])",
                "    return V_QQ, V_QM", ""]
    if helpers is None:
        out += [f"def overlap_grad_jvp({sig}, tQ=None, tM=None):",
                "    raise NotImplementedError('the Jacobian needs closed-form activations "
                "(numeric ones have no second partials)')", "",
                f"def overlap_flow_jvp({sig}, tQ=None, tM=None):",
                "    raise NotImplementedError('the Jacobian needs closed-form activations "
                "(numeric ones have no second partials)')", ""]
        return "\n".join(out)
    cq, cm = coef["QQ"], coef["QM"]
    if num:
        wq = "a[..., :, None] * a[..., None, :]" if spec.weighted else "1.0"
        wm = "a[..., :, None] * a_star[..., None, :]" if spec.weighted else "1.0"
        wd = "a * a" if spec.weighted else "1.0"
        out += [f"def overlap_grad_jvp(Q, M, P{wsig}, tQ=None, tM=None):",
                '    """Directional derivative (dG_Q, dG_M) of ``overlap_grad`` along (tQ, '
                'tM)."""',
                "    Q, M, P, tQ, tM = (np.asarray(v, dtype=float) for v in (Q, M, P, tQ, tM))",
                "    m = Q.shape[-1]",
                "    dQ = np.diagonal(Q, axis1=-2, axis2=-1)",
                "    dP = np.diagonal(P, axis1=-2, axis2=-1)",
                "    tx = np.diagonal(tQ, axis1=-2, axis2=-1)",
                "    off = ~np.eye(m, dtype=bool)",
                f"    wq, wm, wd = {wq}, {wm}, {wd}",
                "    X, Y, Z = dQ[..., :, None], dQ[..., None, :], np.where(off, Q, 0.0)",
                "    xx, xy, xz, yy, yz, zz = _QQ_hess(X, Y, Z)",
                "    tX, tY = tx[..., :, None], tx[..., None, :]",
                f"    G_Q = {cq} * np.where(off, wq * (xz * tX + yz * tY + zz * tQ), 0.0)",
                f"    g = {cq} * (np.sum(np.where(off, wq * (xx * tX + xy * tY + xz * tQ), 0.0), "
                "axis=-1)",
                "                + np.sum(np.where(off, wq * (xy * tX + yy * tY + yz * tQ), 0.0), "
                "axis=-2)",
                "                + wd * _QQ_d2psi(dQ) * tx)",
                "    hxx, hxz, hzz = _QM_hess(dQ[..., :, None], dP[..., None, :], M)",
                f"    G_M = {cm} * wm * (hxz * tX + hzz * tM)",
                f"    g = g + {cm} * np.sum(wm * (hxx * tX + hxz * tM), axis=-1)",
                "    return G_Q + g[..., :, None] * np.eye(m), G_M", "",
                f"def overlap_flow_jvp(Q, M, P{wsig}, tQ=None, tM=None):",
                '    """Directional derivative of ``overlap_flow`` along (tQ, tM) (tQ '
                'symmetric).\n\n    Batched over leading axes; the Jacobian of the flow is '
                'this map on unit\n    directions.  Product rule on the chain-rule template '
                'of overlap_flow.\n    """',
                "    Q, M, P, tQ, tM = (np.asarray(v, dtype=float) for v in (Q, M, P, tQ, tM))",
                f"    G_Q, G_M = overlap_grad(Q, M, P{wsig})",
                f"    dG_Q, dG_M = overlap_grad_jvp(Q, M, P{wsig}, tQ=tQ, tM=tM)",
                "    T = lambda A: np.swapaxes(A, -1, -2)  # noqa: E731",
                "    S, dS = G_Q + T(G_Q), dG_Q + T(dG_Q)",
                "    ddQ = -(dS @ Q + S @ tQ + tQ @ S + Q @ dS + dG_M @ T(M) + G_M @ T(tM)"
                " + tM @ T(G_M) + M @ T(dG_M))",
                "    ddM = -(dS @ M + S @ tM + dG_M @ P)",
                "    return ddQ, ddM", ""]
    else:
        wq = " * a[i] * a[j]" if spec.weighted else ""
        wm = " * a[i] * a_star[k]" if spec.weighted else ""
        wd = " * a[i] * a[i]" if spec.weighted else ""
        out += [f"def overlap_grad_jvp(Q, M, P{wsig}, tQ=None, tM=None):",
                '    """Directional derivative (dG_Q, dG_M) of ``overlap_grad`` (mpmath)."""',
                "    Q, M, P = mpmath.matrix(Q), mpmath.matrix(M), mpmath.matrix(P)",
                "    tQ, tM = mpmath.matrix(tQ), mpmath.matrix(tM)",
                "    G_Q = mpmath.zeros(Q.rows, Q.cols)",
                "    G_M = mpmath.zeros(M.rows, M.cols)",
                "    for i in range(Q.rows):",
                "        for j in range(Q.rows):",
                "            if i == j:",
                f"                G_Q[i, i] += {cq} * _QQ_d2psi(Q[i, i]) * tQ[i, i]{wd}",
                "                continue",
                "            xx, xy, xz, yy, yz, zz = _QQ_hess(Q[i, i], Q[j, j], Q[i, j])",
                "            ti, tj, tz = tQ[i, i], tQ[j, j], tQ[i, j]",
                f"            G_Q[i, j] += {cq} * (xz * ti + yz * tj + zz * tz){wq}",
                f"            G_Q[i, i] += {cq} * (xx * ti + xy * tj + xz * tz){wq}",
                f"            G_Q[j, j] += {cq} * (xy * ti + yy * tj + yz * tz){wq}",
                "        for k in range(M.cols):",
                "            hxx, hxz, hzz = _QM_hess(Q[i, i], P[k, k], M[i, k])",
                f"            G_M[i, k] += {cm} * (hxz * tQ[i, i] + hzz * tM[i, k]){wm}",
                f"            G_Q[i, i] += {cm} * (hxx * tQ[i, i] + hxz * tM[i, k]){wm}",
                "    return G_Q, G_M", "",
                f"def overlap_flow_jvp(Q, M, P{wsig}, tQ=None, tM=None):",
                '    """Directional derivative of ``overlap_flow`` along (tQ, tM) (mpmath)."""',
                "    Q, M, P = mpmath.matrix(Q), mpmath.matrix(M), mpmath.matrix(P)",
                "    tQ, tM = mpmath.matrix(tQ), mpmath.matrix(tM)",
                f"    G_Q, G_M = overlap_grad(Q, M, P{wsig})",
                f"    dG_Q, dG_M = overlap_grad_jvp(Q, M, P{wsig}, tQ=tQ, tM=tM)",
                "    S, dS = G_Q + G_Q.T, dG_Q + dG_Q.T",
                "    ddQ = -(dS * Q + S * tQ + tQ * S + Q * dS + dG_M * M.T + G_M * tM.T"
                " + tM * G_M.T + M * dG_M.T)",
                "    ddM = -(dS * M + S * tM + dG_M * P)",
                "    return ddQ, ddM", ""]
    return helpers + "\n\n\n" + "\n".join(out)
