"""What the explorer asks the discovery lenses: a neuron's panel, the signatures and prototypes of
every digit, and the exact trace of the input on screen with its digit's formula.

Each public function is a :class:`~polylens.lenses.base.Payload` builder ``(session, params) -> dict``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from polylens.errors import ParameterError
from polylens.jsonio import jsonable
from polylens.lenses.base import LensOptions, option

Array = np.ndarray

__all__ = ["NeuronParams", "TraceParams", "neuron_grid", "neuron_payload", "prototypes_payload", "signatures_payload",
           "trace_grid", "trace_payload"]


def _need_images(session, what: str) -> None:
    if session.n_samples < 2:
        raise ParameterError(f"The {what} analysis needs test images; {session.data_note}")


# ---------------------------------------------------------------------------------------------
# Neurons


@dataclass(frozen=True)
class NeuronParams(LensOptions):
    where = "neuron"
    layer: int = option(1, "Hidden layer (1-based).", lo=1)
    neuron: int = option(0, "Neuron of that layer (0-based).", lo=0)


def _neuron_report(session) -> dict:
    """Every hidden neuron's profile on the test split, keyed by neuron key, each
    ``NeuronProfile.to_dict()`` plus the inputs and labels of its top and bottom test images."""
    from polylens.explorer.api import display
    from polylens.lenses.discover.neurons import neuron_report

    _need_images(session, "neuron")
    opts = session.options_for("neurons")
    rep = neuron_report(session.network, session.data.x, session.data.y, top=opts.top,
                        time_limit=session.config.time_limit)
    out = {}
    for p in rep.neurons:
        d = p.to_dict()
        for side in ("top", "bottom"):
            idx = np.asarray(d[f"{side}_indices"], dtype=np.int64)
            d[f"{side}_inputs"] = display(session.data.x[idx])
            d[f"{side}_labels"] = session.data.y[idx].tolist()
        out[p.key] = jsonable(d)
    return {"neurons": out, "settings": {"penalty": rep.penalty, "mode": rep.mode, "cuts": rep.cuts,
                                         "bound_method": rep.bound_method, "n_images": rep.n_images,
                                         "lp_solves": rep.lp_solves, "seconds": jsonable(rep.seconds)}}


def _suggestions(session) -> dict:
    """Suggested names of every hidden neuron, keyed by neuron key ({} when the input is not a 2-D grid)."""
    from polylens.lenses.discover.naming import suggest_names

    try:
        res = suggest_names(session.model, session.data.x if session.n_samples >= 2 else None)
    except ParameterError:
        return {}
    return {s.key: jsonable(s) for s in res}


def neuron_payload(session, params: Mapping[str, Any]) -> dict:
    """Everything the neuron panel shows: the name, the suggested name with its score, the incoming
    weights, and ``report`` (the neuron's profile: weight or effective map, LP-certified maximiser and
    minimiser, top and bottom test images, activation histogram per class), which is
    ``{"status": "running"}`` while the analysis of every neuron runs in the background."""
    from polylens.explorer.api import display

    layer, j = session.check_neuron(params["layer"], params["neuron"], "neuron")
    key = f"L{layer}.n{j}"
    rep = session.background("neurons", lambda: _neuron_report(session))
    report = {"status": "ready", **rep["neurons"][key], "settings": rep["settings"]} if rep["status"] == "ready" else rep
    net, model = session.network, session.model
    W = net.layers[layer - 1].W[j]
    prev, more = None, 0
    if layer > 1:  # the strongest incoming weights, by |w| (all of them for a narrow layer)
        top = np.argsort(-np.abs(W), kind="stable")[:session.config.max_nodes]
        prev = [{"key": f"L{layer - 1}.n{i}", "name": model.neuron_name(layer - 1, int(i)),
                 "weight": display(W[i])} for i in top.tolist()]
        more = int(W.shape[0] - top.shape[0])
    return {"key": key, "layer": layer, "neuron": j, "name": model.neuron_name(layer, j),
            "named": key in model.card.neuron_names, "activation": str(net.activations[layer - 1]),
            "weights": display(W), "bias": display(net.layers[layer - 1].b[j]), "inputs": prev, "inputs_more": more,
            "suggestion": _suggestions(session).get(key), "report": report}


def neuron_grid(session, grid: Sequence[float]) -> list[dict]:
    """Every hidden neuron (what a static export precomputes)."""
    return [{"layer": l, "neuron": j} for l, w in enumerate(session.network.hidden_widths, start=1) for j in range(w)]


# ---------------------------------------------------------------------------------------------
# Signatures and prototypes


def _signatures(session) -> dict:
    from polylens.explorer.api import display
    from polylens.lenses.discover.signatures import signatures

    _need_images(session, "signature")
    opts = session.options_for("signatures")
    r = signatures(session.network, session.data.x, session.data.y, eps=opts.eps, max_per_digit=opts.per_digit)
    d = r.to_dict()
    keep = ("digits", "eps", "objective", "sense", "only_correct", "mode", "cuts", "input_shape", "layer_widths",
            "n_images", "n_failed", "pixel_lower_freq", "pixel_upper_freq", "pixel_lower_binding_freq",
            "pixel_upper_binding_freq", "cut_tight_freq", "pre_bound_freq", "mean_input",
            "distinct_accuracy", "distinct_per_digit", "seconds")
    # Per layer, the neurons whose envelope tightness is drawn: all, or for a wide layer the
    # max_nodes whose tightness varies most across digits.
    show = []
    max_nodes = session.config.max_nodes
    for c in r.cut_tight_freq:  # (D, n_l, 2)
        n = c.shape[1]
        with warnings.catch_warnings():  # a digit without images has NaN rows
            warnings.simplefilter("ignore", RuntimeWarning)
            spread = np.nan_to_num(np.nanstd(c, axis=0)).sum(axis=1)
        show.append(np.arange(n).tolist() if n <= max_nodes
                    else np.sort(np.argsort(-spread, kind="stable")[:max_nodes]).tolist())
    return {"eps": opts.eps, "max_per_digit": opts.per_digit, "result": jsonable({k: d[k] for k in keep}),
            "pixel_map": display(np.stack([r.pixel_map(dg).ravel() for dg in r.digits])), "cut_show": show}


def signatures_payload(session, params: Mapping[str, Any]) -> dict:
    """Per-digit constraint signatures at the explorer's radius: how often each pixel sits at the lower
    (red) or upper (blue) end of its box at the LP optimum of the digit's logit, and how often each
    envelope side is tight. Per-image arrays are left out."""
    return _signatures(session)


def prototypes_payload(session, params: Mapping[str, Any]) -> dict:
    """Max-margin prototypes, one per digit, and the strip of each digit over growing radii."""
    from polylens.lenses.discover.prototypes import prototypes

    from polylens.lenses.discover.prototypes import prototype_sweep

    _need_images(session, "prototype")
    opts = session.options_for("prototypes")
    main = prototypes(session.network, session.data.x, session.data.y, eps=opts.eps, lam=opts.lam)
    strip = (prototype_sweep(session.network, session.data.x, session.data.y, opts.strip, (opts.lam,))
             if opts.strip else None)
    return {"result": jsonable(main), "strip": None if strip is None else jsonable(strip)}


# ---------------------------------------------------------------------------------------------
# Traces


@dataclass(frozen=True)
class TraceParams(LensOptions):
    where = "trace"
    target: int | None = option(None, "The logit to trace into (default: the prediction).", lo=0)


def formulas(session) -> dict:
    """Per-digit formulas (layer 1, current names) keyed by digit; cached until a rename."""
    from polylens.lenses.discover.trace import digit_formulas

    key = tuple(sorted(session.model.card.neuron_names.items()))
    cache = session.cache("formulas", 8)
    hit = cache.get(key)
    if hit is None:
        out = {}
        if session.n_samples >= 2:
            for f in digit_formulas(session.model, session.data.x, session.data.y):
                out[str(f.digit)] = {"digit": f.digit, "layer": f.layer, "n_images": f.n_images,
                                     "accuracy": f.accuracy, "text": f.text, "explanation": f.explanation,
                                     "constant": f.constant, "mean_logit": f.mean_logit,
                                     "terms": [t.to_dict() for t in f.terms]}
        hit = cache.put(key, jsonable(out))
    return hit


def _equation(k: int, names: Sequence[str], flow: Array, later: float, logit: float, max_terms: int = 8) -> str:
    """``logit[k] = +1.23 (Frame) - 0.45 (Spine) + 0.10 (constants) = 0.88``: the exact split of one
    logit into the flows through one layer's neurons (strongest first; the rest summed) and the
    constants after that layer."""
    order = np.argsort(-np.abs(flow), kind="stable")
    parts = []
    for i in order[:max_terms]:
        v = float(flow[i])
        parts.append(f"{'-' if v < 0 else '+'} {abs(v):.3f} ({names[i]})")
    rest = order[max_terms:]
    if rest.size:
        v = float(flow[rest].sum())
        parts.append(f"{'-' if v < 0 else '+'} {abs(v):.3f} ({rest.size} more neurons)")
    parts.append(f"{'-' if later < 0 else '+'} {abs(later):.3f} (constants)")
    text = " ".join(parts)
    text = text[2:] if text.startswith("+ ") else "-" + text[2:]
    return f"logit[{k}] = {text} = {logit:.3f}"


def trace_payload(session, params: Mapping[str, Any]) -> dict:
    """The exact decomposition of one input's logit ``target`` (default: the prediction): the flow
    through every pixel and named neuron into the logit, a diagram of the flow (same layout as the
    network diagram; edge ``c`` is the flow along it), per hidden layer the identity
    ``logit = sum of flows + constants`` as text, and the digit's average formula."""
    from polylens.explorer.api import display, flow_diagram
    from polylens.lenses.discover.trace import trace

    x, target = params["input"].x, params["target"]
    if target is not None:
        session.check_class(target, "target", "trace")
    tr = trace(session.model, x, target=target)
    k = tr.target
    cache = session.cache("trace")
    key = (x.tobytes(), k, tuple(sorted(session.model.card.neuron_names.items())))
    hit = cache.get(key)
    if hit is not None:
        return hit
    net = session.network
    H = tr.n_hidden_layers
    C = net.n_classes
    node_vals = [tr.node_flow(0)[k], *[tr.node_flow(l)[k] for l in range(1, H + 1)], tr.logits]
    mats = [tr.edge_flow(l, k) for l in range(1, H + 1)]
    last = np.zeros((C, tr.edge_flow(H + 1, k).shape[1]))
    last[k] = tr.edge_flow(H + 1, k)[0]
    mats.append(last)
    diagram = flow_diagram(node_vals, mats, [layer.W for layer in net.layers],
                           max_nodes=session.config.max_nodes, max_edges=session.config.max_edges, output_shown=[k])
    layers, equations = [], []
    for l in range(1, H + 1):
        flow, const = tr.node_flow(l)[k], tr.constant_flow(l)[k]
        later = float(tr.later_constants(l)[k])
        names = tr.names[l - 1]
        layers.append({"layer": l, "names": list(names), "keys": [f"L{l}.n{j}" for j in range(len(names))],
                       "post": display(tr.post[l - 1]), "gate": display(tr.gate[l - 1]),
                       "flow": display(flow), "constant_flow": display(const), "later_constants": display(later)})
        equations.append(_equation(k, names, flow, later, float(tr.logits[k])))
    out = {"target": k, "prediction": int(np.argmax(tr.logits)), "logit": display(tr.logits[k]),
           "logits": display(tr.logits), "pixel_flow": display(tr.node_flow(0)[k]),
           "pixel_constant": display(tr.later_constants(0)[k]),
           "pixel_total": display(tr.node_flow(0)[k].sum()), "layers": layers, "equations": equations,
           "diagram": diagram, "formula": formulas(session).get(str(k))}
    return cache.put(key, out)


def trace_grid(session, grid: Sequence[float]) -> list[dict]:
    """The prediction and every class (what a static export precomputes per sample)."""
    return [{"target": None}] + [{"target": k} for k in range(session.network.n_classes)]
