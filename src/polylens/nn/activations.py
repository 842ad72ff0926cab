"""The one registry of activation kinds.

Every element-wise activation polylens knows is an :class:`ActKind`; :data:`REGISTRY` maps each
kind to an :class:`ActSpec` of declared facts: the function and its first two derivatives, where
it is convex or concave, whether it is monotone, where a non-monotone one has its minimum. The
importers (torch, ONNX) translate operators into kinds through their own single tables; the
envelope builders (``polylens.relax``) read only these facts, never the kind.

Example
-------
>>> import numpy as np
>>> from polylens.nn.activations import Activation, ActKind
>>> gelu = Activation(ActKind.GELU)
>>> float(gelu(np.array([0.0]))[0])
0.0
>>> gelu.spec.inflections  # doctest: +ELLIPSIS
(-1.414..., 1.414...)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

import numpy as np
from scipy.special import erf, expit

from polylens.errors import ParameterError

Array = np.ndarray


class ActKind(str, Enum):
    """The activation kinds polylens represents."""

    IDENTITY = "identity"
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    GELU = "gelu"
    GELU_TANH = "gelu_tanh"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    SILU = "silu"


class Family(str, Enum):
    """Shape families; envelope builders are chosen by family, not by kind."""

    LINEAR = "linear"  # f(x) = x
    PIECEWISE_LINEAR = "piecewise_linear"  # two linear pieces meeting at 0
    SMOOTH = "smooth"  # C^2, finitely many inflection points, known curvature signs between them


Fn = Callable[[Array, float], Array]


@dataclass(frozen=True)
class ActSpec:
    """Declared facts about one activation kind.

    ``fn(x, alpha)``, ``d1`` and ``d2`` are vectorised over float64 arrays (``alpha`` is the
    negative slope of leaky_relu and ignored elsewhere). ``inflections`` are sorted; ``curvature``
    has one entry per piece between them: +1 convex, -1 concave, 0 linear. ``argmin`` is the
    global minimiser of a non-monotone function that decreases then increases (gelu, silu), else
    None; every other kind is non-decreasing.
    """

    kind: ActKind
    family: Family
    fn: Fn
    d1: Fn
    d2: Fn
    inflections: tuple[float, ...] = ()
    curvature: tuple[int, ...] = (0,)
    argmin: float | None = None
    asymptotes: tuple[tuple[float, float], tuple[float, float]] | None = field(default=None)
    """Lines (slope, intercept) that f approaches at -inf and +inf, where it has them."""

    @property
    def monotone(self) -> bool:
        return self.argmin is None


# ---------------------------------------------------------------------------------------------
# The functions. Each takes (x, alpha) so that one signature serves all kinds.

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_K = math.sqrt(2.0 / math.pi)
_C = 0.044715


def _phi(x: Array) -> Array:
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _Phi(x: Array) -> Array:
    return 0.5 * (1.0 + erf(x / _SQRT2))


def _gelu(x, a):
    return x * _Phi(x)


def _gelu_d1(x, a):
    return _Phi(x) + x * _phi(x)


def _gelu_d2(x, a):
    return _phi(x) * (2.0 - x * x)


def _gt_u(x):
    return _K * (x + _C * x**3)


def _gelu_tanh(x, a):
    return 0.5 * x * (1.0 + np.tanh(_gt_u(x)))


def _gelu_tanh_d1(x, a):
    t = np.tanh(_gt_u(x))
    du = _K * (1.0 + 3.0 * _C * x * x)
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du


def _gelu_tanh_d2(x, a):
    t = np.tanh(_gt_u(x))
    du = _K * (1.0 + 3.0 * _C * x * x)
    ddu = 6.0 * _K * _C * x
    return (1.0 - t * t) * (du + 0.5 * x * (ddu - 2.0 * t * du * du))


def _sigmoid(x, a):
    return expit(x)


def _sigmoid_d1(x, a):
    s = expit(x)
    return s * (1.0 - s)


def _sigmoid_d2(x, a):
    s = expit(x)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _tanh(x, a):
    return np.tanh(x)


def _tanh_d1(x, a):
    t = np.tanh(x)
    return 1.0 - t * t


def _tanh_d2(x, a):
    t = np.tanh(x)
    return -2.0 * t * (1.0 - t * t)


def _silu(x, a):
    return x * expit(x)


def _silu_d1(x, a):
    s = expit(x)
    return s + x * s * (1.0 - s)


def _silu_d2(x, a):
    s = expit(x)
    return s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s))


def _relu(x, a):
    return np.maximum(x, 0.0)


def _relu_d1(x, a):
    return (x > 0).astype(np.float64)


def _leaky(x, a):
    return np.where(x >= 0, x, a * x)


def _leaky_d1(x, a):
    return np.where(x >= 0, 1.0, a)


def _zero(x, a):
    return np.zeros_like(np.asarray(x, dtype=np.float64))


def _identity(x, a):
    return np.asarray(x, dtype=np.float64)


def _one(x, a):
    return np.ones_like(np.asarray(x, dtype=np.float64))


def _root(f: Fn, lo: float, hi: float) -> float:
    """The root of f in [lo, hi] (f changes sign there), by bisection to the last bit: a few hundred
    scalar evaluations at import, without importing a root-finding library."""
    flo = float(f(np.array(lo), 0.0))
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        fm = float(f(np.array(mid), 0.0))
        if (fm < 0) == (flo < 0):
            lo, flo = mid, fm
        else:
            hi = mid
    return 0.5 * (lo + hi)


# Inflection points and minimisers that have no closed form are computed once, to full precision.
_GT_INFL = _root(_gelu_tanh_d2, 0.5, 3.0)
_SILU_INFL = _root(_silu_d2, 1.0, 4.0)

REGISTRY: dict[ActKind, ActSpec] = {
    ActKind.IDENTITY: ActSpec(ActKind.IDENTITY, Family.LINEAR, _identity, _one, _zero),
    ActKind.RELU: ActSpec(ActKind.RELU, Family.PIECEWISE_LINEAR, _relu, _relu_d1, _zero,
                          inflections=(0.0,), curvature=(0, 0), asymptotes=((0.0, 0.0), (1.0, 0.0))),
    ActKind.LEAKY_RELU: ActSpec(ActKind.LEAKY_RELU, Family.PIECEWISE_LINEAR, _leaky, _leaky_d1, _zero,
                                inflections=(0.0,), curvature=(0, 0)),
    ActKind.GELU: ActSpec(ActKind.GELU, Family.SMOOTH, _gelu, _gelu_d1, _gelu_d2,
                          inflections=(-_SQRT2, _SQRT2), curvature=(-1, 1, -1),
                          argmin=_root(_gelu_d1, -2.0, 0.0), asymptotes=((0.0, 0.0), (1.0, 0.0))),
    ActKind.GELU_TANH: ActSpec(ActKind.GELU_TANH, Family.SMOOTH, _gelu_tanh, _gelu_tanh_d1, _gelu_tanh_d2,
                               inflections=(-_GT_INFL, _GT_INFL), curvature=(-1, 1, -1),
                               argmin=_root(_gelu_tanh_d1, -2.0, 0.0), asymptotes=((0.0, 0.0), (1.0, 0.0))),
    ActKind.SIGMOID: ActSpec(ActKind.SIGMOID, Family.SMOOTH, _sigmoid, _sigmoid_d1, _sigmoid_d2,
                             inflections=(0.0,), curvature=(1, -1), asymptotes=((0.0, 0.0), (0.0, 1.0))),
    ActKind.TANH: ActSpec(ActKind.TANH, Family.SMOOTH, _tanh, _tanh_d1, _tanh_d2,
                          inflections=(0.0,), curvature=(1, -1), asymptotes=((0.0, -1.0), (0.0, 1.0))),
    ActKind.SILU: ActSpec(ActKind.SILU, Family.SMOOTH, _silu, _silu_d1, _silu_d2,
                          inflections=(-_SILU_INFL, _SILU_INFL), curvature=(-1, 1, -1),
                          argmin=_root(_silu_d1, -3.0, 0.0), asymptotes=((0.0, 0.0), (1.0, 0.0))),
}


@dataclass(frozen=True)
class Activation:
    """An element-wise activation: a kind and, for leaky_relu, its negative slope ``alpha``.

    Calling it evaluates f element-wise on a float64 array of any shape.
    """

    kind: ActKind
    alpha: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "kind", ActKind(self.kind))
        if self.kind is ActKind.LEAKY_RELU:
            if not (math.isfinite(self.alpha) and 0.0 <= self.alpha):
                raise ParameterError(
                    f"The 'alpha' parameter of leaky_relu must be a float in [0, inf). Got {self.alpha!r} instead.")
        else:
            object.__setattr__(self, "alpha", 0.0)

    @property
    def spec(self) -> ActSpec:
        return REGISTRY[self.kind]

    @property
    def is_linear(self) -> bool:
        return self.kind is ActKind.IDENTITY or (self.kind is ActKind.LEAKY_RELU and self.alpha == 1.0)

    def __call__(self, x: Array) -> Array:
        return self.spec.fn(np.asarray(x, dtype=np.float64), self.alpha)

    def derivative(self, x: Array) -> Array:
        return self.spec.d1(np.asarray(x, dtype=np.float64), self.alpha)

    def second_derivative(self, x: Array) -> Array:
        return self.spec.d2(np.asarray(x, dtype=np.float64), self.alpha)

    def image(self, lower: Array, upper: Array) -> tuple[Array, Array]:
        """Exact range [min f, max f] of f over each interval [lower, upper] (element-wise).

        Not yet widened for floating point; callers that need rigour widen with their own slack.
        For a leaky_relu with alpha > 1 the function is still monotone increasing.
        """
        lower = np.asarray(lower, dtype=np.float64)
        upper = np.asarray(upper, dtype=np.float64)
        fl, fu = self(lower), self(upper)
        lo, hi = np.minimum(fl, fu), np.maximum(fl, fu)
        m = self.spec.argmin
        if m is not None:
            inside = (lower < m) & (m < upper)
            fm = float(self(np.array(m)))
            lo = np.where(inside, np.minimum(lo, fm), lo)
        return lo, hi

    def __str__(self) -> str:
        return f"leaky_relu({self.alpha:g})" if self.kind is ActKind.LEAKY_RELU else self.kind.value

    @classmethod
    def parse(cls, text: str) -> "Activation":
        """Parse ``relu``, ``gelu``, ``leaky_relu`` or ``leaky_relu(0.1)``; raise ParameterError otherwise."""
        t = text.strip().lower().replace("-", "_")
        alpha = 0.01
        if t.startswith("leaky_relu(") and t.endswith(")"):
            try:
                alpha = float(t[len("leaky_relu("):-1])
            except ValueError:
                raise ParameterError(f"The 'activation' parameter must be like leaky_relu(0.01). Got {text!r} instead.") from None
            t = "leaky_relu"
        try:
            kind = ActKind(t)
        except ValueError:
            names = ", ".join(k.value for k in ActKind)
            raise ParameterError(f"The 'activation' parameter must be one of {names}. Got {text!r} instead.") from None
        return cls(kind, alpha if kind is ActKind.LEAKY_RELU else 0.0)
