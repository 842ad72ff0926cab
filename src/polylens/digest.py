"""Short content digests of arrays: what identifies a model's weights or a dataset in a results store."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["digest"]


def digest(*arrays: np.ndarray) -> str:
    """The first 16 hex digits of the SHA-256 of the arrays' dtypes, shapes and bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
