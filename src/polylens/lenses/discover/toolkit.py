"""The discovery toolkit: what signatures, prototypes and counterfactuals build their LPs from.

* :func:`relax` turns images and a radius into a :class:`Relaxation`: the boxes (the eps-balls
  intersected with [0, 1]), sound pre-activation bounds (CROWN intersected with IBP,
  :func:`polylens.bounds.crown_ibp_bounds`) and one polytope per image, built in one batched call;
* :func:`with_max_column` adds a column t with ``t >= logit_k`` for every rival k, so that
  ``logit_c - t`` is the worst-case margin at a maximum;
* :func:`with_fallback` runs an LP task on an image's polytope and, when HiGHS fails on a hull
  (it can, spuriously, when a neuron's output range is ~1e-9 wide), on the pair envelope's: the
  one HULL-to-PAIR fallback of the discovery analyses.

The L1 columns ``u >= |x - x0|`` are :meth:`polylens.lp.polytope.Polytope.with_l1_distance`.

>>> import numpy as np
>>> from polylens.nn.model import load_model, model_split
>>> m = load_model("seed"); s = model_split(m)
>>> rel = relax(m.network, s.x_test[:2], 0.02, Hull())
>>> len(rel.polys), rel.xl.shape
(2, (2, 49))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np
import scipy.sparse as sp

from polylens.bounds import crown_ibp_bounds, input_box
from polylens.errors import SolverError
from polylens.lp.polytope import Extension, Polytope, Role, Rows, build_polytope, build_polytopes
from polylens.nn.network import Network
from polylens.relax.envelopes import Envelope, Hull

Array = np.ndarray
T = TypeVar("T")

__all__ = ["Relaxation", "relax", "with_fallback", "with_max_column"]


@dataclass(frozen=True, eq=False)
class Relaxation:
    """N images' LP relaxations: boxes ``xl``, ``xu`` (N, d); sound pre-activation bounds ``lower[l]``,
    ``upper[l]`` (N, n_l) per hidden layer; ``polys`` (N polytopes) built with ``envelope``."""

    network: Network
    xl: Array
    xu: Array
    lower: tuple[Array, ...]
    upper: tuple[Array, ...]
    polys: list[Polytope]
    envelope: Envelope

    def polytope(self, i: int, envelope: Envelope | None = None) -> Polytope:
        """Image i's polytope with ``envelope`` (default: the relaxation's own, already built)."""
        if envelope is None or envelope == self.envelope:
            return self.polys[i]
        return build_polytope(self.network, self.xl[i], self.xu[i],
                              [(lo[i], hi[i]) for lo, hi in zip(self.lower, self.upper)], envelope)


def relax(network: Network, x: Array, eps: float, envelope: Envelope) -> Relaxation:
    """Polytopes of the eps-balls (∩ [0, 1]) around the rows of x (N, d), built in one batched call."""
    xl, xu = input_box(x, eps)
    b = crown_ibp_bounds(network, xl, xu)
    polys = build_polytopes(network, xl, xu, b.lower, b.upper, envelope) if len(x) else []
    return Relaxation(network, xl, xu, tuple(b.lower), tuple(b.upper), polys, envelope)


def with_max_column(poly: Polytope, label: int, name: str = "t") -> Extension:
    """``poly`` plus a column t (``ext.cols``) with rows ``t - logit_k >= 0`` for every k != label, so
    that ``logit_label - t`` is at most the worst-case margin ``logit_label - max_k logit_k`` and equals
    it at a maximum. t's bounds, [max_k lo_k, max_k hi_k] over the logit column bounds, contain
    ``max_k logit_k`` for every point of the polytope."""
    C = poly.network.n_classes
    others = np.array([k for k in range(C) if k != label])
    logit = poly.handle(Role.LOGIT)
    lo = float(np.max(poly.col_lo[logit.slice][others]))
    hi = float(np.max(poly.col_hi[logit.slice][others]))
    k = len(others)
    pick = sp.coo_matrix((np.ones(k), (np.arange(k), others)), shape=(k, C))
    return poly.extend(name, col_lo=[lo], col_hi=[hi], rows=[
        Rows(f"{name}>=logit", {name: np.ones((k, 1)), logit: -pick}, np.zeros(k), np.full(k, np.inf), keys=others)])


def with_fallback(rel: Relaxation, i: int, attempt: Callable[[Polytope], T | None],
                  envelope: Envelope | None = None) -> tuple[T | None, Envelope | None]:
    """Run ``attempt`` on image i's polytope under ``envelope`` (default the relaxation's) and then its
    :attr:`~polylens.relax.envelopes.Envelope.fallbacks` (a hull falls back to the pair), until one
    returns something other than None without a SolverError. Returns (that result, the envelope that
    gave it), or (None, None) when every envelope failed."""
    first = rel.envelope if envelope is None else envelope
    for env in first.fallbacks:
        try:
            out = attempt(rel.polytope(i, env))
        except SolverError:
            continue
        if out is not None:
            return out, env
    return None, None
