"""Sound supporting lines of one activation over pre-activation intervals.

The primitive is :func:`tightest_intercept`: for a slope ``s`` it returns the largest ``c`` with
``f(x) >= s*x + c`` on all of ``[L, U]`` (side LOWER), or the smallest ``c`` with
``f(x) <= s*x + c`` (side UPPER), rounded outward so that the inequality holds for the exact
activation, not only for its float64 evaluation. Every other line in ``polylens.relax`` gets its
intercept from it, so soundness never depends on how a slope was chosen.

Everything is computed from the declared facts of :mod:`polylens.nn.activations` (family,
inflection points, curvature sign per piece, first derivative), never from the kind.

How the LOWER intercept is bounded (UPPER is the same applied to ``-f`` and ``-s``): on each
curvature piece ``[a, b]`` of ``[L, U]`` the gap ``g(x) = f(x) - s*x`` is concave, linear or convex.

* concave or linear piece: the minimum is at ``a`` or ``b``;
* convex piece: bisection on the increasing ``g'`` brackets the minimiser in ``[lo, hi]``; the two
  tangents of ``g`` at ``lo`` and ``hi`` underestimate ``g`` on the whole piece (convexity), so
  the minimum over ``[a, b]`` of their maximum (a convex piecewise-linear function, minimised at
  ``a``, ``b`` or the tangents' intersection) is a lower bound of ``min g`` whatever the bracket;
* piecewise-linear and linear families are evaluated exactly from the kink and the piece slopes,
  with an error term that is zero whenever the arithmetic is exact (so ``relu`` on a stable
  interval and ``identity`` get exact lines).

The float64 slack subtracted from each candidate is
``ENVELOPE_SLACK + ENVELOPE_REL_SLACK * scale``, ``scale`` the largest magnitude that enters the
candidate (``|f|``, ``|s*x|`` and ``(|f'| + |s|) * (b - a)`` for a tangent bound).

Example
-------
>>> import numpy as np
>>> from polylens.nn.activations import Activation, ActKind
>>> relu = Activation(ActKind.RELU)
>>> lines = pair_lines(relu, np.array([-1.0, 1.0]), np.array([3.0, 2.0]))
>>> lines.lower_slope.tolist(), lines.upper_slope.tolist()
([1.0, 1.0], [0.75, 1.0])
>>> float(tightest_intercept(relu, -1.0, 3.0, 0.75, Side.UPPER)) >= 0.75
True
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

import numpy as np

from polylens.errors import ParameterError
from polylens.nn.activations import Activation, Family
from polylens.tolerances import BOUND_UNDERFLOW_UNIT, ENVELOPE_REL_SLACK, ENVELOPE_SLACK, ENVELOPE_TIE_REL

__all__ = ["RIGOROUS_ITERS", "Lines", "Oriented", "Side", "Support", "check_intervals", "image_bounds", "pair_lines",
           "pair_side", "slope_range", "support", "tightest_intercept"]

Array = np.ndarray

#: Most steps of the search for the rigorous minimum on a convex piece (safeguarded Newton: each
#: step is a Newton step inside the bracket or halves it; the bound stays rigorous whatever the
#: bracket, the steps only make it tight). Even as pure bisection, 44 steps bring a bracket of width
#: 100 below 1e-11, where the tangent bound's loss (slope gap times bracket width) is far below
#: ENVELOPE_SLACK; Newton usually stops after a handful.
RIGOROUS_ITERS = 44
#: Bisection steps where only a good, not a rigorous, answer is needed (choosing slopes): touch
#: points to 2**-14 of the interval, slopes to 2**-12 of their range. A slope error ds moves a
#: supporting line's area by O(ds**2 * width**2), about 1e-7 of the hull's here: invisible next to
#: the hull-versus-envelope gaps. The nested search costs the product of the two counts, and it
#: dominated certification time at 30 x 24.
_CHOICE_ITERS = 14
#: A Newton step below this fraction of the piece's magnitude max(|a|, |b|) counts as converged.
_NEWTON_TOL = 4e-16
#: The Newton search also stops where the tangent at its point, |G'| times the piece's width,
#: is within this of the true minimum: a thousandth of ENVELOPE_SLACK.
_TANGENT_LOSS = 1e-12
_SLOPE_ITERS = 12
#: The Newton search for a secant's touch point stops at a step below this fraction of its piece.
_SECANT_TOL = 1e-9


class Side(IntEnum):
    """Which side of the graph a line bounds: LOWER ``f(x) >= s*x + c``, UPPER ``f(x) <= s*x + c``."""

    LOWER = 0
    UPPER = 1


@dataclass(frozen=True)
class Lines:
    """One lower and one upper line per neuron, each sound on the neuron's interval.

    For every neuron j and every x in [L_j, U_j]:
    ``lower_slope[j]*x + lower_intercept[j] <= f(x) <= upper_slope[j]*x + upper_intercept[j]``.
    All four arrays are float64 of shape (n,).
    """

    lower_slope: Array
    lower_intercept: Array
    upper_slope: Array
    upper_intercept: Array


# ---------------------------------------------------------------------------------------------
# Checks at the boundary.


def check_intervals(L, U, where: str) -> tuple[Array, Array]:
    """Return L, U as float64 arrays of a common shape; raise ParameterError on bad input (non-finite
    ends, lower > upper); ``where`` names the function in the message."""
    try:
        L = np.asarray(L, dtype=np.float64)
        U = np.asarray(U, dtype=np.float64)
        L, U = np.broadcast_arrays(L, U)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"The 'lower' and 'upper' parameters of {where} must be float arrays of broadcastable "
            f"shapes. Got {exc} instead.") from None
    problems = []
    for name, v in (("lower", L), ("upper", U)):
        bad = ~np.isfinite(v)
        if bad.any():
            i = np.flatnonzero(bad.ravel())
            problems.append(f"{i.size} non-finite entries in '{name}' (first at {i[0]}: {float(v.ravel()[i[0]])!r})")
    inv = L > U
    if inv.any():
        i = np.flatnonzero(inv.ravel())
        problems.append(f"{i.size} entries with lower > upper (first at {i[0]}: "
                        f"{float(L.ravel()[i[0]])!r} > {float(U.ravel()[i[0]])!r})")
    if problems:
        raise ParameterError(f"The 'lower' and 'upper' parameters of {where} must be finite with "
                             f"lower <= upper element-wise. Got {'; '.join(problems)} instead.")
    return np.array(L, dtype=np.float64), np.array(U, dtype=np.float64)


def _slopes(slope, shape, where: str, name: str = "slope") -> Array:
    try:
        s = np.asarray(slope, dtype=np.float64)
        s = np.broadcast_to(s, np.broadcast_shapes(s.shape, shape))
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"The '{name}' parameter of {where} must be a float array broadcastable "
                             f"to the intervals' shape {shape}. Got {exc} instead.") from None
    bad = ~np.isfinite(s)
    if bad.any():
        i = np.flatnonzero(bad.ravel())
        raise ParameterError(f"The '{name}' parameter of {where} must be finite. Got {i.size} non-finite "
                             f"entries (first at {i[0]}: {float(s.ravel()[i[0]])!r}) instead.")
    return np.array(s, dtype=np.float64)


def _side(side) -> Side:
    try:
        return Side(side)
    except ValueError:
        if isinstance(side, str) and side.upper() in Side.__members__:
            return Side[side.upper()]
        raise ParameterError(f"The 'side' parameter must be one of Side.LOWER, Side.UPPER. Got {side!r} "
                             f"instead.") from None


# ---------------------------------------------------------------------------------------------
# The activation seen from one side: F(x) = sigma * f(rho * x). A lower line of F is a lower line
# of f (sigma = +1) or an upper line of f (sigma = -1); rho = -1 mirrors the interval, which turns
# "the largest secant slope into U" into "the smallest secant slope out of L".


@dataclass(frozen=True)
class Oriented:
    """The activation as seen by one side's computations: F(x) = sigma * f(rho * x), with its sorted
    breakpoints, curvature per piece and (for the piecewise-linear families) the piece slopes.
    ``Oriented.of`` caches one per (activation, sigma, rho)."""

    act: Activation
    sigma: float
    rho: float
    breaks: tuple[float, ...]  # sorted breakpoints of F
    curvature: tuple[int, ...]  # per piece of F, +1 convex, -1 concave, 0 linear
    piece_slopes: tuple[float, ...] | None  # slopes of F's linear pieces (piecewise-linear families)

    @staticmethod
    @lru_cache(maxsize=256)
    def of(act: Activation, sigma: float, rho: float = 1.0) -> "Oriented":
        spec = act.spec
        breaks = tuple(float(b) for b in spec.inflections)
        curv = tuple(int(c) for c in spec.curvature)
        if len(curv) != len(breaks) + 1:  # a linear family with no breakpoint
            curv = (curv[0],) * (len(breaks) + 1)
        slopes = None
        if spec.family is not Family.SMOOTH:
            slopes = tuple(float(act.derivative(np.array(p))) for p in _probes(breaks))
        if rho < 0:
            breaks = tuple(-b for b in reversed(breaks))
            curv = tuple(reversed(curv))
            slopes = None if slopes is None else tuple(-p for p in reversed(slopes))
        curv = tuple(int(sigma) * c for c in curv)
        slopes = None if slopes is None else tuple(sigma * p for p in slopes)
        return Oriented(act, float(sigma), float(rho), breaks, curv, slopes)

    @property
    def edges(self) -> tuple[float, ...]:
        return (-np.inf, *self.breaks, np.inf)

    def f(self, x: Array) -> Array:
        return self.sigma * self.act(self.rho * x)

    def d1(self, x: Array) -> Array:
        return (self.sigma * self.rho) * self.act.derivative(self.rho * x)

    def d2(self, x: Array) -> Array:
        return self.sigma * self.act.second_derivative(self.rho * x)

    def d1_right(self, x: Array) -> Array:
        """Right derivative of F (differs from d1 only at the kinks of a piecewise-linear F)."""
        if self.piece_slopes is None:
            return self.d1(x)
        idx = np.searchsorted(np.asarray(self.breaks), x, side="right")
        return np.asarray(self.piece_slopes)[idx]


def _probes(breaks: tuple[float, ...]) -> list[float]:
    """One point strictly inside each piece between the breakpoints."""
    if not breaks:
        return [0.0]
    inner = [0.5 * (a + b) for a, b in zip(breaks, breaks[1:])]
    return [breaks[0] - 1.0, *inner, breaks[-1] + 1.0]


def _pieces(F: Oriented, L: Array, U: Array):
    """Yield (i, a, b, ok): piece i of F intersected with [L, U]; a, b set to L where empty."""
    e = F.edges
    for i in range(len(F.curvature)):
        a = np.maximum(L, e[i])
        b = np.minimum(U, e[i + 1])
        ok = a <= b
        yield i, np.where(ok, a, L), np.where(ok, b, L), ok


# ---------------------------------------------------------------------------------------------
# The minimum of G(x) = F(x) - s*x over [L, U]: a rigorous lower bound, the computed value and
# where it is attained (the touch point of the supporting line of slope s).


@dataclass(frozen=True)
class Support:
    """The minimum of G(x) = F(x) - s*x over [L, U] for one slope per row (all arrays L.shape).

    ``bound <= min G`` rigorously (the intercept of a sound lower line of F); ``nominal`` is the
    float64 minimum found; ``[touch_lo, touch_hi]`` spans the candidates within rounding of it (the
    touch set of the supporting line; a single point except on a linear stretch of the hull).
    Only ``bound`` carries a guarantee; the rest serves to choose slopes.
    """

    bound: Array
    nominal: Array
    touch_lo: Array
    touch_hi: Array


def _reduce(L: Array, cands: list[tuple[Array, Array, Array, Array]]) -> Support:
    """Combine candidates (lower bound, value, location, valid) into a Support."""
    bound = np.full(L.shape, np.inf)
    nominal = np.full(L.shape, np.inf)
    for lb, g, _, ok in cands:
        bound = np.where(ok, np.minimum(bound, lb), bound)
        nominal = np.where(ok, np.minimum(nominal, g), nominal)
    tol = ENVELOPE_TIE_REL * (1.0 + np.abs(nominal))
    t_lo = np.full(L.shape, np.inf)
    t_hi = np.full(L.shape, -np.inf)
    for _, g, x, ok in cands:
        tie = ok & (g <= nominal + tol)
        t_lo = np.where(tie, np.minimum(t_lo, x), t_lo)
        t_hi = np.where(tie, np.maximum(t_hi, x), t_hi)
    return Support(bound, nominal, t_lo, t_hi)


def _min_gap(F: Oriented, L: Array, U: Array, s: Array, iters: int = RIGOROUS_ITERS) -> Support:
    """Rigorous lower bound and touch set of min over [L, U] of F(x) - s*x (see the module doc)."""
    if F.piece_slopes is not None:
        return _min_gap_piecewise_linear(F, L, U, s)
    abs_s = np.abs(s)
    cands = []
    for i, a, b, ok in _pieces(F, L, U):
        if F.curvature[i] > 0:
            lo, hi = _convex_bracket(F, a, b, s, iters)
            f_lo, f_hi = F.f(lo), F.f(hi)
            d_lo, d_hi = F.d1(lo), F.d1(hi)
            g_lo, g_hi = f_lo - s * lo, f_hi - s * hi
            gd_lo, gd_hi = d_lo - s, d_hi - s
            # The tangents of the convex G at lo and hi underestimate G on [a, b]; their maximum is
            # convex piecewise linear, minimised at a, b or where they cross.
            den = gd_lo - gd_hi
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                x_int = (g_hi - g_lo + gd_lo * lo - gd_hi * hi) / den
            x_int = np.where(np.isfinite(x_int), np.clip(x_int, a, b), lo)
            tangents = np.full(L.shape, np.inf)
            for x in (a, b, lo, hi, x_int):
                tangents = np.minimum(tangents, np.maximum(g_lo + gd_lo * (x - lo), g_hi + gd_hi * (x - hi)))
            width = b - a
            scale = np.maximum.reduce([np.abs(f_lo), np.abs(f_hi), abs_s * np.abs(lo), abs_s * np.abs(hi),
                                       (np.abs(d_lo) + abs_s) * width, (np.abs(d_hi) + abs_s) * width])
            lb = tangents - (ENVELOPE_SLACK + ENVELOPE_REL_SLACK * scale)
            cands += [(lb, g_lo, lo, ok), (lb, g_hi, hi, ok)]
        else:
            for x in (a, b):
                fx = F.f(x)
                g = fx - s * x
                err = ENVELOPE_SLACK + ENVELOPE_REL_SLACK * np.maximum(np.abs(fx), abs_s * np.abs(x))
                cands.append((g - err, g, x, ok))
    return _reduce(L, cands)


def _bracketed_newton(fn, lo: Array, hi: Array, rows: Array, iters: int, stop, *, collapse: bool = False) -> None:
    """Safeguarded Newton on the flat brackets [lo[r], hi[r]] of ``rows``, narrowed in place.

    ``fn(x, rows) -> (v, dv)``: a function increasing through its root (v < 0: the root lies right
    of x) and its derivative. Each step moves the bracket's end to x, then takes the Newton step
    where it lands strictly inside the bracket and bisects otherwise; at most ``iters`` steps.
    ``stop(rows, x, xn, v, newton)`` marks the rows done after a step (x its point, xn the next one,
    ``newton`` where xn is a Newton step); with ``collapse`` a done row's bracket becomes [xn, xn].
    """
    x = 0.5 * lo[rows] + 0.5 * hi[rows]
    for _ in range(iters):
        if rows.size == 0:
            break
        v, dv = fn(x, rows)
        right = v < 0
        lo[rows] = np.where(right, x, lo[rows])
        hi[rows] = np.where(right, hi[rows], x)
        la, ha = lo[rows], hi[rows]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            xn = x - v / dv
        newton = (xn > la) & (xn < ha)
        xn = np.where(newton, xn, 0.5 * la + 0.5 * ha)
        done = stop(rows, x, xn, v, newton)
        if collapse:
            lo[rows[done]] = hi[rows[done]] = xn[done]
        rows, x = rows[~done], xn[~done]


def _convex_bracket(F: Oriented, a: Array, b: Array, s: Array, iters: int) -> tuple[Array, Array]:
    """Two points lo <= hi of [a, b] around the minimiser of the convex G(x) = F(x) - s*x.

    Safeguarded Newton on G' = F' - s (G'' = F'' >= 0 on a convex piece; :func:`_bracketed_newton`),
    at most ``iters`` steps; a row stops once its step is below rounding of the piece's ends or its
    tangent loses at most _TANGENT_LOSS over the piece (slow Newton near an inflection).
    Any two points keep the caller's tangent bound rigorous; near ones make it tight (one converged
    end suffices: its tangent is flat to rounding). Where G' >= 0 at a (or <= 0 at b) the minimiser
    is that end and the bracket collapses onto it.
    """
    shape = np.broadcast_shapes(a.shape, b.shape, s.shape)
    a, b, s = (np.broadcast_to(v, shape).ravel() for v in (a, b, s))  # flat rows, for compaction
    g_a, g_b = F.d1(a) - s, F.d1(b) - s
    at_a, at_b = g_a >= 0, (g_b <= 0) & (g_a < 0)
    lo, hi = np.where(at_b, b, a), np.where(at_a, a, b)
    scale, width = _NEWTON_TOL * np.maximum(np.abs(a), np.abs(b)), b - a
    _bracketed_newton(lambda x, r: (F.d1(x) - s[r], F.d2(x)), lo, hi,
                      np.flatnonzero(~(at_a | at_b) & (b > a)), iters,
                      lambda r, x, xn, g, newton: ((np.abs(xn - x) <= scale[r])
                                                   | (np.abs(g) * width[r] <= _TANGENT_LOSS)))
    return lo.reshape(shape), hi.reshape(shape)


def _min_gap_piecewise_linear(F: Oriented, L: Array, U: Array, s: Array) -> Support:
    """Exact-where-possible minimum of F(x) - s*x for piecewise-linear F.

    On piece i, F(x) = F(k) + p_i (x - k) with k a breakpoint bounding the piece (0 for a linear
    family), so G(v) = (F(k) - s*k) + (p_i - s)(v - k), evaluated at the piece's ends. The error
    term is ENVELOPE_REL_SLACK times the magnitudes involved plus one underflow unit when a product
    of non-zero factors was formed; it vanishes when every operation is exact (p_i == s, v == k, ...).
    """
    nb = len(F.breaks)
    cands = []
    for i, a, b, ok in _pieces(F, L, U):
        k = F.breaks[i] if i < nb else (F.breaks[i - 1] if i > 0 else 0.0)
        fk = float(F.f(np.array(k)))
        p = F.piece_slopes[i]
        base = fk - s * k
        base_err = (ENVELOPE_REL_SLACK * (abs(fk) + np.abs(s * k))
                    + np.where((s != 0) & (k != 0), BOUND_UNDERFLOW_UNIT, 0.0))
        d = p - s
        for v in (a, b):
            dv = v - k
            term = d * dv
            g = base + term
            # Where the product is formed from non-zero factors, also cover a consumer's float64
            # evaluation of the line and of f at v (magnitudes |s v| and |F(v)|).
            inexact = (d != 0) & (dv != 0)
            mag = np.maximum.reduce([np.abs(term), np.abs(g), np.abs(s * v), abs(fk) + abs(p) * np.abs(dv)])
            err = base_err + np.where(inexact, ENVELOPE_REL_SLACK * mag + BOUND_UNDERFLOW_UNIT, 0.0)
            cands.append((g - err, g, v, ok))
    return _reduce(L, cands)


# ---------------------------------------------------------------------------------------------
# Public API.


def tightest_intercept(act: Activation, L, U, slope, side: Side) -> Array:
    """The tightest sound intercept of a line of the given slope on one side of f over [L, U].

    Parameters
    ----------
    act : the activation.
    L, U : float arrays, broadcast together with ``slope`` (typically shape (n,)); ``L <= U``.
    slope : float array of slopes.
    side : Side.LOWER returns ``c <= min_{x in [L, U]} f(x) - slope*x``, so that
        ``f(x) >= slope*x + c`` on [L, U]; Side.UPPER returns ``c >= max(f(x) - slope*x)``,
        so that ``f(x) <= slope*x + c``. Both hold for the exact f, not only for its float64
        evaluation, and are tight up to ``ENVELOPE_SLACK + ENVELOPE_REL_SLACK * scale``
        (exactly tight for piecewise-linear pieces whose arithmetic is exact).

    Returns
    -------
    c : float64 array of the broadcast shape.

    Raises ParameterError for non-finite inputs or ``L > U`` anywhere (intervals inverted by
    rounding are the caller's bug to fix: widen them before asking).
    """
    where = "tightest_intercept"
    L, U = check_intervals(L, U, where)
    s = _slopes(slope, L.shape, where)
    L, U = np.broadcast_to(L, s.shape).copy(), np.broadcast_to(U, s.shape).copy()
    sigma = 1.0 if _side(side) is Side.LOWER else -1.0
    return sigma * _min_gap(Oriented.of(act, sigma), L, U, sigma * s).bound + 0.0


def support(act: Activation, L: Array, U: Array, s: Array, sigma: float, iters: int) -> Support:
    """The supporting line of slope s (of F = sigma*f) below F on [L, U]: see Support."""
    return _min_gap(Oriented.of(act, sigma), L, U, s, iters)


def _min_secant_from_left(F: Oriented, L: Array, U: Array, iters: int = _CHOICE_ITERS) -> tuple[Array, Array]:
    """min over x in (L, U] of (F(x) - F(L)) / (x - L), and F'(L+) where L == U, with the point
    where it is attained (L for the limit F'(L+); the farthest one on ties).

    This is the slope of F's lower convex envelope at L, and the point is the end of the envelope's
    first linear stretch [L, q]. Candidates: the limit F'(L+), x = U, the breakpoints inside, and in
    each convex piece the point whose tangent passes through (L, F(L)) (h(t) = F(t) - F(L) -
    F'(t)(t - L) decreases there; found by :func:`_tangent_through`). Not rigorous: it only
    chooses slopes.
    """
    if F.piece_slopes is not None and F.breaks and L.ndim == 1:
        # Rows with no breakpoint strictly inside (L, U) lie on one linear piece: the answer is
        # its slope, reached at U (what the candidates below give them). Only the rest (for relu:
        # the unstable neurons, a small share of a network's) need the candidates.
        brk = np.asarray(F.breaks)
        cross = np.searchsorted(brk, U, side="left") > np.searchsorted(brk, L, side="right")
        if not cross.all():
            best, arg = np.array(F.d1_right(L), dtype=np.float64), np.array(U, dtype=np.float64)
            rows = np.flatnonzero(cross)
            if rows.size:
                best[rows], arg[rows] = _min_secant_from_left(F, L[rows], U[rows], iters)
            return best, arg
    fL = F.f(L)
    best = F.d1_right(L)
    arg = L.copy()
    pos = U > L
    tol = ENVELOPE_TIE_REL * (1.0 + np.abs(best))

    def offer(val, x):
        nonlocal best, arg
        take = (val < best - tol) | ((val <= best + tol) & (x > arg))
        best = np.minimum(val, best)
        arg = np.where(take, x, arg)

    # A secant to a point of L's own linear piece is F'(L+) up to rounding: skip it, so that a
    # piecewise-linear F gets its exact piece slopes.
    brk = np.asarray(F.breaks)
    first = np.searchsorted(brk, L, side="right")  # the piece right of L
    lin = np.asarray(F.curvature)[first] == 0
    nxt = np.append(brk, np.inf)[first]  # the end of that piece
    with np.errstate(divide="ignore", invalid="ignore"):
        def secant(x):
            return np.where(x > L, (F.f(x) - fL) / np.where(x > L, x - L, 1.0), np.inf)

        # Within L's own linear piece the stretch reaches at least the piece's end.
        arg = np.where(lin, np.minimum(U, nxt), arg)
        for bk in F.breaks:
            x = np.full(L.shape, bk)
            inside = (L < bk) & (bk < U) & ~(lin & (bk <= nxt))
            offer(np.where(inside, secant(x), np.inf), x)
        for i, a, b, ok in _pieces(F, L, U):
            if F.curvature[i] <= 0:
                continue
            lo, hi = _tangent_through(F, L, fL, a, b, iters)
            s_lo, s_hi = secant(lo), secant(hi)
            use_lo = s_lo < s_hi
            offer(np.where(ok & pos, np.where(use_lo, s_lo, s_hi), np.inf), np.where(use_lo, lo, hi))
        offer(np.where(pos & ~(lin & (U <= nxt)), secant(U), np.inf), U)
    return best, arg


def _tangent_through(F: Oriented, L: Array, fL: Array, a: Array, b: Array, iters: int) -> tuple[Array, Array]:
    """Points lo <= hi of a convex piece [a, b] of F (L <= a) around the t whose tangent passes
    through (L, F(L)): the root of h(t) = F(t) - F(L) - F'(t)(t - L), which decreases on the piece
    (h' = -F''(t)(t - L) <= 0); lo = hi = b where h stays positive, a where h(a) <= 0.

    Safeguarded Newton on -h (:func:`_bracketed_newton`), at most ``iters`` steps, a row stopping
    once its Newton step is below _SECANT_TOL of the piece's width. Not rigorous: the point only
    chooses a secant slope, which is stationary there (an error dt moves it by O(dt**2)).
    """
    shape = np.broadcast_shapes(L.shape, a.shape, b.shape)
    L, fL, a, b = (np.broadcast_to(v, shape).ravel() for v in (L, fL, a, b))

    def h(t, rows):
        return F.f(t) - fL[rows] - F.d1(t) * (t - L[rows])

    every = np.arange(a.size)
    at_b = h(b, every) > 0
    at_a = ~at_b & (h(a, every) <= 0)
    lo, hi = np.where(at_b, b, a), np.where(at_a, a, b)
    tol = _SECANT_TOL * (b - a)
    _bracketed_newton(lambda t, r: (-h(t, r), F.d2(t) * (t - L[r])), lo, hi,
                      np.flatnonzero(~(at_a | at_b) & (b > a)), iters,
                      lambda r, x, xn, v, newton: newton & (np.abs(xn - x) <= tol[r]), collapse=True)
    return lo.reshape(shape), hi.reshape(shape)


def _hull_range(act: Activation, L: Array, U: Array, sigma: float, *,
                with_stretches: bool = False):
    """Slopes of the lower convex envelope of F = sigma*f at L and at U (s_lo <= s_hi); with
    ``with_stretches`` also the ends q, p of the envelope's first and last linear stretches [L, q]
    and [p, U] (where the envelope has the slope s_lo, respectively s_hi)."""
    s_lo, q = _min_secant_from_left(Oriented.of(act, sigma, 1.0), L, U)
    s_hi, p = _min_secant_from_left(Oriented.of(act, sigma, -1.0), -U, -L)
    s_hi, p = -s_hi, -p
    lo, hi = np.minimum(s_lo, s_hi), np.maximum(s_lo, s_hi)
    return (lo, hi, q, p) if with_stretches else (lo, hi)


def slope_range(act: Activation, L, U, side: Side) -> tuple[Array, Array]:
    """The slopes worth optimising for one side over [L, U]: ``(lo, hi)``, arrays of L's shape.

    They are the end slopes of the convex hull's boundary on that side: any slope outside gives
    a line dominated on [L, U] by the line at the nearer end of the range. For relu on an unstable
    interval, LOWER gives (0, 1) and UPPER gives the chord slope twice. Where L == U the range is
    the derivative there (right derivative at a kink). Computed to about 1e-9, not rigorously:
    intercepts must still come from :func:`tightest_intercept`.
    """
    L, U = check_intervals(L, U, "slope_range")
    sigma = 1.0 if _side(side) is Side.LOWER else -1.0
    a, b = _hull_range(act, L, U, sigma)
    return (a, b) if sigma > 0 else (-b, -a)


def _hull_slope_at(act: Activation, L: Array, U: Array, t: Array, sigma: float,
                   s_lo: Array, s_hi: Array, q: Array | None = None, p: Array | None = None) -> Array:
    """Slope of F's lower convex envelope at t in [L, U], F = sigma*f (right slope at a kink).

    Where F's own tangent at t supports F on all of [L, U] (the envelope touches the graph at t),
    that tangent's slope; where t lies on the envelope's first stretch [L, q] or last stretch
    [p, U] (``q``, ``p`` from :func:`_hull_range`), s_lo or s_hi. Elsewhere (a stretch between two
    inner touch points, which needs two convex pieces of F) it maximises the concave
    phi(s) = s*t + c(s), c(s) = min F(x) - s*x, whose supergradient is t - touch(s): bisection on
    s, then the best of the bracket and the range ends (so that a piecewise-linear hull gets its
    exact piece slope). Ties go to the larger slope.
    """
    out = s_hi.copy()  # the answer where the hull has a single slope
    F = Oriented.of(act, sigma)
    s_t = np.clip(F.d1_right(t), s_lo, s_hi)
    sup = support(act, L, U, s_t, sigma, _CHOICE_ITERS)
    g_t = F.f(t) - s_t * t
    touches = sup.nominal >= g_t - ENVELOPE_TIE_REL * (1.0 + np.abs(g_t)) * 1e3
    open_ = s_hi > s_lo
    out = np.where(open_ & touches, s_t, out)
    rest = open_ & ~touches
    if q is not None:
        first, last = rest & (t <= q), rest & (t >= p)
        out = np.where(last, s_hi, np.where(first, s_lo, out))
        rest &= ~(first | last)
    rows = np.flatnonzero(rest)
    if rows.size:
        Lr, Ur, tr, a, b = L[rows], U[rows], t[rows], s_lo[rows].copy(), s_hi[rows].copy()
        for _ in range(_SLOPE_ITERS):
            mid = 0.5 * a + 0.5 * b
            right = support(act, Lr, Ur, mid, sigma, _CHOICE_ITERS).touch_lo <= tr
            a = np.where(right, mid, a)
            b = np.where(right, b, mid)
        cands = [s_hi[rows], b, a, s_lo[rows]]  # descending, so argmax picks the larger slope on ties
        phis = [s * tr + support(act, Lr, Ur, s, sigma, _CHOICE_ITERS).nominal for s in cands]
        out[rows] = np.choose(np.argmax(np.stack(phis), axis=0), cands)
    return out


def _pair_slope(act: Activation, L: Array, U: Array, sigma: float) -> Array:
    """The pair choice of slope for F = sigma*f: the hull's tangent at the interval's midpoint.

    Of all single lines below F on [L, U], the one with the largest value at the midpoint has the
    least area between it and F, and that line supports the convex hull there. Where the chord
    supports, this is the chord; for relu it is 1 if U >= -L else 0.
    """
    F = Oriented.of(act, sigma)
    if F.piece_slopes is not None and F.breaks:
        # An interval inside one linear piece (the stable neurons of a relu layer, most of them at
        # a branch-and-bound node) has that piece as its hull: its slope, without the search.
        br = np.asarray(F.breaks)
        i_lo = np.searchsorted(br, L, side="right")
        one = i_lo == np.searchsorted(br, U, side="left")
        out = np.asarray(F.piece_slopes)[i_lo].astype(np.float64)
        rest = ~one
        if len(F.breaks) == 1 and rest.any():
            # One kink inside (an unstable relu): where F bends upwards there, F is its own hull and
            # the slope at the midpoint is the piece's it lies in (the right one at the kink);
            # where it bends downwards, the hull is the chord. Both are what the search returns.
            (k,), (p0, p1) = F.breaks, F.piece_slopes
            inside = rest & (L < k) & (k < U)
            Lr, Ur = L[inside], U[inside]
            if p1 > p0:
                out[inside] = np.where(0.5 * Lr + 0.5 * Ur < k, p0, p1)
                rest &= ~inside
            elif p1 < p0:
                out[inside] = (F.f(Ur) - F.f(Lr)) / (Ur - Lr)
                rest &= ~inside
        if rest.any():
            out[rest] = _pair_slope_search(act, L[rest], U[rest], sigma)
        return out
    return _pair_slope_search(act, L, U, sigma)


def _pair_slope_search(act: Activation, L: Array, U: Array, sigma: float) -> Array:
    s_lo, s_hi, q, p = _hull_range(act, L, U, sigma, with_stretches=True)
    return _hull_slope_at(act, L, U, 0.5 * L + 0.5 * U, sigma, s_lo, s_hi, q, p)


def pair_lines(act: Activation, L, U, lower_slope=None, *, upper_slope=None) -> Lines:
    """One sound lower and one sound upper line per neuron (the "pair" formulation).

    Parameters
    ----------
    act : the activation.
    L, U : float arrays of shape (n,) (or broadcastable), ``L <= U``.
    lower_slope, upper_slope : optional slopes (broadcast to (n,)) chosen by the caller, e.g. an
        alpha-CROWN optimiser; the default is, per side, the tangent of the convex hull of the
        graph at the interval's midpoint (the single line of least area): the chord where it
        supports, for relu the adaptive lower slope (1 if U >= -L else 0), and on a stable
        relu/leaky_relu interval or for identity the function itself on both sides.

    Returns
    -------
    Lines with arrays of shape (n,); every intercept comes from :func:`tightest_intercept`, so
    ``lower_slope*x + lower_intercept <= f(x) <= upper_slope*x + upper_intercept`` on [L, U]
    whatever slopes were passed.
    """
    where = "pair_lines"
    L, U = check_intervals(L, U, where)
    L, U = np.atleast_1d(L), np.atleast_1d(U)
    out = []
    for sigma, given, name in ((1.0, lower_slope, "lower_slope"), (-1.0, upper_slope, "upper_slope")):
        if given is not None:
            given = sigma * np.broadcast_to(_slopes(given, L.shape, where, name), L.shape)
        sF, sup = pair_side(act, L, U, sigma, given)
        out += [sigma * sF + 0.0, sigma * sup.bound + 0.0]
    return Lines(*out)


def pair_side(act: Activation, L: Array, U: Array, sigma: float, sF: Array | None = None):
    """The pair line of F = sigma*f (slope sF of F, default the hull tangent at the midpoint)
    with its rigorous support; shared by :func:`pair_lines` and the envelope builders so that
    both give bit-identical lines."""
    if sF is None:
        sF = _pair_slope(act, L, U, sigma)
    return sF, support(act, L, U, sF, sigma, RIGOROUS_ITERS)


def image_bounds(act: Activation, L, U) -> tuple[Array, Array]:
    """A rigorous enclosure ``(zlo, zhi)`` of f([L, U]), element-wise, float64 arrays.

    ``Activation.image`` widened outward: by ``ENVELOPE_REL_SLACK * |value|`` for the linear and
    piecewise-linear families (whose only rounding is one product), by
    ``ENVELOPE_SLACK + ENVELOPE_REL_SLACK * |value|`` for smooth ones.
    """
    L, U = check_intervals(L, U, "image_bounds")
    lo, hi = act.image(L, U)
    smooth = act.spec.family is Family.SMOOTH
    absl = ENVELOPE_SLACK if smooth else 0.0
    return lo - (absl + ENVELOPE_REL_SLACK * np.abs(lo)), hi + (absl + ENVELOPE_REL_SLACK * np.abs(hi))
