"""Figures of the bases lens (matplotlib's object API, no pyplot state)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["ablation_figure", "strips_figure", "variance_figure"]

COLOURS = {"neuron": "#d62728", "pca": "#1f77b4", "ica": "#2ca02c", "nmf": "#9467bd", "dictionary": "#ff7f0e"}


def variance_figure(curves: Mapping[str, Sequence[float]], width: int, title: str = "") -> Figure:
    """Cumulative explained variance (R^2 of the first k vectors) against k, one line per basis, with
    the 80% and 99% levels."""
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    for name, c in curves.items():
        k = np.arange(0, len(c) + 1)
        ax.plot(k, np.concatenate([[0.0], c]), label=name, color=COLOURS.get(name), lw=1.6)
    for lvl in (0.8, 0.99):
        ax.axhline(lvl, color="0.6", lw=0.8, ls=":")
    ax.set_xscale("symlog", linthresh=1.0) if width > 30 else None
    ax.set_xlim(0, width)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("vectors k (in the basis's order)")
    ax.set_ylabel("cumulative explained variance")
    ax.set_title(title or "Explained variance", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def ablation_figure(curves: Mapping[str, Mapping], title: str = "") -> Figure:
    """Accuracy after projecting out the first k vectors (solid: top first; dashed: bottom first)."""
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    for name, ab in curves.items():
        ks = list(ab["evaluated"])
        n = len(ab["top_first"]) - 1
        frac = np.asarray(ks, dtype=float) / max(n, 1)
        ax.plot(frac, [ab["top_first"][k] for k in ks], color=COLOURS.get(name), lw=1.6, label=f"{name} top first")
        ax.plot(frac, [ab["bottom_first"][k] for k in ks], color=COLOURS.get(name), lw=1.0, ls="--")
    ax.set_xlabel("fraction of the basis's vectors removed")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "Ablation (dashed: lowest-variance vectors first)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def strips_figure(rows: Sequence[tuple[str, Sequence[np.ndarray], float]], title: str = "") -> Figure:
    """One row of images per strip: (label, images, coherence)."""
    n = len(rows)
    m = max((len(r[1]) for r in rows), default=1)
    height = 0.8 * n + 0.5
    fig = Figure(figsize=(0.75 * m + 1.6, height))
    for i, (label, imgs, coh) in enumerate(rows):
        for j, img in enumerate(imgs):
            ax = fig.add_subplot(n, m, i * m + j + 1)
            ax.imshow(np.asarray(img), cmap="gray_r", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{label}\nc={coh:.2f}", fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.2, right=0.99, top=1 - (0.4 if title else 0.1) / height, bottom=0.1 / height,
                        wspace=0.05, hspace=0.1)
    return fig
