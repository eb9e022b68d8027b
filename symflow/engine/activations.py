"""Activation functions: the families the engine knows, a safe parser, and their
decomposition into the factors of :mod:`symflow.engine.gaussian`.

Families (each a sympy expression the user can write, in one variable):

- polynomials, ``He(n, z)`` (probabilists' Hermite polynomials);
- ``erf(a*z)`` (a > 0; the committee-machine convention is erf(z/sqrt(2))) and the normal
  CDF ``ncdf(z)`` = (1 + erf(z/sqrt(2)))/2;
- ``relu(z)``, ``leaky_relu(z, s)``, ``abs(z)``, ``sign(z)``, ``heaviside(z)``, and
  ``gelu(z)`` = z ncdf(z) (exact GELU);
- linear combinations and products with polynomials of all of the above
  (``relu(z) + 0.1*z**2``, ``z*erf(z)``): *closed-form* activations;
- ``tanh(z)``, ``sigmoid(z)``, ``softplus(z)`` and numpy callables: *numeric*
  activations (no closed form; Gauss-Hermite quadrature, see :mod:`symflow.engine.numeric`).

Every closed-form activation is a sum of terms c * z^k * shape(z) with shape in
{1, H (Heaviside), erf(a z)}: relu(z) = z H(z), sign(z) = 2 H(z) - 1,
|z| = z (2 H(z) - 1), leaky_relu(z, s) = s z + (1 - s) z H(z).

Source: MATH.md section 9.
"""

from __future__ import annotations

import ast

import sympy as sp

from symflow.engine.gaussian import Factor

__all__ = ["relu", "leaky_relu", "ncdf", "gelu", "sigmoid", "softplus", "parse_activation",
           "decompose", "derivative_terms", "multiply_terms", "is_polynomial",
           "NotClosedForm", "NAMES",
           "MAX_DEGREE"]

MAX_DEGREE = 8  # polynomial degree cap (moment tables grow quickly)
_MAX_DIGITS = 30
_MAX_LEN = 2000


class relu(sp.Function):  # noqa: N801 - the field's name
    """relu(z) = max(z, 0) = z H(z)."""

    nargs = 1

    def _eval_rewrite_as_Heaviside(self, z, **kw):
        return z * sp.Heaviside(z)

    def fdiff(self, argindex=1):
        return sp.Heaviside(self.args[0])

    def _numpycode(self, printer):
        return f"numpy.maximum({printer._print(self.args[0])}, 0)"


class leaky_relu(sp.Function):  # noqa: N801
    """leaky_relu(z, s) = z for z > 0, s z otherwise (= s z + (1 - s) relu(z))."""

    nargs = 2

    def _eval_rewrite_as_Heaviside(self, z, s, **kw):
        return s * z + (1 - s) * z * sp.Heaviside(z)


class ncdf(sp.Function):  # noqa: N801
    """Standard normal CDF, (1 + erf(z / sqrt 2)) / 2."""

    nargs = 1

    def _eval_rewrite_as_erf(self, z, **kw):
        return (1 + sp.erf(z / sp.sqrt(2))) / 2


def gelu(z):
    """GELU, z * ncdf(z) (exact, not the tanh approximation)."""
    return z * ncdf(z)


def sigmoid(z):
    """Logistic sigmoid 1 / (1 + exp(-z)) (numeric family)."""
    return 1 / (1 + sp.exp(-z))


def softplus(z):
    """log(1 + exp(z)) (numeric family)."""
    return sp.log(1 + sp.exp(z))


NAMES = {
    "relu": (relu, 1), "leaky_relu": (leaky_relu, 2), "abs": (sp.Abs, 1),
    "sign": (sp.sign, 1), "heaviside": (sp.Heaviside, 1), "erf": (sp.erf, 1),
    "ncdf": (ncdf, 1), "gelu": (gelu, 1), "tanh": (sp.tanh, 1), "sigmoid": (sigmoid, 1),
    "softplus": (softplus, 1), "He": (lambda n, v: sp.hermite_prob(n, v), 2),
    "sqrt": (sp.sqrt, 1), "exp": (sp.exp, 1),
}


# ------------------------------------------------------------------------ parsing
def parse_activation(text, name="activation"):
    """Parse an activation string into a sympy expression, without evaluating code.

    The string is parsed by Python's ``ast`` and rebuilt node by node from a whitelist:
    numbers (at most 30 digits, read as exact decimals), one one-letter variable, ``pi``,
    + - * / and ``**`` with a literal integer exponent 0..8 (no chained or computed
    powers, so ``8**8**8**8`` is refused before any arithmetic), and calls of the names in
    :data:`NAMES` (``He(n, z)`` with a literal n <= 8; ``sqrt``/``exp`` of constants only).

    Raises
    ------
    ValueError
        Naming ``name`` and what was not accepted.
    """
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a string, got {type(text).__name__}")
    if len(text) > _MAX_LEN:
        raise ValueError(f"{name} is too long ({len(text)} characters, at most {_MAX_LEN})")
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"{name} could not be parsed: {text!r}") from exc
    variables = set()

    def bad(what):
        return ValueError(f"{name}: {what} in {text!r} (allowed: numbers, one one-letter "
                          f"variable, + - * / ** with integer exponents <= {MAX_DEGREE}, "
                          f"and {', '.join(sorted(NAMES))})")

    def const(node):
        v = build(node)
        if v.free_symbols:
            raise bad("a non-constant argument")
        return v

    def build(node):
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise bad(f"the constant {node.value!r}")
            digits = sum(ch.isdigit() for ch in repr(node.value))
            if digits > _MAX_DIGITS or not abs(node.value) < 1e100:
                raise bad("a number with too many digits")
            return sp.nsimplify(repr(node.value), rational=True) if isinstance(
                node.value, float) else sp.Integer(node.value)
        if isinstance(node, ast.Name):
            if node.id == "pi":
                return sp.pi
            if len(node.id) != 1:
                raise bad(f"the name {node.id!r}")
            variables.add(node.id)
            return sp.Symbol(node.id, real=True)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = build(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                e = node.right
                if isinstance(e, ast.UnaryOp) or not (isinstance(e, ast.Constant) and isinstance(
                        e.value, int) and not isinstance(e.value, bool)) or not \
                        0 <= e.value <= MAX_DEGREE:
                    raise bad("an exponent that is not a literal integer 0..8")
                return build(node.left) ** e.value
            ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
                   ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}
            op = ops.get(type(node.op))
            if op is None:
                raise bad(f"the operator {type(node.op).__name__}")
            left, right = build(node.left), build(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise bad("a division by zero")
            return op(left, right)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in NAMES or node.keywords:
                raise bad("a call of an unknown function")
            fn, nargs = NAMES[node.func.id]
            if len(node.args) != nargs:
                raise bad(f"{node.func.id} with {len(node.args)} arguments")
            if node.func.id == "He":
                n = node.args[0]
                if not (isinstance(n, ast.Constant) and isinstance(n.value, int)
                        and 0 <= n.value <= MAX_DEGREE):
                    raise bad("a He order that is not a literal integer 0..8")
                return fn(n.value, build(node.args[1]))
            if node.func.id in ("sqrt", "exp"):
                return fn(const(node.args[0]))
            args = [build(a) for a in node.args]
            if node.func.id == "leaky_relu" and args[1].free_symbols:
                raise bad("a non-constant leaky_relu slope")
            if node.func.id == "erf":
                check_erf_scale(args[0], name)
            return fn(*args)
        raise bad(f"the syntax {type(node).__name__}")

    expr = build(tree)
    if len(variables) > 1:
        raise ValueError(f"{name} must be a function of one variable, got {sorted(variables)}")
    return expr


#: erf(a z) scales accepted: outside, the closed forms' 1 + 2 a^2 x terms lose all digits
#: of a (a -> 0: erf is linear, write it as a polynomial) or overflow
ERF_SCALE_RANGE = (1e-6, 1e6)


def check_erf_scale(arg, name="activation"):
    """erf(a z) needs a scale a in :data:`ERF_SCALE_RANGE` (ValueError naming ``name``
    otherwise)."""
    free = arg.free_symbols
    a = sp.simplify(arg / next(iter(free))) if len(free) == 1 else None
    if a is None or a.free_symbols or not a.is_positive:
        raise ValueError(f"{name}: erf needs an argument a*z with a scale a > 0, got "
                         f"erf({arg})")
    lo, hi = ERF_SCALE_RANGE
    if not lo <= float(a) <= hi:
        raise ValueError(f"{name}: erf(a*z) needs a scale a in [{lo:g}, {hi:g}], got a = "
                         f"{float(a):.3g}")


# ------------------------------------------------------------------ decomposition
class NotClosedForm(ValueError):
    """The activation is not a sum of z^k * {1, H, erf(a z)} terms (numeric family)."""


def _variable(expr):
    free = expr.free_symbols
    if len(free) > 1:
        raise ValueError(f"activation must be a function of one variable, got {free}")
    return next(iter(free)) if free else sp.Symbol("z", real=True)


def _standard_form(expr, z):
    """Rewrite the families in terms of z^k, Heaviside(z) and erf(a z)."""
    expr = expr.replace(lambda e: isinstance(e, ncdf), lambda e: e.rewrite(sp.erf))
    expr = expr.replace(lambda e: isinstance(e, (relu, leaky_relu)),
                        lambda e: e.rewrite(sp.Heaviside))
    expr = expr.replace(lambda e: isinstance(e, sp.sign), lambda e: 2 * sp.Heaviside(e.args[0]) - 1)
    expr = expr.replace(lambda e: isinstance(e, sp.Abs),
                        lambda e: e.args[0] * (2 * sp.Heaviside(e.args[0]) - 1))
    return sp.expand(expr)


def decompose(expr, z=None):
    """Terms (coefficient, Factor) with activation = sum coefficient * factor(z).

    Raises :class:`NotClosedForm` for activations outside the closed-form families
    (tanh, sigmoid, softplus, erf with an offset, products of two shapes, ...).
    """
    expr = sp.sympify(expr)
    z = _variable(expr) if z is None else z
    std = _standard_form(expr, z)
    terms = {}
    for term in sp.Add.make_args(std):
        coef, power, shape, param = sp.Integer(1), 0, "1", None
        for f in sp.Mul.make_args(term):
            if not f.has(z):
                coef *= f
                continue
            base, e = f.as_base_exp()
            if base == z and e.is_Integer and e >= 0:
                power += int(e)
                continue
            if shape != "1":
                raise NotClosedForm(f"{term} is not of the form c z^k shape(z)")
            if isinstance(f, sp.Heaviside) and f.args[0] == z:
                shape = "H"
                continue
            if isinstance(base, sp.Heaviside) and base.args[0] == z and e.is_Integer and e > 0:
                shape = "H"  # H^n = H
                continue
            if isinstance(f, sp.erf) and e == 1:
                a = sp.simplify(f.args[0] / z)
                if a.has(z) or not a.is_real or a == 0:
                    raise NotClosedForm(f"erf argument must be a z, a != 0: {f}")
                if a.is_negative:
                    coef, a = -coef, -a
                shape, param = "erf", a
                continue
            raise NotClosedForm(f"{f} has no closed-form Gaussian rule")
        if not coef.is_real:
            raise ValueError(f"activation coefficients must be real, got {coef}")
        key = Factor(power, shape, param)
        terms[key] = terms.get(key, 0) + coef
    return [(c, f) for f, c in sorted(terms.items(), key=lambda kv: _order(kv[0])) if c != 0]


def _order(f):
    return ({"1": 0, "H": 1, "erf": 2}[f.shape], f.power, str(f.param))


def is_polynomial(expr):
    """True if the activation is a polynomial in its variable."""
    expr = sp.sympify(expr)
    return expr.is_polynomial(_variable(expr))


def derivative_terms(terms):
    """Terms of d/dz of sum c z^k shape(z), shapes included (H' = delta,
    erf(a z)' = 2a/sqrt(pi) exp(-a^2 z^2), (z^k e^{-c z^2})' by the product rule).

    z^k delta(z) = 0 for k >= 1 (as a distribution) and is dropped; delta itself has no
    derivative here (a third derivative of a step): NotClosedForm.
    """
    out = []
    for c, f in terms:
        if f.shape == "delta":
            if f.power:
                continue
            raise NotClosedForm("the derivative of a Dirac delta (third derivative of a step "
                                "activation) is not supported")
        if f.power:
            out.append((c * f.power, Factor(f.power - 1, f.shape, f.param)))
        if f.shape == "H" and f.power == 0:  # z^k delta(z) = 0 for k >= 1
            out.append((c, Factor(0, "delta")))
        elif f.shape == "erf":
            out.append((c * 2 * f.param / sp.sqrt(sp.pi), Factor(f.power, "gauss", f.param**2)))
        elif f.shape == "gauss":
            out.append((-2 * c * f.param, Factor(f.power + 1, "gauss", f.param)))
    return _collect(out)


def _collect(terms):
    acc = {}
    for c, f in terms:
        acc[f] = acc.get(f, 0) + c
    return [(c, f) for f, c in acc.items() if c != 0]




def multiply_terms(*term_lists):
    """Terms of the product of activations of the *same* field (u^a shape1 * u^b shape2).

    Supported products of shapes: 1 * X = X, H * H = H, exp(-c1 u^2) exp(-c2 u^2) =
    exp(-(c1 + c2) u^2), delta(u) u^k = 0 (k >= 1); anything else (erf * erf, H * erf,
    H * exp, delta * delta) raises :class:`NotClosedForm`.
    """
    out = [(sp.Integer(1), Factor())]
    for terms in term_lists:
        acc = []
        for c1, f1 in out:
            for c2, f2 in terms:
                acc.append((c1 * c2, _multiply(f1, f2)))
        out = _collect([(c, f) for c, f in acc if f is not None])
    return out


def _multiply(f, g):
    power = f.power + g.power
    shapes = {f.shape, g.shape} - {"1"}
    if not shapes:
        return Factor(power)
    if len(shapes) == 1:
        (shape,) = shapes
        if f.shape == g.shape == shape:
            if shape == "H":
                return Factor(power, "H")
            if shape == "gauss":
                return Factor(power, "gauss", f.param + g.param)
            raise NotClosedForm(f"no rule for {shape} * {shape} on one field")
        other = g if f.shape == "1" else f
        if other.shape == "delta" and power:
            return None  # u^k delta(u) = 0
        return Factor(power, other.shape, other.param)
    raise NotClosedForm(f"no rule for {f.shape} * {g.shape} on one field")
