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

__all__ = ["expect", "monomial_moment"]


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
