"""Certification: is the prediction robust in an L-infinity ball? Verified, falsified, or unknown.

For an image x with label y and radius eps the region is the ball of radius eps around x intersected
with [0, 1]^d. The answer is

- ``verified`` when a rigorous lower bound of ``logit_y - logit_k`` over the region is above
  :data:`~polylens.tolerances.VERIFY_MARGIN` for every k != y. Bounds come cheapest first: interval
  propagation, then backward linear propagation (CROWN), then LPs over the polytope for the classes
  still open, each LP bound made rigorous in floating point by the safe dual bound;
- ``falsified`` when an input inside the region is misclassified by the real network, confirmed by a
  forward pass: the image itself when the network already gets it wrong, a PGD attack's point, or an
  LP optimum's input;
- ``unknown`` otherwise, with its reason (``budget``, ``nodes`` or ``tie``: a margin within the
  numerical tolerance of zero).

What LPs leave open, branch and bound settles (``bab``, :mod:`polylens.lenses.verify.bab`): it splits
pre-activation intervals, re-bounds and re-solves each half, looks for counterexamples at every node,
and keeps its proof tree in the certificate; each unit gets a wall-clock budget that holds
(:mod:`polylens.lenses.verify.budget`).

The function is batched over images and returns one :class:`Certificate` per image.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from enum import Enum, StrEnum
from typing import Any

import numpy as np

from polylens.bounds import BoundMethod, compute_bounds, crown_ibp_bounds, input_box, margin_lower_bound, spec_lower_bound
from polylens.errors import ParameterError, SolverError
from polylens.lenses.verify.attack import is_counterexample, pgd_attack
from polylens.lp import LPSolver, Sense
from polylens.lp.polytope import Polytope, build_polytopes
from polylens.nn.network import Network
from polylens.relax.envelopes import Envelope, EnvelopeMode, Hull, check_envelope
from polylens.tolerances import VERIFY_MARGIN
from polylens.validation import check_bool, check_float, check_inputs, check_int, check_labels

Array = np.ndarray

__all__ = ["CertifyOptions", "Certificate", "DecidedBy", "Status", "VerifiedBy", "certify", "lp_classifier",
           "lp_margin_bounds"]


class Status(str, Enum):
    VERIFIED = "verified"
    FALSIFIED = "falsified"
    UNKNOWN = "unknown"


class DecidedBy(StrEnum):
    """The stage that settled a verdict (its text is the JSON value): the image itself misclassified
    (``clean``), a PGD point (``attack``), interval bounds (``ibp``), backward linear bounds
    (``crown``), optimised slopes (``alpha-crown``), the LP's safe bound (``lp``), an LP optimum's
    input (``lp-point``), branch and bound's proof tree (``bab``) or a point it found (``bab-point``),
    or, in a sweep, a counterexample found at a smaller radius (``inherited``,
    rendered ``"eps <radius>"``)."""

    CLEAN = "clean"
    ATTACK = "attack"
    IBP = "ibp"
    CROWN = "crown"
    ALPHA_CROWN = "alpha-crown"
    LP = "lp"
    LP_POINT = "lp-point"
    BAB = "bab"
    BAB_POINT = "bab-point"
    INHERITED = "inherited"


@dataclass(frozen=True)
class VerifiedBy:
    """The cumulative ladder: verified by interval bounds, by backward linear bounds (or a cheaper
    stage), by the LP (or a cheaper stage), by branch and bound (or a cheaper stage)."""

    ibp: bool = False
    crown: bool = False
    lp: bool = False
    bab: bool = False

    def to_dict(self) -> dict[str, bool]:
        return {"ibp": self.ibp, "crown": self.crown, "lp": self.lp, "bab": self.bab}


@dataclass(frozen=True)
class CertifyOptions:
    """How hard to try. ``envelope``: the LP's relaxation (``Hull(cuts)`` or ``Pair()``); ``use_lp``:
    run LPs where bound propagation fails; ``alpha``: also try CROWN with optimised slopes before LPs;
    ``attack_steps``: PGD steps per run; ``time_limit``: seconds per LP solve (None: no limit);
    ``bab``: branch and bound for what the LPs leave open, with ``budget`` seconds for the units one
    call leaves open (images at one radius, searched together, so no unit runs past it; None:
    unlimited) and at most ``bab_nodes`` nodes.

    ``mode``/``cuts`` are the older spelling of ``envelope`` (``CertifyOptions(mode="pair")``),
    converted by :meth:`~polylens.relax.envelopes.Envelope.from_mode`."""

    envelope: Envelope = Hull()
    use_lp: bool = True
    alpha: bool = False
    attack_steps: int = 30
    time_limit: float | None = None
    bab: bool = True
    budget: float | None = 10.0
    bab_nodes: int = 2000
    mode: InitVar[EnvelopeMode | str | None] = None
    cuts: InitVar[int | None] = None

    def __post_init__(self, mode, cuts):
        where = "certify"
        if mode is not None or cuts is not None:
            if self.envelope != Hull():
                raise ParameterError("The 'envelope' parameter of certify was given with 'mode'/'cuts'; give one "
                                     "spelling. Got both instead.")
            object.__setattr__(self, "envelope", Envelope.from_mode(EnvelopeMode.HULL if mode is None else mode,
                                                                    8 if cuts is None else cuts, where))
        object.__setattr__(self, "envelope", check_envelope(self.envelope, where))
        check_bool(self.use_lp, "use_lp", where)
        check_bool(self.alpha, "alpha", where)
        check_int(self.attack_steps, "attack_steps", where, 0, 10_000)
        if self.time_limit is not None:
            check_float(self.time_limit, "time_limit", where, 0.0, None, lo_open=True)
        check_bool(self.bab, "bab", where)
        if self.budget is not None:
            check_float(self.budget, "budget", where, 0.0, None, lo_open=True)
        check_int(self.bab_nodes, "bab_nodes", where, 1, 10_000_000)

    def settings(self) -> dict:
        """The options as JSON types, as the results store records them (``mode``, ``cuts``, ...)."""
        return {**self.envelope.to_dict(), "use_lp": self.use_lp, "alpha": self.alpha,
                "attack_steps": self.attack_steps, "time_limit": self.time_limit, "bab": self.bab,
                "budget": self.budget, "bab_nodes": self.bab_nodes}


@dataclass(frozen=True, eq=False)
class Certificate:
    """The verdict for one (image, eps).

    ``verified_by``: the cumulative ladder (:class:`VerifiedBy`): the image is verified by that stage
    or a cheaper one. ``margin_lower`` (n_classes,): the best rigorous lower bound found for
    logit_y - logit_k (+inf in column y). ``counterexample`` (d,) on falsified rows. ``decided_by``:
    the :class:`DecidedBy` stage that settled it, or None for unknown.
    """

    index: int
    eps: float
    label: int
    prediction: int
    status: Status
    decided_by: DecidedBy | None
    verified_by: VerifiedBy
    margin_lower: Array
    counterexample: Array | None = field(default=None)
    lp_solves: int = 0
    reason: str | None = None
    """Why an unknown row stays unknown: ``budget``, ``nodes`` or ``tie`` (None when decided)."""
    proof: Any = None
    """The :class:`~polylens.lenses.verify.bab.ProofTree` of a row verified by branch and bound."""
    bab_nodes: int = 0

    def to_dict(self) -> dict:
        d = {"index": self.index, "eps": self.eps, "label": self.label, "prediction": self.prediction,
             "status": self.status.value, "decided_by": None if self.decided_by is None else self.decided_by.value,
             "verified_by": self.verified_by.to_dict(),
             "margin_lower": [None if not np.isfinite(v) else float(v) for v in self.margin_lower],
             "lp_solves": self.lp_solves}
        if self.counterexample is not None:
            d["counterexample"] = [float(v) for v in self.counterexample]
        if self.reason is not None:
            d["reason"] = self.reason
        if self.proof is not None:
            d["proof"] = self.proof.to_dict()
        return d


def _all_positive(margins: Array, labels: Array) -> Array:
    m = margins.copy()
    m[np.arange(len(m)), labels] = np.inf
    return np.all(m > VERIFY_MARGIN, axis=1)


def lp_margin_bounds(poly: Polytope, xl: Array, xu: Array, label: int, classes, *, time_limit: float | None = None,
                     stop_on_counterexample: bool = True) -> tuple[Array, Array | None, int]:
    """Rigorous LP lower bounds of logit_label - logit_k over the polytope, for k in ``classes``.

    The polytope is passed to the solver once and re-solved per class. Returns (bounds (n_classes,) with +inf where not
    computed, a confirmed counterexample read off an LP optimum or None, number of solves). Stops early
    at a confirmed counterexample when ``stop_on_counterexample``.
    """
    network = poly.network
    solver = LPSolver(poly, time_limit=time_limit)
    out = np.full(network.n_classes, np.inf)
    cex = None
    for k in classes:
        try:
            sol = solver.solve(poly.margin_cost(label, int(k)), Sense.MIN)
        except SolverError:
            out[k] = -np.inf
            continue
        out[k] = sol.safe_bound
        if sol.safe_bound <= VERIFY_MARGIN and cex is None:
            cand = np.clip(sol.x[poly.inputs], xl, xu)
            if is_counterexample(network, cand, np.array([label]), xl, xu)[0]:
                cex = cand
                if stop_on_counterexample:
                    break
    return out, cex, solver.n_solves


def certify(network: Network, x: Array, labels: Array, eps: float, *, indices: Array | None = None,
            options: CertifyOptions = CertifyOptions(), seed: int = 0) -> list[Certificate]:
    """Certify each row of x (N, d) with its label at radius ``eps``; see the module docstring."""
    where = "certify"
    eps = check_float(eps, "eps", where, 0.0, 1.0)
    x = check_inputs(x, network.input_dim, where)
    N = len(x)
    labels = check_labels(np.ravel(labels), N, network.n_classes, where, "labels")
    if not isinstance(options, CertifyOptions):
        raise ParameterError(f"The 'options' parameter of certify must be a CertifyOptions. "
                             f"Got {type(options).__name__} instead.")
    indices = np.arange(N) if indices is None else np.asarray(indices)
    if N == 0:
        return []
    xl, xu = input_box(x, eps)
    pred = network.predict(x)
    idx = np.arange(N)

    # Stage 1: interval propagation.
    ibp_b = compute_bounds(network, xl, xu, BoundMethod.IBP)
    m_ibp = margin_lower_bound(network, xl, xu, labels, BoundMethod.IBP, bounds=ibp_b)
    best = m_ibp.copy()
    ok_ibp = _all_positive(best, labels) & (pred == labels)
    # Stage 2: backward linear bounds.
    crown_b = crown_ibp_bounds(network, xl, xu, ibp_bounds=ibp_b)
    m_crown = margin_lower_bound(network, xl, xu, labels, BoundMethod.CROWN, bounds=crown_b)
    best = np.maximum(best, m_crown)
    ok_crown = ok_ibp | (_all_positive(best, labels) & (pred == labels))
    ok_alpha = ok_crown
    if options.alpha:
        todo = ~ok_crown & (pred == labels)
        if todo.any():
            m_a = margin_lower_bound(network, xl[todo], xu[todo], labels[todo], BoundMethod.ALPHA_CROWN)
            best[todo] = np.maximum(best[todo], m_a)
        ok_alpha = ok_crown | (_all_positive(best, labels) & (pred == labels))
    best[idx, labels] = np.inf

    # Stage 3: falsification. The image itself, then PGD where nothing is proved yet.
    cex = np.full(x.shape, np.nan)
    decided = np.array([None] * N, dtype=object)
    wrong = pred != labels
    cex[wrong] = x[wrong]
    decided[wrong] = DecidedBy.CLEAN
    open_ = ~ok_alpha & ~wrong
    if options.attack_steps > 0 and open_.any() and eps > 0:
        att = pgd_attack(network, x[open_], labels[open_], xl[open_], xu[open_], steps=options.attack_steps, seed=seed,
                         row_ids=indices[open_])
        rows = np.flatnonzero(open_)[att.found]
        cex[rows] = att.x[att.found]
        decided[rows] = DecidedBy.ATTACK
    falsified = decided != None  # noqa: E711 (object array)
    decided[ok_ibp] = DecidedBy.IBP
    decided[ok_crown & ~ok_ibp] = DecidedBy.CROWN
    decided[ok_alpha & ~ok_crown] = DecidedBy.ALPHA_CROWN

    # Stage 4: LPs for what is still open.
    ok_lp = ok_alpha.copy()
    solves = np.zeros(N, dtype=int)
    if options.use_lp:
        todo = np.flatnonzero(~ok_alpha & ~falsified)
        polys = build_polytopes(network, xl[todo], xu[todo], [b[todo] for b in crown_b.lower],
                                [b[todo] for b in crown_b.upper], options.envelope)
        for i, poly in zip(todo, polys):
            open_k = [k for k in range(network.n_classes) if k != labels[i] and best[i, k] <= VERIFY_MARGIN]
            b, c, s = lp_margin_bounds(poly, xl[i], xu[i], int(labels[i]), open_k, time_limit=options.time_limit)
            solves[i] = s
            fin = np.isfinite(b)
            best[i, fin] = np.maximum(best[i, fin], b[fin])
            if c is not None:
                cex[i] = c
                decided[i] = DecidedBy.LP_POINT
                falsified[i] = True
            elif np.all(np.delete(best[i], labels[i]) > VERIFY_MARGIN):
                ok_lp[i] = True
                decided[i] = DecidedBy.LP

    # Stage 5: branch and bound for what is still open, one budget per unit.
    ok_bab = ok_lp.copy()
    reasons: list[str | None] = [None] * N
    proofs: list[Any] = [None] * N
    bab_nodes = np.zeros(N, dtype=int)
    if options.bab:
        from polylens.lenses.verify.bab import BabOptions, branch_and_bound_many, robustness_spec
        from polylens.lenses.verify.budget import Budget

        todo = np.flatnonzero(~ok_lp & ~falsified)
        if todo.size:
            def attack(p, starts):
                i = todo[p]
                r = pgd_attack(network, np.clip(starts, xl[i], xu[i]), np.full(len(starts), labels[i]),
                               np.broadcast_to(xl[i], starts.shape), np.broadcast_to(xu[i], starts.shape),
                               steps=max(options.attack_steps, 10), restarts=1, seed=seed,
                               row_ids=np.full(len(starts), indices[i]))
                return r.x[np.flatnonzero(r.found)[0]] if r.found.any() else None

            # Every open unit of this batch is searched at once (their nodes share the vectorised
            # bounding passes), within one budget of ``options.budget`` seconds.
            results = branch_and_bound_many(
                network, xl[todo], xu[todo], [robustness_spec(int(labels[i]), network.n_classes) for i in todo],
                options=BabOptions(envelope=options.envelope, max_nodes=options.bab_nodes, batch=64, root_lp=False,
                                   root_attack=False),
                budget=Budget(options.budget), attack=attack if options.attack_steps > 0 else None)
            for i, res in zip(todo, results):
                solves[i] += res.lp_solves
                bab_nodes[i] = res.nodes
                if res.status == "verified":
                    ok_bab[i] = True
                    decided[i] = DecidedBy.BAB
                    proofs[i] = res.tree
                    others = [k for k in range(network.n_classes) if k != labels[i]]  # the spec's disjuncts
                    best[i, others] = np.maximum(best[i, others], res.tree.group_bounds())
                elif res.status == "falsified" and is_counterexample(network, res.counterexample,
                                                                     np.array([labels[i]]), xl[i], xu[i])[0]:
                    cex[i] = res.counterexample
                    decided[i] = DecidedBy.BAB_POINT
                    falsified[i] = True
                else:
                    reasons[i] = str(res.reason) if res.reason is not None else "tie"
    out = []
    for i in range(N):
        if ok_bab[i]:
            status = Status.VERIFIED
        elif falsified[i]:
            status = Status.FALSIFIED
        else:
            status = Status.UNKNOWN
        out.append(Certificate(
            index=int(indices[i]), eps=float(eps), label=int(labels[i]), prediction=int(pred[i]), status=status,
            decided_by=decided[i] if status is not Status.UNKNOWN else None,
            verified_by=VerifiedBy(bool(ok_ibp[i]), bool(ok_crown[i]), bool(ok_lp[i]), bool(ok_bab[i])),
            margin_lower=best[i].copy(), counterexample=cex[i].copy() if status is Status.FALSIFIED else None,
            lp_solves=int(solves[i]), reason=reasons[i] if status is Status.UNKNOWN else None, proof=proofs[i],
            bab_nodes=int(bab_nodes[i])))
    return out


def lp_classifier(network: Network, x: Array, eps: float, *, envelope: Envelope = Hull(),
                  time_limit: float | None = None) -> tuple[Array, Array]:
    """The "LP classifier": for each row of x, the class whose worst-case margin over the polytope is largest.

    The worst-case margin of class c is W_c = min_{k != c} min over the polytope of logit_c - logit_k
    (a rigorous lower bound per LP, from the safe dual bound). Classes are pruned before any LP: W_c is
    at most the margin at x itself and at least its CROWN bound, so only classes whose upper bound
    reaches the best lower bound are solved, most promising first, each stopping as soon as it falls
    below the best found; and a competitor k whose CROWN bound on logit_c - logit_k already reaches
    the running minimum is not solved (the LP, a tighter relaxation on the same bounds, cannot go
    lower), which left a third of the seed sweep's solves. Returns (predicted class (N,), best
    worst-case margin (N,)).
    """
    where = "lp_classifier"
    eps = check_float(eps, "eps", where, 0.0, 1.0)
    x = check_inputs(x, network.input_dim, where)
    envelope = check_envelope(envelope, where)
    N, C = len(x), network.n_classes
    xl, xu = input_box(x, eps)
    bounds = crown_ibp_bounds(network, xl, xu)
    # Every pair (c, k) at once: spec rows e_c - e_k, (N, C*C, C).
    E = np.eye(C)
    spec = np.broadcast_to((E[:, None, :] - E[None, :, :]).reshape(C * C, C), (N, C * C, C))
    pair_lb = spec_lower_bound(network, xl, xu, spec, bounds=bounds).reshape(N, C, C)  # [i, c, k]
    pair_lb[:, np.arange(C), np.arange(C)] = np.inf
    lb = pair_lb.min(axis=2)  # (N, C) lower bound of W_c
    # Upper bounds of W_c: the worst margin of class c at any point of the region bounds it from above.
    # The image itself, the corners of its box and random points (seeded per image) are such points.
    pts = [x, xl, xu] + [xl + np.random.default_rng([7, i]).random(x.shape) * (xu - xl) for i in range(16)]
    logits = network(np.concatenate(pts)).reshape(len(pts), N, C)  # (P, N, C)
    diff = logits[:, :, :, None] - logits[:, :, None, :]  # [p, i, c, k] = logit_c - logit_k
    diff[:, :, np.arange(C), np.arange(C)] = np.inf
    ub = diff.min(axis=3).min(axis=0)  # (N, C)
    pred = np.argmax(lb, axis=1)
    best = lb[np.arange(N), pred].copy()
    cand_lists = [[c for c in np.argsort(-ub[i]) if ub[i, c] >= best[i]] for i in range(N)]
    need = np.array([not (len(cs) <= 1 and (not cs or cs[0] == pred[i])) for i, cs in enumerate(cand_lists)], bool)
    todo = np.flatnonzero(need)
    polys = build_polytopes(network, xl[todo], xu[todo], [b[todo] for b in bounds.lower],
                            [b[todo] for b in bounds.upper], envelope)
    for i, poly in zip(todo, polys):
        cands = cand_lists[i]
        solver = LPSolver(poly, time_limit=time_limit)
        for c in cands:
            if ub[i, c] < best[i]:
                continue
            w = np.inf
            # The competitor with the weakest CROWN bound is the likeliest minimiser: try it first,
            # so that a class that cannot win is dropped after one solve.
            for k in np.argsort(pair_lb[i, c]):
                if k == c:
                    continue
                if ub[i, c] < best[i]:
                    break
                if pair_lb[i, c, k] >= w:
                    # The LP over this polytope is at least the CROWN bound (a dual solution of a looser
                    # relaxation on the same pre-activation bounds), so k cannot lower w; and the
                    # competitors are in increasing order of that bound: none of the rest can either.
                    break
                try:
                    sol = solver.solve(poly.margin_cost(int(c), int(k)), Sense.MIN)
                except SolverError:
                    w = -np.inf
                    break
                w = min(w, sol.safe_bound)
                # The LP's input is a real point of the region: the network's margins there bound every
                # class's worst case from above, which prunes the classes still to come.
                z = network(np.clip(sol.x[poly.inputs], xl[i], xu[i])[None])[0]
                dz = z[:, None] - z[None, :]
                np.fill_diagonal(dz, np.inf)
                ub[i] = np.minimum(ub[i], dz.min(axis=1))
                if w < best[i]:
                    break
            if w > best[i] or (w == best[i] and c == pred[i]):
                best[i], pred[i] = w, c
    return pred, best
