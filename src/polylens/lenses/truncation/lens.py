"""The truncation lens (``polylens truncation MODEL``): a network as maps of its input space onto
itself (TRUNCATION.md), with every identity checked on its inputs, the cones of its maps, whether
its data is sequentially linearly separable, and a toy set flowing through a constructed network.

``--json`` prints ``{"identities": [{"layer", "residual", "holds", "lifted", "reason"}, ...], ...}``:
one row per hidden layer and one for the output identity, on the first ``--n`` inputs (default
200) of ``--data`` (default: the model's test split, or the ``train.npz`` that ``polylens
construct`` writes next to a constructed model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polylens.lenses.base import Lens, LensOptions, RunContext, SectionContext, View, option
from polylens.lenses.truncation.flow import TOYS, Analysis, ToyFlow, analyse, cone_dict, toy_flow

__all__ = ["TRUNCATION", "Truncation", "TruncationOptions"]

CONE_NOTE = ("The cone picture (maps that fix a forward cone, collapse the backward cone to its base point and "
             "truncate the rest) is ReLU only; this network's activation is {act}: its cone coordinates and sign "
             "patterns are computed, and the identities hold for it, but its maps neither fix nor collapse.")


@dataclass(frozen=True)
class TruncationOptions(LensOptions):
    """Options of the truncation lens. It reads its own ``--data`` and ``--n`` (default 200 inputs,
    the contract of ``polylens truncation``)."""

    where = "truncation"
    data: str | None = option(None, "An .npz with x (N, d) and labels y (default: the model's test split, or the "
                              "train.npz next to a constructed model).", flag="--data")
    n: int = option(200, "Check the identities on the first N inputs.", lo=1, flag="--n")
    lift: bool = option(True, "Lift a widening first layer (d0 < d1) through iota (TRUNCATION.md section 2).")
    sls: bool = option(True, "Search for an order in which the inputs' classes are sequentially linearly separable.")
    budget: int = option(150, "LP solves the SLS order search may spend.", lo=1, hi=100_000)
    toy: str = option("sls", "The toy set of the flow figure: a network constructed on it, its points through the maps.",
                      choices=TOYS + ("none",))


@dataclass(frozen=True, eq=False)
class Truncation:
    """Identities, cones and trajectory of ``model`` on ``n`` inputs, the SLS answer for them (or
    None), and the toy flow (or None). ``to_dict()`` is ``polylens truncation --json``."""

    model: str
    data: str
    n: int
    activation: str
    relu: bool
    analysis: Analysis
    sls: Any
    toy: ToyFlow | None
    input_shape: tuple[int, ...]

    @property
    def rows(self):
        return self.analysis.rows

    @property
    def note(self) -> str:
        return "" if self.relu else CONE_NOTE.format(act=self.activation)

    def to_dict(self) -> dict:
        a = self.analysis
        return {"identities": [r.to_dict() for r in a.rows], "model": self.model, "data": self.data, "n": self.n,
                "activation": self.activation, "cone_picture": self.relu, "note": self.note,
                "lifted": a.params.lifted, "space": a.params.space,
                "cones": [cone_dict(c, with_vectors=a.params.space * c.edges.shape[1] <= 2000) for c in a.cones],
                "sls": None if self.sls is None else self.sls.to_dict(),
                "toy": None if self.toy is None else self.toy.to_dict(points=False)}

    def _repr_html_(self) -> str:
        from polylens.report.html import section_fragment

        return section_fragment(truncation_section(self, SectionContext(None, None, draw=False)))


def _load(model, data, o: TruncationOptions):
    """The inputs: ``--data``, else the data given (a report's), else the model's test split, else the
    train.npz next to a constructed model."""
    from polylens.data.labelled import Data

    if o.data is not None:
        from polylens.cli.construct import load_labelled_npz
        from polylens.errors import ParameterError

        x, y = load_labelled_npz(Path(o.data))
        if x.shape[1] != model.network.input_dim:
            raise ParameterError(f"The data's x must have shape (N, {model.network.input_dim}) for this model. "
                                 f"Got {x.shape} instead.")
        return x[: o.n], y[: o.n], str(Path(o.data).resolve())
    if data is not None:
        d = data.head(o.n)
        return d.x, d.y, data.name
    from polylens.errors import PolylensError

    try:
        d = Data.of_model(model).head(o.n)
        return d.x, d.y, d.name
    except PolylensError:
        src = Path(str(getattr(model, "source", "")))
        if (src / "train.npz").is_file():
            from polylens.cli.construct import load_labelled_npz

            x, y = load_labelled_npz(src / "train.npz")
            return x[: o.n], y[: o.n], str(src / "train.npz")
        raise


def run(model, data, o: TruncationOptions, ctx: RunContext = RunContext()) -> Truncation:
    """Identities (with residuals and failed hypotheses), cones, SLS of the inputs, the toy flow."""
    from polylens.lenses.truncation.sls import find_order

    net = model.network
    x, y, name = _load(model, data, o)
    ctx.progress(f"truncation maps: identities and cones on {len(x)} inputs")
    a = analyse(net, x, y, o.lift)
    acts = {str(act) for act in net.activations} or {"none"}
    relu = all(act.kind.value == "relu" for act in net.activations)
    cert = None
    if o.sls and len(np.unique(y)) >= 2:
        ctx.progress("truncation maps: SLS order search")
        cert = find_order(x, y, budget=o.budget)
    toy = None if o.toy == "none" else toy_flow(o.toy)
    return Truncation(str(getattr(model, "source", "memory")), name, int(len(x)), ", ".join(sorted(acts)), relu, a,
                      cert, toy, tuple(net.input_shape))


INTRO = """\
Chen and Munoz Ewald rewrite a network with L affine layers as L-1 truncation maps of its input space onto
itself, tau_{W,b}(x) = W^+ (sigma(W x + b) - b) with the cumulative parameters W^(l) = W_l ... W_1, followed by
one affine map: x^(l) = W^(l) x^(tau,l) + b^(l). This holds when every product W^(l) is surjective (the widths
do not grow; a growing first layer is lifted through iota); the table checks each identity on the inputs and
names the hypothesis that failed where one does. Each map (for ReLU) fixes a cone with base point p = -W^+ b
and edges v_i = W^+ e_i, collapses the opposite cone to p and projects the rest onto faces; an input's cone
coordinates are its pre-activations. The toy figure shows a network constructed from the data's geometry
(zero training loss, weights in closed form) moving a 2-D set one map at a time."""


def truncation_section(result: Truncation, ctx: SectionContext):
    from polylens.report.html import Section, Table, figure

    a = result.analysis
    rows = tuple((r.layer, "output" if r.projector is None else "hidden", r.residual, r.holds, r.lifted, r.reason or "")
                 for r in a.rows)
    tables = [Table("truncation-identities", ("layer", "identity", "largest residual", "holds", "lifted", "reason"),
                    rows, f"The identities of CE24 Prop. 3.2 on {result.n} inputs", digits=3)]
    tables.append(Table("truncation-cones", ("map", "fixed", "truncated", "collapsed", "|p|", "edges"),
                        tuple((c.layer, *c.counts().values(), float(np.linalg.norm(c.base)), c.edges.shape[1])
                              for c in a.cones),
                        "Where each map sends the inputs: its forward cone (fixed), backward cone (collapsed to p) "
                        "or neither (truncated onto a face)" + ("" if result.relu else " (sign patterns only: not ReLU)")))
    if result.sls is not None:
        s = result.sls
        tables.append(Table("truncation-sls", ("answer", "order", "LP solves", "reason"),
                            (({True: "SLS", False: "not SLS", None: "undecided"}[s.sls], ", ".join(map(str, s.order)),
                              s.lp_solves, s.reason),),
                            "Sequential linear separability of these inputs (CE24 Def. 5.1)"))
    if result.toy is not None:
        c = result.toy.construction
        tables.append(Table("truncation-toy", ("toy set", "method", "network", "squared loss", "parameters", "formula"),
                            ((result.toy.name, f"{c.method} ({c.details.get('theorem', '')})", c.network.architecture,
                              c.loss, c.n_weights if c.counts == "weights" else c.n_params,
                              f"{c.formula} = {c.formula_value}"),),
                            "The constructed network of the toy flow"))
    figs = []
    if ctx.draw:
        from polylens.lenses.truncation import figures as F

        if result.toy is not None:
            t = result.toy
            figs.append(figure(F.flow_figure(t.analysis.points, t.y, t.analysis.cones,
                                             f"{t.name}: {t.construction.network.architecture} ({t.construction.method})"),
                               "truncation-toy-flow", "A toy set through the maps of its constructed network, one map "
                               "per panel: star = base point p of the map, solid rays = its edges, green = the cone it "
                               "fixes, red = the cone it collapses to p.", "Toy flow through the truncation maps"))
        if a.cones:
            figs.append(figure(F.projected_flow_figure(a.points, a.y, a.cones, "this model's inputs, projected"),
                               "truncation-flow", "The inputs through this model's maps, projected on the two principal "
                               "directions of all steps (cones projected too).", "Projected flow"))
            shape = result.input_shape
            if len(shape) == 2 and not a.params.lifted:
                figs.append(figure(F.cone_images_figure(a.cones, shape), "truncation-cones",
                                   "Each map's base point p and edges v_i as images (blue positive, red negative).",
                                   "Cones as images"))
    return Section("truncation", "Truncation maps: depth as maps of the input space", INTRO, figures=tuple(figs),
                   tables=tuple(tables), note=result.note, data=result.to_dict())


def _show(result: Truncation, con, o=None) -> None:
    from polylens.report.terminal import table

    con.print(table(f"Identities on {result.n} inputs", ("layer", "residual", "holds", "lifted", "reason"),
                    [(r.layer, f"{r.residual:.3g}", "yes" if r.holds else "no", "yes" if r.lifted else "no", r.reason)
                     for r in result.rows], 5))
    if result.sls is not None:
        con.print(f"SLS of these inputs: {result.sls.reason}" + (f" (order {list(result.sls.order)})" if result.sls.sls else ""))
    if result.note:
        con.print(result.note)


from polylens.lenses.truncation import explore  # noqa: E402

TRUNCATION = Lens(
    name="truncation", title="Truncation maps", family="truncation",
    summary="A network as maps of its input space: identities checked, cones, SLS, networks built from geometry.",
    options=TruncationOptions, run=run, section=truncation_section, show=_show, needs_data=False,
    quick={"n": 60, "budget": 20},
    report_options={},
    view=View(module="truncation.js", order=60, payloads={
        "main": explore.main_payload_spec(),
        "toy": explore.toy_payload_spec(),
    }),
)
