"""System-level prototypes: the input near a digit's best image that the LP says is most that digit.

For each digit c, start from its best-performing image x0 (the largest real margin
``logit_c - max_{k != c} logit_k`` among the images labelled c) and solve, over the network's LP
relaxation on the ball of radius ``eps`` around x0 intersected with [0, 1]^d,

    maximise   logit_c - t - lam * sum_i u_i
    subject to t   >= logit_k           for every k != c
               u_i >= |x_i - x0_i|      for every pixel i
               (x, a, z, logit) in the polytope,

with the auxiliary columns t and u added by :meth:`Polytope.extend`. ``logit_c - t`` is the
worst-case margin; ``lam`` prices every unit of ink moved, so small ``lam`` lets the prototype move
further from x0.

What is reported, and what is guaranteed:

* ``lp_safe_bound``: a rigorous upper bound on the LP maximum, hence on the real objective
  ``margin(x) - lam * ||x - x0||_1`` at *every* input x of the ball (x0 and the prototype included);
* ``margin_upper``: the same with ``lam = 0``, a rigorous upper bound on the real margin of every
  input in the ball (one more solve of the same LP with another cost);
* ``lp_margin``: the LP's own margin ``logit_c - t`` at its optimum (a relaxed value, not a bound);
* real margins by forward passes: ``start_margin`` at x0, ``lp_point_margin`` at the LP's input,
  ``prototype_margin`` at the reported prototype.

The LP's input need not do well on the real network (the relaxation is loose), so the prototype is
found on the real network, guided by the LP: first the LP point when its real margin beats the
start's by more than ``REAL_MARGIN_GAIN`` (``source = "lp"``), else the best point of a line search
``x0 + alpha * (x_lp - x0)``, alpha in {1/steps, ..., 1}, when it beats the start by that much
(``"line"``), else x0 itself (``"start"``); then a projected ascent of the real objective
``F(x) = margin(x) - lam * ||x - x0||_1`` inside the ball (:class:`polylens.nn.search.L1Priced`,
adaptive steps that accept only improvements), started from that point and from x0. The prototype is
the candidate with the largest F (``"ascent"`` when the ascent found it). Since F(x0) = margin(x0)
and every F is at most the margin, ``prototype_margin >= start_margin`` always; and since every
candidate lies in the ball (a convex set holding x0 and the LP point, and the ascent is projected on
it), ``prototype_margin <= margin_upper``. When HiGHS fails on the HULL polytope, the PAIR envelope is tried (``envelope``); when
that fails too, the prototype is x0 (``lp_status = "failed"``).

Example
-------
>>> from polylens.nn.model import load_model, model_split
>>> m = load_model("seed"); s = model_split(m)
>>> r = prototypes(m, s.x_test, s.y_test, eps=0.1, lam=0.01)
>>> bool((r.prototype_margin >= r.start_margin).all())
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Sequence

import numpy as np

from polylens.errors import ParameterError
from polylens.jsonio import fields_dict
from polylens.lenses.discover.toolkit import relax, with_fallback, with_max_column
from polylens.lp import LPSolver, Role, Sense
from polylens.bounds import input_box
from polylens.nn.margins import margins
from polylens.nn.network import Network
from polylens.nn.search import AdaptiveSteps, L1Priced, MarginObjective, SignedSteps, box_search
from polylens.relax.envelopes import Envelope, Hull, check_envelope
from polylens.tolerances import PIXEL_CHANGE_TOL, REAL_MARGIN_GAIN
from polylens.validation import check_classes, check_float, check_inputs, check_int, check_labels, check_network

Array = np.ndarray

__all__ = ["LPStatus", "PrototypeResult", "PrototypeSweepResult", "Source", "prototype_sweep", "prototypes"]


class Source(StrEnum):
    """Where a prototype came from (its text is the JSON value): the LP's input, a point of the line
    search towards it, or the start image itself."""

    LP = "lp"
    LINE = "line"
    ASCENT = "ascent"
    START = "start"


class LPStatus(StrEnum):
    """Whether a prototype's LP was solved (with the envelope asked for or its fallback) or failed."""

    OPTIMAL = "optimal"
    FAILED = "failed"


@dataclass(frozen=True, eq=False)
class PrototypeResult:
    """One prototype per digit (see the module docstring). D = len(digits), d = input width, C classes.

    ``start_index`` (D,) row of x of the start image; ``start`` (D, d); ``prototype`` (D, d) the chosen
    input; ``delta`` (D, d) = prototype - start; ``changed`` bool (D, d): |delta| > PIXEL_CHANGE_TOL;
    ``n_changed`` (D,); ``l1`` (D,) = ||delta||_1. ``lp_input`` (D, d): the LP optimum's input (NaN rows
    where the LP failed). Real margins (D,): ``start_margin``, ``lp_point_margin``, ``prototype_margin``;
    ``runner_up_before`` / ``runner_up_after`` (D,): the strongest other class at start and prototype;
    ``start_logits`` / ``prototype_logits`` (D, C). LP figures (D,): ``lp_objective`` (solver value),
    ``lp_safe_bound`` (rigorous upper bound of max margin - lam * L1), ``lp_margin`` (logit_c - t at the
    optimum), ``margin_upper`` (rigorous upper bound of the real margin anywhere in the ball).
    ``source`` (D,): :class:`Source` LP, LINE, ASCENT or START; ``alpha`` (D,): the step along x0 -> x_lp
    of the point the ascent started from (1, in (0, 1), or 0); ``objective`` (D,): the real objective
    ``prototype_margin - lam * l1`` of the prototype; ``envelope`` (D,): "hull"/"pair" as built, the fallback "pair", or "" when it
    failed; ``lp_status`` (D,): :class:`LPStatus` OPTIMAL or FAILED.
    """

    digits: tuple[int, ...]
    eps: float
    lam: float
    mode: str
    cuts: int
    input_shape: tuple[int, ...]
    start_index: Array
    start: Array
    prototype: Array
    delta: Array
    changed: Array
    n_changed: Array
    l1: Array
    lp_input: Array
    start_margin: Array
    lp_point_margin: Array
    prototype_margin: Array
    runner_up_before: Array
    runner_up_after: Array
    start_logits: Array
    prototype_logits: Array
    lp_objective: Array
    lp_safe_bound: Array
    lp_margin: Array
    margin_upper: Array
    source: tuple[Source, ...]
    alpha: Array
    envelope: tuple[str, ...]
    lp_status: tuple[LPStatus, ...]
    objective: Array
    seconds: float

    def to_dict(self) -> dict:
        """JSON-ready data: arrays as nested lists, NaN as None."""
        return fields_dict(self)

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


@dataclass(frozen=True, eq=False)
class PrototypeSweepResult:
    """Prototypes over a grid of radii and prices. E = len(eps), M = len(lam), D = len(digits).

    ``start_index`` and ``start_margin`` (D,); ``start`` (D, d) the start images; ``prototype``
    (E, M, D, d) the prototypes; ``real_margin`` (E, M, D) the prototype's real margin; ``n_changed`` int
    (E, M, D); ``l1`` (E, M, D); ``lp_safe_bound`` (E, M, D); ``margin_upper`` (E, D); ``source`` str
    (E, M, D) ("lp", "line", "ascent", "start"); ``input_shape``.
    """

    eps: Array
    lam: Array
    digits: tuple[int, ...]
    start_index: Array
    start_margin: Array
    start: Array
    prototype: Array
    real_margin: Array
    n_changed: Array
    l1: Array
    lp_safe_bound: Array
    margin_upper: Array
    source: Array
    input_shape: tuple[int, ...]
    seconds: float

    def to_dict(self) -> dict:
        return fields_dict(self)

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


# ---------------------------------------------------------------------------------------------


def _start_images(net: Network, x: Array, y: Array, digits: tuple[int, ...], where: str) -> Array:
    """Row of x with the largest real margin among the images of each digit (first on ties)."""
    margin, _ = margins(net(x), y)
    out = []
    for d in digits:
        rows = np.flatnonzero(y == d)
        if rows.size == 0:
            raise ParameterError(f"{where} has no image of digit {d} in x; choose 'digits' among {sorted(set(y.tolist()))}.")
        out.append(rows[np.argmax(margin[rows])])
    return np.array(out, np.int64)


@dataclass(frozen=True)
class _Solved:
    """LP outcomes for D start images and M prices: lp_x (M, D, d) (x0 where failed), objective,
    safe, lp_margin (M, D); margin_upper (D,); envelope (D,) ("" where failed), status (D,)."""

    lp_x: Array
    objective: Array
    safe: Array
    lp_margin: Array
    margin_upper: Array
    envelope: tuple[str, ...]
    status: tuple[LPStatus, ...]


def _solve(net: Network, x0: Array, labels: Array, eps: float, lams: Sequence[float], envelope: Envelope) -> _Solved:
    D, d = x0.shape
    M = len(lams)
    rel = relax(net, x0, eps, envelope)
    lp_x = np.repeat(x0[None], M, axis=0)
    obj = np.full((M, D), np.nan)
    safe = np.full((M, D), np.nan)
    lpm = np.full((M, D), np.nan)
    mup = np.full(D, np.nan)
    env, status = [], []
    for i in range(D):
        c = int(labels[i])

        def attempt(base):
            ext_t = with_max_column(base, c)
            ext_u = ext_t.polytope.with_l1_distance(x0[i])
            poly, t, u = ext_u.polytope, ext_t.cols, ext_u.cols
            logit = poly.handle(Role.LOGIT)
            solver = LPSolver(poly)
            s0 = solver.solve(poly.cost({logit: np.eye(net.n_classes)[c], t: -1.0}), Sense.MAX)
            sols = [solver.solve(poly.cost({logit: np.eye(net.n_classes)[c], t: -1.0, u: -lam}), Sense.MAX)
                    for lam in lams]
            if not (s0.optimal and all(s.optimal for s in sols)):
                return None
            return poly, t, s0, sols

        got, used = with_fallback(rel, i, attempt)
        if got is None:
            env.append("")
            status.append(LPStatus.FAILED)
            continue
        poly, t, s0, sols = got
        mup[i] = s0.safe_bound
        for j, s in enumerate(sols):
            lp_x[j, i] = np.clip(s.x[poly.inputs], rel.xl[i], rel.xu[i])
            obj[j, i] = s.objective
            safe[j, i] = s.safe_bound
            lpm[j, i] = s.x[poly.logits.start + c] - t.take(s.x)[0]
        env.append(used.mode.value)
        status.append(LPStatus.OPTIMAL)
    return _Solved(lp_x, obj, safe, lpm, mup, tuple(env), tuple(status))


def _choose(net: Network, x0: Array, lp_x: Array, labels: Array, steps: int):
    """The guaranteed prototype per row: LP point, best line-search point, or x0 (see the module docstring).

    Returns (prototype (D, d), alpha (D,), source list, margins at (x0, lp point, prototype) (3, D))."""
    D, d = x0.shape
    alphas = np.arange(steps + 1) / steps  # alphas[0] = 0 gives x0 exactly, alphas[-1] = 1 the LP point
    X = x0[:, None, :] + alphas[None, :, None] * (lp_x - x0)[:, None, :]
    X[:, -1] = lp_x
    m, _ = margins(net(X.reshape(-1, d)), np.repeat(labels, steps + 1))
    m = m.reshape(D, steps + 1)
    start, at_lp = m[:, 0], m[:, -1]
    j_best = steps - np.argmax(m[:, :0:-1], axis=1)  # best alpha > 0; the largest one among equal margins
    j = np.where(at_lp > start + REAL_MARGIN_GAIN, steps,
                 np.where(m[np.arange(D), j_best] > start + REAL_MARGIN_GAIN, j_best, 0))
    source = [Source.LP if k == steps else Source.LINE if k > 0 else Source.START for k in j]
    proto = X[np.arange(D), j]
    return proto, alphas[j], source, np.stack([start, at_lp, m[np.arange(D), j]])


#: The ascent on the real network: steps per run; the runs start from the point the LP guided to, from
#: the LP point itself and from x0, each with signed steps (PGD-like, explores) and adaptive steps
#: (accepts only improvements, polishes).
ASCENT_STEPS = 300


def _refine(net: Network, x0: Array, chosen: Array, lp_x: Array, labels: Array, lam: float, eps: float,
            source: list[Source], inner: Array | None = None):
    """The best of x0, the chosen point and the ascents, by the real objective F = margin - lam * ||x - x0||_1
    inside the ball (see the module docstring). ``inner`` (D, d): prototypes of a smaller ball, one more
    start (so that a strip over growing radii never gets worse). Returns (prototype (D, d), source list,
    F (D,))."""
    D, d = x0.shape
    if eps == 0.0:
        return x0.copy(), [Source.START] * D, margins(net(x0), labels)[0]
    xl, xu = input_box(x0, eps)
    starts = [chosen, lp_x, x0] + ([inner] if inner is not None else [])
    S = len(starts)
    objective = L1Priced(MarginObjective(net, np.tile(labels, S)), np.vstack([x0] * S), lam)
    lo, hi = np.vstack([xl] * S), np.vstack([xu] * S)
    runs = [box_search(objective, np.vstack(starts), lo, hi, steps=ASCENT_STEPS, schedule=schedule)
            for schedule in (SignedSteps(first=0.25), AdaptiveSteps(first=min(0.25, eps), largest=min(1.0, 2 * eps),
                                                                      smallest=1e-9 * max(eps, 1e-3)))]
    one = L1Priced(MarginObjective(net, labels), x0, lam)
    cand = np.concatenate([x0[None], chosen[None]] + [r.x.reshape(S, D, d) for r in runs])
    F = np.concatenate([one.value(x0)[None], one.value(chosen)[None]] + [r.value.reshape(S, D) for r in runs])
    best = np.zeros(D, np.int64)
    for k in range(1, len(cand)):                                   # a later candidate must gain
        best = np.where(F[k] > F[best, np.arange(D)] + REAL_MARGIN_GAIN, k, best)
    proto = cand[best, np.arange(D)]
    src = [Source.START if b == 0 else source[i] if b == 1 else Source.ASCENT for i, b in enumerate(best)]
    return proto, src, F[best, np.arange(D)]


def _check_common(network, x, y, digits, envelope, steps, where):
    net, _ = check_network(network, where)
    x = check_inputs(x, net.input_dim, where)
    y = check_labels(y, len(x), net.n_classes, where)
    digits = check_classes(digits, net.n_classes, "digits", where) if digits is not None \
        else tuple(sorted(set(y.tolist())))
    if not digits:
        raise ParameterError(f"{where} needs at least one image.")
    envelope = check_envelope(envelope, where)
    steps = check_int(steps, "steps", where, 1, 10_000)
    if net.n_classes < 2:
        raise ParameterError(f"{where} needs a network with at least two classes.")
    return net, x, y, digits, envelope, steps


def prototypes(network: Any, x: Any, y: Any, *, eps: float = 0.1, lam: float = 0.01, digits: Sequence[int] | None = None,
               envelope: Envelope = Hull(), steps: int = 16) -> PrototypeResult:
    """Max-margin prototype of each digit near its best image (see the module docstring).

    ``network``: a Network or a Model; ``x`` (N, d) in [0, 1], ``y`` (N,) labels; ``digits``: the classes
    (default: every class present in y); ``eps`` the radius, ``lam`` >= 0 the L1 price, ``steps`` the
    line-search resolution; ``envelope`` the LP's relaxation. Guarantee: ``prototype_margin >= start_margin``
    for every digit.
    """
    where = "prototypes"
    t0 = time.perf_counter()
    net, x, y, digits, envelope, steps = _check_common(network, x, y, digits, envelope, steps, where)
    eps = check_float(eps, "eps", where, 0.0, 1.0)
    lam = check_float(lam, "lam", where, 0.0)
    idx = _start_images(net, x, y, digits, where)
    x0, labels = x[idx], np.array(digits, np.int64)
    sol = _solve(net, x0, labels, eps, [lam], envelope)
    chosen, alpha, source, mg = _choose(net, x0, sol.lp_x[0], labels, steps)
    proto, source, F = _refine(net, x0, chosen, sol.lp_x[0], labels, lam, eps, source)
    delta = proto - x0
    changed = np.abs(delta) > PIXEL_CHANGE_TOL
    failed = np.array([s is not LPStatus.OPTIMAL for s in sol.status])
    lp_input = sol.lp_x[0].copy()
    lp_input[failed] = np.nan
    lg0, lg1 = net(x0), net(proto)
    return PrototypeResult(
        digits=digits, eps=eps, lam=lam, mode=envelope.mode.value, cuts=envelope.cuts,
        input_shape=tuple(net.input_shape),
        start_index=idx, start=x0, prototype=proto, delta=delta, changed=changed, n_changed=changed.sum(axis=1),
        l1=np.abs(delta).sum(axis=1), lp_input=lp_input, start_margin=mg[0],
        lp_point_margin=np.where(failed, np.nan, mg[1]), prototype_margin=margins(net(proto), labels)[0],
        runner_up_before=margins(lg0, labels)[1], runner_up_after=margins(lg1, labels)[1], start_logits=lg0,
        prototype_logits=lg1, lp_objective=sol.objective[0], lp_safe_bound=sol.safe[0], lp_margin=sol.lp_margin[0],
        margin_upper=sol.margin_upper, source=tuple(source), alpha=alpha, envelope=sol.envelope,
        lp_status=sol.status, objective=F, seconds=time.perf_counter() - t0)


def prototype_sweep(network: Any, x: Any, y: Any, eps_list: Sequence[float], lam_list: Sequence[float], *,
                    digits: Sequence[int] | None = None, envelope: Envelope = Hull(),
                    steps: int = 16) -> PrototypeSweepResult:
    """Prototypes for every (eps, lam) of a grid: one polytope per (eps, digit), re-solved per lam.

    Same rules and guarantee as :func:`prototypes` at every grid point.
    """
    where = "prototype_sweep"
    t0 = time.perf_counter()
    net, x, y, digits, envelope, steps = _check_common(network, x, y, digits, envelope, steps, where)
    eps_arr = np.array([check_float(e, "eps_list", where, 0.0, 1.0) for e in np.atleast_1d(eps_list)])
    lam_arr = np.array([check_float(v, "lam_list", where, 0.0) for v in np.atleast_1d(lam_list)])
    if eps_arr.size == 0 or lam_arr.size == 0:
        raise ParameterError(f"The 'eps_list' and 'lam_list' parameters of {where} must be non-empty lists. "
                             f"Got {len(eps_arr)} and {len(lam_arr)} values instead.")
    idx = _start_images(net, x, y, digits, where)
    x0, labels = x[idx], np.array(digits, np.int64)
    E, M, D = len(eps_arr), len(lam_arr), len(digits)
    real = np.zeros((E, M, D))
    n_changed = np.zeros((E, M, D), np.int64)
    l1 = np.zeros((E, M, D))
    safe = np.zeros((E, M, D))
    mup = np.zeros((E, D))
    source = np.empty((E, M, D), dtype="<U6")
    protos = np.zeros((E, M, D, x0.shape[1]))
    start_margin = margins(net(x0), labels)[0]
    inner: dict[int, Array] = {}  # per price, the prototypes of the largest radius done so far
    for a in np.argsort(eps_arr, kind="stable"):  # growing radii: each ball holds the smaller ones
        e = eps_arr[a]
        sol = _solve(net, x0, labels, float(e), lam_arr.tolist(), envelope)
        mup[a] = sol.margin_upper
        for b in range(M):
            chosen, _, src, _ = _choose(net, x0, sol.lp_x[b], labels, steps)
            proto, src, _ = _refine(net, x0, chosen, sol.lp_x[b], labels, float(lam_arr[b]), float(e), src,
                                    inner.get(b))
            inner[b] = proto
            protos[a, b] = proto
            delta = proto - x0
            real[a, b] = margins(net(proto), labels)[0]
            n_changed[a, b] = (np.abs(delta) > PIXEL_CHANGE_TOL).sum(axis=1)
            l1[a, b] = np.abs(delta).sum(axis=1)
            safe[a, b] = sol.safe[b]
            source[a, b] = src
    return PrototypeSweepResult(eps_arr, lam_arr, digits, idx, start_margin, x0, protos, real, n_changed, l1, safe,
                                mup, source, tuple(net.input_shape), time.perf_counter() - t0)
