"""The full report of a model: run every analysis, turn each result into a report section, write it.

:func:`run_report` is what ``polylens report`` and ``polylens demo`` call. It runs, in order,

1. **robustness**: a resumable sweep over radii (:func:`polylens.lenses.verify.sweep.run_sweep`, stored
   under ``OUT/sweep``, so a second run reuses it);
2. **signatures**: the constraint signature of every digit (:func:`~polylens.lenses.discover.signatures.signatures`);
3. **prototypes**: a max-margin prototype per digit (:func:`~polylens.lenses.discover.prototypes.prototypes`);
4. **counterfactuals**: a few instructive (label, target) pairs
   (:func:`~polylens.lenses.discover.counterfactuals.counterfactual_pairs`);
5. **neurons**: every hidden neuron's profile (:func:`~polylens.lenses.discover.neurons.neuron_report`) and
   suggested names (:func:`~polylens.lenses.discover.naming.suggest_names`);
6. **traces**: the average flow into each digit's logit and its formula
   (:func:`~polylens.lenses.discover.trace.digit_formulas`);

and then writes ``OUT/report.html`` with :func:`polylens.report.html.write_report` (figures, CSV
tables and JSON data next to it) and ``OUT/timings.json`` (wall time per stage). Each ``*_section``
function turns one result object into a :class:`~polylens.report.html.Section` and can be used on
its own.

Reproducibility: every analysis is deterministic (seeded attacks, single-threaded simplex), so two
runs write the same numbers; the JSON under ``OUT/data`` leaves out wall times (those go to
``timings.json`` only).

Models whose input is not a 2-D image still get every section; the image figures (signature maps,
prototypes, counterfactual triptychs, neuron maps) are left out with a note.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from polylens.errors import PolylensError
from polylens.report.html import ReportFigure, Section, Table, write_report

__all__ = [
    "SECTION_IDS", "ReportOptions", "ReportRun", "counterfactuals_section", "neurons_section", "prototypes_section",
    "robustness_section", "run_report", "signatures_section", "traces_section",
]

Array = np.ndarray

#: The sections of a full report, in order.
SECTION_IDS = ("robustness", "signatures", "prototypes", "counterfactuals", "neurons", "traces")

#: Keys left out of section JSON: wall times differ between runs (they go to timings.json).
_VOLATILE = frozenset({"seconds"})


@dataclass(frozen=True)
class ReportOptions:
    """What the report runs, and how hard.

    ``sweep_eps``: radii of the robustness sweep; ``sweep_n``: how many test images it certifies
    (None: all); ``workers``: its processes; ``lp_classifier``: also run the LP classifier at each
    radius (on the seed sweep it adds about 1.7 times the cost of certification). ``signature_eps``, ``objective``, ``sense``,
    ``signature_per_digit`` (None: every correctly classified image): the signature LPs.
    ``prototype_eps``, ``prototype_lam``: the prototype LP. ``counterfactual_eps``, ``n_pairs``: the
    counterfactuals. ``neuron_top``: most/least activating images per neuron. ``n_images``: use only
    the first that many test images for every stage (None: all; for quick runs and tests).
    """

    sweep_eps: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
    sweep_n: int | None = None
    workers: int = 2
    lp_classifier: bool = True
    signature_eps: float = 0.02
    objective: str = "logit"
    sense: str = "max"
    signature_per_digit: int | None = 100
    prototype_eps: float = 0.1
    prototype_lam: float = 0.01
    counterfactual_eps: float = 0.3
    n_pairs: int = 4
    neuron_top: int = 8
    n_images: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "sweep_eps", tuple(float(e) for e in self.sweep_eps))


@dataclass
class ReportRun:
    """What :func:`run_report` did: the model, the analysis results by section id, the sections,
    the report path, the files written, wall seconds per stage (and ``total``), and the error
    message of every stage that failed (its section then says so)."""

    model: Any
    options: ReportOptions
    out: Path
    results: dict = field(default_factory=dict)
    sections: list = field(default_factory=list)
    report: Path | None = None
    files: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model": getattr(self.model, "source", "memory"), "out": str(self.out),
                "report": None if self.report is None else str(self.report), "files": [str(f) for f in self.files],
                "timings": dict(self.timings), "errors": dict(self.errors),
                "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.options.__dict__.items()}}


# ---------------------------------------------------------------------------------------------
# Helpers


def _strip(obj: Any) -> Any:
    """``obj`` with every ``seconds`` key removed, recursively (for reproducible JSON)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in _VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _is_image(shape: Sequence[int]) -> bool:
    return len(tuple(shape)) == 2 and min(shape) >= 2


def _fig(fig, stem: str, caption: str, alt: str = "", svg: bool = False) -> ReportFigure:
    """Render a figure for the report. SVG only where it is cheap and useful: line and bar charts
    (``svg=True``); figures made of images (maps, digits) are raster inside an SVG anyway."""
    return ReportFigure.from_figure(fig, stem, caption, alt, svg=svg)


def _f(v: Any) -> float | None:
    """A finite float or None."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v + 0.0 if math.isfinite(v) else None  # + 0.0 turns -0.0 into 0.0


def _ci(r: Mapping) -> str:
    lo, hi = r["ci"]
    return f"{lo:.3f}–{hi:.3f}"


def _names_of(model: Any, network, x: Array | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(display names by key, suggested names by key). Display: the card's name where there is one,
    else the suggestion (made with the images ``x`` when given), else the key. Suggestions need a
    2-D input; otherwise they are empty."""
    from polylens.lenses.discover.naming import suggest_names
    from polylens.nn.model import neuron_keys

    keys = neuron_keys(network)
    card = dict(getattr(getattr(model, "card", None), "neuron_names", {}) or {})
    try:
        sug = suggest_names(model, x if x is not None and len(x) >= 2 else None).as_names()
    except PolylensError:
        sug = {}
    return {k: card.get(k) or sug.get(k) or k for k in keys}, sug


# ---------------------------------------------------------------------------------------------
# Sections


ROBUSTNESS_INTRO = """\
How far can an image be pushed before the network's answer may change? For each radius eps every test
image is certified in its L-infinity ball (intersected with [0, 1]): cheapest first by interval bounds
(IBP), then backward linear bounds (CROWN), then LPs over the polytope. Each verified rate is a proven
lower bound on robust accuracy; the attack rate (images no attack could flip) is an upper bound. The hatched
band between LP-verified and attack is what stays unknown.

Panels: all digits first, then one per digit. Bands are 95% Wilson intervals: each digit is a finite
sample, so small differences between digits are noise."""


def robustness_section(sweep) -> Section:
    """The robustness section from a :class:`~polylens.lenses.verify.sweep.SweepResult` (or anything with
    its ``summary`` and ``n_images``)."""
    from polylens.report.figures import robustness_curves

    summary = sweep.summary
    eps = [float(e) for e in summary["eps"]]
    with_lpc = bool(sweep.rows) and sweep.rows[0].get("lp_class") is not None
    cols = ["eps", "images", "clean", "IBP verified", "CROWN verified", "LP verified", "LP 95% CI", "attack bound",
            "attack 95% CI", "unknown"] + (["LP classifier"] if with_lpc else [])
    rows = []
    for e in eps:
        r = summary["overall"][f"{e:g}"]
        row = [e, r["lp"]["n"], r["clean"]["value"], r["ibp"]["value"], r["crown"]["value"], r["lp"]["value"],
               _ci(r["lp"]), r["attack"]["value"], _ci(r["attack"]), r["unknown"]["value"]]
        rows.append(tuple(row + ([r["lp_classifier"]["value"]] if with_lpc else [])))
    overall = Table("robustness-overall", tuple(cols), tuple(rows), "All digits: rates per radius (95% Wilson intervals)")
    digits = sorted(int(d) for d in summary.get("per_digit", {}))
    show_eps = [e for e in eps if e > 0] or eps
    per = Table("robustness-per-digit", ("digit",) + tuple(f"LP verified at eps={e:g}" for e in show_eps),
                tuple((d,) + tuple(f"{summary['per_digit'][str(d)][f'{e:g}']['lp']['value']:.2f} "
                                   f"({_ci(summary['per_digit'][str(d)][f'{e:g}']['lp'])})" for e in show_eps)
                      for d in digits),
                "LP-verified accuracy per digit, with its 95% interval")
    long_rows = []
    for d in digits:
        for e in eps:
            r = summary["per_digit"][str(d)][f"{e:g}"]
            long_rows.append((d, e, r["lp"]["n"]) + tuple(v for name in ("clean", "ibp", "crown", "lp", "attack", "unknown")
                                                         for v in (r[name]["value"], r[name]["ci"][0], r[name]["ci"][1])))
    long = Table("robustness-per-digit-long",
                 ("digit", "eps", "n") + tuple(f"{n}{s}" for n in ("clean", "ibp", "crown", "lp", "attack", "unknown")
                                               for s in ("", "_lo", "_hi")), tuple(long_rows), show=False)
    fig = _fig(robustness_curves(summary), "robustness",
               "Accuracy against eps: verified by IBP, CROWN and LP (lower bounds), attack upper bound (orange, "
               "dashed), unknown hatched; light blue band and dotted orange lines: 95% Wilson intervals.",
               "Robust accuracy curves, overall and per digit", svg=True)
    n = sweep.n_images
    note = "" if with_lpc else ("The LP classifier column is not computed here (it costs about ten times the "
                                "certification); `polylens verify` computes it.")
    return Section("robustness", "Robustness: what survives a push", ROBUSTNESS_INTRO, figures=(fig,),
                   tables=(overall, per, long), note=note,
                   data={"n_images": n, "eps": eps, "summary": summary},
                   extra=(f"{n} test images, {len(eps)} radii; every (image, radius) verdict is in the sweep store next to this report.",))


SIGNATURES_INTRO = """\
For each digit and each of its correctly classified test images, the LP over the network's polytope on the
image's eps-ball maximises (or minimises) the digit's logit or margin. At the optimum every input pixel sits
somewhere in its box: at its upper bound (the optimum wants MORE ink there: blue), at its lower bound (wants
LESS ink, i.e. blank: red) or in between (white). A digit's signature map is, per pixel, the fraction of its
images whose optimum puts the pixel at the upper bound minus the fraction at the lower bound.

The second figure lays each map over the digit's average 28x28 image (outline in black), so the blue and red
regions can be read against the strokes. The bar plots show, per hidden layer, how often a lower or upper
envelope cut of each neuron is tight at the optimum: those are the constraints that hold the optimum in
place. Distinctiveness: how often a single image's signature (pixels at bounds plus tight cuts) is closest
to its own digit's mean signature (leave-one-out)."""


def signatures_section(sig, neuron_names: Mapping[str, str] | None = None, draw: bool = True) -> Section:
    """The signatures section from a :class:`~polylens.lenses.discover.signatures.SignatureResult`
    (``draw=False``: tables and data only, no figures)."""
    from polylens.report.figures import signature_maps, signature_overlays, tightness_bars

    digits = list(sig.digits)
    labels = [f"digit {d}" for d in digits]
    names = neuron_names or {}
    image = _is_image(sig.input_shape)
    figs = []
    if draw and image and int(np.sum(sig.n_images)) > 0:
        up, lo = np.nan_to_num(sig.pixel_upper_freq), np.nan_to_num(sig.pixel_lower_freq)
        figs.append(_fig(signature_maps(up, lo, sig.input_shape, labels,
                                        subtitles=[f"n={int(n)}" for n in sig.n_images],
                                        title=f"Signatures: {sig.sense} {sig.objective}, eps={sig.eps:g} "
                                              "(blue: wants ink, red: wants blank)"),
                         "signature-maps", "Signature map per digit: fraction of LP optima with the pixel at its "
                         "upper bound minus the fraction at its lower bound (blue = wants ink, red = wants blank).",
                         "Red and blue signature maps, one per digit"))
        if _is_image(np.asarray(sig.mean_image).shape[1:]):
            figs.append(_fig(signature_overlays(up, lo, np.nan_to_num(sig.mean_image), sig.input_shape, labels),
                             "signature-overlays", "The same maps over each digit's average image (black outline).",
                             "Signature maps over the average images"))
    nn = [[names.get(f"L{l}.n{j}", f"L{l}.n{j}") for j in range(w)] for l, w in enumerate(sig.layer_widths, 1)]
    if draw and sig.cut_tight_freq and int(np.sum(sig.n_images)) > 0:
        figs.append(_fig(tightness_bars([np.nan_to_num(c) for c in sig.cut_tight_freq], labels, neuron_names=nn),
                         "signature-tightness", "Per hidden layer: fraction of each digit's LP optima where a lower / "
                         "upper envelope cut of the neuron is tight.", "Envelope-cut tightness bar plots", svg=True))
    rows = []
    for i, d in enumerate(digits):
        n = int(sig.n_images[i])
        rows.append((d, n, int(sig.n_failed[i]),
                     _f(np.mean(sig.pixel_upper_freq[i])) if n else None, _f(np.mean(sig.pixel_lower_freq[i])) if n else None,
                     _f(np.mean(sig.pixel_upper_binding_freq[i] + sig.pixel_lower_binding_freq[i])) if n else None,
                     _f(sig.distinct_per_digit[i])))
    table = Table("signatures", ("digit", "images", "LP failed", "pixels at upper (mean)", "pixels at lower (mean)",
                                 "binding (mean)", "distinctiveness"), tuple(rows),
                  f"Per digit; overall distinctiveness (nearest mean signature, leave-one-out): "
                  f"{sig.distinct_accuracy:.3f}")
    tight_rows = []
    for l, c in enumerate(sig.cut_tight_freq, 1):
        for i, d in enumerate(digits):
            for j in range(c.shape[1]):
                tight_rows.append((d, l, j, nn[l - 1][j], _f(c[i, j, 0]), _f(c[i, j, 1])))
    tight = Table("signature-tightness", ("digit", "layer", "neuron", "name", "lower cut tight", "upper cut tight"),
                  tuple(tight_rows), show=False)
    map_rows = tuple((d, p, _f(sig.pixel_upper_freq[i, p]), _f(sig.pixel_lower_freq[i, p]))
                     for i, d in enumerate(digits) for p in range(sig.pixel_upper_freq.shape[1]))
    maps = Table("signature-pixels", ("digit", "pixel", "upper_freq", "lower_freq"), map_rows, show=False)
    keep = ("digits", "eps", "objective", "sense", "only_correct", "mode", "cuts", "input_shape", "layer_widths",
            "n_images", "n_failed", "pixel_lower_freq", "pixel_upper_freq", "pixel_lower_binding_freq",
            "pixel_upper_binding_freq", "cut_tight_freq", "pre_bound_freq", "distinct_accuracy", "distinct_per_digit",
            "distinct_confusion")
    full = sig.to_dict()
    note = "" if image else "The input is not a 2-D image: maps are left out; the tables hold the frequencies."
    return Section("signatures", "Signatures: which constraints hold each digit's optimum", SIGNATURES_INTRO,
                   figures=tuple(figs), tables=(table, tight, maps), note=note, data={k: full[k] for k in keep})


PROTOTYPES_INTRO = """\
For each digit, start from its best test image (largest real margin) and let the LP move it within an
eps-ball: maximise the worst-case margin of the digit minus a price lam per unit of ink moved. The LP's
optimum is a point of the relaxation; the prototype shown is the LP point when the real network agrees it
is better than the start, else the best point on the segment towards it, else the start itself (so the
prototype's real margin is never below the start's). The change is blue where ink was added and red where
it was removed. "margin <=" is a proven upper bound on the real margin of any image in the ball."""


def prototypes_section(proto, draw: bool = True) -> Section:
    """The prototypes section from a :class:`~polylens.lenses.discover.prototypes.PrototypeResult`
    (``draw=False``: no figures)."""
    from polylens.report.figures import prototype_panels

    digits = list(proto.digits)
    figs = []
    if draw and _is_image(proto.input_shape):
        notes = [f"margin {proto.start_margin[i]:+.2f} -> {proto.prototype_margin[i]:+.2f} ({proto.source[i]})"
                 for i in range(len(digits))]
        figs.append(_fig(prototype_panels(proto.start, proto.prototype, proto.input_shape,
                                          [f"digit {d}" for d in digits], notes=notes, lp_points=proto.lp_input,
                                          title=f"Prototypes: eps={proto.eps:g}, lam={proto.lam:g}"),
                         "prototypes", "Per digit: start image, prototype, change (blue = ink added, red = removed) "
                         "and the LP's own optimum input.", "Prototype images per digit"))
    rows = tuple((d, int(proto.start_index[i]), _f(proto.start_margin[i]), _f(proto.prototype_margin[i]),
                  _f(proto.margin_upper[i]), _f(proto.lp_margin[i]), proto.source[i], int(proto.n_changed[i]),
                  _f(proto.l1[i]), proto.lp_status[i]) for i, d in enumerate(digits))
    table = Table("prototypes", ("digit", "start image", "start margin", "prototype margin", "margin <= (proven)",
                                 "LP margin (relaxed)", "source", "changed pixels", "L1 change", "LP status"), rows,
                  f"eps={proto.eps:g}, lam={proto.lam:g}")
    note = "" if _is_image(proto.input_shape) else "The input is not a 2-D image: the image figure is left out."
    return Section("prototypes", "Prototypes: the most typical nearby image", PROTOTYPES_INTRO, figures=tuple(figs),
                   tables=(table,), note=note, data=proto.to_dict())


COUNTERFACTUALS_INTRO = """\
The smallest change (in L1) to a representative image of one digit that makes the network call it another,
for pairs the network actually confuses. Two statuses are kept apart: "relaxed" says whether the LP
relaxation can reach the target at all ("unreachable" is a proof that no image in the ball is classified as
the target); "concrete" says whether a real image was found that the network really classifies as the
target. "L1 >=" is a proven lower bound on the change any real counterfactual in the ball needs."""


def _found_by(r) -> str:
    """How a counterfactual's result was found (``found_by``; ``repair`` in earlier versions)."""
    return str(getattr(r, "found_by", None) or getattr(r, "repair", "") or "")


def counterfactuals_section(cfs) -> Section:
    """The counterfactuals section from a :class:`~polylens.lenses.discover.counterfactuals.CounterfactualSet`."""
    from polylens.report.figures import counterfactual_triptych

    figs, rows = [], []
    for idx, (a, b), r in zip(cfs.indices, cfs.pairs, cfs.results):
        how = _found_by(r)
        rows.append((f"{a} -> {b}", int(idx), r.relaxed, r.concrete, how, _f(r.l1_lower_bound), _f(r.lp_l1),
                     _f(r.l1), None if r.changed is None else int(np.sum(r.changed)), _f(r.max_margin_upper)))
        if not _is_image(r.input_shape):
            continue
        if r.result is not None:
            res, res_title = r.result, f"result: predicted {int(np.argmax(r.logits_after))}"
        elif r.lp_input is not None:
            res, res_title = r.lp_input, f"LP point (says {int(np.argmax(r.lp_logits))})"
        else:
            res, res_title = r.original, "no change reaches the target"
        title = (f"{a} -> {b} (image {int(idx)}): relaxed {r.relaxed}, concrete {r.concrete}"
                 + (f", found by {how}" if r.result is not None else ""))
        figs.append(_fig(counterfactual_triptych(r.original, res, r.input_shape, title,
                                                 original_title=f"original: {a}", result_title=res_title),
                         f"counterfactual-{a}-to-{b}", title, f"Counterfactual triptych {a} to {b}"))
    eps = cfs.results[0].eps if cfs.results else float("nan")
    table = Table("counterfactuals", ("pair", "image", "relaxed", "concrete", "found by", "L1 >= (proven)", "LP L1",
                                      "L1", "changed pixels", "max margin <= (proven)"), tuple(rows),
                  f"eps={eps:g}")
    note = "" if (not cfs.results or _is_image(cfs.results[0].input_shape)) else \
        "The input is not a 2-D image: the triptychs are left out."
    return Section("counterfactuals", "Counterfactuals: the smallest change to another digit", COUNTERFACTUALS_INTRO,
                   figures=tuple(figs), tables=(table,), note=note, data=cfs.to_dict())


NEURONS_INTRO = """\
Each hidden neuron in one row: its map (for layer 1 the weight row on the 7x7 grid; deeper neurons: the
gradient of the pre-activation at the mean image), blue where ink raises it and red where ink lowers it;
the input of the whole box [0, 1] that maximises and the one that minimises it (found by the LP, then
refined on the real network; the LP bound proves nothing can exceed it); the test images that drive it
most and least; and how its activation is distributed for each digit. Names come from the model card when
it has them, otherwise they are suggestions: layer-1 neurons are matched to geometric templates (Frame,
Ring, Spine, diagonals, halves, ...; "anti-" when ink lowers it), deeper neurons are described through the
names of the layer before, strongest weights first."""


def neurons_section(report, suggestions=None, card_names: Mapping[str, str] | None = None,
                    display_names: Mapping[str, str] | None = None, draw: bool = True) -> Section:
    """The neurons section from a :class:`~polylens.lenses.discover.neurons.NeuronReport` and (optionally)
    the name suggestions of :func:`~polylens.lenses.discover.naming.suggest_names` (``draw=False``: no figures)."""
    from polylens.report.figures import neuron_panel

    sug = {s.key: s for s in (suggestions or ())}
    card = dict(card_names or {})
    shown = dict(display_names or {})
    image = _is_image(report.input_shape)
    figs, rows = [], []
    for p in report.neurons:
        s = sug.get(p.key)
        name = shown.get(p.key) or card.get(p.key) or (s.name if s is not None else p.name)
        source = "card" if p.key in card else ("suggested" if s is not None else "-")
        rows.append((p.key, name, source, s.name if s is not None else None, _f(s.score) if s is not None else None,
                     (f"{s.runner_up[0]} ({s.runner_up[1]:.2f})" if s is not None and s.runner_up else None),
                     _f(p.maximiser.value), _f(p.maximiser.safe_bound), _f(p.minimiser.value),
                     _f(p.minimiser.safe_bound)))
        if not draw:
            continue
        top = p.top_images if (p.top_images is not None and np.asarray(p.top_images).ndim == 3) else None
        bot = p.bottom_images if (p.bottom_images is not None and np.asarray(p.bottom_images).ndim == 3) else None
        fig = neuron_panel(f"{p.key}: {name}", p.map if image else None, p.maximiser.x if image else None,
                           p.minimiser.x if image else None, report.input_shape, top_images=top, bottom_images=bot,
                           top_values=p.top_values, bottom_values=p.bottom_values, class_counts=p.class_counts,
                           bin_edges=p.bin_edges, class_mean=p.class_mean,
                           subtitle=p.map_kind + (f"; suggested name score {s.score:.2f}" if s is not None else ""),
                           map_title="weights" if p.layer == 1 else "input gradient",
                           max_value=p.maximiser.value, min_value=p.minimiser.value)
        figs.append(_fig(fig, f"neuron-{p.key}", f"{p.key} ({name}): map, LP maximiser and minimiser, top and bottom "
                                                 "images, activation per class.", f"Neuron panel {p.key} {name}"))
    table = Table("neurons", ("neuron", "name", "name from", "suggested", "score", "runner-up", "max value",
                              "max <= (LP bound)", "min value", "min >= (LP bound)"), tuple(rows),
                  "Names with their template scores (layer 1: |correlation|; deeper: weight share of the terms)")
    data = {"report": report.to_dict(), "suggestions": [s.to_dict() for s in (suggestions or ())],
            "names": {r[0]: r[1] for r in rows}}
    note = "" if image else "The input is not a 2-D image: maps and extreme inputs are left out."
    return Section("neurons", "Neurons: what each one looks for", NEURONS_INTRO, figures=tuple(figs),
                   tables=(table,), note=note, data=data)


TRACES_INTRO = """\
Every logit is an exact sum of flows: with each neuron's gate fixed at the image (z = g a + o), the network
is affine and each neuron's contribution to a logit is its activation times the summed weight of every path
from it to the logit. Averaged over the test images of a digit, the flows of the named layer-1 neurons into
that digit's logit make a formula: each term is written sign(path weight) (mark name), the mark being the
sign of the neuron's mean activation on the digit, doubled when the term is strong. "+ (++ Frame)": Frame
is clearly on and pushes the logit up; "- (- Spine)": Spine is negative there and its paths have negative
weight, so it pushes up too; weak terms are left out of the text.

The flow figures draw the same average: pixels (the strongest, the rest merged), the named neurons, the
logit; edge width is the size of the flow along it, blue pushes up, red down. Biases make up the rest of
each logit (the constant)."""


def traces_section(formulas, image_shape: Sequence[int] | None = None) -> Section:
    """The traces section from :func:`~polylens.lenses.discover.trace.digit_formulas` (one Formula per digit)."""
    from polylens.report.figures import formula_figure, trace_flow

    shape = tuple(image_shape) if image_shape is not None and _is_image(image_shape) else None
    text = "\n".join(f.text for f in formulas)
    figs = [_fig(trace_flow(f.flow, shape, title=f"Digit {f.digit}: average flow into logit[{f.digit}] over "
                                                 f"{f.n_images} images (edge width = |flow|)"),
                 f"trace-digit-{f.digit}", f.text, f"Flow figure for digit {f.digit}", svg=True)
            for f in formulas]
    formula_png = ReportFigure.from_figure(formula_figure([f.text for f in formulas]), "formulas",
                                           "Formulas per digit", "Formulas per digit")
    rows = tuple((f.digit, f.n_images, _f(f.accuracy), f.text, _f(f.constant), _f(f.mean_logit)) for f in formulas)
    table = Table("formulas", ("digit", "images", "accuracy", "formula", "constant", "mean logit"), rows,
                  "One formula per digit (layer-1 neurons)")
    terms = tuple((f.digit, t.key, t.name, _f(t.contribution), _f(t.activation), _f(t.path_weight), _f(t.share),
                   t.strength) for f in formulas for t in f.terms)
    term_table = Table("formula-terms", ("digit", "neuron", "name", "contribution", "mean activation", "path weight",
                                         "share", "strength"), terms, "Every term of every formula", show=False)
    return Section("traces", "Traces: how the named neurons make each digit", TRACES_INTRO,
                   figures=tuple(figs), tables=(table, term_table), blocks=(("Formulas per digit", text),),
                   data={"formulas": [f.to_dict() for f in formulas]}, files=(formula_png,))


# ---------------------------------------------------------------------------------------------
# The run


def _skipped(sid: str, title: str, message: str) -> Section:
    return Section(sid, title, "This part of the report could not be computed.", note=f"Skipped: {message}")


_TITLES = {"robustness": "Robustness", "signatures": "Signatures", "prototypes": "Prototypes",
           "counterfactuals": "Counterfactuals", "neurons": "Neurons", "traces": "Traces"}


def run_report(model: Any, out: str | Path, options: ReportOptions = ReportOptions(), *, x: Array | None = None,
               y: Array | None = None, images: Array | None = None,
               progress: Callable[[str], None] | None = None, units: Callable[[int, int], None] | None = None,
               sections: Sequence[str] = SECTION_IDS, title: str | None = None,
               writers: Sequence[Callable[["ReportRun"], Sequence[Path]]] = ()) -> ReportRun:
    """Run every analysis on ``model`` (a :class:`~polylens.nn.model.Model`) and write the report into ``out``.

    Data: ``x`` (N, d) in [0, 1], ``y`` (N,) and optional ``images`` (N, H, W) originals; by default
    the model's test split (:func:`polylens.nn.model.model_split`). ``progress(message)`` is told as
    each stage starts; ``units(done, total)`` follows the robustness sweep. ``sections``: which of
    :data:`SECTION_IDS` to run. ``writers``: callables run after the report is written, each given
    the :class:`ReportRun` and returning the paths it wrote (e.g. a static site next to the report).

    A stage that fails with a :class:`~polylens.errors.PolylensError` does not stop the others: its
    section says why and ``ReportRun.errors`` holds the message.
    """
    from polylens.jsonio import jsonable

    t_start = time.perf_counter()
    say = progress or (lambda _m: None)
    out = Path(out)
    network = model.network
    bad = [s for s in sections if s not in SECTION_IDS]
    if bad:
        from polylens.errors import ParameterError

        raise ParameterError(f"Unknown report sections {', '.join(map(repr, bad))}; choose among {', '.join(SECTION_IDS)}.")
    if x is None:
        from polylens.nn.model import model_split

        split = model_split(model)
        x, y, images = split.x_test, split.y_test, split.images_test
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if options.n_images is not None:
        n = int(options.n_images)
        x, y = x[:n], y[:n]
        images = None if images is None else images[:n]
    run = ReportRun(model, options, out)
    display, _ = _names_of(model, network, x)
    card_names = dict(getattr(getattr(model, "card", None), "neuron_names", {}) or {})
    out.mkdir(parents=True, exist_ok=True)

    def stage(sid: str, message: str, fn: Callable[[], Section]) -> None:
        if sid not in sections:
            return
        say(message)
        t0 = time.perf_counter()
        try:
            sec = fn()
        except PolylensError as e:
            run.errors[sid] = str(e)
            sec = _skipped(sid, _TITLES[sid], str(e))
        run.timings[sid] = time.perf_counter() - t0
        if sec.data is not None:
            sec = replace(sec, data=_strip(jsonable(sec.data)))
        run.sections.append(sec)

    def robustness() -> Section:
        from polylens.lenses.verify.sweep import run_sweep

        n = len(x) if options.sweep_n is None else min(int(options.sweep_n), len(x))
        sweep_dir = out / ("sweep" if n == len(x) and options.n_images is None else f"sweep-n{n}")
        res = run_sweep(network, x[:n], y[:n], options.sweep_eps, out_dir=sweep_dir, workers=options.workers,
                        with_lp_classifier=options.lp_classifier, progress=units,
                        settings={"model": getattr(model, "source", "memory"), "architecture": network.architecture,
                                  "data_digest": _digest(x[:n], y[:n])})
        run.results["robustness"] = res
        return robustness_section(res)

    def sigs() -> Section:
        from polylens.lenses.discover.signatures import signatures

        res = signatures(model, x, y, eps=options.signature_eps, objective=options.objective, sense=options.sense,
                         max_per_digit=options.signature_per_digit, images=images)
        run.results["signatures"] = res
        return signatures_section(res, display)

    def protos() -> Section:
        from polylens.lenses.discover.prototypes import prototypes

        res = prototypes(model, x, y, eps=options.prototype_eps, lam=options.prototype_lam)
        run.results["prototypes"] = res
        return prototypes_section(res)

    def cfs() -> Section:
        from polylens.lenses.discover.counterfactuals import counterfactual_pairs, instructive_pairs

        pairs = instructive_pairs(network, x, y, n=options.n_pairs)
        res = counterfactual_pairs(network, x, y, pairs, eps=options.counterfactual_eps)
        run.results["counterfactuals"] = res
        return counterfactuals_section(res)

    def neurons() -> Section:
        from polylens.lenses.discover.naming import suggest_names
        from polylens.lenses.discover.neurons import neuron_report

        shown = model.with_neuron_names({k: v for k, v in display.items() if k not in card_names and v != k}) \
            if hasattr(model, "with_neuron_names") else model
        res = neuron_report(shown, x, y, images, top=min(options.neuron_top, len(x)))
        try:
            sug = suggest_names(model, x if len(x) >= 2 else None)
        except PolylensError:
            sug = ()
        run.results["neurons"] = res
        run.results["names"] = sug
        return neurons_section(res, sug, card_names, display)

    def traces() -> Section:
        from polylens.lenses.discover.trace import digit_formulas

        res = digit_formulas(model, x, y, names=display)
        run.results["traces"] = res
        return traces_section(res, network.input_shape)

    stage("robustness", f"robustness sweep: {len(options.sweep_eps)} radii", robustness)
    stage("signatures", "constraint signatures", sigs)
    stage("prototypes", "prototypes", protos)
    stage("counterfactuals", "counterfactuals", cfs)
    stage("neurons", "neuron patterns and names", neurons)
    stage("traces", "traces and formulas", traces)

    say("writing the report")
    t0 = time.perf_counter()
    meta = {"model": getattr(model, "source", "memory"), "architecture": network.architecture,
            "activation": getattr(getattr(model, "card", None), "activation", "") or "",
            "test images": len(x)}
    acc = getattr(getattr(model, "card", None), "test_accuracy", None)
    if acc is not None:
        meta["test accuracy"] = f"{100 * acc:.2f}%"
    path = write_report(out, run.sections, title=title or f"polylens report: {meta['model']}",
                        subtitle="What the polytope says about this network: robustness, signatures, prototypes, "
                                 "counterfactuals, neurons and traces.", meta=meta)
    run.report = path
    run.files = sorted(p for p in out.rglob("*") if p.is_file() and "sweep" not in p.relative_to(out).parts[0])
    for w in writers:
        run.files.extend(Path(p) for p in w(run))
    run.timings["write"] = time.perf_counter() - t0
    run.timings["total"] = time.perf_counter() - t_start
    (out / "timings.json").write_text(json.dumps({k: round(v, 3) for k, v in run.timings.items()}, indent=2) + "\n",
                                      encoding="utf-8")
    return run


def _digest(*arrays: Array) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
