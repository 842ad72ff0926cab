"""Complete verification by branch and bound over pre-activation splits, with a proof tree that can be re-checked.

The question. A *specification* is a list of unsafe sets, each a conjunction of linear conditions
on the logits y: disjunct g holds at x when every row r of g has ``H[r] @ y(x) + h0[r] <= 0``
(``< 0`` when ``strict``). The network is *safe* on the input box when no disjunct holds anywhere in
the box; it is *unsafe* when some x in the box satisfies a disjunct (a counterexample). Robustness
of label y is the specification with one disjunct per class k != y and the single row
``y_label - y_k`` (strict: a tie is not a misclassification); a VNN-LIB property is read into the
same shape (:mod:`polylens.lenses.verify.vnnlib`).

Proving a disjunct empty on a region: some row's rigorous lower bound over the region is above
:data:`~polylens.tolerances.VERIFY_MARGIN`. Bounds come from backward linear propagation (CROWN) on
the region's pre-activation intervals, or from the LP over the polytope built on them (safe dual
bound), both sound in floating point (:mod:`polylens.bounds`, :mod:`polylens.lp.highs`).

Branching. A region is the input box intersected with split conditions ``a_l[j] <= t`` or
``a_l[j] >= t`` on pre-activations. Splitting a neuron's interval [L, U] at t gives two children
whose union is the parent: {a <= t} and {a >= t}. For relu (and every piecewise-linear activation,
whose pieces meet at 0) t = 0, and a split neuron becomes exact (the two pieces of the ReLU
split); for smooth activations (GELU, sigmoid, tanh) t = 0 when it splits the interval well, else
its midpoint, and each half gets a tighter envelope. A child's intervals are the parent's with the
split neuron narrowed, then every later layer is bounded again by CROWN over the narrowed ones and
intersected with the parent's (sound: the child region lies in the parent's, and every relaxation
used is valid on the child region, where the split neuron's interval holds). An empty interval
(L > U, both rigorous) proves the region empty.

The neuron to split: a BaBSR-like score from one approximate backward pass of the weakest open row:
the coefficient of each neuron's output times the gap of its relaxation (the distance between
its lower or upper line, whichever the coefficient's sign selects, and the activation), largest
first. Nodes are taken lowest bound first, in batches (the bounds of a batch are one vectorised
pass).

Counterexamples are sought at every node: the input corner that minimises the weakest row's
linear bound, every LP optimum's input, and an attack (supplied by the caller) from the best
points; a point counts only when the real network, evaluated in float64, satisfies a disjunct.

Completeness for relu: when no unstable neuron is left the network is affine on the region and
the LP over the split polytope is exact, so its value decides the node: a safe bound above the
margin proves it; an optimum point satisfying the disjunct falsifies; anything else is a
numerical tie (unknown, reason ``tie``).

The proof. ``verified`` comes with a :class:`ProofTree`: every node's split and, per node, the
disjuncts it proved and how (``crown``, ``lp`` or ``empty``). :func:`recheck` replays the tree from
the root box alone, re-deriving every bound, and accepts it only when every leaf has every
disjunct proved on its path (or is empty). A tree whose node claims a bound it does not have is
rejected.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from polylens.bounds import crown_ibp_bounds
from polylens.bounds.common import Bounds, interval_affine
from polylens.bounds.crown import (alpha_crown, backward_bounds, optimised_bounds, relax_layer, relax_layer_from,
                                   with_slopes)
from polylens.errors import InfeasibleError, ParameterError, SolverError
from polylens.lenses.verify.budget import LP_ITERATION_LIMIT, Budget, UnknownReason
from polylens.lp.highs import LPSolver, Sense
from polylens.lp.polytope import Role, build_polytope, build_polytopes
from polylens.nn.activations import Family
from polylens.nn.network import Network
from polylens.relax.envelopes import Envelope, Hull, check_envelope
from polylens.tolerances import VERIFY_MARGIN
from polylens.validation import check_float, check_int

Array = np.ndarray

__all__ = ["BabOptions", "BabResult", "ProofNode", "ProofTree", "Refinement", "Spec", "branch_and_bound",
           "branch_and_bound_many", "recheck", "refine_root", "refinement_spec", "robustness_spec"]

#: A smooth neuron whose interval is narrower than this is not split again.
MIN_SPLIT_WIDTH = 1e-4


# ---------------------------------------------------------------------------------------------
# Specifications


@dataclass(frozen=True, eq=False)
class Spec:
    """Unsafe sets as rows over the logits: ``H`` (R, n_classes), ``h0`` (R,), ``group`` (R,) the
    disjunct of each row (0 .. G-1). Disjunct g holds at y when ``H[r] @ y + h0[r] <= 0`` for every
    row r of g (``< 0`` when ``strict``)."""

    H: Array
    h0: Array
    group: Array
    strict: bool = False

    def __post_init__(self):
        H = np.atleast_2d(np.asarray(self.H, dtype=np.float64))
        h0 = np.asarray(self.h0, dtype=np.float64).ravel()
        group = np.asarray(self.group, dtype=np.int64).ravel()
        if H.shape[0] != h0.shape[0] or group.shape != h0.shape or H.shape[0] == 0:
            raise ParameterError(f"A Spec needs one offset and one group per row; got H {H.shape}, h0 {h0.shape}, "
                                 f"group {group.shape}.")
        if not (np.all(np.isfinite(H)) and np.all(np.isfinite(h0))):
            raise ParameterError("A Spec's rows must be finite.")
        if set(group.tolist()) != set(range(int(group.max()) + 1)):
            raise ParameterError("A Spec's groups must be numbered 0 .. G-1.")
        object.__setattr__(self, "H", H)
        object.__setattr__(self, "h0", h0)
        object.__setattr__(self, "group", group)

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1

    def values(self, logits: Array) -> Array:
        """(N, R): ``H @ y + h0`` for logits (N, n_classes)."""
        return np.atleast_2d(logits) @ self.H.T + self.h0

    def holds(self, logits: Array) -> Array:
        """(N, G) boolean: disjunct g holds at each row of logits."""
        v = self.values(logits)
        bad = v < 0 if self.strict else v <= 0
        out = np.ones((v.shape[0], self.n_groups), bool)
        for g in range(self.n_groups):
            out[:, g] = np.all(bad[:, self.group == g], axis=1)
        return out

    def proved(self, row_lb: Array) -> Array:
        """(N, G) boolean: disjunct g is proved empty by the row lower bounds (N, R)."""
        out = np.zeros((row_lb.shape[0], self.n_groups), bool)
        for g in range(self.n_groups):
            out[:, g] = np.max(row_lb[:, self.group == g], axis=1) > VERIFY_MARGIN
        return out

    def group_lb(self, row_lb: Array) -> Array:
        """(N, G): the best row bound of each disjunct."""
        return np.stack([np.max(row_lb[:, self.group == g], axis=1) for g in range(self.n_groups)], axis=1)

    def to_dict(self) -> dict:
        return {"H": self.H.tolist(), "h0": self.h0.tolist(), "group": self.group.tolist(), "strict": self.strict}

    @classmethod
    def from_dict(cls, d: dict) -> "Spec":
        return cls(np.asarray(d["H"]), np.asarray(d["h0"]), np.asarray(d["group"]), bool(d["strict"]))


def robustness_spec(label: int, n_classes: int, classes: Sequence[int] | None = None) -> Spec:
    """Misclassification of ``label``: one disjunct per other class k (``classes``: only those), row
    ``y_label - y_k``, strict (a tie is not a counterexample)."""
    ks = [k for k in (range(n_classes) if classes is None else classes) if k != label]
    if not ks:
        raise ParameterError("robustness_spec needs at least one class other than the label.")
    H = np.zeros((len(ks), n_classes))
    H[np.arange(len(ks)), label] = 1.0
    H[np.arange(len(ks)), ks] = -1.0
    return Spec(H, np.zeros(len(ks)), np.arange(len(ks)), strict=True)


# ---------------------------------------------------------------------------------------------
# Options, tree, result


#: Largest share of a search's time its periodic attacks may take (they are skipped while the
#: attacks so far took more): on a property that holds they find nothing, and on mnistfc's unsat
#: instances they took about a sixth of the time.
_ATTACK_SHARE = 0.1


@dataclass(frozen=True)
class BabOptions:
    """How the search runs. ``lp``: bound nodes by the LP over the split polytope as well as by
    CROWN (``"auto"``: when the network has at most ``lp_max_neurons`` hidden neurons; ``"always"``,
    ``"never"``; fully split relu nodes always get their exact LP). ``rebound``: bound every later
    layer again after a split (``"auto"``: for at most ``rebound_max_neurons`` hidden neurons).
    ``batch``: nodes expanded per step; ``max_nodes``: nodes bounded at most; ``envelope``: the LP's
    relaxation; ``attack_every``: run the caller's attack every this many batches (0: never);
    ``root_lp``, ``root_attack``: also solve the root's LP and attack from the box's centre (a caller
    whose own LP and attack already failed on the box turns them off). ``refine_nodes``: on
    piecewise-linear networks whose root leaves a disjunct open, tighten the root intervals of every
    hidden layer after the first by a search of their own of at most this many nodes per unstable
    neuron and side (:func:`refine_root`; 0: never), taking at most ``refine_share`` of the budget.
    ``refine_stall``: end a refined layer's searches before its share of the time is spent once
    they stop gaining: when, over the last quarter of the time the layer has run (at least a few
    seconds), the mean share of their gap to a sign proof that they closed rose by less than this
    (0: never; the time saved goes to the layers after it and to the main search)."""

    lp: str = "auto"
    rebound: str = "auto"
    batch: int = 16
    max_nodes: int = 20_000
    envelope: Envelope = Hull()
    lp_max_neurons: int = 64
    rebound_max_neurons: int = 600
    attack_every: int = 4
    root_lp: bool = True
    root_attack: bool = True
    beta: str = "auto"
    beta_steps: int = 20
    alpha: bool = True
    root_alpha_steps: int = 0
    fsb: int = 3
    refine_nodes: int = 0
    refine_share: float = 0.3
    refine_stall: float = 0.0

    def __post_init__(self):
        for name in ("lp", "rebound", "beta"):
            if getattr(self, name) not in ("auto", "always", "never"):
                raise ParameterError(f"The '{name}' parameter of BabOptions must be one of auto, always, never. "
                                     f"Got {getattr(self, name)!r} instead.")
        check_int(self.batch, "batch", "BabOptions", 1, 10_000)
        check_int(self.max_nodes, "max_nodes", "BabOptions", 1, 10_000_000)
        check_int(self.attack_every, "attack_every", "BabOptions", 0, 10_000)
        check_int(self.beta_steps, "beta_steps", "BabOptions", 1, 10_000)
        check_int(self.root_alpha_steps, "root_alpha_steps", "BabOptions", 0, 10_000)
        check_int(self.fsb, "fsb", "BabOptions", 0, 100)
        check_int(self.refine_nodes, "refine_nodes", "BabOptions", 0, 1_000_000)
        check_float(self.refine_share, "refine_share", "BabOptions", 0.0, 1.0, lo_open=True)
        check_float(self.refine_stall, "refine_stall", "BabOptions", 0.0, 1.0)
        object.__setattr__(self, "envelope", check_envelope(self.envelope, "BabOptions"))

    def uses_lp(self, network: Network) -> bool:
        return self.lp == "always" or (self.lp == "auto" and sum(network.hidden_widths) <= self.lp_max_neurons)

    def uses_beta(self, network: Network) -> bool:
        return self.beta == "always" or (self.beta == "auto" and not self.uses_lp(network))

    def rebounds(self, network: Network) -> bool:
        return self.rebound == "always" or (self.rebound == "auto"
                                            and sum(network.hidden_widths) <= self.rebound_max_neurons)


@dataclass(frozen=True)
class Split:
    """Split hidden layer ``layer`` (1-based) neuron ``neuron`` at ``point``: children a <= t, a >= t."""

    layer: int
    neuron: int
    point: float

    def to_dict(self) -> dict:
        return {"layer": self.layer, "neuron": self.neuron, "point": self.point}


@dataclass(frozen=True, eq=False)
class Tuned:
    """The optimised multipliers with which a node bounded some spec ``rows`` (alpha-beta-CROWN):
    ``slopes``: (hidden layer 0-based, side 0 lower / 1 upper, neuron indices (m,), values (R', m))
    where the slope differs from CROWN's (R' = 1: shared by every row, else one per row);
    ``d``: (layer, neuron, one value per row) split multipliers (see
    :func:`polylens.bounds.crown.backward_bounds`). Any values give a sound bound, so
    :func:`recheck` only re-derives the bound they give."""

    rows: tuple[int, ...]
    slopes: tuple = ()
    d: tuple = ()

    def to_dict(self) -> dict:
        return {"rows": list(self.rows),
                "slopes": [[l, side, np.asarray(idx).tolist(), np.asarray(v).tolist()] for l, side, idx, v in self.slopes],
                "d": [[l, j, list(v)] for l, j, v in self.d]}

    @classmethod
    def from_dict(cls, d: dict) -> "Tuned":
        return cls(tuple(int(r) for r in d["rows"]),
                   tuple((int(l), int(side), np.asarray(idx, dtype=np.intp), np.asarray(v, dtype=np.float64))
                         for l, side, idx, v in d.get("slopes", ())),
                   tuple((int(l), int(j), tuple(float(x) for x in v)) for l, j, v in d.get("d", ())))

    def bound(self, network: Network, relax: list, xl: Array, xu: Array, spec: "Spec") -> Array:
        """(R,) rigorous lower bounds of the rows over one region ``xl``, ``xu`` (1, d), given the
        region's own CROWN relaxations ``relax`` (one box each)."""
        R = len(self.rows)
        tuned = list(relax)
        for l, side, idx, v in self.slopes:
            if not (0 <= l < len(relax)) or side not in (0, 1):
                raise ParameterError("A tuned bound names a layer the network does not have.")
            r = tuned[l]
            name = "ls" if side == 0 else "us"
            arr = np.array(np.broadcast_to(getattr(relax[l], name), (1, v.shape[0], r.L.shape[1])))
            arr[0][:, idx] = v
            tuned[l] = with_slopes(tuned[l], arr if side == 0 else None, arr if side == 1 else None)
        extra = [None] * len(relax)
        for l, j, v in self.d:
            if extra[l] is None:
                extra[l] = np.zeros((1, R, relax[l].L.shape[1]))
            extra[l][0, :, j] = v
        C = np.ascontiguousarray(spec.H[list(self.rows)][None])
        return _round_add(backward_bounds(network, network.n_hidden_layers, tuned, xl, xu, C, extra)[0],
                          spec.h0[list(self.rows)])


@dataclass(frozen=True, eq=False)
class ProofNode:
    """One node of the tree: the disjuncts ``proved`` here, by ``method`` (``crown``, ``lp``, or
    ``empty``: the region has no point, or ``lp+crown``: the better of the LP's and CROWN's bound per
    row, the LP solved for the disjuncts ``lp_groups`` in that order; ``beta``, ``lp+beta``: also the
    bound of the optimised multipliers ``tuned``), with their claimed
    ``bounds``; and, for an inner node, its ``split`` and its two children ``low`` (a <= t) and
    ``high`` (a >= t)."""

    proved: tuple[int, ...] = ()
    method: str | None = None
    bounds: tuple[float, ...] = ()
    split: Split | None = None
    low: "ProofNode | None" = None
    high: "ProofNode | None" = None
    lp_groups: tuple[int, ...] = ()
    tuned: Tuned | None = None

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"proved": list(self.proved), "method": self.method, "bounds": list(self.bounds),
                             "lp_groups": list(self.lp_groups)}
        if self.tuned is not None:
            d["tuned"] = self.tuned.to_dict()
        if self.split is not None:
            d["split"] = self.split.to_dict()
            d["low"] = self.low.to_dict() if self.low is not None else None
            d["high"] = self.high.to_dict() if self.high is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ProofNode":
        s = d.get("split")
        return cls(tuple(int(g) for g in d.get("proved", ())), d.get("method"), tuple(float(b) for b in d.get("bounds", ())),
                   None if s is None else Split(int(s["layer"]), int(s["neuron"]), float(s["point"])),
                   None if d.get("low") is None else cls.from_dict(d["low"]),
                   None if d.get("high") is None else cls.from_dict(d["high"]),
                   tuple(int(g) for g in d.get("lp_groups", ())),
                   None if d.get("tuned") is None else Tuned.from_dict(d["tuned"]))


@dataclass(frozen=True, eq=False)
class Refinement:
    """One end of a root interval tightened by a search of its own: on the box, hidden layer
    ``layer``'s (1-based, at least 2) pre-activation ``neuron`` is > ``bound`` (``side`` 0) or <
    ``bound`` (side 1), as ``tree`` proves on ``network.truncated(layer)`` for the spec
    :func:`refinement_spec` names, from the root intervals the refinements before it left."""

    layer: int
    neuron: int
    side: int
    bound: float
    tree: "ProofTree"

    def to_dict(self) -> dict:
        return {"layer": self.layer, "neuron": self.neuron, "side": self.side, "bound": self.bound,
                "tree": self.tree.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Refinement":
        return cls(int(d["layer"]), int(d["neuron"]), int(d["side"]), float(d["bound"]), ProofTree.from_dict(d["tree"]))


def refinement_spec(width: int, neuron: int, side: int, bound: float) -> Spec:
    """The spec whose proof shows ``a[neuron] > bound`` (side 0) or ``a[neuron] < bound`` (side 1)
    for outputs ``a`` of width ``width``: its one row ``±a[neuron] ∓ bound`` is the unsafe set."""
    e = np.zeros(width)
    e[neuron] = 1.0 if side == 0 else -1.0
    return Spec(e[None], [-bound if side == 0 else bound], [0])


@dataclass(frozen=True, eq=False)
class ProofTree:
    """A branch-and-bound proof: the specification, how nodes were bounded (``rebound``, the LP
    ``envelope``) and the root :class:`ProofNode`. The root intervals are the box's (alpha-CROWN's
    with ``root_alpha_steps``), then, for hidden layers 2 .. ``refined_layers``, tightened by the
    ``refinements`` of each layer and alpha-CROWN again on the layers after it
    (:func:`refine_root`). :func:`recheck` verifies it all."""

    spec: Spec
    root: ProofNode
    rebound: bool
    envelope: Envelope = Hull()
    root_alpha_steps: int = 0
    refined_layers: int = 0
    refinements: tuple[Refinement, ...] = ()

    @property
    def n_nodes(self) -> int:
        def count(n):
            return 0 if n is None else 1 + count(n.low) + count(n.high)
        return count(self.root)

    @property
    def n_leaves(self) -> int:
        def count(n):
            return 0 if n is None else (1 if n.split is None else count(n.low) + count(n.high))
        return count(self.root)

    @property
    def depth(self) -> int:
        def d(n):
            return 0 if n is None or n.split is None else 1 + max(d(n.low), d(n.high))
        return d(self.root)

    def group_bounds(self) -> Array:
        """(G,): per disjunct, the smallest bound with which a node proved it (+inf when only empty
        regions did): a rigorous lower bound of that disjunct's best row over the whole box, since
        every point of the box lies in a leaf whose path has a node proving it with that bound."""
        out = np.full(self.spec.n_groups, np.inf)

        def walk(n):
            if n is None:
                return
            if n.method != "empty":
                for g, b in zip(n.proved, n.bounds):
                    out[g] = min(out[g], b)
            walk(n.low)
            walk(n.high)
        walk(self.root)
        return out

    def to_dict(self) -> dict:
        d = {"spec": self.spec.to_dict(), "rebound": self.rebound, "envelope": self.envelope.to_dict(),
             "root_alpha_steps": self.root_alpha_steps,
             "root": self.root.to_dict(), "nodes": self.n_nodes, "leaves": self.n_leaves, "depth": self.depth}
        if self.refined_layers:
            d["refined_layers"] = self.refined_layers
            d["refinements"] = [r.to_dict() for r in self.refinements]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ProofTree":
        env = d.get("envelope") or {}
        envelope = Envelope.from_mode(env.get("mode", "hull"), int(env.get("cuts", 8) or 8), "ProofTree")
        return cls(Spec.from_dict(d["spec"]), ProofNode.from_dict(d["root"]), bool(d["rebound"]), envelope,
                   int(d.get("root_alpha_steps", 0)), int(d.get("refined_layers", 0)),
                   tuple(Refinement.from_dict(r) for r in d.get("refinements", ())))


@dataclass(frozen=True, eq=False)
class BabResult:
    """``status``: ``verified`` (``tree`` set), ``falsified`` (``counterexample`` (d,) set, with the
    ``group`` it satisfies) or ``unknown`` (``reason``: an :class:`UnknownReason`). ``lower``: the
    best global lower bound of the weakest open disjunct when the search stopped (+inf when
    verified). ``nodes``: nodes bounded; ``lp_solves``; ``seconds``. ``bound_tree``: for a search with
    ``keep_bounds`` that reached its node limit or its budget, a tree proving that its one
    disjunct's row is above ``lower`` on the whole box (the spec's offset lowered by ``lower``)."""

    status: str
    tree: ProofTree | None = None
    counterexample: Array | None = None
    group: int | None = None
    reason: UnknownReason | None = None
    lower: float = -math.inf
    nodes: int = 0
    lp_solves: int = 0
    seconds: float = 0.0
    bound_tree: ProofTree | None = None


# ---------------------------------------------------------------------------------------------
# Bounding a batch of regions


@dataclass
class _Batch:
    """Per-layer pre-activation intervals of N regions: ``L[l]``, ``U[l]`` (N, n_l)."""

    L: list
    U: list


def _splittable_cols(act, L: Array, U: Array) -> Array:
    """(N, n) neurons of one layer whose interval matters to the relaxation: a piecewise-linear
    activation's unstable neurons (its lines are exact on the others whatever their interval), every
    smooth neuron not already narrower than :data:`MIN_SPLIT_WIDTH`."""
    if act.spec.family is Family.PIECEWISE_LINEAR:
        return (L < 0) & (U > 0)
    return (U - L) > MIN_SPLIT_WIDTH * (1.0 + np.maximum(np.abs(L), np.abs(U)))


def _rebound(network: Network, xl: Array, xu: Array, b: _Batch, start, rebound: bool, base=None):
    """Relaxations of every hidden layer for the N regions of ``b``; with ``rebound`` the layers from
    ``start`` (0-based; one for all regions or (N,) one each: the layer after a region's own split)
    on are bounded again over the earlier ones and intersected with the given intervals: interval
    propagation for every neuron, and CROWN for the neurons whose interval matters to the relaxation
    (:func:`_splittable_cols`; a stable relu is exact whatever its interval, so its rows would
    cost the pass's time for nothing). ``base``: per layer, relaxations of the same regions on
    reference intervals (the roots'), whose lines are reused wherever an interval is unchanged.
    Returns (relaxations, empty (N,) regions proved empty, the updated batch)."""
    N = b.L[0].shape[0]
    empty = np.zeros(N, bool)
    H = network.n_hidden_layers
    starts = np.broadcast_to(np.asarray(start), (N,))
    relax = []
    L_out, U_out = list(b.L), list(b.U)
    for k in range(H):
        L, U = L_out[k], U_out[k]
        sel = np.flatnonzero(starts <= k) if rebound and k >= 1 else np.zeros(0, dtype=int)
        if sel.size:
            L, U = L.copy(), U.copy()
            prev = relax[k - 1].rows(sel)
            Li, Ui = interval_affine(network.layers[k].W, network.layers[k].b, prev.zlo, prev.zhi)
            L[sel], U[sel] = np.maximum(L[sel], Li), np.minimum(U[sel], Ui)
            cols = _splittable_cols(network.activations[k], L[sel], U[sel])
            cnt = cols.sum(axis=1)
            K = int(cnt.max())
            if K:
                # Rows +e_j and -e_j for each region's own neurons (padded by zero rows, ignored).
                n = network.layers[k].out_features
                idx = np.argsort(~cols, axis=1, kind="stable")[:, :K]
                valid = np.arange(K)[None, :] < cnt[:, None]
                C = np.zeros((sel.size, 2 * K, n))
                r = np.arange(sel.size)[:, None]
                C[r, np.arange(K)[None, :], idx] = valid
                C[r, K + np.arange(K)[None, :], idx] = -valid.astype(np.float64)
                lb = backward_bounds(network, k, [q.rows(sel) for q in relax], xl[sel], xu[sel], C)
                ii, rr = np.nonzero(valid)
                jj = idx[ii, rr]
                gi = sel[ii]
                L[gi, jj] = np.maximum(L[gi, jj], lb[ii, rr])
                U[gi, jj] = np.minimum(U[gi, jj], -lb[ii, K + rr])
        bad = L > U
        if bad.any():
            empty |= bad.any(axis=1)
            U = np.where(bad, L, U)
        L_out[k], U_out[k] = L, U
        relax.append(relax_layer(network.activations[k], L, U, k) if base is None
                     else relax_layer_from(base[k], L, U, k))
    return relax, empty, _Batch(L_out, U_out)


def root_bounds(network: Network, xl: Array, xu: Array, alpha_steps: int = 0):
    """The root's intermediate bounds for boxes (P, d): CROWN's intersected with interval
    propagation's, and with alpha-CROWN's (``alpha_steps`` Adam steps per layer, box by box, so that
    :func:`recheck` re-derives the same bounds for one box) when ``alpha_steps`` > 0."""
    b = crown_ibp_bounds(network, xl, xu)
    if alpha_steps <= 0:
        return b
    _, first, inverse = np.unique(np.concatenate([xl, xu], axis=1), axis=0, return_index=True,
                                      return_inverse=True)
    parts = [alpha_crown(network, xl[p:p + 1], xu[p:p + 1], steps=alpha_steps) for p in first]
    inverse = inverse.ravel()

    def take(arrays):
        return np.concatenate(arrays)[inverse]
    return b.intersect(Bounds(tuple(take([q.lower[l] for q in parts]) for l in range(len(b.lower))),
                              tuple(take([q.upper[l] for q in parts]) for l in range(len(b.upper))),
                              take([q.logit_lower for q in parts]), take([q.logit_upper for q in parts]), b.method))


#: The search each refinement runs (:func:`refine_root`): alpha-beta-CROWN bounds, filtered smart
#: branching, no LP but on fully split regions, no attack (a counterexample is only a corner or an
#: LP optimum that reaches the neuron's other side).
_REFINE_OPTIONS = BabOptions(lp="never", rebound="never", batch=256, attack_every=0, root_lp=False,
                             root_attack=False)


def _tighten(network: Network, xl: Array, xu: Array, b: Bounds, layer: int, items: Sequence[Refinement],
             alpha_steps: int) -> Bounds:
    """``b`` (one box) with hidden layer ``layer``'s (1-based) intervals narrowed by ``items``, then
    every later layer bounded again by alpha-CROWN over them (``alpha_steps``; plain CROWN at 0)."""
    lower = [np.array(a) for a in b.lower]
    upper = [np.array(a) for a in b.upper]
    for r in items:
        if r.side == 0:
            lower[layer - 1][0, r.neuron] = max(lower[layer - 1][0, r.neuron], r.bound)
        else:
            upper[layer - 1][0, r.neuron] = min(upper[layer - 1][0, r.neuron], r.bound)
    out = Bounds(tuple(lower), tuple(upper), b.logit_lower, b.logit_upper, b.method)
    if not items or layer == network.n_hidden_layers:
        return out
    return alpha_crown(network, xl[None], xu[None], intermediate=out, steps=alpha_steps)


def _truncated_root(b: Bounds, layer: int, P: int = 1) -> Bounds:
    """Root intervals of ``network.truncated(layer)`` from ``b`` (one box), repeated for P boxes."""
    def rep(a):
        return np.repeat(a, P, axis=0)
    return Bounds(tuple(rep(a) for a in b.lower[:layer - 1]), tuple(rep(a) for a in b.upper[:layer - 1]),
                  rep(b.lower[layer - 1]), rep(b.upper[layer - 1]), b.method)


def refine_root(network: Network, xl: Array, xu: Array, base: Bounds, *, nodes: int, alpha_steps: int = 0,
                budget: Budget | None = None, until: Callable[[Bounds], bool] | None = None,
                stall: float = 0.0) -> tuple[Bounds, int, tuple[Refinement, ...]]:
    """Tighten the root intervals ``base`` of the box [xl, xu] (each (d,)) layer by layer, from
    hidden layer 2 on: for every unstable neuron of the layer (L < 0 < U), one search per side on
    ``network.truncated(layer)`` over the intervals before it tries to prove the neuron stable (a
    > 0, or a < 0) within ``nodes`` nodes. A proof makes the neuron stable; a search that runs out
    of nodes or is cut off by the budget still proves its bound (the smallest over its open leaves,
    :class:`BabResult` ``bound_tree``), which narrows the interval. The searches look for no
    counterexample: a neuron that really takes both signs can still have its interval narrowed, and
    best-first expansion is what raises a lower bound fastest. Then the later layers are bounded
    again by alpha-CROWN over the narrowed intervals.
    The search that proves most of a deep network's neurons stable is cheap next to the nodes it
    saves: the branching that follows needs far fewer splits (alpha-beta-CROWN spends most of its
    time on mnistfc refining these intervals by MILP; the proofs here are searches of the same
    kind as the one they serve, so they are sound in floating point and re-checked).

    With a timed ``budget``, layer k's searches get at most the time left over the layers still to
    refine (k to H; a layer done early leaves its time to the next): the earlier layers' intervals
    feed every later search, so their searches may go deep (``nodes`` is then mostly a cap), but
    never so deep that the last layers, whose intervals the caller's bound reads, are not reached.

    ``until(bounds)``: asked after each layer but the last, and during a layer's searches on the
    intervals they have proved so far (at most every few seconds, and taking at most a sixth of
    the time); True ends the refinement there (the caller's property is proved at the root on
    these intervals, and more refinement would only cost time).

    ``stall`` > 0: a layer's searches also end, keeping their bound trees, once they stop gaining
    (:class:`_Checkpoint`): the earlier layers' searches saturate at very different times from
    instance to instance (on mnistfc 256x4 ``prop_12_0.05`` layers 2 and 3 gain little after 20 s
    while ``prop_6_0.05``'s layer 2 gains for the whole of its share), so a fixed split of the time
    either starves the last layer or the first.

    Returns the tightened bounds, the last layer refined (0 when none) and the refinements, which
    :func:`recheck` replays in the same order."""
    budget = budget or Budget(None)
    opts = replace(_REFINE_OPTIONS, max_nodes=nodes)
    b, items, done = base, [], 0
    for layer in range(2, network.n_hidden_layers + 1):
        if budget.expired():
            break
        L, U = b.lower[layer - 1][0], b.upper[layer - 1][0]
        unstable = np.flatnonzero(b.unstable(layer - 1)[0])
        got, check = [], None
        if unstable.size:
            tr = network.truncated(layer)
            specs = [refinement_spec(tr.n_classes, int(j), side, 0.0) for j in unstable for side in (0, 1)]
            P = len(specs)
            check = None if until is None and not stall > 0 else _Checkpoint(network, xl, xu, b, layer, unstable,
                                                                              alpha_steps, until, stall)
            share = budget.sub(budget.remaining() / (network.n_hidden_layers - layer + 1))  # inf: untimed
            res = branch_and_bound_many(tr, np.repeat(xl[None], P, 0), np.repeat(xu[None], P, 0), specs,
                                        options=opts, budget=share, root=_truncated_root(b, layer, P),
                                        keep_bounds=True, checkpoint=check)
            for k, r in enumerate(res):
                j, side = int(unstable[k // 2]), k % 2
                if r.status == "verified":
                    got.append(Refinement(layer, j, side, 0.0, r.tree))
                elif r.bound_tree is not None:
                    bound = r.lower if side == 0 else -r.lower
                    if (side == 0 and bound > L[j]) or (side == 1 and bound < U[j]):
                        got.append(Refinement(layer, j, side, bound, r.bound_tree))
        b = _tighten(network, xl, xu, b, layer, got, alpha_steps)
        items += got
        done = layer
        if check is not None and check.met:
            break
        if until is not None and layer < network.n_hidden_layers and until(b):
            break
    return b, done, tuple(items)


def _kept(lower: float) -> float:
    """The bound a kept tree proves for open nodes whose smallest bound is ``lower``: a little below,
    so that the tree's replay, rounding on its own, clears it."""
    return lower - 1e-6 * (1.0 + abs(lower))


class _Checkpoint:
    """refine_root's questions during a layer's searches, after every batch.

    With ``until``: on the intervals their bounds so far give (as their trees will prove them: the
    same rounding down), with the later layers bounded again, is the caller's property proved?
    Asked when ``gap`` seconds have passed since the last answer, ``gap`` five times what an answer
    costs (at least ``wait`` seconds, also before the first); a yes sets ``met``.

    With ``stall`` > 0: have the searches stopped gaining? Their progress is the mean, over the
    searches, of the share of the gap between the bound each had at the first batch and 0 (a sign
    proof) that it has closed since (1 once proved); the searches end when, with at least
    ``stall_after`` seconds run, that mean rose by less than ``stall`` over the last quarter of the
    time run (at least ``stall_window`` seconds)."""

    wait = 2.0
    stall_after = 6.0
    stall_window = 4.0

    def __init__(self, network, xl, xu, b, layer, unstable, alpha_steps, until, stall: float = 0.0):
        self.args = (network, xl, xu, b, layer, alpha_steps)
        self.unstable, self.until, self.stall = unstable, until, stall
        self.met = False
        self.start = time.monotonic()
        self.next = self.start + self.wait
        self.seen = None
        self.first = None
        self.progress: list[tuple[float, float]] = []

    def _stalls(self, lowers: Array, now: float) -> bool:
        proved = lowers == math.inf
        if self.first is None:
            self.first = np.minimum(np.where(proved, 0.0, lowers), -1e-12)
        share = np.zeros(lowers.shape)
        ok = np.isfinite(lowers) & np.isfinite(self.first)
        share[ok] = np.clip((lowers[ok] - self.first[ok]) / -self.first[ok], 0.0, 1.0)
        share[proved] = 1.0
        mean = float(np.mean(share))
        self.progress.append((now, mean))
        ran = now - self.start
        window = max(self.stall_window, 0.25 * ran)
        before = [m for t, m in self.progress if t <= now - window]
        return ran >= self.stall_after and bool(before) and mean - before[-1] < self.stall

    def __call__(self, lowers: Array) -> bool:
        now = time.monotonic()
        if self.stall > 0 and self._stalls(lowers, now):
            return True
        if self.until is None:
            return False
        if now < self.next or (self.seen is not None and np.array_equal(lowers, self.seen)):
            return False
        self.seen = lowers.copy()
        network, xl, xu, b, layer, alpha_steps = self.args
        items = []
        for k, v in enumerate(lowers):
            if v == -math.inf:
                continue
            side = k % 2
            v = 0.0 if v == math.inf else _kept(v)
            items.append(Refinement(layer, int(self.unstable[k // 2]), side, v if side == 0 else -v, None))
        self.met = bool(self.until(_tighten(network, xl, xu, b, layer, items, alpha_steps)))
        self.next = time.monotonic() + max(self.wait, 5.0 * (time.monotonic() - now))
        return self.met


def _replay_refinements(network: Network, xl: Array, xu: Array, b: Bounds, tree: "ProofTree") -> Bounds | str:
    """The root intervals ``tree``'s refinements prove from ``b`` (as :func:`refine_root` built
    them), or why they do not."""
    H = network.n_hidden_layers
    if not (0 <= tree.refined_layers <= H) or any(not (2 <= r.layer <= tree.refined_layers) for r in tree.refinements):
        return "a refinement names a layer the network does not have"
    for layer in range(2, tree.refined_layers + 1):
        items = [r for r in tree.refinements if r.layer == layer]
        if not items:
            continue
        tr = network.truncated(layer)
        sub = _truncated_root(b, layer)
        for r in items:
            if not (0 <= r.neuron < tr.n_classes and r.side in (0, 1) and math.isfinite(r.bound)):
                return f"a refinement of layer {layer} names a neuron the network does not have"
            why = recheck(r.tree, tr, xl, xu, refinement_spec(tr.n_classes, r.neuron, r.side, r.bound), root=sub)
            if not why.ok:
                return f"the refinement of layer {layer} neuron {r.neuron} side {r.side}: {why.problem}"
        b = _tighten(network, xl, xu, b, layer, items, tree.root_alpha_steps)
    return b


def _round_add(v: Array, c: Array) -> Array:
    """A lower bound of the exact ``v + c`` (one rounding, stepped down once)."""
    return np.nextafter(v + c, -np.inf)


def _crown_rows(network: Network, relax, xl: Array, xu: Array, spec: Spec) -> Array:
    """(N, R) rigorous lower bounds of every spec row over each region."""
    N = xl.shape[0]
    C = np.broadcast_to(spec.H, (N,) + spec.H.shape).copy()
    return _round_add(backward_bounds(network, network.n_hidden_layers, relax, xl, xu, C), spec.h0)


def _crown_rows_many(network: Network, relax, xl: Array, xu: Array, H: Array, h0: Array) -> Array:
    """(N, R) rigorous lower bounds of each region's own spec rows ``H`` (N, R, C) + ``h0`` (N, R)."""
    return _round_add(backward_bounds(network, network.n_hidden_layers, relax, xl, xu, np.ascontiguousarray(H)), h0)


def _splittable(network: Network, b: _Batch) -> list[Array]:
    return [_splittable_cols(act, L, U) for act, L, U in zip(network.activations, b.L, b.U)]


def _gap(act, L: Array, U: Array, slope: Array, icpt: Array, upper: bool) -> Array:
    """Largest distance between a line and f on [L, U], on five sample points (a score, not a bound)."""
    ts = [L + (U - L) * s for s in (0.0, 0.25, 0.5, 0.75, 1.0)] + [np.clip(np.zeros_like(L), L, U)]
    g = np.zeros_like(L)
    for t in ts:
        d = (slope * t + icpt) - act(t)
        g = np.maximum(g, d if upper else -d)
    return g


#: The weight of a piecewise-linear neuron's gap on the side where its envelope is exact (the lower
#: side of a relu): the LP's lower envelope of a convex function is the function, and the optimiser's
#: lower slopes come close to it, so splitting for that side's gap rarely moves a bound; the gap
#: only breaks ties. On 256x2 prop_1 at eps 0.03, a 300-node search for layer 2's neuron 0 did not
#: move its bound (0.398) when lower gaps counted in full, though one split of the right neuron
#: lowers it to 0.382.
_EXACT_SIDE_WEIGHT = 1e-2


def _kink_bend(act) -> float:
    """f(1) - 2 f(0) + f(-1) of a piecewise-linear activation (kink at 0): > 0 convex, < 0 concave;
    0 for the other families."""
    if act.spec.family is not Family.PIECEWISE_LINEAR:
        return 0.0
    return float(act(np.array(1.0)) - 2.0 * act(np.array(0.0)) + act(np.array(-1.0)))


def _score(network: Network, relax, xl: Array, xu: Array, rows: Array, can: list[Array]):
    """BaBSR-like scores per hidden layer (N, n_l) for one spec row per region (``rows`` (N, C)) and
    the input corner (N, d) minimising that row's linear bound. Approximate float arithmetic: it
    only chooses, never proves."""
    H = network.n_hidden_layers
    A = rows @ network.layers[H].W  # (N, n_{H-1}) coefficient of z_{H-1}
    scores = [None] * H
    for j in range(H - 1, -1, -1):
        r = relax[j]
        ls, li, us, ui = r.ls[:, 0], r.li[:, 0], r.us[:, 0], r.ui[:, 0]
        Ap, An = np.maximum(A, 0.0), np.minimum(A, 0.0)
        gl = _gap(r.act, r.L, r.U, ls, li, False)
        gu = _gap(r.act, r.L, r.U, us, ui, True)
        bend = _kink_bend(r.act)
        if bend > 0:  # convex: the lower envelope is exact, and optimised lower lines nearly are
            gl = _EXACT_SIDE_WEIGHT * gl
        elif bend < 0:
            gu = _EXACT_SIDE_WEIGHT * gu
        s = Ap * gl - An * gu
        scores[j] = np.where(can[j], s + 1e-12 * (r.U - r.L), -np.inf)
        lam = Ap * ls + An * us
        A = lam @ network.layers[j].W
    corner = np.where(A > 0, xl, xu)
    return scores, corner


def _fsb_choice(network: Network, mult, relax, idx: Array, row_idx: Array, rows: Array, xl: Array, xu: Array,
                scores: list[Array], k: int) -> list[tuple[int, int]]:
    """Filtered smart branching for piecewise-linear networks: of each region's ``k`` best neurons
    by the BaBSR score, the one whose worse child has the best bound, estimated by one approximate
    backward pass per child with the region's optimised slopes and multipliers (the split neuron's
    lines replaced by its piece on each side). Regions ``idx`` of the batch; returns (layer, neuron)
    per region. It only chooses: nothing here is a bound that proves anything."""
    from polylens.relax.lines import pair_lines

    H = network.n_hidden_layers
    m = len(idx)
    offsets = np.cumsum([0] + [s_.shape[1] for s_ in scores])
    flat = np.concatenate(scores, axis=1)  # (m, total)
    kk = min(k, flat.shape[1])
    top = np.argsort(-flat, axis=1)[:, :kk]  # (m, kk)
    valid = np.take_along_axis(np.isfinite(flat), top, axis=1)
    layer_of = np.searchsorted(offsets, top, side="right") - 1
    neuron_of = top - offsets[layer_of]
    # Rows: region r, candidate c, side s -> M = m * kk * 2.
    reg = np.repeat(np.arange(m), kk * 2)
    cand_l = np.repeat(layer_of.ravel(), 2)
    cand_j = np.repeat(neuron_of.ravel(), 2)
    side = np.tile([0, 1], m * kk)
    ok = np.repeat(valid.ravel(), 2)
    lines, dd, LL, UU = [], [], [], []
    for l in range(H):
        t = mult.relax[l]
        ii = idx[reg]
        ls, li, us, ui = (a[ii, row_idx[reg] if a.shape[1] > 1 else 0].copy() for a in (t.ls, t.li, t.us, t.ui))
        L, U = t.L[ii], t.U[ii]
        here = np.flatnonzero((cand_l == l) & ok)
        if here.size:
            jj = cand_j[here]
            Lc, Uc = L[here, jj], U[here, jj]
            lo_side = side[here] == 0
            ln = pair_lines(network.activations[l], np.where(lo_side, Lc, np.maximum(Lc, 0.0)),
                            np.where(lo_side, np.minimum(Uc, 0.0), Uc))
            ls[here, jj], li[here, jj] = ln.lower_slope, ln.lower_intercept
            us[here, jj], ui[here, jj] = ln.upper_slope, ln.upper_intercept
        lines.append((ls, li, us, ui))
        dd.append(None if mult.d[l] is None else mult.d[l][ii, row_idx[reg]])
        LL.append(L)
        UU.append(U)
    # The estimate is a choice, not a bound: float32 halves the cost of the pass's matrix products.
    f32 = np.float32
    C = rows[reg].astype(f32)
    A = C @ network.layers[H].W.astype(f32)
    const = C @ network.layers[H].b.astype(f32)
    for l in range(H - 1, -1, -1):
        ls, li, us, ui = (a.astype(f32) for a in lines[l])
        Ap = np.maximum(A, 0.0)
        An = A - Ap
        const = const + (Ap * li).sum(1) + (An * ui).sum(1)
        lam = Ap * ls + An * us
        if dd[l] is not None:
            d = dd[l].astype(f32)
            lam = lam + d
            const = const - (np.maximum(d, 0) * UU[l] + np.minimum(d, 0) * LL[l]).sum(1)
        const = const + lam @ network.layers[l].b.astype(f32)
        A = lam @ network.layers[l].W.astype(f32)
    xm, xr = 0.5 * (xl[reg] + xu[reg]), 0.5 * (xu[reg] - xl[reg])
    val = (A * xm).sum(1) - (np.abs(A) * xr).sum(1) + const
    worse = val.reshape(m, kk, 2).min(axis=2)
    worse = np.where(valid, worse, -np.inf)
    best = np.argmax(worse, axis=1)
    return [(int(layer_of[r, best[r]]), int(neuron_of[r, best[r]])) for r in range(m)]


def _split_point(act, L: float, U: float) -> float:
    if act.spec.family is Family.PIECEWISE_LINEAR:
        return 0.0
    w = U - L
    if L < -0.1 * w and U > 0.1 * w:
        return 0.0
    return 0.5 * (L + U)


def _lp_rows(network: Network, xl: Array, xu: Array, L: Sequence[Array], U: Sequence[Array], spec: Spec, open_g,
             envelope: Envelope, budget: Budget, poly=None):
    """LP lower bounds of the rows of the open disjuncts over one region (``poly``: its polytope when
    already built). Returns (rows (R,) with -inf where not computed, input points of the LP optima,
    solves, empty: the LP proved the region empty)."""
    out = np.full(spec.H.shape[0], -np.inf)
    pts = []
    if poly is None:
        try:
            poly = build_polytope(network, xl, xu, list(zip(L, U)), envelope)
        except InfeasibleError:
            return out, pts, 0, False
    solver = LPSolver(poly, deadline=budget.deadline, iteration_limit=LP_ITERATION_LIMIT)
    logit = poly.handle(Role.LOGIT)
    for g in open_g:
        for r in np.flatnonzero(spec.group == g):
            if budget.expired():
                return out, pts, solver.n_solves, False
            try:
                sol = solver.solve(poly.cost({logit: spec.H[r]}), Sense.MIN)
            except InfeasibleError:
                return out, pts, solver.n_solves, solver.proves_empty()
            except SolverError:
                continue
            out[r] = float(_round_add(np.array(sol.safe_bound), spec.h0[r]))
            pts.append(np.clip(sol.x[poly.inputs], xl, xu))
            if out[r] > VERIFY_MARGIN:
                break
    return out, pts, solver.n_solves, False


def _narrow(L: list, U: list, s: Split, side: int) -> tuple[list, list]:
    L2, U2 = [a.copy() for a in L], [a.copy() for a in U]
    l, j = s.layer - 1, s.neuron
    if side == 0:
        U2[l][j] = min(U2[l][j], s.point)
    else:
        L2[l][j] = max(L2[l][j], s.point)
    return L2, U2


# ---------------------------------------------------------------------------------------------
# The search


@dataclass(eq=False)
class _Node:
    id: int
    L: list  # per layer (n_l,)
    U: list
    open_g: tuple[int, ...]
    lb: float
    split: Split | None = None
    depth: int = 0
    path: tuple[tuple[int, int], ...] = ()  # (0-based layer, neuron) of every split above
    warm: tuple | None = None  # the parent's optimised (slopes per layer, multipliers per layer)


@dataclass(eq=False)
class _Rec:
    proved: tuple[int, ...] = ()
    method: str | None = None
    bounds: tuple[float, ...] = ()
    lp_groups: tuple[int, ...] = ()
    split: Split | None = None
    kids: tuple[int, int] | None = None
    tuned: Tuned | None = None
    own: float = -math.inf  # keep_bounds: the node's own bound of its one disjunct, how, and with what
    own_method: str | None = None
    own_tuned: Tuned | None = None


def _assemble(recs: dict[int, _Rec], i: int, t: float | None = None) -> ProofNode:
    """The proof tree below node ``i``. With ``t`` (a one-disjunct search): the tree shifted to prove
    the disjunct's row > ``t`` (its offset lowered by ``t``): a node proves it where its own bound
    is above ``t`` (with room for the replay's rounding) or where it proved the unshifted row;
    bounds are shifted with it."""
    r = recs[i]
    if t is None or r.method == "empty":
        node = ProofNode(r.proved, r.method, r.bounds, lp_groups=r.lp_groups, tuned=r.tuned)
    elif r.proved:
        node = ProofNode(r.proved, r.method, tuple(b - t for b in r.bounds), lp_groups=r.lp_groups, tuned=r.tuned)
    elif r.own_method is not None and r.own - t > 2 * VERIFY_MARGIN:
        node = ProofNode((0,), r.own_method, (r.own - t,), tuned=r.own_tuned)
    else:
        node = ProofNode()
    if r.kids is None:
        return node
    return replace(node, split=r.split, low=_assemble(recs, r.kids[0], t), high=_assemble(recs, r.kids[1], t))


def _row(a: Array, i: int) -> Array:
    """Row i of a (N, G, n) array, kept (1, G, n) in float32 (warm starts are starting points only)."""
    return a[i:i + 1].astype(np.float32)


def _stack_warm(parts: list, base: Array | None = None) -> Array | None:
    """Stack per-node warm-start arrays (1, G, n) into (N, G, n); a node without one takes its row of
    ``base`` (N, G', n), or zeros when ``base`` is None; None when no node has one."""
    have = [p for p in parts if p is not None]
    if not have:
        return None
    # Slopes shared by every row (groups 1: a layer the optimiser left alone) stand for each row's.
    shape = (1, max([p.shape[1] for p in have] + ([] if base is None else [base.shape[1]])), have[0].shape[2])
    return np.concatenate([np.broadcast_to(p.astype(np.float64), shape) if p is not None
                           else np.zeros(shape) if base is None
                           else np.broadcast_to(base[i:i + 1], shape) for i, p in enumerate(parts)])


def _tuned_record(mult, base: list, i: int, rows: Array, path) -> Tuned:
    """The multipliers of region ``i`` of an optimised bound for spec ``rows`` (see :class:`Tuned`)."""
    slopes = []
    for l, (t, b) in enumerate(zip(mult.relax, base)):
        for side, name in ((0, "ls"), (1, "us")):
            v = getattr(t, name)[i]  # (groups, n)
            v = v if v.shape[0] == 1 else v[rows]
            diff = np.flatnonzero(np.any(v != getattr(b, name)[i], axis=0))
            if diff.size:
                slopes.append((l, side, diff, v[:, diff].copy()))
    d = []
    for l, j in dict.fromkeys(path):
        if mult.d[l] is not None:
            d.append((l, j, tuple(float(x) for x in mult.d[l][i, rows, j])))
    return Tuned(tuple(int(r) for r in rows), tuple(slopes), tuple(d))


def branch_and_bound(network: Network, xl: Array, xu: Array, spec: Spec, *, options: BabOptions = BabOptions(),
                     budget: Budget | None = None,
                     attack: Callable[[Array], Array | None] | None = None) -> BabResult:
    """Decide ``spec`` on the box [xl, xu] (each (d,)); see the module docstring.

    ``attack(starts (n, d))``: the caller's attack, returning a candidate counterexample or None
    (confirmed here). ``budget``: the unit's wall-clock budget.
    """
    return branch_and_bound_many(network, np.asarray(xl, float).reshape(1, -1), np.asarray(xu, float).reshape(1, -1),
                                 [spec], options=options, budget=budget,
                                 attack=None if attack is None else (lambda p, starts: attack(starts)))[0]


def branch_and_bound_many(network: Network, xl: Array, xu: Array, specs: Sequence[Spec], *,
                          options: BabOptions = BabOptions(), budget: Budget | None = None,
                          attack: Callable[[int, Array], Array | None] | None = None,
                          stop_when_falsified: bool = False, root: Bounds | None = None,
                          keep_bounds: bool = False,
                          checkpoint: Callable[[Array], bool] | None = None) -> list[BabResult]:
    """:func:`branch_and_bound` for P problems at once: boxes ``xl``, ``xu`` (P, d) and one spec each
    (all with the same rows-to-disjuncts layout). Their nodes share every vectorised bounding pass,
    which is what makes many small searches cheap (the relaxations' cost is mostly per call). Each
    problem gets at most ``options.max_nodes`` nodes; ``budget`` is shared (every problem ends by
    its deadline). ``attack(p, starts)``: the caller's attack for problem p. One result per problem.
    ``stop_when_falsified``: the problems are the disjuncts of one property, so the first
    counterexample decides it: the others end ``unknown`` (reason ``stopped``). ``root``: the boxes'
    root intervals (default :func:`root_bounds`'s). ``keep_bounds`` (one-disjunct specs): the search
    only raises its bound (it looks for no counterexample), and one that reaches its node limit or
    the budget returns a tree proving that bound (``BabResult.bound_tree``). A problem whose tree
    was complete when the budget ran out (others still searching) ends verified all the same.
    ``checkpoint(lowers)``: asked after every batch with each problem's proved bound so far (P,;
    inf where proved); True ends the search there as the budget would, the open problems
    ``unknown`` (reason ``stopped``, with their bound trees under ``keep_bounds``)."""
    t0 = time.monotonic()
    budget = budget or Budget(None)
    xl = np.atleast_2d(np.asarray(xl, dtype=np.float64))
    xu = np.atleast_2d(np.asarray(xu, dtype=np.float64))
    P = xl.shape[0]
    specs = list(specs)
    if len(specs) != P or xu.shape != xl.shape or xl.shape[1] != network.input_dim:
        raise ParameterError(f"branch_and_bound_many needs boxes (P, {network.input_dim}) and one spec per box. "
                             f"Got boxes {xl.shape}, {xu.shape} and {len(specs)} specs instead.")
    for sp in specs:
        if not isinstance(sp, Spec):
            raise ParameterError(f"The specs of branch_and_bound must be Spec values. Got {type(sp).__name__} instead.")
        if sp.H.shape[1] != network.n_classes:
            raise ParameterError(f"The spec's rows must have {network.n_classes} entries (one per logit). "
                                 f"Got {sp.H.shape[1]} instead.")
        if not np.array_equal(sp.group, specs[0].group) or sp.strict != specs[0].strict:
            raise ParameterError("The specs of branch_and_bound_many must share their rows-to-disjuncts layout.")
    layout = specs[0]
    if keep_bounds and layout.n_groups != 1:
        raise ParameterError("keep_bounds needs specs of one disjunct.")
    if root is not None and (not isinstance(root, Bounds) or tuple(a.shape for a in root.lower)
                             != tuple((P, n) for n in network.hidden_widths)):
        raise ParameterError(f"The 'root' parameter of branch_and_bound_many must be Bounds of the {P} boxes' "
                             f"hidden layers {network.hidden_widths}.")
    Hs = np.stack([sp.H for sp in specs])
    h0s = np.stack([sp.h0 for sp in specs])
    rebound = options.rebounds(network)
    use_lp = options.uses_lp(network)
    use_beta = options.uses_beta(network)
    pl = all(a.spec.family is Family.PIECEWISE_LINEAR for a in network.activations)
    nodes_of = np.zeros(P, dtype=int)
    lp_of = np.zeros(P, dtype=int)
    results: list[BabResult | None] = [None] * P
    tie = np.zeros(P, bool)
    tied_lb = np.full(P, math.inf)

    def finish(p, status, **kw):
        if results[p] is None:
            results[p] = BabResult(status, nodes=int(nodes_of[p]), lp_solves=int(lp_of[p]),
                                   seconds=time.monotonic() - t0, **kw)
            if status == "falsified" and stop_when_falsified:
                for q in range(P):
                    if results[q] is None:
                        results[q] = BabResult("unknown", reason=UnknownReason.STOPPED, nodes=int(nodes_of[q]),
                                               lp_solves=int(lp_of[q]), seconds=time.monotonic() - t0)

    def unsafe(p: int, points: Array, logits: Array | None = None):
        """(point, disjunct) of the first of ``points`` (clipped to problem p's box) where the real
        network satisfies a disjunct, else None; ``logits``: the network's at the clipped points."""
        points = np.atleast_2d(points)
        if points.size == 0:
            return None
        points = np.clip(points, xl[p], xu[p])
        hold = specs[p].holds(network(points) if logits is None else logits)
        hit = np.flatnonzero(hold.any(axis=1))
        if hit.size:
            i = int(hit[0])
            return points[i].copy(), int(np.flatnonzero(hold[i])[0])
        return None

    root_b = root if root is not None else root_bounds(network, xl, xu, options.root_alpha_steps)
    root_relax = [relax_layer(network.activations[l], root_b.lower[l], root_b.upper[l], l)
                  for l in range(network.n_hidden_layers)]
    refined_of: dict[int, tuple[int, tuple[Refinement, ...]]] = {}
    recs: dict[int, _Rec] = {}
    heaps: list[list] = [[] for _ in range(P)]
    counter = [0]
    best_points: list[list[Array]] = [[] for _ in range(P)]
    prob_of: dict[int, int] = {}

    def beta_rows(relax, XL, XU, ps, masks=None, init=None):
        """Rigorous lower bounds of problems ``ps``'s spec rows by optimised slopes and split
        multipliers (``masks``: the splits; ``init``: warm start), and the multipliers used."""
        lbb, mult = optimised_bounds(network, network.n_hidden_layers, relax, XL, XU, np.ascontiguousarray(Hs[ps]),
                                     options.beta_steps, masks, slopes=options.alpha, init=init)
        return _round_add(lbb, h0s[ps]), mult

    def bound(nodes: list[_Node], start, lp_here: bool = True) -> list[_Node]:
        """Bound a batch of fresh nodes (of any problems): records what each proves, looks for
        counterexamples, and returns the nodes still open (with their split chosen). ``start``: the
        first layer to bound again (one for all, or one per node); ``lp_here``: the LP may run on
        these nodes (the root's LP is optional)."""
        n = len(nodes)
        ps = np.array([prob_of[nd.id] for nd in nodes])
        np.add.at(nodes_of, ps, 1)
        b = _Batch([np.stack([nd.L[l] for nd in nodes]) for l in range(network.n_hidden_layers)],
                   [np.stack([nd.U[l] for nd in nodes]) for l in range(network.n_hidden_layers)])
        XL, XU = xl[ps], xu[ps]
        relax, empty, b = _rebound(network, XL, XU, b, start, rebound, [r.rows(ps) for r in root_relax])
        lb = _crown_rows_many(network, relax, XL, XU, Hs[ps], h0s[ps])
        if use_beta:
            masks = [np.zeros((n, w), bool) for w in network.hidden_widths]
            for i, nd in enumerate(nodes):
                for l, j in nd.path:
                    masks[l][i, j] = True
            init = None
            if any(nd.warm is not None for nd in nodes):
                H_ = network.n_hidden_layers
                init = ([[_stack_warm([nd.warm[0][l][side] if nd.warm is not None else None for nd in nodes],
                                      getattr(relax[l], name)) for side, name in ((0, "ls"), (1, "us"))]
                         for l in range(H_)],
                        [_stack_warm([nd.warm[1][l] if nd.warm is not None else None for nd in nodes])
                         for l in range(H_)])
            lbb, mult = beta_rows(relax, XL, XU, ps, masks, init)
            lb = np.maximum(lb, lbb)
        proved = layout.proved(lb)
        glb = layout.group_lb(lb)
        can = _splittable(network, b)
        still = []
        open_rows = np.zeros((n, network.n_classes))
        open_idx = np.zeros(n, dtype=int)
        for i, nd in enumerate(nodes):
            nd.L = [b.L[l][i] for l in range(len(b.L))]
            nd.U = [b.U[l][i] for l in range(len(b.U))]
            rec = recs[nd.id]
            if results[ps[i]] is not None:
                continue
            if empty[i]:
                rec.method, rec.proved, rec.bounds = "empty", nd.open_g, ()
                continue
            newly = tuple(g for g in nd.open_g if proved[i, g])
            if newly:
                rec.method, rec.proved, rec.bounds = "crown", newly, tuple(float(glb[i, g]) for g in newly)
                if use_beta:
                    rec.method = "beta"
                    rec.tuned = _tuned_record(mult, relax, i, np.flatnonzero(np.isin(layout.group, newly)), nd.path)
            nd.open_g = tuple(g for g in nd.open_g if not proved[i, g])
            if not nd.open_g:
                continue
            if keep_bounds:
                rec.own, rec.own_method = float(glb[i, 0]), "beta" if use_beta else "crown"
                if use_beta:
                    rec.own_tuned = _tuned_record(mult, relax, i, np.arange(layout.H.shape[0]), nd.path)
            worst = min(nd.open_g, key=lambda g: glb[i, g])
            nd.lb = max(nd.lb, float(glb[i, worst]))  # a parent's bound holds on its children too
            if use_beta:
                nd.warm = ([(_row(mult.relax[l].ls, i), _row(mult.relax[l].us, i)) for l in range(len(relax))],
                           [None if d is None else d[i:i + 1] for d in mult.d])
            r = np.flatnonzero(layout.group == worst)
            open_idx[i] = r[np.argmax(lb[i, r])]
            open_rows[i] = Hs[ps[i], open_idx[i]]
            still.append(i)
        if not still:
            return []
        idx = np.array(still)
        scores, corners = _score(network, [r.rows(idx) for r in relax], XL[idx], XU[idx], open_rows[idx],
                                 [c[idx] for c in can])
        corners = np.clip(corners, XL[idx], XU[idx])
        corner_logits = network(corners)  # one pass for the batch's corners
        for pos, i in enumerate(still):
            p = int(ps[i])
            if results[p] is None and not keep_bounds:
                hit = unsafe(p, corners[pos], corner_logits[pos:pos + 1])
                if hit is not None:  # confirmed on the point alone, as every other point is
                    hit = unsafe(p, corners[pos])
                if hit is not None:
                    finish(p, "falsified", counterexample=hit[0], group=hit[1])
                else:
                    best_points[p] = (best_points[p] + [corners[pos]])[-8:]  # attack starts
        out = []
        no_splits = [all(not np.isfinite(s_[pos]).any() for s_ in scores) for pos in range(len(still))]
        chosen = None
        if use_beta and pl and options.fsb > 1:
            chosen = _fsb_choice(network, mult, relax, idx, open_idx[idx], open_rows[idx], XL[idx], XU[idx], scores,
                                 options.fsb)
        wants_lp = [(use_lp and lp_here) or (no_splits[pos] and pl) for pos in range(len(still))]
        lp_pos = [pos for pos in range(len(still)) if wants_lp[pos] and results[ps[still[pos]]] is None]
        polys = {}
        if lp_pos and not budget.expired():
            # One vectorised envelope build per layer for every region of the batch that gets an LP.
            sel = idx[lp_pos]
            built = build_polytopes(network, XL[sel], XU[sel], [a[sel] for a in b.L], [a[sel] for a in b.U],
                                    options.envelope)
            polys = dict(zip(lp_pos, built))
        for pos, i in enumerate(still):
            nd = nodes[i]
            p = int(ps[i])
            if results[p] is not None:
                continue
            rec = recs[nd.id]
            no_split = no_splits[pos]
            if wants_lp[pos]:
                if budget.expired() or pos not in polys:
                    raise _OutOfBudget()
                rows, pts, solves, lp_empty = _lp_rows(network, xl[p], xu[p], nd.L, nd.U, specs[p], nd.open_g,
                                                       options.envelope, budget, polys[pos])
                lp_of[p] += solves
                if lp_empty:
                    rec.method, rec.proved, rec.bounds, rec.lp_groups = "empty", nd.open_g, (), nd.open_g
                    continue
                hit = unsafe(p, np.array(pts)) if pts and not keep_bounds else None
                if hit is not None:
                    finish(p, "falsified", counterexample=hit[0], group=hit[1])
                    continue
                best_points[p] = (best_points[p] + pts[:1])[-8:]
                # Both bounds are sound on the region: the node keeps the better of the two per row.
                rows = np.maximum(rows, lb[i])
                pr = layout.proved(rows[None])[0]
                gl = layout.group_lb(rows[None])[0]
                newly = tuple(g for g in nd.open_g if pr[g])
                if newly:
                    rec.method, rec.lp_groups = ("lp+beta" if rec.tuned is not None else "lp+crown"), nd.open_g
                    rec.proved = rec.proved + newly
                    rec.bounds = tuple(float(gl[g]) for g in rec.proved)
                    nd.open_g = tuple(g for g in nd.open_g if not pr[g])
                    if not nd.open_g:
                        continue
                nd.lb = max(nd.lb, float(min(gl[g] for g in nd.open_g)))
            if no_split:
                tie[p] = True
                tied_lb[p] = min(tied_lb[p], nd.lb)
                continue
            if chosen is not None:
                l, j = chosen[pos]
            else:
                flat = [(float(np.max(s_[pos])), l, int(np.argmax(s_[pos]))) for l, s_ in enumerate(scores)
                        if np.isfinite(s_[pos]).any()]
                _, l, j = max(flat)
            nd.split = Split(l + 1, j, _split_point(network.activations[l], float(nd.L[l][j]), float(nd.U[l][j])))
            out.append(nd)
        return out

    def new_node(p, L, U, open_g, depth, path=()) -> _Node:
        counter[0] += 1
        recs[counter[0]] = _Rec()
        prob_of[counter[0]] = p
        return _Node(counter[0], L, U, open_g, -math.inf, None, depth, path)

    attack_seconds = [0.0]

    def rebound_roots(opened: list[_Node]) -> list[_Node]:
        """The open roots again, on root intervals tightened by :func:`refine_root` (once per
        distinct box, within ``refine_share`` of the budget)."""
        nonlocal root_relax
        H_ = network.n_hidden_layers
        old = {prob_of[nd.id]: nd for nd in opened}
        ps_open = sorted(old)
        sub = budget.sub(options.refine_share * budget.remaining())  # inf when untimed: no limit
        lower = [np.array(a) for a in root_b.lower]
        upper = [np.array(a) for a in root_b.upper]
        done: dict[bytes, tuple] = {}

        def key_of(p):
            return np.concatenate([xl[p], xu[p]]).tobytes()

        for p in ps_open:
            key = key_of(p)
            if key not in done:
                one = Bounds(tuple(a[p:p + 1] for a in root_b.lower), tuple(a[p:p + 1] for a in root_b.upper),
                             root_b.logit_lower[p:p + 1], root_b.logit_upper[p:p + 1], root_b.method)
                same = [q for q in ps_open if key_of(q) == key]
                done[key] = refine_root(network, xl[p], xu[p], one, nodes=options.refine_nodes,
                                        alpha_steps=options.root_alpha_steps, budget=sub,
                                        until=lambda b_, same=same: roots_proved(same, b_),
                                        stall=options.refine_stall)
            b, layers, items = done[key]
            refined_of[p] = (layers, items)
            for l in range(H_):
                lower[l][p], upper[l][p] = b.lower[l][0], b.upper[l][0]
        root_relax = [relax_layer(network.activations[l], lower[l], upper[l], l) for l in range(H_)]
        fresh = []
        for p in ps_open:
            nd = new_node(p, [lower[l][p].copy() for l in range(H_)], [upper[l][p].copy() for l in range(H_)],
                          tuple(range(layout.n_groups)), 0)
            nd.warm = old[p].warm
            roots[p] = nd
            fresh.append(nd)
        return bound(fresh, H_, False)

    def roots_proved(ps_: list[int], b_: Bounds) -> bool:
        """Whether the root bound (CROWN, then optimised slopes as :func:`bound` has them) proves
        every disjunct of problems ``ps_`` (one box) on the intervals ``b_``."""
        ps_ = np.array(ps_)
        n = len(ps_)
        relax = [relax_layer(network.activations[l], np.repeat(b_.lower[l], n, 0), np.repeat(b_.upper[l], n, 0), l)
                 for l in range(network.n_hidden_layers)]
        XL, XU = xl[ps_], xu[ps_]
        lb = _crown_rows_many(network, relax, XL, XU, Hs[ps_], h0s[ps_])
        if use_beta and not layout.proved(lb).all():
            lb = np.maximum(lb, beta_rows(relax, XL, XU, ps_)[0])
        return bool(layout.proved(lb).all())

    def try_attack(p, starts):
        if attack is None or results[p] is not None or budget.expired():
            return
        t_a = time.monotonic()
        try:
            cand = attack(p, starts)
        finally:
            attack_seconds[0] += time.monotonic() - t_a
        if cand is not None:
            # The disjuncts of one property share one attack: its point is tried on each.
            for q in (range(P) if stop_when_falsified else (p,)):
                h = unsafe(q, cand) if results[q] is None else None
                if h is not None:
                    finish(q, "falsified", counterexample=h[0], group=h[1])
                    break

    inflight: list[_Node] = []  # the nodes taken off the heaps whose children are being bounded
    searching = False  # the roots are bounded and every open node is on a heap or in flight

    def kept_bound(p: int) -> tuple[float, ProofTree | None]:
        """(lower, tree): the smallest bound among problem p's open nodes (on its heap or in flight)
        and, with ``keep_bounds``, a tree proving the row above it (rounded down for the replay)."""
        lower = min([e[0] for e in heaps[p]] + [nd.lb for nd in inflight if prob_of[nd.id] == p], default=-math.inf)
        if not (keep_bounds and not tie[p] and math.isfinite(lower)):
            return lower, None
        # Every open leaf has a node on its path whose own bound is >= lower.
        lower = _kept(lower)
        return lower, ProofTree(Spec(specs[p].H, specs[p].h0 - lower, specs[p].group, specs[p].strict),
                                _assemble(recs, roots[p].id, lower), rebound, options.envelope,
                                options.root_alpha_steps)

    def open_lower(p: int) -> float:
        """Problem p's proved bound between batches: inf once its tree is complete."""
        r = results[p]
        if r is not None:
            return math.inf if r.status == "verified" else float(r.lower)
        return min((e[0] for e in heaps[p]), default=math.inf) if not tie[p] else float(tied_lb[p])

    roots = [new_node(p, [a[p].copy() for a in root_b.lower], [a[p].copy() for a in root_b.upper],
                      tuple(range(layout.n_groups)), 0) for p in range(P)]
    try:
        if options.root_attack:
            for p in (range(1) if stop_when_falsified else range(P)):
                try_attack(p, ((xl[p] + xu[p]) / 2)[None])
        live = [nd for nd in roots if results[prob_of[nd.id]] is None]
        if live:
            opened = bound(live, network.n_hidden_layers, options.root_lp)
            if opened and options.refine_nodes and pl and network.n_hidden_layers >= 2:
                # The refinement can take most of the budget: the roots' corner points are
                # attacked first (on mnistfc 256x4 prop_1_0.05 this finds at 4 s the counterexample
                # the main search found after the refinement, at 100 s).
                for p in sorted({prob_of[nd.id] for nd in opened}):
                    if best_points[p]:
                        try_attack(p, np.stack(best_points[p]))
                opened = [nd for nd in opened if results[prob_of[nd.id]] is None]
                if opened:
                    opened = rebound_roots(opened)
            for nd in opened:
                heapq.heappush(heaps[prob_of[nd.id]], (nd.lb, nd.id, nd))
        searching = True
        steps = 0
        while True:
            active = [p for p in range(P) if results[p] is None and heaps[p]]
            if not active:
                break
            if budget.expired():
                raise _OutOfBudget()
            batch = []
            per = max(1, options.batch // len(active))
            for p in active:
                if nodes_of[p] >= options.max_nodes:
                    lower, kept = kept_bound(p)
                    finish(p, "unknown", reason=UnknownReason.NODES, lower=lower, bound_tree=kept)
                    continue
                batch += [heapq.heappop(heaps[p])[2] for _ in range(min(per, len(heaps[p])))]
            inflight = batch
            if not batch:
                continue
            kids, starts = [], []
            for nd in batch:
                p = prob_of[nd.id]
                path = nd.path + ((nd.split.layer - 1, nd.split.neuron),)
                lo = new_node(p, *_narrow(nd.L, nd.U, nd.split, 0), nd.open_g, nd.depth + 1, path)
                hi = new_node(p, *_narrow(nd.L, nd.U, nd.split, 1), nd.open_g, nd.depth + 1, path)
                lo.lb = hi.lb = nd.lb
                lo.warm = hi.warm = nd.warm
                nd.warm = None
                recs[nd.id].split, recs[nd.id].kids = nd.split, (lo.id, hi.id)
                kids += [lo, hi]
                starts += [nd.split.layer] * 2  # 0-based index of the first layer after the split
            for nd in bound(kids, np.array(starts)):
                heapq.heappush(heaps[prob_of[nd.id]], (nd.lb, nd.id, nd))
            inflight = []
            steps += 1
            if checkpoint is not None and checkpoint(np.array([open_lower(p) for p in range(P)])):
                raise _Paused()
            if (attack is not None and options.attack_every and steps % options.attack_every == 0
                    and attack_seconds[0] <= _ATTACK_SHARE * (time.monotonic() - t0)):
                if stop_when_falsified:
                    pool = [x for p in active for x in best_points[p][-2:]][-8:]
                    if pool:
                        try_attack(active[0], np.stack(pool))
                else:
                    for p in active:
                        if best_points[p]:
                            try_attack(p, np.stack(best_points[p]))
    except _OutOfBudget as e:
        why = UnknownReason.STOPPED if isinstance(e, _Paused) else UnknownReason.BUDGET
        for p in range(P):
            if not searching:
                finish(p, "unknown", reason=why)
            elif heaps[p] or any(prob_of[nd.id] == p for nd in inflight):
                lower, kept = kept_bound(p)
                finish(p, "unknown", reason=why, lower=lower, bound_tree=kept)
            # else: every leaf of p's tree is proved (or tied): it ends below as if the search went on.
    for p in range(P):
        if tie[p]:
            finish(p, "unknown", reason=UnknownReason.TIE, lower=float(tied_lb[p]))
        else:
            layers, items = refined_of.get(p, (0, ()))
            finish(p, "verified", tree=ProofTree(specs[p], _assemble(recs, roots[p].id), rebound, options.envelope,
                                                 options.root_alpha_steps, layers, items),
                   lower=math.inf)
    return results


class _Found(Exception):
    def __init__(self, x, group):
        self.x, self.group = x, group


class _OutOfBudget(Exception):
    pass


class _Paused(_OutOfBudget):
    """The caller's checkpoint ended the search (it ends as the budget ends it)."""


# ---------------------------------------------------------------------------------------------
# Re-checking a tree


@dataclass(frozen=True)
class Recheck:
    """The verdict of :func:`recheck`: ``ok``, the nodes replayed, and the first problem found."""

    ok: bool
    nodes: int
    problem: str | None = None

    def __bool__(self) -> bool:
        return self.ok


def recheck(tree: ProofTree, network: Network, xl: Array, xu: Array, spec: Spec | None = None, *,
            root: Bounds | None = None) -> Recheck:
    """Replay ``tree`` on the box [xl, xu] from scratch and accept it only if it proves ``spec``
    (default: the tree's own): every bound is re-derived (root bounds, each split's narrowing, the
    rebounding, CROWN or the LP as the node says), every claimed disjunct must be proved by the
    re-derived bound, and every leaf must have every disjunct proved on its path or be empty.
    ``root``: the box's root intervals when they are given (a refinement's search), instead of
    :func:`root_bounds`'s; the tree's refinements are re-checked before they narrow them."""
    if not isinstance(tree, ProofTree):
        raise ParameterError(f"The 'tree' parameter of recheck must be a ProofTree. Got {type(tree).__name__} instead.")
    spec = tree.spec if spec is None else spec
    if (spec.H.shape != tree.spec.H.shape or not np.array_equal(spec.H, tree.spec.H)
            or not np.array_equal(spec.h0, tree.spec.h0) or not np.array_equal(spec.group, tree.spec.group)
            or spec.strict != tree.spec.strict):
        return Recheck(False, 0, "the tree proves another specification")
    xl = np.asarray(xl, dtype=np.float64).ravel()
    xu = np.asarray(xu, dtype=np.float64).ravel()
    b = root if root is not None else root_bounds(network, xl[None], xu[None], tree.root_alpha_steps)
    if tree.refined_layers or tree.refinements:
        b = _replay_refinements(network, xl, xu, b, tree)
        if isinstance(b, str):
            return Recheck(False, 0, b)
    count = [0]
    all_g = set(range(spec.n_groups))
    XL, XU = xl[None], xu[None]

    def visit(node: ProofNode, L: list, U: list, start: int, have: set) -> str | None:
        count[0] += 1
        relax, empty, bb = _rebound(network, XL, XU, _Batch([a[None] for a in L], [a[None] for a in U]), start,
                                    tree.rebound)
        L = [a[0] for a in bb.L]
        U = [a[0] for a in bb.U]
        rows = np.full(spec.H.shape[0], -np.inf)
        lp_empty = False
        if node.method in ("lp+crown", "empty") and node.lp_groups:
            if not all(0 <= g < spec.n_groups for g in node.lp_groups):
                return f"node {count[0]} names disjuncts the specification does not have"
            rows, _, _, lp_empty = _lp_rows(network, xl, xu, L, U, spec, node.lp_groups, tree.envelope, Budget(None))
        if node.method == "empty":
            if not (empty[0] or lp_empty):
                return f"node {count[0]} claims an empty region that is not"
            return None
        if node.proved:
            if node.method not in ("crown", "lp+crown", "beta", "lp+beta"):
                return f"node {count[0]} names an unknown method {node.method!r}"
            rows = np.maximum(rows, _crown_rows(network, relax, XL, XU, spec)[0])
            if node.tuned is not None:
                t = node.tuned
                if not all(0 <= r < spec.H.shape[0] for r in t.rows):
                    return f"node {count[0]} names spec rows the specification does not have"
                try:
                    rows[list(t.rows)] = np.maximum(rows[list(t.rows)], t.bound(network, relax, XL, XU, spec))
                except (ParameterError, IndexError, ValueError):
                    return f"node {count[0]} has multipliers that do not fit the network"
            pr = spec.proved(rows[None])[0]
            bad = [g for g in node.proved if not (0 <= g < spec.n_groups and pr[g])]
            if bad:
                return f"node {count[0]} claims disjunct {bad[0]} that its re-derived bound does not prove"
            have = have | set(node.proved)
        if node.split is None:
            return None if have >= all_g else f"leaf {count[0]} leaves disjuncts {sorted(all_g - have)} unproved"
        s = node.split
        if not (1 <= s.layer <= network.n_hidden_layers and 0 <= s.neuron < network.hidden_widths[s.layer - 1]
                and math.isfinite(s.point)):
            return f"node {count[0]} splits a neuron the network does not have"
        if node.low is None or node.high is None:
            return f"node {count[0]} splits without two children"
        for side, kid in ((0, node.low), (1, node.high)):
            L2, U2 = _narrow(L, U, s, side)
            why = visit(kid, L2, U2, s.layer, have)
            if why:
                return why
        return None

    why = visit(tree.root, [a[0].copy() for a in b.lower], [a[0].copy() for a in b.upper], network.n_hidden_layers,
                set())
    return Recheck(why is None, count[0], why)
