"""Multi-cut linear envelopes of an activation over per-neuron intervals.

Two things carry the name. An :class:`Envelope` *value* says how an activation is relaxed, and is
the one option every analysis takes:

* ``Pair()``: the pair lines of :func:`polylens.relax.lines.pair_lines`, one cut per side;
* ``Hull(cuts)`` (default ``Hull(8)``): up to ``cuts`` cuts per side (at most :data:`MAX_CUTS`) whose
  intersection approaches the convex hull of the graph ``{(x, f(x)) : x in [L, U]}``.

:func:`build_envelope` turns that choice into :class:`Cuts`, the sound linear cuts of one layer's
neurons, each sound on its neuron's interval [L_j, U_j]:

* LOWER cut r: ``z_j >= slope[r] * a_j + intercept[r]``
* UPPER cut r: ``z_j <= slope[r] * a_j + intercept[r]``

with ``a_j`` the pre-activation, ``z_j = f(a_j)`` and ``j = neuron[r]``. For a hull, cut 0 of each
side is the pair line, so a hull is never looser than the pair; the others are added by the
sandwich rule (Rote, 1992): of the gaps between consecutive touch points of the cuts so far (and the
interval's ends), take the one whose error triangle has the largest area and add the supporting line
parallel to its chord. On a piece where the hull is a straight segment that line is the segment
itself, so bitangents and chords are found exactly; on curved parts the area error falls like
1 / cuts**2. For relu and leaky_relu this gives the exact triangle hull with two cuts (stable
neurons: one lower and one upper cut on the same line), for identity ``z = a``.

Every intercept comes from :func:`polylens.relax.lines.tightest_intercept`'s machinery, so each cut is
sound whatever slope was chosen. Code that consumes Cuts never branches on the activation.

Example
-------
>>> import numpy as np
>>> from polylens.nn.activations import Activation, ActKind
>>> cuts = build_envelope(Activation(ActKind.RELU), np.array([-1.0]), np.array([2.0]), Hull(8))
>>> [(int(s), float(k)) for s, k in zip(cuts.side, cuts.slope)]
[(0, 1.0), (0, 0.0), (1, 0.6666666666666666)]
>>> lo, hi = cuts.evaluate(np.array([0.5]))
>>> float(lo[0]), round(float(hi[0]), 6)
(0.5, 1.0)
>>> Envelope.from_mode("pair"), str(Hull(4))
(Pair(), 'hull(4)')
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from polylens.errors import ParameterError
from polylens.nn.activations import Activation
from polylens.relax.lines import check_intervals, Oriented, pair_side, support, RIGOROUS_ITERS, image_bounds
from polylens.tolerances import ENVELOPE_GAP_REL
from polylens.validation import Described, check_enum, check_int, fail

__all__ = ["Cuts", "Envelope", "EnvelopeMode", "Hull", "MAX_CUTS", "Pair", "build_envelope", "check_envelope",
           "convex_hull_areas", "envelope_areas", "hull_area_ratio", "hull_area_ratios", "merge_envelopes"]

Array = np.ndarray

#: The largest number of cuts per side a hull may have (the builder's dominance check costs n * cuts**2).
MAX_CUTS = 64


class EnvelopeMode(str, Enum):
    """The two kinds of :class:`Envelope` by name (the spelling of the command line: ``--mode``)."""

    PAIR = "pair"
    HULL = "hull"


class Envelope:
    """How an activation is relaxed over its pre-activation interval: :class:`Hull` or :class:`Pair`.

    A frozen value; ``cuts`` is the number of cuts per side it allows (1 for the pair), ``mode`` its
    :class:`EnvelopeMode`. Use :meth:`from_mode` to convert the ``(mode, cuts)`` spelling.
    """

    mode: ClassVar[EnvelopeMode]
    cuts: int

    @staticmethod
    def from_mode(mode: "EnvelopeMode | str", cuts: int = 8, where: str = "Envelope.from_mode") -> "Envelope":
        """``Hull(cuts)`` for mode "hull", ``Pair()`` for "pair" (``cuts`` is then ignored, as it
        always was: the pair has one cut per side). Checks both with the one message template."""
        mode = check_enum(mode, EnvelopeMode, "mode", where)
        if mode is EnvelopeMode.PAIR:
            return Pair()
        return Hull(check_int(cuts, "cuts", where, 1, MAX_CUTS))

    @property
    def fallbacks(self) -> tuple["Envelope", ...]:
        """The envelopes to try in order when the LP solver fails numerically on this one: itself, then
        the pair (a hull's cuts can carry slack of the order of the solver's tolerance; the pair's
        one line per side is looser but just as sound)."""
        return (self,) if isinstance(self, Pair) else (self, Pair())

    def to_dict(self) -> dict:
        """``{"mode": "hull", "cuts": 8}``."""
        return {"mode": self.mode.value, "cuts": self.cuts}


@dataclass(frozen=True)
class Hull(Envelope):
    """Up to ``cuts`` cuts per side (1 .. MAX_CUTS) approaching the convex hull of the graph; cut 0 of
    each side is the pair line."""

    mode: ClassVar[EnvelopeMode] = EnvelopeMode.HULL
    cuts: int = 8

    def __post_init__(self):
        object.__setattr__(self, "cuts", check_int(self.cuts, "cuts", "Hull", 1, MAX_CUTS))

    def __str__(self) -> str:
        return f"hull({self.cuts})"


@dataclass(frozen=True)
class Pair(Envelope):
    """The pair lines: one cut per side (the lines backward bound propagation uses)."""

    mode: ClassVar[EnvelopeMode] = EnvelopeMode.PAIR

    @property
    def cuts(self) -> int:
        return 1

    def __str__(self) -> str:
        return "pair"


def check_envelope(value: Any, where: str, name: str = "envelope") -> Envelope:
    """An :class:`Envelope` as given, or the one a mode name spells ("hull" is ``Hull(8)``, "pair"
    ``Pair()``); ParameterError for anything else."""
    if isinstance(value, Envelope):
        return value
    if isinstance(value, (str, EnvelopeMode)):
        try:
            return Envelope.from_mode(value, where=where)
        except ParameterError:
            pass
    raise fail(name, where, "Hull(cuts) or Pair() (or the name 'hull' or 'pair')",
               Described(repr(value) if isinstance(value, (str, EnvelopeMode)) else f"type {type(value).__name__}"))


@dataclass(frozen=True)
class Cuts:
    """Linear cuts for the n neurons of one layer (what :func:`build_envelope` makes of an Envelope).

    Cut r: LOWER ``z_j >= slope[r]*a_j + intercept[r]``, UPPER ``z_j <= slope[r]*a_j + intercept[r]``,
    ``j = neuron[r]``; ``index[r]`` numbers the cuts of (neuron, side) from 0, and index 0 is always
    the pair line of that side. Cuts are sorted by (neuron, side, index) and every neuron has at
    least one cut per side. Every cut holds for the exact activation on ``[lower[j], upper[j]]``,
    and ``zlo[j] <= f(a) <= zhi[j]`` there.

    Shapes: neuron int64 (m,), side int8 (m,) (0 lower, 1 upper), index int64 (m,), slope and
    intercept float64 (m,); lower, upper, zlo, zhi float64 (n,).
    """

    neuron: Array
    side: Array
    index: Array
    slope: Array
    intercept: Array
    lower: Array
    upper: Array
    zlo: Array
    zhi: Array

    def __post_init__(self):
        n, m = self.lower.shape[0], self.neuron.shape[0]
        for name in ("side", "index", "slope", "intercept"):
            if getattr(self, name).shape != (m,):
                raise ParameterError(f"The '{name}' field of Cuts must have shape ({m},). "
                                     f"Got {getattr(self, name).shape} instead.")
        for name in ("upper", "zlo", "zhi"):
            if getattr(self, name).shape != (n,):
                raise ParameterError(f"The '{name}' field of Cuts must have shape ({n},). "
                                     f"Got {getattr(self, name).shape} instead.")
        key = self.neuron * 2 + self.side
        if m and (np.any(np.diff(key) < 0) or np.any(self.neuron < 0) or np.any(self.neuron >= n)):
            raise ParameterError("Cuts must be sorted by (neuron, side) with neurons in "
                                 f"[0, {n}). Got an unsorted or out-of-range 'neuron' array instead.")
        present = np.zeros(2 * n, dtype=bool)
        present[key] = True
        if not present.all():
            missing = np.flatnonzero(~present)
            raise ParameterError(f"Every neuron of a Cuts value needs a lower and an upper cut. Got "
                                 f"{missing.size} (neuron, side) pairs without one (first: neuron "
                                 f"{missing[0] // 2}, side {missing[0] % 2}) instead.")

    @property
    def n_neurons(self) -> int:
        return int(self.lower.shape[0])

    @property
    def n_cuts(self) -> int:
        return int(self.neuron.shape[0])

    def evaluate(self, a) -> tuple[Array, Array]:
        """Bounds on z implied by the cuts at pre-activations ``a`` of shape (n,) or (N, n).

        Returns ``(lo, hi)`` of a's shape: the maximum of the lower cuts and the minimum of the
        upper cuts at each point (meaningful for a inside [lower, upper], where they enclose f(a)).
        """
        a = np.asarray(a, dtype=np.float64)
        if a.ndim not in (1, 2) or a.shape[-1] != self.n_neurons:
            raise ParameterError(f"The 'a' parameter of Cuts.evaluate must have shape ({self.n_neurons},) "
                                 f"or (N, {self.n_neurons}). Got {a.shape} instead.")
        vals = a[..., self.neuron] * self.slope + self.intercept
        key = self.neuron * 2 + self.side
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        lo = np.maximum.reduceat(vals, starts, axis=-1)[..., 0::2]
        hi = np.minimum.reduceat(vals, starts, axis=-1)[..., 1::2]
        return lo, hi


def _side_cuts(act: Activation, L: Array, U: Array, sigma: float, K: int) -> tuple[Array, Array, Array]:
    """Up to K lower lines of F = sigma*f per neuron: (slope, intercept, valid), each (n, K).

    Column 0 is the pair line; columns 1.. are added by the sandwich rule (see the module doc).
    """
    n = L.shape[0]
    F = Oriented.of(act, sigma)
    S = np.zeros((n, K))
    C = np.zeros((n, K))  # rigorous intercepts
    Cn = np.zeros((n, K))  # nominal intercepts (for choosing)
    X0 = np.zeros((n, K))  # touch sets [X0, X1]
    X1 = np.zeros((n, K))
    valid = np.zeros((n, K), dtype=bool)
    s0, sup = pair_side(act, L, U, sigma)
    S[:, 0], C[:, 0], Cn[:, 0], X0[:, 0], X1[:, 0] = s0, sup.bound, sup.nominal, sup.touch_lo, sup.touch_hi
    valid[:, 0] = True
    if K == 1:
        return S, C, valid
    FL, FU = F.f(L), F.f(U)
    tol = ENVELOPE_GAP_REL * (U - L) * np.maximum.reduce([np.ones_like(L), np.abs(FL), np.abs(FU)])
    rows = np.arange(n)
    brk, curv = np.asarray(F.breaks), np.asarray(F.curvature)
    for col in range(1, K):
        order = np.argsort(np.where(valid, S, np.inf), axis=1, kind="stable")
        s, c, v = (np.take_along_axis(A, order, axis=1) for A in (S, Cn, valid))
        x0, x1 = np.take_along_axis(X0, order, axis=1), np.take_along_axis(X1, order, axis=1)
        y0, y1 = F.f(x0), F.f(x1)
        last = v.sum(axis=1) - 1
        # Gap g in 0..K: 0 left of the first line, K right of the last, else between lines g-1, g.
        err = np.full((n, K + 1), -np.inf)
        err[:, 0] = 0.5 * (x0[:, 0] - L) * (FL - (s[:, 0] * L + c[:, 0]))
        ds = s[:, 1:] - s[:, :-1]
        xa, ya, xb, yb = x1[:, :-1], y1[:, :-1], x0[:, 1:], y0[:, 1:]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            xm = (c[:, :-1] - c[:, 1:]) / ds
            ym = s[:, :-1] * xm + c[:, :-1]
            tri = 0.5 * np.abs((xb - xa) * (ym - ya) - (xm - xa) * (yb - ya))
        err[:, 1:K] = np.where(v[:, 1:], np.where((ds > 0) & (xb > xa) & np.isfinite(tri), tri, 0.0), -np.inf)
        sl, cl = s[rows, last], c[rows, last]
        xl, yl = x1[rows, last], y1[rows, last]
        err[rows, np.full(n, K)] = 0.5 * (U - xl) * (FU - (sl * U + cl))
        g = np.argmax(err, axis=1)
        emax = err[rows, g]
        gi = np.clip(g, 1, K - 1)
        xa = np.where(g == 0, L, np.where(g == K, xl, x1[rows, gi - 1]))
        ya = np.where(g == 0, FL, np.where(g == K, yl, y1[rows, gi - 1]))
        xb = np.where(g == 0, x0[:, 0], np.where(g == K, U, x0[rows, gi]))
        yb = np.where(g == 0, y0[:, 0], np.where(g == K, FU, y0[rows, gi]))
        add = (emax > tol) & (xb > xa)
        if not add.any():
            break
        idx = np.flatnonzero(add)
        s_new = (yb[idx] - ya[idx]) / (xb[idx] - xa[idx])
        # Within one linear piece the chord is that piece: take its slope exactly, not rounded.
        piece = np.searchsorted(brk, xa[idx], side="right")
        same = (curv[piece] == 0) & (xb[idx] <= np.append(brk, np.inf)[piece])
        s_new = np.where(same, F.d1_right(xa[idx]), s_new)
        sup = support(act, L[idx], U[idx], s_new, sigma, RIGOROUS_ITERS)
        S[idx, col], C[idx, col], Cn[idx, col] = s_new, sup.bound, sup.nominal
        X0[idx, col], X1[idx, col] = sup.touch_lo, sup.touch_hi
        valid[idx, col] = True
    # Drop a line that another one dominates on [L, U] (at both ends; ties keep the earlier one);
    # the pair line (column 0) always stays.
    vL, vU = S * L[:, None] + C, S * U[:, None] + C
    geL = vL[:, :, None] >= vL[:, None, :]  # [j, i]: line j >= line i at L
    geU = vU[:, :, None] >= vU[:, None, :]
    strict = (vL[:, :, None] > vL[:, None, :]) | (vU[:, :, None] > vU[:, None, :])
    earlier = np.arange(K)[:, None] < np.arange(K)[None, :]
    dom = geL & geU & (strict | earlier) & valid[:, :, None] & ~np.eye(K, dtype=bool)
    drop = dom.any(axis=1)
    drop[:, 0] = False
    return S, C, valid & ~drop


def build_envelope(act: Activation, L, U, envelope: Envelope = Hull(), *, mode: EnvelopeMode | str | None = None,
                   cuts: int | None = None) -> Cuts:
    """Sound linear cuts of ``act`` over the intervals ``[L_j, U_j]`` of one layer's n neurons.

    Parameters
    ----------
    act : the activation.
    L, U : float arrays of shape (n,), finite, ``L <= U`` (ParameterError otherwise).
    envelope : ``Pair()`` (one cut per side) or ``Hull(cuts)`` (default ``Hull(8)``; up to ``cuts`` per
        side). ``Hull(1)`` gives the pair lines; more cuts never loosen the envelope anywhere (the
        cuts for k are a subset of those for k + 1, and cut 0 is always the pair line).
    mode, cuts : the older spelling of ``envelope`` (``mode="hull", cuts=8``), converted by
        :meth:`Envelope.from_mode`; give either these or ``envelope``.

    Returns
    -------
    Cuts: for every neuron j, every cut of j holds for all ``a`` in ``[L_j, U_j]``. Work is
    vectorised over neurons; the loop runs over the cut index.
    """
    where = "build_envelope"
    if mode is not None or cuts is not None:
        envelope = Envelope.from_mode(EnvelopeMode.HULL if mode is None else mode, 8 if cuts is None else cuts, where)
    K = check_envelope(envelope, where).cuts
    L, U = check_intervals(L, U, where)
    if L.ndim != 1:
        raise ParameterError(f"The 'lower' and 'upper' parameters of {where} must be 1-D arrays (one entry "
                             f"per neuron). Got shape {L.shape} instead.")
    n = L.shape[0]
    slope = np.zeros((n, 2, K))
    inter = np.zeros((n, 2, K))
    keep = np.zeros((n, 2, K), dtype=bool)
    for side, sigma in ((0, 1.0), (1, -1.0)):
        S, C, v = _side_cuts(act, L, U, sigma, K)
        # Order: the pair line first, then the others by slope of f.
        key = np.where(v, sigma * S, np.inf)
        key[:, 0] = -np.inf
        order = np.argsort(key, axis=1, kind="stable")
        slope[:, side] = np.take_along_axis(sigma * S + 0.0, order, axis=1)
        inter[:, side] = np.take_along_axis(sigma * C + 0.0, order, axis=1)
        keep[:, side] = np.take_along_axis(v, order, axis=1)
    index = np.cumsum(keep, axis=2) - 1
    neuron = np.broadcast_to(np.arange(n)[:, None, None], keep.shape)
    sides = np.broadcast_to(np.arange(2, dtype=np.int8)[None, :, None], keep.shape)
    zlo, zhi = image_bounds(act, L, U)
    return Cuts(neuron=neuron[keep].astype(np.int64), side=sides[keep].astype(np.int8),
                    index=index[keep].astype(np.int64), slope=slope[keep], intercept=inter[keep],
                    lower=L, upper=U, zlo=zlo, zhi=zhi)


# ---------------------------------------------------------------------------------------------
# How close an envelope comes to the convex hull of the graph.

_AREA_SAMPLES = 8193


def _hull_area(act: Activation, lo: float, hi: float, samples: int) -> float:
    """Area of the convex hull of the graph of f over [lo, hi], from dense samples plus the
    inflection points (Qhull; 0 for a degenerate, collinear graph)."""
    if hi <= lo:
        return 0.0
    x = np.union1d(np.linspace(lo, hi, samples), [b for b in act.spec.inflections if lo < b < hi])
    try:
        return float(ConvexHull(np.column_stack([x, act(x)])).volume)
    except QhullError:
        return 0.0


def envelope_areas(env: Cuts, samples: int = _AREA_SAMPLES) -> Array:
    """Area between the envelope's lower and upper boundary over each neuron's interval, shape (n,).

    Trapezoid rule on ``samples`` points per interval (vectorised over neurons); the boundaries are
    piecewise linear, so the error is at most a few kinks times (width / samples)**2.
    """
    t = np.linspace(0.0, 1.0, samples)[:, None]
    a = env.lower + (env.upper - env.lower) * t
    lo, hi = env.evaluate(a)
    return np.trapezoid(hi - lo, a, axis=0)


def convex_hull_areas(act: Activation, L, U, samples: int = _AREA_SAMPLES) -> Array:
    """Area of the convex hull of the graph of f over each [L_j, U_j], shape (n,), from ``samples``
    points plus the inflection points (relative error of order (width / samples)**2)."""
    L, U = check_intervals(L, U, "convex_hull_areas")
    L, U = np.atleast_1d(L).ravel(), np.atleast_1d(U).ravel()
    return np.array([_hull_area(act, lo, hi, samples) for lo, hi in zip(L, U)])


def _ratio(env_area: Array, hull: Array, act: Activation, L: Array, U: Array) -> Array:
    scale = 1e-12 * (U - L) * np.maximum(1.0, np.abs(act(L)) + np.abs(act(U)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = env_area / hull
    return np.where(hull <= scale, np.where(env_area <= scale, 1.0, np.inf), ratio)


def hull_area_ratios(act: Activation, L, U, envelope: Envelope = Hull(), samples: int = _AREA_SAMPLES) -> Array:
    """Per interval: area between the envelope's lower and upper boundary over [L_j, U_j] divided by
    the area of the convex hull of the graph there (>= 1 up to sampling error; 1 is exact). Shape (n,).

    See :func:`envelope_areas` and :func:`convex_hull_areas`. Where the hull has zero area (a
    zero-width interval, or f linear there) the ratio is 1 if the envelope's area is zero too (to
    1e-12 relative), else inf.
    """
    L, U = check_intervals(L, U, "hull_area_ratios")
    L, U = np.atleast_1d(L).ravel(), np.atleast_1d(U).ravel()
    env = build_envelope(act, L, U, envelope)
    return _ratio(envelope_areas(env, samples), convex_hull_areas(act, L, U, samples), act, L, U)


def hull_area_ratio(act: Activation, L, U, envelope: Envelope = Hull()) -> float:
    """Area between the envelope's boundaries over [L, U] relative to the true convex hull's area.

    For scalar L, U: the ratio for that interval (1.0 means the envelope is the hull). For arrays:
    the ratio of the summed areas. See :func:`hull_area_ratios`.
    """
    L, U = check_intervals(L, U, "hull_area_ratio")
    L, U = np.atleast_1d(L).ravel(), np.atleast_1d(U).ravel()
    if L.size == 1:
        return float(hull_area_ratios(act, L, U, envelope)[0])
    env = build_envelope(act, L, U, envelope)
    e, h = float(envelope_areas(env).sum()), float(convex_hull_areas(act, L, U).sum())
    flat = 1e-12 * float(np.sum((U - L) * np.maximum(1.0, np.abs(act(L)) + np.abs(act(U)))))
    return e / h if h > flat else (1.0 if e <= flat else float("inf"))


def merge_envelopes(a: Cuts, b: Cuts) -> Cuts:
    """The cuts of both envelopes of one layer, on the intersection of their intervals.

    Every cut of ``a`` holds on a's intervals and every cut of ``b`` on b's, so all of them hold on the
    intersection, and the merged envelope is at least as tight as either. Used where intervals are
    tightened (LP-tightened bounds): the envelope rebuilt on the smaller interval chooses its finitely
    many cuts afresh and can be looser somewhere than the old one; merging keeps the tightness order.
    """
    if a.n_neurons != b.n_neurons:
        raise ParameterError(f"Envelopes of {a.n_neurons} and {b.n_neurons} neurons cannot be merged.")
    neuron = np.concatenate([a.neuron, b.neuron])
    side = np.concatenate([a.side, b.side])
    order = np.lexsort((np.arange(neuron.size), side, neuron))
    neuron, side = neuron[order], side[order]
    key = neuron * 2 + side
    starts = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
    index = np.arange(key.size) - np.repeat(starts, np.diff(np.r_[starts, key.size]))
    return Cuts(neuron, side.astype(np.int8), index.astype(np.int64),
                    np.concatenate([a.slope, b.slope])[order], np.concatenate([a.intercept, b.intercept])[order],
                    np.maximum(a.lower, b.lower), np.minimum(a.upper, b.upper),
                    np.maximum(a.zlo, b.zlo), np.minimum(a.zhi, b.zhi))
