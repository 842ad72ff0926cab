"""Ablation along a basis: cumulatively project out directions (replace them by the mean) and measure
the accuracy.

Removing the first k vectors of a basis replaces every vector v of the layer by

    v' = v - P_k (v - mu),

with P_k the orthogonal projector onto the span of those k vectors and mu the layer's mean: the
component of v in that span is set to the mean's. With k = 0 nothing changes; when the k vectors span
the whole space, every v becomes mu and the model predicts what it predicts for the mean activation.
``top_first`` removes vectors in the basis's order (highest variance first), ``bottom_first`` in
reverse order.

Each k costs one pass of the rest of the model over the data, so wide layers are measured on a grid:
at most ``points`` values of k, evenly spaced and always including 0 and the number of vectors; the
accuracies at other k are None (null in JSON) and ``evaluated`` lists the k that were measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from polylens.lenses.bases.activations import Probe
from polylens.lenses.bases.basis import Basis, gram_schmidt

Array = np.ndarray

__all__ = ["Ablation", "ablate", "k_grid", "projector_out"]


def k_grid(size: int, points: int) -> list[int]:
    """The k at which ablation is measured: every k in 0..size when that is at most ``points`` values,
    else ``points`` evenly spaced values including 0 and ``size``."""
    if size + 1 <= points:
        return list(range(size + 1))
    return sorted({int(round(v)) for v in np.linspace(0, size, max(points, 2))})


def projector_out(Q: Array, mean: Array) -> Callable[[Array], Array]:
    """v -> v - (v - mean) Q^T Q for orthonormal rows Q (r, w)."""
    Q = np.asarray(Q, dtype=np.float64)
    if len(Q) == 0:
        return lambda V: V
    return lambda V: V - ((V - mean) @ Q.T) @ Q


@dataclass(frozen=True)
class Ablation:
    """Accuracy after removing k vectors, k = 0..size, in both orders (None where not evaluated)."""

    top_first: tuple[float | None, ...]
    bottom_first: tuple[float | None, ...]
    evaluated: tuple[int, ...]
    mean_accuracy: float

    @property
    def grid(self) -> bool:
        return len(self.evaluated) < len(self.top_first)

    def to_dict(self) -> dict:
        return {"top_first": list(self.top_first), "bottom_first": list(self.bottom_first),
                "evaluated": list(self.evaluated), "grid": self.grid, "mean_accuracy": self.mean_accuracy}


def ablate(probe: Probe, basis: Basis, x: Array, y: Array, *, points: int = 33,
           units: Callable[[int, int], None] = lambda d, t: None) -> Ablation:
    """Accuracy of ``probe``'s model on (x, y) with the top (bottom) k vectors of ``basis`` projected
    out, for k on :func:`k_grid` (see the module docstring)."""
    y = np.asarray(y)
    ks = k_grid(basis.size, points)
    D = basis.directions
    Q_top, new_top = gram_schmidt(D)
    Q_bot, new_bot = gram_schmidt(D[::-1])
    # rank of the span of the first k vectors, in each order
    r_top = np.concatenate([[0], np.cumsum(new_top)])
    r_bot = np.concatenate([[0], np.cumsum(new_bot)])
    cache: dict[tuple[str, int], float] = {}
    evaluate = probe.evaluator(x)

    full = len(Q_top)

    def acc(Q: Array, r: int, key: str) -> float:
        key = "none" if r == 0 else "all" if r == full else key  # equal spans in both orders
        if (key, r) not in cache:
            logits = evaluate(projector_out(Q[:r], basis.mean))
            cache[(key, r)] = float(np.mean(np.argmax(logits, axis=1) == y))
        return cache[(key, r)]

    top: list[float | None] = [None] * (basis.size + 1)
    bot: list[float | None] = [None] * (basis.size + 1)
    done = 0
    for k in ks:
        top[k] = acc(Q_top, int(r_top[k]), "top")
        bot[k] = acc(Q_bot, int(r_bot[k]), "bot")
        done += 1
        units(done, len(ks))
    mean_logits = probe.logits(x[:1], lambda V: np.broadcast_to(basis.mean, V.shape).copy())
    mean_acc = float(np.mean(y == np.argmax(mean_logits, axis=1)[0]))
    return Ablation(tuple(top), tuple(bot), tuple(ks), mean_acc)
