"""Image transforms and the seeded split: average-pool downsampling and train/test indices.

>>> import numpy as np
>>> img = np.array([[[0, 255], [255, 255]]], dtype=np.uint8)   # (1, 2, 2)
>>> downsample(img, 2)
array([[[0.75]]])
"""

from __future__ import annotations

import numpy as np

from polylens.errors import ParameterError
from polylens.validation import check_int

__all__ = ["downsample", "split_indices"]


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool ``images`` over non-overlapping ``factor x factor`` blocks.

    ``images``: uint8 (N, H, W), read as ``value / 255``, or float (N, H, W) with values in
    [0, 1]. ``factor`` must be a positive int dividing both H and W (ParameterError otherwise).

    Returns float64 (N, H // factor, W // factor) with values in [0, 1]: output pixel (i, j) is
    the mean of input pixels ``[i*f:(i+1)*f, j*f:(j+1)*f]``. The mean over the whole image is
    preserved (up to rounding), and ``factor == 1`` returns the input as float64 in [0, 1].
    For uint8 input the block sums are exact integers, divided once by ``255 * f * f``.
    """
    f = check_int(factor, "factor", "downsample", lo=1)
    x = np.asarray(images)
    if x.ndim != 3:
        raise ParameterError(f"The 'images' parameter of downsample must be an array of shape (N, H, W). "
                             f"Got shape {x.shape} instead.")
    n, h, w = x.shape
    if h % f or w % f:
        raise ParameterError(f"The 'factor' parameter of downsample must divide the image size {h}x{w}. "
                             f"Got {factor!r} instead.")
    blocks = (n, h // f, f, w // f, f)
    if x.dtype == np.uint8:
        sums = x.reshape(blocks).sum(axis=(2, 4), dtype=np.int64)
        return sums / float(255 * f * f)
    if x.dtype.kind != "f":
        raise ParameterError(f"The 'images' parameter of downsample must have dtype uint8 or a float dtype "
                             f"with values in [0, 1]. Got {x.dtype} instead.")
    if x.size and not np.isfinite(x).all():
        raise ParameterError("The 'images' parameter of downsample must have values in [0, 1]. "
                             f"Got {int(np.count_nonzero(~np.isfinite(x)))} non-finite values instead.")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ParameterError("The 'images' parameter of downsample must have values in [0, 1]. "
                             f"Got values in [{x.min()}, {x.max()}] instead.")
    # Rounding is monotone, so the float mean of values in [0, 1] stays in [0, 1].
    return x.astype(np.float64, copy=False).reshape(blocks).mean(axis=(2, 4))


def split_indices(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into train and test positions.

    Returns ``(train_index, test_index)``, int64 arrays of lengths ``n - n_test`` and ``n_test``,
    disjoint, together a permutation of ``range(n)``, both in shuffled order. The same
    ``(n, n_test, seed)`` gives the same split on every platform (numpy's PCG64 generator).
    """
    n = check_int(n, "n", "split_indices", lo=2)
    n_test = check_int(n_test, "n_test", "split_indices", lo=1, hi=n - 1)
    seed = check_int(seed, "seed", "split_indices", lo=0)
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return perm[n_test:], perm[:n_test]
