"""Content digests of arrays: the one fingerprint polylens stores to recognise a model or a data set.

A results store (``polylens.store``) records the digest of the network and the data it was made
from, so that a directory made for other inputs is refused instead of silently mixed. The digest
covers every array's dtype and shape as well as its bytes: ``zeros((2, 3))`` and ``zeros((3, 2))``
(same bytes) differ, and so do the same values as float32 and float64.

>>> import numpy as np
>>> digest(np.zeros((2, 3))) == digest(np.zeros((3, 2)))
False
>>> len(digest(np.arange(4)))
16
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["digest"]


def digest(*arrays: np.ndarray) -> str:
    """The first 16 hex digits of the SHA-256 of every array's dtype, shape and C-order bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
