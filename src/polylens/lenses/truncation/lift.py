"""Width increase (TRUNCATION.md section 2, [Ewa25] Sec. 2.3 and Lemma 2.2).

``iota(n, m)`` embeds R^n in R^m as the block matrix [I_n; 0]. For W in R^(m x n) with n < m,
:func:`invertible_extension` appends m - n columns to W so that W = W~ iota(n, m); when W is
injective the extra columns span the orthogonal complement of its range and W~ is invertible, so
sigma(W x + b) = W~ tau_{W~,b}(iota(n, m) x) + b (Lemma 2.2).
"""

from __future__ import annotations

import numpy as np

from polylens.errors import ParameterError

__all__ = ["iota", "invertible_extension", "numerical_rank"]

Array = np.ndarray


def numerical_rank(A: Array) -> int:
    """The rank of ``A`` as numpy's SVD rule counts it: singular values above
    max(shape) * eps * largest singular value."""
    A = np.asarray(A, dtype=np.float64)
    if A.size == 0:
        return 0
    s = np.linalg.svd(A, compute_uv=False)
    return int(np.sum(s > max(A.shape) * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)))


def iota(n: int, m: int) -> Array:
    """The embedding iota(n, m) = [I_n; 0] of shape (m, n) (TRUNCATION.md section 2), n <= m."""
    if not (isinstance(n, (int, np.integer)) and isinstance(m, (int, np.integer)) and 1 <= n <= m):
        raise ParameterError(f"iota(n, m) needs integers 1 <= n <= m. Got n={n!r}, m={m!r} instead.")
    out = np.zeros((int(m), int(n)))
    out[: int(n), : int(n)] = np.eye(int(n))
    return out


def invertible_extension(W: Array) -> tuple[Array, bool]:
    """(W~, invertible): W~ of shape (m, m) with W~ iota(n, m) = W exactly (W's columns first),
    for W of shape (m, n), n <= m ([Ewa25] Lemma 2.2). The m - n extra columns are an orthonormal
    basis of the orthogonal complement of W's range, scaled to W's largest singular value; they make
    W~ invertible exactly when W is injective (``invertible`` says whether it is, numerically)."""
    W = np.asarray(W, dtype=np.float64)
    m, n = W.shape
    if n > m:
        raise ParameterError(f"invertible_extension needs a matrix with no more columns than rows. Got {W.shape}.")
    if n == m:
        return W.copy(), numerical_rank(W) == m
    U, s, _ = np.linalg.svd(W, full_matrices=True)
    rank = numerical_rank(W)
    scale = float(s[0]) if s.size and s[0] > 0 else 1.0
    # Columns of U past the rank span range(W)^perp; take the last m - n of them.
    extra = U[:, n:] * scale
    Wt = np.concatenate([W, extra], axis=1)
    return Wt, rank == n
