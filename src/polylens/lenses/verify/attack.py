"""Attacks: search for inputs in an L-infinity ball that change the prediction.

Projected gradient descent on the margin ``logit_y - max_{k != y} logit_k`` (the Carlini-Wagner
margin loss), with gradients by exact backpropagation through the :class:`Network`
(:mod:`polylens.nn.linearise`), several restarts, and targeted runs towards every class; each run is
one :func:`polylens.nn.search.box_search` with signed steps. An attack only ever proposes: a candidate
counts as a counterexample once :func:`is_counterexample` confirms, with a real forward pass, that it
lies in the region and is misclassified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polylens.nn.margins import margins
from polylens.nn.network import Network
from polylens.nn.search import MarginObjective, SignedSteps, box_search, row_seeded_points

Array = np.ndarray

__all__ = ["AttackResult", "is_counterexample", "pgd_attack"]

#: PGD's step schedule: a quarter of the box width at first, decaying linearly; the floor keeps the
#: step of a zero-width coordinate positive (the clip then holds it in place).
PGD_STEPS = SignedSteps(first=0.25, floor=1e-12)


def is_counterexample(network: Network, x: Array, labels: Array, xl: Array, xu: Array) -> Array:
    """Boolean (N,): the row lies in [xl, xu] and some other class's logit is strictly larger than the label's."""
    x = np.atleast_2d(x)
    inside = np.all((x >= xl) & (x <= xu), axis=1)
    return inside & (margins(network(x), labels)[0] < 0)


@dataclass(frozen=True)
class AttackResult:
    """Best input found per row and whether it is a confirmed counterexample.

    ``x`` (N, d): the most adversarial input found (the one with the smallest margin); ``margin`` (N,)
    its true margin logit_y - max_other; ``found`` (N,) True where it is a confirmed counterexample.
    """

    x: Array
    margin: Array
    found: Array


def pgd_attack(network: Network, x: Array, labels: Array, xl: Array, xu: Array, *, steps: int = 30,
               restarts: int = 2, targeted: bool = True, seed: int = 0, row_ids: Array | None = None) -> AttackResult:
    """PGD within the box [xl, xu] (rows of shape (N, d)), batched over N inputs.

    Runs ``restarts`` untargeted runs (the first from x, the rest from uniform random points in the box)
    and, if ``targeted``, one run towards each other class. Keeps the lowest-margin point per row.
    Random starts of row i are drawn from a generator seeded by (seed, row_ids[i]), so a row's result
    does not depend on which other rows share its batch (a resumed sweep reproduces an uninterrupted one).
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    labels = np.asarray(labels, dtype=np.int64)
    xl, xu = np.atleast_2d(xl), np.atleast_2d(xu)
    N = len(x)
    row_ids = np.arange(N) if row_ids is None else np.asarray(row_ids, dtype=np.int64)
    best_x = x.copy()
    best_v = -margins(network(x), labels)[0]  # the search maximises minus the margin

    def run(start: Array, rivals: Array | None):
        nonlocal best_x, best_v
        r = box_search(MarginObjective(network, labels, sign=-1.0, rivals=rivals), start, xl, xu, steps=steps,
                       schedule=PGD_STEPS)
        better = r.value > best_v
        best_x = np.where(better[:, None], r.x, best_x)
        best_v = np.where(better, r.value, best_v)

    run(x, None)
    for r in range(max(0, restarts - 1)):
        run(row_seeded_points(xl, xu, seed, row_ids, r), None)
    if targeted:
        for k in range(network.n_classes):
            mask = labels != k
            if mask.any():
                run(x, np.where(mask, k, (labels + 1) % network.n_classes))
    found = is_counterexample(network, best_x, labels, xl, xu)
    return AttackResult(best_x, -best_v, found)
