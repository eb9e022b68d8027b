"""The Isserlis engine against hand-known moments, sympy.stats, brute-force pairings, MC."""

import itertools

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symflow.engine.moments import expect, monomial_moment

x, y, z, w = sp.symbols("x y z w")


def test_hand_known_moments():
    s, sx, sy, c = sp.symbols("s s_x s_y c")
    assert sp.expand(expect(x**4, [x], sp.Matrix([[s]])) - 3 * s**2) == 0
    assert sp.expand(expect(x**2 * y**2, [x, y], sp.Matrix([[sx, c], [c, sy]]))
                     - (sx * sy + 2 * c**2)) == 0
    assert expect(x**3 * y**2, [x, y], sp.Matrix([[sx, c], [c, sy]])) == 0
    assert expect(x * y * z, [x, y, z], sp.eye(3)) == 0
    assert expect(x**6, [x], sp.Matrix([[s]])) == 15 * s**3


def _brute_force(k, cov):
    """Sum over all perfect matchings of the multiset of fields (Isserlis, enumerated)."""
    labels = [i for i, e in enumerate(k) for _ in range(e)]
    if len(labels) % 2:
        return sp.Integer(0)

    def rec(items):
        if not items:
            return sp.Integer(1)
        first, rest = items[0], items[1:]
        return sum(cov[first, rest[j]] * rec(rest[:j] + rest[j + 1:]) for j in range(len(rest)))
    return sp.expand(rec(labels))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=3))
def test_monomials_match_enumerated_matchings(k):
    n = len(k)
    C = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"c{min(i, j)}{max(i, j)}"))
    assert sp.expand(monomial_moment(k, C) - _brute_force(k, C)) == 0


def test_against_sympy_stats_exact_rationals():
    from sympy.stats import E, Normal

    X, Y = Normal("X", 0, sp.sqrt(2)), Normal("Y", 0, 1)
    # (X, X + Y / 2): covariance [[2, 2], [2, 2 + 1/4]]
    cov = sp.Matrix([[2, 2], [2, sp.Rational(9, 4)]])
    expr = x**2 * y**2 + 3 * x * y**3 - y**4
    ours = expect(expr, [x, y], cov)
    ref = E((X**2 * (X + Y / 2) ** 2 + 3 * X * (X + Y / 2) ** 3 - (X + Y / 2) ** 4))
    assert isinstance(ours, sp.Rational)
    assert ours == sp.nsimplify(sp.simplify(ref))


def test_against_monte_carlo():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3, 3))
    C = A @ A.T / 3
    expr = x**2 * y * z + 2 * y**4 - x * z**3
    val = float(expect(expr, [x, y, z], sp.Matrix(C)))
    s = rng.multivariate_normal(np.zeros(3), C, size=400_000)
    f = s[:, 0] ** 2 * s[:, 1] * s[:, 2] + 2 * s[:, 1] ** 4 - s[:, 0] * s[:, 2] ** 3
    se = f.std(ddof=1) / np.sqrt(len(f))
    assert abs(f.mean() - val) < 5 * se


def test_degree8_symbolic_covariance_is_complete():
    C = sp.Matrix(4, 4, lambda i, j: sp.Symbol(f"c{min(i, j)}{max(i, j)}"))
    e = expect((x + y + z + w) ** 8, [x, y, z, w], C)
    # E[(sum x)^8] = 105 (sum_ij C_ij)^4 for a Gaussian of variance sum_ij C_ij
    var = sum(C[i, j] for i, j in itertools.product(range(4), repeat=2))
    assert sp.expand(e - 105 * var**4) == 0


@pytest.mark.parametrize("bad, exc", [
    (dict(expr=sp.sin(x), fields=[x], cov=sp.Matrix([[1]])), ValueError),
    (dict(expr=x, fields=[x], cov=sp.Matrix([[1, 0], [0, 1]])), ValueError),
    (dict(expr=x * y, fields=[x, y], cov=sp.Matrix([[1, 2], [3, 1]])), ValueError),
    (dict(expr=x, fields=[sp.Integer(1)], cov=sp.Matrix([[1]])), TypeError),
    (dict(expr=x, fields=[x, x], cov=sp.eye(2)), ValueError),
    (dict(expr=x, fields=[x], cov=sp.Matrix([[x]])), ValueError),
])
def test_bad_input(bad, exc):
    with pytest.raises(exc):
        expect(**bad)
