"""Suggested names for hidden neurons: layer 1 by geometric templates, deeper layers by composition.

**Layer 1.** A first-layer neuron's weight row, laid out on the input grid (7x7 for the seed),
is compared with a small library of geometric templates (:func:`templates`): the outer
``Frame``, an inner ``Ring`` (the loop of a 0), a centre ``Dot``, the vertical ``Spine`` and the
horizontal ``Belt`` through the centre, the two diagonals ``Slash`` (/) and ``Backslash`` (\\),
the four halves and the four quadrants. The score of a template is the cosine similarity of the
zero-mean, unit-norm weight map and the zero-mean, unit-norm template, i.e. their Pearson
correlation r in [-1, 1].

Sign convention: r > 0 means the neuron's pre-activation *rises with ink* on the template's
pixels (relative to the rest of the grid) and the name is the template's (``Frame``); r < 0 means
it rises with *blank* there (falls with ink) and the name is ``anti-`` + template
(``anti-Frame``). Every template is a candidate with both signs; the suggestion is the candidate
with the largest signed score ``|r|`` (on an exact tie the positive name wins). On a 7x7 grid no
two templates are exact negations of each other, so a map equal to ``-T`` is named ``anti-T``.

``weighting="data"`` first multiplies each weight by the standard deviation of its pixel over the
given images: pixels that are blank in every image (the border of 7x7 MNIST) then weigh nothing,
and the map shows how much each pixel actually moves the neuron on real digits.
``weighting="weights"`` scores the raw weight rows. The default, ``"auto"``, is ``"data"`` whenever
images are given: on the seed network the raw rows are dominated by large weights on border pixels
that are blank in nearly every image (nothing in training pushes them down), so raw-weight names
described weights no digit ever exercises.

**Deeper layers.** Neuron j of layer l >= 2 is described through the names of layer l-1 and the
signs of its incoming weights, strongest first: ``+Frame -Spine``. Each incoming weight is scaled
by the typical size of its source (the standard deviation of z_{l-1}[i] over the images when data
is given, else the width of its exact range over the input box [0, 1]^d); the terms whose scaled
magnitude is at least :data:`TERM_FRACTION` of the largest are listed (at most
:data:`MAX_TERMS`). Its score is the share of the total scaled magnitude the listed terms carry.

Names live in the model card under ``"L{layer}.n{j}"`` keys (:func:`apply_names`,
:func:`name_model`); saving goes through :func:`polylens.nn.model.save_card`.

>>> from polylens.nn.model import load_model
>>> m = name_model(load_model("seed"))
>>> sorted(m.card.neuron_names)[:2]
['L1.n0', 'L1.n1']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Mapping

import numpy as np

from polylens.arrays import frozen
from polylens.errors import ParameterError
from polylens.nn.model import Model, neuron_keys
from polylens.nn.network import Network, NeuronId
from polylens.validation import check_enum, check_inputs, check_network

Array = np.ndarray

__all__ = ["NameSuggestion", "Suggestions", "Template", "Weighting", "apply_names", "name_model", "score_map",
           "suggest_names", "templates"]

#: A deeper neuron's description lists the incoming terms at least this fraction of the strongest.
TERM_FRACTION = 0.3
#: ... and at most this many of them.
MAX_TERMS = 3
#: Prefix of the name of a negatively matching template.
ANTI = "anti-"


class Weighting(str, Enum):
    """How a layer-1 weight row becomes the map that is scored (see the module docstring)."""

    WEIGHTS = "weights"
    DATA = "data"
    AUTO = "auto"  # data when images are given, else weights


# ---------------------------------------------------------------------------------------------
# Templates


@dataclass(frozen=True, eq=False)
class Template:
    """A named 0/1 mask on the input grid; ``mask`` has shape ``input_shape`` (H, W)."""

    name: str
    mask: Array
    description: str


def templates(shape: tuple[int, ...]) -> tuple[Template, ...]:
    """The geometric template library on an (H, W) grid, H, W >= 3.

    Coordinates are normalised so the centre is 0 and the outermost pixels are at +-1
    (``u = (c - cx) / cx``, ``v = (r - cy) / cy``); ``rho = max(|u|, |v|)`` is the Chebyshev
    radius. Frame: rho = 1. Ring: 0.45 <= rho <= 0.8 (on 7x7 the square of side 5 around the
    centre). Dot: rho <= 0.35 (the central 3x3 on 7x7). Spine / Belt: the centre column / row,
    |u| (|v|) < 0.5/cx + 1/7 (one pixel wide on 7x7, four on 28x28). Slash / Backslash: pixels
    within 0.6 of the diagonal, in units of the grid step. Halves and quadrants exclude the
    middle row / column of an odd grid.
    """
    if len(shape) != 2 or min(shape) < 3:
        raise ParameterError(f"Templates need a 2-D input grid of at least 3x3; got input shape {tuple(shape)}.")
    H, W = int(shape[0]), int(shape[1])
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    r, c = np.mgrid[0:H, 0:W].astype(np.float64)
    v, u = (r - cy) / cy, (c - cx) / cx
    rho = np.maximum(np.abs(u), np.abs(v))
    # Distance to the diagonals in grid steps (the diagonal joins the corner pixel centres).
    t_back = r / (H - 1) - c / (W - 1)          # 0 on the "\" diagonal
    t_slash = r / (H - 1) + c / (W - 1) - 1.0   # 0 on the "/" diagonal
    step = 1.0 / max(H - 1, W - 1)
    top, bottom, left, right = v < -1e-9, v > 1e-9, u < -1e-9, u > 1e-9
    spec = [
        ("Frame", rho > 1 - 1e-9, "outer ring: the border pixels"),
        ("Ring", (rho >= 0.45) & (rho <= 0.8), "inner ring around the centre (the loop of a 0)"),
        ("Dot", rho <= 0.35, "centre blob"),
        ("Spine", np.abs(u) < 0.5 / cx + 1 / 7, "vertical stroke through the centre"),
        ("Belt", np.abs(v) < 0.5 / cy + 1 / 7, "horizontal stroke through the centre"),
        ("Slash", np.abs(t_slash) < 0.6 * step * 1.0001, "rising diagonal, bottom-left to top-right (/)"),
        ("Backslash", np.abs(t_back) < 0.6 * step * 1.0001, "falling diagonal, top-left to bottom-right (\\)"),
        ("Top", top, "top half"),
        ("Bottom", bottom, "bottom half"),
        ("Left", left, "left half"),
        ("Right", right, "right half"),
        ("Top-left", top & left, "top-left quadrant"),
        ("Top-right", top & right, "top-right quadrant"),
        ("Bottom-left", bottom & left, "bottom-left quadrant"),
        ("Bottom-right", bottom & right, "bottom-right quadrant"),
    ]
    out = []
    for name, mask, text in spec:
        out.append(Template(name, frozen(mask), text))
    return tuple(out)


def _unit(maps: Array) -> Array:
    """Zero-mean, unit-norm rows of ``maps`` (k, p); constant rows become zero."""
    z = maps - maps.mean(axis=1, keepdims=True)
    n = np.linalg.norm(z, axis=1, keepdims=True)
    return np.divide(z, n, out=np.zeros_like(z), where=n > 0)


def score_map(weight_map: Array, library: Iterable[Template]) -> dict[str, float]:
    """Signed score (Pearson correlation in [-1, 1]) of one map against every template, by name.

    ``weight_map`` must have the templates' shape. A constant map scores 0 everywhere.
    """
    lib = tuple(library)
    wm = np.asarray(weight_map, dtype=np.float64)
    if not lib or wm.shape != lib[0].mask.shape:
        raise ParameterError(f"score_map needs a map of the templates' shape; got {wm.shape}.")
    T = _unit(np.stack([t.mask.ravel() for t in lib]))
    r = T @ _unit(wm.ravel()[None, :])[0]
    return {t.name: float(np.clip(v, -1.0, 1.0)) for t, v in zip(lib, r)}


# ---------------------------------------------------------------------------------------------
# Suggestions


@dataclass(frozen=True)
class NameSuggestion:
    """A suggested name for hidden neuron ``j`` (0-based) of hidden layer ``layer`` (1-based).

    ``name``: for layer 1 a template name or ``anti-`` + template; for deeper layers a
    composition of the previous layer's names (``+Frame -Spine``). ``score`` in [0, 1]: the
    |correlation| of the chosen template (layer 1) or the share of the incoming scaled weight the
    listed terms carry (deeper). ``sign``: +1 / -1, the sign of the correlation (layer 1) or of the
    strongest term. ``runner_up``: (name, score) of the best candidate built from a different
    template (layer 1) or the strongest term left out (deeper), or None. ``scores``: layer 1:
    signed correlation per template; deeper: signed scaled weight per previous-layer name.
    ``weighting``: how the map was formed (layer 1; "" for deeper layers).
    """

    layer: int
    j: int
    name: str
    score: float
    sign: int
    runner_up: tuple[str, float] | None
    scores: dict[str, float] = field(default_factory=dict)
    weighting: str = ""

    @property
    def neuron_id(self) -> NeuronId:
        return NeuronId(self.layer, self.j)

    @property
    def key(self) -> str:
        return str(self.neuron_id)

    def to_dict(self) -> dict:
        return {"key": self.key, "layer": self.layer, "j": self.j, "name": self.name, "score": self.score,
                "sign": self.sign, "runner_up": None if self.runner_up is None else list(self.runner_up),
                "scores": dict(self.scores), "weighting": self.weighting}

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


class Suggestions(tuple):
    """A tuple of :class:`NameSuggestion` that renders as a table in Jupyter."""

    def to_dict(self) -> list[dict]:
        return [s.to_dict() for s in self]

    def as_names(self) -> dict[str, str]:
        """``{"L1.n0": name, ...}`` for :func:`apply_names`."""
        return {s.key: s.name for s in self}

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


def _layer1(maps: Array, lib: tuple[Template, ...], weighting: str) -> list[NameSuggestion]:
    """Suggestions for layer-1 maps (n, H, W)."""
    T = _unit(np.stack([t.mask.ravel() for t in lib]))       # (k, p)
    R = np.clip(_unit(maps.reshape(len(maps), -1)) @ T.T, -1.0, 1.0)  # (n, k) signed correlations
    out = []
    for j, r in enumerate(R):
        # Candidates: (score, prefer-positive, template index, sign); best first.
        cands = sorted(((abs(v), v >= 0, i, 1 if v >= 0 else -1) for i, v in enumerate(r)), reverse=True)
        score, _, i, sign = cands[0]
        name = lib[i].name if sign > 0 else ANTI + lib[i].name
        ru = None
        if len(cands) > 1:
            s2, _, i2, sg2 = cands[1]
            ru = (lib[i2].name if sg2 > 0 else ANTI + lib[i2].name, float(s2))
        out.append(NameSuggestion(1, j, name, float(score), int(sign), ru,
                                  {t.name: float(v) for t, v in zip(lib, r)}, weighting))
    return out


def _compound(name: str) -> str:
    return f"({name})" if " " in name else name


def _deeper(layer: int, W: Array, scale: Array, prev_names: list[str]) -> list[NameSuggestion]:
    """Suggestions for hidden layer ``layer`` >= 2 from its weights W (n, n_prev) and source scales."""
    E = W * scale[None, :]  # signed scaled weights
    out = []
    for j, e in enumerate(E):
        mag = np.abs(e)
        total = float(mag.sum())
        order = np.argsort(-mag, kind="stable")
        keep = [i for i in order[:MAX_TERMS] if mag[i] >= TERM_FRACTION * mag[order[0]] and mag[i] > 0]
        if not keep:  # all-zero weights
            out.append(NameSuggestion(layer, j, "constant", 0.0, 1, None,
                                      {n: 0.0 for n in prev_names}))
            continue
        name = " ".join(f"{'+' if e[i] >= 0 else '-'}{_compound(prev_names[i])}" for i in keep)
        rest = [i for i in order if i not in keep]
        ru = None
        if rest and mag[rest[0]] > 0:
            i = rest[0]
            ru = (f"{'+' if e[i] >= 0 else '-'}{_compound(prev_names[i])}", float(mag[i] / total))
        scores: dict[str, float] = {}
        for i, n in enumerate(prev_names):  # duplicate names: keep them apart by key
            scores[n if n not in scores else f"{n} [{NeuronId(layer - 1, i)}]"] = float(e[i])
        out.append(NameSuggestion(layer, j, name, float(mag[keep].sum() / total), 1 if e[keep[0]] >= 0 else -1, ru,
                                  scores))
    return out


def _source_scales(network: Network, x: Array | None) -> list[Array]:
    """Typical size of every hidden layer's post-activations: std over x, or the width of the
    exact image of the pre-activation bounds over [0, 1]^d (CROWN) when x is None."""
    if x is not None:
        return [z.std(axis=0) for z in network.forward(x).post]
    from polylens.bounds import compute_bounds

    d = network.input_dim
    b = compute_bounds(network, np.zeros((1, d)), np.ones((1, d)), "crown")
    out = []
    for act, L, U in zip(network.activations, b.lower, b.upper):
        lo, hi = act.image(L[0], U[0])
        out.append(hi - lo)
    return out


def _suggest(network: Network, fixed: Mapping[str, str], x: Array | None,
             weighting: Weighting | str) -> list[NameSuggestion]:
    """Layer by layer; deeper descriptions use ``fixed`` names where given, else the suggestion."""
    weighting = _check_weighting(weighting, x)
    shape = network.input_shape
    if len(shape) != 2:
        raise ParameterError(f"Layer-1 names need a 2-D input shape (H, W); this network's input shape is {shape}.")
    W1 = network.layers[0].W
    maps = W1 * x.std(axis=0)[None, :] if weighting is Weighting.DATA else W1.copy()
    out = _layer1(maps.reshape(-1, *shape), templates(shape), weighting.value)
    scales = _source_scales(network, x) if network.n_hidden_layers > 1 else []
    prev = [fixed.get(s.key, s.name) for s in out]
    for layer in range(2, network.n_hidden_layers + 1):
        sug = _deeper(layer, network.layers[layer - 1].W, scales[layer - 2], prev)
        out += sug
        prev = [fixed.get(s.key, s.name) for s in sug]
    return out


def _check_weighting(weighting: Weighting | str, x: Array | None) -> Weighting:
    weighting = check_enum(weighting, Weighting, "weighting", "suggest_names")
    if weighting is Weighting.AUTO:
        weighting = Weighting.WEIGHTS if x is None else Weighting.DATA
    if weighting is Weighting.DATA and x is None:
        raise ParameterError("weighting='data' needs images: pass x (N, d).")
    return weighting


def suggest_names(model_or_network: Model | Network, x: Array | None = None, *,
                  weighting: Weighting | str = "auto") -> Suggestions:
    """A suggested name for every hidden neuron, layer 1 first (see the module docstring).

    ``x`` (N, d): optional images; when given, deeper layers scale their incoming weights by the
    standard deviation of each source neuron over x, and ``weighting="data"`` becomes possible.
    Deeper layers are described through the previous layer's *card* names where the model has
    them, otherwise through the previous layer's suggestions.

    Returns a :class:`Suggestions` tuple (one :class:`NameSuggestion` per hidden neuron, in
    :func:`polylens.nn.model.neuron_keys` order).
    """
    network, model = check_network(model_or_network, "suggest_names", "model_or_network")
    # Images, when given, need N >= 2: deeper names scale weights by a standard deviation over them.
    x = None if x is None else check_inputs(x, network.input_dim, "suggest_names", unit_box=False, min_rows=2)
    fixed = model.card.neuron_names if model is not None else {}
    return Suggestions(_suggest(network, fixed, x, weighting))


def apply_names(model: Model, names: Mapping[str, str] | Iterable[NameSuggestion]) -> Model:
    """A copy of ``model`` whose card carries ``names`` (``{"L1.n0": "Frame", ...}`` or suggestions),
    merged over the names it has (an empty string removes one). ParameterError for unknown keys."""
    if not isinstance(model, Model):
        raise ParameterError(
            f"apply_names needs a polylens Model (names live in its card); got {type(model).__name__}.")
    if not isinstance(names, Mapping):
        items = list(names)
        if not all(isinstance(s, NameSuggestion) for s in items):
            raise ParameterError(
                "The 'names' parameter of apply_names must be a dict of key -> name or NameSuggestions.")
        names = {s.key: s.name for s in items}
    bad = [k for k, v in names.items() if not isinstance(v, str)]
    if bad:
        raise ParameterError(f"Neuron names must be strings; {', '.join(map(repr, bad))} are not.")
    return model.with_neuron_names(dict(names))


def name_model(model: Model, overwrite: bool = False, x: Array | None = None, *,
               weighting: Weighting | str = "auto") -> Model:
    """``model`` with a suggested name for every unnamed hidden neuron (every neuron if ``overwrite``).

    Deeper layers are described through the final names of the layer before (kept card names, or
    the new suggestions). Save the result with :func:`polylens.nn.model.save_card`.
    """
    if not isinstance(model, Model):
        raise ParameterError(f"name_model needs a polylens Model (names live in its card); got {type(model).__name__}.")
    x = None if x is None else check_inputs(x, model.network.input_dim, "name_model", unit_box=False, min_rows=2)
    fixed = {} if overwrite else dict(model.card.neuron_names)
    sug = _suggest(model.network, fixed, x, weighting)
    new = {s.key: s.name for s in sug if overwrite or s.key not in model.card.neuron_names}
    assert set(new) <= set(neuron_keys(model.network))
    return model.with_neuron_names(new)
