"""A plain linear program in matrix form, for LPs that are not a network's polytope.

:class:`MatrixLP` holds ``row_lo <= A v <= row_hi`` and ``col_lo <= v <= col_hi`` with names for its
rows and columns, and offers exactly what the one solver adapter (:class:`polylens.lp.highs.LPSolver`)
and the safe dual bound (:func:`polylens.lp.highs.safe_dual_bound`) read from a
:class:`~polylens.lp.polytope.Polytope`. Lenses whose LPs live in input space (the region of an
activation pattern, a separating hyperplane) build one of these and solve it through the adapter,
so their bounds are rigorous in the same way.

Every column bound must be finite (the safe dual bound needs it): bound free variables by
something the problem guarantees (e.g. the input box, or a radius no larger than the box).

>>> import numpy as np
>>> lp = MatrixLP.from_dense(np.array([[1.0, 1.0]]), [-np.inf], [1.0], [0, 0], [1, 1])
>>> from polylens.lp.highs import LPSolver
>>> round(LPSolver(lp).solve(np.array([-1.0, -2.0])).safe_bound, 9)
-2.0
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from polylens.errors import ParameterError

__all__ = ["LPMatrix", "MatrixLP"]

Array = np.ndarray


def _ro(a, dtype=np.float64) -> Array:
    out = np.array(a, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


class LPMatrix:
    """What the safe dual bound reads from an LP's sparse constraint matrix ``A`` (m, n), computed
    once per LP: shared by :class:`MatrixLP` and :class:`~polylens.lp.polytope.Polytope`."""

    A: sp.spmatrix

    @cached_property
    def At(self) -> sp.csr_matrix:
        """A transposed (n, m), for dual computations."""
        return self.A.T.tocsr()

    @cached_property
    def abs_At(self) -> sp.csr_matrix:
        return abs(self.At)

    @cached_property
    def max_col_nnz(self) -> int:
        """The most nonzeros in one column of A (the length of the longest sum in A^T y)."""
        return int(np.diff(sp.csc_matrix(self.A).indptr).max(initial=0))


@dataclass(frozen=True, eq=False)
class MatrixLP(LPMatrix):
    """``row_lo <= A v <= row_hi``, ``col_lo <= v <= col_hi``. Shapes: A (m, n) sparse; row bounds
    (m,) (infinite where a side is absent); column bounds (n,), finite. ``names``: optional names of
    the columns and rows (for ``.lp``/``.mps`` dumps), default ``v[j]`` and ``r[i]``."""

    A: sp.csr_matrix
    row_lo: Array
    row_hi: Array
    col_lo: Array
    col_hi: Array
    col_labels: tuple[str, ...] = ()
    row_labels: tuple[str, ...] = ()
    integer: Array | None = None

    def __post_init__(self):
        A = sp.csr_matrix(self.A, dtype=np.float64)
        m, n = A.shape
        object.__setattr__(self, "A", A)
        for name, size in (("row_lo", m), ("row_hi", m), ("col_lo", n), ("col_hi", n)):
            v = _ro(getattr(self, name))
            if v.shape != (size,):
                raise ParameterError(f"The '{name}' of a MatrixLP must have shape ({size},). Got {v.shape} instead.")
            object.__setattr__(self, name, v)
        if not (np.all(np.isfinite(self.col_lo)) and np.all(np.isfinite(self.col_hi))):
            raise ParameterError("Every column bound of a MatrixLP must be finite (the safe dual bound needs it).")
        if np.any(self.col_lo > self.col_hi) or np.any(self.row_lo > self.row_hi):
            raise ParameterError("A MatrixLP has a lower bound above its upper bound.")
        for name, size in (("col_labels", n), ("row_labels", m)):
            labels = tuple(getattr(self, name))
            if labels and len(labels) != size:
                raise ParameterError(f"A MatrixLP needs {size} {name}; got {len(labels)}.")
            object.__setattr__(self, name, labels)

    @classmethod
    def from_dense(cls, A, row_lo, row_hi, col_lo, col_hi, **names) -> "MatrixLP":
        return cls(sp.csr_matrix(np.asarray(A, dtype=np.float64)), np.asarray(row_lo, dtype=np.float64),
                   np.asarray(row_hi, dtype=np.float64), np.asarray(col_lo, dtype=np.float64),
                   np.asarray(col_hi, dtype=np.float64), **names)

    # -- what the solver adapter reads ------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def n_cols(self) -> int:
        return int(self.A.shape[1])


    @cached_property
    def col_mag(self) -> Array:
        """max(|col_lo|, |col_hi|) per column."""
        return np.maximum(np.abs(self.col_lo), np.abs(self.col_hi))

    def col_names(self) -> list[str]:
        return list(self.col_labels) or [f"v[{j}]" for j in range(self.n_cols)]

    def row_names(self) -> list[str]:
        return list(self.row_labels) or [f"r[{i}]" for i in range(self.n_rows)]

    def with_rows(self, A_rows, lo: Sequence[float], hi: Sequence[float]) -> "MatrixLP":
        """This LP with more rows ``lo <= A_rows v <= hi``."""
        A_rows = sp.csr_matrix(A_rows, dtype=np.float64)
        extra = tuple(f"r[{i}]" for i in range(self.n_rows, self.n_rows + A_rows.shape[0])) if self.row_labels else ()
        return MatrixLP(sp.vstack([self.A, A_rows]).tocsr(), np.concatenate([self.row_lo, lo]),
                        np.concatenate([self.row_hi, hi]), self.col_lo, self.col_hi, self.col_labels,
                        self.row_labels + extra, self.integer)
