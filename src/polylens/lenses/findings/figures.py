"""Figures of the findings section (matplotlib's object API, as in :mod:`polylens.report.figures`:
blue for verified, orange dashed for the attack bound, ink on paper for digits)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from polylens.report.figures import CMAP_DIVERGING

__all__ = ["accuracy_figure", "digits_figure", "formula_figure", "names_figure", "signatures_figure"]

Array = np.ndarray

_BLUE, _ORANGE, _GREEN, _GREY = "#08519c", "#d95f02", "#1b9e77", "#969696"


def _rate_axes(fig: Figure, ax, ylabel: str, title: str, legend: str) -> Figure:
    """The common frame of a rate-against-eps figure: labels, [0, 1] with a margin, grid, legend, title."""
    ax.set_xlabel("eps (L-infinity radius)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(lw=0.3)
    ax.legend(fontsize=7, loc=legend)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _curve(summary: Mapping, rate: str, digit: int | None = None) -> tuple[Array, Array, Array, Array]:
    from polylens.lenses.verify.sweep import radius_key

    from polylens.lenses.findings.claims import verified_rate

    rate = verified_rate(summary) if rate == "verified" else rate
    eps = np.array([float(e) for e in summary["eps"]])
    table = summary["overall"] if digit is None else summary["per_digit"][str(digit)]
    rs = [table[radius_key(e)][rate] for e in eps]
    v = np.array([r["value"] if r["n"] else np.nan for r in rs])
    lo = np.array([r["ci"][0] if r["n"] else np.nan for r in rs])
    hi = np.array([r["ci"][1] if r["n"] else np.nan for r in rs])
    return eps, v, lo, hi


def accuracy_figure(summary: Mapping, lp_classifier: bool = True) -> Figure:
    """Overall clean accuracy, LP-classifier accuracy, verified accuracy and the attack bound against
    eps, each with its 95% Wilson band."""
    fig = Figure(figsize=(5.6, 3.4))
    ax = fig.subplots()
    lines = [("clean", "clean accuracy", "#252525", "-"), ("attack", "attack bound (not falsified)", _ORANGE, "--"),
             ("verified", "verified (IBP, backward bounds, LP, branch and bound)", _BLUE, "-")]
    if lp_classifier:
        lines.insert(1, ("lp_classifier", "LP classifier", _GREEN, "-."))
    for rate, label, colour, ls in lines:
        eps, v, lo, hi = _curve(summary, rate)
        ax.plot(eps, v, ls, color=colour, marker="o", ms=3, label=label)
        ax.fill_between(eps, lo, hi, color=colour, alpha=0.12, lw=0)
    ax.axvline(0.02, color=_GREY, lw=0.6, ls=":")
    return _rate_axes(fig, ax, "fraction of test images", "What 'the LP keeps high accuracy' can mean", "lower left")


def digits_figure(summary: Mapping, highlight: Sequence[int] = (1, 4)) -> Figure:
    """Verified rate per digit against eps; the digits of the claims in colour with their bands."""
    fig = Figure(figsize=(5.6, 3.4))
    ax = fig.subplots()
    colours = {h: c for h, c in zip(highlight, (_BLUE, "#e7298a", _GREEN))}
    for c in range(len(summary["per_digit"])):
        eps, v, lo, hi = _curve(summary, "verified", c)
        if c in colours:
            ax.plot(eps, v, color=colours[c], marker="o", ms=3, lw=1.8, label=f"digit {c}")
            ax.fill_between(eps, lo, hi, color=colours[c], alpha=0.15, lw=0)
            a = _curve(summary, "attack", c)[1]
            ax.plot(eps, a, "--", color=colours[c], lw=0.9, label=f"digit {c}: attack bound")
        else:
            ax.plot(eps, v, color=_GREY, lw=0.7, alpha=0.8)
            ax.annotate(str(c), (eps[-1], v[-1]), fontsize=6, color=_GREY, xytext=(2, 0), textcoords="offset points")
    return _rate_axes(fig, ax, "verified rate", "Verified rate per digit (grey: the other digits)", "upper right")


def signatures_figure(digits: Sequence[int], per_digit: Sequence[float], overall: float) -> Figure:
    """Leave-one-out nearest-mean accuracy of the signatures per digit, with chance and the overall rate."""
    fig = Figure(figsize=(5.2, 2.8))
    ax = fig.subplots()
    per = np.asarray(per_digit, dtype=float)
    ax.bar(np.arange(len(digits)), np.nan_to_num(per), color=_BLUE)
    ax.axhline(1.0 / max(len(digits), 1), color=_ORANGE, ls="--", lw=1, label="chance")
    ax.axhline(overall, color="#252525", lw=0.8, label=f"overall {overall:.0%}")
    ax.set_xticks(np.arange(len(digits)))
    ax.set_xticklabels([str(d) for d in digits])
    ax.set_xlabel("digit")
    ax.set_ylabel("nearest-mean accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Is each digit's constraint signature its own?", fontsize=9)
    fig.tight_layout()
    return fig


def names_figure(sweep: Any, this_best: Mapping[str, float] | None, this_label: str,
                 shape: Sequence[int], this_maps: Array | None = None, pixel_std: Array | None = None) -> Figure:
    """Top: for Frame, Spine and Belt, the best |r| any layer-1 neuron reaches in each training run
    (filled: a neuron is named after it), the model at hand as a star. Bottom: the layer-1 weight
    maps of the model at hand and of the run that matches the three templates best, each weight
    times its pixel's standard deviation over the images (``pixel_std``; what the names score)."""
    from polylens.lenses.findings.names_sweep import CLAIMED

    fig = Figure(figsize=(6.4, 5.0))
    gs = fig.add_gridspec(2, 6, height_ratios=(1.2, 1.0))
    ax = fig.add_subplot(gs[0, :])
    for i, t in enumerate(CLAIMED):
        if sweep is not None:
            b = np.array([r.best[t] for r in sweep.runs])
            named = np.array([r.named[t] for r in sweep.runs])
            jit = (np.arange(len(b)) % 7 - 3) * 0.04
            ax.scatter(i + jit[named], b[named], color=_BLUE, s=14, label="named after it" if i == 0 else None)
            ax.scatter(i + jit[~named], b[~named], facecolor="none", edgecolor=_BLUE, s=14,
                       label="not named after it" if i == 0 else None)
        if this_best is not None:
            ax.scatter([i + 0.3], [this_best[t]], marker="*", s=90, color=_ORANGE, label=this_label if i == 0 else None)
    ax.set_xticks(range(len(CLAIMED)))
    ax.set_xticklabels(CLAIMED)
    ax.set_xlim(-0.6, len(CLAIMED) - 0.3)
    ax.set_ylim(0, 1)
    ax.set_ylabel("best |r| in layer 1")
    ax.grid(axis="y", lw=0.3)
    ax.legend(fontsize=7, loc="upper right")
    n = 0 if sweep is None else len(sweep.runs)
    ax.set_title(f"Do Frame, Spine and Belt emerge? ({n} training seeds)", fontsize=9)
    panels = []
    if this_maps is not None:
        panels += [(this_label, m) for m in this_maps[:3]]
    if sweep is not None and sweep.runs and sweep.best_run().maps:
        br = sweep.best_run()
        panels += [(f"seed {br.seed}: {nm}", np.asarray(m)) for nm, m in zip(br.names, br.maps)][:3]
    for k, (title, m) in enumerate(panels[:6]):
        a = fig.add_subplot(gs[1, k])
        img = np.asarray(m, dtype=float) * (1.0 if pixel_std is None else np.asarray(pixel_std, dtype=float))
        img = img.reshape(shape)
        v = max(float(np.abs(img).max()), 1e-9)
        a.imshow(img, cmap=CMAP_DIVERGING, vmin=-v, vmax=v, interpolation="nearest")
        a.set_title(title, fontsize=6)
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    return fig


def formula_figure(terms: Sequence[Mapping[str, Any]], formula: str) -> Figure:
    """The flow of each matched layer-1 neuron into logit 0 (bar; every term of the formula should be
    positive), split into activation and path weight in the labels."""
    fig = Figure(figsize=(5.2, 2.6))
    ax = fig.subplots()
    y = np.arange(len(terms))[::-1]
    c = [t["contribution"] for t in terms]
    ax.barh(y, c, color=[_BLUE if t["holds"] else "#cb181d" for t in terms])
    ax.axvline(0, color="#252525", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{t['template']} ~ {t['neuron']} ({t['name']})\nact {t['activation']:+.2f}, "
                        f"path {t['path_weight']:+.2f}" for t in terms], fontsize=7)
    ax.set_xlabel("mean flow into logit 0 over the test 0s")
    ax.set_title(f"The digit-0 formula, term by term (measured: {formula})", fontsize=8)
    ax.grid(axis="x", lw=0.3)
    fig.tight_layout()
    return fig
