"""Margins of logits: how far the labelled class is ahead of its strongest rival.

>>> import numpy as np
>>> m, rival = margins(np.array([[1.0, 3.0, 2.0]]), np.array([1]))
>>> m.tolist(), rival.tolist()
([1.0], [2])
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray

__all__ = ["margins"]


def margins(logits: Array, labels: Array) -> tuple[Array, Array]:
    """``logit_y - max_{k != y} logit_k`` per row, and the rival k attaining the max (first on ties).

    ``logits`` (N, C), ``labels`` (N,) ints. Returns (margin (N,), rival (N,)). A row is misclassified
    (some other class strictly ahead) exactly when its margin is negative.
    """
    logits = np.asarray(logits, dtype=np.float64)
    idx = np.arange(len(logits))
    other = logits.copy()
    other[idx, labels] = -np.inf
    return logits[idx, labels] - other.max(axis=1), other.argmax(axis=1)
