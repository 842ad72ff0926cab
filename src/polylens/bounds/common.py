"""What every bound method shares: the :class:`Bounds` value, the input box, rigorous rounding.

Notation (see :mod:`polylens.nn.network`): hidden layer l has pre-activations
``a_l = W_l z_{l-1} + b_l`` and post-activations ``z_l = f_l(a_l)``, with ``z_{-1} = x``; the logits
are ``W_H z_{H-1} + b_H`` with H the number of hidden layers. All bounds are for a batch of N input
boxes ``[xl, xu]`` (N, d) at once.

Floating point. A bound is only a bound if it survives rounding. The error model (constants in
:mod:`polylens.tolerances`): a float64 sum of m products, in any evaluation order, is within
``gamma(m) * sum |products|`` of the exact sum; :func:`gamma` evaluates that with twice the unit
roundoff, which also covers the rounding of the slack itself; :func:`round_down` / :func:`round_up`
subtract / add the slack and then step one ulp outward, which covers the last subtraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from polylens.arrays import frozen
from polylens.errors import ParameterError
from polylens.nn.activations import Activation
from polylens.nn.network import Network
from polylens.relax.lines import image_bounds
from polylens.tolerances import BOUND_ROUNDING_UNIT, BOUND_UNDERFLOW_UNIT
from polylens.validation import check_float

Array = np.ndarray


class BoundMethod(str, Enum):
    """Bound propagation methods, cheapest and loosest first."""

    IBP = "ibp"
    CROWN = "crown"
    ALPHA_CROWN = "alpha-crown"

    @property
    def rank(self) -> int:
        """Position in the tightness ladder IBP < CROWN < ALPHA_CROWN."""
        return list(BoundMethod).index(self)


@dataclass(frozen=True, eq=False)
class Bounds:
    """Sound pre-activation bounds for a batch of N input boxes.

    ``lower[l]``, ``upper[l]``: (N, n_l) bounds of hidden layer l's pre-activations ``a_l`` over each
    box, l = 0 .. H-1. ``logit_lower``, ``logit_upper``: (N, n_classes). Guarantee: for every input i
    and every x in box i, the float64-exact (real-arithmetic) network satisfies
    ``lower[l][i] <= a_l(x) <= upper[l][i]`` and likewise for the logits. ``method`` says which
    method produced them (after :meth:`intersect`, the stronger of the two).

    >>> import numpy as np
    >>> from polylens.nn import Network
    >>> from polylens.bounds import ibp
    >>> net = Network.from_arrays([np.eye(2), np.ones((1, 2))], [np.zeros(2), np.zeros(1)], "relu")
    >>> b = ibp(net, np.array([[-1.0, 0.0]]), np.array([[1.0, 1.0]]))
    >>> [float(v) for v in b.layer(0, 0)[1].round(6)], float(b.logit_upper[0, 0].round(6))
    ([1.0, 1.0], 2.0)
    """

    lower: tuple[Array, ...]
    upper: tuple[Array, ...]
    logit_lower: Array
    logit_upper: Array
    method: BoundMethod

    def __post_init__(self):
        lower = tuple(frozen(a, order="C") for a in self.lower)
        upper = tuple(frozen(a, order="C") for a in self.upper)
        ll, lu = frozen(self.logit_lower, order="C"), frozen(self.logit_upper, order="C")
        if len(lower) != len(upper) or ll.shape != lu.shape or ll.ndim != 2:
            raise ParameterError("Bounds need as many upper as lower layers and (N, n_classes) logit bounds.")
        for lo, hi in zip(lower, upper):
            if lo.shape != hi.shape or lo.ndim != 2 or lo.shape[0] != ll.shape[0]:
                raise ParameterError(f"Bounds of a layer must be (N, n) arrays for N = {ll.shape[0]}; "
                                     f"got {lo.shape} and {hi.shape}.")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "logit_lower", ll)
        object.__setattr__(self, "logit_upper", lu)
        object.__setattr__(self, "method", BoundMethod(self.method))

    @property
    def n_inputs(self) -> int:
        return self.logit_lower.shape[0]

    @property
    def n_hidden_layers(self) -> int:
        return len(self.lower)

    def layer(self, i: int, l: int) -> tuple[Array, Array]:
        """(L, U), each of shape (n_l,), for input ``i`` and hidden layer ``l``."""
        if not 0 <= l < len(self.lower):
            raise ParameterError(f"The 'l' parameter of Bounds.layer must be an int in [0, {len(self.lower) - 1}]. "
                                 f"Got {l!r} instead.")
        if not -self.n_inputs <= i < self.n_inputs:
            raise ParameterError(f"The 'i' parameter of Bounds.layer must be an int in [0, {self.n_inputs - 1}]. "
                                 f"Got {i!r} instead.")
        return self.lower[l][i], self.upper[l][i]

    def unstable(self, l: int) -> Array:
        """(N, n_l) mask of neurons whose pre-activation interval contains 0 in its interior."""
        return (self.lower[l] < 0) & (self.upper[l] > 0)

    def intersect(self, other: "Bounds") -> "Bounds":
        """Element-wise tighter of two sound bound sets for the same boxes (still sound)."""
        if (other.n_inputs != self.n_inputs or len(other.lower) != len(self.lower)
                or any(a.shape != b.shape for a, b in zip(self.lower, other.lower))
                or other.logit_lower.shape != self.logit_lower.shape):
            raise ParameterError("Can only intersect bounds of the same network over the same number of boxes.")
        method = self.method if self.method.rank >= other.method.rank else other.method
        return Bounds(tuple(np.maximum(a, b) for a, b in zip(self.lower, other.lower)),
                      tuple(np.minimum(a, b) for a, b in zip(self.upper, other.upper)),
                      np.maximum(self.logit_lower, other.logit_lower),
                      np.minimum(self.logit_upper, other.logit_upper), method)


# -- input boxes ---------------------------------------------------------------------------------

def input_box(x: Array, eps: float, lo: float = 0.0, hi: float = 1.0) -> tuple[Array, Array]:
    """The L-infinity ball of radius ``eps`` around ``x``, clipped to [lo, hi].

    ``x`` is (N, d) or (d,); the two returned arrays have the same shape. ``x - eps`` and ``x + eps``
    are rounded outward, so the box contains every real point of the ball (within [lo, hi]).
    Raises ParameterError when x has a coordinate outside [lo, hi] (the clipped box would be empty).

    >>> xl, xu = input_box(np.array([0.5, 0.0]), 0.25)
    >>> xl.tolist(), xu.tolist()
    ([0.25, 0.0], [0.75, 0.25])
    """
    eps = check_float(eps, "eps", "input_box", 0.0)
    lo = check_float(lo, "lo", "input_box")
    hi = check_float(hi, "hi", "input_box", lo)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ParameterError(f"input_box takes x of shape (N, d) or (d,); got shape {x.shape}.")
    if not np.all(np.isfinite(x)) or np.any((x < lo) | (x > hi)):
        raise ParameterError(f"input_box needs every value of x in [{lo}, {hi}]; some are outside or not finite.")
    xl = _add_rounded(x, -eps, -np.inf)
    xu = _add_rounded(x, eps, np.inf)
    return np.maximum(xl, lo), np.minimum(xu, hi)


def _add_rounded(a: Array, b: float, direction: float) -> Array:
    """``a + b`` rounded toward ``direction`` (-inf or +inf): the float sum, stepped one ulp only
    where it is inexact on the wrong side. Knuth's TwoSum gives the exact error ``e`` of
    ``s = fl(a + b)`` (``a + b = s + e`` in round-to-nearest)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    wrong = e < 0 if direction < 0 else e > 0
    return np.where(wrong, np.nextafter(s, direction), s)


def as_boxes(network: Network, xl: Array, xu: Array, where: str) -> tuple[Array, Array]:
    """Check and return the boxes as (N, d) float64 arrays; a (d,) box becomes N = 1."""
    xl = np.asarray(xl, dtype=np.float64)
    xu = np.asarray(xu, dtype=np.float64)
    if xl.ndim == 1:
        xl = xl[None, :]
    if xu.ndim == 1:
        xu = xu[None, :]
    d = network.input_dim
    if xl.ndim != 2 or xl.shape != xu.shape or xl.shape[1] != d:
        raise ParameterError(f"{where} needs xl and xu of the same shape (N, {d}) or ({d},); "
                             f"got {xl.shape} and {xu.shape}.")
    if not (np.all(np.isfinite(xl)) and np.all(np.isfinite(xu))):
        raise ParameterError(f"{where} needs finite input boxes; xl or xu has inf or nan.")
    bad = int(np.count_nonzero(xl > xu))
    if bad:
        raise ParameterError(f"{where} needs xl <= xu everywhere; {bad} coordinates have xl > xu.")
    return xl, xu


# -- rigorous rounding ---------------------------------------------------------------------------

def gamma(m: int) -> float:
    """Relative error factor for a float64 sum of ``m`` products (see the module docstring).

    Evaluated with u = 2**-52 (twice the unit roundoff): the factor 2 also covers the rounding of
    the magnitudes the slack is computed from.
    """
    mu = m * BOUND_ROUNDING_UNIT
    if mu >= 0.5:
        raise ParameterError(f"A layer of {m} terms is too wide for the rounding-error model.")
    return mu / (1.0 - mu)


def slack(m: int, magnitude: Array) -> Array:
    """Rigorous absolute error bound ``gamma(m) * magnitude + m * underflow unit`` for a sum of m
    products whose absolute values sum to at most ``magnitude``."""
    return gamma(m) * magnitude + m * BOUND_UNDERFLOW_UNIT


def round_down(value: Array, err: Array) -> Array:
    """A float <= every real within ``err`` of ``value``: ``value - err`` stepped one ulp down.
    NaN (from inf - inf after an overflow) becomes -inf, which is still a bound."""
    out = np.nextafter(value - err, -np.inf)
    return np.where(np.isnan(out), -np.inf, out)


def round_up(value: Array, err: Array) -> Array:
    """A float >= every real within ``err`` of ``value`` (NaN becomes +inf)."""
    out = np.nextafter(value + err, np.inf)
    return np.where(np.isnan(out), np.inf, out)


def interval_affine(W: Array, b: Array, lo: Array, hi: Array) -> tuple[Array, Array]:
    """Rigorous bounds of ``W z + b`` over the boxes ``lo <= z <= hi`` (N, n_in); returns (N, n_out) twice.

    Centre/radius form: ``mid = W c + b``, ``rad = |W| r`` with ``c = (lo+hi)/2``, ``r = (hi-lo)/2``.
    Error argument: rounding c and r costs at most u*|W|(|c| + r) = u*|W| m, m = max(|lo|, |hi|)
    (|c| + r = m exactly); evaluating ``W c + b - |W| r`` is a sum of 2n+1 products, off by at most
    gamma(2n+1) * (|W| m + |b|) (1 + u). Both together are below gamma(2n+3) * (|W| m + |b|);
    we subtract gamma(2n+4) times the float value of that magnitude (see :func:`gamma`). Halving a
    subnormal c or r may lose one underflow unit per coordinate: ``2 * unit * sum |W|`` covers it.
    """
    n = W.shape[1]
    c = (lo + hi) * 0.5
    r = (hi - lo) * 0.5
    absW = np.abs(W)
    mid = c @ W.T + b
    rad = r @ absW.T
    mag = np.maximum(np.abs(lo), np.abs(hi)) @ absW.T + np.abs(b)
    err = slack(2 * n + 4, mag) + (2.0 * BOUND_UNDERFLOW_UNIT) * absW.sum(1)
    return round_down(mid - rad, err), round_up(mid + rad, err)


def activation_image(act: Activation, L: Array, U: Array) -> tuple[Array, Array]:
    """Rigorous enclosure of f([L, U]) element-wise for arrays of any shape (from the relax layer)."""
    L = np.asarray(L, dtype=np.float64)
    zlo, zhi = image_bounds(act, L.ravel(), np.asarray(U, dtype=np.float64).ravel())
    return np.asarray(zlo, dtype=np.float64).reshape(L.shape), np.asarray(zhi, dtype=np.float64).reshape(L.shape)
