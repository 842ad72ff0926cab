"""How the discovery lenses' results become report sections: signatures, prototypes, counterfactuals,
neurons and traces (text, figures, tables and the JSON each section is drawn from)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from polylens.report.html import ReportFigure, Section, Table
from polylens.report.html import figure as _fig
from polylens.report.html import finite as _f
from polylens.report.html import is_image as _is_image

__all__ = ["counterfactuals_section", "neurons_section", "prototypes_section", "signatures_section",
           "traces_section"]


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
For each digit, start from its best test image (largest real margin) and move it within an eps-ball to
maximise the digit's margin minus a price lam per unit of ink moved. The LP over the polytope says where to
go and proves how far one can get; the real network decides: the prototype is the best of the LP's point,
the segment towards it, and a projected ascent of the real priced margin started from them and from the
start image, so its real margin is never below the start's. The change is blue where ink was added and red
where it was removed. "margin <=" is a proven upper bound on the real margin of any image in the ball.

The strip repeats this over growing radii, up to the whole box [0, 1]^d: what the network would draw if it
could draw. Under each image: its real margin m and the proven bound on every image of that ball. Where
the two meet, the prototype is as typical as the digit can get; where the bound stays flat as the ball
grows, no image anywhere is more that digit."""


def prototypes_section(proto, draw: bool = True, strip=None) -> Section:
    """The prototypes section from a :class:`~polylens.lenses.discover.prototypes.PrototypeResult` and
    optionally its strip (a :class:`~polylens.lenses.discover.prototypes.PrototypeSweepResult` over radii)
    (``draw=False``: no figures)."""
    from polylens.report.figures import prototype_panels, prototype_strip

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
    tables = [table]
    data = proto.to_dict()
    if strip is not None:
        radii = [float(e) for e in strip.eps]
        order = np.argsort(strip.eps, kind="stable")
        m, up = strip.real_margin[order, 0], strip.margin_upper[order]
        if draw and _is_image(proto.input_shape):
            figs.append(_fig(prototype_strip(strip.start, strip.prototype[order, 0], [radii[k] for k in order],
                                             proto.input_shape, m, up, strip.start_margin,
                                             [f"digit {d}" for d in strip.digits],
                                             title=f"Prototypes over growing radii (lam={float(strip.lam[0]):g}): "
                                                   "real margin m and its proven bound"),
                             "prototype-strip", "Per digit: the start image and its prototype at each radius, up to "
                             "the whole box; m is the real margin, '<=' the proven bound over the ball.",
                             "Prototype strips per digit over radii"))
        srows = tuple((d, radii[k], _f(strip.real_margin[k, 0, i]), _f(strip.margin_upper[k, i]),
                       _f(strip.margin_upper[k, i] - strip.real_margin[k, 0, i]), int(strip.n_changed[k, 0, i]),
                       _f(strip.l1[k, 0, i]), str(strip.source[k, 0, i]))
                      for i, d in enumerate(strip.digits) for k in order)
        tables.append(Table("prototype-strip", ("digit", "eps", "real margin", "margin <= (proven)", "gap",
                                                "changed pixels", "L1 change", "source"), srows,
                            "The strip: every digit at every radius", show=False))
        data = {**data, "strip": strip.to_dict()}
    note = "" if _is_image(proto.input_shape) else "The input is not a 2-D image: the image figure is left out."
    return Section("prototypes", "Prototypes: the most typical nearby image", PROTOTYPES_INTRO, figures=tuple(figs),
                   tables=tuple(tables), note=note, data=data)


COUNTERFACTUALS_INTRO = """\
The smallest change (in L1) to a representative image of one digit that makes the network call it another,
for pairs the network actually confuses. Two statuses are kept apart: "relaxed" says whether the LP
relaxation can reach the target at all ("unreachable" is a proof that no image in the ball is classified as
the target); "concrete" says whether a real image was found that the network really classifies as the
target. "L1 >=" is a proven lower bound on the change any real counterfactual in the ball needs, "L1" the
change of the best real counterfactual found: the true smallest change lies between the two. Where the LP's
own bound leaves a large gap, a branch and bound over the hidden neurons' intervals tightens it (each half
of a neuron's interval gets tighter envelopes; the bound is the smallest over the open halves, empty halves
closed by Farkas certificates); the figure shows both bounds against the real change."""


def _found_by(r) -> str:
    """How a counterfactual's result was found (``found_by``; ``repair`` in earlier versions)."""
    return str(getattr(r, "found_by", None) or getattr(r, "repair", "") or "")


def counterfactuals_section(cfs) -> Section:
    """The counterfactuals section from a :class:`~polylens.lenses.discover.counterfactuals.CounterfactualSet`."""
    from polylens.report.figures import counterfactual_gaps, counterfactual_triptych

    figs, rows = [], []
    if cfs.results:
        figs.append(_fig(counterfactual_gaps([f"{a} -> {b}" for a, b in cfs.pairs],
                                             [r.l1_lower_bound_lp for r in cfs.results],
                                             [r.l1_lower_bound for r in cfs.results], [r.l1 for r in cfs.results]),
                         "counterfactual-gaps", "Per pair: the proven lower bound of the L1 change (after "
                         "tightening; thin bar: the LP alone) and the best real counterfactual (dot).",
                         "Counterfactual lower bounds against real changes", svg=True))
    for idx, (a, b), r in zip(cfs.indices, cfs.pairs, cfs.results):
        how = _found_by(r)
        gap = r.l1 - r.l1_lower_bound if np.isfinite(r.l1_lower_bound) else None
        rows.append((f"{a} -> {b}", int(idx), r.relaxed, r.concrete, how, _f(r.l1_lower_bound),
                     _f(r.l1_lower_bound_lp), _f(r.l1), _f(gap), int(r.tighten_nodes),
                     None if r.changed is None else int(np.sum(r.changed)), _f(r.max_margin_upper)))
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
    table = Table("counterfactuals", ("pair", "image", "relaxed", "concrete", "found by", "L1 >= (proven)",
                                      "L1 >= (LP alone)", "L1", "gap", "tightening LPs", "changed pixels",
                                      "max margin <= (proven)"), tuple(rows), f"eps={eps:g}")
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


def traces_section(formulas, image_shape: Sequence[int] | None = None, draw: bool = True) -> Section:
    """The traces section from :func:`~polylens.lenses.discover.trace.digit_formulas` (one Formula per digit)."""
    from polylens.report.figures import formula_figure, trace_flow

    shape = tuple(image_shape) if image_shape is not None and _is_image(image_shape) else None
    text = "\n".join(f.text for f in formulas)
    figs = [_fig(trace_flow(f.flow, shape, title=f"Digit {f.digit}: average flow into logit[{f.digit}] over "
                                                 f"{f.n_images} images (edge width = |flow|)"),
                 f"trace-digit-{f.digit}", f.text, f"Flow figure for digit {f.digit}", svg=True)
            for f in formulas] if draw else []
    files = (ReportFigure.from_figure(formula_figure([f.text for f in formulas]), "formulas", "Formulas per digit",
                                      "Formulas per digit"),) if draw else ()
    rows = tuple((f.digit, f.n_images, _f(f.accuracy), f.text, _f(f.constant), _f(f.mean_logit)) for f in formulas)
    table = Table("formulas", ("digit", "images", "accuracy", "formula", "constant", "mean logit"), rows,
                  "One formula per digit (layer-1 neurons)")
    terms = tuple((f.digit, t.key, t.name, _f(t.contribution), _f(t.activation), _f(t.path_weight), _f(t.share),
                   t.strength) for f in formulas for t in f.terms)
    term_table = Table("formula-terms", ("digit", "neuron", "name", "contribution", "mean activation", "path weight",
                                         "share", "strength"), terms, "Every term of every formula", show=False)
    return Section("traces", "Traces: how the named neurons make each digit", TRACES_INTRO,
                   figures=tuple(figs), tables=(table, term_table), blocks=(("Formulas per digit", text),),
                   data={"formulas": [f.to_dict() for f in formulas]}, files=files)
