"""Counterfactuals: the smallest change to an image that makes the network call it another digit.

For an image x0 with label a and a target class t, over the network's LP relaxation on the ball of
radius ``eps`` around x0 intersected with [0, 1]^d:

    minimise   sum_i u_i
    subject to u_i >= |x_i - x0_i|                       for every pixel i
               logit_t - logit_k >= margin               for every k != t
               (x, a, z, logit) in the polytope.

Two statuses, never conflated:

``relaxed`` ("reached" | "unreachable")
    Whether the relaxation can reach the target. Decided rigorously by a second LP over the same
    polytope, ``maximise logit_t - s`` with ``s >= logit_k`` for every k != t: its safe upper bound
    ``max_margin_upper`` bounds ``logit_t - max_k logit_k`` at every real input of the ball. When it
    is below ``margin`` the target is **unreachable**: no input in the ball makes t beat every other
    class by ``margin`` (for ``margin = 0``: no input makes t win, not even tie). That is a proof,
    sound in floating point. Otherwise "reached", and the min-L1 LP's solution ``lp_input`` is the
    relaxed counterfactual. Its safe lower bound ``l1_lower_bound`` bounds the L1 distance of *every*
    real counterfactual in the ball (every real input with ``logit_t - logit_k >= margin`` is a point
    of the polytope): no smaller change can work.
``concrete`` ("achieved" | "not achieved")
    Whether a point found really makes the network predict t with the requested margin
    (``logit_t - logit_k >= margin`` and ``> REAL_MARGIN_GAIN`` for every k != t, by a forward pass;
    the 1e-9 gap keeps the verdict stable under re-evaluation). ``lp_point_achieved`` says whether the LP's own input does. The relaxation is
    often loose (on the seed network the relaxed minimum is 0 from eps ~ 0.05 up: the polytope lets
    t win at x0 itself), so every method below offers candidate points, in this order:

    ``"lp"`` the relaxed counterfactual itself; ``"lp-margin"`` (only when that point fails) the
    min-L1 LP re-solved with the margin raised to ``margin + (gap + 1e-3) * 2**j``, j = 0..3, gap
    being how far the target fell short on the real network, while below the max-margin LP's value;
    ``"push"`` the change pushed further, ``x0 + s * (x_lp - x0)`` clipped to the ball, s in 1.25 ..
    4; ``"max-margin"`` the segment from the relaxed counterfactual to the max-margin LP's input;
    then "lp", "lp-margin" and "push" again on the balls of radius eps/2, eps/4, ..., eps/32, whose
    relaxations are tighter (their points lie inside the ball; ``found_eps`` says which radius);
    ``"search"`` a targeted signed-gradient ascent of the real margin inside the ball from x0, the
    two LP points and 16 seeded random points.

    Every winning candidate is shrunk towards x0 (the smallest ``alpha`` on a grid of 64 with
    ``x0 + alpha * (point - x0)`` still winning) and the smallest L1 change is the result
    (``found_by`` its method, ``found_eps`` the radius of its LP, ``found_margin`` the LP's margin,
    ``shrink`` its alpha, ``candidates`` the best L1 per method and radius). None wins: "not achieved",
    ``found_by = "failed"``. A result brackets the true smallest change:
    ``l1_lower_bound <= min L1 <= l1``.

**Tightening the bound.** The relaxation can be loose enough that the min-L1 LP's bound says little
(0 from eps ~ 0.05 up on the seed network: the polytope lets t win at x0 itself). When the gap
between the proven bound and the best real counterfactual is large (``l1 - l1_lower_bound >
TIGHTEN_GAP * l1``), :func:`tightened_l1_bound` runs a branch and bound over the hidden neurons'
pre-activation intervals: a subproblem halves one neuron's interval (the one whose relaxation is
loosest at the subproblem's LP optimum, ``|z - f(a)|`` weighted by its path to the logits), each half
gets envelopes on its narrower interval, and the bound is the smallest safe dual bound over the open
leaves (lowest first, until ``tighten_nodes`` LPs or the gap is closed). A leaf whose LP HiGHS calls
infeasible is closed only with a Farkas certificate checked in rigorous arithmetic
(:meth:`~polylens.lp.highs.LPSolver.proves_empty`); otherwise it keeps its parent's bound and is not
split again. Every leaf's polytope holds
every real counterfactual whose pre-activations lie in its intervals, and the leaves cover the ball,
so the bound stays rigorous. ``l1_lower_bound`` is the better of the two, ``l1_lower_bound_lp`` the
plain LP's, ``tighten_nodes`` the LPs the branch and bound used (0 when it did not run).

When HiGHS fails on the HULL polytope (it can, spuriously, on neurons whose output range is ~1e-9
wide) the PAIR envelope is used (``envelope = "pair"``); it is looser but equally sound.

Example
-------
>>> from polylens.nn.model import load_model, model_split
>>> m = load_model("seed"); s = model_split(m)
>>> i = int(((s.y_test == 4) & (m.network.predict(s.x_test) == 4)).argmax())
>>> r = counterfactual(m, s.x_test[i], 4, 9, eps=0.3)
>>> str(r.relaxed), r.concrete in ("achieved", "not achieved")
('reached', True)
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from polylens.errors import InfeasibleError, ModelError, ParameterError, SolverError
from polylens.jsonio import fields_dict
from polylens.lenses.discover.toolkit import relax, with_fallback, with_max_column
from polylens.lp import LPSolver, Polytope, Role, Rows, Sense
from polylens.nn.margins import margins
from polylens.nn.network import Network
from polylens.nn.search import MarginObjective, SignedSteps, box_search
from polylens.relax.envelopes import Envelope, Hull, Pair, check_envelope
from polylens.tolerances import PIXEL_CHANGE_TOL, REAL_MARGIN_GAIN
from polylens.validation import (check_class, check_float, check_input, check_inputs, check_int, check_labels,
                                 check_network)

Array = np.ndarray

__all__ = ["CLASSIC_PAIRS", "Concrete", "CounterfactualResult", "CounterfactualSet", "FoundBy", "Relaxed",
           "TightenedBound", "counterfactual", "counterfactual_pairs", "instructive_pairs", "representative_image",
           "tightened_l1_bound"]


class Relaxed(StrEnum):
    """Whether the relaxation can reach the target (a proof when UNREACHABLE; see the module docstring)."""

    REACHED = "reached"
    UNREACHABLE = "unreachable"


class Concrete(StrEnum):
    """Whether a real input was found that the network classifies as the target with the margin."""

    ACHIEVED = "achieved"
    NOT_ACHIEVED = "not achieved"


class FoundBy(StrEnum):
    """The method whose point gave the result (see the module docstring), or why there is none."""

    LP = "lp"
    LP_MARGIN = "lp-margin"
    PUSH = "push"
    MAX_MARGIN = "max-margin"
    SEARCH = "search"
    FAILED = "failed"
    UNREACHABLE = "unreachable"

#: Pairs of digits MNIST classifiers classically confuse (label, target).
CLASSIC_PAIRS: tuple[tuple[int, int], ...] = ((4, 9), (3, 5), (7, 9), (1, 7), (5, 8), (2, 7))

_REPAIR_STEPS = 4
_PUSH = (1.25, 1.5, 2.0, 3.0, 4.0)
_SEGMENT = 8
_SHRINK = 64
_SEARCH_STEPS = 60
_SEARCH_RESTARTS = 16
_INNER = 5
#: Tighten the L1 bound when the gap to the best real counterfactual exceeds this fraction of it.
TIGHTEN_GAP = 0.1


def _targeted_search(net: Network, starts: Array, target: int, xl: Array, xu: Array) -> Array:
    """Signed-gradient ascent of the real margin logit_t - max_k logit_k from each row of ``starts``
    (S, d), projected on the box [xl, xu], with a step shrinking from (xu - xl) / 4 to 0
    (:func:`polylens.nn.search.box_search`). Returns the best point of each run (S, d). A search only
    proposes: callers confirm with a forward pass."""
    objective = MarginObjective(net, np.full(len(starts), target), sign=1.0)
    return box_search(objective, starts, xl, xu, steps=_SEARCH_STEPS, schedule=SignedSteps(first=0.25)).x


@dataclass(frozen=True, eq=False)
class CounterfactualResult:
    """One counterfactual (see the module docstring). d = input width, C = classes.

    ``original`` (d,); ``label``, ``target``; ``relaxed``: :class:`Relaxed` REACHED/UNREACHABLE;
    ``concrete``: :class:`Concrete` ACHIEVED/NOT_ACHIEVED. ``max_margin_upper``: rigorous upper bound of logit_t - max_k logit_k
    over the ball; ``max_margin_lp``: the solver's value of that LP. ``lp_input`` (d,) or None: the
    relaxed counterfactual (the min-L1 LP's input; None when unreachable); ``lp_l1``: its L1 distance;
    ``l1_lower_bound``: rigorous lower bound of the L1 distance of every real input of the ball with
    logit_t - logit_k >= margin for all k (+inf when unreachable; 0 when only the boundary case of the
    docstring gave a point), the better of the LP's (``l1_lower_bound_lp``) and the branch and bound's
    (``tighten_nodes`` LPs; see the module docstring). ``lp_logits`` (C,) or None: the real logits at ``lp_input``.
    ``result`` (d,) or None: the concrete counterfactual (the network predicts t there), ``delta`` =
    result - original, ``changed`` bool (d,), ``l1`` (NaN when none); ``logits_before`` (C,),
    ``logits_after`` (C,) or None at the result. ``found_by``: a :class:`FoundBy` ("lp", "lp-margin",
    "push", "max-margin", "search", "failed" or "unreachable"); ``found_eps``: the radius of the LP whose point
    gave the result (NaN for "search"); ``found_margin``: that LP's margin (NaN for "search"); ``shrink``: alpha in (0, 1] of the shrink step
    (NaN without result); ``lp_point_achieved``: the LP's own input makes t win; ``candidates``:
    {"method@eps=r" or "search": smallest L1 it reached after shrinking};
    ``envelope``: "hull" or "pair"; ``lp_solves``: LP solves used.
    """

    original: Array
    label: int
    target: int
    eps: float
    margin: float
    relaxed: Relaxed
    concrete: Concrete
    max_margin_upper: float
    max_margin_lp: float
    lp_input: Array | None
    lp_l1: float
    l1_lower_bound: float
    l1_lower_bound_lp: float
    tighten_nodes: int
    lp_logits: Array | None
    result: Array | None
    delta: Array | None
    changed: Array | None
    l1: float
    logits_before: Array
    logits_after: Array | None
    found_by: FoundBy
    found_eps: float
    found_margin: float
    shrink: float
    lp_point_achieved: bool
    candidates: dict
    envelope: str
    lp_solves: int
    input_shape: tuple[int, ...]
    seconds: float

    @property
    def achieved(self) -> bool:
        return self.concrete is Concrete.ACHIEVED

    def to_dict(self) -> dict:
        """JSON-ready data: arrays as nested lists, NaN/inf and missing arrays as None."""
        return fields_dict(self)

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


@dataclass(frozen=True, eq=False)
class CounterfactualSet:
    """Counterfactuals for several (label, target) pairs: ``pairs`` (P,), ``indices`` (P,) the row of x
    used as the representative image of each label, ``results`` (P,)."""

    pairs: tuple[tuple[int, int], ...]
    indices: Array
    results: tuple[CounterfactualResult, ...]

    def to_dict(self) -> dict:
        return {"pairs": [list(p) for p in self.pairs], "indices": self.indices.tolist(),
                "results": [r.to_dict() for r in self.results]}

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


# ---------------------------------------------------------------------------------------------


def _wins(net: Network, X: Array, target: int, margin: float = 0.0) -> tuple[Array, Array]:
    """Whether ``target`` beats every other logit at each row of X (N, d) by at least ``margin`` and by
    more than REAL_MARGIN_GAIN (so that the verdict survives re-evaluation in another batch), and the logits."""
    lg = net(np.atleast_2d(X))
    m, _ = margins(lg, np.full(len(lg), target))
    return (m >= margin) & (m > REAL_MARGIN_GAIN), lg


def _min_l1_rows(base: Polytope, target: int, margin: float, x0: Array):
    """The min-L1 polytope: u columns (``u >= |x - x0|``) plus rows logit_t - logit_k >= margin (k != t).
    Returns (polytope, u's handle)."""
    l1 = base.with_l1_distance(x0)
    poly, u = l1.polytope, l1.cols
    C = base.network.n_classes
    others = np.array([k for k in range(C) if k != target])
    k = len(others)
    logit = poly.handle(Role.LOGIT)
    diff = sp.coo_matrix((np.tile([1.0, -1.0], k), (np.repeat(np.arange(k), 2),
                                                      np.column_stack([np.full(k, target), others]).ravel())),
                         shape=(k, C))
    ext = poly.extend(rows=[Rows(f"logit[{target}]-logit>=margin", {logit: diff}, np.full(k, margin),
                                 np.full(k, np.inf), keys=others)])
    return ext.polytope, u


def _solve_min_l1(base: Polytope, target: int, margin: float, x0: Array, xl: Array, xu: Array):
    """(input (d,), solution) of the min-L1 LP, or None when HiGHS finds it infeasible/fails."""
    poly, u = _min_l1_rows(base, target, margin, x0)
    try:
        sol = LPSolver(poly).solve(poly.cost({u: 1.0}), Sense.MIN)
    except SolverError:
        return None
    if not sol.optimal:
        return None
    return np.clip(sol.x[poly.inputs], xl, xu), sol


@dataclass(frozen=True)
class TightenedBound:
    """A branch and bound's rigorous lower bound of the L1 change (``bound``; +inf when every leaf is
    empty: the target is unreachable), the LPs it solved (``nodes``), and whether it closed the gap to
    the incumbent or ran out of leaves (``complete``)."""

    bound: float
    nodes: int
    complete: bool


@dataclass(order=True)
class _Leaf:
    bound: float
    order: int
    pre: list = field(compare=False)
    point: Array | None = field(compare=False)
    splittable: bool = field(compare=False, default=True)


#: What a leaf's LP said: a safe bound (with the LP point), provably empty, or nothing to rely on.
_EMPTY = "empty"


def _leaf_lp(net: Network, x0: Array, target: int, margin: float, xl: Array, xu: Array, pre, envelope: Envelope):
    """The min-L1 LP on the intervals ``pre`` (the pair envelope where HiGHS fails on a hull):
    ``(safe bound, solution, polytope)``; ``(_EMPTY, None, None)`` when a Farkas certificate proves the
    leaf empty (:meth:`~polylens.lp.highs.LPSolver.proves_empty`); ``(None, None, None)`` otherwise."""
    from polylens.lp.polytope import build_polytope

    for env in (envelope, Pair()) if envelope != Pair() else (envelope,):
        try:
            base = build_polytope(net, xl, xu, pre, env)
        except InfeasibleError:
            return _EMPTY, None, None       # the intervals themselves exclude every input
        except (SolverError, ParameterError):
            continue
        poly, u = _min_l1_rows(base, target, margin, x0)
        solver = LPSolver(poly)
        try:
            sol = solver.solve(poly.cost({u: 1.0}), Sense.MIN)
        except InfeasibleError:
            if solver.proves_empty():
                return _EMPTY, None, None
            continue
        except SolverError:
            continue
        if sol.optimal:
            return max(0.0, sol.safe_bound), sol, poly
    return None, None, None


def _split_choice(net: Network, sol, poly, pre) -> tuple[int, int] | None:
    """The neuron whose relaxation is loosest at the LP optimum: |z - f(a)| times the size of its
    outgoing weights, among neurons whose interval is still wider than 1e-9."""
    best, where = -1.0, None
    for l, act in enumerate(net.activations):
        a = sol.x[poly.block(Role.PRE, l + 1)]
        z = sol.x[poly.block(Role.POST, l + 1)]
        L, U = pre[l]
        out_w = np.abs(net.layers[l + 1].W).sum(axis=0)
        score = np.abs(z - act(a)) * out_w + 1e-12 * (U - L)
        score = np.where(U - L > 1e-9, score, -1.0)
        j = int(np.argmax(score))
        if score[j] > best:
            best, where = float(score[j]), (l, j)
    return where if best >= 0 else None


def tightened_l1_bound(network: Network, x0: Array, target: int, margin: float, xl: Array, xu: Array, *,
                       incumbent: float = math.inf, nodes: int = 64, envelope: Envelope = Hull()) -> TightenedBound:
    """A rigorous lower bound of the L1 change that makes ``target`` win within the box [xl, xu], by a
    branch and bound over the hidden neurons' pre-activation intervals (see the module docstring).
    Stops when ``nodes`` LPs are spent, when the bound is within ``TIGHTEN_GAP`` of ``incumbent`` (the
    best real change known), or when no leaf is left to split."""
    from polylens.bounds import crown_ibp_bounds

    net = network
    b = crown_ibp_bounds(net, xl, xu)
    root_pre = [(b.lower[l][0].copy(), b.upper[l][0].copy()) for l in range(net.n_hidden_layers)]
    bound, sol, poly = _leaf_lp(net, x0, target, margin, xl, xu, root_pre, envelope)
    used = 1
    if bound is _EMPTY:
        return TightenedBound(math.inf, used, True)
    if bound is None:
        return TightenedBound(0.0, used, False)
    count = 0
    heap = [_Leaf(bound, count, root_pre, (sol, poly))]
    while heap and used < nodes:
        leaf = heap[0]
        if leaf.bound >= incumbent * (1 - TIGHTEN_GAP) or not leaf.splittable:
            break
        heapq.heappop(heap)
        sol, poly = leaf.point
        choice = _split_choice(net, sol, poly, leaf.pre)
        if choice is None:
            leaf.splittable = False
            heapq.heappush(heap, leaf)
            break
        l, j = choice
        L, U = leaf.pre[l]
        mid = 0.5 * (L[j] + U[j])
        for upper_half in (False, True):
            child = [(lo.copy(), hi.copy()) for lo, hi in leaf.pre]
            if upper_half:
                child[l][0][j] = mid
            else:
                child[l][1][j] = mid
            cb, csol, cpoly = _leaf_lp(net, x0, target, margin, xl, xu, child, envelope)
            used += 1
            count += 1
            if cb is _EMPTY:
                continue                     # proved to hold no counterfactual: the leaf is closed
            if cb is not None:
                heapq.heappush(heap, _Leaf(max(cb, leaf.bound), count, child, (csol, cpoly)))
            else:                            # nothing to rely on: the parent's bound, not split again
                heapq.heappush(heap, _Leaf(leaf.bound, count, child, None, splittable=False))
    if not heap:
        return TightenedBound(math.inf, used, True)
    low = heap[0].bound
    return TightenedBound(low, used, low >= incumbent * (1 - TIGHTEN_GAP))


def counterfactual(network: Any, x0: Any, label: int, target: int, *, eps: float = 0.03, margin: float = 0.0,
                   envelope: Envelope = Hull(), tighten_nodes: int = 64) -> CounterfactualResult:
    """The smallest L1 change of ``x0`` within its eps-ball (∩ [0, 1]) that makes ``target`` win over
    the polytope, with the two statuses of the module docstring.

    ``network``: a Network or a Model; ``x0`` (d,) in [0, 1]; ``label`` its class (for the report);
    ``target`` != label; ``margin`` >= 0 the required lead of the target's logit in the LP;
    ``envelope`` the LP's relaxation (a hull falls back to the pair where HiGHS fails on it);
    ``tighten_nodes``: LPs the branch and bound that tightens the L1 bound may use (0: none).
    Raises SolverError when HiGHS fails on both the HULL and the PAIR polytope (the image's own point
    lies in both, so such a failure is numerical).
    """
    where = "counterfactual"
    t0 = time.perf_counter()
    net, _ = check_network(network, where)
    if np.ndim(x0) == 2 and len(x0) != 1:
        raise ParameterError(f"The 'x0' parameter of {where} must be one image of shape ({net.input_dim},). "
                             f"Got {len(x0)} images instead; use counterfactual_pairs for several.")
    x0 = check_input(np.reshape(x0, -1) if np.ndim(x0) == 2 else x0, net.input_dim, where, "x0")
    label = check_class(label, net.n_classes, "label", where)
    target = check_class(target, net.n_classes, "target", where)
    if target == label:
        raise ParameterError(f"The 'target' parameter of {where} must differ from the label ({label}). Got {target} instead.")
    eps = check_float(eps, "eps", where, 0.0, 1.0)
    margin = check_float(margin, "margin", where, 0.0)
    envelope = check_envelope(envelope, where)
    tighten_nodes = check_int(tighten_nodes, "tighten_nodes", where, 0, 100_000)

    rel = relax(net, x0[None], eps, envelope)
    xl, xu = rel.xl[0], rel.xu[0]
    before = net(x0[None])[0]
    solves = 0

    # The max-margin LP decides reachability; a hull falls back to the pair where HiGHS fails on it.
    def max_margin(base: Polytope):
        nonlocal solves
        ext = with_max_column(base, target, "s")
        pm = ext.polytope
        solves += 1
        s = LPSolver(pm).solve(pm.cost({pm.handle(Role.LOGIT): np.eye(net.n_classes)[target], ext.cols: -1.0}),
                               Sense.MAX)
        return (s, pm, base) if s.optimal else None

    got_mm, mm_env = with_fallback(rel, 0, max_margin)
    if got_mm is None:
        raise SolverError(f"HiGHS failed on the polytope of this image at eps={eps:g} with both envelopes; "
                          "try another eps or envelope.")
    mm, pm, mm_base = got_mm
    envelope_used = mm_env.mode.value
    mm_x = np.clip(mm.x[pm.inputs], xl, xu)

    common = dict(original=x0, label=label, target=target, eps=eps, margin=margin, max_margin_upper=mm.safe_bound,
                  max_margin_lp=mm.objective, logits_before=before, envelope=envelope_used,
                  input_shape=tuple(net.input_shape))
    if mm.safe_bound < margin:
        return CounterfactualResult(relaxed=Relaxed.UNREACHABLE, concrete=Concrete.NOT_ACHIEVED, lp_input=None,
                                    lp_l1=math.nan, l1_lower_bound=math.inf, l1_lower_bound_lp=math.inf,
                                    tighten_nodes=0, lp_logits=None, result=None, delta=None,
                                    changed=None, l1=math.nan, logits_after=None, found_by=FoundBy.UNREACHABLE,
                                    found_eps=math.nan,
                                    found_margin=math.nan, shrink=math.nan, lp_point_achieved=False, candidates={},
                                    lp_solves=solves, seconds=time.perf_counter() - t0, **common)

    # The min-L1 LP on the max-margin LP's envelope, falling back to the pair from a hull.
    def min_l1(poly: Polytope):
        nonlocal solves
        solves += 1
        r = _solve_min_l1(poly, target, margin, x0, xl, xu)
        return None if r is None else (poly, r)

    got_l1, l1_env = with_fallback(rel, 0, min_l1, mm_env)
    base = mm_base  # where the min-L1 LP fails too, the margin repair uses the max-margin polytope
    got = None
    if got_l1 is not None:
        base, got = got_l1
        common["envelope"] = l1_env.mode.value
    if got is not None:
        lp_x, sol = got
        l1_lower = max(0.0, sol.safe_bound)
    else:
        # Boundary case: the relaxation's best margin is within solver tolerance of ``margin``; the
        # max-margin point is the relaxed counterfactual and only the trivial L1 bound is claimed.
        lp_x, l1_lower = mm_x, 0.0
    lp_l1 = float(np.abs(lp_x - x0).sum())
    lp_logits = net(lp_x[None])[0]

    # Concrete candidates: every method offers points; winners are shrunk towards x0 and the smallest
    # change wins (ties: the earlier method). See the module docstring.
    cands: list[tuple[str, float, float, Array]] = []

    def offer(method: str, e: float, pts: Array, used: float) -> bool:
        pts = np.atleast_2d(pts)
        win, _ = _wins(net, pts, target, margin)
        if win.any():
            cands.append((method, e, used, pts[win]))
        return bool(win.any())

    def from_lp(poly: Polytope, bl: Array, bu: Array, e: float, point: Array) -> bool:
        """Offer an LP point; when it fails, the LP with raised margins; then pushes along its change."""
        nonlocal solves
        ok_pt = offer(FoundBy.LP, e, point, margin)
        if not ok_pt:
            lg_pt = net(point[None])[0]
            gap = max(0.0, float(np.max(np.delete(lg_pt, target)) - lg_pt[target]))
            for j in range(_REPAIR_STEPS):
                m_j = margin + (gap + 1e-3) * 2.0 ** j
                if m_j >= mm.objective:
                    break
                solves += 1
                got_j = _solve_min_l1(poly, target, m_j, x0, bl, bu)
                if got_j is None or offer(FoundBy.LP_MARGIN, e, got_j[0], m_j):
                    break
        offer(FoundBy.PUSH, e, np.clip(x0[None] + np.array(_PUSH)[:, None] * (point - x0)[None], bl, bu), margin)
        return ok_pt

    lp_ok = from_lp(base, xl, xu, eps, lp_x)
    seg = lp_x[None] + (np.arange(1, _SEGMENT + 1) / _SEGMENT)[:, None] * (mm_x - lp_x)[None]
    seg[-1] = mm_x
    offer(FoundBy.MAX_MARGIN, eps, seg, mm.objective)
    for k in range(1, _INNER + 1):  # the min-L1 LP on smaller balls, whose relaxations are tighter
        e_k = eps / 2.0 ** k
        rel_k = relax(net, x0[None], e_k, envelope)
        solves += 1
        got = _solve_min_l1(rel_k.polys[0], target, margin, x0, rel_k.xl[0], rel_k.xu[0])
        if got is not None:
            from_lp(rel_k.polys[0], rel_k.xl[0], rel_k.xu[0], e_k, got[0])
    rng = np.random.default_rng(0)  # fixed: the same call gives the same answer
    starts = np.vstack([x0, lp_x, mm_x, xl + rng.random((_SEARCH_RESTARTS, x0.shape[0])) * (xu - xl)])
    offer(FoundBy.SEARCH, math.nan, _targeted_search(net, starts, target, xl, xu), math.nan)

    result, found_by, found_eps, used_margin, shrink = None, FoundBy.FAILED, math.nan, math.nan, math.nan
    best_l1: dict[str, float] = {}
    if cands:
        alphas = np.arange(1, _SHRINK + 1) / _SHRINK
        best = (math.inf, -1, None, math.nan)
        for order, (method, e, used, pts) in enumerate(cands):
            key = method if math.isnan(e) else f"{method}@eps={e:g}"
            C = x0[None, None] + alphas[None, :, None] * (pts - x0)[:, None, :]  # (P, A, d)
            C[:, -1] = pts
            win, _ = _wins(net, C.reshape(-1, x0.shape[0]), target, margin)
            win = win.reshape(len(pts), _SHRINK)
            keep = win.any(axis=1)  # the point itself won when offered; keep it only if it wins here too
            if not keep.any():
                continue
            C, win = C[keep], win[keep]
            first = np.argmax(win, axis=1)
            small = C[np.arange(len(C)), first]
            l1s = np.abs(small - x0).sum(axis=1)
            j = int(np.argmin(l1s))
            best_l1[key] = min(best_l1.get(key, math.inf), float(l1s[j]))
            if l1s[j] < best[0]:
                best = (float(l1s[j]), order, small[j], float(alphas[first[j]]))
                found_by, found_eps, used_margin = method, e, used
        result, shrink = best[2], best[3]

    if result is not None:
        delta = result - x0
        after = net(result[None])[0]
        concrete, l1, changed = Concrete.ACHIEVED, float(np.abs(delta).sum()), np.abs(delta) > PIXEL_CHANGE_TOL
    else:
        delta = after = changed = None
        concrete, l1 = Concrete.NOT_ACHIEVED, math.nan
    l1_lp, tightened, nodes = l1_lower, l1_lower, 0
    open_gap = math.isnan(l1) or l1 - l1_lower > TIGHTEN_GAP * l1
    if tighten_nodes > 0 and open_gap:
        tb = tightened_l1_bound(net, x0, target, margin, xl, xu, incumbent=l1, nodes=tighten_nodes,
                                envelope=envelope)
        tightened, nodes = max(l1_lower, tb.bound), tb.nodes
        solves += tb.nodes
    return CounterfactualResult(relaxed=Relaxed.REACHED, concrete=concrete, lp_input=lp_x, lp_l1=lp_l1,
                                l1_lower_bound=tightened, l1_lower_bound_lp=l1_lp, tighten_nodes=nodes,
                                lp_logits=lp_logits, result=result, delta=delta,
                                changed=changed, l1=l1, logits_after=after, found_by=found_by, found_eps=found_eps,
                                found_margin=used_margin,
                                shrink=shrink, lp_point_achieved=lp_ok, candidates=best_l1, lp_solves=solves,
                                seconds=time.perf_counter() - t0, **common)


# ---------------------------------------------------------------------------------------------
# Pairs


def _data_of(network: Any, x: Any, y: Any, where: str) -> tuple[Network, Array | None, Array | None]:
    net, _ = check_network(network, where)
    if x is None and y is None:
        if net is not network:  # a Model: its own test split, when the card names one
            try:
                from polylens.nn.model import model_split

                split = model_split(network)
                return net, split.x_test, split.y_test
            except ModelError:
                return net, None, None
        return net, None, None
    if x is None or y is None:
        raise ParameterError(f"{where} needs both x and y, or neither.")
    x = check_inputs(x, net.input_dim, where)
    return net, x, check_labels(y, len(x), net.n_classes, where)


def instructive_pairs(network: Any, x: Any = None, y: Any = None, *, n: int = 4) -> tuple[tuple[int, int], ...]:
    """A few (label, target) pairs worth a counterfactual: the ``n`` most frequent confusions of the
    network on (x, y) (true label -> predicted class, most frequent first, ties by label then target),
    topped up from :data:`CLASSIC_PAIRS`. ``network`` may be a Model, whose test split is used when no
    data is given; with neither, the classic pairs that fit the network's classes.
    """
    where = "instructive_pairs"
    n = check_int(n, "n", where, 1, 100)
    net, x, y = _data_of(network, x, y, where)
    C = net.n_classes
    out: list[tuple[int, int]] = []
    if x is not None and len(x):
        conf = np.zeros((C, C), np.int64)
        np.add.at(conf, (y, net.predict(x)), 1)
        np.fill_diagonal(conf, 0)
        flat = np.argsort(-conf.ravel(), kind="stable")
        for f in flat[:n]:
            if conf.flat[f] > 0:
                out.append((int(f // C), int(f % C)))
    for p in CLASSIC_PAIRS:
        if len(out) >= n:
            break
        if max(p) < C and p not in out:
            out.append(p)
    return tuple(out[:n])


def representative_image(net: Network, x: Array, y: Array, label: int) -> int:
    """The correctly classified image of ``label`` closest (L2) to their mean; all of the label's
    images when none is correct. ParameterError when x has none."""
    rows = np.flatnonzero(y == label)
    if rows.size == 0:
        raise ParameterError(f"counterfactual_pairs has no image of label {label} in x.")
    good = rows[net.predict(x[rows]) == label]
    rows = good if good.size else rows
    mean = x[rows].mean(axis=0)
    return int(rows[np.argmin(((x[rows] - mean) ** 2).sum(axis=1))])


def counterfactual_pairs(network: Any, x: Any = None, y: Any = None, pairs: Sequence[tuple[int, int]] | None = None, *,
                         eps: float = 0.03, margin: float = 0.0, envelope: Envelope = Hull(),
                         tighten_nodes: int = 64) -> CounterfactualSet:
    """A counterfactual for each (label a, target b) of ``pairs`` (default :func:`instructive_pairs`),
    from a representative image of a (the correctly classified image of a nearest to their mean).
    ``network`` may be a Model, whose test split is used when x, y are not given."""
    where = "counterfactual_pairs"
    net, x, y = _data_of(network, x, y, where)
    if x is None:
        raise ParameterError(f"{where} needs images: pass x and y (or a Model whose card names its data).")
    if pairs is None:
        pairs = instructive_pairs(net, x, y)
    checked = []
    for p in pairs:
        try:
            a, b = p
        except (TypeError, ValueError):
            raise ParameterError(f"The 'pairs' parameter of {where} must be a list of (label, target) pairs. "
                                 f"Got {p!r} instead.") from None
        checked.append((check_class(a, net.n_classes, "pairs", where), check_class(b, net.n_classes, "pairs", where)))
    idx = np.array([representative_image(net, x, y, a) for a, _ in checked], np.int64)
    results = tuple(counterfactual(net, x[i], a, b, eps=eps, margin=margin, envelope=envelope,
                                   tighten_nodes=tighten_nodes) for i, (a, b) in zip(idx, checked))
    return CounterfactualSet(tuple(checked), idx, results)
