"""Figures of the polytope lens (matplotlib's object API, Agg; tab10 colours for digits)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["density_figure", "hidden_figure", "monosemantic_figure", "path_figure", "scaling_figure",
           "scaling_law_figure", "slice_figure"]

_BLUE, _ORANGE, _GREEN, _GREY, _RED = "#08519c", "#d95f02", "#1b9e77", "#969696", "#cb181d"


def _cmap():
    from matplotlib import colormaps

    return colormaps["tab10"]


def slice_figure(sl, title: str = "", images: Sequence[tuple[str, tuple[float, float]]] = ()) -> Figure:
    """The regions of a slice: each polygon filled with its class colour, region edges in thin grey,
    the decision boundary in black; the three anchor images marked."""
    from matplotlib.collections import LineCollection, PolyCollection

    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.subplots()
    cm = _cmap()
    cells = [(c, poly) for p in sl.pieces for c, poly in (p.cells or ((p.cls, p.polygon),))]
    ax.add_collection(PolyCollection([q for _, q in cells], facecolors=[cm(c % 10) for c, _ in cells],
                                     edgecolors="none", alpha=0.5))
    ax.add_collection(PolyCollection([p.polygon for p in sl.pieces], facecolors="none", edgecolors="#333333",
                                     linewidths=0.25, alpha=0.6))
    if sl.boundary:
        ax.add_collection(LineCollection([list(s) for s in sl.boundary], colors="k", linewidths=1.3))
    for label, (s, t) in images:
        ax.plot([s], [t], "o", color="k", ms=4)
        ax.annotate(label, (s, t), xytext=(3, 3), textcoords="offset points", fontsize=7)
    lo, hi = sl.extent
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("s (towards image J)")
    ax.set_ylabel("t (towards image K)")
    classes = sorted({c for c, _ in cells})
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=cm(c % 10), alpha=0.55, label=str(c)) for c in classes], fontsize=6,
              title="class", title_fontsize=6, loc="upper right", ncol=2)
    ax.set_title(title or f"{len(sl.pieces)} regions in the slice (black: decision boundary)", fontsize=9)
    fig.tight_layout()
    return fig


def monosemantic_figure(m: dict) -> Figure:
    """Class purity of inputs grouped by region against neurons' and principal directions' top sets."""
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.subplots()
    labels = ["exact pattern\n(shared groups)", "Hamming\nclusters", "Jaccard\nclusters", "exact groups,\nshuffled labels",
              "neurons'\ntop sets", "principal dirs'\ntop sets"]
    vals = [m["exact"]["purity_shared"], m["hamming_clusters"]["purity"], m["jaccard_clusters"]["purity"],
            m["exact"]["shuffled_purity"], m["neuron_mean"], m["direction_mean"]]
    colours = [_BLUE, _BLUE, _BLUE, _GREY, _ORANGE, _GREEN]
    ax.bar(range(len(vals)), [0 if v is None or not np.isfinite(v) else v for v in vals], color=colours, alpha=0.8)
    rng = np.random.default_rng(0)
    for k, key in ((4, "neuron_purity"), (5, "direction_purity")):
        pts = np.asarray(m[key])
        ax.plot(k + rng.uniform(-0.25, 0.25, len(pts)), pts, ".", color="k", ms=3)
    ax.set_xticks(range(len(vals)), labels, fontsize=6.5)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("class purity (size-weighted)")
    ax.set_title(f"Prediction 1, monosemantic polytopes: {m['verdict']} ({m['n']} images, "
                 f"{m['distinct_patterns']} patterns)", fontsize=8.5)
    ax.grid(axis="y", lw=0.3)
    fig.tight_layout()
    return fig


def density_figure(b: dict) -> Figure:
    """Boundaries crossed per unit length against the softmax change per unit length, per bin of each path."""
    fig = Figure(figsize=(6.4, 3.2))
    ax, ax2 = fig.subplots(1, 2)
    dens, kl = np.asarray(b["density"]), np.asarray(b["kl"])
    kind = np.asarray(b["kind"])
    for k, c in (("same", _BLUE), ("different", _ORANGE)):
        sel = kind == k
        ax.plot(kl[sel] + 1e-6, dens[sel] + np.random.default_rng(1).uniform(0, 0.3, sel.sum()), ".", ms=2.5,
                color=c, alpha=0.6, label=f"{k}-class pairs")
    ax.set_xscale("log")
    ax.set_xlabel("KL between softmaxes per unit length (+1e-6)")
    ax.set_ylabel("boundaries crossed per unit length")
    ax.legend(fontsize=6)
    ax.set_title(f"Spearman rho {b['rho']:.2f} (p {b['p']:.1g})", fontsize=8)
    sw = np.asarray(b["switch"], dtype=bool)
    vals = [dens[sw].mean() if sw.any() else 0, dens[~sw].mean() if (~sw).any() else 0]
    ax2.bar([0, 1], vals, color=[_RED, _GREY])
    ax2.set_xticks([0, 1], ["bins with a\nclass switch", "other bins"], fontsize=7)
    ax2.set_ylabel("mean boundary density")
    ax2.set_title(f"Prediction 2: {b['verdict']}", fontsize=8)
    fig.tight_layout()
    return fig


def path_figure(example: dict) -> Figure:
    """One interpolation path: the KL step curve, the exact crossings as ticks, the class along t."""
    fig = Figure(figsize=(6.0, 2.4))
    ax = fig.subplots()
    t = np.asarray(example["t"])
    ax.plot(0.5 * (t[1:] + t[:-1]), example["kl_steps"], color=_BLUE, lw=1, label="KL between neighbouring softmaxes")
    for c in example["crossings"]:
        ax.axvline(c, color=_GREY, lw=0.5, alpha=0.7)
    cls = np.asarray(example["class"])
    for k in np.flatnonzero(cls[1:] != cls[:-1]):
        ax.axvline(t[k + 1], color=_RED, lw=1.4)
    ax.set_xlabel("t along the path (grey: region boundaries; red: class switch)")
    ax.set_ylabel("KL per step")
    i, j = example["pair"]
    ax.set_title(f"Path between test images {i} and {j} ({example['kind']} class)", fontsize=8)
    fig.tight_layout()
    return fig


def scaling_figure(s: dict) -> Figure:
    """Fraction of inputs whose later pattern / prediction differs from alpha = 1, against alpha."""
    fig = Figure(figsize=(5.6, 3.0))
    ax = fig.subplots()
    a = np.asarray(s["alphas"])
    ax.plot(a, s["pattern_changed"], color=_BLUE, label="later layers' pattern differs from alpha = 1")
    ax.plot(a, s["prediction_changed"], color=_RED, label="prediction differs from alpha = 1")
    ax.axvline(1.0, color=_GREY, lw=0.6, ls=":")
    ax.set_xlabel(f"alpha (layer {s['layer']}'s activation vector scaled, direction fixed)")
    ax.set_ylabel("fraction of test images")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=6.5)
    ax.set_title(f"Prediction 3, scaling: {s['verdict']} (P(pattern change | prediction change) "
                 f"{s['p_pattern_given_prediction']:.2f} vs {s['p_pattern_given_steady']:.2f} otherwise)", fontsize=7.5)
    ax.grid(lw=0.3)
    fig.tight_layout()
    return fig


def scaling_law_figure(law: dict) -> Figure:
    fig = Figure(figsize=(4.4, 3.0))
    ax = fig.subplots()
    n, m = np.asarray(law["neurons"]), np.asarray(law["mean_crossings"])
    ax.loglog(n, m, "o-", color=_BLUE, label="mean exact crossings of a unit segment")
    ax.loglog(n, m[0] * n / n[0], "--", color=_GREY, label="linear in neurons")
    ax.set_xlabel("hidden neurons (two layers, He initialisation)")
    ax.set_ylabel("boundaries crossed")
    ax.legend(fontsize=6.5)
    ax.set_title(f"Hanin-Rolnick: log-log slope {law['loglog_slope']:.2f}", fontsize=8)
    fig.tight_layout()
    return fig


def _plane_patch(ax, w, b, lo, hi, colour):
    w = np.asarray(w)
    k = int(np.argmax(np.abs(w)))
    o = [i for i in range(3) if i != k]
    g0, g1 = np.meshgrid(np.linspace(lo[o[0]], hi[o[0]], 12), np.linspace(lo[o[1]], hi[o[1]], 12))
    gk = -(b + w[o[0]] * g0 + w[o[1]] * g1) / w[k]
    gk = np.where((gk >= lo[k]) & (gk <= hi[k]), gk, np.nan)
    coords = [None, None, None]
    coords[o[0]], coords[o[1]], coords[k] = g0, g1, gk
    ax.plot_surface(*coords, color=colour, alpha=0.25, linewidth=0)


def hidden_figure(spaces_by_model: Sequence[tuple[str, list[dict]]]) -> Figure:
    """Each 3-D hidden space: test images coloured by class; in layer 1's space the next layer's zero planes,
    in the last hidden space the decision regions (grid points coloured by the class they get)."""
    rows = len(spaces_by_model)
    cols = max(len(s) for _, s in spaces_by_model) or 1
    fig = Figure(figsize=(4.0 * cols, 3.8 * rows))
    cm = _cmap()
    for r, (name, spaces) in enumerate(spaces_by_model):
        for c, sp in enumerate(spaces):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1, projection="3d")
            P = np.asarray(sp["points"])
            lab = np.asarray(sp["labels"])
            ax.scatter(P[:, 0], P[:, 1], P[:, 2], c=[cm(k % 10) for k in lab], s=3, alpha=0.8, depthshade=False)
            lo, hi = np.asarray(sp["bbox"][0]), np.asarray(sp["bbox"][1])
            for j, pl in enumerate(sp["planes"]):
                if np.linalg.norm(pl["w"]) > 0:
                    _plane_patch(ax, pl["w"], pl["b"], lo, hi, ("#555555", "#8c6d31", "#843c39")[j % 3])
            if not sp["planes"]:
                G = np.asarray(sp["grid"]["points"])
                gc = np.asarray(sp["grid"]["class"])
                ax.scatter(G[:, 0], G[:, 1], G[:, 2], c=[cm(k % 10) for k in gc], s=10, alpha=0.12, marker="s",
                           depthshade=False)
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_zlim(lo[2], hi[2])
            ax.set_xlabel("n0", fontsize=6)
            ax.set_ylabel("n1", fontsize=6)
            ax.set_zlabel("n2", fontsize=6)
            ax.tick_params(labelsize=5)
            what = "planes: layer-2 neurons' zeros" if sp["planes"] else "squares: decision regions"
            ax.set_title(f"{name}: hidden layer {sp['layer']} ({what})", fontsize=7.5)
    fig.tight_layout()
    return fig
