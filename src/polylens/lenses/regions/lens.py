"""The polytope lens (``polylens regions MODEL``): one Lens whose options choose the mode.

* ``--point I``: the exact region of test image I (H-representation, Chebyshev ball, affine map to
  the logits, neighbours, decision boundary);
* ``--path I,J``: every boundary crossing on the segment from image I to image J;
* ``--slice I,J,K [--extent LO,HI]``: every region of the plane through images I, J, K;
* ``--enumerate [--budget N]``: every region inside [0, 1]^d;
* none of them: the overview (the report section): patterns of the data, the three predictions of
  the polytope lens paper with verdicts, a slice, the 3-D hidden spaces and the Hanin-Rolnick check.

The JSON of the four modes is the contract of issue 10 (extra keys only add to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polylens.errors import ParameterError
from polylens.lenses.base import Lens, LensOptions, Payload, RunContext, SectionContext, View, option
from polylens.lenses.regions import explore
from polylens.lenses.regions.patterns import CONVENTIONS, convention_note, is_piecewise_linear, patterns, to_string

__all__ = ["REGIONS", "Regions", "RegionsOptions"]


@dataclass(frozen=True)
class RegionsOptions(LensOptions):
    """Options of the polytope lens; at most one of point, path, slice and enumerate."""

    where = "regions"
    point: int | None = option(None, "Index of a test image: its exact region.", lo=0)
    path: tuple[int, ...] | None = option(None, "I,J: every boundary crossing from test image I to J.", lo=0)
    slice: tuple[int, ...] | None = option(None, "I,J,K: every region of the plane through test images I, J, K.",
                                           lo=0)
    extent: tuple[float, ...] = option((-0.5, 1.5), "LO,HI: the slice covers (s, t) in [LO, HI]^2.",
                                       lo=-100.0, hi=100.0)
    enumerate: bool = option(False, "Every region inside the input box [0, 1]^d.")
    budget: int = option(10_000, "At most this many regions when enumerating.", lo=1, hi=10_000_000)
    convention: str = option("sign", "Patterns of smooth activations: sign (pre-activation > 0) or gelu-curvature "
                             "(|a| < sqrt(2)); named in every output.", choices=tuple(CONVENTIONS))
    pairs: int = option(12, "Overview: interpolation paths of each kind (same/different class) for prediction 2.",
                        lo=1, hi=1000)
    predictions: bool = option(True, "Overview: measure the three predictions.")
    law: bool = option(True, "Overview: the Hanin-Rolnick scaling check of the segment partition.")

    def __post_init__(self):
        super().__post_init__()
        modes = [n for n in ("point", "path", "slice") if getattr(self, n) is not None] + \
            (["enumerate"] if self.enumerate else [])
        if len(modes) > 1:
            raise ParameterError(f"regions takes at most one of --point, --path, --slice, --enumerate; got "
                                 f"{', '.join('--' + m for m in modes)}.")
        if self.path is not None and len(self.path) != 2:
            raise ParameterError(f"The '--path' option of regions must be two test-image indices I,J. "
                                 f"Got {','.join(map(str, self.path))!r} instead.")
        if self.slice is not None and len(self.slice) != 3:
            raise ParameterError(f"The '--slice' option of regions must be three test-image indices I,J,K. "
                                 f"Got {','.join(map(str, self.slice))!r} instead.")
        if len(self.extent) != 2 or not self.extent[0] < self.extent[1]:
            raise ParameterError(f"The '--extent' option of regions must be LO,HI with LO < HI. "
                                 f"Got {','.join(f'{v:g}' for v in self.extent)!r} instead.")

    @property
    def mode(self) -> str:
        for n in ("point", "path", "slice"):
            if getattr(self, n) is not None:
                return n
        return "enumerate" if self.enumerate else "overview"


@dataclass(frozen=True, eq=False)
class Regions:
    """A result of the polytope lens: ``mode``, the JSON ``body`` of that mode, and the objects the
    report section draws (``objects``: slice, segment, predictions, hidden spaces)."""

    mode: str
    body: dict
    model: str
    data: str
    convention: str
    note: str
    objects: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.body, "mode": self.mode, "model": self.model, "data": self.data,
                "convention": self.body.get("convention", self.convention), "note": self.note}

    def _repr_html_(self) -> str:
        from polylens.report.html import section_fragment

        return section_fragment(regions_section(self, SectionContext(None, None, draw=False)))


def _index(data, i: int, flag: str) -> int:
    if not 0 <= i < len(data):
        raise ParameterError(f"The '{flag}' option of regions must name test images in [0, {len(data) - 1}]. "
                             f"Got {i} instead.")
    return int(i)


def _anchor_triple(y) -> tuple[int, int, int]:
    """Three test images of different classes where there are (the first of each), for the overview slice."""
    out, seen = [], set()
    for i, c in enumerate(np.asarray(y)):
        if int(c) not in seen:
            out.append(i)
            seen.add(int(c))
        if len(out) == 3:
            return tuple(out)
    return tuple((list(range(min(3, len(y)))) + [0, 0, 0])[:3])


def run(model, data, o: RegionsOptions, ctx: RunContext = RunContext()) -> Regions:
    """Run the mode ``o`` selects (see the module docstring)."""
    from polylens.lenses.regions import partition as P
    from polylens.lenses.regions.region import region_of

    net = model.network
    note = convention_note(net, o.convention)
    src, dname = str(getattr(model, "source", "memory")), getattr(data, "name", "none")
    mode = o.mode
    pwl = is_piecewise_linear(net)
    if mode == "point":
        i = _index(data, o.point, "--point")
        x = data.x[i]
        ctx.progress(f"regions: the region of test image {i}")
        R = region_of(net, patterns(net, x[None])[0])
        rng = np.random.default_rng(0)
        dirs = rng.normal(size=(64, net.input_dim))
        inside = R.center + 0.5 * R.radius * dirs / np.linalg.norm(dirs, axis=1, keepdims=True) * rng.uniform(0, 1, (64, 1))
        err = float(np.max(np.abs(inside @ R.C.T + R.e - net(inside))))
        body = {**R.to_dict(net), "input": i, "label": int(data.y[i]),
                "affine_error": err, "input_in_region": bool(np.array_equal(patterns(net, x[None])[0], R.bits))}
        return Regions(mode, body, src, dname, o.convention, note, {"region": R})
    if mode == "path":
        i, j = (_index(data, v, "--path") for v in o.path)
        ctx.progress(f"regions: crossings from test image {i} to {j}")
        exact = pwl and o.convention == "sign"
        seg = P.segment(net, data.x[i], data.x[j]) if exact else P.segment_sampled(net, data.x[i], data.x[j], o.convention)
        body = {**seg.to_dict(), "from": i, "to": j}
        return Regions(mode, body, src, dname, o.convention, note, {"segment": seg})
    if mode == "slice":
        if o.convention != "sign":
            raise ParameterError("An exact slice reads patterns by sign (--convention sign).")
        i, j, k = (_index(data, v, "--slice") for v in o.slice)
        ctx.progress(f"regions: the slice through test images {i}, {j}, {k}")
        x = data.x
        sl = P.slice_plane(net, x[i], x[j] - x[i], x[k] - x[i], tuple(o.extent))
        body = {**sl.to_dict(), "images": [i, j, k]}
        return Regions(mode, body, src, dname, o.convention, note, {"slice": sl, "images": (i, j, k)})
    if mode == "enumerate":
        if o.convention != "sign":
            raise ParameterError("Enumerating regions reads patterns by sign (--convention sign).")
        ctx.progress(f"regions: enumerating regions in [0, 1]^{net.input_dim} (budget {o.budget})")
        en = P.enumerate_regions(net, o.budget, progress=ctx.units)
        return Regions(mode, en.to_dict(), src, dname, o.convention, note, {"enumeration": en})
    return _overview(model, data, o, ctx, note, src, dname)


def _overview(model, data, o: RegionsOptions, ctx, note, src, dname) -> Regions:
    from polylens.lenses.regions import partition as P
    from polylens.lenses.regions import predictions as PR
    from polylens.lenses.regions.hidden import hidden_spaces
    from polylens.lenses.regions.patterns import group

    net = model.network
    x, y = data.x, data.y
    pwl = is_piecewise_linear(net) and o.convention == "sign"
    body: dict[str, Any] = {"convention": o.convention, "exact": pwl, "n": len(x),
                            "architecture": net.architecture}
    objects: dict[str, Any] = {}
    ps = group(patterns(net, x, o.convention))
    body["patterns"] = {"distinct": int(len(ps.counts)), "singletons": int(np.sum(ps.counts == 1)),
                        "largest": [{"pattern": to_string(ps.unique[g]), "count": int(ps.counts[g]),
                                     "classes": np.bincount(y[ps.inverse == g], minlength=net.n_classes).tolist()}
                                    for g in np.argsort(-ps.counts, kind="stable")[:10]]}
    if pwl and len(x) >= 3:
        a, b, c = _anchor_triple(y)
        ctx.progress("regions: a slice through three test images")
        sl = P.slice_plane(net, x[a], x[b] - x[a], x[c] - x[a], tuple(o.extent))
        objects["slice"], objects["images"] = sl, (a, b, c)
        body["slice"] = {"images": [a, b, c], "count": len(sl.pieces), "area": sl.area, "seconds": sl.seconds,
                         "leaves_box": sl.leaves_box, "boundary_segments": len(sl.boundary)}
    if o.predictions and len(x) >= 4:
        ctx.progress("regions: prediction 1 (monosemantic polytopes)")
        mono = PR.monosemanticity(net, x, y, o.convention)
        ctx.progress("regions: prediction 2 (boundary density along paths)")
        dens = PR.boundary_density(net, x, y, pairs=o.pairs, convention=o.convention)
        ctx.progress("regions: prediction 3 (scaling activation vectors)")
        scal = PR.scaling(net, x, layer=1, convention=o.convention) if net.n_hidden_layers >= 2 else None
        objects.update(monosemantic=mono, density=dens, scaling=scal)
        slim = lambda d: {k: v for k, v in d.items() if k not in ("density", "kl", "switch", "kind", "examples")}
        body["predictions"] = {"monosemantic": mono, "boundary_density": slim(dens),
                               "scaling": scal if scal is not None else {"verdict": "not measured",
                                                                        "reason": "needs two hidden layers"}}
    if o.law:
        ctx.progress("regions: Hanin-Rolnick scaling check")
        law = PR.scaling_law(widths=(4, 8, 16, 32), nets=2, lines=5)
        objects["law"] = law
        body["scaling_law"] = law
    spaces = hidden_spaces(net, x, y, o.convention)
    if spaces:
        objects["hidden"] = spaces
        body["hidden_spaces"] = [{"layer": s["layer"], "planes": s["planes"]} for s in spaces]
    return Regions("overview", body, src, dname, o.convention, note, objects)


# ---------------------------------------------------------------------------------------------
# The report section

INTRO = """\
A network with piecewise-linear activations (ReLU, leaky ReLU) cuts its input space into convex polytopes, its
activation regions, on each of which it is one affine map; the activation pattern (one bit per hidden neuron,
layer 1 first, 1 = pre-activation > 0) names the region. Here the regions are computed exactly (segments and
slices by splitting layer by layer, regions of points by LP through the one HiGHS adapter), and the polytope
lens paper's three predictions (Black, Sharkey et al. 2022) are measured on the test images, each with its rule
and verdict. For a smooth activation (GELU) a pattern is a convention, named here; its regions are not polytopes
beyond layer 1, so crossings are sampled and bisected and no slice is drawn."""


def regions_section(result: Regions, ctx: SectionContext):
    from polylens.lenses.regions import figures as F
    from polylens.report.html import Section, Table, figure

    b, ob = result.body, result.objects
    figs, tables = [], []
    if result.mode != "overview":
        rows = tuple((k, str(v)[:120]) for k, v in b.items() if not isinstance(v, (list, dict)))
        tables.append(Table("regions-result", ("field", "value"), rows, f"polylens regions --{result.mode}"))
        if ctx.draw and "slice" in ob:
            figs.append(figure(F.slice_figure(ob["slice"], images=_anchor_marks(ob["images"])), "regions-slice",
                               "Every region of the slice, coloured by class; black: the decision boundary."))
        return Section("regions", "Regions: the polytope lens", INTRO, figures=tuple(figs), tables=tuple(tables),
                       note=result.note, data=result.to_dict())
    p = b.get("patterns", {})
    tables.append(Table("regions-patterns", ("pattern", "images", "images per class"),
                        tuple((r["pattern"], r["count"], " ".join(map(str, r["classes"]))) for r in p.get("largest", ())),
                        f"The largest groups of test images by exact pattern ({p.get('distinct')} distinct patterns "
                        f"among {b['n']} images, {p.get('singletons')} alone in theirs)"))
    preds = b.get("predictions")
    if preds:
        m, d, s = preds["monosemantic"], preds["boundary_density"], preds["scaling"]
        rows = [("1. polytopes are monosemantic",
                 f"purity of Hamming clusters {m['hamming_clusters']['purity']:.3f} (k={m['hamming_clusters']['k']}), "
                 f"Jaccard {m['jaccard_clusters']['purity']:.3f}, exact shared groups "
                 f"{_f(m['exact']['purity_shared'])} (shuffled labels {m['exact']['shuffled_purity']:.3f}); neurons' "
                 f"top-{m['top']} sets {m['neuron_mean']:.3f}, principal directions' {m['direction_mean']:.3f}",
                 m["verdict"], m["rule"]),
                ("2. boundaries are densest where the output changes",
                 f"Spearman rho {d['rho']:.3f} (p {d['p']:.2g}) over {2 * d['pairs']} paths x {d['bins']} bins; "
                 f"density at class switches {_f(d['density_at_switch'])} vs {_f(d['density_elsewhere'])} elsewhere"
                 + ("" if d["exact"] else " (crossings sampled and bisected)"), d["verdict"], d["rule"])]
        if "ratio" in s:
            rows.append(("3. scaling an activation vector changes what later layers see",
                         f"P(later pattern changes | prediction changes) {_f(s['p_pattern_given_prediction'])} vs "
                         f"{_f(s['p_pattern_given_steady'])} at other steps ({s['prediction_steps']} prediction changes "
                         f"over alpha in [0, 3], layer {s['layer']})", s["verdict"], s["rule"]))
        else:
            rows.append(("3. scaling", s.get("reason", ""), s["verdict"], ""))
        tables.append(Table("regions-predictions", ("prediction", "measured", "verdict", "rule"), tuple(rows),
                            "The polytope lens paper's three predictions on this model's test images"))
    law = b.get("scaling_law")
    if law:
        tables.append(Table("regions-scaling-law", ("neurons", "mean crossings", "per neuron"),
                            tuple(zip(law["neurons"], law["mean_crossings"], law["per_neuron"])),
                            f"Hanin-Rolnick check of the exact segment partition: log-log slope "
                            f"{law['loglog_slope']:.2f} ({'about linear' if law['linear'] else 'not linear'})"))
    if ctx.draw:
        if "slice" in ob:
            a, bb, c = ob["images"]
            figs.append(figure(F.slice_figure(ob["slice"], images=_anchor_marks(ob["images"])), "regions-slice",
                               f"The plane through test images {a}, {bb}, {c}: every region, exactly "
                               f"({len(ob['slice'].pieces)} pieces tiling the square), coloured by class; black: "
                               "the decision boundary."))
        if ob.get("monosemantic"):
            figs.append(figure(F.monosemantic_figure(ob["monosemantic"]), "regions-monosemantic",
                               "Prediction 1: class purity of test images grouped by region against the top-activating "
                               "sets of single neurons and principal directions (dots: each one).", svg=True))
        if ob.get("density"):
            figs.append(figure(F.density_figure(ob["density"]), "regions-density",
                               "Prediction 2: per bin of each interpolation path, boundaries crossed per unit length "
                               "against the softmax change; right, bins with a class switch against the rest."))
            ex = [e for e in ob["density"]["examples"] if e["kind"] == "different"][:1]
            if ex:
                figs.append(figure(F.path_figure(ex[0]), "regions-path", "One different-class path: region "
                                   "boundaries (grey), class switches (red) and the softmax change (blue).", svg=True))
        if ob.get("scaling"):
            figs.append(figure(F.scaling_figure(ob["scaling"]), "regions-scaling",
                               "Prediction 3: scaling hidden layer 1's activation vector by alpha.", svg=True))
        if ob.get("law"):
            figs.append(figure(F.scaling_law_figure(ob["law"]), "regions-scaling-law",
                               "Exact crossings of a unit segment at initialisation against the number of neurons.",
                               svg=True))
        if ob.get("hidden"):
            figs.append(figure(F.hidden_figure([(result.model, ob["hidden"])]), "regions-hidden",
                               "The 3-D hidden spaces: test images by class; in layer 1's space the zero planes of "
                               "layer 2's neurons (exact: affine there for any activation), in layer 2's space the "
                               "decision regions (grid points coloured by the class they get)."))
    extra = ()
    if "slice" in b:
        sb = b["slice"]
        extra = (f"Slice: {sb['count']} regions in {sb['seconds']:.3f} s; areas sum to {sb['area']:.12g}"
                 + ("; the slice leaves [0, 1]^d." if sb["leaves_box"] else "."),)
    return Section("regions", "Regions: the polytope lens", INTRO, figures=tuple(figs), tables=tuple(tables),
                   note=result.note, data=result.to_dict(), extra=extra)


def _f(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _anchor_marks(images):
    i, j, k = images
    return ((f"I={i}", (0.0, 0.0)), (f"J={j}", (1.0, 0.0)), (f"K={k}", (0.0, 1.0)))


def _show(result: Regions, con, o=None) -> None:
    from polylens.report.terminal import table

    b = result.body
    con.print(result.note)
    if result.mode == "path":
        con.print(f"{len(b['crossings'])} crossings from image {b['from']} to {b['to']}"
                  f" ({'exact' if b['exact'] else 'sampled and bisected'})")
        con.print(table("Pieces of the segment", ("t from", "pattern"),
                        [(f"{t:.6f}", p) for t, p in zip([0.0] + b["crossings"], b["patterns"])][:40], 2))
    elif result.mode == "slice":
        con.print(f"{b['count']} regions, areas sum to {b['area']:.12g}, {b['seconds']:.3f} s; {b['box_note']}")
    elif result.mode == "enumerate":
        con.print(f"{b['count']} regions in [0, 1]^d, {'complete' if b['complete'] else 'incomplete (budget)'}, "
                  f"{b['lps']} LPs, {b['seconds']:.2f} s")
    elif result.mode == "point":
        con.print(f"image {b['input']}: pattern {b['pattern']}, Chebyshev radius {b['radius']:.4g}, "
                  f"{b['facets']} facets of {b['rows_before']} rows, class {b['class']}, decision boundary "
                  f"{'crosses' if b['crosses_decision_boundary'] else 'does not cross'} it, "
                  f"{len(b['neighbours'])} neighbours")
    else:
        preds = b.get("predictions", {})
        con.print(table("The polytope lens's predictions", ("prediction", "verdict"),
                        [(k, v.get("verdict", "")) for k, v in preds.items()], 2))
        con.print(f"{b['patterns']['distinct']} distinct patterns among {b['n']} images")


REGIONS = Lens(
    name="regions", title="Regions", family="regions",
    summary="The polytope lens: exact activation regions of points, segments, slices and the input box, and the "
            "polytope lens paper's three predictions.",
    options=RegionsOptions, run=run, section=regions_section, show=_show,
    quick={"pairs": 2, "law": False},
    report_options={"pairs": 10},
    view=View(order=60, module="regions.js", payloads={
        "main": Payload(explore.slice_payload, params=explore.SliceParams, heavy=True),
        "path": Payload(explore.path_payload, params=explore.PathParams, per_input=True),
        "hidden": Payload(explore.hidden_payload, params=explore.HiddenParams),
    }),
)
