"""Attacks: search for inputs in an L-infinity ball that change the prediction.

Projected gradient descent on the margin ``logit_y - max_{k != y} logit_k`` (the Carlini-Wagner
margin loss), with gradients by exact backpropagation through the :class:`Network` in numpy,
several restarts, and targeted runs towards every class. An attack only ever proposes: a candidate
counts as a counterexample once :func:`is_counterexample` confirms, with a real forward pass, that it
lies in the region and is misclassified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polylens.nn.network import Network

Array = np.ndarray


def input_gradient(network: Network, x: Array, dlogits: Array) -> Array:
    """Gradient of ``sum(dlogits * logits(x))`` with respect to x, by backpropagation. x: (N, d)."""
    fp = network.forward(x)
    g = dlogits
    for l in range(len(network.layers) - 1, 0, -1):
        g = g @ network.layers[l].W
        g = g * network.activations[l - 1].derivative(fp.pre[l - 1])
    return g @ network.layers[0].W


def is_counterexample(network: Network, x: Array, labels: Array, xl: Array, xu: Array) -> Array:
    """Boolean (N,): the row lies in [xl, xu] and some other class's logit is strictly larger than the label's."""
    x = np.atleast_2d(x)
    inside = np.all((x >= xl) & (x <= xu), axis=1)
    logits = network(x)
    lab = logits[np.arange(len(x)), labels]
    other = logits.copy()
    other[np.arange(len(x)), labels] = -np.inf
    return inside & (other.max(axis=1) > lab)


@dataclass(frozen=True)
class AttackResult:
    """Best input found per row and whether it is a confirmed counterexample.

    ``x`` (N, d): the most adversarial input found (the one with the smallest margin); ``margin`` (N,)
    its true margin logit_y - max_other; ``found`` (N,) True where it is a confirmed counterexample.
    """

    x: Array
    margin: Array
    found: Array


def _margin(network: Network, x: Array, labels: Array) -> tuple[Array, Array]:
    logits = network(x)
    idx = np.arange(len(x))
    lab = logits[idx, labels]
    other = logits.copy()
    other[idx, labels] = -np.inf
    return lab - other.max(axis=1), other.argmax(axis=1)


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
    idx = np.arange(N)
    best_x = x.copy()
    best_m, _ = _margin(network, x, labels)
    step = np.maximum(xu - xl, 0) / 4.0  # generous first steps, shrinking below

    def run(start: Array, target: Array | None):
        nonlocal best_x, best_m
        z = start.copy()
        for t in range(steps):
            m, comp = _margin(network, z, labels)
            better = m < best_m
            best_x = np.where(better[:, None], z, best_x)
            best_m = np.where(better, m, best_m)
            k = comp if target is None else target
            d = np.zeros((N, network.n_classes))
            d[idx, k] += 1.0
            d[idx, labels] -= 1.0
            g = input_gradient(network, z, d)
            size = step * (1.0 - t / steps) + 1e-12
            z = np.clip(z + size * np.sign(g), xl, xu)
        m, _ = _margin(network, z, labels)
        better = m < best_m
        best_x = np.where(better[:, None], z, best_x)
        best_m = np.where(better, m, best_m)

    run(x, None)
    for r in range(max(0, restarts - 1)):
        u = np.stack([np.random.default_rng([seed, int(i), r]).random(x.shape[1]) for i in row_ids]) if N else x
        run(xl + u * (xu - xl), None)
    if targeted:
        for k in range(network.n_classes):
            tgt = np.full(N, k)
            mask = labels != k
            if mask.any():
                run(x, np.where(mask, tgt, (labels + 1) % network.n_classes))
    found = is_counterexample(network, best_x, labels, xl, xu)
    return AttackResult(best_x, best_m, found)
