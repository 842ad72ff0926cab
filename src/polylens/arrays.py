"""Read-only arrays: the one helper every frozen result and value uses for its array fields.

A frozen dataclass is only a value if its arrays cannot change under it, so every array a result
or value keeps is a private, read-only copy:

>>> import numpy as np
>>> a = np.arange(3.0)
>>> f = frozen(a)
>>> f.flags.writeable, f is a, f.dtype == np.float64
(False, False, True)
>>> frozen([1, 2], np.int64).tolist()
[1, 2]
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = np.ndarray

__all__ = ["frozen"]


def frozen(a: Any, dtype: Any = np.float64, *, order: str = "K") -> Array:
    """A read-only copy of ``a`` as ``dtype`` (any shape; the shape of ``a``).

    ``order`` is numpy's memory layout of the copy: ``"K"`` (default) keeps the layout of ``a``
    (matrix products then round exactly as they did on ``a``), ``"C"`` makes it C-contiguous. The copy
    is never a view of ``a``, so making it read-only never changes the caller's array.
    """
    out = np.array(a, dtype=dtype, copy=True, order=order)
    out.setflags(write=False)
    return out
