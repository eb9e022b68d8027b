"""General teacher-student models: polynomial activations, second-layer weights, label
noise, weight decay, and the online-SGD limit.

A :class:`Model` is one entry of the derivation pipeline (``ModelSpec``): its risk,
gradient-flow overlap ODE and online-SGD drift are derived with the Isserlis engine and
rendered by the same code generator as the paper's model (numpy and mpmath backends).
The quadratic model ``Model("z**2", m, m_star)`` yields exactly the derived expressions
of the paper's model.

Source: MATH.md sections 2-4 (extended); derivation in
:mod:`symflow.derivation.model`.
"""

from __future__ import annotations

import functools
import re
import types

import numpy as np

from symflow._validate import finite_float, positive_int

__all__ = ["Model"]


_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_CHARS = re.compile(r"[A-Za-z0-9_\s+\-*/^().,]*")


_MAX_DEGREE = 8
_POW = re.compile(r"(\*\*|\^)\s*(\(\s*)?(?P<n>\d+)?")
_HE = re.compile(r"\bHe\s*\(\s*(?P<n>\d+)?")


def _parse(text, name):
    """Parse a polynomial string safely.

    Only one-letter variable names, numbers (at most 30 digits), + - * / ( ) , spaces,
    integer exponents <= 8 after ** or ^, and He(n, v) with an integer n <= 8 are
    accepted, so parsing can neither run code nor blow up (e.g. 9**9**9).
    """
    import sympy as sp

    if not isinstance(text, str) or len(text) > 2000 or not _CHARS.fullmatch(text):
        raise ValueError(f"{name} must be a polynomial string (letters, digits, spaces and "
                         f"+ - * / ^ ( ) , .), got {text!r}")
    words = _NAME.findall(text)
    bad = sorted({w for w in words if len(w) > 1 and w != "He"} |
                 {w for w in words if w in ("I", "E", "S", "N", "O", "Q")})
    if bad:
        raise ValueError(f"{name} must be a polynomial in one-letter variables (numbers, "
                         f"+ - * / ** and He(n, z)); got {bad} in {text!r}")
    if re.search(r"(?<!\d)\.|\.(?!\d)", text):
        raise ValueError(f"{name}: '.' is only allowed as a decimal point, got {text!r}")
    if any(len(d) > 30 for d in re.findall(r"\d+", text)):
        raise ValueError(f"{name}: numbers with more than 30 digits are not allowed")
    for pat, what in ((_POW, "exponents"), (_HE, "He orders")):
        for mt in pat.finditer(text):
            if mt.group("n") is None or int(mt.group("n")) > _MAX_DEGREE:
                raise ValueError(f"{name}: {what} must be integers <= {_MAX_DEGREE} written "
                                 f"as digits, got {text!r}")
    try:
        return sp.sympify(text, locals={"He": lambda n, v: sp.hermite_prob(n, v)},
                          rational=True)
    except Exception as exc:  # sympify can raise many types on malformed input
        raise ValueError(f"{name} could not be parsed: {text!r}") from exc


def _coefficient(c, name):
    import sympy as sp

    finite_float(c, f"{name} coefficient")  # TypeError / ValueError naming the argument
    return sp.nsimplify(c, rational=True)


def _activation_expr(act, basis, name):
    """sympy polynomial in the symbol ``s`` of the derivation from user input."""
    import sympy as sp

    from symflow.derivation.model import _s

    if isinstance(act, (list, tuple, np.ndarray)):
        coeffs = [_coefficient(c, name) for c in act]
        if not coeffs:
            raise ValueError(f"{name} coefficient list must be non-empty")
        if basis == "monomial":
            return sp.expand(sum(c * _s**k for k, c in enumerate(coeffs)))
        if basis == "hermite":
            return sp.expand(sum(c * sp.hermite_prob(k, _s) for k, c in enumerate(coeffs)))
        raise ValueError(f"basis must be 'monomial' or 'hermite', got {basis!r}")
    if isinstance(act, str):
        act = _parse(act, name)
    if not isinstance(act, sp.Expr):
        raise TypeError(f"{name} must be a sympy expression, a string or a coefficient list, "
                        f"got {type(act).__name__}")
    free = act.free_symbols
    if len(free) > 1:
        raise ValueError(f"{name} must be a polynomial in one symbol, got symbols {free}")
    expr = act.subs(next(iter(free)), _s) if free else act
    if not sp.sympify(expr).is_polynomial(_s):
        raise ValueError(f"{name} must be a polynomial, got {act}")
    poly = sp.Poly(sp.nsimplify(sp.expand(expr), rational=True), _s)
    for c in poly.coeffs():
        if not (c.is_real and c.is_finite) or not np.isfinite(float(c)) or \
                abs(float(c)) > 1e100:
            raise ValueError(f"{name} must have real coefficients of magnitude <= 1e100, "
                             f"got {act}")
    if poly.degree() > _MAX_DEGREE:
        raise ValueError(f"{name} has degree {poly.degree()}; at most 8 is supported (the "
                         "moment tables grow quickly)")
    return poly.as_expr()


@functools.lru_cache(maxsize=32)
def _build(spec):
    """Derive and render the risk / gradient / flow kernels of ``spec`` (cached)."""
    from symflow.codegen import render_model_module
    from symflow.derivation.model import derive_blocks

    blocks = derive_blocks(spec)
    src = render_model_module(spec, blocks, "numpy")
    ns = {}
    exec(compile(src, f"<symflow model {spec.name}>", "exec"), ns)
    return blocks, src, ns


@functools.lru_cache(maxsize=32)
def _build_sgd(spec):
    """Derive and render the online-SGD eta^2 term (moments of twice the degree; cached)."""
    from symflow.codegen import render_sgd_function
    from symflow.derivation.model import derive_sgd_blocks

    sgd = derive_sgd_blocks(spec)
    src = "import numpy as np\n" + render_sgd_function(spec, sgd[0], sgd[1], "numpy")
    ns = {}
    exec(compile(src, f"<symflow model {spec.name} sgd>", "exec"), ns)
    return sgd, src, ns["sgd_term"]


class Model:
    """Teacher-student shallow network with polynomial activations.

    Student f(x) = sum_j a_j s(W[:, j].x), teacher f*(x) = sum_k a*_k s*(W*[:, k].x),
    labels y = f*(x) + sqrt(noise) xi, risk
    ``loss_scale * E[(f - y)^2] + weight_decay / 2 * ||W||_F^2``.

    Parameters
    ----------
    activation : str, sympy expression or sequence of coefficients
        Student activation: a polynomial of degree <= 8 with real coefficients in one
        one-letter symbol (e.g. ``"z**3"``, ``"He(3, z)"`` for the probabilists' Hermite
        polynomial; strings are parsed with a whitelist, no other names), or coefficients
        in the ``basis`` (``[0, 0, 1]`` is z^2).
    m, m_star : int >= 1
        Student and teacher widths.
    teacher_activation : same as ``activation``, optional
        Defaults to ``activation``.
    a, a_star : array (m,), (m_star,), optional
        Fixed second-layer weights (default 1).
    noise : float >= 0
        Label-noise variance.
    weight_decay : float >= 0
        L2 penalty on W.
    loss_scale : float > 0
        Factor of the squared loss (1/4 in the paper).
    basis : {"monomial", "hermite"}
        Basis of coefficient lists.

    Attributes
    ----------
    risk_expr : sympy expression
        The risk as an indexed double sum (any widths).
    pair_moments : dict
        Block name -> E[s(u) s'(v)] polynomial in the pair covariance (x, y, z).
    source : str
        The generated numpy module (risk, gradient, flow; the SGD term is derived on
        first use of :meth:`sgd_flow`).

    Raises
    ------
    ValueError, TypeError
        Bad activation, widths, weights or coefficients (the message names the argument).

    Notes
    -----
    Numbers are converted to exact rationals (``nsimplify``) before the derivation.
    Source: MATH.md sections 2-4; online SGD as in the docstring of :meth:`sgd_flow`.
    """

    def __init__(self, activation, m, m_star, teacher_activation=None, a=None, a_star=None,
                 noise=0, weight_decay=0, loss_scale=0.25, basis="monomial"):
        import sympy as sp

        from symflow.derivation.model import ModelSpec

        self.m = positive_int(m, "m")
        self.m_star = positive_int(m_star, "m_star")
        act = _activation_expr(activation, basis, "activation")
        tact = act if teacher_activation is None else _activation_expr(
            teacher_activation, basis, "teacher_activation")
        noise = finite_float(noise, "noise", lo=0)
        weight_decay = finite_float(weight_decay, "weight_decay", lo=0)
        loss_scale = finite_float(loss_scale, "loss_scale", lo=0, lo_open=True)
        self.a = self._weights(a, self.m, "a")
        self.a_star = self._weights(a_star, self.m_star, "a_star")
        weighted = a is not None or a_star is not None
        q = functools.partial(sp.nsimplify, rational=True)
        self.spec = ModelSpec(name="model", activation=act, teacher_activation=tact,
                              loss_scale=q(loss_scale), noise=q(noise),
                              weight_decay=q(weight_decay), weighted=weighted,
                              description=f"student {act}, teacher {tact}")
        self.blocks, self.source, ns = _build(self.spec)
        bind = (lambda f: functools.partial(f, a=self.a, a_star=self.a_star)) if weighted \
            else (lambda f: f)
        self.kernels = types.SimpleNamespace(
            risk_from_overlaps=bind(ns["risk_from_overlaps"]),
            overlap_grad=bind(ns["overlap_grad"]), overlap_flow=bind(ns["overlap_flow"]),
            weight_grad=bind(ns["weight_grad"]),
            sgd_term=lambda *args: bind(_build_sgd(self.spec)[2])(*args))

    @staticmethod
    def _weights(w, n, name):
        if w is None:
            return np.ones(n)
        w = np.asarray(w, dtype=float)
        if w.shape != (n,) or not np.all(np.isfinite(w)):
            raise ValueError(f"{name} must be a finite array of shape ({n},), got {w.shape}")
        return w

    # -------------------------------------------------------------- inspection
    @property
    def risk_expr(self):
        """Risk as an indexed double sum over units (sympy; any widths)."""
        from symflow.derivation.model import risk_sum_expr

        return risk_sum_expr(self.spec)

    @property
    def pair_moments(self):
        """Block name -> pair expectation polynomial in (x, y, z) (sympy)."""
        return {b.name: b.phi for b in self.blocks}

    def __repr__(self):
        import sympy as sp

        from symflow.derivation.model import _s

        s = self.spec
        z = sp.Symbol("z")
        act, tact = s.activation.subs(_s, z), s.teacher_activation.subs(_s, z)
        return (f"Model(activation={act}, teacher_activation={tact}, "
                f"m={self.m}, m_star={self.m_star}, noise={s.noise}, "
                f"weight_decay={s.weight_decay}, loss_scale={s.loss_scale})")

    # ---------------------------------------------------------------- kernels
    def _check(self, Q, M, P):
        from symflow.numerics.kernels import _overlap_args

        Q, M, P = _overlap_args(Q, M, P)
        if Q.shape[-1] != self.m or P.shape[-1] != self.m_star:
            raise ValueError(f"overlaps must have m = {self.m}, m_star = {self.m_star}; got "
                             f"Q {Q.shape}, P {P.shape}")
        return Q, M, P

    def risk(self, Q, M, P):
        """Population risk at overlaps Q (..., m, m), M (..., m, m*), P (..., m*, m*)."""
        out = self.kernels.risk_from_overlaps(*self._check(Q, M, P))
        return float(out) if np.ndim(out) == 0 else out

    def flow(self, Q, M, P):
        """Gradient flow on the overlaps: (dQ/dt, dM/dt), shapes of Q and M (time t)."""
        return self.kernels.overlap_flow(*self._check(Q, M, P))

    def sgd_flow(self, Q, M, P, lr):
        """Online-SGD limit of the overlaps: (dQ/dt, dM/dt) with t = samples / d.

        One-pass SGD with step ``lr / d`` on fresh samples; as d -> infinity with m, m*
        fixed, dQ/dt = lr * flow_Q + lr^2 * E[g_j g_k] and dM/dt = lr * flow_M, where
        g_j = 2 loss_scale (f - y) a_j s'(h_j) is the per-sample gradient factor.
        """
        lr = finite_float(lr, "lr", lo=0, lo_open=True)
        Q, M, P = self._check(Q, M, P)
        dQ, dM = self.kernels.overlap_flow(Q, M, P)
        return lr * dQ + lr * lr * self.kernels.sgd_term(Q, M, P), lr * dM

    def weight_grad(self, W, W_star):
        """Gradient of the population risk in weight space, shape of W (d, m)."""
        from symflow.numerics.kernels import _pair

        W, W_star = _pair(W, W_star)
        if W.shape[1] != self.m or W_star.shape[1] != self.m_star:
            raise ValueError(f"W must have {self.m} columns and W_star {self.m_star}")
        return self.kernels.weight_grad(W, W_star)
