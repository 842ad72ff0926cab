"""Static figures of polylens results: one function per figure, each returning a matplotlib Figure.

Every function takes plain arrays (with documented shapes) or a result object of an analysis, draws
with matplotlib's object API (``matplotlib.figure.Figure``, rendered by the Agg canvas; pyplot's
global state is never touched, so figures are thread-safe and never leak) and returns the Figure.
:func:`save_figure` writes it as PNG (and SVG), byte-identical across runs: PNG and SVG metadata
(dates, versions) are dropped and SVG ids are salted with a fixed string.

One colour language throughout:

* **blue = ink / positive**, **red = blank / negative** (the ``RdBu`` diverging map, red at the low
  end). A signature map is ``upper_freq - lower_freq``: blue where the LP optimum puts the pixel at
  its upper bound ("wants ink"), red where at its lower bound ("wants blank"). A change to an image
  (prototype delta, counterfactual change) is blue where ink is added, red where it is removed. A
  weight map is blue where the weight is positive. A trace edge is blue when it pushes the logit up.
* Digits themselves are drawn as ink on paper (``gray_r``: 1 = black).
* The verified ladder of a robustness curve is one hue from light to dark (interval bounds, backward
  linear bounds, LP), the attack upper bound is orange and dashed, and the gap between LP-verified
  and attack (unknown) is hatched grey.

Example
-------
>>> import numpy as np
>>> from polylens.report.figures import signature_maps, figure_png
>>> up = np.random.default_rng(0).random((10, 49)); lo = 1 - up
>>> fig = signature_maps(up, lo, (7, 7))
>>> figure_png(fig)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib import rcParams
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

__all__ = [
    "BLANK", "CMAP_DIVERGING", "CMAP_INK", "INK", "LADDER", "counterfactual_triptych", "figure_png",
    "figure_svg", "formula_figure", "neuron_panel", "prototype_panels", "robustness_curves", "save_figure",
    "signature_maps", "signature_overlays", "tightness_bars", "trace_flow",
]

Array = np.ndarray

#: Ink / positive.
INK = "#2166ac"
#: Blank / negative.
BLANK = "#b2182b"
#: Diverging map: red (negative, blank) -> white -> blue (positive, ink).
CMAP_DIVERGING = "RdBu"
#: Digits as ink on paper.
CMAP_INK = "gray_r"
#: Colours of the verified ladder and the attack bound.
LADDER = {"ibp": "#9ecae1", "crown": "#4292c6", "lp": "#08306b", "attack": "#e6550d", "clean": "#636363"}
LADDER_LABELS = {"ibp": "verified: interval (IBP)", "crown": "verified: backward linear (CROWN)",
                 "lp": "verified: LP", "attack": "attack upper bound", "clean": "clean accuracy"}
_UNKNOWN_HATCH = "#969696"

#: Fixed salt for SVG element ids, so that the same figure gives the same SVG bytes.
rcParams["svg.hashsalt"] = "polylens"

_DPI = 110


# ---------------------------------------------------------------------------------------------
# Output


def figure_png(fig: Figure, dpi: int = _DPI) -> bytes:
    """The figure as PNG bytes (no metadata, so identical figures give identical bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, facecolor="white")
    return buf.getvalue()


def figure_svg(fig: Figure) -> str:
    """The figure as SVG text (no date or creator, fixed id salt: deterministic)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, facecolor="white")
    return buf.getvalue()


def save_figure(fig: Figure, stem: str | Path, svg: bool = True, dpi: int = _DPI) -> list[Path]:
    """Write ``<stem>.png`` (and ``<stem>.svg`` when ``svg``); returns the paths written."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}.png"]  # not with_suffix: stems like "neuron-L1.n0" hold dots
    paths[0].write_bytes(figure_png(fig, dpi))
    if svg:
        paths.append(stem.parent / f"{stem.name}.svg")
        paths[1].write_text(figure_svg(fig), encoding="utf-8")
    return paths


# ---------------------------------------------------------------------------------------------
# Helpers


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(n, ncols))
    return int(math.ceil(n / ncols)), ncols


def _image(v: Array, shape: Sequence[int]) -> Array:
    """A flat vector (d,) laid out as an image of ``shape`` (row-major), or a (1, d) strip when the
    shape is not 2-D."""
    v = np.asarray(v, dtype=np.float64)
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2 and v.size == shape[0] * shape[1]:
        return v.reshape(shape)
    if v.ndim == 2:
        return v
    return v.reshape(1, -1)


def _clean_axis(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_linewidth(0.6)
        s.set_color("#888888")


def _sym_norm(values, floor: float = 1e-12) -> Normalize:
    m = float(np.nanmax(np.abs(np.asarray(values, dtype=np.float64)))) if np.size(values) else 1.0
    m = max(m, floor)
    return TwoSlopeNorm(vcenter=0.0, vmin=-m, vmax=m)


def _upsample(img: Array, shape: tuple[int, int]) -> Array:
    """Nearest-neighbour upsampling of a 2-D array to ``shape`` (each cell becomes a block)."""
    img = np.asarray(img, dtype=np.float64)
    ri = (np.arange(shape[0]) * img.shape[0]) // shape[0]
    ci = (np.arange(shape[1]) * img.shape[1]) // shape[1]
    return img[np.ix_(ri, ci)]


def _wrap(text: str, width: int = 16) -> str:
    """``text`` broken into lines of at most ``width`` characters at spaces (for tick labels)."""
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def _labels(n: int, labels: Sequence[str] | None, prefix: str = "digit ") -> list[str]:
    return [str(s) for s in labels] if labels is not None else [f"{prefix}{c}" for c in range(n)]


# ---------------------------------------------------------------------------------------------
# Robustness


def robustness_curves(summary: Mapping, digits: Sequence[int] | None = None, ncols: int = 4,
                      title: str | None = None) -> Figure:
    """Accuracy against the radius eps: overall, then one panel per digit.

    ``summary``: a sweep summary (:attr:`polylens.lenses.verify.sweep.SweepResult.summary`): ``eps``
    (list), ``overall[eps_str][rate]`` and ``per_digit[digit][eps_str][rate]`` with ``value`` and
    ``ci`` (95% Wilson interval) for rates ``ibp``, ``crown``, ``lp`` (verified, cumulative) and
    ``attack`` (not falsified: an upper bound on robust accuracy). Lines are the rates, bands their
    confidence intervals (LP: light blue fill; attack: dotted orange); the hatched region between
    LP-verified and attack is what stays unknown.
    """
    eps = [float(e) for e in summary["eps"]]
    keys = [f"{e:g}" for e in eps]
    per_digit = summary.get("per_digit", {})
    if digits is None:
        digits = sorted(int(d) for d in per_digit)
    panels = [("all digits", summary["overall"])] + [(f"digit {d}", per_digit[str(d)]) for d in digits]
    nrows, ncols = _grid(len(panels) + 1, ncols)
    fig = Figure(figsize=(3.1 * ncols, 2.5 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    x = np.asarray(eps)
    for a, (name, block) in zip(axes.flat, panels):
        def series(rate):
            v = np.array([block[k][rate]["value"] if k in block else np.nan for k in keys])
            ci = np.array([block[k][rate]["ci"] if k in block else (np.nan, np.nan) for k in keys], dtype=float)
            return v, ci
        lp, _ = series("lp")
        att, _ = series("attack")
        # The 95% band of LP-verified accuracy as a light fill, that of the attack bound as thin dotted
        # lines, and the unknown gap between the two rates hatched, so that no two areas mix colours.
        _, ci = series("lp")
        a.fill_between(x, ci[:, 0], ci[:, 1], color=LADDER["crown"], alpha=0.18, lw=0)
        _, ci = series("attack")
        a.plot(x, ci[:, 0], ":", color=LADDER["attack"], lw=0.8)
        a.plot(x, ci[:, 1], ":", color=LADDER["attack"], lw=0.8)
        a.fill_between(x, lp, att, facecolor="none", edgecolor=_UNKNOWN_HATCH, hatch="////", lw=0)
        for rate in ("ibp", "crown", "lp"):
            v, _ = series(rate)
            a.plot(x, v, "-o", color=LADDER[rate], ms=3, lw=1.8 if rate == "lp" else 1.2)
        v, _ = series("attack")
        a.plot(x, v, "--", color=LADDER["attack"], lw=1.4, marker="v", ms=3)
        n = next((block[k]["lp"]["n"] for k in keys if k in block), 0)
        a.set_title(f"{name} (n={n})", fontsize=10, fontweight="bold" if name == "all digits" else "normal")
        a.set_ylim(-0.02, 1.02)
        a.grid(True, color="#eeeeee", lw=0.6)
        a.tick_params(labelsize=8)
    for a in axes[-1]:
        a.set_xlabel("radius eps (L-inf)", fontsize=9)
    for a in axes[:, 0]:
        a.set_ylabel("accuracy", fontsize=9)
    rest = list(axes.flat)[len(panels):]
    for a in rest:
        a.set_axis_off()
    handles = [Line2D([], [], color=LADDER[r], marker="o", ms=3, lw=1.4, label=LADDER_LABELS[r]) for r in ("ibp", "crown", "lp")]
    handles += [Line2D([], [], color=LADDER["attack"], ls="--", marker="v", ms=3, lw=1.4, label=LADDER_LABELS["attack"]),
                Patch(facecolor="none", edgecolor=_UNKNOWN_HATCH, hatch="////", lw=0, label="unknown (LP .. attack)"),
                Patch(color=LADDER["crown"], alpha=0.18, label="95% Wilson interval, LP-verified"),
                Line2D([], [], color=LADDER["attack"], ls=":", lw=0.8, label="95% Wilson interval, attack")]
    rest[0].legend(handles=handles, loc="center", fontsize=8, frameon=False)
    fig.suptitle(title or "Robust accuracy against eps: verified ladder and attack bound", fontsize=12)
    return fig


# ---------------------------------------------------------------------------------------------
# Signatures


def signature_maps(upper_freq: Array, lower_freq: Array, image_shape: Sequence[int],
                   labels: Sequence[str] | None = None, ncols: int = 5, title: str | None = None,
                   subtitles: Sequence[str] | None = None) -> Figure:
    """One map per digit of ``upper_freq - lower_freq`` (both (C, d), fractions in [0, 1]).

    Blue: the pixel sits at its upper bound in that fraction of LP optima ("wants ink"); red: at
    its lower bound ("wants blank"); white: free or undecided. The scale is fixed to [-1, 1] with
    one colour bar, so maps of different digits compare directly.
    """
    up, lo = np.atleast_2d(upper_freq).astype(float), np.atleast_2d(lower_freq).astype(float)
    C = up.shape[0]
    names = _labels(C, labels)
    nrows, ncols = _grid(C, ncols)
    fig = Figure(figsize=(2.1 * ncols + 0.9, 2.25 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for c, a in enumerate(axes.flat):
        if c >= C:
            a.set_axis_off()
            continue
        im = a.imshow(_image(up[c] - lo[c], image_shape), cmap=CMAP_DIVERGING, vmin=-1, vmax=1,
                      interpolation="nearest")
        _clean_axis(a)
        a.set_title(names[c] if subtitles is None else f"{names[c]}\n{subtitles[c]}", fontsize=9)
    cb = fig.colorbar(im, ax=axes, shrink=0.8, ticks=[-1, -0.5, 0, 0.5, 1])
    cb.ax.set_yticklabels(["-1 at lower\n(wants blank)", "-0.5", "0", "0.5", "+1 at upper\n(wants ink)"], fontsize=7)
    cb.set_label("fraction at upper bound - fraction at lower bound", fontsize=8)
    fig.suptitle(title or "Signatures: where the LP optimum puts each pixel", fontsize=11)
    return fig


def signature_overlays(upper_freq: Array, lower_freq: Array, mean_images: Array, image_shape: Sequence[int],
                       labels: Sequence[str] | None = None, ncols: int = 5, alpha: float = 0.7,
                       title: str | None = None) -> Figure:
    """The signature maps of :func:`signature_maps` drawn over each digit's average image.

    ``mean_images``: (C, H, W) average images in any range (e.g. the 28x28 originals), drawn as ink
    on paper; the (h, w) signature is upsampled to (H, W) by blocks and laid over it with ``alpha``.
    """
    up, lo = np.atleast_2d(upper_freq).astype(float), np.atleast_2d(lower_freq).astype(float)
    means = np.asarray(mean_images, dtype=float)
    C = up.shape[0]
    names = _labels(C, labels)
    nrows, ncols = _grid(C, ncols)
    fig = Figure(figsize=(2.1 * ncols + 0.9, 2.25 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for c, a in enumerate(axes.flat):
        if c >= C:
            a.set_axis_off()
            continue
        base = means[c]
        sig = _image(up[c] - lo[c], image_shape)
        a.imshow(base, cmap=CMAP_INK, interpolation="bilinear", vmin=float(base.min()), vmax=max(float(base.max()), 1e-12))
        big = _upsample(sig, base.shape)
        im = a.imshow(big, cmap=CMAP_DIVERGING, vmin=-1, vmax=1, alpha=alpha, interpolation="nearest")
        # The digit's outline on top, so its shape stays readable under the colours.
        top = float(np.nanmax(base)) if np.isfinite(base).any() else 0.0
        if top > 0:
            a.contour(base, levels=[0.3 * top, 0.6 * top], colors=["#333333", "black"], linewidths=[0.6, 1.1])
        # The grid of the small image, so each block reads as one input pixel.
        h, w = sig.shape
        for i in range(1, h):
            a.axhline(i * base.shape[0] / h - 0.5, color="white", lw=0.3, alpha=0.6)
        for j in range(1, w):
            a.axvline(j * base.shape[1] / w - 0.5, color="white", lw=0.3, alpha=0.6)
        _clean_axis(a)
        a.set_title(names[c], fontsize=9)
    cb = fig.colorbar(im, ax=axes, shrink=0.8, ticks=[-1, 0, 1])
    cb.ax.set_yticklabels(["wants blank", "0", "wants ink"], fontsize=7)
    fig.suptitle(title or "Signatures over each digit's average image", fontsize=11)
    return fig


def tightness_bars(tightness: Sequence[Array], labels: Sequence[str] | None = None,
                   layer_names: Sequence[str] | None = None, neuron_names: Sequence[Sequence[str]] | None = None,
                   ylabel: str = "fraction of optima", title: str | None = None) -> Figure:
    """Envelope-cut tightness per hidden layer: one panel per layer (stacked), grouped bars.

    ``tightness[l]``: (C, n_l, 2) fractions in [0, 1], e.g. the fraction of digit c's LP optima
    where some lower (side 0) / upper (side 1) cut of neuron j of layer l is tight; or (C, n_l)
    without sides. Groups are (neuron, side), one bar per digit (colour per digit, legend right).
    """
    L = len(tightness)
    arrs = [np.asarray(t, dtype=float) for t in tightness]
    arrs = [t[None] if t.ndim == 1 or (t.ndim == 2 and labels is not None and len(labels) == 1) else t for t in arrs]
    groups = [t.shape[1] * (t.shape[2] if t.ndim == 3 else 1) for t in arrs]
    fig = Figure(figsize=(max(7.0, 1.1 * max(groups) + 2.5), 2.4 * L + 0.7), layout="constrained")
    axes = fig.subplots(L, 1, squeeze=False)[:, 0]
    cmap = _tab10()
    for l, (a, t) in enumerate(zip(axes, arrs)):
        C, n = t.shape[0], t.shape[1]
        names = _labels(C, labels)
        nn = list(neuron_names[l]) if neuron_names is not None else [f"L{l + 1}.n{j}" for j in range(n)]
        if t.ndim == 3:
            flat = t.reshape(C, n * 2)
            ticks = [f"{_wrap(nn[j])}\n{'lower' if s == 0 else 'upper'} cut" for j in range(n) for s in (0, 1)]
        else:
            flat, ticks = t, [_wrap(v) for v in nn]
        G = flat.shape[1]
        width = 0.84 / C
        xs = np.arange(G)
        for c in range(C):
            a.bar(xs - 0.42 + width * (c + 0.5), np.nan_to_num(flat[:, :][c]), width=width, color=cmap[c % 10],
                  label=names[c])
        a.set_xticks(xs)
        a.set_xticklabels(ticks, fontsize=7)
        a.set_title(layer_names[l] if layer_names else f"hidden layer {l + 1}", fontsize=10, loc="left")
        a.set_ylim(0, 1.05)
        a.set_xlim(-0.6, G - 0.4)
        a.grid(True, axis="y", color="#eeeeee")
        a.set_axisbelow(True)
        a.tick_params(labelsize=8)
        a.set_ylabel(ylabel, fontsize=8)
    if arrs[0].shape[0] > 1:
        axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    fig.suptitle(title or "Envelope cuts that are tight at the LP optimum, per layer", fontsize=11)
    return fig


def _tab10() -> list:
    from matplotlib import colormaps

    return [colormaps["tab10"](i) for i in range(10)]


# ---------------------------------------------------------------------------------------------
# Prototypes and counterfactuals


def _rgba(img: Array, cmap: str, norm: Normalize) -> Array:
    """A 2-D array as RGBA floats (H, W, 4) through ``cmap`` and ``norm`` (NaN: white)."""
    from matplotlib import colormaps

    out = colormaps[cmap](norm(np.nan_to_num(np.asarray(img, float), nan=0.0)))
    out[~np.isfinite(np.asarray(img, float))] = 1.0
    return out


def _mosaic(tiles: Sequence[Array], rows: int = 1, gap: int = 2, size: int | None = None) -> tuple[Array, int, int]:
    """RGBA tiles (h, w, 4), upsampled by whole factors to a common size, laid out on a white grid of
    ``rows`` rows with ``gap`` pixels between them. Returns (image, tile height, tile width) so that
    callers can place text at tile positions. Drawing one mosaic is far cheaper than one axes per tile."""
    tiles = [np.asarray(t, float) for t in tiles]
    H = size or max(t.shape[0] for t in tiles)
    W = size or max(t.shape[1] for t in tiles)
    up = []
    for t in tiles:
        fy, fx = max(1, H // t.shape[0]), max(1, W // t.shape[1])
        t = np.repeat(np.repeat(t, fy, axis=0), fx, axis=1)
        pad = np.ones((H, W, 4))
        pad[:t.shape[0], :t.shape[1]] = t[:H, :W]
        up.append(pad)
    cols = int(math.ceil(len(up) / rows))
    img = np.ones((rows * H + (rows - 1) * gap, cols * W + (cols - 1) * gap, 4))
    for i, t in enumerate(up):
        r, c = divmod(i, cols)
        img[r * (H + gap):r * (H + gap) + H, c * (W + gap):c * (W + gap) + W] = t
    return img, H, W


def _frame_tiles(ax, n_rows: int, n_cols: int, H: int, W: int, gap: int) -> None:
    """Thin grey frames around the tiles of a mosaic drawn in ``ax``."""
    from matplotlib.patches import Rectangle

    for r in range(n_rows):
        for c in range(n_cols):
            ax.add_patch(Rectangle((c * (W + gap) - 0.5, r * (H + gap) - 0.5), W, H, fill=False, lw=0.5,
                                   ec="#888888", clip_on=False))


def prototype_panels(starts: Array, prototypes: Array, image_shape: Sequence[int], labels: Sequence[str] | None = None,
                     notes: Sequence[str] | None = None, title: str | None = None,
                     lp_points: Array | None = None) -> Figure:
    """Per digit: the start image, the prototype, the change (prototype - start) and, when
    ``lp_points`` is given, the LP optimum's own input; digits in two columns.

    ``starts``, ``prototypes``, ``lp_points``: (C, d) in [0, 1] (NaN rows of ``lp_points`` are left
    blank). Images are ink on paper; the change is blue where ink was added and red where it was
    removed, on one symmetric scale for the figure. ``notes``: one line per digit (e.g. margins).
    """
    s, p = np.atleast_2d(starts).astype(float), np.atleast_2d(prototypes).astype(float)
    C = s.shape[0]
    names = _labels(C, labels)
    k = 4 if lp_points is not None else 3
    ncols = 2 if C > 3 else 1
    per = C // ncols + (C % ncols > 0)
    delta = p - s
    dnorm = _sym_norm(delta, 0.01)
    ink = Normalize(0.0, 1.0)
    fig = Figure(figsize=(4.4 * ncols + 1.0, 1.5 * per + 0.9))
    fig.subplots_adjust(left=0.02, right=0.88, top=1 - 0.7 / (1.5 * per + 0.9), bottom=0.02, wspace=0.06, hspace=0.55)
    axes = fig.subplots(per, ncols, squeeze=False)
    heads = ["start", "prototype", "change", "LP optimum"][:k]
    gap = 3
    for c in range(per * ncols):
        a = axes[c % per, c // per]
        if c >= C:
            a.set_axis_off()
            continue
        tiles = [_rgba(_image(s[c], image_shape), CMAP_INK, ink), _rgba(_image(p[c], image_shape), CMAP_INK, ink),
                 _rgba(_image(delta[c], image_shape), CMAP_DIVERGING, dnorm)]
        if k == 4:
            tiles.append(_rgba(_image(lp_points[c], image_shape), CMAP_INK, ink))
        img, H, W = _mosaic(tiles, gap=gap, size=28)
        a.imshow(img, interpolation="nearest")
        _frame_tiles(a, 1, k, H, W, gap)
        a.set_axis_off()
        for j, h in enumerate(heads):
            a.text(j * (W + gap) + W / 2, -2, h, ha="center", va="bottom", fontsize=7)
        a.set_title(names[c] + (f": {notes[c]}" if notes is not None else ""), fontsize=8, pad=13, loc="left",
                    fontweight="bold")
    cax = fig.add_axes((0.905, 0.2, 0.015, 0.6))
    from matplotlib.cm import ScalarMappable

    cb = fig.colorbar(ScalarMappable(norm=dnorm, cmap=CMAP_DIVERGING), cax=cax)
    cb.set_label("change: blue = ink added, red = ink removed", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    fig.suptitle(title or "Prototypes: the image the LP finds for each digit", fontsize=11)
    return fig


def prototype_strip(starts: Array, prototypes: Array, radii: Sequence[float], image_shape: Sequence[int],
                    margins: Array, bounds: Array, start_margins: Array, labels: Sequence[str] | None = None,
                    title: str | None = None) -> Figure:
    """A strip per digit: its start image, then its prototype at each radius (growing; the last may be
    the whole box), with the real margin and the proven bound under each image.

    ``starts`` (D, d); ``prototypes`` (R, D, d) for R radii; ``margins`` and ``bounds`` (R, D): the
    prototypes' real margins and the rigorous upper bounds of the margin anywhere in each ball;
    ``start_margins`` (D,).
    """
    s = np.atleast_2d(starts).astype(float)
    P = np.asarray(prototypes, dtype=float)
    R, D = P.shape[0], P.shape[1]
    names = _labels(D, labels)
    ink = Normalize(0.0, 1.0)
    fig = Figure(figsize=(1.05 * (R + 1) + 0.9, 1.25 * D + 0.8))
    fig.subplots_adjust(left=0.09, right=0.99, top=1 - 0.6 / (1.25 * D + 0.8), bottom=0.01, wspace=0.08, hspace=0.62)
    axes = fig.subplots(D, R + 1, squeeze=False)
    heads = ["start"] + [("whole box" if r >= 1.0 else f"eps {r:g}") for r in radii]
    for i in range(D):
        for j in range(R + 1):
            a = axes[i, j]
            img = s[i] if j == 0 else P[j - 1, i]
            a.imshow(_rgba(_image(img, image_shape), CMAP_INK, ink), interpolation="nearest")
            a.set_xticks([])
            a.set_yticks([])
            for sp in a.spines.values():
                sp.set_linewidth(0.4)
            text = f"m {start_margins[i]:+.2f}" if j == 0 else f"m {margins[j - 1, i]:+.2f}\n<= {bounds[j - 1, i]:+.2f}"
            a.set_xlabel(text, fontsize=6, labelpad=1.5)
            if i == 0:
                a.set_title(heads[j], fontsize=7, pad=3)
        axes[i, 0].set_ylabel(names[i], fontsize=8, rotation=0, ha="right", va="center", labelpad=4)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def counterfactual_gaps(labels: Sequence[str], lower_lp: Array, lower: Array, real: Array,
                        title: str = "Counterfactuals: the proven L1 lower bound against the best real change") -> Figure:
    """Per pair: the L1 change of the best real counterfactual (dot), the proven lower bound of every
    counterfactual in the ball (bar), and the plain LP's bound before tightening (thin bar). The gap
    between the bar's end and the dot is what is not known."""
    n = len(labels)
    y = np.arange(n)[::-1]
    fig = Figure(figsize=(6.2, 0.45 * n + 1.2))
    ax = fig.subplots()
    lower_lp, lower, real = (np.asarray(v, dtype=float) for v in (lower_lp, lower, real))
    fin = lambda v: np.where(np.isfinite(v), v, np.nan)  # noqa: E731
    ax.barh(y, fin(lower), height=0.55, color="#9ecae1", label="proven lower bound (after tightening)")
    ax.barh(y, fin(lower_lp), height=0.18, color="#3182bd", label="lower bound of the LP alone")
    ax.plot(fin(real), y, "o", color="#d95f02", label="best real counterfactual")
    for k in range(n):
        if np.isfinite(real[k]) and np.isfinite(lower[k]):
            ax.plot([lower[k], real[k]], [y[k], y[k]], color="#d95f02", lw=1, ls=":")
        if not np.isfinite(lower[k]):
            ax.text(0.0, y[k], "  unreachable: proved", va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("L1 change of the image")
    ax.set_xlim(left=0.0)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", lw=0.3)
    fig.tight_layout()
    return fig


def counterfactual_triptych(original: Array, result: Array, image_shape: Sequence[int], title: str,
                            original_title: str = "original", result_title: str = "result") -> Figure:
    """Original image, the change (result - original: blue = ink added, red = removed) and the
    result; ``title`` names the pair and the statuses."""
    o, r = np.asarray(original, float), np.asarray(result, float)
    fig = Figure(figsize=(4.9, 2.35), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(_image(o, image_shape), cmap=CMAP_INK, vmin=0, vmax=1, interpolation="nearest")
    d = r - o
    norm = _sym_norm(d, 0.01)
    im = axes[1].imshow(_image(d, image_shape), cmap=CMAP_DIVERGING, norm=norm, interpolation="nearest")
    axes[2].imshow(_image(r, image_shape), cmap=CMAP_INK, vmin=0, vmax=1, interpolation="nearest")
    for a, t in zip(axes, (original_title, "change", result_title)):
        _clean_axis(a)
        a.set_title(t, fontsize=8)
    cb = fig.colorbar(im, ax=axes[1], shrink=0.8, location="bottom", pad=0.02)
    cb.set_ticks([norm.vmin, 0.0, norm.vmax], labels=[f"{norm.vmin:.2g}", "0", f"+{norm.vmax:.2g}"])
    cb.ax.tick_params(labelsize=7)
    cb.set_label("blue: ink added, red: removed", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------
# Neurons


def neuron_panel(name: str, weight_map: Array | None, maximiser: Array | None, minimiser: Array | None,
                 image_shape: Sequence[int], *, top_images: Array | None = None, bottom_images: Array | None = None,
                 top_values: Array | None = None, bottom_values: Array | None = None,
                 class_counts: Array | None = None, bin_edges: Array | None = None, class_mean: Array | None = None,
                 subtitle: str = "", map_title: str = "weights", max_value: float | None = None,
                 min_value: float | None = None, n_show: int = 4) -> Figure:
    """Everything about one neuron in one row.

    Left to right: its map (weights for layer 1; blue positive, red negative), the LP maximiser and
    minimiser over the input box (ink on paper, with the neuron's value there), its most and least
    activating images (two rows of ``n_show``), and the histogram of its activation per class
    (rows: classes; grey level: the fraction of that class's images in each bin; orange tick:
    the class mean).

    Shapes: ``weight_map`` (d,) or ``image_shape``; ``maximiser``, ``minimiser`` (d,);
    ``top_images``/``bottom_images`` (k, d) in [0, 1] or (k, H, W) originals (uint8 or float);
    ``top_values``/``bottom_values`` (k,); ``class_counts`` (C, B) with ``bin_edges`` (B+1,);
    ``class_mean`` (C,).
    """
    fig = Figure(figsize=(13.5, 3.0), layout="constrained")
    gs = fig.add_gridspec(2, 2 * 3 + n_show + 5, width_ratios=[1] * (6 + n_show) + [1] * 5)
    ax_w = fig.add_subplot(gs[:, 0:2])
    ax_mx = fig.add_subplot(gs[:, 2:4])
    ax_mn = fig.add_subplot(gs[:, 4:6])
    if weight_map is not None:
        w = np.asarray(weight_map, float).ravel()
        im = ax_w.imshow(_image(w, image_shape), cmap=CMAP_DIVERGING, norm=_sym_norm(w), interpolation="nearest")
        cb = fig.colorbar(im, ax=ax_w, shrink=0.75, location="bottom", pad=0.03)
        cb.ax.tick_params(labelsize=6)
    ax_w.set_title(f"{map_title}\n(blue +, red -)", fontsize=8)
    for a, v, t, val in ((ax_mx, maximiser, "LP maximiser", max_value), (ax_mn, minimiser, "LP minimiser", min_value)):
        if v is not None:
            a.imshow(_image(v, image_shape), cmap=CMAP_INK, vmin=0, vmax=1, interpolation="nearest")
        a.set_title(t + (f"\nvalue {val:+.3g}" if val is not None and np.isfinite(val) else ""), fontsize=8)
    for a in (ax_w, ax_mx, ax_mn):
        _clean_axis(a)

    ax_t = fig.add_subplot(gs[:, 6:6 + n_show])
    ax_t.set_axis_off()
    strips = [(top_images, top_values), (bottom_images, bottom_values)]
    if any(im is not None for im, _ in strips):
        tiles, vals = [], []
        for imgs, vv in strips:
            imgs = np.zeros((0, 1, 1)) if imgs is None else np.asarray(imgs)
            scale = 255.0 if imgs.dtype == np.uint8 else 1.0
            for i in range(n_show):
                if i < len(imgs):
                    im = imgs[i].astype(float) / scale
                    im = _image(im, image_shape) if im.ndim == 1 else im
                    tiles.append(_rgba(im, CMAP_INK, Normalize(0.0, 1.0)))
                    vals.append(None if vv is None else float(vv[i]))
                else:
                    tiles.append(np.ones((2, 2, 4)))
                    vals.append(None)
        gap = 6
        img, H, W = _mosaic(tiles, rows=2, gap=gap, size=28)
        ax_t.imshow(img, interpolation="nearest")
        _frame_tiles(ax_t, 2, n_show, H, W, gap)
        for i, v in enumerate(vals):
            if v is not None:
                r, c = divmod(i, n_show)
                ax_t.text(c * (W + gap) + W / 2, r * (H + gap) + H + 0.5, f"{v:+.2f}", ha="center", va="top",
                          fontsize=6)
        ax_t.text(-2, H / 2, "top", rotation=90, ha="right", va="center", fontsize=7)
        ax_t.text(-2, H + gap + H / 2, "bottom", rotation=90, ha="right", va="center", fontsize=7)
        ax_t.set_title("most / least activating images", fontsize=8)
    ax_h = fig.add_subplot(gs[:, 6 + n_show:])
    if class_counts is not None and bin_edges is not None:
        H = np.asarray(class_counts, float)
        C = H.shape[0]
        H = H / np.maximum(H.sum(axis=1, keepdims=True), 1.0)
        e = np.asarray(bin_edges, float)
        ax_h.imshow(H, aspect="auto", cmap="Greys", extent=(e[0], e[-1], C - 0.5, -0.5), interpolation="nearest",
                    vmin=0, vmax=max(float(H.max()), 1e-12))
        if class_mean is not None:
            ax_h.plot(np.asarray(class_mean, float), np.arange(C), "|", color=LADDER["attack"], ms=9, mew=2,
                      label="class mean")
            ax_h.legend(fontsize=6, loc="upper right", frameon=False, bbox_to_anchor=(1.0, 1.12))
        ax_h.set_yticks(range(C))
        ax_h.tick_params(labelsize=7)
        ax_h.set_ylabel("class", fontsize=8)
        ax_h.set_xlabel("activation", fontsize=8)
    ax_h.set_title("activation per class", fontsize=8, loc="left")
    fig.suptitle(f"{name}" + (f"  —  {subtitle}" if subtitle else ""), fontsize=10, fontweight="bold")
    return fig


# ---------------------------------------------------------------------------------------------
# Traces


def trace_flow(graph, image_shape: Sequence[int] | None = None, max_pixels: int = 8, title: str | None = None,
               min_share: float = 0.02) -> Figure:
    """The flow from pixels through named neurons into one logit (a :class:`~polylens.lenses.discover.trace.FlowGraph`
    or anything with its fields).

    Columns: the ``max_pixels`` pixels with the largest |flow| (the rest merged into one "other
    pixels" node), each hidden layer's neurons (labelled with their names, their value and their
    flow into the logit), the logit. Edge width grows with |flow| along the edge, colour is its
    sign (blue pushes the logit up, red down); edges below ``min_share`` of the largest are left
    out. With a 2-D ``image_shape`` a side panel shows the input with each pixel's flow laid over it.

    Fields read: ``target``, ``node_label``, ``node_layer`` (V,), ``node_index``, ``node_value``,
    ``node_flow``, ``edge_source``/``edge_target`` (E,) node positions and ``edge_flow`` (E,).
    """
    layer = np.asarray(graph.node_layer)
    flow = np.asarray(graph.node_flow, float)
    value = np.asarray(graph.node_value, float)
    labels = list(graph.node_label)
    src, dst, ef = np.asarray(graph.edge_source), np.asarray(graph.edge_target), np.asarray(graph.edge_flow, float)
    L = int(layer.max())  # the logit's layer
    pix = np.flatnonzero(layer == 0)
    order = pix[np.argsort(-np.abs(flow[pix]), kind="stable")]
    shown = np.sort(order[:max_pixels])
    rest = np.setdiff1d(pix, shown)
    # Column layout: node position -> (column, slot); "other pixels" gets slot len(shown).
    cols: list[list[int]] = [list(shown) + ([-1] if len(rest) else [])]
    for l in range(1, L + 1):
        cols.append(list(np.flatnonzero(layer == l)))
    xs = np.linspace(0.0, 1.0, len(cols))
    pos: dict[int, tuple[float, float]] = {}
    for c, members in enumerate(cols):
        ys = np.linspace(0.92, 0.06, len(members)) if len(members) > 1 else np.array([0.5])
        for m, y in zip(members, ys):
            pos[int(m)] = (xs[c], float(y))
    # Edges: pixel edges of hidden pixels merged per target into "other pixels" (-1).
    is_rest = np.isin(src, rest)
    E_src = np.where(is_rest, -1, src)
    keys = np.stack([E_src, dst], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    agg = np.zeros(len(uniq))
    np.add.at(agg, inv.ravel(), ef)
    scale = float(np.abs(agg).max()) if agg.size and np.abs(agg).max() > 0 else 1.0
    show_img = image_shape is not None and len(tuple(image_shape)) == 2 and len(pix) == int(np.prod(image_shape))
    fig = Figure(figsize=(11.0 if show_img else 9.0, 4.6), layout="constrained")
    if show_img:
        gs = fig.add_gridspec(2, 5)
        ax_in = fig.add_subplot(gs[0, 0])
        ax_img = fig.add_subplot(gs[1, 0])
        ax = fig.add_subplot(gs[:, 1:])
        pv = value[pix]
        pf = flow[pix]
        ax_in.imshow(_image(pv, image_shape), cmap=CMAP_INK, vmin=0, vmax=1, interpolation="nearest")
        ax_in.set_title("input", fontsize=8)
        ax_img.imshow(_image(pf, image_shape), cmap=CMAP_DIVERGING, norm=_sym_norm(pf), interpolation="nearest")
        w = int(tuple(image_shape)[1])
        big = float(np.abs(pf).max()) if pf.size else 0.0
        for p in shown:
            k = int(graph.node_index[p])
            dark = big > 0 and abs(float(flow[p])) > 0.6 * big
            ax_img.text(k % w, k // w, str(k), ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")
        for a_ in (ax_in, ax_img):
            _clean_axis(a_)
        ax_img.set_title("pixel flow to the logit\n(blue +, red -; numbered: shown)", fontsize=8)
    else:
        ax = fig.add_subplot(1, 1, 1)
    for (s_, d_), v in zip(uniq, agg):
        if abs(v) < min_share * scale or int(s_) not in pos or int(d_) not in pos:
            continue
        (x0, y0), (x1, y1) = pos[int(s_)], pos[int(d_)]
        ax.plot([x0, x1], [y0, y1], color=INK if v > 0 else BLANK, lw=0.5 + 6.0 * abs(v) / scale,
                alpha=0.3 + 0.6 * abs(v) / scale, solid_capstyle="round", zorder=1)
    box = dict(boxstyle="round,pad=0.3", fc="white", lw=1.6)
    for c, members in enumerate(cols):
        for m in members:
            x, y = pos[int(m)]
            if c == 0:
                if m == -1:
                    f = float(flow[rest].sum())
                    txt = f"other {len(rest)} pixels\nflow {f:+.3g}"
                else:
                    f = float(flow[m])
                    txt = f"{labels[m]} = {value[m]:.2f}  flow {f:+.3g}"
                ax.text(x, y, txt, ha="right", va="center", fontsize=7, zorder=3,
                        bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=INK if f > 0 else BLANK, lw=1.0))
            elif c < L:
                f = float(flow[m])
                ax.text(x, y, f"{labels[m]}\nz = {value[m]:+.3g}\nflow {f:+.3g}", ha="center", va="center",
                        fontsize=7.5, zorder=3, bbox={**box, "ec": INK if f > 0 else BLANK})
            else:
                ax.text(x, y, f"{labels[m]}\n= {value[m]:+.3g}", ha="center", va="center", fontsize=9,
                        fontweight="bold", zorder=3, bbox={**box, "fc": "#f0f0f0", "ec": "black"})
    heads = ["pixels (largest |flow|)"] + [f"hidden layer {l}" for l in range(1, L)] + ["logit"]
    for x, h in zip(xs, heads):
        ax.text(x, 1.01, h, ha="center", va="bottom", fontsize=8, color="#444444")
    ax.set_xlim(-0.2, 1.08)
    ax.set_ylim(-0.02, 1.07)
    ax.set_axis_off()
    handles = [Line2D([], [], color=INK, lw=3, label="pushes the logit up (+)"),
               Line2D([], [], color=BLANK, lw=3, label="pushes it down (-)")]
    ax.legend(handles=handles, loc="lower right", fontsize=7, frameon=False)
    fig.suptitle(title or f"Trace into logit[{graph.target}]: edge width = |flow| along the edge", fontsize=10)
    return fig


def formula_figure(lines: Sequence[str], title: str = "Formulas per digit") -> Figure:
    """Formula text, one line per digit, in a monospaced figure (for the PNG/SVG set; the HTML
    report shows the same text as a table)."""
    fig = Figure(figsize=(10, 0.32 * len(lines) + 0.8))
    fig.text(0.01, 0.98, title, fontsize=10, fontweight="bold", va="top")
    for i, line in enumerate(lines):
        fig.text(0.01, 0.98 - (i + 1.3) / (len(lines) + 1.8), line, family="monospace", fontsize=8, va="top")
    return fig
