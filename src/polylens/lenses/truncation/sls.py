"""Sequential linear separability by linear programming (TRUNCATION.md section 4, [CE24] Def. 5.1).

Classes X_1..X_Q (in a given order) are sequentially linearly separable (SLS) if for each j there
is a point p_j on the open segment between the barycentre m of the class means and the mean mu_j of
class j, and a hyperplane through p_j separating X_j from {p_i : i < j} and from every X_i, i > j.

The decision for one step is linear. Write f(x) = w.x + c for the hyperplane, negative on X_j.
Because mu_j is the mean of X_j, f(mu_j) < 0 already; the hyperplane crosses the open segment
(m, mu_j) exactly when f(m) > 0. So step j asks for a strictly separating (w, c) with X_j on the
negative side and the later classes, the earlier p_i and m on the positive side: the LP

    max s  subject to  f(x) <= -s (x in X_j),  f(y) >= s (y later, an earlier p_i, or m),
                       |w_k| <= 1,  |c| <= M R + 1

(coordinates centred at m and scaled to R = 1). The box loses nothing (the feasible set is a cone,
and a separating f changes sign on the points so |c| <= M R), so the step is possible iff the
optimum is positive: a safe dual bound <= 1e-9 *proves* that no hyperplane separates with a
margin above 1e-9 (:data:`IMPOSSIBLE_MARGIN`); a positive optimum is checked
by evaluating the hyperplane on every point.

Which p_j? p_j = m + t_j (mu_j - m) with t_j = f(m) / (f(m) - f(mu_j)). Every later hyperplane has
m on its positive side, so the set of t for which p_j stays there is an interval starting at 0: the
smaller t_j, the better for every later step. A second LP (Charnes-Cooper: normalise f(m) - f(mu_j)
= 1, then t_j = f(m) is linear) minimises t_j keeping a margin of ``margin_fraction`` of the best
one. So for a fixed order the greedy choice is (up to that margin) the best choice, and the order
search (greedy by margin, with backtracking, within a budget of LP solves) decides SLS for a
dataset up to the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from polylens.errors import ParameterError, PolylensError
from polylens.lp.highs import LPSolver, Sense
from polylens.lp.matrix import MatrixLP

__all__ = ["SLSResult", "SLSStep", "check_order", "find_order", "separation_lp"]

Array = np.ndarray

#: A hyperplane counts as separating when, evaluated in float64, every point is on its side by at
#: least this (in the centred, unit-scaled coordinates where the LP lives).
CHECK_MARGIN = 1e-9

#: The best margin is never negative (w = 0, c = 0 is feasible) and is exactly 0 when no hyperplane
#: separates, so a proof of impossibility is a safe upper bound at most this: no hyperplane
#: separates with a margin above 1e-9 of the data's scale (with |w_k| <= 1).
IMPOSSIBLE_MARGIN = 1e-9


@dataclass(frozen=True, eq=False)
class SLSStep:
    """One step of an SLS certificate, in the data's own coordinates: ``cls`` the class label, ``p``
    the point p_j, ``t`` its place on the segment (p = m + t (mu_j - m)), ``w``, ``c`` the hyperplane
    f(x) = w.x + c through p (negative on X_j, positive on the rest), ``margin`` the smallest |f| over
    the points it separates (after ||w|| = 1)."""

    cls: int
    p: Array
    t: float
    w: Array
    c: float
    margin: float

    def to_dict(self) -> dict:
        return {"class": self.cls, "t": self.t, "margin": self.margin, "p": self.p.tolist(),
                "normal": self.w.tolist(), "offset": self.c}


@dataclass(frozen=True, eq=False)
class SLSResult:
    """The answer for a dataset: ``sls`` True (``order`` and ``steps`` form a checked certificate),
    False (proven impossible for the orders tried; for a single order, a proof) or None (undecided:
    the budget ran out or a margin was too thin to check in float64), with ``reason``; ``tried``
    the partial orders explored and ``lp_solves`` the LPs solved."""

    sls: bool | None
    order: tuple[int, ...]
    steps: tuple[SLSStep, ...]
    reason: str
    lp_solves: int
    exhaustive: bool
    classes: tuple[int, ...]
    barycentre: Array
    tried: int = 0

    def to_dict(self) -> dict:
        return {"sls": self.sls, "order": list(self.order), "reason": self.reason, "lp_solves": self.lp_solves,
                "exhaustive": self.exhaustive, "classes": list(self.classes), "orders_tried": self.tried,
                "steps": [s.to_dict() for s in self.steps]}


class _Budget:
    def __init__(self, n: int):
        self.left = n
        self.used = 0

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        self.used += 1
        return True


def separation_lp(neg: Array, pos: Array) -> tuple[float, float, Array, float]:
    """max s with w.x + c <= -s on the rows of ``neg``, >= s on the rows of ``pos``, |w| <= 1 and
    |c| <= M R + 1 (R the largest |coordinate|). Returns (optimum, safe upper bound, w, c)."""
    M = neg.shape[1]
    R = max(float(np.max(np.abs(neg), initial=0.0)), float(np.max(np.abs(pos), initial=0.0)), 1e-300)
    C = M * R + 1.0
    S = M * R + C + 1.0
    A = np.block([[neg, np.ones((len(neg), 1)), np.ones((len(neg), 1))],
                  [pos, np.ones((len(pos), 1)), -np.ones((len(pos), 1))]])
    lo = np.concatenate([np.full(len(neg), -np.inf), np.zeros(len(pos))])
    hi = np.concatenate([np.zeros(len(neg)), np.full(len(pos), np.inf)])
    lp = MatrixLP.from_dense(A, lo, hi, [-1.0] * M + [-C, -S], [1.0] * M + [C, S])
    cost = np.zeros(M + 2)
    cost[-1] = 1.0
    sol = LPSolver(lp).solve(cost, Sense.MAX)
    return float(sol.objective), float(sol.safe_bound), sol.x[:M].copy(), float(sol.x[M])


def _min_t_lp(xj: Array, rest: Array, mu_j: Array, sigma: float, K: float) -> tuple[Array, float] | None:
    """Charnes-Cooper form (centred coordinates, m = 0): w.(-mu_j) = 1 (so t = f(m) = c), minimise c
    subject to f <= -sigma on X_j, f >= sigma on ``rest``, c >= sigma, |w| <= K, c in [0, 1]."""
    M = xj.shape[1]
    A = np.block([[xj, np.ones((len(xj), 1))], [rest, np.ones((len(rest), 1))],
                  [-mu_j[None, :], np.zeros((1, 1))]])
    lo = np.concatenate([np.full(len(xj), -np.inf), np.full(len(rest), sigma), [1.0]])
    hi = np.concatenate([np.full(len(xj), -sigma), np.full(len(rest), np.inf), [1.0]])
    lp = MatrixLP.from_dense(A, lo, hi, [-K] * M + [sigma], [K] * M + [1.0])
    cost = np.zeros(M + 1)
    cost[-1] = 1.0
    try:
        sol = LPSolver(lp).solve(cost, Sense.MIN)
    except PolylensError:
        return None
    return sol.x[:M].copy(), float(sol.x[M])


class _Problem:
    """The dataset in centred, unit-scaled coordinates (m = 0, largest |coordinate| 1)."""

    def __init__(self, x: Array, y: Array, classes: Sequence[int] | None):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y).astype(np.int64)
        if x.ndim != 2 or y.shape != (len(x),) or len(x) == 0:
            raise ParameterError(f"SLS needs x of shape (N, d) and y of shape (N,). Got {x.shape} and {y.shape} instead.")
        present = tuple(int(c) for c in np.unique(y))
        self.classes = present if classes is None else tuple(int(c) for c in classes)
        bad = [c for c in self.classes if c not in present]
        if bad:
            raise ParameterError(f"The classes {bad} have no points in the data (present: {list(present)}).")
        if len(self.classes) < 2:
            raise ParameterError("SLS needs at least two classes.")
        means = np.stack([x[y == c].mean(axis=0) for c in self.classes])
        self.bary = means.mean(axis=0)
        z = x - self.bary
        self.scale = max(float(np.max(np.abs(z))), 1e-300)
        self.z = z / self.scale
        self.y = y
        self.sets = {c: self.z[y == c] for c in self.classes}
        self.means = {c: self.sets[c].mean(axis=0) for c in self.classes}
        self.dim = x.shape[1]

    def to_data(self, v: Array) -> Array:
        return self.bary + self.scale * v


def _step(prob: _Problem, cls: int, earlier_p: list[Array], later: Sequence[int], rho: float,
          budget: _Budget, refine: bool = True, pre: tuple | None = None) -> tuple:
    """One step: ('ok', step, p (centred), margin, lp), ('impossible', ...), ('undecided', ...) or
    ('budget', ...); ``lp`` = (optimum, w, c) of the separation LP. Without ``refine`` the second LP
    (smallest t) is skipped (ranking candidates); ``pre``: the separation LP already solved."""
    xj = prob.sets[cls]
    rest = [prob.sets[c] for c in later] + [np.asarray(earlier_p).reshape(-1, prob.dim)]
    rest = np.concatenate(rest, axis=0)
    pos = np.concatenate([rest, np.zeros((1, prob.dim))], axis=0)
    if pre is None:
        if not budget.take():
            return "budget", None, None, 0.0, None
        try:
            opt, safe, w, c = separation_lp(xj, pos)
        except PolylensError:
            return "undecided", None, None, 0.0, None
        if safe <= IMPOSSIBLE_MARGIN:
            return "impossible", None, None, opt, None
    else:
        opt, w, c = pre
    w_best, c_best = w, c
    f0, f1 = c, float(w @ prob.means[cls] + c)
    D = f0 - f1
    if refine and opt > 0 and D > 0 and budget.take():
        got = _min_t_lp(xj, rest, prob.means[cls], rho * opt / D, 10.0 / D)
        if got is not None:
            w_best, c_best = got
    # p_j on the segment, and the hyperplane through it exactly: c = -w.p.
    f0, f1 = c_best, float(w_best @ prob.means[cls] + c_best)
    if not (f0 > 0 and f1 < 0):
        return "undecided", None, None, opt, None
    t = f0 / (f0 - f1)
    p = t * prob.means[cls]
    c_best = -float(w_best @ p)
    nw = float(np.linalg.norm(w_best))
    neg_vals = xj @ w_best + c_best
    pos_vals = pos @ w_best + c_best
    margin = min(-float(np.max(neg_vals)), float(np.min(pos_vals))) / nw
    if not (margin > CHECK_MARGIN and 0 < t < 1):
        return "undecided", None, None, opt, None
    p_data = prob.to_data(p)
    w_data = w_best / nw  # f_data(x) = w_data.(x - p_data): the same hyperplane in the data's coordinates
    step = SLSStep(cls, p_data, float(t), w_data, -float(w_data @ p_data), margin * prob.scale)
    return "ok", step, p, margin, (opt, w, c)


def _closure_p(prob: _Problem, cls: int, earlier: list[Array], later: Sequence[int], budget: _Budget):
    """p_j at the infimum t_lo of its feasible t (the closure of the step's cone: margins 0), given the
    earlier points (or at t = 0 when the LP's box binds); None when the closure LP fails, "budget"
    when the budget is spent."""
    xj = prob.sets[cls]
    rest = np.concatenate([prob.sets[c] for c in later] + [np.asarray(earlier).reshape(-1, prob.dim)], axis=0)
    if not budget.take():
        return "budget"
    scale_w = 10.0 / max(float(np.linalg.norm(prob.means[cls])), 1e-12) * np.sqrt(prob.dim)
    got = _min_t_lp(xj, rest, prob.means[cls], 0.0, scale_w)
    if got is None:
        return None
    if np.max(np.abs(got[0])) >= 0.999 * scale_w:
        # The box binds, so the true infimum may be smaller than this LP's: take t = 0 (p_j = m), the most
        # favourable point of all for every later step, which keeps the re-check a proof.
        return np.zeros(prob.dim)
    return got[1] * prob.means[cls]


def _recheck_at_closure(prob: _Problem, prefix: tuple[int, ...], cls: int, later: Sequence[int],
                        budget: _Budget) -> str:
    """A step failed with the greedy's p_i. Every valid choice of the earlier p_i lies farther along its
    segment than the chain of infima t_lo, and the best margin of a later step only shrinks as any t_i
    grows (the barycentre is on every positive side), so the step fails for every choice iff it fails
    with the chain of infima: 'impossible' then, 'lost' otherwise (the greedy's margin lost it)."""
    ps: list[Array] = []
    for i, c in enumerate(prefix):
        rest_later = [k for k in prob.classes if k not in prefix[: i + 1]]
        p = _closure_p(prob, c, ps, rest_later, budget)
        if isinstance(p, str):
            return "budget" if p == "budget" else "lost"
        if p is None:  # the closure of a step that was strictly feasible: a numerical failure, prove nothing
            return "lost"
        ps.append(p)
    if not budget.take():
        return "budget"
    pos = np.concatenate([prob.sets[k] for k in later] + [np.asarray(ps).reshape(-1, prob.dim),
                                                          np.zeros((1, prob.dim))], axis=0)
    try:
        _opt, safe, _w, _c = separation_lp(prob.sets[cls], pos)
    except PolylensError:
        return "lost"
    return "impossible" if safe <= IMPOSSIBLE_MARGIN else "lost"


def check_order(x: Array, y: Array, order: Sequence[int], margin_fraction: float = 0.1,
                budget: int = 10_000) -> SLSResult:
    """Decide whether the classes are SLS in ``order`` (a sequence of labels; the classes not listed
    are left out of the problem), greedily with the smallest t_j at each step (see the module
    docstring). A failed step's LP bound proves that no hyperplane exists given the earlier p_i."""
    order = tuple(int(c) for c in order)
    if len(set(order)) != len(order):
        raise ParameterError(f"The 'order' parameter of SLS must list each class once. Got {list(order)} instead.")
    prob = _Problem(x, y, order)
    b = _Budget(budget)
    return _search(prob, b, [order], margin_fraction, exhaustive_if_done=True)


def _search(prob: _Problem, b: _Budget, fixed: list[tuple[int, ...]] | None, rho: float,
            exhaustive_if_done: bool) -> SLSResult:
    classes = prob.classes
    state = {"tried": 0, "budget_hit": False, "undecided": False, "deepest": ((), ""), "failed": []}

    def rec(prefix: tuple[int, ...], ps: list[Array], steps: list[SLSStep]):
        if len(prefix) == len(classes):
            return steps
        remaining = [c for c in classes if c not in prefix]
        if fixed is not None:
            candidates = [fixed[0][len(prefix)]]
        else:
            candidates = remaining
        results = []
        for c in candidates:
            later = [k for k in remaining if k != c]
            status, step, p, margin, lp = _step(prob, c, ps, later, rho, b, refine=len(candidates) == 1)
            state["tried"] += 1
            if status == "budget":
                state["budget_hit"] = True
                return None
            if status == "impossible" and prefix:
                status = _recheck_at_closure(prob, prefix, c, later, b)
                if status == "budget":
                    state["budget_hit"] = True
                    return None
            if status in ("undecided", "lost"):
                state["undecided"] = True
            if status == "ok":
                results.append((margin, c, step, p, lp, later))
            elif len(prefix) >= len(state["deepest"][0]):
                why = ("no hyperplane through its segment separates it from " + ("the earlier p_i, " if prefix else "")
                       + "the later classes and the barycentre (proven by the LP's bound to a margin of 1e-9 of the "
                       "data's scale" + (", for every choice of the earlier p_i)" if prefix else ")")
                       if status == "impossible" else "not with the earlier p_i chosen (the greedy's margin lost it)"
                       if status == "lost" else "its margin is too thin to check in float64")
                failed = state["failed"] if state["deepest"][0] == prefix and len(prefix) == len(state["deepest"][0]) \
                    and state["deepest"][1] else []
                failed = failed + [c]
                state["failed"] = failed
                where = f"after {list(prefix)}" if prefix else "first"
                who = f"class {failed[0]}" if len(failed) == 1 else "classes " + ", ".join(map(str, failed))
                state["deepest"] = (prefix, f"{who} cannot come {where}: {why}")
        results.sort(key=lambda r: -r[0])
        for margin, c, step, p, lp, later in results:
            if len(candidates) > 1:  # ranked on the separation LP alone: now the smallest t
                status, better, q, _m, _lp = _step(prob, c, ps, later, rho, b, refine=True, pre=lp)
                if status == "ok":
                    step, p = better, q
            out = rec(prefix + (c,), ps + [p], steps + [step])
            if out is not None:
                return out
            if state["budget_hit"]:
                return None
        return None

    steps = rec((), [], [])
    if steps is not None:
        return SLSResult(True, tuple(s.cls for s in steps), tuple(steps), "sequentially linearly separable in this "
                         "order (every hyperplane checked in float64)", b.used, True, classes, prob.bary, state["tried"])
    prefix, why = state["deepest"]
    if state["budget_hit"]:
        return SLSResult(None, prefix, (), f"undecided: the budget of LP solves ran out ({b.used} solved); deepest "
                         f"failure: {why or 'none yet'}", b.used, False, classes, prob.bary, state["tried"])
    if state["undecided"]:
        return SLSResult(None, prefix, (), f"undecided: {why}", b.used, False, classes, prob.bary, state["tried"])
    what = "in this order" if fixed is not None else "in any order (greedy search with backtracking, exhaustive)"
    return SLSResult(False, prefix, (), f"not SLS {what}: {why}", b.used, exhaustive_if_done, classes, prob.bary,
                     state["tried"])


def find_order(x: Array, y: Array, classes: Sequence[int] | None = None, budget: int = 200,
               margin_fraction: float = 0.1) -> SLSResult:
    """Search for an order in which the classes (default: every label present) are SLS: greedy (the
    candidate with the widest margin first) with backtracking, within ``budget`` LP solves. The
    answer is a checked certificate, a proof that no order works (the search was exhaustive: every
    branch ended in a proven-impossible step), or undecided with the reason."""
    prob = _Problem(x, y, classes)
    return _search(prob, _Budget(budget), None, margin_fraction, exhaustive_if_done=True)
