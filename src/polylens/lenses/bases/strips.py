"""Strips of examples along a basis vector, and how coherent they are.

For vector i of a basis with codes c_i (its coordinate of every activation row), take m targets t_1 <
... < t_m evenly spaced from the smallest to the largest code, and the points mu + (t_j - mean(c_i)) d_i
of activation space: the mean moved along that one direction. For each target the strip holds the
example whose activation lies nearest that point in L2 (among a seeded subset of ``candidates`` rows;
an example appears once per strip). For a convolution layer an example is the receptive-field patch of
one position of one image.

**Coherence** (a quantitative stand-in for the paper's user study): with s_1..s_m the strip's images
as vectors, the mean distance between neighbours, d(strip) = mean_j |s_{j+1} - s_j|, against the same
for ``shuffles`` seeded random orders of the same images: coherence = 1 - d(strip) / mean d(shuffled).
0 means neighbours are no more alike than in a random order, 1 that neighbours are identical; a strip
that reads as a smooth transition scores well above 0. **Monotonicity**: |Spearman rho| between the
position in the strip and the image's mean intensity (ink).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polylens.lenses.bases.activations import Activations
from polylens.lenses.bases.basis import Basis

Array = np.ndarray

__all__ = ["Strip", "coherence", "make_strip", "patches"]


@dataclass(frozen=True)
class Strip:
    """One strip: the basis and vector, the targets, the rows chosen (``samples``: dataset index of each
    example, ``positions``: its spatial position), the codes of the chosen rows, and the coherence and
    monotonicity of its images."""

    basis: str
    component: int
    targets: tuple[float, ...]
    samples: tuple[int, ...]
    positions: tuple[int, ...]
    codes: tuple[float, ...]
    coherence: float
    monotonicity: float

    def to_dict(self) -> dict:
        return {"basis": self.basis, "component": self.component, "targets": list(self.targets),
                "samples": list(self.samples), "positions": list(self.positions), "codes": list(self.codes),
                "coherence": self.coherence, "monotonicity": self.monotonicity}


def patches(images: Array, acts: Activations, samples: Array, positions: Array) -> Array:
    """The input seen by each (sample, position): the whole image for a dense layer, else the
    receptive-field box (zero outside the image). ``images``: (N, H, W) floats."""
    images = np.asarray(images, dtype=np.float64)
    samples, positions = np.asarray(samples, dtype=np.int64), np.asarray(positions, dtype=np.int64)
    if acts.receptive is None:
        return images[samples]
    boxes = acts.receptive[positions]
    h, w = int(boxes[0, 1] - boxes[0, 0]), int(boxes[0, 3] - boxes[0, 2])
    H, W = images.shape[1:]
    out = np.zeros((len(samples), h, w))
    for i, (s, (r0, r1, c0, c1)) in enumerate(zip(samples, boxes)):
        rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, H), max(c0, 0), min(c1, W)
        if rr1 > rr0 and cc1 > cc0:
            out[i, rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = images[s, rr0:rr1, cc0:cc1]
    return out


def _spearman(a: Array, b: Array) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def coherence(imgs: Array, shuffles: int = 50, seed: int = 0) -> tuple[float, float]:
    """(coherence, monotonicity) of a strip of images (m, ...) (see the module docstring)."""
    flat = np.asarray(imgs, dtype=np.float64).reshape(len(imgs), -1)
    m = len(flat)
    if m < 3:
        return 0.0, 0.0

    def step(order):
        f = flat[order]
        return float(np.mean(np.linalg.norm(f[1:] - f[:-1], axis=1)))

    rng = np.random.default_rng(seed)
    base = np.mean([step(rng.permutation(m)) for _ in range(shuffles)])
    coh = 0.0 if base == 0 else 1.0 - step(np.arange(m)) / base
    mono = abs(_spearman(np.arange(m, dtype=np.float64), flat.mean(axis=1)))
    return float(coh), float(mono)


def make_strip(basis: Basis, component: int, acts: Activations, codes: Array, images: Array, *, length: int = 8,
               candidates: int = 4000, seed: int = 0, shuffles: int = 50) -> tuple[Strip, Array]:
    """The strip along vector ``component`` of ``basis`` (see the module docstring) and its images.
    ``codes``: ``basis.project(acts.values)``; ``images``: (N, H, W) inputs as floats."""
    V = acts.values
    rng = np.random.default_rng(seed)
    cand = np.arange(len(V)) if len(V) <= candidates else np.sort(rng.choice(len(V), candidates, replace=False))
    c = codes[cand, component]
    d = basis.directions[component]
    lo, hi = float(c.min()), float(c.max())
    targets = np.linspace(lo, hi, length)
    centre = float(c.mean())
    Vc = V[cand]
    used: set[tuple[int, int]] = set()
    used_samples: set[int] = set()
    chosen = []
    for t in targets:
        point = basis.mean + (t - centre) * d
        dist = np.sum((Vc - point) ** 2, axis=1)
        for j in np.argsort(dist, kind="stable"):
            s = int(acts.sample[cand[j]])
            key = (s, int(acts.position[cand[j]]))
            if key not in used and (acts.receptive is not None or s not in used_samples):
                used.add(key)
                used_samples.add(s)
                chosen.append(int(cand[j]))
                break
    rows = np.asarray(chosen, dtype=np.int64)
    imgs = patches(images, acts, acts.sample[rows], acts.position[rows])
    coh, mono = coherence(imgs, shuffles=shuffles, seed=seed)
    strip = Strip(basis.name, int(component), tuple(float(t) for t in targets),
                  tuple(int(s) for s in acts.sample[rows]), tuple(int(p) for p in acts.position[rows]),
                  tuple(float(v) for v in codes[rows, component]), coh, mono)
    return strip, imgs
