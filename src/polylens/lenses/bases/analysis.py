"""The whole measurement of one layer: activations, every basis, explained variance, ablation, strips.

:func:`analyse` is what the lens, the explorer and the scripts call; it returns a :class:`LayerBases`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from polylens.errors import ParameterError
from polylens.lenses.bases.ablation import Ablation, ablate
from polylens.lenses.bases.activations import Activations, NetworkProbe, Probe, TorchProbe, make_probe
from polylens.lenses.bases.basis import BASES, Basis, fit_basis, stats
from polylens.lenses.bases.strips import Strip, make_strip

Array = np.ndarray

__all__ = ["BasisResult", "LayerBases", "analyse", "input_images"]

#: A layer this narrow is the degenerate case: every basis is complete with a handful of vectors.
DEGENERATE_WIDTH = 3
#: Activation rows a strip chooses its examples among (a seeded subset when there are more).
STRIP_CANDIDATES = 4000


@dataclass(frozen=True, eq=False)
class BasisResult:
    """One basis of the layer: the fitted :class:`Basis`, its ablation, its strips (with their images)
    and one picture per vector shown (its input-space weight map or receptive-field picture)."""

    basis: Basis
    ablation: Ablation | None
    strips: tuple[Strip, ...]
    strip_images: tuple[Array, ...]
    pictures: tuple[Array, ...]
    picture_kind: str

    def to_dict(self) -> dict:
        b = self.basis
        return {"explained_variance": [float(v) for v in b.explained_variance],
                "cumulative": [float(v) for v in b.cumulative],
                "k80": b.k80(), "k99": b.k99(), "vectors": b.size, "orthogonal": b.orthogonal,
                "complete": b.complete, "note": b.note,
                "ablation": None if self.ablation is None else self.ablation.to_dict(),
                "strips": [s.to_dict() for s in self.strips],
                "coherence": _mean([s.coherence for s in self.strips]),
                "monotonicity": _mean([s.monotonicity for s in self.strips])}


def _mean(v: Sequence[float]) -> float | None:
    return float(np.mean(v)) if len(v) else None


@dataclass(frozen=True, eq=False)
class LayerBases:
    """The bases of one layer of one model on one dataset (see :func:`analyse`)."""

    model: str
    layer: str
    post: bool
    n: int
    width: int
    rows: int
    total_rows: int
    positions: int
    spatial: tuple[int, int] | None
    accuracy: float
    results: dict[str, BasisResult]
    skipped: dict[str, str]
    strip_shape: tuple[int, ...]
    probe_kind: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def degenerate(self) -> str:
        if self.width <= DEGENERATE_WIDTH:
            return (f"This layer has only {self.width} neurons: every basis of it is complete with {self.width} vectors, "
                    f"so k80 and k99 are at most {self.width} and the neurons-versus-components comparison says little "
                    "here (the degenerate case). The comparison means something on wide layers (see docs/bases.md).")
        return ""

    def to_dict(self) -> dict:
        return {"model": self.model, "layer": self.layer, "post": self.post, "n": self.n, "width": self.width,
                "rows": self.rows, "total_rows": self.total_rows, "positions": self.positions,
                "spatial": None if self.spatial is None else list(self.spatial), "accuracy": self.accuracy,
                "bases": {k: r.to_dict() for k, r in self.results.items()}, "skipped": dict(self.skipped),
                "degenerate": self.degenerate, "probe": self.probe_kind,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}

    def _repr_html_(self) -> str:
        from polylens.lenses.bases.lens import bases_section
        from polylens.lenses.base import SectionContext
        from polylens.report.html import section_fragment

        return section_fragment(bases_section(self, SectionContext(None, None, draw=False)))


def input_images(x: Array, probe: Probe, input_shape: Sequence[int]) -> Array:
    """The inputs as (N, H, W) float images for strips (a flat input becomes a 1 x d image)."""
    shape = tuple(int(s) for s in input_shape)
    x = np.asarray(x, dtype=np.float64)
    if isinstance(probe, TorchProbe) and len(probe.input_shape) == 3:
        return x.reshape((len(x),) + probe.input_shape).mean(axis=1)  # channels averaged for display
    if len(shape) == 2:
        return x.reshape((len(x),) + shape)
    return x.reshape(len(x), 1, -1)


def guess_input_shape(d: int) -> tuple[int, ...]:
    """The tensor shape of a bare torch module's input from its flat width: (1, s, s) or (3, s, s) for a
    square image, else (d,)."""
    for c in (1, 3):
        s = int(round(np.sqrt(d / c)))
        if c * s * s == d and s > 1:
            return (c, s, s)
    return (int(d),)


def _pictures(probe: Probe, basis: Basis, count: int, strip_imgs: Sequence[Array]) -> tuple[list[Array], str]:
    """One picture per shown vector: its map in input space when the layer reads the input directly
    (first dense layer: d^T W_1; first convolution: d^T kernel), else the end of its strip minus its
    start (what grows along the vector)."""
    D = basis.directions[:count]
    if isinstance(probe, NetworkProbe) and probe.index == 1:
        W = probe.network.layers[0].W
        shape = probe.network.input_shape
        return [(d @ W).reshape(shape if len(shape) == 2 else (1, -1)) for d in D], "weights"
    if isinstance(probe, TorchProbe):
        import torch

        mod = dict(probe.module.named_modules())[probe.layer]
        first = next((m for _, m in probe.module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))), None)
        if mod is first and isinstance(mod, torch.nn.Conv2d):
            k = mod.weight.detach().double().numpy().mean(axis=1)  # (C_out, kh, kw), input channels averaged
            return [np.tensordot(d, k, axes=1) for d in D], "weights"
        if mod is first and isinstance(mod, torch.nn.Linear) and mod.in_features == int(np.prod(probe.input_shape)):
            W = mod.weight.detach().double().numpy()
            shape = probe.input_shape if len(probe.input_shape) == 3 else (1,) + tuple(probe.input_shape)
            return [(d @ W).reshape(shape).mean(axis=0) if len(shape) == 3 else d @ W for d in D], "weights"
    pics = []
    for imgs in strip_imgs:
        h = max(1, len(imgs) // 4)
        pics.append(imgs[-h:].mean(axis=0) - imgs[:h].mean(axis=0))
    return pics, "strip end minus start"


def analyse(model: Any, x: Array, y: Array, layer: str | int = "1", *, post: bool = False,
            bases: Sequence[str] = BASES, components: int = 32, ablation_points: int = 33, strips: int = 4,
            strip_length: int = 8, seed: int = 0, max_rows: int = 200_000, batch: int = 256,
            input_shape: Sequence[int] | None = None, progress: Callable[[str], None] = lambda s: None,
            units: Callable[[int, int], None] = lambda d, t: None) -> LayerBases:
    """Activations of ``layer`` over ``x``, each basis of ``bases`` fitted to them, their cumulative
    explained variance, ablation accuracy against the labels ``y`` in both orders, and ``strips``
    strips of ``strip_length`` examples along the first vectors of each basis (every random choice
    seeded by ``seed``)."""
    import time

    unknown = [b for b in bases if b not in BASES]
    if unknown:
        raise ParameterError(f"The '--bases' option of bases must list names among {', '.join(BASES)}. "
                             f"Got {', '.join(map(repr, unknown))} instead.")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if len(x) < 2:
        raise ParameterError(f"The bases of a layer need at least two inputs; got {len(x)}.")
    if input_shape is None and getattr(model, "module", None) is None and not hasattr(model, "network") \
            and not hasattr(model, "layers"):
        input_shape = guess_input_shape(x.shape[1])
    probe = make_probe(model, layer, post, input_shape=input_shape)
    t0 = time.perf_counter()
    progress(f"bases: activations of layer {probe.layer}")
    acts: Activations = probe.activations(x, batch=batch, max_rows=max_rows, seed=seed, units=units)
    times = {"activations": time.perf_counter() - t0}
    st = stats(acts.values)
    net_shape = getattr(getattr(model, "network", model), "input_shape", None) or (x.shape[1],)
    images = input_images(x, probe, net_shape)
    base_logits = probe.logits(x)
    accuracy = float(np.mean(np.argmax(base_logits, axis=1) == y))
    results: dict[str, BasisResult] = {}
    skipped: dict[str, str] = {}
    # strips choose among a seeded subset of rows: only those need codes (NMF and dictionary codes are fits)
    cand = np.arange(len(acts.values))
    if len(cand) > STRIP_CANDIDATES:
        cand = np.sort(np.random.default_rng(seed).choice(len(cand), STRIP_CANDIDATES, replace=False))
    pool = Activations(acts.values[cand], acts.sample[cand], acts.position[cand], acts.n, acts.positions, acts.spatial,
                       acts.receptive, acts.layer, acts.post, acts.total_rows)
    for name in bases:
        t1 = time.perf_counter()
        progress(f"bases: {name} basis")
        try:
            basis = fit_basis(name, acts.values, components=components, seed=seed, st=st)
        except ParameterError as e:
            skipped[name] = str(e)
            continue
        except Exception as e:  # a scikit-learn fit that fails on this data is reported, not raised
            skipped[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            continue
        times[f"fit {name}"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        abl = ablate(probe, basis, x, y, points=ablation_points, units=units)
        times[f"ablation {name}"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        codes = basis.project(pool.values)
        made = [make_strip(basis, i, pool, codes, images, length=strip_length, seed=seed, candidates=len(cand))
                for i in range(min(strips, basis.size))]
        times[f"strips {name}"] = time.perf_counter() - t1
        pics, kind = _pictures(probe, basis, len(made), [m[1] for m in made])
        results[name] = BasisResult(basis, abl, tuple(m[0] for m in made), tuple(m[1] for m in made),
                                    tuple(pics), kind)
    strip_shape = tuple(next((r.strip_images[0].shape[1:] for r in results.values() if r.strip_images), ()))
    source = str(getattr(model, "source", type(model).__name__))
    return LayerBases(source, probe.layer, probe.post, acts.n, acts.width, len(acts.values), acts.total_rows,
                      acts.positions, acts.spatial, accuracy, results, skipped, strip_shape, probe.kind, times)
