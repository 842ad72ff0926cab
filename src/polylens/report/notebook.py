"""Results in a notebook: the one HTML table style behind every result's ``_repr_html_``.

Analyses return result objects and build no HTML; their ``_repr_html_`` (what Jupyter shows) calls
:func:`to_html`, which finds the result's summary table here (:func:`summary_table`, one function per
result type) and renders it with :func:`html_table`: a caption, one header row, one row per item,
floats to four significant digits, non-finite values as a dash.

>>> print(html_table("Demo", ["a", "b"], [[1, 0.123456], ["x<y", float("nan")]]))
<table><caption>Demo</caption><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>0.1235</td></tr><tr><td>x&lt;y</td><td>–</td></tr></tbody></table>
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from functools import singledispatch
from typing import Any, Sequence

import numpy as np

__all__ = ["SummaryTable", "html_table", "summary_table", "to_html"]


@dataclass(frozen=True)
class SummaryTable:
    """What a result shows in a notebook: a caption, column headers and rows of cells."""

    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def _cell(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return "–" if not math.isfinite(float(v)) else f"{float(v):.4g}"
    if v is None:
        return "–"
    return html.escape(str(v))


def html_table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The one table style: ``<table><caption>...</caption><thead>...</thead><tbody>...</tbody></table>``,
    every text escaped, floats to four significant digits, NaN/inf and None as "–"."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return (f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


@singledispatch
def summary_table(result: Any) -> SummaryTable:
    """The summary table of a polylens result (one registered function per result type)."""
    raise TypeError(f"polylens has no notebook table for {type(result).__name__}")


def to_html(result: Any) -> str:
    """``result`` as the one HTML table style (what ``_repr_html_`` returns)."""
    t = summary_table(result)
    return html_table(t.caption, t.headers, t.rows)


# ---------------------------------------------------------------------------------------------
# One table per result type. Imported here, not in the analyses: rendering depends on results,
# never the other way round.

from polylens.lenses.discover.counterfactuals import CounterfactualResult, CounterfactualSet  # noqa: E402
from polylens.lenses.discover.naming import NameSuggestion, Suggestions  # noqa: E402
from polylens.lenses.discover.neurons import NeuronReport  # noqa: E402
from polylens.lenses.discover.prototypes import PrototypeResult, PrototypeSweepResult  # noqa: E402
from polylens.lenses.discover.signatures import SignatureResult  # noqa: E402
from polylens.lenses.discover.trace import Formula, Formulas, Trace  # noqa: E402
from polylens.lenses.verify.sweep import SweepResult  # noqa: E402


@summary_table.register
def _(r: SignatureResult) -> SummaryTable:
    rows = []
    for i, d in enumerate(r.digits):
        ct = [f"{np.nanmean(c[i, :, 0]):.2f}/{np.nanmean(c[i, :, 1]):.2f}" if r.n_images[i] else "–"
              for c in r.cut_tight_freq]
        rows.append((d, int(r.n_images[i]), int(r.n_failed[i]),
                     float(np.nanmean(r.pixel_lower_freq[i])) if r.n_images[i] else math.nan,
                     float(np.nanmean(r.pixel_upper_freq[i])) if r.n_images[i] else math.nan,
                     *ct, float(r.distinct_per_digit[i])))
    headers = ("digit", "images", "failed", "px at lower", "px at upper",
               *[f"L{l} cuts tight lo/hi" for l in range(1, len(r.layer_widths) + 1)], "distinct")
    cap = (f"Constraint signatures: {r.sense} {r.objective}, eps={r.eps:g}, {r.mode}({r.cuts}); "
           f"nearest-mean accuracy {r.distinct_accuracy:.3f}; {r.seconds:.1f} s")
    return SummaryTable(cap, headers, tuple(rows))


@summary_table.register
def _(r: PrototypeResult) -> SummaryTable:
    rows = tuple((d, int(r.start_index[i]), float(r.start_margin[i]), float(r.prototype_margin[i]), str(r.source[i]),
                  int(r.n_changed[i]), float(r.l1[i]), float(r.lp_margin[i]), float(r.margin_upper[i]))
                 for i, d in enumerate(r.digits))
    headers = ("digit", "start", "start margin", "prototype margin", "source", "changed px", "L1", "LP margin",
               "margin ≤")
    return SummaryTable(f"Prototypes: eps={r.eps:g}, lam={r.lam:g}, {r.mode}({r.cuts}); {r.seconds:.1f} s",
                        headers, rows)


@summary_table.register
def _(r: PrototypeSweepResult) -> SummaryTable:
    rows = []
    for a, e in enumerate(r.eps):
        for b, lm in enumerate(r.lam):
            rows.append((float(e), float(lm), float(np.mean(r.real_margin[a, b] - r.start_margin)),
                         float(np.mean(r.n_changed[a, b])), int(np.sum(r.source[a, b] == "lp"))))
    return SummaryTable(f"Prototype sweep over {len(r.digits)} digits; {r.seconds:.1f} s",
                        ("eps", "lam", "mean margin gain", "mean changed px", "digits using the LP point"), tuple(rows))


_CF_HEADERS = ("pair", "relaxed", "concrete", "found by", "L1 ≥", "LP L1", "L1", "changed px", "max margin ≤")


def _cf_row(r: CounterfactualResult) -> tuple:
    return (f"{r.label}→{r.target}", str(r.relaxed), str(r.concrete), str(r.found_by), r.l1_lower_bound, r.lp_l1,
            r.l1, int(r.changed.sum()) if r.changed is not None else "–", r.max_margin_upper)


@summary_table.register
def _(r: CounterfactualResult) -> SummaryTable:
    return SummaryTable(f"Counterfactual: eps={r.eps:g}, margin={r.margin:g}, {r.envelope}", _CF_HEADERS,
                        (_cf_row(r),))


@summary_table.register
def _(s: CounterfactualSet) -> SummaryTable:
    return SummaryTable(f"Counterfactuals for {len(s.pairs)} pairs", ("image",) + _CF_HEADERS,
                        tuple((int(i),) + _cf_row(r) for i, r in zip(s.indices, s.results)))


@summary_table.register
def _(r: NeuronReport) -> SummaryTable:
    rows = tuple((p.key, p.name, p.maximiser.best_test_objective, p.maximiser.objective, p.maximiser.safe_bound,
                  p.minimiser.best_test_objective, p.minimiser.objective, p.minimiser.safe_bound,
                  ", ".join(str(i) for i in p.top_indices[:4])) for p in r.neurons)
    headers = ("neuron", "name", "best test max", "maximiser", "LP upper bound", "best test min", "minimiser",
               "LP lower bound", "top images")
    cap = (f"Neuron report: {r.n_images} images, penalty {r.penalty:g}, LP {r.mode} ({r.cuts} cuts), "
           f"bounds {r.bound_method}{' + LP-tightened' if r.tightened else ''}")
    return SummaryTable(cap, headers, rows)


def _suggestion_rows(suggestions) -> tuple:
    return tuple((s.key, s.name, s.score, "" if s.runner_up is None else f"{s.runner_up[0]} ({s.runner_up[1]:.3f})")
                 for s in suggestions)


@summary_table.register
def _(s: NameSuggestion) -> SummaryTable:
    return SummaryTable("Suggested name", ("neuron", "name", "score", "runner-up"), _suggestion_rows([s]))


@summary_table.register
def _(s: Suggestions) -> SummaryTable:
    return SummaryTable(f"Suggested names for {len(s)} neurons", ("neuron", "name", "score", "runner-up"),
                        _suggestion_rows(s))


@summary_table.register
def _(t: Trace) -> SummaryTable:
    k = t.target
    rows = tuple((f"L{l}.n{j}", name, t.pre[l - 1][j], t.gate[l - 1][j], t.post[l - 1][j], t.downstream[l][k, j],
                  t.node_flow(l)[k, j])
                 for l in range(1, t.n_hidden_layers + 1) for j, name in enumerate(t.names[l - 1]))
    headers = ("neuron", "name", "a", "gate", "z", f"path weight to logit[{k}]", f"flow to logit[{k}]")
    return SummaryTable(f"Trace: logit[{k}] = {t.logits[k]:+.4f} (prediction {int(np.argmax(t.logits))})",
                        headers, rows)


def _formula_rows(formulas) -> tuple:
    return tuple((f.digit, f.n_images, f.accuracy, f.text, f.constant, f.mean_logit) for f in formulas)


_FORMULA_HEADERS = ("digit", "images", "accuracy", "formula", "constant", "mean logit")


@summary_table.register
def _(f: Formula) -> SummaryTable:
    return SummaryTable(f"Formula of digit {f.digit} (layer {f.layer})", _FORMULA_HEADERS, _formula_rows([f]))


@summary_table.register
def _(fs: Formulas) -> SummaryTable:
    return SummaryTable(f"Digit formulas ({len(fs)} digits)", _FORMULA_HEADERS, _formula_rows(fs))


@summary_table.register
def _(r: SweepResult) -> SummaryTable:
    names = r.table.names
    rows = tuple((e, *(r.table.rate(n, e).value for n in names)) for e in r.eps)
    return SummaryTable(f"Robust accuracy on {r.n_images} images (verified: cumulative ladder; attack: upper bound)",
                        ("eps", *names), rows)
