"""Gradient search in an input box: the one routine behind attacks, counterfactual searches and neuron
extremes.

:func:`box_search` maximises an objective over the box ``[lo, hi]`` from many starts at once
(one per row), with one of two step schedules:

* :class:`SignedSteps` (projected signed-gradient ascent, as in PGD): ``z <- clip(z + size_t * sign(G))``
  with ``size_t = first * (hi - lo) * (1 - t / steps) + floor``; every iterate is evaluated and the best
  point ever seen is returned (first on ties), so the result is never worse than the start;
* :class:`AdaptiveSteps` (normalised ascent with step control): ``P = clip(X + step * G / max|G|)``,
  accepted only when the objective improves; the step grows by ``grow`` after an accepted move (up to
  ``largest``) and shrinks by ``shrink`` after a rejected one, until every row's step is below
  ``smallest``.

The objective is any value with ``value(X) -> (S,)`` and ``value_and_gradient(X) -> ((S,), (S, d))``
(the "gradient" is the ascent direction; it may be a surrogate, as for a targeted attack).
:class:`MarginObjective` covers the margin searches: ``sign * (logit_y - max_{k != y} logit_k)``,
ascending along ``sign * (e_y - e_r)`` with r the runner-up (untargeted) or a given rival (targeted).

A search only proposes: callers confirm what it finds with a real forward pass. Nothing here draws
random numbers; :func:`row_seeded_points` gives random starts seeded per row id, so that a row's
search does not depend on which other rows share its batch (a resumed sweep reproduces an
uninterrupted one).

>>> import numpy as np
>>> from polylens.nn import Network
>>> net = Network.from_arrays([np.array([[1.0], [-1.0]])], [np.zeros(2)], [])
>>> obj = MarginObjective(net, np.array([1]), sign=1.0)       # raise logit 1 over logit 0
>>> r = box_search(obj, np.array([[0.5]]), np.zeros(1), np.ones(1), steps=10, schedule=SignedSteps())
>>> r.x.tolist(), r.value.tolist()
([[0.0]], [0.0])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from polylens.nn.linearise import linearise
from polylens.nn.margins import margins
from polylens.nn.network import Network

Array = np.ndarray

__all__ = ["AdaptiveSteps", "BoxSearchResult", "L1Priced", "MarginObjective", "SearchObjective", "SignedSteps",
           "box_search", "row_seeded_points"]


class SearchObjective(Protocol):
    """What :func:`box_search` maximises, row by row: values (S,) and ascent directions (S, d)."""

    def value(self, X: Array) -> Array: ...

    def value_and_gradient(self, X: Array) -> tuple[Array, Array]: ...


@dataclass(frozen=True, eq=False)
class MarginObjective:
    """``sign * margin`` with margin ``logit_y - max_{k != y} logit_k`` of ``labels`` (S,) at each row.

    The ascent direction is the input gradient of ``sign * (logit_y - logit_r)``: with ``rivals=None``
    r is the runner-up at the point (the gradient of the objective itself); with ``rivals`` (S,) it is
    that class (a targeted attack: ``sign=-1`` pushes the rival up and the label down).
    """

    network: Network
    labels: Array
    sign: float = 1.0
    rivals: Array | None = None

    def value(self, X: Array) -> Array:
        return self.sign * margins(self.network(X), self.labels)[0]

    def value_and_gradient(self, X: Array) -> tuple[Array, Array]:
        lin = linearise(self.network, X)
        m, runner_up = margins(lin.logits, self.labels)
        rival = runner_up if self.rivals is None else self.rivals
        idx = np.arange(len(m))
        cot = np.zeros((len(m), self.network.n_classes))
        cot[idx, rival] -= self.sign
        cot[idx, self.labels] += self.sign
        return self.sign * m, lin.gradient(cot)


@dataclass(frozen=True, eq=False)
class L1Priced:
    """``objective(x) - price * ||x - centre||_1`` per row: another objective with an L1 price on moving
    away from ``centre`` ((d,) or (S, d)); its ascent direction subtracts ``price * sign(x - centre)``
    (a subgradient of the price)."""

    objective: SearchObjective
    centre: Array
    price: float

    def value(self, X: Array) -> Array:
        return self.objective.value(X) - self.price * np.abs(X - self.centre).sum(axis=1)

    def value_and_gradient(self, X: Array) -> tuple[Array, Array]:
        v, g = self.objective.value_and_gradient(X)
        return v - self.price * np.abs(X - self.centre).sum(axis=1), g - self.price * np.sign(X - self.centre)


@dataclass(frozen=True)
class SignedSteps:
    """Projected signed-gradient ascent with a linearly decaying step (see the module docstring):
    ``first`` is the first step as a fraction of the box width, ``floor`` an absolute addition to every
    step (keeps a zero-width coordinate's step from being exactly zero)."""

    first: float = 0.25
    floor: float = 0.0


@dataclass(frozen=True)
class AdaptiveSteps:
    """Normalised ascent accepting only improvements (see the module docstring); ``first``, ``largest``
    and ``smallest`` are the largest move of any coordinate."""

    first: float = 0.25
    grow: float = 1.5
    shrink: float = 0.5
    largest: float = 1.0
    smallest: float = 1e-14


@dataclass(frozen=True, eq=False)
class BoxSearchResult:
    """The best point of each row's search, ``x`` (S, d), and its objective ``value`` (S,)."""

    x: Array
    value: Array


def box_search(objective: SearchObjective, starts: Array, lo: Array, hi: Array, *, steps: int,
               schedule: SignedSteps | AdaptiveSteps) -> BoxSearchResult:
    """Maximise ``objective`` over the box [lo, hi] (scalars, (d,) or (S, d)) from each row of ``starts``
    (S, d), for ``steps`` iterations of ``schedule`` (see the module docstring). Starts are clipped into
    the box."""
    z = np.clip(starts, lo, hi)
    if isinstance(schedule, AdaptiveSteps):
        return _adaptive(objective, z, lo, hi, steps, schedule)
    step = np.maximum(hi - lo, 0.0) * schedule.first
    best_x, best_v = z, None
    for t in range(steps + 1):
        if t < steps:
            v, G = objective.value_and_gradient(z)
        else:
            v = objective.value(z)
        if best_v is None:
            best_x, best_v = z.copy(), v.copy()
        else:
            better = v > best_v
            best_x = np.where(better[:, None], z, best_x)
            best_v = np.where(better, v, best_v)
        if t < steps:
            size = step * (1.0 - t / steps) + schedule.floor
            z = np.clip(z + size * np.sign(G), lo, hi)
    return BoxSearchResult(best_x, best_v)


def _adaptive(objective: SearchObjective, X: Array, lo: Array, hi: Array, steps: int,
              schedule: AdaptiveSteps) -> BoxSearchResult:
    F, G = objective.value_and_gradient(X)
    step = np.full(len(X), schedule.first)
    for _ in range(steps):
        scale = np.abs(G).max(axis=1)
        move = np.where(scale[:, None] > 0, G / np.where(scale > 0, scale, 1.0)[:, None], 0.0)
        P = np.clip(X + step[:, None] * move, lo, hi)
        FP, GP = objective.value_and_gradient(P)
        ok = FP > F
        X = np.where(ok[:, None], P, X)
        F = np.where(ok, FP, F)
        G = np.where(ok[:, None], GP, G)
        step = np.where(ok, np.minimum(step * schedule.grow, schedule.largest), step * schedule.shrink)
        if np.all(step < schedule.smallest):
            break
    return BoxSearchResult(X, F)


def row_seeded_points(lo: Array, hi: Array, seed: int, row_ids: Array, draw: int) -> Array:
    """Uniform random points of the boxes [lo, hi] (S, d), row i drawn from a generator seeded by
    ``(seed, row_ids[i], draw)``: the same row id gets the same point whatever batch it is in."""
    lo, hi = np.atleast_2d(lo), np.atleast_2d(hi)
    u = np.stack([np.random.default_rng([seed, int(i), draw]).random(lo.shape[1]) for i in row_ids]) \
        if len(row_ids) else np.zeros((0, lo.shape[1]))
    return lo + u * (hi - lo)
