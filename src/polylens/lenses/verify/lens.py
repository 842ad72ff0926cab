"""The robustness lens: a certified sweep over radii (``polylens verify``), its report section and
its explorer view (the eps slider with a live certificate, the status of every sample, the curves)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


from polylens.lenses.base import Lens, LensOptions, Payload, RunContext, SectionContext, View, option
from polylens.lenses.verify import explore

__all__ = ["ROBUSTNESS", "Robustness", "RobustnessOptions", "robustness_section"]

DEFAULT_EPS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)


@dataclass(frozen=True)
class RobustnessOptions(LensOptions):
    """Options of the robustness sweep (``polylens verify``)."""

    where = "verify"
    eps: tuple[float, ...] = option(DEFAULT_EPS, "Comma-separated L-infinity radii in [0, 1].", lo=0.0, hi=1.0)
    images: int | None = option(None, "Certify only the first N images (default: all).", lo=0, cli=False)
    mode: str = option("hull", "Envelope of the LP: hull (several cuts per side) or pair.", choices=("hull", "pair"))
    cuts: int = option(8, "Cuts per side in hull mode.", lo=1, hi=64)
    lp: bool = option(True, "Run LPs where bound propagation fails.")
    alpha: bool = option(False, "Also try CROWN with optimised slopes before LPs.")
    lp_classifier: bool = option(True, "Also report the LP classifier (largest worst-case margin).")
    attack_steps: int = option(30, "PGD steps per attack run.", lo=0, hi=10_000)
    time_limit: float | None = option(None, "Seconds per LP solve (default: none).", lo=0.0, lo_open=True)
    bab: bool = option(True, "Branch and bound for what the LPs leave open (complete for relu).")
    budget: float = option(10.0, "Seconds of branch and bound per batch of open units (a budget that holds).",
                           lo=0.0, lo_open=True)
    workers: int = option(2, "Worker processes.", lo=1)
    chunk: int | None = option(None, "Images per job (a job certifies them at every radius; default: about 4 "
                               "jobs per worker, at most 250 images).", lo=1)
    executor: str = option("process", "Where jobs run: a local process pool, or Ray tasks.", choices=("process", "ray"))
    address: str | None = option(None, "The Ray cluster's address with --executor ray (default: a local Ray).")

    def __post_init__(self):
        super().__post_init__()
        if not self.eps:
            from polylens.errors import ParameterError

            raise ParameterError("The 'eps' parameter of verify must list at least one radius.")


@dataclass(frozen=True, eq=False)
class Robustness:
    """A finished sweep (:class:`~polylens.lenses.verify.sweep.SweepResult`) with where its model and
    data came from. ``to_dict()`` is ``polylens verify --json``: ``{"summary": {...}, "results": [...]}``."""

    sweep: Any
    model: str
    data: str
    lp_classifier: bool

    @property
    def summary(self) -> dict:
        return self.sweep.summary

    @property
    def n_images(self) -> int:
        return self.sweep.n_images

    def to_dict(self) -> dict:
        payload = self.sweep.to_json()
        payload["summary"] = {**payload["summary"], "model": self.model, "data": self.data, "n": self.n_images}
        return payload

    def _repr_html_(self) -> str:
        from polylens.report.html import section_fragment

        return section_fragment(robustness_section(self, SectionContext(None, None, draw=False)))


def run(model, data, options: RobustnessOptions, ctx: RunContext = RunContext()) -> Robustness:
    """Certify the first ``options.images`` rows of ``data`` at every radius (see
    :func:`~polylens.lenses.verify.sweep.run_sweep`); resumable through ``ctx.workdir``."""
    from polylens.digest import digest
    from polylens.lenses.verify.certify import CertifyOptions
    from polylens.lenses.verify.sweep import run_sweep
    from polylens.relax.envelopes import Envelope

    net = model.network
    d = data.head(options.images)
    certify_options = CertifyOptions(envelope=Envelope.from_mode(options.mode, options.cuts, "verify"),
                                     use_lp=options.lp, alpha=options.alpha, attack_steps=options.attack_steps,
                                     time_limit=options.time_limit, bab=options.bab, budget=options.budget)
    workers = min(options.workers, os.cpu_count() or 1)
    settings = {"model": digest(*[a for layer in net.layers for a in (layer.W, layer.b)]), "data": digest(d.x, d.y)}
    ctx.progress(f"robustness sweep: {len(d)} images x {len(options.eps)} radii")
    res = run_sweep(net, d.x, d.y, options.eps, options=certify_options, out_dir=ctx.workdir, workers=workers,
                    chunk=options.chunk, with_lp_classifier=options.lp_classifier, settings=settings,
                    progress=ctx.units, executor=options.executor, address=options.address)
    return Robustness(res, getattr(model, "source", "memory"), data.name, options.lp_classifier)


# ---------------------------------------------------------------------------------------------
# The report section

INTRO = """\
How far can an image be pushed before the network's answer may change? For each radius eps every test
image is certified in its L-infinity ball (intersected with [0, 1]): cheapest first by interval bounds
(IBP), then backward linear bounds (CROWN), then LPs over the polytope. Each verified rate is a proven
lower bound on robust accuracy; the attack rate (images no attack could flip) is an upper bound. The hatched
band between LP-verified and attack is what stays unknown.

Panels: all digits first, then one per digit. Bands are 95% Wilson intervals: each digit is a finite
sample, so small differences between digits are noise."""


def _ci(r) -> str:
    lo, hi = r["ci"]
    return f"{lo:.3f}–{hi:.3f}"


def robustness_section(result: Robustness, ctx: SectionContext):
    """The robustness section: rates per radius (overall and per digit, with intervals) and the curves."""
    from polylens.report.figures import robustness_curves
    from polylens.report.html import ReportFigure, Section, Table

    summary = result.summary
    eps = [float(e) for e in summary["eps"]]
    rows_in = result.sweep.rows
    with_lpc = bool(rows_in) and rows_in[0].get("lp_class") is not None
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
    figs = ()
    if ctx.draw:
        figs = (ReportFigure.from_figure(
            robustness_curves(summary), "robustness",
            "Accuracy against eps: verified by IBP, CROWN and LP (lower bounds), attack upper bound (orange, "
            "dashed), unknown hatched; light blue band and dotted orange lines: 95% Wilson intervals.",
            "Robust accuracy curves, overall and per digit", svg=True),)
    n = result.n_images
    note = "" if with_lpc else ("The LP classifier column is not computed here (it costs about ten times the "
                                "certification); `polylens verify` computes it.")
    return Section("robustness", "Robustness: what survives a push", INTRO, figures=figs,
                   tables=(overall, per, long), note=note,
                   data={"n_images": n, "eps": eps, "summary": summary},
                   extra=(f"{n} test images, {len(eps)} radii; every (image, radius) verdict is in the sweep store "
                          "next to this report.",))


def show(result: Robustness, console, options=None) -> None:
    """The verify tables: rates per radius, and LP-verified accuracy per digit with intervals."""
    from rich.table import Table

    s = result.summary
    names = [("clean", "clean"), ("ibp", "IBP"), ("crown", "CROWN"), ("lp", "LP"), ("attack", "attack"),
             ("unknown", "unknown")] + ([("lp_classifier", "LP classifier")] if result.lp_classifier else [])
    t = Table(title=f"Robust accuracy on {result.n_images} images (verified: cumulative ladder; attack: upper bound)")
    t.add_column("eps", justify="right")
    for _, label in names:
        t.add_column(label, justify="right")
    for e in result.sweep.eps:
        row = s["overall"][f"{e:g}"]
        t.add_row(f"{e:g}", *[f"{100 * row[k]['value']:.1f}%" for k, _ in names])
    console.print(t)
    d = Table(title="LP-verified accuracy per digit, with 95% Wilson intervals")
    d.add_column("digit", justify="right")
    for e in result.sweep.eps:
        d.add_column(f"eps {e:g}", justify="right")
    for c in range(result.sweep.n_classes):
        cells = []
        for e in result.sweep.eps:
            r = s["per_digit"][str(c)][f"{e:g}"]["lp"]
            cells.append(f"{100 * r['value']:.0f}% [{100 * r['ci'][0]:.0f}-{100 * r['ci'][1]:.0f}] n={r['n']}"
                         if r["n"] else "-")
        d.add_row(str(c), *cells)
    console.print(d)


ROBUSTNESS = Lens(
    name="robustness", command="verify", title="Robustness", family="verify",
    summary="Certify robustness at each radius: verified by IBP / backward linear bounds / LP, attacked, unknown.",
    options=RobustnessOptions, run=run, section=robustness_section, show=show,
    quick={"eps": (0.0, 0.02), "workers": 1, "lp_classifier": False},
    view=View(module="robust.js", order=10, options={"images": 200}, payloads={
        "certify": Payload(explore.certify_payload, params=explore.CertifyParams, per_input=True, heavy=True,
                           grid=lambda session, grid: [{"eps": e} for e in grid], export=explore.certify_export),
        "robust": Payload(explore.robust_payload, params=explore.EpsParams, heavy=True,
                          grid=lambda session, grid: [{"eps": e} for e in grid], export=explore.robust_export),
        "sweep": Payload(explore.sweep_payload, warm=True),
    }),
)
