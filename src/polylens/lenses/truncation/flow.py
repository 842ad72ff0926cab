"""What the truncation lens computes on a model and its inputs, and the toy flows it draws.

:func:`analyse` checks the identities (TRUNCATION.md section 1, with the lift of section 2), takes
the cones of every map (section 3) and the truncated trajectory; :func:`toy_flow` builds a network
from a seeded 2-D toy set (section 4: Thm. 5.2 on an SLS set, Prop. 4.1 on clusters, Ewa25
Thm. 3.3 on rings) and follows its points through the maps, one layer per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from polylens.lenses.truncation.cones import STATUS_NAMES, LayerCone, layer_cones
from polylens.lenses.truncation.maps import Cumulative, IdentityRow, cumulative, identities, trajectory

__all__ = ["TOYS", "Analysis", "ToyFlow", "analyse", "toy_flow"]

Array = np.ndarray

TOYS = ("sls", "clusters", "rings")


@dataclass(frozen=True, eq=False)
class Analysis:
    """Identities, cones and trajectory of one network on inputs ``x`` (labels ``y``)."""

    rows: tuple[IdentityRow, ...]
    cones: tuple[LayerCone, ...]
    params: Cumulative
    points: tuple[Array, ...]
    y: Array


def analyse(network, x: Array, y: Array, lift: bool = True) -> Analysis:
    params = cumulative(network, lift)
    rows = identities(network, x, lift)
    tr = trajectory(network, x, lift, params)
    cones = layer_cones(network, x, lift, params)
    return Analysis(rows, cones, params, tr.points, np.asarray(y))


def cone_dict(cone: LayerCone, with_vectors: bool = True) -> dict:
    d = {"layer": cone.layer, "counts": cone.counts(), "relu": cone.relu,
         "base_norm": float(np.linalg.norm(cone.base)),
         "edge_norms": [float(v) for v in np.linalg.norm(cone.edges, axis=0)]}
    if with_vectors and cone.edges.size <= 20_000:
        d["base"] = cone.base.tolist()
        d["edges"] = cone.edges.T.tolist()
    return d


@dataclass(frozen=True, eq=False)
class ToyFlow:
    """A constructed network on a 2-D toy set and its points through the maps: ``points[l]`` is
    x^(tau,l) (N, space), ``cones[l-1]`` the cone of map l, ``construction`` how it was built."""

    name: str
    x: Array
    y: Array
    construction: object
    analysis: Analysis

    def to_dict(self, points: bool = True) -> dict:
        a = self.analysis
        out = {"toy": self.name, "architecture": self.construction.network.architecture,
               "construction": self.construction.to_dict(), "identities": [r.to_dict() for r in a.rows],
               "space": a.params.space, "lifted": a.params.lifted,
               "cones": [cone_dict(c) for c in a.cones]}
        if points:
            out["labels"] = self.y.tolist()
            out["steps"] = [np.round(p, 6).tolist() for p in a.points]
            out["status"] = [c.status.tolist() for c in a.cones]
        return out


@lru_cache(maxsize=8)
def toy_flow(name: str = "sls", n: int = 120, seed: int = 0) -> ToyFlow:
    """The toy ``name`` (one of :data:`TOYS`) with a constructed network and its flow."""
    from polylens.data import toy
    from polylens.lenses.truncation import construct as C
    from polylens.lenses.truncation.sls import find_order

    if name == "sls":
        x, y = toy.sls_set(n, 2, 2, seed=seed)
        built = C.sls_network(x, y, find_order(x, y))
    elif name == "clusters":
        x, y = toy.clusters(n, 2, 2, seed=seed)
        built = C.clustered_network(x, y)
    elif name == "rings":
        x, y = toy.rings(n, seed=seed)
        built = C.simplex_network(x, y)
    else:
        from polylens.errors import ParameterError

        raise ParameterError(f"The 'toy' parameter must be one of {', '.join(map(repr, TOYS))}. Got {name!r} instead.")
    return ToyFlow(name, x, y, built, analyse(built.network, x, y))


def step_projections(points: tuple[Array, ...]) -> list[tuple[Array, Array]]:
    """One 2-D view per step: (basis (space, 2), origin). The identity in a 2-D space (the toy flows:
    every step in the same plane); otherwise each step on the plane of its own two principal
    directions (after map 1 of a narrowing network the points lie in the row space of W^(1), often
    at a much smaller scale than the inputs)."""
    space = points[0].shape[1]
    if space == 2:
        return [(np.eye(2), np.zeros(2)) for _ in points]
    out = []
    for P in points:
        mean = P.mean(axis=0)
        _, _, vt = np.linalg.svd(P - mean, full_matrices=False)
        B = vt[:2].T if vt.shape[0] >= 2 else np.eye(space)[:, :2]
        out.append((B, mean))
    return out


def status_counts_text(cone: LayerCone) -> str:
    c = cone.counts()
    return ", ".join(f"{c[k]} {k}" for k in STATUS_NAMES)
