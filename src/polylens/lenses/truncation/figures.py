"""Figures of the truncation lens (matplotlib's object API): the toy flow layer by layer with the
cones drawn, a model's cones as images (base point and edges), and its trajectory projected."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from polylens.lenses.truncation.cones import COLLAPSED, FIXED

__all__ = ["cone_images_figure", "flow_figure", "projected_flow_figure"]

Array = np.ndarray

COLOURS = ("#1f77b4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
           "#17becf")


def _project(points: tuple[Array, ...]) -> tuple[Array, Array]:
    """A 2-D orthonormal projection (PCA of every step's points) and the mean: (basis (space, 2), mean)."""
    allp = np.concatenate(points, axis=0)
    mean = allp.mean(axis=0)
    if allp.shape[1] <= 2:
        return np.eye(allp.shape[1])[:, :2], np.zeros(allp.shape[1])
    _, _, vt = np.linalg.svd(allp - mean, full_matrices=False)
    return vt[:2].T, mean


def _draw_cone(ax, base: Array, edges: Array, B: Array, mean: Array, span: float, relu: bool) -> None:
    """The cone of one map in the projection: its base point, each edge as a ray, the forward cone
    (2 edges in 2-D) shaded."""
    p = (base - mean) @ B if B.shape[0] > 2 else base
    E = edges.T @ B if B.shape[0] > 2 else edges.T
    ax.plot([p[0]], [p[1]], marker="*", color="k", ms=10, zorder=5)
    for v in E:
        nv = np.linalg.norm(v)
        if nv == 0:
            continue
        d = v / nv * span
        ax.plot([p[0], p[0] + d[0]], [p[1], p[1] + d[1]], color="k", lw=1.0, zorder=4)
        ax.plot([p[0], p[0] - d[0]], [p[1], p[1] - d[1]], color="k", lw=0.6, ls=":", zorder=4)
    if len(E) == 2 and relu:
        d1, d2 = (E[0] / np.linalg.norm(E[0]), E[1] / np.linalg.norm(E[1]))
        ax.fill([p[0], p[0] + span * d1[0], p[0] + span * (d1[0] + d2[0]), p[0] + span * d2[0]],
                [p[1], p[1] + span * d1[1], p[1] + span * (d1[1] + d2[1]), p[1] + span * d2[1]],
                color="#74c476", alpha=0.18, zorder=1, lw=0)
        ax.fill([p[0], p[0] - span * d1[0], p[0] - span * (d1[0] + d2[0]), p[0] - span * d2[0]],
                [p[1], p[1] - span * d1[1], p[1] - span * (d1[1] + d2[1]), p[1] - span * d2[1]],
                color="#fb6a4a", alpha=0.15, zorder=1, lw=0)


def flow_figure(points: tuple[Array, ...], y: Array, cones, title: str = "") -> Figure:
    """One panel per step l = 0..L-1: the points x^(tau,l) coloured by class; panel l >= 1 also draws
    the cone of map l (star: base point p; solid rays: edges v_i; green: the forward cone it fixes;
    red: the backward cone it collapses to p)."""
    B, mean = _project(points)
    proj = [((P - mean) @ B if P.shape[1] > 2 else P) for P in points]
    allp = np.concatenate(proj)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    pad = 0.15 * float(np.max(hi - lo) + 1e-9)
    span = 3 * float(np.max(hi - lo) + 1e-9)
    k = len(points)
    fig = Figure(figsize=(3.0 * k, 3.2))
    axes = fig.subplots(1, k, squeeze=False)[0]
    classes = sorted(set(int(c) for c in y))
    for l, ax in enumerate(axes):
        if l >= 1:
            c = cones[l - 1]
            _draw_cone(ax, c.base, c.edges, B, mean, span, c.relu)
        for ci, cl in enumerate(classes):
            m = y == cl
            ax.scatter(proj[l][m, 0], proj[l][m, 1], s=9, color=COLOURS[ci % len(COLOURS)], label=f"class {cl}",
                       zorder=3, edgecolors="none", alpha=0.8)
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title("input" if l == 0 else f"after map {l}", fontsize=9)
        ax.tick_params(labelsize=6)
        if l >= 1:
            st = cones[l - 1].status
            ax.text(0.02, 0.02, f"fixed {int(np.sum(st == FIXED))}, collapsed {int(np.sum(st == COLLAPSED))}, "
                    f"truncated {int(np.sum((st != FIXED) & (st != COLLAPSED)))}", transform=ax.transAxes, fontsize=6)
    axes[0].legend(fontsize=6, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def projected_flow_figure(points: tuple[Array, ...], y: Array, cones, title: str = "") -> Figure:
    """The same flow for a high-dimensional input space, projected on the plane of the two principal
    directions of all steps' points (the cones' base points and edges projected too)."""
    return flow_figure(points, y, cones, title)


def cone_images_figure(cones, shape: tuple[int, int], max_edges: int = 8) -> Figure:
    """For each map l (one row): the base point p = -W^(l)+ b^(l) and the edges v_i = W^(l)+ e_i drawn as
    images of the input (blue positive, red negative, each on its own symmetric scale)."""
    rows = len(cones)
    cols = 1 + min(max_edges, max(c.edges.shape[1] for c in cones))
    fig = Figure(figsize=(1.3 * cols, 1.45 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    n = int(np.prod(shape))
    for r, c in enumerate(cones):
        vecs = [c.base[:n]] + [c.edges[:n, i] for i in range(min(max_edges, c.edges.shape[1]))]
        names = ["p"] + [f"v{i + 1}" for i in range(len(vecs) - 1)]
        for k in range(cols):
            ax = axes[r][k]
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= len(vecs):
                ax.axis("off")
                continue
            v = vecs[k].reshape(shape)
            m = float(np.max(np.abs(v))) or 1.0
            ax.imshow(v, cmap="RdBu", vmin=-m, vmax=m)
            ax.set_title(f"map {c.layer}: {names[k]}", fontsize=6)
    fig.tight_layout()
    return fig
