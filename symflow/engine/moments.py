"""Gaussian moment engine: expectations of polynomials by Isserlis/Wick.

The expectation of a monomial ``prod_i x_i^{k_i}`` of zero-mean jointly Gaussian
fields with covariance ``C`` follows from Gaussian integration by parts
(Stein's lemma, equivalent to summing Isserlis pairings):

    E[x_i * g(x)] = sum_j C_ij E[d g / d x_j],

applied to ``g = x^{k - e_i}``.  Each monomial is computed once (memoised on its
exponent vector), so the cost grows with the number of sub-monomials
``prod (k_i + 1)`` instead of the ``(2n - 1)!!`` perfect matchings.

Source: MATH.md section 2 (Isserlis/Wick identities).
"""

from __future__ import annotations

import sympy as sp

__all__ = ["expect", "monomial_moment", "moment_table", "expect_polynomial_generic",
           "BudgetExceeded"]


def _check_fields_cov(fields, cov):
    fields = tuple(fields)
    if not fields:
        raise ValueError("fields must be a non-empty sequence of sympy Symbols")
    for f in fields:
        if not isinstance(f, sp.Symbol):
            raise TypeError(f"fields must contain sympy Symbols, got {f!r} ({type(f).__name__})")
    if len(set(fields)) != len(fields):
        raise ValueError("fields must be distinct symbols")
    if not isinstance(cov, sp.MatrixBase):
        try:
            cov = sp.Matrix(cov)
        except Exception as exc:  # pragma: no cover - sympy raises various types
            raise TypeError("cov must be a sympy Matrix (n x n)") from exc
    n = len(fields)
    if cov.shape != (n, n):
        raise ValueError(f"cov must have shape ({n}, {n}) to match fields, got {cov.shape}")
    for i in range(n):
        for j in range(i + 1, n):
            if sp.simplify(cov[i, j] - cov[j, i]) != 0:
                raise ValueError(f"cov must be symmetric; cov[{i},{j}] != cov[{j},{i}]")
    bad = cov.free_symbols & set(fields)
    if bad:
        raise ValueError(f"cov must not depend on the fields, found {sorted(map(str, bad))}")
    return fields, sp.ImmutableMatrix(cov)


def monomial_moment(exponents, cov):
    """E[prod_i x_i^{k_i}] for zero-mean Gaussian x with covariance ``cov``.

    Parameters
    ----------
    exponents : sequence of int, length n
        Non-negative exponents ``k_i``.
    cov : sympy Matrix, shape (n, n)
        Symmetric covariance (symbolic or numeric).

    Returns
    -------
    sympy.Expr
        The moment, expanded; exact rationals for rational ``cov``.

    Source: MATH.md section 2 (Isserlis), computed by Gaussian integration by parts.
    """
    cov = sp.ImmutableMatrix(cov)
    k = tuple(int(e) for e in exponents)
    if len(k) != cov.shape[0] or any(e < 0 for e in k):
        raise ValueError("exponents must be non-negative, one per row of cov")
    return _moment_table(cov)(k)


def _moment_table(cov):
    """Memoised E[x^k] for exponent vectors k, by Gaussian integration by parts.

    Evaluated with an explicit stack (not recursion), so the degree is not limited by
    Python's recursion limit (regression: E[x^2000] raised RecursionError).
    """
    n = cov.shape[0]
    entries = [[cov[i, j] for j in range(n)] for i in range(n)]
    cache = {}

    def children(k):
        i = next(idx for idx, e in enumerate(k) if e)
        rest = list(k)
        rest[i] -= 1
        out = []
        for j in range(n):
            if rest[j] and entries[i][j] != 0:
                sub = list(rest)
                sub[j] -= 1
                out.append((rest[j] * entries[i][j], tuple(sub)))
        return out

    def mom(k):
        k = tuple(k)
        stack = [k]
        while stack:
            top = stack[-1]
            if top in cache:
                stack.pop()
                continue
            total = sum(top)
            if total == 0 or total % 2:
                cache[top] = sp.Integer(1 if total == 0 else 0)
                stack.pop()
                continue
            kids = children(top)
            missing = [c for _, c in kids if c not in cache]
            if missing:
                stack.extend(missing)
                continue
            cache[top] = sp.expand(sp.Add(*[w * cache[c] for w, c in kids if cache[c] != 0]))
            stack.pop()
        return cache[k]

    return mom


def expect(expr, fields, cov):
    """Expectation of a polynomial in zero-mean jointly Gaussian fields (Isserlis/Wick).

    Parameters
    ----------
    expr : sympy.Expr
        Polynomial in ``fields``; coefficients may contain other symbols.
    fields : sequence of sympy.Symbol, length n
        The Gaussian fields.
    cov : sympy Matrix, shape (n, n)
        Their covariance, symbolic or numeric, symmetric.

    Returns
    -------
    sympy.Expr
        ``E[expr]`` expanded.  Exact (``sympy.Rational``) for rational ``cov`` and
        rational coefficients.

    Raises
    ------
    TypeError
        If ``fields`` contains non-Symbols or ``cov`` is not matrix-like.
    ValueError
        If ``expr`` is not a polynomial in ``fields``, ``cov`` has the wrong shape or
        is not symmetric.

    Notes
    -----
    Each distinct monomial moment is computed once by the recursion
    ``E[x_i g] = sum_j C_ij E[d_j g]`` and cached for the call.

    Source: MATH.md section 2.
    """
    fields, cov = _check_fields_cov(fields, cov)
    expr = sp.sympify(expr)
    try:
        poly = sp.Poly(expr, *fields)
    except sp.PolynomialError as exc:
        raise ValueError(f"expr must be a polynomial in the fields {fields}: {exc}") from exc
    if any(s in fields for c in poly.coeffs() for s in sp.sympify(c).free_symbols):
        raise ValueError("expr must be a polynomial in the fields")
    mom = _moment_table(cov)
    terms = [coeff * mom(monom) for monom, coeff in poly.terms()]
    return sp.expand(sp.Add(*terms))


# ------------------------------------------------------------- generic fast path
class BudgetExceeded(ValueError):
    """A derivation would exceed its term budget (raised before or while deriving)."""


def _pair_index(n):
    """(i, j) -> index of the unordered pair in row order (0, 0), (0, 1), ..., (n-1, n-1)."""
    order = [(i, j) for i in range(n) for j in range(i, n)]
    idx = {p: k for k, p in enumerate(order)}
    idx.update({(j, i): k for k, (i, j) in enumerate(order)})
    return idx


def moment_table(n):
    """Memoised E[x^k] for zero-mean Gaussian x in n fields with a *generic* covariance
    (one independent symbol c_ij per unordered pair): each moment is a dict
    {exponents of the n(n+1)/2 pair symbols (row order i <= j): integer count}.

    Pure-integer arithmetic on dictionaries (Gaussian integration by parts, as in
    :func:`expect`), without sympy expressions, so large moments (degree ~30 in 4
    fields) take milliseconds to seconds instead of minutes.
    """
    npair = n * (n + 1) // 2
    pidx = _pair_index(n)
    cache = {}

    def mom(k):
        k = tuple(k)
        stack = [k]
        while stack:
            top = stack[-1]
            if top in cache:
                stack.pop()
                continue
            total = sum(top)
            if total % 2:
                cache[top] = {}
                stack.pop()
                continue
            if total == 0:
                cache[top] = {(0,) * npair: 1}
                stack.pop()
                continue
            i = next(a for a, e in enumerate(top) if e)
            rest = list(top)
            rest[i] -= 1
            kids = []
            for j in range(n):
                if rest[j]:
                    sub = list(rest)
                    sub[j] -= 1
                    kids.append((rest[j], pidx[(i, j)], tuple(sub)))
            missing = [c for _, _, c in kids if c not in cache]
            if missing:
                stack.extend(missing)
                continue
            acc = {}
            for w, p, c in kids:
                for mono, v in cache[c].items():
                    mm = list(mono)
                    mm[p] += 1
                    mm = tuple(mm)
                    acc[mm] = acc.get(mm, 0) + w * v
            cache[top] = acc
            stack.pop()
        return cache[k]

    return mom


def expect_polynomial_generic(terms, cov_symbols, max_terms=None):
    """E[sum_k c_k x^k] for a generic symbolic covariance, via :func:`moment_table`.

    Parameters
    ----------
    terms : dict {exponent tuple (n,): rational coefficient}
    cov_symbols : sympy Matrix (n, n) of distinct symbols (symmetric)
    max_terms : int, optional
        Budget on the number of terms of the result.  The cost is estimated first (terms
        of the largest moment times the number of distinct exponent vectors, an upper
        bound): beyond 10 x ``max_terms`` a :class:`BudgetExceeded` naming the estimate is
        raised before any large computation; the running size is checked against
        ``max_terms`` as the terms accumulate.

    Returns
    -------
    sympy.Expr (polynomial in the covariance symbols, exact rationals)
    """
    from fractions import Fraction

    n = cov_symbols.shape[0]
    order = [(i, j) for i in range(n) for j in range(i, n)]
    syms = [cov_symbols[i, j] for i, j in order]
    mom = moment_table(n)
    even = {k: c for k, c in terms.items() if sum(k) % 2 == 0 and c != 0}
    if max_terms is not None and even:
        biggest = max(even, key=sum)
        est = len(mom(biggest)) * len(even)
        if est > 10 * max_terms:  # the estimate is an upper bound: refuse only clear cases
            raise BudgetExceeded(
                f"this expectation would have up to ~{est:,} terms (budget {max_terms:,}): "
                f"{len(even)} monomials of degree up to {sum(biggest)} in {n} Gaussian fields")
    acc = {}
    for k, c in even.items():
        cf = Fraction(int(sp.Rational(c).p), int(sp.Rational(c).q))
        for mono, v in mom(k).items():
            acc[mono] = acc.get(mono, 0) + cf * v
        if max_terms is not None and len(acc) > max_terms:
            raise BudgetExceeded(f"this expectation exceeds its budget of {max_terms:,} terms")
    poly = {mono: sp.Rational(v.numerator, v.denominator) for mono, v in acc.items() if v}
    if not poly:
        return sp.Integer(0)
    return sp.Poly.from_dict(poly, *syms).as_expr()
