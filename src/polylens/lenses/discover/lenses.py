"""The discovery lenses: signatures, prototypes, counterfactuals, neurons, traces (the formula of
every digit) and trace (one input's exact flows). Each is declared once here; the CLI, the report,
the explorer and ``import polylens as pl`` read these declarations from the registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from polylens.errors import ModelError, ParameterError, PolylensError
from polylens.lenses.base import Lens, LensOptions, Payload, RunContext, SectionContext, View, option
from polylens.lenses.discover import explore, sections
from polylens.lenses.discover.names import display_names

__all__ = ["COUNTERFACTUALS", "NEURONS", "PROTOTYPES", "SIGNATURES", "TRACE", "TRACES"]


def _first_table(result, console, section) -> None:
    from polylens.report.terminal import table

    sec = section(result, SectionContext(None, None, draw=False))
    t = next(t for t in sec.tables if t.show)
    console.print(table(t.caption or t.name, t.columns, t.rows, t.digits))


# ---------------------------------------------------------------------------------------------
# Signatures


@dataclass(frozen=True)
class SignaturesOptions(LensOptions):
    where = "signatures"
    eps: float = option(0.02, "Radius of the L-infinity ball around each image.", lo=0.0, hi=1.0)
    objective: str = option("logit", "What each LP optimises: logit or margin.", choices=("logit", "margin"))
    sense: str = option("max", "max or min.", choices=("max", "min"))
    per_digit: int | None = option(100, "Images per digit (the first correctly classified ones); 0 or none for all.",
                                   lo=0)


def _signatures(model, data, o: SignaturesOptions, ctx: RunContext = RunContext()):
    from polylens.lenses.discover.signatures import signatures

    return signatures(model, data.x, data.y, eps=o.eps, objective=o.objective, sense=o.sense, images=data.images,
                      max_per_digit=o.per_digit or None)


def _signatures_section(result, ctx: SectionContext):
    return sections.signatures_section(result, ctx.names if ctx.model is not None else None, draw=ctx.draw)


SIGNATURES = Lens(
    name="signatures", title="Signatures", family="discover",
    summary="Constraint signatures: which pixels and envelope cuts hold each digit's LP optimum.",
    options=SignaturesOptions, run=_signatures, section=_signatures_section,
    show=lambda r, con, o: _first_table(r, con, _signatures_section),
    quick={"per_digit": 2},
    view=View(module="signatures.js", order=60, options={"per_digit": 30},
              payloads={"main": Payload(explore.signatures_payload, background=True)}),
)


# ---------------------------------------------------------------------------------------------
# Prototypes


@dataclass(frozen=True)
class PrototypesOptions(LensOptions):
    where = "prototypes"
    eps: float = option(0.1, "Radius of the ball around each digit's best image.", lo=0.0, hi=1.0)
    lam: float = option(0.01, "Price per unit of ink moved (L1).", lo=0.0)
    strip: tuple[float, ...] = option((0.05, 0.1, 0.2, 0.5, 1.0), "Radii of the strip drawn per digit (1: the "
                                      "whole box [0, 1]^d); empty for none.", lo=0.0, hi=1.0)


@dataclass(frozen=True, eq=False)
class Prototypes:
    """The prototype of each digit at the lens's radius (:class:`~polylens.lenses.discover.prototypes.
    PrototypeResult`) and the strip over growing radii (:class:`~polylens.lenses.discover.prototypes.
    PrototypeSweepResult`, or None)."""

    main: Any
    strip: Any

    def __getattr__(self, name):  # the main result's fields read through (r.digits, r.prototype_margin, ...)
        if name in ("main", "strip"):
            raise AttributeError(name)
        return getattr(self.main, name)

    def to_dict(self) -> dict:
        return {**self.main.to_dict(), "strip": None if self.strip is None else self.strip.to_dict()}

    def _repr_html_(self) -> str:
        from polylens.report.html import section_fragment

        return section_fragment(_prototypes_section(self, SectionContext(None, None, draw=False)))


def _prototypes(model, data, o: PrototypesOptions, ctx: RunContext = RunContext()) -> Prototypes:
    from polylens.lenses.discover.prototypes import prototype_sweep, prototypes

    main = prototypes(model, data.x, data.y, eps=o.eps, lam=o.lam)
    strip = prototype_sweep(model, data.x, data.y, o.strip, (o.lam,)) if o.strip else None
    return Prototypes(main, strip)


def _prototypes_section(result: Prototypes, ctx: SectionContext):
    return sections.prototypes_section(result.main, draw=ctx.draw, strip=result.strip)


PROTOTYPES = Lens(
    name="prototypes", title="Prototypes", family="discover",
    summary="Max-margin prototypes: the image near each digit's best example that is most that digit, with proven "
            "bounds, and a strip over growing radii.",
    options=PrototypesOptions, run=_prototypes, section=_prototypes_section,
    show=lambda r, con, o: _first_table(r, con, _prototypes_section),
    quick={"strip": (0.1, 1.0)},
    view=View(module="prototypes.js", order=70, payloads={"main": Payload(explore.prototypes_payload, background=True)}),
)


# ---------------------------------------------------------------------------------------------
# Counterfactuals


@dataclass(frozen=True)
class CounterfactualsOptions(LensOptions):
    where = "counterfactuals"
    eps: float = option(0.03, "Radius of the ball the change must stay in.", lo=0.0, hi=1.0)
    pairs: int = option(4, "How many (label, target) pairs: the confusions the network makes most.", lo=1, hi=100)
    tighten: int = option(64, "LPs the branch and bound may spend per pair to tighten the proven L1 bound where "
                              "the gap to the best real change is large (0: none).", lo=0, hi=100_000)


def _counterfactuals(model, data, o: CounterfactualsOptions, ctx: RunContext = RunContext()):
    from polylens.lenses.discover.counterfactuals import counterfactual_pairs, instructive_pairs

    net = model.network
    pairs = instructive_pairs(net, data.x, data.y, n=o.pairs)
    return counterfactual_pairs(net, data.x, data.y, pairs, eps=o.eps, tighten_nodes=o.tighten)


def _counterfactuals_section(result, ctx: SectionContext):
    return sections.counterfactuals_section(result)


COUNTERFACTUALS = Lens(
    name="counterfactuals", title="Counterfactuals", family="discover",
    summary="Counterfactuals: the smallest change (L1) that turns one digit into another, with proven lower bounds.",
    options=CounterfactualsOptions, run=_counterfactuals, section=_counterfactuals_section,
    show=lambda r, con, o: _first_table(r, con, _counterfactuals_section),
    quick={"pairs": 1, "tighten": 4},
    view=View(order=80, options={"tighten": 8}),
)


# ---------------------------------------------------------------------------------------------
# Neurons

@dataclass(frozen=True)
class NeuronsOptions(LensOptions):
    where = "neurons"
    top: int = option(8, "Most and least activating test images to keep per neuron.", lo=1, hi=100)
    suggest: bool = option(False, "Also show a suggested name for every neuron (geometric templates for layer 1, "
                                  "compositions deeper).")
    rename: tuple[str, ...] = option((), "Name neurons, e.g. --rename L1.n0=Frame,L1.n1=Ring (an empty name "
                                         "removes one). Saved into the card of a model directory; for a bundled or "
                                         "ONNX model give --out, which receives a renamed copy in OUT/model.")

    def __post_init__(self):
        super().__post_init__()
        self.names  # every item is checked now

    @property
    def names(self) -> dict[str, str]:
        """The renames as {neuron key: name} (the key parsed by NeuronId, the one reader of 'L1.n0')."""
        from polylens.nn.network import NeuronId

        out = {}
        for it in self.rename:
            key, eq, name = it.partition("=")
            try:
                if not eq:
                    raise ParameterError("no '='")
                nid = NeuronId.parse(key.strip())
            except ParameterError:
                raise ParameterError(f"The '--rename' option must look like L1.n0=Frame (an empty name removes one). "
                                     f"Got {it!r} instead.") from None
            out[str(nid)] = name.strip()
        return out


@dataclass(frozen=True, eq=False)
class Neurons:
    """Every hidden neuron's profile (:class:`~polylens.lenses.discover.neurons.NeuronReport`), the
    name suggestions, the card's names and the names shown."""

    report: Any
    suggestions: tuple
    card_names: Mapping[str, str]
    display_names: Mapping[str, str]

    def to_dict(self) -> dict:
        return {"report": self.report.to_dict(), "suggestions": [s.to_dict() for s in self.suggestions],
                "names": {p.key: self.name_of(p.key) for p in self.report.neurons}}

    def name_of(self, key: str) -> str:
        sug = {s.key: s.name for s in self.suggestions}
        return self.display_names.get(key) or self.card_names.get(key) or sug.get(key) or key

    def _repr_html_(self) -> str:
        from polylens.report.html import section_fragment

        return section_fragment(_neurons_section(self, SectionContext(None, None, draw=False)))


def _neurons(model, data, o: NeuronsOptions, ctx: RunContext = RunContext()) -> Neurons:
    from polylens.lenses.discover.naming import suggest_names
    from polylens.lenses.discover.neurons import neuron_report

    display = display_names(model, data.x)
    card = dict(getattr(getattr(model, "card", None), "neuron_names", {}) or {})
    shown = model.with_neuron_names({k: v for k, v in display.items() if k not in card and v != k}) \
        if hasattr(model, "with_neuron_names") else model
    report = neuron_report(shown, data.x, data.y, data.images, top=min(o.top, len(data)))
    try:
        sug = tuple(suggest_names(model, data.x if len(data) >= 2 else None))
    except PolylensError:
        sug = ()
    return Neurons(report, sug, card, display)


def _neurons_prepare(model, o: NeuronsOptions, out: Path | None):
    """Apply ``--rename`` before the run: in place in a model directory's card, else into a renamed
    copy under OUT/model."""
    from polylens.nn.model import save_card, save_model

    names = o.names
    if not names:
        return model, {}
    model = model.with_neuron_names(names)  # ParameterError for unknown keys
    src = Path(model.source)
    if model.source.startswith("bundled:") or not src.is_dir():
        if out is None:
            raise ModelError(f"The model {model.source} is not a model directory, so its names cannot be saved in "
                             "place; give --out DIR to write a renamed copy to DIR/model (then use DIR/model as MODEL).")
        saved = save_model(model, Path(out) / "model")
    else:
        saved = save_card(model, src)
    return model, {"saved": str(saved)}


def _neurons_section(result: Neurons, ctx: SectionContext):
    return sections.neurons_section(result.report, result.suggestions, result.card_names, result.display_names,
                                    draw=ctx.draw)


def _neurons_show(result: Neurons, con, o: NeuronsOptions) -> None:
    from polylens.report.terminal import table

    t = _neurons_section(result, SectionContext(None, None, draw=False)).tables[0]
    if o.suggest:
        cols, title = ["neuron", "name", "suggested", "score"], "Neurons and suggested names (score: template match)"
    else:
        cols = ["neuron", "name", "max value", "max <= (LP bound)", "min value", "min >= (LP bound)"]
        title = ("Neurons (max, min: value at the LP maximiser / minimiser after refinement; <=, >=: rigorous LP "
                 "bounds over [0, 1]^d)")
    keep = [t.columns.index(c) for c in cols]
    short = {"max <= (LP bound)": "max <=", "min >= (LP bound)": "min >=", "max value": "max", "min value": "min"}
    con.print(table(title, [short.get(c, c) for c in cols], [[r[i] for i in keep] for r in t.rows]))
    if o.suggest and not o.rename and result.suggestions:
        s = result.suggestions[0]
        con.print(f"Apply a suggestion with --rename, e.g. --rename {s.key}={s.name}")


NEURONS = Lens(
    name="neurons", title="Neurons", family="discover",
    summary="Neuron patterns: weight maps, LP-certified extreme inputs, top images, activation per class, names.",
    options=NeuronsOptions, run=_neurons, section=_neurons_section, show=_neurons_show, prepare=_neurons_prepare,
    quick={"top": 2},
    view=View(module="neuron.js", order=30, payloads={
        "main": Payload(explore.neuron_payload, params=explore.NeuronParams, grid=explore.neuron_grid)}),
)


# ---------------------------------------------------------------------------------------------
# Traces: the formula of every digit


@dataclass(frozen=True)
class TracesOptions(LensOptions):
    where = "traces"
    layer: int = option(1, "The hidden layer whose neurons make the formulas.", lo=1)


@dataclass(frozen=True, eq=False)
class Traces:
    """One :class:`~polylens.lenses.discover.trace.Formula` per digit and the input shape (for the figures)."""

    formulas: tuple
    input_shape: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"formulas": [f.to_dict() for f in self.formulas]}

    def _repr_html_(self) -> str:
        from polylens.report.html import section_fragment

        return section_fragment(_traces_section(self, SectionContext(None, None, draw=False)))


def _traces(model, data, o: TracesOptions, ctx: RunContext = RunContext()) -> Traces:
    from polylens.lenses.discover.trace import digit_formulas

    if o.layer > model.network.n_hidden_layers:
        raise ParameterError(f"The 'layer' parameter of traces must be an int in [1, {model.network.n_hidden_layers}]. "
                             f"Got {o.layer} instead.")
    res = digit_formulas(model, data.x, data.y, names=display_names(model, data.x), layer=o.layer)
    return Traces(tuple(res), tuple(model.network.input_shape))


def _traces_section(result: Traces, ctx: SectionContext):
    return sections.traces_section(result.formulas, result.input_shape, draw=ctx.draw)


def _traces_show(result: Traces, con, o) -> None:
    for f in result.formulas:
        con.print(f.text)


TRACES = Lens(
    name="traces", title="Traces", family="discover",
    summary="How the named neurons make each digit: the average exact flow into each logit, as a formula.",
    options=TracesOptions, run=_traces, section=_traces_section, show=_traces_show,
)


# ---------------------------------------------------------------------------------------------
# Trace: one input


@dataclass(frozen=True)
class TraceOptions(LensOptions):
    where = "trace"
    index: int = option(0, "Row of the data to trace.", lo=0)
    target: int | None = option(None, "The logit to trace into (default: the prediction).", lo=0)


@dataclass(frozen=True, eq=False)
class TraceOne:
    """The exact trace (:class:`~polylens.lenses.discover.trace.Trace`) of row ``index`` of the data."""

    trace: Any
    index: int
    label: int
    input_shape: tuple[int, ...]

    def to_dict(self) -> dict:
        t = self.trace
        return {"index": self.index, "label": self.label, "prediction": int(np.argmax(t.logits)), **t.to_dict(),
                "flow_graph": t.flow(t.target).to_dict()}

    def _repr_html_(self) -> str:
        return self.trace._repr_html_()


def _trace(model, data, o: TraceOptions, ctx: RunContext = RunContext()) -> TraceOne:
    from polylens.lenses.discover.trace import trace

    N, C = len(data), model.network.n_classes
    if not o.index < N:
        raise ParameterError(f"The 'index' parameter of trace must be an int in [0, {N - 1}]. Got {o.index} instead.")
    if o.target is not None and not o.target < C:
        raise ParameterError(f"The 'target' parameter of trace must be an int in [0, {C - 1}]. Got {o.target} instead.")
    display = display_names(model, data.x)
    named = model.with_neuron_names({k: v for k, v in display.items()
                                     if k not in model.card.neuron_names and v != k})
    return TraceOne(trace(named, data.x[o.index], target=o.target), o.index, int(data.y[o.index]),
                    tuple(model.network.input_shape))


def _trace_section(result: TraceOne, ctx: SectionContext):
    from polylens.report.figures import trace_flow
    from polylens.report.html import Section, Table
    from polylens.report.html import figure as fig

    t, k = result.trace, result.trace.target
    rows = []
    for l in range(1, t.n_hidden_layers + 1):
        for j, name in enumerate(t.names[l - 1]):
            rows.append((f"L{l}.n{j}", name, float(t.pre[l - 1][j]), float(t.gate[l - 1][j]), float(t.post[l - 1][j]),
                         float(t.downstream[l][k, j]), float(t.node_flow(l)[k, j])))
    table = Table("trace", ("neuron", "name", "a", "gate", "z", "path weight", "flow"), tuple(rows),
                  f"Flow into logit[{k}] (flow = path weight x z; each layer's flows plus later constants sum to the "
                  "logit)", digits=4)
    lines = tuple(f"layer {l}: flows sum {t.node_flow(l)[k].sum():+.4f} + later constants "
                  f"{t.later_constants(l)[k]:+.4f} = {t.logits[k]:+.4f}" for l in range(1, t.n_hidden_layers + 1))
    figs = ()
    if ctx.draw:
        shape = result.input_shape if len(result.input_shape) == 2 else None
        figs = (fig(trace_flow(t.flow(k), shape, title=f"Image {result.index} (label {result.label}): flow into "
                                                          f"logit[{k}]"), f"trace-{result.index}-{k}",
                    f"Flow into logit[{k}]", svg=True),)
    return Section("trace", f"Trace of image {result.index}", f"Image {result.index}: label {result.label}, prediction "
                   f"{int(np.argmax(t.logits))}; logit[{k}] = {t.logits[k]:+.4f}.", figures=figs, tables=(table,),
                   blocks=(("Each layer adds up", "\n".join(lines)),), data=result.to_dict())


def _trace_show(result: TraceOne, con, o) -> None:
    from polylens.report.terminal import table

    sec = _trace_section(result, SectionContext(None, None, draw=False))
    con.print(sec.intro)
    t = sec.tables[0]
    con.print(table(t.caption, t.columns, t.rows, t.digits))
    con.print(sec.blocks[0][1])


TRACE = Lens(
    name="trace", title="Trace", family="discover",
    summary="Trace one input: every neuron's exact contribution (flow) to a logit.",
    options=TraceOptions, run=_trace, section=_trace_section, show=_trace_show, in_report=False,
    view=View(module="trace.js", order=40, payloads={
        "main": Payload(explore.trace_payload, params=explore.TraceParams, per_input=True, grid=explore.trace_grid)}),
)
