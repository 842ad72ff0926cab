"""Mechanistic traces: how every neuron and every path contributes to every logit, exactly.

Notation (as in :mod:`polylens.nn.network`): ``z_0 = x``; hidden layer l = 1..L-1 has
``a_l = W_l z_{l-1} + b_l`` and ``z_l = f_l(a_l)``; ``logits = W_L z_{L-1} + b_L``.

**Layer-wise.** ``a_l[k] = sum_i W_l[k, i] z_{l-1}[i] + b_l[k]``: the "direct" contribution of
neuron i to neuron (or logit) k is weight x activation, with the bias shown separately.

**Gates.** Every activation, of every kind, is written at the traced point as

    z = g * a + o,   g = (f(a) - f(0)) / a   (g = f'(a/2) when |a| < GATE_SMALL),   o = f(a) - g * a.

``g`` is the secant slope of f between 0 and a. For the gating activations (relu, leaky_relu,
gelu, gelu_tanh, silu, and identity), where f(a) = a * s(a), it is the gate s(a) itself
(1[a > 0], Phi(a), sigmoid(a), ...), and ``o`` is zero up to rounding; for tanh it is
tanh(a)/a (-> 1 at 0), and for sigmoid, which is not of the form a * s(a), it is
(sigmoid(a) - 1/2) / a with the explicit offset ``o`` = 1/2 (up to rounding). ``o`` is computed
as ``f(a) - g * a`` in float64, so ``g * a + o`` reproduces f(a) to rounding for every kind,
whatever g is: the decomposition never relies on a property of the activation. Gates, offsets and
the path weights below come from :mod:`polylens.nn.linearise` (``secant_gates``,
``Linearisation.path_weights``).

**Path-wise.** With the gates fixed, the network at this input is affine, and a logit is a sum
over *paths* ``source -> n_1 -> ... -> n_{L-1} -> logit`` of products of weights and gates:

* a pixel path ``x_i -> j_1 -> ... -> j_{L-1} -> k`` carries
  ``x_i W_1[j_1, i] g_1[j_1] W_2[j_2, j_1] g_2[j_2] ... W_L[k, j_{L-1}]``;
* a path that starts at hidden neuron (l, j_l) carries its *constant* ``g_l b_l + o_l``
  times the downstream weights and gates;
* the output bias ``b_L[k]`` is its own path.

These sum to the logit exactly (in real arithmetic; in float64 to ~1e-14 relative). The
*downstream weight* ``D_l[k, j]`` = sum over paths from (l, j) to logit k of the products of
weights and gates after it (``D_{L-1} = W_L``, ``D_{l-1} = D_l diag(g_l) W_l``) gives the total
flow *through* neuron (l, j) into logit k, ``D_l[k, j] z_l[j]`` (every path through it: the
pixels upstream, the constants of earlier neurons, and its own constant), and the flow along an
edge (l-1, i) -> (l, j): ``D_l[k, j] g_l[j] W_l[j, i] z_{l-1}[i]``. Flow is conserved: a
neuron's flow is the sum of its incoming edges' flows plus its own constant's, and the sum of its
outgoing edges' flows; the flows of the last hidden layer are the layer-wise contributions.

**Formulas.** :func:`digit_formulas` averages, over the test images of each digit c, the flow of
every layer-1 neuron into logit c and writes it as a readable formula, e.g.
``digit 0 ~ (++ Frame) - (- Spine)`` (see :class:`Formula` for the notation).

>>> import numpy as np
>>> from polylens.nn.model import load_model
>>> m = load_model("seed")
>>> t = trace(m, np.full(49, 0.5))
>>> bool(abs(t.node_flow(2).sum(axis=1) + t.later_constants(2) - t.logits).max() < 1e-10)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from polylens.arrays import frozen
from polylens.errors import ParameterError
from polylens.lenses.discover.naming import suggest_names
from polylens.nn.linearise import Linearisation, linearise
from polylens.nn.model import Model
from polylens.nn.network import Network, NeuronId, neuron_ids
from polylens.validation import check_input, check_inputs, check_int, check_labels, check_network

Array = np.ndarray

__all__ = ["FlowGraph", "Formula", "FormulaTerm", "Formulas", "PathContributions", "Trace", "digit_formulas",
           "trace", "STRONG_SHARE", "WEAK_SHARE"]

#: Formula strength classes, by |mean contribution| / the largest |mean contribution| of that digit:
#: at least STRONG_SHARE is strong ("++" / "--"), at least WEAK_SHARE moderate ("+" / "-"), below
#: it weak (kept in the terms, left out of the text).
STRONG_SHARE = 0.5
WEAK_SHARE = 0.1
#: paths() refuses to materialise more pixel paths than this (d * n_1 * ... * n_{L-1}).
MAX_PATHS = 5_000_000


# ---------------------------------------------------------------------------------------------
# The batched core: the linearisation of polylens.nn.linearise (gates and path weights)


def _downstream(lin: Linearisation, targets: Array) -> tuple[Array, ...]:
    """D_l (N, K, n_l) for l = 0 (the input) .. L-1: the summed path weights from every node of layer l
    into the K target logits, through the secant gates at each of the N points."""
    WL = lin.network.layers[-1].W[targets]                   # (K, n_{L-1}) = D_{L-1}
    return lin.path_weights(np.broadcast_to(WL, (len(lin.x), *WL.shape)).copy())


def _names(network: Network, model: Model | None) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(model.neuron_name(l, j) if model is not None else str(NeuronId(l, j)) for j in range(w))
                 for l, w in enumerate(network.hidden_widths, start=1))


# ---------------------------------------------------------------------------------------------
# Flow graphs


@dataclass(frozen=True, eq=False)
class FlowGraph:
    """The data of a flow figure for one target logit: nodes and edges with contribution values.

    Nodes (V of them) in layer order: the d pixels (layer 0), every hidden neuron (layer l), the
    target logit (layer L). ``node_id`` ("x[3]", "L1.n0", "logit[4]"), ``node_label`` (human
    name), ``node_layer``/``node_index`` (V,) ints, ``node_value`` (V,) the pixel value,
    post-activation or logit, ``node_flow`` (V,) the contribution to the target through all paths
    (for the logit node: the logit), ``node_constant`` (V,) the flow of the node's own constant
    (g b + o for hidden neurons; the output bias for the logit; 0 for pixels).
    Edges (E of them): ``edge_source``/``edge_target`` (E,) node positions, ``edge_flow`` (E,).
    Conservation: for every hidden node, flow = sum of incoming edge flows + constant = sum of
    outgoing edge flows; for the logit, value = sum of incoming flows + constant. Averaged graphs
    (:class:`Formula`) keep these identities (they are linear).
    """

    target: int
    node_id: tuple[str, ...]
    node_label: tuple[str, ...]
    node_layer: Array
    node_index: Array
    node_value: Array
    node_flow: Array
    node_constant: Array
    edge_source: Array
    edge_target: Array
    edge_flow: Array

    def to_dict(self) -> dict:
        nodes = [{"id": i, "label": lab, "layer": int(l), "index": int(k), "value": float(v), "flow": float(f),
                  "constant": float(c)}
                 for i, lab, l, k, v, f, c in zip(self.node_id, self.node_label, self.node_layer, self.node_index,
                                                  self.node_value, self.node_flow, self.node_constant)]
        edges = [{"source": self.node_id[s], "target": self.node_id[t], "flow": float(f)}
                 for s, t, f in zip(self.edge_source, self.edge_target, self.edge_flow)]
        return {"target": self.target, "nodes": nodes, "edges": edges}


def _flow_graph(network: Network, names, target: int, x: Array, post: Sequence[Array], logit: float,
                node_flows: Sequence[Array], constants: Sequence[Array], out_bias: float,
                edge_flows: Sequence[Array]) -> FlowGraph:
    """Assemble a FlowGraph from per-layer arrays: node_flows[l] (n_l,) for l = 0..L-1 (0 = pixels),
    constants[l-1] (n_l,) for hidden layers, edge_flows[l-1] (n_l, n_{l-1}) for l = 1..L (last: (1, n_{L-1}))."""
    widths = (network.input_dim, *network.hidden_widths)
    ids = [f"x[{i}]" for i in range(widths[0])]
    labels = list(ids)
    for l, w in enumerate(widths[1:], start=1):
        ids += [str(NeuronId(l, j)) for j in range(w)]
        labels += list(names[l - 1])
    ids.append(f"logit[{target}]")
    labels.append(f"logit[{target}]")
    layer = np.concatenate([np.full(w, l) for l, w in enumerate(widths)] + [np.array([len(widths)])])
    index = np.concatenate([np.arange(w) for w in widths] + [np.array([target])])
    value = np.concatenate([x, *post, [logit]])
    flow = np.concatenate([*node_flows, [logit]])
    const = np.concatenate([np.zeros(widths[0]), *constants, [out_bias]])
    starts = np.concatenate([[0], np.cumsum(widths)])
    src, dst, fl = [], [], []
    for l, E in enumerate(edge_flows, start=1):
        n_out, n_in = E.shape
        jj, ii = np.meshgrid(np.arange(n_out), np.arange(n_in), indexing="ij")
        src.append(starts[l - 1] + ii.ravel())
        dst.append(starts[l] + jj.ravel())
        fl.append(E.ravel())
    return FlowGraph(target, tuple(ids), tuple(labels), layer.astype(np.int64), index.astype(np.int64), frozen(value),
                     frozen(flow), frozen(const), np.concatenate(src).astype(np.int64),
                     np.concatenate(dst).astype(np.int64), frozen(np.concatenate(fl)))


# ---------------------------------------------------------------------------------------------
# One trace


@dataclass(frozen=True, eq=False)
class PathContributions:
    """Every path into logit ``target`` (see the module docstring); all arrays sum to the logit.

    ``pixel`` (d, n_1, ..., n_{L-1}): the path x_i -> j_1 -> ... -> j_{L-1} -> logit.
    ``constant[l-1]`` (n_l, ..., n_{L-1}): paths starting at hidden neuron (l, j_l) with its
    constant g_l b_l + o_l. ``out_bias``: b_L[target].
    """

    target: int
    pixel: Array
    constant: tuple[Array, ...]
    out_bias: float

    def total(self) -> float:
        """The sum of every path (the logit), summed with math.fsum."""
        return math.fsum([*self.pixel.ravel(), *np.concatenate([c.ravel() for c in self.constant] or [np.zeros(0)]),
                          self.out_bias])

    def through(self, layer: int) -> Array:
        """Flow through each neuron of hidden layer ``layer`` (1-based): the sum of every path that
        passes through it, shape (n_layer,)."""
        L = len(self.constant)
        if not 1 <= layer <= L:
            raise ParameterError(f"The 'layer' parameter of through must be an int in [1, {L}]. Got {layer!r} instead.")
        # pixel paths: axis layer of pixel (axis 0 is the pixel); constant paths from layers <= layer.
        keep = layer
        out = self.pixel.sum(axis=tuple(a for a in range(self.pixel.ndim) if a != keep))
        for s, c in enumerate(self.constant, start=1):
            if s <= layer:
                out = out + c.sum(axis=tuple(a for a in range(c.ndim) if a != layer - s))
        return out


@dataclass(frozen=True, eq=False)
class Trace:
    """The complete decomposition of one input's logits (see the module docstring).

    Shapes: d inputs, n_l neurons in hidden layer l (1-based, l = 1..L-1), C logits.
    ``x`` (d,); ``pre[l-1]``, ``post[l-1]``, ``gate[l-1]``, ``offset[l-1]`` (n_l,);
    ``logits`` (C,); ``direct[l-1]`` (n_l, n_{l-1}) = W_l * z_{l-1} (layer-wise contributions;
    ``direct[L-1]`` is (C, n_{L-1}) into the logits); ``bias[l-1]`` = b_l;
    ``downstream[l]`` (C, n_l) for l = 0 (the input) .. L-1: D_l, the summed path weight from
    (l, j) to each logit. ``target``: the logit the flow views default to (the prediction unless
    given). ``names[l-1]``: the neurons' names (the model card's, else ``L{l}.n{j}``).

    Guarantees (tested to 1e-10): ``direct[l-1].sum(1) + bias[l-1]`` = pre-activations (logits
    for the last layer); for every layer l = 0..L-1,
    ``node_flow(l).sum(1) + later_constants(l)`` = logits; path contributions sum to the logit.
    """

    x: Array
    pre: tuple[Array, ...]
    post: tuple[Array, ...]
    gate: tuple[Array, ...]
    offset: tuple[Array, ...]
    logits: Array
    direct: tuple[Array, ...]
    bias: tuple[Array, ...]
    downstream: tuple[Array, ...]
    target: int
    names: tuple[tuple[str, ...], ...]
    network: Network

    @property
    def n_hidden_layers(self) -> int:
        return len(self.pre)

    def _check_layer(self, layer: int, lo: int, where: str) -> int:
        hi = self.n_hidden_layers
        return check_int(layer, "layer", where, lo, hi)

    def node_value(self, layer: int) -> Array:
        """x for layer 0, z_l for hidden layer l."""
        layer = self._check_layer(layer, 0, "node_value")
        return self.x if layer == 0 else self.post[layer - 1]

    def node_flow(self, layer: int) -> Array:
        """(C, n_l): D_l * z_l, the flow through each node of layer ``layer`` (0 = pixels) into each logit."""
        layer = self._check_layer(layer, 0, "node_flow")
        return self.downstream[layer] * self.node_value(layer)[None, :]

    def constant_flow(self, layer: int) -> Array:
        """(C, n_l): D_l * (g_l b_l + o_l), the flow of hidden layer ``layer``'s own constants."""
        layer = self._check_layer(layer, 1, "constant_flow")
        c = self.gate[layer - 1] * self.bias[layer - 1] + self.offset[layer - 1]
        return self.downstream[layer] * c[None, :]

    def later_constants(self, layer: int) -> Array:
        """(C,): the flow of every constant after layer ``layer`` (hidden layers layer+1.., and b_L),
        so that ``node_flow(layer).sum(1) + later_constants(layer)`` equals the logits."""
        layer = self._check_layer(layer, 0, "later_constants")
        out = self.bias[-1].copy()
        for l in range(layer + 1, self.n_hidden_layers + 1):
            out = out + self.constant_flow(l).sum(axis=1)
        return out

    def edge_flow(self, layer: int, k: int | None = None) -> Array:
        """Flow into logit ``k`` (default ``target``) along the edges of affine layer ``layer``
        (1..L): (n_layer, n_{layer-1}) for a hidden layer, (1, n_{L-1}) for the output layer."""
        L = self.n_hidden_layers + 1
        layer = check_int(layer, "layer", "edge_flow", 1, L)
        k = self._target(k)
        z_prev = self.node_value(layer - 1)
        if layer == L:
            return self.direct[-1][k][None, :].copy()
        W = self.network.layers[layer - 1].W
        return (self.downstream[layer][k] * self.gate[layer - 1])[:, None] * W * z_prev[None, :]

    def _target(self, k: int | None) -> int:
        return self.target if k is None else check_int(k, "k", "Trace", 0, len(self.logits) - 1)

    def paths(self, k: int | None = None) -> PathContributions:
        """Every path into logit ``k`` (default ``target``), materialised. ParameterError when there
        are more than :data:`MAX_PATHS` pixel paths (use node_flow / edge_flow instead)."""
        k = self._target(k)
        net = self.network
        widths = net.hidden_widths
        n = net.input_dim * int(np.prod(widths, dtype=np.int64)) if widths else net.input_dim
        if n > MAX_PATHS:
            raise ParameterError(f"This network has {n} pixel paths per logit, more than paths() materialises "
                                 f"({MAX_PATHS}); use node_flow() and edge_flow(), which aggregate them.")
        H = self.n_hidden_layers
        wout = net.layers[-1].W[k]
        if H == 0:
            return PathContributions(k, frozen(self.x * wout), (), float(self.bias[-1][k]))

        def to_logit(cur: Array, layer: int) -> Array:
            """cur (..., n_layer): gated values at hidden layer ``layer``; extend every path to logit k."""
            for m in range(layer, H):  # step from hidden layer m to m+1 through W_{m+1}, gate g_{m+1}
                cur = cur[..., None] * net.layers[m].W.T * self.gate[m]
            return cur * wout

        pixel = to_logit(self.x[:, None] * net.layers[0].W.T * self.gate[0], 1)   # (d, n_1, ..., n_H)
        consts = tuple(frozen(to_logit(self.gate[l - 1] * self.bias[l - 1] + self.offset[l - 1], l))
                       for l in range(1, H + 1))
        return PathContributions(k, frozen(pixel), consts, float(self.bias[-1][k]))

    def flow(self, k: int | None = None) -> FlowGraph:
        """The flow-figure data for logit ``k`` (default ``target``)."""
        k = self._target(k)
        L = self.n_hidden_layers
        node_flows = [self.node_flow(l)[k] for l in range(L + 1)]
        consts = [self.constant_flow(l)[k] for l in range(1, L + 1)]
        edges = [self.edge_flow(l, k) for l in range(1, L + 2)]
        return _flow_graph(self.network, self.names, k, self.x, self.post, float(self.logits[k]), node_flows,
                           consts, float(self.bias[-1][k]), edges)

    # -- presentation --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        k = self.target
        return {
            "target": k,
            "x": self.x.tolist(),
            "logits": self.logits.tolist(),
            "layers": [{"layer": l, "names": list(self.names[l - 1]), "pre": self.pre[l - 1].tolist(),
                        "post": self.post[l - 1].tolist(), "gate": self.gate[l - 1].tolist(),
                        "offset": self.offset[l - 1].tolist(), "bias": self.bias[l - 1].tolist(),
                        "direct": self.direct[l - 1].tolist(), "downstream": self.downstream[l].tolist(),
                        "flow": self.node_flow(l).tolist(), "constant_flow": self.constant_flow(l).tolist()}
                       for l in range(1, self.n_hidden_layers + 1)],
            "output": {"direct": self.direct[-1].tolist(), "bias": self.bias[-1].tolist()},
            "pixel_flow": self.node_flow(0).tolist(),
        }

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


def trace(model_or_network: Model | Network, x: Array, *, target: int | None = None) -> Trace:
    """Decompose the logits of one input ``x`` (d,) into neuron, edge and path contributions.

    ``target``: the logit the flow views default to (default: the predicted class). Names come from
    the model card (``L{l}.n{j}`` for a bare Network or an unnamed neuron).
    """
    network, model = check_network(model_or_network, "trace", "model_or_network")
    x = check_input(x, network.input_dim, "trace", unit_box=False)
    C = network.n_classes
    lin = linearise(network, x[None, :])
    D = _downstream(lin, np.arange(C))
    zs = (x, *(p[0] for p in lin.post))
    direct = tuple(layer.W * z[None, :] for layer, z in zip(network.layers, zs))
    logits = lin.logits[0]
    tgt = int(np.argmax(logits)) if target is None else check_int(target, "target", "trace", 0, C - 1)
    ro = frozen
    return Trace(ro(x), tuple(ro(p[0]) for p in lin.pre), tuple(ro(p[0]) for p in lin.post),
                 tuple(ro(g[0]) for g in lin.gates), tuple(ro(o[0]) for o in lin.offsets), ro(logits),
                 tuple(ro(d) for d in direct), tuple(ro(layer.b) for layer in network.layers),
                 tuple(ro(d[0]) for d in D), tgt, _names(network, model), network)


# ---------------------------------------------------------------------------------------------
# Digit formulas


@dataclass(frozen=True)
class FormulaTerm:
    """One neuron's average contribution to a digit's logit, over the digit's images.

    ``contribution``: mean over the images of D_l[c, j] z_l[j] (the flow through the neuron into
    logit c, every path). ``activation``/``activation_std``: mean and std of z_l[j].
    ``path_weight`` = contribution / activation: the activation-weighted mean of the summed path
    weight D_l[c, j], so that path_weight * activation == contribution (when the mean activation
    is exactly 0 it is the plain mean instead); ``mean_path_weight``: the plain mean of D_l[c, j].
    ``share`` = |contribution| / the largest |contribution| among the digit's terms; ``strength``:
    "strong" (share >= STRONG_SHARE), "moderate" (>= WEAK_SHARE) or "weak". ``mark``: the sign of
    the mean activation, doubled when strong ("++", "+", "-", "--"; "" when weak).
    ``sign``: +1 / -1, the sign of path_weight (the operator written before the term).
    """

    layer: int
    j: int
    name: str
    contribution: float
    activation: float
    activation_std: float
    path_weight: float
    mean_path_weight: float
    share: float
    strength: str
    mark: str
    sign: int

    @property
    def key(self) -> str:
        return f"L{self.layer}.n{self.j}"

    def to_dict(self) -> dict:
        return {"key": self.key, "layer": self.layer, "j": self.j, "name": self.name,
                "contribution": self.contribution, "activation": self.activation,
                "activation_std": self.activation_std, "path_weight": self.path_weight,
                "mean_path_weight": self.mean_path_weight, "share": self.share, "strength": self.strength,
                "mark": self.mark, "sign": self.sign}


@dataclass(frozen=True, eq=False)
class Formula:
    """How the named neurons of one hidden layer make digit ``digit``'s logit, on average.

    ``text``: e.g. ``digit 0 ~ (++ Frame) - (- Spine)``. Each term is ``(mark name)`` preceded by
    the sign of its path weight; the mark is the sign of the neuron's mean activation on the digit,
    doubled for a strong term. So ``+ (++ Frame)``: Frame is clearly on and pushes the logit up;
    ``- (- Spine)``: Spine is negative on the digit and its paths have negative weight, so it too
    pushes the logit up. Weak terms are left out of the text but kept in ``terms`` (sorted by
    |contribution|, strongest first). ``constant``: the mean flow of everything that is not a
    neuron of this layer (biases and offsets of later layers, the output bias), so that
    ``sum(t.contribution for t in terms) + constant == mean_logit`` (exactly, up to rounding).
    ``flow``: the :class:`FlowGraph` averaged over the digit's images (for a flow figure).
    ``n_images``: how many images were averaged; ``accuracy``: the network's accuracy on them.
    """

    digit: int
    layer: int
    n_images: int
    accuracy: float
    terms: tuple[FormulaTerm, ...]
    constant: float
    mean_logit: float
    text: str
    explanation: str
    flow: FlowGraph

    def to_dict(self) -> dict:
        return {"digit": self.digit, "layer": self.layer, "n_images": self.n_images, "accuracy": self.accuracy,
                "terms": [t.to_dict() for t in self.terms], "constant": self.constant, "mean_logit": self.mean_logit,
                "text": self.text, "explanation": self.explanation, "flow": self.flow.to_dict()}

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


class Formulas(list):
    """A list of :class:`Formula`, one per digit, that renders as a table in Jupyter."""

    def to_dict(self) -> list[dict]:
        return [f.to_dict() for f in self]

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


def _strength(share: float) -> str:
    return "strong" if share >= STRONG_SHARE else "moderate" if share >= WEAK_SHARE else "weak"


def _formula_text(digit: int, terms: Sequence[FormulaTerm]) -> str:
    shown = [t for t in terms if t.strength != "weak"]
    parts = []
    for i, t in enumerate(shown):
        piece = f"({t.mark} {t.name})"
        op = "+" if t.sign >= 0 else "-"
        parts.append(("- " if op == "-" else "") + piece if i == 0 else f"{op} {piece}")
    return f"digit {digit} ~ " + (" ".join(parts) if parts else "(no neuron contributes)")


def _explanation(digit: int, layer: int, terms: Sequence[FormulaTerm], constant: float, mean_logit: float,
                 n: int) -> str:
    lines = [
        f"Averaged over {n} test images of digit {digit}, the logit of {digit} (mean {mean_logit:+.3f}) is the sum "
        f"of the flows of the layer-{layer} neurons through every path (weight x activation, with the gates of later "
        f"neurons at each image) plus a constant {constant:+.3f} (later biases and the output bias).",
        "Each term is written sign(path weight) (mark name): the mark is the sign of the neuron's mean activation "
        f"on this digit, doubled ('++' / '--') when the term carries at least {STRONG_SHARE:.0%} of the largest term's "
        f"|contribution|, single ('+' / '-') from {WEAK_SHARE:.0%}, and the term is left out below that. A term's "
        "contribution is path weight x activation, so '+ (+ X)' and '- (- X)' raise the logit, '+ (- X)' and "
        "'- (+ X)' lower it.",
    ]
    for t in terms:
        lines.append(f"{t.name} ({t.key}): mean activation {t.activation:+.3f} (std {t.activation_std:.3f}), "
                     f"path weight {t.path_weight:+.3f}, contribution {t.contribution:+.3f} "
                     f"({t.share:.0%} of the largest, {t.strength}).")
    return "\n".join(lines)


def digit_formulas(model_or_network: Model | Network, x: Array, y: Array, *, layer: int = 1,
                   names: Mapping[str, str] | None = None) -> Formulas:
    """One :class:`Formula` per class present in ``y``: the average flow of each neuron of hidden
    layer ``layer`` (default 1) into that class's logit, over the images ``x`` (N, d) labelled
    ``y`` (N,) with it.

    Names: ``names`` (``{"L1.n0": "Frame"}``) where given, else the model card's, else the
    suggestions of :func:`polylens.lenses.discover.naming.suggest_names` (computed with ``x``; only for
    inputs laid out on a 2-D grid of at least 3x3), else the key ``L{l}.n{j}``.
    """
    where = "digit_formulas"
    network, model = check_network(model_or_network, where, "model_or_network")
    if np.ndim(x) != 2:
        raise ParameterError(f"The 'x' parameter of {where} must be an array of shape (N, {network.input_dim}) "
                             f"with N >= 1. Got shape {np.shape(x)} instead.")
    x = check_inputs(x, network.input_dim, where, unit_box=False, min_rows=1)
    y = check_labels(y, len(x), network.n_classes, where)
    H = network.n_hidden_layers
    if H == 0:
        raise ParameterError("digit_formulas needs a network with at least one hidden layer.")
    layer = check_int(layer, "layer", "digit_formulas", 1, H)
    given = dict(names or {})
    card = model.card.neuron_names if model is not None else {}
    keys = [str(n) for n in neuron_ids(network)]
    sug: dict[str, str] = {}
    grid = network.input_shape
    if any(k not in given and k not in card for k in keys) and len(grid) == 2 and min(grid) >= 3:
        sug = suggest_names(model_or_network, x if len(x) >= 2 else None).as_names()
    final = {k: given.get(k, card.get(k, sug.get(k, k))) for k in keys}
    all_names = tuple(tuple(final[str(NeuronId(l, j))] for j in range(w))
                      for l, w in enumerate(network.hidden_widths, start=1))

    out = Formulas()
    for c in np.unique(y):
        c = int(c)
        Xc = x[y == c]
        n = len(Xc)
        lin = linearise(network, Xc)
        Dc = [D[:, 0, :] for D in _downstream(lin, np.array([c]))]   # (n, n_l) for l = 0..H
        zs = (Xc, *lin.post)
        consts = [Dc[l] * (lin.gates[l - 1] * network.layers[l - 1].b + lin.offsets[l - 1]) for l in range(1, H + 1)]
        flows = [(Dc[l] * zs[l]).mean(axis=0) for l in range(H + 1)]
        const_means = [cm.mean(axis=0) for cm in consts]
        contrib = flows[layer]
        z = lin.post[layer - 1]
        zbar, zstd = z.mean(axis=0), z.std(axis=0)
        dbar = Dc[layer].mean(axis=0)
        path_w = np.where(zbar != 0, contrib / np.where(zbar != 0, zbar, 1.0), dbar)
        constant = float(network.layers[-1].b[c] + sum(cm.sum() for cm in const_means[layer:]))
        mean_logit = float(lin.logits[:, c].mean())
        big = float(np.abs(contrib).max())
        terms = []
        for j in range(len(contrib)):
            share = float(abs(contrib[j]) / big) if big > 0 else 0.0
            strength = _strength(share)
            mark = "" if strength == "weak" else ("+" if zbar[j] >= 0 else "-") * (2 if strength == "strong" else 1)
            terms.append(FormulaTerm(layer, j, all_names[layer - 1][j], float(contrib[j]), float(zbar[j]),
                                     float(zstd[j]), float(path_w[j]), float(dbar[j]), share, strength, mark,
                                     1 if path_w[j] >= 0 else -1))
        terms.sort(key=lambda t: -abs(t.contribution))
        # Averaged flow graph.
        edges = []
        for l in range(1, H + 1):
            Wl = network.layers[l - 1].W
            edges.append(Wl * np.einsum("nj,ni->ji", Dc[l] * lin.gates[l - 1], zs[l - 1]) / n)
        edges.append((network.layers[-1].W[c] * zs[H].mean(axis=0))[None, :])
        graph = _flow_graph(network, all_names, c, Xc.mean(axis=0), [p.mean(axis=0) for p in lin.post], mean_logit,
                            flows, const_means, float(network.layers[-1].b[c]), edges)
        acc = float(np.mean(np.argmax(lin.logits, axis=1) == c))
        out.append(Formula(c, layer, n, acc, tuple(terms), constant, mean_logit, _formula_text(c, terms),
                           _explanation(c, layer, terms, constant, mean_logit, n), graph))
    return out
