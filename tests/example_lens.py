"""A tiny lens written the way a user would add one: one module, one registration line.

``mean-input`` shows, per class, the mean input of the class's images and how far the network's
logit of the class is from its value at that mean. Registered by the tests with
``polylens.lenses.register(MEAN_INPUT)``; nothing else in polylens knows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polylens.lenses.base import Lens, LensOptions, RunContext, SectionContext, View, option


@dataclass(frozen=True)
class MeanInputOptions(LensOptions):
    where = "mean-input"
    classes: int = option(10, "How many classes to show (the first ones).", lo=1, hi=1000)


@dataclass(frozen=True, eq=False)
class MeanInput:
    """Per class: its number of images, the mean input (C, d) and the logit of the class at that mean."""

    counts: tuple[int, ...]
    means: np.ndarray
    logits_at_mean: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"counts": list(self.counts), "means": self.means.tolist(), "logits_at_mean": list(self.logits_at_mean)}

    def _repr_html_(self) -> str:
        return f"<p>mean inputs of {len(self.counts)} classes</p>"


def run(model, data, options: MeanInputOptions, ctx: RunContext = RunContext()) -> MeanInput:
    C = min(options.classes, model.network.n_classes)
    means = np.stack([data.x[data.y == c].mean(axis=0) if np.any(data.y == c) else np.zeros(data.x.shape[1])
                      for c in range(C)])
    logits = model.network(means)
    return MeanInput(tuple(int(np.sum(data.y == c)) for c in range(C)), means,
                     tuple(float(logits[c, c]) for c in range(C)))


def section(result: MeanInput, ctx: SectionContext):
    from polylens.report.html import Section, Table

    rows = tuple((c, n, v) for c, (n, v) in enumerate(zip(result.counts, result.logits_at_mean)))
    return Section("mean-input", "Mean inputs", "The mean input of every class, and its logit there.",
                   tables=(Table("mean-input", ("class", "images", "logit at the mean"), rows, "Per class"),),
                   data=result.to_dict())


MEAN_INPUT = Lens(name="mean-input", title="Mean inputs", family="example",
                  summary="The mean input of every class and the class's logit there.",
                  options=MeanInputOptions, run=run, section=section, view=View(order=1000),
                  show=lambda r, con, o: con.print(f"mean inputs of {len(r.counts)} classes"))
