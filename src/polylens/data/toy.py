"""Seeded toy datasets in the unit square (or cube): the pictures of the truncation lens.

Every generator returns ``(x, y)``: float64 points (N, dim) in [0, 1]^dim and int64 labels, the
same for the same seed. ``clusters``: classes in small balls around spread means (CE24 Prop. 4.1's
hypothesis); ``sls_set``: elongated classes that are sequentially linearly separable in label order
(CE24 Def. 5.1); ``rings``: a disc inside a ring (Ewa25 Thm. 3.3); ``xor`` and ``spirals``: classic
sets no small network separates linearly.

>>> x, y = rings(100, seed=0)
>>> x.shape, sorted(set(y.tolist())), bool(x.min() >= 0 and x.max() <= 1)
((100, 2), [0, 1], True)
"""

from __future__ import annotations

import math

import numpy as np

from polylens.validation import check_float, check_int

__all__ = ["GENERATORS", "clusters", "make", "rings", "sls_set", "spirals", "xor"]

Array = np.ndarray


def _ball(rng, k: int, dim: int, radius: float) -> Array:
    g = rng.normal(size=(k, dim))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return g * (radius * rng.uniform(0, 1, size=(k, 1)) ** (1.0 / dim))


def clusters(n: int = 120, n_classes: int = 2, dim: int = 2, radius: float = 0.05, seed: int = 0) -> tuple[Array, Array]:
    """``n_classes`` classes, each uniform in a ball of ``radius`` around a mean; the means are spread
    on a circle (dim 2) or at random corners-ish positions, kept off the origin so that the points
    p_j of the constructions are linearly independent."""
    n = check_int(n, "n", "clusters", lo=2)
    q = check_int(n_classes, "n_classes", "clusters", lo=2)
    dim = check_int(dim, "dim", "clusters", lo=2)
    radius = check_float(radius, "radius", "clusters", lo=0.0, hi=0.2)
    rng = np.random.default_rng(seed)
    if dim == 2:
        ang = 2 * math.pi * (np.arange(q) / q) + rng.uniform(0, 2 * math.pi / q) * 0.25
        means = 0.5 + 0.3 * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    else:
        means = rng.uniform(0.2, 0.8, size=(q, dim))
    y = np.arange(n) % q
    x = means[y] + _ball(rng, n, dim, radius)
    return np.clip(x, 0, 1), y.astype(np.int64)


def sls_set(n: int = 150, n_classes: int = 2, dim: int = 2, seed: int = 0) -> tuple[Array, Array]:
    """Elongated classes (long thin bars at random angles around spread centres) that are SLS in label
    order for the seeds the tests use; checked by :func:`polylens.lenses.truncation.sls.check_order`."""
    n = check_int(n, "n", "sls_set", lo=2)
    q = check_int(n_classes, "n_classes", "sls_set", lo=2)
    dim = check_int(dim, "dim", "sls_set", lo=2)
    rng = np.random.default_rng(seed)
    ang = 2 * math.pi * np.arange(q) / q + rng.uniform(0, 1)
    centres = np.full((q, dim), 0.5)
    centres[:, 0] += 0.28 * np.cos(ang)
    centres[:, 1] += 0.28 * np.sin(ang)
    if dim > 2:
        centres[:, 2:] += rng.uniform(-0.2, 0.2, size=(q, dim - 2))
    y = np.arange(n) % q
    # a bar perpendicular to the direction from the middle: long along it, thin across
    along = np.stack([-np.sin(ang), np.cos(ang)], axis=1)
    s = rng.uniform(-0.15, 0.15, size=n)
    jitter = rng.normal(scale=0.015, size=(n, dim))
    x = centres[y] + jitter
    x[:, :2] += s[:, None] * along[y]
    return np.clip(x, 0, 1), y.astype(np.int64)


def rings(n: int = 200, inner: float = 0.1, outer: tuple[float, float] = (0.3, 0.45), seed: int = 0) -> tuple[Array, Array]:
    """A disc of radius ``inner`` (label 0) inside a ring of radii ``outer`` (label 1), centred at
    (0.5, 0.5): concentric data, not SLS, separated by the simplex construction."""
    n = check_int(n, "n", "rings", lo=2)
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int64)
    ang = rng.uniform(0, 2 * math.pi, size=n)
    r = np.where(y == 0, inner * np.sqrt(rng.uniform(0, 1, size=n)), rng.uniform(outer[0], outer[1], size=n))
    x = 0.5 + np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    return np.clip(x, 0, 1), y


def xor(n: int = 200, seed: int = 0) -> tuple[Array, Array]:
    """Four blobs at the corners of a square; opposite corners share a label."""
    n = check_int(n, "n", "xor", lo=4)
    rng = np.random.default_rng(seed)
    corner = np.arange(n) % 4
    cx = np.array([0.25, 0.75, 0.25, 0.75])[corner]
    cy = np.array([0.25, 0.25, 0.75, 0.75])[corner]
    x = np.stack([cx, cy], axis=1) + rng.normal(scale=0.06, size=(n, 2))
    y = np.array([0, 1, 1, 0])[corner].astype(np.int64)
    return np.clip(x, 0, 1), y


def spirals(n: int = 200, turns: float = 1.5, seed: int = 0) -> tuple[Array, Array]:
    """Two interleaved spirals."""
    n = check_int(n, "n", "spirals", lo=2)
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int64)
    t = rng.uniform(0.1, 1.0, size=n)
    ang = 2 * math.pi * turns * t + math.pi * y
    x = 0.5 + 0.42 * np.stack([t * np.cos(ang), t * np.sin(ang)], axis=1) + rng.normal(scale=0.01, size=(n, 2))
    return np.clip(x, 0, 1), y


GENERATORS = {"clusters": clusters, "sls": sls_set, "rings": rings, "xor": xor, "spirals": spirals}


def make(name: str, n: int = 200, seed: int = 0, **kwargs) -> tuple[Array, Array]:
    """The toy set ``name`` (one of :data:`GENERATORS`) with ``n`` points and ``seed``."""
    from polylens.errors import ParameterError

    if name not in GENERATORS:
        raise ParameterError(f"The 'name' parameter of toy.make must be one of {', '.join(map(repr, GENERATORS))}. "
                             f"Got {name!r} instead.")
    return GENERATORS[name](n=n, seed=seed, **kwargs)
