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
import hashlib
import os
import types
from pathlib import Path

import numpy as np

from symflow._io import atomic_write_text
from symflow._validate import finite_float, positive_int

__all__ = ["Model"]


def _coefficient(c, name):
    import sympy as sp

    finite_float(c, f"{name} coefficient")  # TypeError / ValueError naming the argument
    return sp.nsimplify(c, rational=True)


class CallableActivation:
    """A numpy-vectorised Python callable used as an activation (numeric family).

    The flow needs only the first derivative (Price and Stein: E[s' s'], E[u s' s]); it
    is taken by the complex step ``Im f(u + i h) / h`` (exact to round-off) when ``f``
    accepts complex input, else by a sixth-order central difference (relative error
    ~1e-10).
    """

    def __init__(self, f, name):
        self.f, self.name = f, name
        u = np.linspace(-6.0, 6.0, 13)
        try:
            with np.errstate(all="ignore"):
                v = np.asarray(f(u), dtype=float)
        except Exception as exc:
            raise ValueError(f"{name}: the callable failed on a numpy array of inputs "
                             f"({type(exc).__name__}: {exc}); it must be vectorised") from exc
        if v.shape != u.shape:
            raise ValueError(f"{name}: the callable must map an array to an array of the "
                             f"same shape, got {v.shape} for {u.shape}")
        try:
            with np.errstate(all="ignore"):
                w = np.asarray(f(u + 1e-30j))
            self.complex_step = np.iscomplexobj(w) and np.allclose(w.real, v, rtol=1e-12)
        except Exception:
            self.complex_step = False

    def __call__(self, u):
        return np.asarray(self.f(u), dtype=float)

    def derivative(self, k):
        """Vectorised k-th derivative (k = 0, 1)."""
        if k == 0:
            return self
        if k != 1:
            raise ValueError(f"derivative order must be 0 or 1, got {k}")
        if self.complex_step:
            return lambda u: np.imag(self.f(np.asarray(u) + 1e-20j)) / 1e-20
        h = 1e-3
        c = (-1 / 60, 3 / 20, -3 / 4, 0.0, 3 / 4, -3 / 20, 1 / 60)
        return lambda u: sum(ci * self(np.asarray(u) + (i - 3) * h)
                             for i, ci in enumerate(c) if ci) / h

    def __repr__(self):
        return f"callable {getattr(self.f, '__name__', type(self.f).__name__)}"


def _check_numeric(expr_or_callable, name):
    """A numeric activation must be finite and grow at most polynomially (so that its
    Gaussian expectations exist): |s(u)| <= 1e6 (1 + |u|)^8 on u in [-50, 50]."""
    u = np.linspace(-50.0, 50.0, 1001)
    if isinstance(expr_or_callable, CallableActivation):
        f = expr_or_callable
    else:
        import sympy as sp

        from symflow.derivation.model import _s

        f = sp.lambdify(_s, expr_or_callable, ["scipy", "numpy"])  # erf: scipy.special
    with np.errstate(all="ignore"):
        v = np.broadcast_to(np.asarray(f(u), dtype=float), u.shape)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} returns non-finite values on [-50, 50]")
    if np.any(np.abs(v) > 1e6 * (1 + np.abs(u)) ** 8):
        raise ValueError(f"{name} grows faster than a polynomial: its Gaussian expectations "
                         "may not exist")


def _activation_expr(act, basis, name):
    """The activation of the derivation (sympy expression in ``_s``, or a
    :class:`CallableActivation`) from user input, validated."""
    import sympy as sp

    from symflow.derivation.model import _s, activation_kind
    from symflow.engine.activations import MAX_DEGREE, decompose, parse_activation

    if isinstance(act, (list, tuple, np.ndarray)):
        coeffs = [_coefficient(c, name) for c in act]
        if not coeffs:
            raise ValueError(f"{name} coefficient list must be non-empty")
        if len(coeffs) > MAX_DEGREE + 1:
            raise ValueError(f"{name} has degree {len(coeffs) - 1}; at most {MAX_DEGREE} is "
                             "supported")
        if basis == "monomial":
            return sp.expand(sum(c * _s**k for k, c in enumerate(coeffs)))
        if basis == "hermite":
            return sp.expand(sum(c * sp.hermite_prob(k, _s) for k, c in enumerate(coeffs)))
        raise ValueError(f"basis must be 'monomial' or 'hermite', got {basis!r}")
    if isinstance(act, str):
        act = parse_activation(act, name)
    elif callable(act) and not isinstance(act, sp.Basic):
        act = CallableActivation(act, name)
        _check_numeric(act, name)
        return act
    if not isinstance(act, sp.Expr):
        raise TypeError(f"{name} must be a string, a sympy expression, a callable or a "
                        f"coefficient list, got {type(act).__name__}")
    free = act.free_symbols
    if len(free) > 1:
        raise ValueError(f"{name} must be a function of one variable, got symbols {free}")
    from symflow.engine.activations import check_erf_scale

    for e in act.atoms(sp.erf):
        check_erf_scale(e.args[0], name)
    expr = act.subs(next(iter(free)), _s) if free else act
    expr = sp.nsimplify(sp.expand(expr), rational=True)
    kind = activation_kind(expr)
    if kind == "numeric":
        from symflow.engine.activations import leaky_relu, relu

        if expr.has(relu, leaky_relu, sp.Heaviside, sp.Abs, sp.sign):
            raise ValueError(f"{name}: a numeric activation (tanh, sigmoid, softplus) must be "
                             f"smooth; it cannot be combined with relu / abs / sign / heaviside "
                             f"terms (quadrature would lose its accuracy), got {act}")
        _check_numeric(expr, name)
        return expr
    if kind == "polynomial":
        coeffs = sp.Poly(expr, _s).coeffs()
        degree = sp.Poly(expr, _s).degree()
    else:
        terms = decompose(expr, _s)
        coeffs = [c for c, _ in terms]
        degree = max(f.power for _, f in terms)
        for _, f in terms:
            if f.shape == "erf" and not (0 < float(f.param) <= 1e6):
                raise ValueError(f"{name}: the erf scale must be in (0, 1e6], got {f.param}")
    for c in coeffs:
        if not (c.is_real and c.is_finite) or abs(float(c)) > 1e100:
            raise ValueError(f"{name} must have real coefficients of magnitude <= 1e100, "
                             f"got {act}")
    if degree > MAX_DEGREE:
        raise ValueError(f"{name} has degree {degree}; at most {MAX_DEGREE} is supported (the "
                         "moment tables grow quickly)")
    return expr


# ----------------------------------------------------------------- build and cache
def cache_dir():
    """Directory of the on-disk kernel cache: ``$SYMFLOW_CACHE`` or
    ``~/.cache/symflow/kernels`` (``$XDG_CACHE_HOME`` respected)."""
    env = os.environ.get("SYMFLOW_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "symflow" / "kernels"


def _spec_key(spec, part, max_terms=None):
    """Content hash of a model spec (sympy srepr), the part, the package version and the
    sources of the derivation pipeline."""
    import sympy as sp

    from symflow import __version__

    if any(isinstance(a, CallableActivation) for a in (spec.activation,
                                                        spec.teacher_activation)):
        return None  # a callable has no stable content: not cached on disk
    text = "|".join([__version__, sp.__version__, _pipeline_hash(), part, str(max_terms),
                     *(sp.srepr(sp.sympify(v)) for v in (spec.activation,
                                                         spec.teacher_activation,
                                                         spec.loss_scale, spec.noise,
                                                         spec.weight_decay)),
                     str(spec.weighted)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=1)
def _pipeline_hash():
    """Hash of the sources of the derivation pipeline (engine, derivation, codegen), so a
    changed generator never serves kernels cached by an older one."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for sub in ("engine", "derivation", "codegen"):
        for f in sorted((root / sub).glob("*.py")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _cached_source(spec, part, render, max_terms=None):
    """Module source for ``part`` ("numpy", "mpmath", "sgd_numpy", "sgd_mpmath"): from the
    disk cache, or rendered (``render()``) and stored there (atomic write; a cache that
    cannot be written is skipped silently)."""
    key = _spec_key(spec, part, max_terms)
    path = None if key is None else cache_dir() / f"{key}_{part}.py"
    if path is not None and path.is_file():
        return path.read_text(encoding="utf-8")
    src = render()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, src)
        except OSError:
            pass
    return src


def _exec(src, label, spec):
    ns = {}
    exec(compile(src, f"<symflow model {label}>", "exec"), ns)
    _bind_callables(ns, spec)
    return ns


def _bind_callables(ns, spec):
    """Quadrature kernels of callable activations: ``_ACT_<block>`` = derivatives."""
    acts = {"QQ": (spec.activation, spec.activation),
            "QM": (spec.activation, spec.teacher_activation),
            "PP": (spec.teacher_activation, spec.teacher_activation)}
    for block, pair in acts.items():
        if ns.get(f"_ACT_{block}", 0) is None:
            ns[f"_ACT_{block}"] = tuple(_derivatives(a) for a in pair)


def _derivatives(act):
    """(s, s', u s'(u)) as vectorised functions (the quadrature kernels' table)."""
    if isinstance(act, CallableActivation):
        d1 = act.derivative(1)
        return act, d1, (lambda u: np.asarray(u) * d1(u))
    import sympy as sp

    from symflow.derivation.model import _s

    d1 = sp.diff(act, _s)
    return tuple(sp.lambdify(_s, e + 0 * _s, ["scipy", "numpy"]) for e in (act, d1, _s * d1))


@functools.lru_cache(maxsize=32)
def _blocks(spec):
    from symflow.derivation.model import derive_blocks

    return derive_blocks(spec)


@functools.lru_cache(maxsize=32)
def _general_sgd(spec):
    from symflow.derivation.sgd import derive_general_sgd

    return derive_general_sgd(spec)


@functools.lru_cache(maxsize=32)
def _build(spec, backend="numpy"):
    """(source, namespace) of the kernels of ``spec`` for ``backend`` (disk cache, then
    in-process cache; the derivation is shared by the backends)."""
    def render():
        from symflow.codegen import render_model_module

        return render_model_module(spec, _blocks(spec), backend)

    src = _cached_source(spec, backend, render)
    return src, _exec(src, backend, spec)


@functools.lru_cache(maxsize=32)
def _build_sgd(spec, backend="numpy", max_terms=None):
    """(source, ``sgd_term``) of ``spec`` (online-SGD eta^2 term; disk and in-process
    caches)."""
    def render():
        from symflow.derivation.model import activation_kind

        imports = "import numpy as np\n" if backend == "numpy" else "import mpmath\n"
        kinds = {activation_kind(spec.activation), activation_kind(spec.teacher_activation)}
        if kinds == {"polynomial"}:
            from symflow.codegen import render_sgd_function
            from symflow.derivation.model import SGD_MAX_TERMS, derive_sgd_blocks

            blocks, noise = derive_sgd_blocks(
                spec, SGD_MAX_TERMS if max_terms is None else max_terms)
            return imports + render_sgd_function(spec, blocks, noise, backend)
        if "numeric" in kinds:
            raise NotImplementedError(
                "the online-SGD term needs closed-form activations (polynomials, erf, relu "
                "family); numeric activations (tanh, sigmoid, softplus, callables) support "
                "the risk and the gradient flow only")
        from symflow.codegen.general import render_general_sgd

        blocks, noise = _general_sgd(spec)
        if backend == "numpy":
            imports = "import numpy as np\nimport numpy\nimport scipy.special\n\n" \
                      "from symflow.engine.quadrature import quad01 as _quad01\n"
        return imports + "\n\n" + render_general_sgd(spec, blocks, noise, backend)

    src = _cached_source(spec, "sgd_" + backend, render, max_terms)
    return src, _exec(src, "sgd", spec)["sgd_term"]


class Model:
    """Teacher-student shallow network with any activation the engine knows.

    Student f(x) = sum_j a_j s(W[:, j].x), teacher f*(x) = sum_k a*_k s*(W*[:, k].x),
    labels y = f*(x) + sqrt(noise) xi, risk
    ``loss_scale * E[(f - y)^2] + weight_decay / 2 * ||W||_F^2``.

    Parameters
    ----------
    activation : str, sympy expression, callable or sequence of coefficients
        Student activation (strings are parsed with a whitelist, no code is run; see
        :func:`symflow.engine.activations.parse_activation`):

        - polynomials of degree <= 8 and ``He(n, z)`` (Isserlis, exact);
        - ``erf(a*z)``, ``ncdf(z)``, ``relu(z)``, ``leaky_relu(z, s)``, ``abs(z)``,
          ``sign(z)``, ``heaviside(z)``, ``gelu(z)`` and linear combinations / products
          with polynomials of these (closed forms by the rules of
          :mod:`symflow.engine.gaussian`);
        - ``tanh(z)``, ``sigmoid(z)``, ``softplus(z)`` or a numpy-vectorised Python
          callable (numeric: quadrature, accuracy 1e-9 for variances up to 16; risk and
          gradient flow, no online-SGD term);
        - coefficients in the ``basis`` (``[0, 0, 1]`` is z^2).

        The soft committee machine of Saad & Solla uses ``"erf(z/sqrt(2))"`` with
        ``loss_scale=0.5``.
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
        Factor of the squared loss (1/4 in the paper, 1/2 for committee machines).
    basis : {"monomial", "hermite"}
        Basis of coefficient lists.
    train_second_layer : bool
        Train the second-layer weights a too (Goldt et al. 2019): the state gains a(t),
        da/dt = -second_layer_lr * dL/da for the gradient flow, and
        da/dt = lr * second_layer_lr * (-dL/da) for online SGD (step lr * second_layer_lr / d
        on a; its fluctuations vanish as d -> infinity, so there is no lr^2 term).  ``a``
        is then the initial value (default 1).
    second_layer_lr : float > 0
        Learning-rate ratio of the second layer (default 1).
    max_terms : int, optional
        Budget of the online-SGD derivation of polynomial models (terms of one
        four-field moment; default ``symflow.derivation.model.SGD_MAX_TERMS`` = 200000):
        beyond it :meth:`sgd_flow` refuses with an estimate instead of running for
        minutes (a dense degree-8 polynomial needs ~3.5e6).

    Attributes
    ----------
    risk_expr : sympy expression
        The risk as an indexed double sum (any widths).
    pair_moments : dict
        Block name -> E[s(u) s'(v)] in the pair covariance (x, y, z).
    source : str
        The generated numpy module (risk, gradient, flow; the SGD term is derived on
        first use of :meth:`sgd_flow`).
    kernels : namespace
        ``risk_from_overlaps``, ``overlap_grad``, ``overlap_flow``, ``weight_grad``,
        ``sgd_term`` (numpy, second-layer weights bound).

    Raises
    ------
    ValueError, TypeError
        Bad activation (unknown name, non-positive erf scale, a callable returning
        non-finite values, a function growing too fast for its expectation to exist),
        widths, weights or coefficients; the message names the argument.

    Notes
    -----
    Numbers are converted to exact rationals (``nsimplify``) before the derivation.
    Generated kernels are cached on disk by a hash of the spec
    (:func:`cache_dir`), so a second process loads them without deriving.
    Source: MATH.md sections 2-4 and 9; online SGD as in :meth:`sgd_flow`.
    """

    def __init__(self, activation, m, m_star, teacher_activation=None, a=None, a_star=None,
                 noise=0, weight_decay=0, loss_scale=0.25, basis="monomial", max_terms=None,
                 train_second_layer=False, second_layer_lr=1.0):
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
        self.max_terms = None if max_terms is None else positive_int(max_terms, "max_terms")
        self.a = self._weights(a, self.m, "a")
        self.a_star = self._weights(a_star, self.m_star, "a_star")
        if not isinstance(train_second_layer, bool):
            raise TypeError(f"train_second_layer must be True or False, got "
                            f"{train_second_layer!r}")
        self.train_second_layer = train_second_layer
        self.second_layer_lr = finite_float(second_layer_lr, "second_layer_lr", lo=0,
                                            lo_open=True)
        weighted = a is not None or a_star is not None or train_second_layer
        q = functools.partial(sp.nsimplify, rational=True)
        self.spec = ModelSpec(name="model", activation=act, teacher_activation=tact,
                              loss_scale=q(loss_scale), noise=q(noise),
                              weight_decay=q(weight_decay), weighted=weighted,
                              description=f"student {act}, teacher {tact}")
        self.source, ns = _build(self.spec)
        self.raw = types.SimpleNamespace(
            **{k: ns[k] for k in ("risk_from_overlaps", "overlap_grad", "overlap_flow",
                                  "weight_grad", "pair_values", "overlap_flow_jvp")},
            sgd_term=lambda *args: _build_sgd(self.spec, "numpy", self.max_terms)[1](*args))
        bind = self._bind
        self.kernels = types.SimpleNamespace(
            risk_from_overlaps=bind(ns["risk_from_overlaps"]),
            overlap_grad=bind(ns["overlap_grad"]), overlap_flow=bind(ns["overlap_flow"]),
            weight_grad=bind(ns["weight_grad"]),
            sgd_term=lambda *args: bind(_build_sgd(self.spec, "numpy",
                                                   self.max_terms)[1])(*args))

    def _bind(self, f, a=None, a_star=None):
        if not self.spec.weighted:
            return f
        return functools.partial(f, a=self.a if a is None else a,
                                 a_star=self.a_star if a_star is None else a_star)

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
    def blocks(self):
        """Derived pair blocks (sympy; derived on first access, not needed to run)."""
        return _blocks(self.spec)

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
        act, tact = (a.subs(_s, z) if isinstance(a, sp.Expr) else a
                     for a in (s.activation, s.teacher_activation))
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
        _check_variances(Q, P)
        return Q, M, P

    def risk(self, Q, M, P, dps=None):
        """Population risk at overlaps Q (..., m, m), M (..., m, m*), P (..., m*, m*).

        Parameters
        ----------
        Q, M, P : arrays (batch axes allowed), or, with ``dps``, 2-D float arrays, object
            arrays of mpmath numbers or nested lists (exact inputs are kept exact)
        dps : int in [15, 10000], optional
            Evaluate the mpmath kernels generated from the same derivation at ``dps``
            digits (closed-form activations only).

        Returns
        -------
        float or ndarray (...) (numpy); mpmath.mpf (dps)
        """
        if dps is not None:
            ns, args = self._mp_args(Q, M, P, dps)
            import mpmath

            with mpmath.workdps(dps):
                return +ns["risk_from_overlaps"](*args)
        out = self.kernels.risk_from_overlaps(*self._check(Q, M, P))
        return float(out) if np.ndim(out) == 0 else out

    def flow(self, Q, M, P, dps=None):
        """Gradient flow on the overlaps: (dQ/dt, dM/dt), shapes of Q and M (time t).

        ``dps``: as in :meth:`risk`; the result is then a pair of object arrays of
        mpmath numbers.  Source: MATH.md section 4 (chain rule of the derived risk).
        """
        if dps is not None:
            ns, args = self._mp_args(Q, M, P, dps)
            import mpmath

            with mpmath.workdps(dps):
                return tuple(_mp_array(a) for a in ns["overlap_flow"](*args))
        return self.kernels.overlap_flow(*self._check(Q, M, P))

    def sgd_flow(self, Q, M, P, lr, dps=None):
        """Online-SGD limit of the overlaps: (dQ/dt, dM/dt) with t = samples / d.

        One-pass SGD with step ``lr / d`` on fresh samples; as d -> infinity with m, m*
        fixed, dQ/dt = lr * flow_Q + lr^2 * E[g_j g_k] and dM/dt = lr * flow_M, where
        g_j = 2 loss_scale (f - y) a_j s'(h_j) is the per-sample gradient factor
        (closed-form activations; ``dps`` as in :meth:`risk`).

        Raises
        ------
        NotImplementedError
            Numeric activations (no closed-form four-field expectations).
        BudgetExceeded (a ValueError)
            A polynomial model whose SGD derivation exceeds ``max_terms``.
        """
        lr = finite_float(lr, "lr", lo=0, lo_open=True)
        if dps is not None:
            import mpmath

            ns, args = self._mp_args(Q, M, P, dps)
            src = _build_sgd(self.spec, "mpmath", self.max_terms)[1]
            with mpmath.workdps(dps):
                lr_mp = mpmath.mpf(lr)
                dQ, dM = ns["overlap_flow"](*args)
                S = src(*args)
                return _mp_array(lr_mp * dQ + lr_mp**2 * S), _mp_array(lr_mp * dM)
        Q, M, P = self._check(Q, M, P)
        S = self.kernels.sgd_term(Q, M, P)  # first: it raises for unsupported activations
        dQ, dM = self.kernels.overlap_flow(Q, M, P)
        return lr * dQ + lr * lr * S, lr * dM

    def report(self):
        """The derived risk and overlap ODE of this model, as markdown with LaTeX.

        Like ``derivations/04_overlap_odes.md`` for the paper's model: the activations and
        conventions, the pair functions phi_B(x, y, z) of the risk (closed forms, Isserlis
        polynomials or quadrature nodes) with their Price-derived partials, the risk as
        double sums over units, and the overlap ODE in matrix form.

        Returns
        -------
        str
        """
        import sympy as sp

        from symflow.codegen.general import block_pair
        from symflow.derivation.model import _s, risk_sum_expr

        spec = self.spec
        u = sp.Symbol("u", real=True)

        def act(a):
            return f"${sp.latex(a.subs(_s, u))}$" if isinstance(a, sp.Expr) else f"`{a}`"

        lines = ["# Model report", "",
                 f"- student activation $\\sigma(u)$ = {act(spec.activation)}; teacher "
                 f"$\\sigma^*(u)$ = {act(spec.teacher_activation)}",
                 f"- widths m = {self.m}, m* = {self.m_star}; loss scale "
                 f"${sp.latex(spec.loss_scale)}$, label noise ${sp.latex(spec.noise)}$, "
                 f"weight decay ${sp.latex(spec.weight_decay)}$"
                 + (", second layer trained" if self.train_second_layer else ""), "",
                 "Risk $L = \\ell\\, E[(f - y)^2] + \\frac{\\lambda}{2}\\|W\\|_F^2$ "
                 "as sums over pairs of units of pair functions of the local fields' "
                 "covariance $\\begin{pmatrix} x & z \\\\ z & y \\end{pmatrix}$:", ""]
        for b in self.blocks:
            pf = block_pair(b)
            lines += [f"## Block {b.name} (x from diag {b.row}, y from diag {b.col}, z from "
                      f"{b.cross})", "",
                      f"$$ \\phi_{{{b.name}}}(x, y, z) = {sp.latex(pf.phi)} $$", ""]
            if b.cross != "P":
                lines += [f"$$ \\partial_z \\phi_{{{b.name}}} = {sp.latex(pf.d_z)} $$",
                          f"$$ \\partial_x \\phi_{{{b.name}}} = {sp.latex(pf.d_x)} $$", ""]
            if pf.psi is not None:
                lines += [f"Same unit twice (i = j): $\\psi_{{{b.name}}}(x) = "
                          f"{sp.latex(pf.psi)}$", ""]
        lines += ["## Risk", "", f"$$ L = {sp.latex(risk_sum_expr(spec))} $$", "",
                  "## Overlap ODE (gradient flow, time t)", "",
                  "With $G_Q = \\partial L / \\partial Q$, $G_M = \\partial L / \\partial M$ "
                  "(entries independent; from the partials above) and $S = G_Q + G_Q^T$:", "",
                  "$$ \\dot Q = -(S Q + Q S + G_M M^T + M G_M^T), \\qquad "
                  "\\dot M = -(S M + G_M P), \\qquad \\dot P = 0 $$", "",
                  "Online SGD with step lr/d (t = samples/d): $\\dot Q \\to lr\\, \\dot Q + "
                  "lr^2 E[g_j g_k]$, $\\dot M \\to lr\\, \\dot M$, "
                  "$g_j = 2\\ell (f - y) a_j \\sigma'(h_j)$.", ""]
        return "\n".join(lines)

    def second_layer_grad(self, Q, M, P, a=None):
        """dL/da (..., m): 2 coef_QQ V_QQ a + coef_QM V_QM a* with the pair matrices of the
        derived risk (``pair_values``).

        Parameters
        ----------
        Q, M, P : arrays (..., m, m), (..., m, m*), (..., m*, m*)
        a : array (..., m), optional
            Default: the model's ``a``.

        Raises
        ------
        ValueError
            Invalid overlaps (see :meth:`risk`); ``a`` not finite or not of length m.

        Source: MATH.md section 9 (risk as pair sums weighted by a_i a_j).
        """
        Q, M, P = self._check(Q, M, P)
        if a is not None:
            a = np.asarray(a, dtype=float)
            if a.ndim == 0 or not np.all(np.isfinite(a)):
                raise ValueError(f"a must be a finite array of shape (..., {self.m})")
            if a.shape[-1] != self.m:
                raise ValueError(f"a must have shape (..., m) with m = {self.m}, got {a.shape}")
        return self._dl_da(Q, M, P, self.a if a is None else a)

    def _dl_da(self, Q, M, P, a):
        V_QQ, V_QM = self.raw.pair_values(Q, M, P)
        ls = float(self.spec.loss_scale)  # block coefficients: QQ ls, QM -2 ls
        return 2 * ls * (np.einsum("...ij,...j->...i", V_QQ, a)
                         - np.einsum("...ik,...k->...i", V_QM, self.a_star))

    def _mp_args(self, Q, M, P, dps):
        import mpmath

        from symflow._validate import check_dps

        check_dps(dps, ode=False)
        ns = _build(self.spec, "mpmath")[1]
        with mpmath.workdps(dps):
            mats = [_to_mp(A, name) for A, name in ((Q, "Q"), (M, "M"), (P, "P"))]
            Qm, Mm, Pm = mats
            if (Qm.rows, Qm.cols, Mm.rows, Mm.cols, Pm.rows, Pm.cols) != (
                    self.m, self.m, self.m, self.m_star, self.m_star, self.m_star):
                raise ValueError(f"with dps, Q, M, P must be 2-D of shapes ({self.m}, {self.m}),"
                                 f" ({self.m}, {self.m_star}), ({self.m_star}, {self.m_star})")
            _check_variances(*(np.array(A.tolist(), dtype=float) for A in (Qm, Pm)))
            args = mats
            if self.spec.weighted:
                args = mats + [[mpmath.mpf(v) for v in self.a],
                               [mpmath.mpf(v) for v in self.a_star]]
        return ns, args

    def weight_grad(self, W, W_star):
        """Gradient of the population risk in weight space, shape of W (d, m)."""
        from symflow.numerics.kernels import _pair

        W, W_star = _pair(W, W_star)
        if W.shape[1] != self.m or W_star.shape[1] != self.m_star:
            raise ValueError(f"W must have {self.m} columns and W_star {self.m_star}")
        return self.kernels.weight_grad(W, W_star)


def _check_variances(Q, P):
    """Q and P must have non-negative diagonals (the variances of the preactivations);
    finiteness is checked where the arrays are read.  Regression: Q = -I gave NaN with a
    RuntimeWarning and, with dps, a ZeroDivisionError.  Positive semi-definiteness of the
    Gram matrix [[Q, M], [M^T, P]] is not required: the solvers' Newton and quadrature
    steps visit points just outside it, where the closed forms continue analytically."""
    for A, name in ((Q, "Q"), (P, "P")):
        if np.any(np.diagonal(A, axis1=-2, axis2=-1) < 0):
            raise ValueError(f"{name} must be an overlap matrix with a non-negative diagonal "
                             f"(variances), got min diagonal "
                             f"{float(np.min(np.diagonal(A, axis1=-2, axis2=-1))):.3g}")


def _to_mp(A, name):
    """mpmath.matrix from a float array, an object array of mpmath numbers or nested lists
    (mpf / int / Fraction-like entries are kept exact; floats are read exactly)."""
    import mpmath

    if isinstance(A, mpmath.matrix):
        return A.copy()
    arr = np.asarray(A, dtype=object)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix with dps, got shape {arr.shape}")
    out = mpmath.matrix(arr.shape[0], arr.shape[1])
    for (i, j), v in np.ndenumerate(arr):
        if isinstance(v, (bool, str)) or v is None:
            raise TypeError(f"{name} entries must be real numbers, got {v!r}")
        val = mpmath.mpmathify(v)
        if not isinstance(val, mpmath.mpf) or not mpmath.isfinite(val):
            raise ValueError(f"{name} entries must be finite real numbers, got {v!r}")
        out[i, j] = val
    return out


def _mp_array(A):
    import mpmath

    if isinstance(A, mpmath.matrix):
        return np.array(A.tolist(), dtype=object)
    return np.asarray(A, dtype=object)
