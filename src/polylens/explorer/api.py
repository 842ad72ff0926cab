"""The explorer's session: the shell payloads (model, samples, forward pass, bounds, names) and the
one generic entry for every lens's payloads.

Everything the page draws comes from here; the browser does no arithmetic on the network. One
:class:`Explorer` wraps a loaded :class:`~polylens.nn.model.Model` and its test split. Its shell
answers what every view shares (:meth:`Explorer.model_payload`, :meth:`Explorer.samples_payload`,
:meth:`Explorer.forward_payload`, :meth:`Explorer.bounds_payload`, :meth:`Explorer.rename`); every
analysis is asked through :meth:`Explorer.lens_payload` ``(name, kind, params)``, which finds the
lens in the registry, checks the request's parameters against the payload's declaration, resolves
the input of per-input payloads and runs background payloads as jobs. The live server
(:mod:`polylens.explorer.server`) calls these per request; the static export
(:mod:`polylens.explorer.export`) calls the same ahead of time and writes their output.

Lens payload builders receive the session and read what they need from it: :attr:`Explorer.model`,
:attr:`Explorer.network`, :attr:`Explorer.data`, :attr:`Explorer.config`, :meth:`Explorer.options_for`
(a lens's options in the explorer), :meth:`Explorer.cache`, :meth:`Explorer.background` and
:meth:`Explorer.resource`.

Inputs from requests are validated here with the project's one message template; a bad value
raises :class:`~polylens.errors.ParameterError`, which the server turns into a 400 JSON error.

>>> from polylens.nn.model import load_model
>>> ex = Explorer(load_model("seed"))
>>> p = ex.forward_payload(ex.sample_input(0))
>>> p["prediction"] in range(10), len(p["layers"])
(True, 2)
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from polylens.errors import ModelError, ParameterError, PolylensError
from polylens.jsonio import jsonable
from polylens.nn.model import Model, ModelCard, neuron_keys, save_card
from polylens.nn.network import Network
from polylens.validation import check_float, check_int

__all__ = [
    "Explorer", "ExplorerConfig", "Input", "NameStore", "batch_bounds_payloads", "canonical_key", "check_keys",
    "diagram_payload", "display", "exact", "flow_diagram", "jsonify", "lens_catalog", "parse_eps", "parse_input",
]

Array = np.ndarray

#: Significant digits kept for values that are only displayed (activations, logits, weights). Bounds,
#: envelope cuts and certificate margins are sent at full float64 precision: a rounded bound is not a bound.
DISPLAY_DIGITS = 6
#: Points per neuron of the activation curve drawn in a tooltip over [L, U].
CURVE_POINTS = 17
#: The longest neuron name accepted by a rename.
MAX_NAME_LENGTH = 60


# ---------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class ExplorerConfig:
    """Settings of an explorer (live or exported).

    ``eps``: the starting radius. ``eps_max``: the slider's end. ``time_limit``: seconds per LP solve
    of a live check. ``request_timeout``: wall-clock seconds a live LP request may take before it
    answers ``status: "timeout"``. ``cuts``: envelope cuts per side shown in tooltips (HULL mode).
    ``max_nodes``: hidden neurons drawn per layer (the rest become one "+N more" node).
    ``max_edges``: edges drawn per pair of adjacent layers, strongest |w * a| first. ``lenses``:
    option values per lens name for the explorer, over the lens's explorer defaults (e.g.
    ``{"robustness": {"images": 0}}`` turns the background sweep off, ``{"signatures":
    {"per_digit": 3}}`` makes the signatures quick).
    """

    eps: float = 0.01
    eps_max: float = 0.1
    time_limit: float = 1.0
    request_timeout: float = 8.0
    cuts: int = 8
    max_nodes: int = 16
    max_edges: int = 240
    lenses: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        where = "ExplorerConfig"
        check_float(self.eps, "eps", where, 0.0, 1.0)
        check_float(self.eps_max, "eps_max", where, 0.0, 1.0, lo_open=True)
        check_float(self.time_limit, "time_limit", where, 0.0, None, lo_open=True)
        check_float(self.request_timeout, "request_timeout", where, 0.0, None, lo_open=True)
        check_int(self.cuts, "cuts", where, 1, 64)
        check_int(self.max_nodes, "max_nodes", where, 1, 4096)
        check_int(self.max_edges, "max_edges", where, 1, 100_000)
        from polylens.lenses import get_lens

        for name, values in self.lenses.items():
            get_lens(name).make_options({**_view_options(get_lens(name)), **values})  # checked now, not later
        object.__setattr__(self, "lenses", {k: dict(v) for k, v in self.lenses.items()})


def _view_options(lens) -> dict:
    return dict(lens.view.options) if lens.view is not None else {}


# ---------------------------------------------------------------------------------------------
# JSON helpers


def display(a) -> Any:
    """Round display-only values to DISPLAY_DIGITS significant digits (NaN/inf become None)."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 0:
        v = float(arr)
        return float(f"{v:.{DISPLAY_DIGITS}g}") if math.isfinite(v) else None
    flat = [float(f"{v:.{DISPLAY_DIGITS}g}") if math.isfinite(v) else None for v in arr.ravel().tolist()]
    return np.array(flat, dtype=object).reshape(arr.shape).tolist() if arr.ndim > 1 else flat


def exact(a) -> Any:
    """Full-precision floats (bounds, cuts, margins); non-finite values become None."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 0:
        v = float(arr)
        return v if math.isfinite(v) else None
    out = [v if math.isfinite(v) else None for v in arr.ravel().tolist()]
    return np.array(out, dtype=object).reshape(arr.shape).tolist() if arr.ndim > 1 else out


#: The explorer's JSON conversion is the project's one (kept under its old name for the server).
jsonify = jsonable


# ---------------------------------------------------------------------------------------------
# Request validation (one message template; ParameterError -> HTTP 400)


def parse_eps(value: Any, where: str = "the explorer") -> float:
    """An eps from a request: a finite float in [0, 1]."""
    return check_float(value, "eps", where, 0.0, 1.0)


def parse_input(value: Any, width: int, where: str = "the explorer") -> Array:
    """An input vector from a request: a list of ``width`` finite numbers in [0, 1]; float64 (width,)."""
    if not isinstance(value, (list, tuple)):
        raise ParameterError(f"The 'x' parameter of {where} must be a list of {width} numbers in [0, 1]. "
                             f"Got {type(value).__name__} instead.")
    if len(value) != width:
        raise ParameterError(f"The 'x' parameter of {where} must be a list of {width} numbers in [0, 1]. "
                             f"Got a list of {len(value)} instead.")
    bad = [i for i, v in enumerate(value) if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise ParameterError(f"The 'x' parameter of {where} must be a list of {width} numbers in [0, 1]. "
                             f"Got {value[bad[0]]!r} at position {bad[0]} instead.")
    x = np.asarray(value, dtype=np.float64)
    out = np.flatnonzero(~np.isfinite(x) | (x < 0) | (x > 1))
    if out.size:
        raise ParameterError(f"The 'x' parameter of {where} must be a list of {width} numbers in [0, 1]. "
                             f"Got {value[out[0]]!r} at position {int(out[0])} instead.")
    return x


def check_keys(body: dict, allowed: Sequence[str], where: str) -> None:
    """ParameterError naming every key of a request body that is not in ``allowed``."""
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise ParameterError(f"The request of {where} has unknown keys {', '.join(map(repr, unknown))}; "
                             f"it takes {', '.join(map(repr, allowed))}.")


def parse_class(value: Any, n_classes: int, name: str = "target", where: str = "the explorer") -> int:
    """A class id from a request: an int in [0, n_classes - 1]."""
    return check_int(value, name, where, 0, n_classes - 1)


def parse_name(value: Any, where: str = "rename") -> str:
    """A neuron name: a string of at most MAX_NAME_LENGTH printable characters (surrounding space
    removed); the empty string removes the name."""
    if not isinstance(value, str):
        raise ParameterError(f"The 'name' parameter of {where} must be a string of at most {MAX_NAME_LENGTH} "
                             f"characters. Got {type(value).__name__} instead.")
    name = " ".join(value.split())
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise ParameterError(f"The 'name' parameter of {where} must be a string of at most {MAX_NAME_LENGTH} "
                             f"printable characters. Got {value[:80]!r} instead.")
    return name


# ---------------------------------------------------------------------------------------------
# Network diagram


def _shown(values: Array, k: int) -> Array:
    """Indices drawn for a layer: all when it has at most k + 1 neurons (a "+1 more" node would save
    nothing), else the k largest by |value|, in index order."""
    n = values.shape[0]
    if n <= k + 1:
        return np.arange(n)
    top = np.argpartition(-np.abs(values), k - 1)[:k]
    return np.sort(top)


def flow_diagram(values: Sequence[Array], mats: Sequence[Array], weights: Sequence[Array] | None = None, *,
                 max_nodes: int = 16, max_edges: int = 240, output_shown: Sequence[int] | None = None) -> dict:
    """A layered diagram: columns of nodes and the strongest edges between adjacent columns.

    ``values[c]`` (n_c,): the node values of column c (0: the input, last: the output), used to pick
    which hidden nodes are drawn (the ``max_nodes`` largest |value|; the rest fold into one "+N more"
    node, index -1). ``mats[c-1]`` (n_c, n_{c-1}): the edge quantity from column c-1 into column c
    (weight x activation for the network diagram, the flow into one logit for a trace);
    ``weights[c-1]`` the weights, reported per drawn edge. ``output_shown``: the output nodes drawn
    (default all, up to 32).

    Returns ``{"columns": [{"kind", "layer", "width", "shown", "more"}], "edges": [{"from", "to",
    "src", "dst", "c", "w", "total"}]}``: per pair of columns the ``max_edges`` strongest non-zero
    edges (strongest first; an edge touching a "+N more" node carries the sum over its members and
    ``w`` None) and ``total``, the number of non-zero edges before selection.
    """
    L = len(mats)
    columns, shown = [], []
    for c, v in enumerate(values):
        v = np.asarray(v, dtype=np.float64)
        if c == 0:
            s, kind = (np.arange(v.shape[0]) if v.shape[0] <= 1024 else _shown(v, 1024)), "input"
        elif c == L:
            kind = "output"
            s = np.asarray(output_shown, dtype=np.int64) if output_shown is not None else \
                (np.arange(v.shape[0]) if v.shape[0] <= 32 else _shown(v, 32))
        else:
            s, kind = _shown(v, max_nodes), "hidden"
        shown.append(s)
        more = 0 if kind == "output" and output_shown is not None else int(v.shape[0] - s.shape[0])
        columns.append({"kind": kind, "layer": c, "width": int(v.shape[0]), "shown": s.tolist(), "more": more})
    edges = []
    for c in range(1, L + 1):
        C = np.asarray(mats[c - 1], dtype=np.float64)
        s_in, s_out = shown[c - 1], shown[c]
        hid_in = np.setdiff1d(np.arange(C.shape[1]), s_in)
        hid_out = np.setdiff1d(np.arange(C.shape[0]), s_out) if columns[c]["more"] else np.zeros(0, np.int64)
        rows = [C[s_out]] + ([C[hid_out].sum(axis=0, keepdims=True)] if hid_out.size else [])
        Cr = np.concatenate(rows, axis=0)
        cols = [Cr[:, s_in]] + ([Cr[:, hid_in].sum(axis=1, keepdims=True)] if hid_in.size else [])
        Ca = np.concatenate(cols, axis=1)
        dst_ids = np.concatenate([s_out, [-1] * bool(hid_out.size)]).astype(np.int64)
        src_ids = np.concatenate([s_in, [-1] * bool(hid_in.size)]).astype(np.int64)
        di, si = np.nonzero(Ca != 0)
        order = np.argsort(-np.abs(Ca[di, si]), kind="stable")[:max_edges]
        di, si = di[order], si[order]
        src, dst = src_ids[si], dst_ids[di]
        if weights is not None:
            W = weights[c - 1]
            w = [float(f"{W[d, s]:.{DISPLAY_DIGITS}g}") if s >= 0 and d >= 0 else None
                 for s, d in zip(src.tolist(), dst.tolist())]
        else:
            w = [None] * len(src)
        edges.append({"from": c - 1, "to": c, "src": src.tolist(), "dst": dst.tolist(), "c": display(Ca[di, si]),
                      "w": w, "total": int(np.count_nonzero(C))})
    return {"columns": columns, "edges": edges}


def diagram_payload(network: Network, x: Array, post: Sequence[Array], logits: Array, *,
                    max_nodes: int = 16, max_edges: int = 240) -> dict:
    """The network diagram of one input: nodes are pixels, hidden neurons (drawn: the ``max_nodes``
    largest |activation| per layer) and logits; an edge's ``c`` is the contribution w * a of the
    source's activation to the target's pre-activation. See :func:`flow_diagram`."""
    vals = [np.asarray(x, dtype=np.float64), *[np.asarray(p, dtype=np.float64) for p in post],
            np.asarray(logits, dtype=np.float64)]
    Ws = [layer.W for layer in network.layers]
    mats = [W * v[None, :] for W, v in zip(Ws, vals[:-1])]
    return flow_diagram(vals, mats, Ws, max_nodes=max_nodes, max_edges=max_edges)


# ---------------------------------------------------------------------------------------------
# Bounds and envelopes (tooltips)


def batch_bounds_payloads(network: Network, x: Array, eps: float, *, cuts: int = 8,
                          neurons: Sequence[Sequence[Sequence[int]]] | None = None) -> list[dict]:
    """Interval bounds and envelope cuts of every hidden neuron, for each row of x (N, d) at radius eps.

    Bounds are backward linear bounds intersected with interval propagation, over the box
    ``input_box(x, eps)`` (ball intersected with [0, 1]); each layer's envelope is built by
    :func:`~polylens.relax.envelopes.build_envelope` (HULL mode, ``cuts`` per side) in one vectorised
    call for all N inputs. ``neurons[i][l]`` optionally restricts input i's layer l to those neurons
    (the static export keeps only the neurons its diagram draws).

    Per input: ``{"eps", "method", "envelope", "input": {"lower", "upper"}, "logits": {"lower",
    "upper"}, "layers": [{"layer", "neurons", "lower", "upper", "zlo", "zhi", "cuts", "curve"}]}``
    where ``cuts[k]`` is a list of ``[side, slope, intercept]`` (side 0: z >= slope*a + intercept,
    side 1: z <= ...) for neuron ``neurons[k]`` and ``curve[k] = [a_values, f_values]`` samples f on
    [lower, upper] for drawing. Bounds and cuts are full precision.
    """
    from polylens.bounds import crown_ibp_bounds, input_box
    from polylens.lp.polytope import split_envelope
    from polylens.relax.envelopes import Hull, build_envelope

    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    N = x.shape[0]
    xl, xu = input_box(x, eps)
    b = crown_ibp_bounds(network, xl, xu)
    envs = []
    for l, act in enumerate(network.activations):
        env = build_envelope(act, b.lower[l].ravel(), b.upper[l].ravel(), Hull(cuts))
        envs.append(split_envelope(env, N) if N > 1 else [env])
    t = np.linspace(0.0, 1.0, CURVE_POINTS)
    out = []
    for i in range(N):
        layers = []
        for l, act in enumerate(network.activations):
            env = envs[l][i]
            n = env.n_neurons
            keep = np.arange(n) if neurons is None else np.asarray(sorted(set(neurons[i][l])), dtype=np.int64)
            Lb, Ub = env.lower[keep], env.upper[keep]
            a = Lb[:, None] + (Ub - Lb)[:, None] * t[None, :]
            z = act(a)
            starts = np.searchsorted(env.neuron, np.arange(n + 1))
            cut_lists = []
            for j in keep.tolist():
                r = slice(starts[j], starts[j + 1])
                cut_lists.append([[int(s), float(k), float(c)] for s, k, c in
                                  zip(env.side[r].tolist(), env.slope[r].tolist(), env.intercept[r].tolist())])
            layers.append({"layer": l + 1, "neurons": keep.tolist(), "lower": exact(Lb), "upper": exact(Ub),
                           "zlo": exact(env.zlo[keep]), "zhi": exact(env.zhi[keep]), "cuts": cut_lists,
                           "curve": [[a_, z_] for a_, z_ in zip(display(a), display(z))]})
        out.append({"eps": float(eps), "method": "crown+ibp", "envelope": f"hull, {cuts} cuts per side",
                    "input": {"lower": exact(xl[i]), "upper": exact(xu[i])},
                    "logits": {"lower": exact(b.logit_lower[i]), "upper": exact(b.logit_upper[i])},
                    "layers": layers})
    return out


# ---------------------------------------------------------------------------------------------
# Where neuron names live


class NameStore:
    """Where renamed neurons are kept.

    * a model directory (``model.source`` is a directory): its own ``card.json``, via ``save_card``;
    * otherwise (a bundled model, an ONNX file) with ``names_dir``: a writable copy of the card in
      ``names_dir/<model-slug>/card.json``, read back at the next start;
    * otherwise in memory only (lost when the server stops); :attr:`note` says so.

    Never writes into the installed package.
    """

    def __init__(self, model: Model, names_dir: str | Path | None = None):
        src = model.source
        self.kind = "memory"
        self.path: Path | None = None
        if not src.startswith("bundled:") and src != "memory" and Path(src).is_dir():
            self.kind, self.path = "model-dir", Path(src).resolve()
        elif names_dir is not None:
            self.kind, self.path = "names-dir", Path(names_dir).expanduser().resolve() / _slug(src)

    @property
    def note(self) -> str:
        if self.kind == "model-dir":
            return f"Names are saved to the model card {self.path / 'card.json'}."
        if self.kind == "names-dir":
            return f"Names are saved to a copy of the model card in {self.path}."
        return ("Names are kept in memory only and are lost when the server stops: this model is not a "
                "model directory. Start with --names-dir DIR to keep them.")

    def load(self, model: Model) -> Model:
        """The model with the names saved earlier in ``names_dir`` (a model directory's card is the
        model's own card, already loaded)."""
        if self.kind != "names-dir" or not (self.path / "card.json").is_file():
            return model
        card = ModelCard.from_json((self.path / "card.json").read_text(encoding="utf-8"),
                                   where=f"model card {self.path / 'card.json'}")
        if card.architecture != model.network.architecture:
            raise ModelError(f"The names in {self.path} belong to a {card.architecture} network, not "
                             f"{model.network.architecture}; choose another --names-dir.")
        valid = set(neuron_keys(model.network))
        return model.with_neuron_names({k: v for k, v in card.neuron_names.items() if k in valid})

    def save(self, model: Model) -> Path | None:
        if self.kind == "memory":
            return None
        return save_card(model, self.path)


def _slug(source: str) -> str:
    if source.startswith("bundled:"):
        return source.split(":", 1)[1]
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in Path(source).stem)[:40] or "model"
    return f"{stem}-{hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------------------------
# The session


class _LRU:
    """A small thread-safe least-recently-used cache (``get`` returns None for a miss)."""

    def __init__(self, size: int):
        self.size, self.data, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


@dataclass(frozen=True, eq=False)
class Input:
    """The input a per-input request names: ``x`` (d,) float64 in [0, 1], and ``sample`` (the test
    sample it is, or None for a drawn input)."""

    x: Array
    sample: int | None = None


def _js_number(v: float) -> str:
    """A float written as JavaScript's String() writes it (so both sides make the same keys)."""
    v = float(v)
    if v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    text = repr(v)
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{'-' if exp.startswith('-') else '+'}{exp.lstrip('+-').lstrip('0') or '0'}"
    return text


def canonical_key(params: Mapping[str, Any]) -> str:
    """The key a static export files a precomputed answer under: the parameters (None values left out)
    as compact JSON with sorted keys and numbers as JavaScript writes them; the page's static data
    source makes the same key from a request (``static/datasource.js``)."""
    parts = []
    for k in sorted(params):
        v = params[k]
        if v is None:
            continue
        if isinstance(v, bool):
            t = "true" if v else "false"
        elif isinstance(v, (int, np.integer)):
            t = str(int(v))
        elif isinstance(v, (float, np.floating)):
            t = _js_number(v)
        else:
            t = json.dumps(v, separators=(",", ":"), sort_keys=True)
        parts.append(f"{json.dumps(str(k))}:{t}")
    return "{" + ",".join(parts) + "}"


def lens_catalog() -> list[dict]:
    """The views the page shows, in order: every registered lens with a view, its title, family,
    summary, its module (a file in the lens's folder, or None for the generic view) and its payload
    kinds (which take an input, which run in the background, which parameters they accept)."""
    from polylens.lenses import all_lenses
    from polylens.lenses.base import option_specs

    out = []
    for lens in sorted((l for l in all_lenses() if l.view is not None), key=lambda l: l.view.order):
        kinds = {}
        for kind, p in _payloads(lens).items():
            kinds[kind] = {"per_input": p.per_input, "background": p.background,
                           "params": [s.name for s in option_specs(p.params)] if p.params is not None else []}
        out.append({"name": lens.name, "title": lens.title, "family": lens.family, "summary": lens.summary,
                    "module": lens.view.module, "payloads": kinds})
    return out


def _section_payload(lens):
    """The default ``main`` payload of a lens without payloads: the lens run on the session's data with
    its explorer options, drawn as its report section (tables, blocks, figures) for the generic view."""
    def build(session, params):
        from polylens.lenses.base import RunContext, SectionContext
        from polylens.report.html import section_json

        if lens.needs_data and session.n_samples < 2:
            raise ParameterError(f"The {lens.name} lens needs test images; {session.data_note}")
        result = lens.run(session.model, session.data, session.options_for(lens.name), RunContext())
        return {"section": jsonable(section_json(lens.section(result, SectionContext(session.model, session.data))))}
    return build


def _payloads(lens) -> dict:
    from polylens.lenses.base import Payload

    if lens.view is None:
        return {}
    if lens.view.payloads:
        return dict(lens.view.payloads)
    return {"main": Payload(_section_payload(lens), background=True)}


class Explorer:
    """The explorer's session on one model: shell payloads, lens payloads, caches and jobs.

    ``model``: the loaded model; its card's dataset gives the test samples (none when the card names
    no dataset: the page then starts from a blank input). ``names_dir``: see :class:`NameStore`.
    ``mode``: ``"live"`` (background payloads run as jobs that requests poll) or ``"static"`` (the
    export: every payload is computed when asked). Thread-safe: the server calls it from a thread pool.
    """

    def __init__(self, model: Model, *, config: ExplorerConfig = ExplorerConfig(), names_dir: str | Path | None = None,
                 mode: str = "live"):
        from polylens.data.labelled import Data

        if mode not in ("live", "static"):
            raise ParameterError(f"The 'mode' parameter of Explorer must be one of 'live', 'static'. Got {mode!r} instead.")
        self.config = config
        self.mode = mode
        self.names = NameStore(model, names_dir)
        self._model = self.names.load(model)
        self._lock = threading.Lock()
        self.network: Network = model.network
        try:
            self.data = Data.of_model(model)
        except PolylensError as e:
            self.data = Data(np.zeros((0, self.network.input_dim)), np.zeros(0, np.int64), None, "none")
            self.data_note = f"No test samples: {e}"
        else:
            self.data_note = None
        self._fp_test = None
        self._caches: dict[str, _LRU] = {}
        self._resources: dict[str, Any] = {}
        self._jobs: dict[str, Future] = {}
        self._analysis_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polylens-analysis")

    # -- state ---------------------------------------------------------------------------------

    @property
    def model(self) -> Model:
        return self._model

    @property
    def live(self) -> bool:
        return self.mode == "live"

    @property
    def n_samples(self) -> int:
        return len(self.data)

    @property
    def fp_test(self):
        """The forward pass of the whole test split (cached)."""
        if self._fp_test is None:
            self._fp_test = self.network.forward(self.data.x)
        return self._fp_test

    def class_names(self) -> list[str]:
        return [str(c) for c in range(self.network.n_classes)]

    def options_for(self, name: str):
        """The options of lens ``name`` in the explorer: its defaults, its view's options, then
        ``config.lenses[name]``."""
        from polylens.lenses import get_lens

        lens = get_lens(name)
        return lens.make_options({**_view_options(lens), **self.config.lenses.get(lens.name, {})})

    def cache(self, name: str, size: int = 256) -> _LRU:
        """A named LRU cache of this session (made on first use)."""
        with self._lock:
            c = self._caches.get(name)
            if c is None:
                c = self._caches[name] = _LRU(size)
            return c

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        """A named object of this session, made once by ``factory``; closed with the session when it
        has a ``close()`` method (e.g. a background sweep's worker pool)."""
        with self._lock:
            r = self._resources.get(key)
            if r is None:
                r = self._resources[key] = factory()
            return r

    def background(self, key: str, fn: Callable[[], dict]) -> dict:
        """``fn()`` run once for this key: live, in the analysis thread, answered ``{"status": "running"}``
        until it is done and then ``{"status": "ready", **result}`` (``{"status": "error", "error": ...}``
        if it failed); static, computed at once."""
        with self._lock:
            fut = self._jobs.get(key)
            if fut is None:
                fut = self._jobs[key] = self._analysis_pool.submit(fn)
        if not self.live:
            fut.exception()  # wait
        return _job_state(fut)

    # -- checks --------------------------------------------------------------------------------

    def parse_sample(self, value: Any, where: str = "the explorer") -> int:
        if self.n_samples == 0:
            raise ParameterError(f"This model has no test samples to choose from ({self.data_note}); send 'x' instead.")
        return check_int(value, "sample", where, 0, self.n_samples - 1)

    def sample_input(self, i: int) -> Array:
        return self.data.x[self.parse_sample(i)]

    def check_class(self, value: Any, name: str, where: str) -> int:
        return parse_class(value, self.network.n_classes, name, where)

    def check_neuron(self, layer: Any, j: Any, where: str = "the explorer") -> tuple[int, int]:
        widths = self.network.hidden_widths
        layer = check_int(layer, "layer", where, 1, len(widths))
        j = check_int(j, "neuron", where, 0, widths[layer - 1] - 1)
        return layer, j

    def resolve(self, body: Any, where: str, extra: Sequence[str] = ()) -> Input:
        """The input of a request body: ``{"sample": i}`` (a test sample) or ``{"x": [...]}``, plus the
        keys ``extra``; any other key is refused (a misspelt option is never ignored)."""
        if not isinstance(body, dict):
            raise ParameterError(f"The request body of {where} must be a JSON object. Got {type(body).__name__} instead.")
        check_keys(body, ("sample", "x", *extra), where)
        has_s, has_x = body.get("sample") is not None, body.get("x") is not None
        if has_s == has_x:
            raise ParameterError(f"The request of {where} must give exactly one of 'sample' (a test sample index) "
                                 "or 'x' (a list of pixel values).")
        if has_s:
            i = self.parse_sample(body["sample"], where)
            return Input(self.data.x[i], i)
        return Input(parse_input(body["x"], self.network.input_dim, where), None)

    # -- the shell -----------------------------------------------------------------------------

    def model_payload(self) -> dict:
        """What the page needs to lay itself out: architecture, input shape, classes, every hidden
        neuron's key and current name, where names are kept, the explorer's settings and the views."""
        net, model = self.network, self.model
        layers = []
        for l, w in enumerate(net.hidden_widths, start=1):
            layers.append({"layer": l, "width": w, "activation": str(net.activations[l - 1]),
                           "neurons": [{"key": f"L{l}.n{j}", "name": model.neuron_name(l, j),
                                        "named": f"L{l}.n{j}" in model.card.neuron_names} for j in range(w)]})
        card = model.card
        return {
            "mode": self.mode, "source": model.source, "architecture": net.architecture, "widths": list(net.widths),
            "activation": card.activation, "input_shape": list(net.input_shape), "n_classes": net.n_classes,
            "class_names": self.class_names(), "layers": layers, "n_params": net.n_params,
            "test_accuracy": card.test_accuracy, "dataset": card.dataset, "n_samples": self.n_samples,
            "data_note": self.data_note,
            "names": {"storage": self.names.kind, "path": str(self.names.path) if self.names.path else None,
                      "note": self.names.note},
            "eps": self.config.eps, "eps_max": self.config.eps_max, "time_limit": self.config.time_limit,
            "request_timeout": self.config.request_timeout, "max_nodes": self.config.max_nodes,
            "lenses": lens_catalog(),
        }

    def samples_payload(self, indices: Sequence[int] | None = None) -> dict:
        """Label and prediction of each test sample (or of ``indices``), for navigation and filters."""
        idx = np.arange(self.n_samples) if indices is None else np.asarray(indices, dtype=np.int64)
        pred = np.argmax(self.fp_test.logits[idx], axis=1) if idx.size else np.zeros(0, np.int64)
        return {"indices": idx.tolist(), "labels": self.data.y[idx].tolist(), "predictions": pred.tolist(),
                "n": int(idx.size)}

    def forward_payload(self, x: Array, sample: int | None = None) -> dict:
        """Activations of one input and its diagram. ``sample`` adds the label and the original image."""
        fp = self.network.forward(x[None, :])
        logits = fp.logits[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        out = {
            "x": display(x), "sample": sample, "prediction": int(np.argmax(logits)),
            "logits": display(logits), "probs": display(p),
            "layers": [{"layer": l + 1, "pre": display(fp.pre[l][0]), "post": display(fp.post[l][0])}
                       for l in range(len(fp.pre))],
            "diagram": diagram_payload(self.network, x, [q[0] for q in fp.post], logits,
                                       max_nodes=self.config.max_nodes, max_edges=self.config.max_edges),
        }
        if sample is not None:
            out["label"] = int(self.data.y[sample])
            if self.data.images is not None:
                out["original"] = self.data.images[sample].tolist()
        return out

    def bounds_payload(self, x: Array, eps: float) -> dict:
        """Interval bounds and envelope cuts of every hidden neuron over the eps-box of x (tooltips);
        see :func:`batch_bounds_payloads`. Cached per (x, eps)."""
        key = (x.tobytes(), eps, self.config.cuts)
        cache = self.cache("bounds")
        hit = cache.get(key)
        if hit is not None:
            return hit
        return cache.put(key, batch_bounds_payloads(self.network, x, eps, cuts=self.config.cuts)[0])

    def rename(self, layer: Any, j: Any, name: Any) -> dict:
        """Give neuron (layer, j) a name (empty: remove it) and keep it where :class:`NameStore` says."""
        layer, j = self.check_neuron(layer, j, "rename")
        name = parse_name(name)
        with self._lock:
            model = self.model.with_neuron_names({f"L{layer}.n{j}": name})
            path = self.names.save(model)
            self._model = model
        return {"key": f"L{layer}.n{j}", "name": model.neuron_name(layer, j), "saved_to": str(path) if path else None,
                "storage": self.names.kind, "note": self.names.note}

    # -- lenses --------------------------------------------------------------------------------

    def payload_spec(self, name: str, kind: str = "main"):
        """(lens, Payload) of a lens's payload kind; ParameterError naming what exists otherwise."""
        from polylens.lenses import get_lens

        lens = get_lens(name)
        kinds = _payloads(lens)
        if kind not in kinds:
            have = ", ".join(map(repr, kinds)) or "none (the lens has no explorer view)"
            raise ParameterError(f"The lens {lens.name!r} has no payload {kind!r}; it has {have}.")
        return lens, kinds[kind]

    def parse_params(self, name: str, kind: str, body: Any) -> dict:
        """The parameters of a request for lens payload (name, kind), checked: ``body`` a JSON object
        whose keys are the payload's parameters (plus ``sample`` or ``x`` for a per-input payload);
        returns the converted values (defaults filled in), with ``input`` for per-input payloads."""
        lens, p = self.payload_spec(name, kind)
        where = f"{lens.name}/{kind}" if kind != "main" else lens.name
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise ParameterError(f"The request of {where} must be a JSON object. Got {type(body).__name__} instead.")
        from polylens.lenses.base import option_specs

        names = [s.name for s in option_specs(p.params)] if p.params is not None else []
        values = {k: v for k, v in body.items() if k not in ("sample", "x")}
        check_keys(values, names, where)
        out = p.params.from_text(values).as_dict() if p.params is not None else {}
        if p.per_input:
            out["input"] = self.resolve({k: v for k, v in body.items() if k in ("sample", "x")}, where)
        elif "sample" in body or "x" in body:
            raise ParameterError(f"The request of {where} takes no input ('sample' or 'x'); its parameters are "
                                 f"{', '.join(map(repr, names)) or 'none'}.")
        return out

    def lens_payload(self, name: str, kind: str = "main", body: Any = None) -> dict:
        """The answer of lens ``name``'s payload ``kind`` to a request ``body`` (see :meth:`parse_params`).
        Background payloads answer their job's state (``status`` running, ready or error)."""
        lens, p = self.payload_spec(name, kind)
        params = self.parse_params(name, kind, body)
        if p.background:
            key = f"{lens.name}/{kind}:{canonical_key({k: v for k, v in params.items() if k != 'input'})}"
            return self.background(key, lambda: p.build(self, params))
        return p.build(self, params)

    def close(self) -> None:
        """Stop the background work (worker processes, the analysis thread)."""
        for r in list(self._resources.values()):
            close = getattr(r, "close", None)
            if callable(close):
                close()
        self._analysis_pool.shutdown(wait=False, cancel_futures=True)


def _job_state(fut: Future) -> dict:
    if not fut.done():
        return {"status": "running"}
    exc = fut.exception()
    if exc is not None:
        msg = str(exc) if isinstance(exc, PolylensError) else f"{type(exc).__name__}: {exc}"
        return {"status": "error", "error": " ".join(msg.split())}
    return {"status": "ready", **fut.result()}
