"""The bases lens: neurons versus principal components (and sparser bases) of any layer.

``polylens bases MODEL --layer L [--post] [--data F.npz] --json`` prints
``{"layer", "n", "width", "bases": {"neuron": B, "pca": B, ...}}`` with, for each basis B,
``explained_variance`` (the fraction of the layer's total variance along each vector, in the basis's
order; for non-orthogonal bases the increments of the cumulative R^2), ``k80``, ``k99`` and
``ablation`` (``top_first``/``bottom_first``: accuracy after removing the first k vectors, k = 0..the
number of vectors, null where k was not on the evaluation grid). Definitions: :mod:`.basis`,
:mod:`.ablation`, :mod:`.strips`; measurements on the bundled models: docs/bases.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polylens.lenses.base import Lens, LensOptions, Payload, RunContext, SectionContext, View, option
from polylens.lenses.bases.analysis import LayerBases, analyse
from polylens.lenses.bases.basis import BASES

__all__ = ["BASES_LENS", "BasesOptions", "bases_section"]

INTRO = """\
A layer's activations can be read in many bases. Dey et al. (TMLR 2025) argue that the top principal
components explain a layer better than its top neurons: fewer of them hold 80% (99%) of the variance,
removing them hurts accuracy more, and images laid out along them read as more coherent transitions.
Here each basis of this layer is measured the same way: the cumulative explained variance (R^2 of
reconstructing the activations from the first k vectors), the number of vectors for 80% and 99%, the
accuracy after projecting out the first k vectors (replaced by the mean), highest variance first and
lowest first, and strips of test images along the first vectors, scored by how much more alike
neighbours are than in the same strip shuffled (coherence; 0 = no better than random)."""


@dataclass(frozen=True)
class BasesOptions(LensOptions):
    where = "bases"
    layer: str = option("1", "The layer: a hidden layer's number (1 = first) for a network, or a submodule's name "
                        "for a torch model.")
    post: bool = option(False, "Take activations after the nonlinearity (default: before).")
    bases: tuple[str, ...] = option(BASES, "The bases to fit.", choices=BASES)
    components: int = option(32, "Vectors of the non-orthogonal bases (ICA, NMF, dictionary), at most the width.",
                             lo=1, hi=4096)
    ablation_points: int = option(33, "Evaluate ablation at most at this many k (evenly spaced, with 0 and all).",
                                  lo=2, hi=5000)
    strips: int = option(4, "Strips per basis (along its first vectors).", lo=0, hi=64)
    strip_length: int = option(8, "Examples per strip.", lo=3, hi=64)
    seed: int = option(0, "Seed of every random choice (ICA, NMF, dictionary, strips, row subsets).", lo=0)
    max_rows: int = option(200_000, "Keep at most this many activation rows (a seeded subset beyond).", lo=10)


def run(model, data, o: BasesOptions, ctx: RunContext = RunContext()) -> LayerBases:
    """The bases of layer ``o.layer`` of ``model`` on ``data`` (see :func:`analysis.analyse`)."""
    from polylens.errors import ParameterError

    if data is None or len(data) < 2:
        raise ParameterError("The bases lens needs at least two labelled inputs.")
    return analyse(model, data.x, data.y, o.layer, post=o.post, bases=o.bases, components=o.components,
                   ablation_points=o.ablation_points, strips=o.strips, strip_length=o.strip_length, seed=o.seed,
                   max_rows=o.max_rows, progress=ctx.progress, units=ctx.units)


def _table_rows(r: LayerBases):
    rows = []
    for name, br in r.results.items():
        d = br.to_dict()
        ab = d["ablation"]
        ks = ab["evaluated"]
        frac = np.asarray(ks, dtype=float) / max(len(ab["top_first"]) - 1, 1)
        area = lambda key: float(np.trapezoid([ab[key][k] for k in ks], frac)) if len(ks) > 1 else None  # noqa: E731
        rows.append((name, d["vectors"], d["k80"], d["k99"], area("top_first"), area("bottom_first"),
                     d["coherence"], d["monotonicity"], d["note"]))
    return tuple(rows)


def bases_section(result: LayerBases, ctx: SectionContext):
    from polylens.report.html import Section, Table, figure

    title = f"layer {result.layer} ({'post' if result.post else 'pre'}-activation, width {result.width})"
    figs = []
    if ctx.draw and result.results:
        from polylens.lenses.bases import figures as F

        figs.append(figure(F.variance_figure({k: v.basis.cumulative for k, v in result.results.items()}, result.width,
                                             f"Explained variance, {title}"), "bases-variance",
                           "Cumulative explained variance of the first k vectors of each basis (dotted: 80% and 99%).",
                           "Explained variance per basis", svg=True))
        figs.append(figure(F.ablation_figure({k: v.ablation.to_dict() for k, v in result.results.items()},
                                             f"Ablation, {title}"), "bases-ablation",
                           "Accuracy after projecting out the first k vectors (replaced by the mean): solid highest "
                           "variance first, dashed lowest first.", "Ablation per basis", svg=True))
        rows = []
        for name in ("neuron", "pca"):
            br = result.results.get(name)
            if br is None:
                continue
            for s, imgs in zip(br.strips, br.strip_images):
                rows.append((f"{name} {s.component + 1}", list(imgs), s.coherence))
        if rows:
            figs.append(figure(F.strips_figure(rows, "Strips along the first neurons and principal components"),
                               "bases-strips", "Test examples nearest to evenly spaced points along each vector "
                               "(c: coherence, 0 = no better than the same strip shuffled).", "Strips"))
    cols = ("basis", "vectors", "k80", "k99", "ablation area (top first)", "ablation area (bottom first)",
            "strip coherence", "strip monotonicity", "note")
    tables = [Table("bases", cols, _table_rows(result),
                    f"The bases of {title} over {result.n} inputs ({result.rows} activation rows): vectors for 80% and "
                    "99% of the variance; area under the accuracy-versus-fraction-removed curve (lower: removing the "
                    "top vectors hurts more)")]
    tables.append(_findings_table())
    tables = [t for t in tables if t is not None]
    notes = [result.degenerate] if result.degenerate else []
    notes += [f"{k} skipped: {v}" for k, v in result.skipped.items()]
    if any(br.ablation.grid for br in result.results.values()):
        notes.append("Ablation was evaluated on a grid of k (see 'evaluated' in the JSON); the other k are null.")
    return Section("bases", "Bases: neurons versus principal components", INTRO, figures=tuple(figs),
                   tables=tuple(tables), note=" ".join(notes), data=result.to_dict())


def _findings_table():
    """The paper's three findings on the bundled models (measured by scripts/bases_findings.py)."""
    from polylens.lenses.bases.findings import load_bundled_findings, verdict_row, verdicts
    from polylens.report.html import Table

    rows = load_bundled_findings()
    if not rows:
        return None
    v = verdicts(rows)
    out = []
    for r in rows:
        vr = verdict_row(r)
        out.append((r["model"], r["layer"], r["width"], f"{r['neuron_k80']} / {r['pca_k80']}",
                    f"{r['neuron_k99']} / {r['pca_k99']}", f"{r['neuron_area']:.3f} / {r['pca_area']:.3f}",
                    f"{r['neuron_coherence']:.3f} / {r['pca_coherence']:.3f}",
                    f"{vr['compactness']}, {vr['ablation']}, {vr['coherence']}"))
    caption = ("The paper's three findings on the bundled models (2,000 test images, after each ReLU; "
               "scripts/bases_findings.py; rules in docs/bases.md): compactness holds on "
               f"{v['compactness']['holds']} of {v['compactness']['layers']} layers, ablation on "
               f"{v['ablation']['holds']} of {v['ablation']['layers']}, strip coherence on "
               f"{v['coherence']['holds']} of {v['coherence']['layers']}")
    return Table("bases-findings", ("model", "layer", "width", "k80 neuron / PCA", "k99 neuron / PCA",
                                    "ablation area neuron / PCA", "coherence neuron / PCA",
                                    "verdicts (compactness, ablation, coherence)"), tuple(out), caption)


def _show(result: LayerBases, con, o) -> None:
    from polylens.report.terminal import table

    con.print(table(f"Bases of layer {result.layer} (width {result.width}, {result.n} inputs)",
                    ("basis", "vectors", "k80", "k99", "ablation area top", "ablation area bottom", "coherence"),
                    [r[:7] for r in _table_rows(result)], 3))
    if result.degenerate:
        con.print(result.degenerate)
    for k, v in result.skipped.items():
        con.print(f"{k} skipped: {v}")


def _view():
    from polylens.lenses.bases import explore

    return View(module="bases.js", order=60, payloads={
        "main": Payload(explore.bases_payload, params=explore.BasesParams, grid=explore.bases_grid)})


BASES_LENS = Lens(
    name="bases", title="Bases", family="bases",
    summary="Neurons versus principal components (and ICA, NMF, sparse dictionaries) of a layer: explained "
            "variance, ablation, strips.",
    options=BasesOptions, run=run, section=bases_section, show=_show,
    quick={"strips": 1, "ablation_points": 5, "components": 3},
    report_options={},
    view=_view(),
)
