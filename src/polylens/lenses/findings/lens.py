"""The findings lens: every claim of the seed presentation beside the measurement that tests it, with
its figure and a verdict (:mod:`polylens.lenses.findings.claims` states the rules).

In a report it reads the results of the robustness and signatures lenses that ran before it (no
sweep runs twice); on its own (``polylens findings MODEL``) it runs them itself with their report
options, on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from polylens.lenses.base import Lens, LensOptions, RunContext, SectionContext, View, option
from polylens.lenses.findings import claims as C

__all__ = ["FINDINGS", "Findings", "FindingsOptions"]

INTRO = """\
The seed presentation makes seven claims about this network. Each row below states one, names the quantity
that measures it (where the claim says "the LP", which quantity: the LP classifier's accuracy is not the
verified rate, and both are shown), gives polylens' measurement on the test images and a verdict by a
stated rule: holds, partly, does not hold, or not measured (with the reason). The rules and thresholds are
in docs/findings.md and in polylens.lenses.findings.claims; the figures below show each measurement."""


@dataclass(frozen=True)
class FindingsOptions(LensOptions):
    where = "findings"
    eps: tuple[float, ...] = option((0.0, 0.005, 0.01, 0.02, 0.03, 0.05), "Radii of the robustness sweep when the "
                                    "findings run it themselves (in a report they read the robustness lens).",
                                    lo=0.0, hi=1.0)
    per_digit: int = option(100, "Images per digit for the signatures, when the findings run them themselves.",
                            lo=1)
    workers: int = option(2, "Worker processes of the sweep.", lo=1)
    images: int | None = option(None, "Sweep only the first N images (default: all).", lo=1, cli=False)


@dataclass(frozen=True, eq=False)
class Findings:
    """The claims (:class:`~polylens.lenses.findings.claims.Claim`) and what their figures need:
    the sweep ``summary`` (RateTable dict), the signatures' per-digit accuracy, the name sweep of
    the seed architecture (or None), this model's layer-1 template scores and weight maps, and the
    digit-0 formula's terms."""

    claims: tuple[C.Claim, ...]
    summary: dict | None
    lp_classifier: bool
    signature_digits: tuple[int, ...]
    signature_per_digit: tuple[float, ...]
    signature_accuracy: float
    sweep: Any
    best: dict | None
    maps: Any
    pixel_std: Any
    input_shape: tuple[int, ...]
    model: str

    def claim(self, key: str) -> C.Claim:
        return next(c for c in self.claims if c.key == key)

    def to_dict(self) -> dict:
        return {"model": self.model, "claims": [c.to_dict() for c in self.claims],
                "name_sweep": None if self.sweep is None else self.sweep.to_dict()}

    def _repr_html_(self) -> str:
        from polylens.report.html import section_fragment

        return section_fragment(findings_section(self, SectionContext(None, None, draw=False)))


def _earlier_or_run(name: str, model, data, ctx: RunContext, values: dict):
    """The result of lens ``name`` from this report run, else that lens run now on the same data."""
    if name in ctx.earlier:
        return ctx.earlier[name]
    from polylens.lenses import get_lens

    lens = get_lens(name)
    workdir = None if ctx.workdir is None else ctx.workdir / name
    ctx.progress(f"findings: running {name}")
    return lens.run(model, data, lens.make_options(values, report=True),
                    RunContext(progress=ctx.progress, units=ctx.units, workdir=workdir))


def _is_seed_architecture(model) -> bool:
    card = getattr(model, "card", None)
    net = model.network
    from polylens.lenses.findings.names_sweep import SEED_SETTINGS

    return (net.architecture == SEED_SETTINGS["architecture"]
            and (getattr(card, "activation", "") or "") == SEED_SETTINGS["activation"])


def run(model, data, o: FindingsOptions, ctx: RunContext = RunContext()) -> Findings:
    """Measure every claim on ``model`` and ``data`` (see the module docstring)."""
    from polylens.errors import PolylensError
    from polylens.lenses.discover.naming import suggest_names
    from polylens.lenses.discover.trace import digit_formulas
    from polylens.lenses.findings.names_sweep import load_bundled_sweep

    net = model.network
    # A lens that cannot run on this model leaves its claims "not measured", with its own message.
    summary, ran_lpc, no_sweep = None, False, "the robustness sweep did not run"
    try:
        rob = _earlier_or_run("robustness", model, data, ctx, {"eps": o.eps, "workers": o.workers, "images": o.images})
        summary, ran_lpc = rob.summary, bool(rob.lp_classifier)
    except PolylensError as e:
        no_sweep = f"the robustness sweep failed: {e}"
    sig, no_sig = None, "the signatures lens did not run"
    try:
        sig = _earlier_or_run("signatures", model, data, ctx, {"per_digit": o.per_digit})
    except PolylensError as e:
        no_sig = f"the signatures failed: {e}"
    shape = tuple(net.input_shape)
    grid = len(shape) == 2 and min(shape) >= 3
    sugg = tuple(suggest_names(model, data.x)) if grid and net.n_hidden_layers >= 1 else ()
    formula = None
    if grid and np.any(data.y == 0):
        f0 = [f for f in digit_formulas(model, data.x, data.y) if f.digit == 0]
        formula = f0[0] if f0 else None
    same = _is_seed_architecture(model)
    sweep = load_bundled_sweep() if same else None
    card_names = dict(getattr(getattr(model, "card", None), "neuron_names", {}) or {})
    claims = (C.claim_verified(summary, no_sweep), C.claim_lp_classifier(summary, ran_lpc, no_sweep),
              C.claim_digit_one(summary, missing=no_sweep), C.claim_digit_four(summary, missing=no_sweep),
              C.claim_signatures(sig, no_sig),
              C.claim_names(sugg, card_names, sweep, same), C.claim_digit_formula(formula, sugg))
    best = None
    if sugg:
        best = {t: max(abs(s.scores.get(t, 0.0)) for s in sugg if s.layer == 1) for t in C.CLAIMED}
    return Findings(claims, summary, ran_lpc,
                    tuple(int(d) for d in sig.digits) if sig is not None else (),
                    tuple(float(v) for v in sig.distinct_per_digit) if sig is not None else (),
                    float(sig.distinct_accuracy) if sig is not None else float("nan"),
                    sweep, best, np.asarray(net.layers[0].W, dtype=np.float64) if grid else None,
                    np.asarray(data.x, dtype=np.float64).std(axis=0), shape,
                    str(getattr(model, "source", "memory")))


def findings_section(result: Findings, ctx: SectionContext):
    from polylens.report.html import Section, Table, figure

    figs = []
    if ctx.draw:
        from polylens.lenses.findings import figures as F

        if result.summary is not None:
            figs.append(figure(F.accuracy_figure(result.summary, result.lp_classifier), "findings-accuracy",
                               "Claims 1 and 2: clean accuracy, the LP classifier, verified accuracy and the attack "
                               "bound against eps (bands: 95% Wilson intervals).", "Accuracy against eps", svg=True))
            figs.append(figure(F.digits_figure(result.summary), "findings-digits",
                               "Claims 3 and 4: verified rate per digit against eps; digits 1 and 4 in colour with "
                               "their attack bounds (dashed).", "Verified rate per digit", svg=True))
        if result.signature_digits:
            figs.append(figure(F.signatures_figure(result.signature_digits, result.signature_per_digit,
                                                   result.signature_accuracy), "findings-signatures",
                               "Claim 5: how well each digit's constraint signatures are told apart (leave-one-out "
                               "nearest mean).", "Signature distinctiveness per digit", svg=True))
        if result.best is not None and len(result.input_shape) == 2:
            figs.append(figure(F.names_figure(result.sweep, result.best, "this model", result.input_shape,
                                              result.maps, result.pixel_std), "findings-names",
                               "Claim 6: how well layer 1 matches Frame, Spine and Belt, in this model (star) and over "
                               "training seeds of the seed architecture (dots); below, this model's layer-1 weight "
                               "maps and those of the best-matching run (blue: ink raises the neuron).",
                               "Template scores over training seeds"))
        d0 = result.claim("digit-0")
        if d0.verdict is not C.Verdict.NOT_MEASURED:
            figs.append(figure(F.formula_figure(d0.data["terms"], d0.data["formula"]), "findings-formula",
                               "Claim 7: the flow of the neurons matching Frame, Spine and Belt into logit 0 (the "
                               "formula says all three push it up: blue where they do).", "Digit-0 formula", svg=True))
    rows = tuple((i + 1, c.claim, c.measure, c.measurement, c.verdict.value, c.rule)
                 for i, c in enumerate(result.claims))
    tables = [Table("findings", ("#", "claim", "measured by", "measurement", "verdict", "rule"), rows,
                    "The seed's claims, each with its measurement and verdict")]
    if result.sweep is not None:
        runs = sorted(result.sweep.runs, key=lambda r: r.seed)
        br = result.sweep.best_run()
        tables.append(Table("findings-name-sweep", ("seed", "test accuracy", "layer-1 names", "best |r| Frame",
                                                    "best |r| Spine", "best |r| Belt", "note"),
                            tuple((r.seed, r.accuracy, ", ".join(f"{n} ({s:.2f})" for n, s in zip(r.names, r.scores)),
                                   r.best["Frame"], r.best["Spine"], r.best["Belt"],
                                   "bundled seed" if r.seed == 0 else "best match" if r is br else "")
                                  for r in runs),
                            f"The seed architecture over {len(runs)} training seeds (seed 0 is the bundled model)",
                            show=True))
    note = ""
    if result.sweep is not None:
        freq = {t: result.sweep.frequency(t) for t in C.CLAIMED}
        accs = [r.accuracy for r in result.sweep.runs]
        note = (f"Over {len(result.sweep.runs)} training seeds of this architecture, a layer-1 neuron is named Frame in "
                f"{freq['Frame']:.0%} of runs, Spine in {freq['Spine']:.0%} and Belt in {freq['Belt']:.0%} (test "
                f"accuracy {min(accs):.3f} to {max(accs):.3f}, median {float(np.median(accs)):.3f}). The bundled seed "
                "is seed 0 of this sweep and stays the bundled model.")
    return Section("findings", "Findings: the seed's claims, checked", INTRO, figures=tuple(figs),
                   tables=tuple(tables), note=note, data=result.to_dict())


def _show(result: Findings, con, o) -> None:
    from polylens.report.terminal import table

    con.print(table("The seed's claims", ("claim", "measurement", "verdict"),
                    [(c.claim, c.measurement, c.verdict.value) for c in result.claims], 3))


FINDINGS = Lens(
    name="findings", title="Findings", family="findings",
    summary="The seed's claims, one by one, each with its measurement, figure and verdict.",
    options=FindingsOptions, run=run, section=findings_section, show=_show,
    quick={"eps": (0.0, 0.02), "per_digit": 2, "workers": 1},
    report_options={},
    view=View(order=5, options={"per_digit": 10, "workers": 1, "images": 120, "eps": (0.0, 0.005, 0.01, 0.02)}),
)
