"""Figures of the truncation lens (matplotlib's object API): the toy flow layer by layer with the
cones drawn, a model's cones as images (base point and edges), and its trajectory projected."""

from __future__ import annotations


import numpy as np
from matplotlib.figure import Figure

from polylens.lenses.truncation.cones import COLLAPSED, FIXED

__all__ = ["cone_images_figure", "flow_figure", "projected_flow_figure"]

Array = np.ndarray

COLOURS = ("#1f77b4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
           "#17becf")


def _draw_cone(ax, p: Array, E: Array, span: float, relu: bool) -> None:
    """The cone of one map in a panel's projection: its base point p (star), each edge as a ray (solid
    forward, dotted backward) and, in the plane with two edges, the forward cone it fixes (green) and
    the backward cone it collapses to p (red)."""
    ax.plot([p[0]], [p[1]], marker="*", color="k", ms=10, zorder=5)
    dirs = []
    for v in E:
        nv = np.linalg.norm(v)
        if nv == 0:
            continue
        d = v / nv
        dirs.append(d)
        ax.plot([p[0], p[0] + span * d[0]], [p[1], p[1] + span * d[1]], color="k", lw=1.0, zorder=4)
        ax.plot([p[0], p[0] - span * d[0]], [p[1], p[1] - span * d[1]], color="k", lw=0.6, ls=":", zorder=4)
    if len(dirs) == 2 and len(E) == 2 and relu:
        d1, d2 = dirs
        bis = d1 + d2
        nb = np.linalg.norm(bis)
        if nb > 1e-9:
            bis = bis / nb
            for sign, colour, alpha in ((1, "#74c476", 0.25), (-1, "#fb6a4a", 0.2)):
                a, b, c = sign * d1, sign * d2, sign * bis
                poly = np.array([p, p + span * a, p + 2 * span * c, p + span * b])
                ax.fill(poly[:, 0], poly[:, 1], color=colour, alpha=alpha, zorder=1, lw=0)


def _limits(P: Array, pad: float = 0.12) -> tuple[Array, float]:
    lo, hi = P.min(axis=0), P.max(axis=0)
    centre = (lo + hi) / 2
    half = float(np.max(hi - lo)) / 2 * (1 + 2 * pad) + 1e-9
    return centre, half


def flow_figure(points: tuple[Array, ...], y: Array, cones, title: str = "") -> Figure:
    """One panel per step l = 0..L-1: the points x^(tau,l) coloured by class; panel l >= 1 also draws
    the cone of map l (star: base point p; solid rays: edges v_i; green: the forward cone it fixes;
    red: the backward cone it collapses to p). A 2-D space is drawn as it is, on shared axes; a
    higher-dimensional one step by step on each step's principal plane (see
    :func:`~polylens.lenses.truncation.flow.step_projections`)."""
    from polylens.lenses.truncation.flow import step_projections

    views = step_projections(points)
    proj = [(P - m) @ B for P, (B, m) in zip(points, views)]
    shared = points[0].shape[1] == 2
    if shared:
        centre, half = _limits(np.concatenate(proj))
    k = len(points)
    fig = Figure(figsize=(3.0 * k, 3.3))
    axes = fig.subplots(1, k, squeeze=False)[0]
    classes = sorted(set(int(c) for c in y))
    for l, ax in enumerate(axes):
        if not shared:
            centre, half = _limits(proj[l])
        B, m = views[l]
        if l >= 1:
            c = cones[l - 1]
            _draw_cone(ax, (c.base - m) @ B, c.edges.T @ B, 4 * half, c.relu)
        for ci, cl in enumerate(classes):
            sel = y == cl
            ax.scatter(proj[l][sel, 0], proj[l][sel, 1], s=9, color=COLOURS[ci % len(COLOURS)], label=f"class {cl}",
                       zorder=3, edgecolors="none", alpha=0.8)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_aspect("equal", adjustable="box")
        ax.set_title("input" if l == 0 else f"after map {l}", fontsize=9)
        ax.tick_params(labelsize=6)
        if l >= 1:
            st = cones[l - 1].status
            ax.text(0.02, 0.02, f"fixed {int(np.sum(st == FIXED))}, collapsed {int(np.sum(st == COLLAPSED))}, "
                    f"truncated {int(np.sum((st != FIXED) & (st != COLLAPSED)))}", transform=ax.transAxes, fontsize=6,
                    bbox={"facecolor": "white", "alpha": 0.7, "lw": 0})
    axes[0].legend(fontsize=6, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def projected_flow_figure(points: tuple[Array, ...], y: Array, cones, title: str = "") -> Figure:
    """The flow of a high-dimensional input space (:func:`flow_figure`, each step on its own plane)."""
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
