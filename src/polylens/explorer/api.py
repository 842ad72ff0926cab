"""JSON payloads of the explorer: what the web page shows, built from polylens result objects.

Everything the page draws comes from here; the browser does no arithmetic on the network. One
:class:`Explorer` wraps a loaded :class:`~polylens.nn.model.Model` and its test split and answers
each question of the page with a JSON-ready dict (numbers, lists, strings, None). The live server
(:mod:`polylens.explorer.server`) calls these builders per request; the static export
(:mod:`polylens.explorer.export`) calls the same builders ahead of time and writes their output.

Payloads (see ``docs/explorer.md`` for every field):

* :meth:`Explorer.model_payload` - architecture, layers, neuron keys and names, where names are kept.
* :meth:`Explorer.samples_payload` - label and prediction of every test sample (navigation, filters).
* :meth:`Explorer.forward_payload` - activations of one input and the network diagram to draw.
* :meth:`Explorer.bounds_payload` - interval bounds and envelope cuts of every neuron at eps (tooltips).
* :meth:`Explorer.certify_payload` - a :class:`~polylens.lenses.verify.certify.Certificate` as JSON.
* :meth:`Explorer.robust_payload` - certification status of every test sample at one eps.
* :meth:`Explorer.neuron_payload`, :meth:`signatures_payload`, :meth:`prototypes_payload`,
  :meth:`trace_payload` - the analyses of the neurons, signatures, prototypes and trace modules.

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
import math
import threading
import time
import warnings
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from polylens.errors import ModelError, ParameterError, PolylensError
from polylens.jsonio import jsonable
from polylens.nn.model import Model, ModelCard, neuron_keys, save_card
from polylens.nn.network import Network
from polylens.validation import check_float, check_int

__all__ = [
    "Explorer", "ExplorerConfig", "NameStore", "SweepRunner", "batch_bounds_payloads", "sweep_rows",
    "check_keys", "diagram_payload", "flow_diagram", "jsonify", "parse_eps", "parse_input",
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
    of a live check (``CertifyOptions.time_limit``). ``request_timeout``: wall-clock seconds a live LP
    request may take before it answers ``status: "timeout"``. ``cuts``: envelope cuts per side shown
    in tooltips (HULL mode). ``max_nodes``: hidden neurons drawn per layer (the rest become one
    "+N more" node). ``max_edges``: edges drawn per pair of adjacent layers, strongest |w * a| first.
    ``sweep_samples`` / ``sweep_eps``: the background robustness sweep (0 samples: none).
    ``sweep_chunk``: images per background job. ``top_images``: most and least activating test images
    per neuron. ``signature_eps`` / ``signature_images``: radius and images per digit of the signature
    analysis. ``prototype_eps`` / ``prototype_lam``: radius and L1 price of the prototypes.
    """

    eps: float = 0.01
    eps_max: float = 0.1
    time_limit: float = 1.0
    request_timeout: float = 8.0
    cuts: int = 8
    max_nodes: int = 16
    max_edges: int = 240
    sweep_samples: int = 200
    sweep_eps: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
    sweep_chunk: int = 50
    top_images: int = 8
    signature_eps: float = 0.02
    signature_images: int = 30
    prototype_eps: float = 0.1
    prototype_lam: float = 0.01

    def __post_init__(self):
        where = "ExplorerConfig"
        check_float(self.eps, "eps", where, 0.0, 1.0)
        check_float(self.eps_max, "eps_max", where, 0.0, 1.0, lo_open=True)
        check_float(self.time_limit, "time_limit", where, 0.0, None, lo_open=True)
        check_float(self.request_timeout, "request_timeout", where, 0.0, None, lo_open=True)
        check_int(self.cuts, "cuts", where, 1, 64)
        check_int(self.max_nodes, "max_nodes", where, 1, 4096)
        check_int(self.max_edges, "max_edges", where, 1, 100_000)
        check_int(self.sweep_samples, "sweep_samples", where, 0, 100_000)
        check_int(self.sweep_chunk, "sweep_chunk", where, 1, 10_000)
        check_int(self.top_images, "top_images", where, 1, 100)
        check_float(self.signature_eps, "signature_eps", where, 0.0, 1.0)
        check_int(self.signature_images, "signature_images", where, 1, 100_000)
        check_float(self.prototype_eps, "prototype_eps", where, 0.0, 1.0)
        check_float(self.prototype_lam, "prototype_lam", where, 0.0, None)
        object.__setattr__(self, "sweep_eps", tuple(check_float(e, "sweep_eps", where, 0.0, 1.0)
                                                    for e in self.sweep_eps))


# ---------------------------------------------------------------------------------------------
# JSON helpers


def _display(a) -> Any:
    """Round display-only values to DISPLAY_DIGITS significant digits (NaN/inf become None)."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 0:
        v = float(arr)
        return float(f"{v:.{DISPLAY_DIGITS}g}") if math.isfinite(v) else None
    flat = [float(f"{v:.{DISPLAY_DIGITS}g}") if math.isfinite(v) else None for v in arr.ravel().tolist()]
    return np.array(flat, dtype=object).reshape(arr.shape).tolist() if arr.ndim > 1 else flat


def _exact(a) -> Any:
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
        edges.append({"from": c - 1, "to": c, "src": src.tolist(), "dst": dst.tolist(), "c": _display(Ca[di, si]),
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
    from polylens.bounds import BoundMethod, compute_bounds, input_box
    from polylens.lp.polytope import split_envelope
    from polylens.relax.envelopes import EnvelopeMode, build_envelope

    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    N = x.shape[0]
    xl, xu = input_box(x, eps)
    b = compute_bounds(network, xl, xu, BoundMethod.CROWN).intersect(compute_bounds(network, xl, xu, BoundMethod.IBP))
    envs = []
    for l, act in enumerate(network.activations):
        env = build_envelope(act, b.lower[l].ravel(), b.upper[l].ravel(), mode=EnvelopeMode.HULL, cuts=cuts)
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
            layers.append({"layer": l + 1, "neurons": keep.tolist(), "lower": _exact(Lb), "upper": _exact(Ub),
                           "zlo": _exact(env.zlo[keep]), "zhi": _exact(env.zhi[keep]), "cuts": cut_lists,
                           "curve": [[a_, z_] for a_, z_ in zip(_display(a), _display(z))]})
        out.append({"eps": float(eps), "method": "crown+ibp", "envelope": f"hull, {cuts} cuts per side",
                    "input": {"lower": _exact(xl[i]), "upper": _exact(xu[i])},
                    "logits": {"lower": _exact(b.logit_lower[i]), "upper": _exact(b.logit_upper[i])},
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
# The background sweep


def sweep_rows(network: Network, x: Array, y: Array, eps: Sequence[float], time_limit: float, offset: int = 0) -> list[dict]:
    """The rows of :func:`~polylens.lenses.verify.sweep.run_sweep` (every image at every radius, in this
    process, without the LP classifier) for images ``offset .. offset + len(x) - 1`` of a larger set.
    Runs in the sweep's worker process."""
    from polylens.lenses.verify.certify import CertifyOptions
    from polylens.lenses.verify.sweep import run_sweep

    res = run_sweep(network, x, y, eps, options=CertifyOptions(time_limit=time_limit), workers=1, chunk=max(len(x), 1),
                    with_lp_classifier=False)
    return [{**r, "index": int(r["index"]) + offset} for r in res.rows]


class SweepRunner:
    """A modest robustness sweep computed in the background: :func:`~polylens.lenses.verify.sweep.run_sweep`
    on chunks of images (so progress can be shown) in one spawned worker process (so the server's
    threads keep the interpreter to themselves), summarised per digit with
    :func:`~polylens.lenses.verify.sweep.summarize` when every chunk is in."""

    def __init__(self, network: Network, x: Array, y: Array, eps: Sequence[float], *, chunk: int = 50,
                 time_limit: float = 1.0):
        self.network, self.x, self.y = network, x, y
        self.eps = tuple(float(e) for e in eps)
        self.chunk, self.time_limit = chunk, time_limit
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future] = []
        self._result: dict | None = None
        self._error: str | None = None
        self._started = 0.0

    @property
    def total(self) -> int:
        return len(self._futures)

    def start(self) -> None:
        """Submit every chunk (idempotent)."""
        import multiprocessing

        with self._lock:
            if self._pool is not None or len(self.x) == 0 or not self.eps:
                return
            self._started = time.monotonic()
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            n = len(self.x)
            for s0 in range(0, n, self.chunk):  # a job: a chunk of images at every radius
                ids = slice(s0, min(n, s0 + self.chunk))
                self._futures.append(self._pool.submit(sweep_rows, self.network, self.x[ids], self.y[ids], self.eps,
                                                       self.time_limit, s0))

    def stop(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    def payload(self) -> dict:
        """``{"status": "idle" | "running" | "ready" | "error" | "disabled", "done", "total", "n", "eps",
        "summary"}``."""
        from polylens.lenses.verify.sweep import summarize

        with self._lock:
            base = {"n": int(len(self.x)), "eps": list(self.eps), "done": 0, "total": len(self._futures)}
            if self._result is not None:
                return self._result
            if self._error is not None:
                return {**base, "status": "error", "error": self._error}
            if len(self.x) == 0 or not self.eps:
                return {**base, "status": "disabled", "error": "No robustness sweep: it was turned off "
                                                               "(sweep_samples 0) or there are no test samples."}
            if self._pool is None:
                return {**base, "status": "idle"}
            done = [f for f in self._futures if f.done()]
            base["done"] = len(done)
            for f in done:
                if f.cancelled() or f.exception() is not None:
                    exc = "cancelled" if f.cancelled() else f.exception()
                    self._error = f"the background sweep failed: {exc}"
                    return {**base, "status": "error", "error": self._error}
            if len(done) < len(self._futures):
                return {**base, "status": "running"}
            rows = [r for f in self._futures for r in f.result()]
            rows.sort(key=lambda r: (r["eps"], r["index"]))
            summary = summarize(rows, self.eps, self.network.n_classes)
            self._result = {**base, "status": "ready", "summary": jsonify(summary),
                            "elapsed_s": round(time.monotonic() - self._started, 2)}
            self._pool.shutdown(wait=False)
            return self._result


# ---------------------------------------------------------------------------------------------
# The explorer


class _LRU:
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


class Explorer:
    """The explorer's view of one model: the payload builders the server and the export share.

    ``model``: the loaded model; its card's dataset gives the test samples (none when the card names
    no dataset: the page then starts from a blank input). ``names_dir``: see :class:`NameStore`.
    Thread-safe: the server calls builders from a thread pool.
    """

    def __init__(self, model: Model, *, config: ExplorerConfig = ExplorerConfig(), names_dir: str | Path | None = None,
                 mode: str = "live"):
        from polylens.nn.model import model_split

        self.config = config
        self.mode = mode
        self.names = NameStore(model, names_dir)
        self._model = self.names.load(model)
        self._lock = threading.Lock()
        self.network: Network = model.network
        try:
            split = model_split(model)
        except PolylensError as e:
            split = None
            self.data_note = f"No test samples: {e}"
        else:
            self.data_note = None
        self.split = split
        d = self.network.input_dim
        self.x_test = split.x_test if split is not None else np.zeros((0, d))
        self.y_test = split.y_test.astype(np.int64) if split is not None else np.zeros(0, dtype=np.int64)
        self.images_test = split.images_test if split is not None else None
        self._fp_test = None
        self._cache = {name: _LRU(256) for name in ("bounds", "certify", "trace")}
        self._robust = _LRU(64)
        self._formulas = _LRU(8)
        self._jobs: dict[str, Future] = {}
        self._analysis_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polylens-analysis")
        self.sweep = SweepRunner(self.network, self.x_test[:config.sweep_samples], self.y_test[:config.sweep_samples],
                                 config.sweep_eps if config.sweep_samples else (), chunk=config.sweep_chunk,
                                 time_limit=config.time_limit)

    # -- state ---------------------------------------------------------------------------------

    @property
    def model(self) -> Model:
        return self._model

    @property
    def n_samples(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def fp_test(self):
        """The forward pass of the whole test split (cached)."""
        if self._fp_test is None:
            self._fp_test = self.network.forward(self.x_test)
        return self._fp_test

    def class_names(self) -> list[str]:
        return [str(c) for c in range(self.network.n_classes)]

    # -- input resolution ----------------------------------------------------------------------

    def parse_sample(self, value: Any, where: str = "the explorer") -> int:
        if self.n_samples == 0:
            raise ParameterError(f"This model has no test samples to choose from ({self.data_note}); send 'x' instead.")
        return check_int(value, "sample", where, 0, self.n_samples - 1)

    def sample_input(self, i: int) -> Array:
        return self.x_test[self.parse_sample(i)]

    def resolve(self, body: Any, where: str, extra: Sequence[str] = ()) -> tuple[Array, int | None]:
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
            return self.x_test[i], i
        return parse_input(body["x"], self.network.input_dim, where), None

    # -- payloads ------------------------------------------------------------------------------

    def model_payload(self) -> dict:
        """What the page needs to lay itself out: architecture, input shape, classes, every hidden
        neuron's key and current name, where names are kept, and the explorer's settings."""
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
            "signature_eps": self.config.signature_eps, "prototype_eps": self.config.prototype_eps,
        }

    def samples_payload(self, indices: Sequence[int] | None = None) -> dict:
        """Label and prediction of each test sample (or of ``indices``), for navigation and filters."""
        idx = np.arange(self.n_samples) if indices is None else np.asarray(indices, dtype=np.int64)
        pred = np.argmax(self.fp_test.logits[idx], axis=1) if idx.size else np.zeros(0, np.int64)
        return {"indices": idx.tolist(), "labels": self.y_test[idx].tolist(), "predictions": pred.tolist(),
                "n": int(idx.size)}

    def forward_payload(self, x: Array, sample: int | None = None) -> dict:
        """Activations of one input and its diagram. ``sample`` adds the label and the original image."""
        fp = self.network.forward(x[None, :])
        logits = fp.logits[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        out = {
            "x": _display(x), "sample": sample, "prediction": int(np.argmax(logits)),
            "logits": _display(logits), "probs": _display(p),
            "layers": [{"layer": l + 1, "pre": _display(fp.pre[l][0]), "post": _display(fp.post[l][0])}
                       for l in range(len(fp.pre))],
            "diagram": diagram_payload(self.network, x, [q[0] for q in fp.post], logits,
                                       max_nodes=self.config.max_nodes, max_edges=self.config.max_edges),
        }
        if sample is not None:
            out["label"] = int(self.y_test[sample])
            if self.images_test is not None:
                out["original"] = self.images_test[sample].tolist()
        return out

    def bounds_payload(self, x: Array, eps: float) -> dict:
        """Interval bounds and envelope cuts of every hidden neuron over the eps-box of x (tooltips);
        see :func:`batch_bounds_payloads`. Cached per (x, eps)."""
        key = (x.tobytes(), eps, self.config.cuts)
        hit = self._cache["bounds"].get(key)
        if hit is not None:
            return hit
        return self._cache["bounds"].put(key, batch_bounds_payloads(self.network, x, eps, cuts=self.config.cuts)[0])

    def certify_payload(self, x: Array, eps: float, label: int | None = None, sample: int | None = None) -> dict:
        """The certificate of one input at eps (LP solves limited to ``config.time_limit`` seconds each).

        The label is ``label`` when given, else the sample's true label when ``sample`` is given, else
        the network's prediction (robustness of the prediction of a drawn input).
        """
        from polylens.lenses.verify.certify import CertifyOptions, certify

        if label is not None:
            source = "given"
        elif sample is not None:
            label, source = int(self.y_test[sample]), "label"
        else:
            label, source = int(self.network.predict(x[None, :])[0]), "prediction"
        key = (x.tobytes(), eps, label)
        hit = self._cache["certify"].get(key)
        if hit is not None:
            return {**hit, "cached": True}
        t0 = time.perf_counter()
        cert = certify(self.network, x[None, :], np.array([label]), eps,
                            options=CertifyOptions(time_limit=self.config.time_limit))[0]
        d = self.certificate_dict(cert, x, source, time.perf_counter() - t0, sample)
        return self._cache["certify"].put(key, d)

    def certificate_dict(self, cert, x: Array, label_source: str, elapsed: float, sample: int | None) -> dict:
        """A Certificate's ``to_dict()`` plus what the page shows with it: where the label came from,
        the time taken, and for a counterexample its prediction, logits and change from x."""
        d = jsonify(cert)
        d.update({"label_source": label_source, "elapsed_s": round(elapsed, 4), "time_limit": self.config.time_limit,
                  "sample": sample, "cached": False})
        if cert.counterexample is not None:
            lg = self.network(cert.counterexample[None, :])[0]
            d["counterexample_prediction"] = int(np.argmax(lg))
            d["counterexample_logits"] = _display(lg)
            d["counterexample_delta"] = _display(cert.counterexample - x)
        return d

    def robust_payload(self, eps: float) -> dict:
        """Certification status of every test sample at eps: ``codes`` is a string with one letter per
        sample (``v`` verified, ``f`` falsified, ``u`` unknown), plus counts."""
        hit = self._robust.get(eps)
        if hit is not None:
            return hit
        from polylens.lenses.verify.certify import CertifyOptions, certify

        t0 = time.perf_counter()
        certs = certify(self.network, self.x_test, self.y_test, eps,
                             options=CertifyOptions(time_limit=self.config.time_limit)) if self.n_samples else []
        codes = "".join(c.status.value[0] for c in certs)
        out = {"eps": eps, "codes": codes, "counts": {s: codes.count(s[0]) for s in ("verified", "falsified", "unknown")},
               "elapsed_s": round(time.perf_counter() - t0, 3)}
        return self._robust.put(eps, out)

    def rename(self, layer: Any, j: Any, name: Any) -> dict:
        """Give neuron (layer, j) a name (empty: remove it) and keep it where :class:`NameStore` says."""
        layer, j = self.parse_neuron(layer, j, "rename")
        name = parse_name(name)
        with self._lock:
            model = self.model.with_neuron_names({f"L{layer}.n{j}": name})
            path = self.names.save(model)
            self._model = model
        return {"key": f"L{layer}.n{j}", "name": model.neuron_name(layer, j), "saved_to": str(path) if path else None,
                "storage": self.names.kind, "note": self.names.note}

    def parse_neuron(self, layer: Any, j: Any, where: str = "the explorer") -> tuple[int, int]:
        widths = self.network.hidden_widths
        layer = check_int(layer, "layer", where, 1, len(widths))
        j = check_int(j, "neuron", where, 0, widths[layer - 1] - 1)
        return layer, j

    # -- background analyses -------------------------------------------------------------------

    def job(self, key: str, fn: Callable[[], Any]) -> dict:
        """Run ``fn`` once in the analysis thread and report on it: ``{"status": "running"}`` until it
        is done, then ``{"status": "ready", **result}`` (or ``{"status": "error", "error": ...}``).
        Long analyses (neuron report, signatures, prototypes) run this way so no request waits on them."""
        with self._lock:
            fut = self._jobs.get(key)
            if fut is None:
                fut = self._jobs[key] = self._analysis_pool.submit(fn)
        return self._job_state(fut)

    def job_result(self, key: str, fn: Callable[[], Any]) -> dict:
        """The same job, waited for (the static export and tests)."""
        self.job(key, fn)
        self._jobs[key].exception()
        return self._job_state(self._jobs[key])

    @staticmethod
    def _job_state(fut: Future) -> dict:
        if not fut.done():
            return {"status": "running"}
        exc = fut.exception()
        if exc is not None:
            msg = str(exc) if isinstance(exc, PolylensError) else f"{type(exc).__name__}: {exc}"
            return {"status": "error", "error": " ".join(msg.split())}
        return {"status": "ready", **fut.result()}

    def close(self) -> None:
        """Stop the background work (sweep process, analysis thread)."""
        self.sweep.stop()
        self._analysis_pool.shutdown(wait=False, cancel_futures=True)

    # -- neuron panel --------------------------------------------------------------------------

    def _neuron_report(self) -> dict:
        """Every hidden neuron's profile (:func:`polylens.lenses.discover.neurons.neuron_report` on the test
        split), keyed by neuron key, each ``NeuronProfile.to_dict()`` plus the inputs of its top and
        bottom test images."""
        from polylens.lenses.discover.neurons import neuron_report

        if self.n_samples < 2:
            raise ParameterError(f"The neuron analysis needs test images; {self.data_note}")
        rep = neuron_report(self.network, self.x_test, self.y_test, top=self.config.top_images,
                            time_limit=self.config.time_limit)
        out = {}
        for p in rep.neurons:
            d = p.to_dict()
            for side in ("top", "bottom"):
                d[f"{side}_inputs"] = _display(self.x_test[np.asarray(d[f"{side}_indices"], dtype=np.int64)])
                d[f"{side}_labels"] = self.y_test[np.asarray(d[f"{side}_indices"], dtype=np.int64)].tolist()
            out[p.key] = jsonify(d)
        return {"neurons": out, "settings": {"penalty": rep.penalty, "mode": rep.mode, "cuts": rep.cuts,
                                             "bound_method": rep.bound_method, "n_images": rep.n_images,
                                             "lp_solves": rep.lp_solves, "seconds": jsonify(rep.seconds)}}

    def suggestions(self) -> dict:
        """Suggested names of every hidden neuron (:func:`polylens.lenses.discover.naming.suggest_names`,
        deeper layers described through the current names), keyed by neuron key; {} when the input
        is not a 2-D grid."""
        from polylens.lenses.discover.naming import suggest_names

        try:
            res = suggest_names(self.model, self.x_test if self.n_samples >= 2 else None)
        except ParameterError:
            return {}
        return {s.key: jsonify(s) for s in res}

    def neuron_payload(self, layer: Any, j: Any, wait: bool = False) -> dict:
        """Everything the neuron panel shows: the name, the suggested name with its score, the
        incoming weights, and ``report`` (the neuron's profile from the neuron analysis: weight or
        effective map, LP-certified maximiser and minimiser, top and bottom test images, activation
        histogram per class), which is ``{"status": "running"}`` while the analysis runs."""
        layer, j = self.parse_neuron(layer, j, "neuron")
        key = f"L{layer}.n{j}"
        rep = (self.job_result if wait else self.job)("neurons", self._neuron_report)
        if rep["status"] == "ready":
            report = {"status": "ready", **rep["neurons"][key], "settings": rep["settings"]}
        else:
            report = rep
        W = self.network.layers[layer - 1].W[j]
        prev, more = None, 0
        if layer > 1:  # the strongest incoming weights, by |w| (all of them for a narrow layer)
            top = np.argsort(-np.abs(W), kind="stable")[:self.config.max_nodes]
            prev = [{"key": f"L{layer - 1}.n{i}", "name": self.model.neuron_name(layer - 1, int(i)),
                     "weight": _display(W[i])} for i in top.tolist()]
            more = int(W.shape[0] - top.shape[0])
        return {"key": key, "layer": layer, "neuron": j, "name": self.model.neuron_name(layer, j),
                "named": key in self.model.card.neuron_names, "activation": str(self.network.activations[layer - 1]),
                "weights": _display(W), "bias": _display(self.network.layers[layer - 1].b[j]), "inputs": prev,
                "inputs_more": more,
                "suggestion": self.suggestions().get(key), "report": report}

    # -- whole-network analyses ----------------------------------------------------------------

    def _signatures(self, eps: float) -> dict:
        from polylens.lenses.discover.signatures import signatures

        if self.n_samples < 2:
            raise ParameterError(f"The signature analysis needs test images; {self.data_note}")
        r = signatures(self.network, self.x_test, self.y_test, eps=eps, max_per_digit=self.config.signature_images)
        d = r.to_dict()
        keep = ("digits", "eps", "objective", "sense", "only_correct", "mode", "cuts", "input_shape", "layer_widths",
                "n_images", "n_failed", "pixel_lower_freq", "pixel_upper_freq", "pixel_lower_binding_freq",
                "pixel_upper_binding_freq", "cut_tight_freq", "pre_bound_freq", "mean_input",
                "distinct_accuracy", "distinct_per_digit", "seconds")
        # Per layer, the neurons whose envelope tightness is drawn: all, or for a wide layer the
        # max_nodes whose tightness varies most across digits.
        show = []
        for c in r.cut_tight_freq:  # (D, n_l, 2)
            n = c.shape[1]
            with warnings.catch_warnings():  # a digit without images has NaN rows
                warnings.simplefilter("ignore", RuntimeWarning)
                spread = np.nan_to_num(np.nanstd(c, axis=0)).sum(axis=1)
            show.append(np.arange(n).tolist() if n <= self.config.max_nodes
                        else np.sort(np.argsort(-spread, kind="stable")[:self.config.max_nodes]).tolist())
        return {"eps": eps, "max_per_digit": self.config.signature_images, "result": jsonify({k: d[k] for k in keep}),
                "pixel_map": _display(np.stack([r.pixel_map(dg).ravel() for dg in r.digits])), "cut_show": show}

    def signatures_payload(self, eps: float | None = None, wait: bool = False) -> dict:
        """Per-digit constraint signatures (:func:`polylens.lenses.discover.signatures.signatures`) at eps
        (default ``config.signature_eps``): how often each pixel sits at the lower (red) or upper
        (blue) end of its box at the LP optimum of the digit's logit, and how often each envelope
        side is tight. Per-image arrays are left out."""
        e = self.config.signature_eps if eps is None else eps
        return (self.job_result if wait else self.job)(f"signatures:{e!r}", lambda: self._signatures(e))

    def _prototypes(self) -> dict:
        from polylens.lenses.discover.prototypes import prototypes

        if self.n_samples < 2:
            raise ParameterError(f"The prototype analysis needs test images; {self.data_note}")
        r = prototypes(self.network, self.x_test, self.y_test, eps=self.config.prototype_eps,
                       lam=self.config.prototype_lam)
        return {"result": jsonify(r)}

    def prototypes_payload(self, wait: bool = False) -> dict:
        """Max-margin prototypes (:func:`polylens.lenses.discover.prototypes.prototypes`), one per digit."""
        return (self.job_result if wait else self.job)("prototypes", self._prototypes)

    def formulas(self) -> dict:
        """Per-digit formulas (:func:`polylens.lenses.discover.trace.digit_formulas`, layer 1, current names)
        keyed by digit: text, explanation, terms; cached until a rename."""
        from polylens.lenses.discover.trace import digit_formulas

        key = tuple(sorted(self.model.card.neuron_names.items()))
        hit = self._formulas.get(key)
        if hit is None:
            out = {}
            if self.n_samples >= 2:
                for f in digit_formulas(self.model, self.x_test, self.y_test):
                    out[str(f.digit)] = {"digit": f.digit, "layer": f.layer, "n_images": f.n_images,
                                         "accuracy": f.accuracy, "text": f.text, "explanation": f.explanation,
                                         "constant": f.constant, "mean_logit": f.mean_logit,
                                         "terms": [t.to_dict() for t in f.terms]}
            hit = self._formulas.put(key, jsonify(out))
        return hit

    def trace_payload(self, x: Array, target: int | None = None, with_formula: bool = True) -> dict:
        """The exact decomposition of one input's logit ``target`` (default: the prediction) by
        :func:`polylens.lenses.discover.trace.trace`: the flow through every pixel and named neuron into the
        logit, a diagram of the flow (same layout as the network diagram; edge ``c`` is the flow
        along that edge), per hidden layer the identity ``logit = sum of flows + constants`` as text,
        and (``with_formula``) the digit's average formula (:func:`digit_formulas`)."""
        from polylens.lenses.discover.trace import trace

        tr = trace(self.model, x, target=target)
        k = tr.target
        H = tr.n_hidden_layers
        key = (x.tobytes(), k, with_formula, tuple(sorted(self.model.card.neuron_names.items())))
        hit = self._cache["trace"].get(key)
        if hit is not None:
            return hit
        C = self.network.n_classes
        node_vals = [tr.node_flow(0)[k], *[tr.node_flow(l)[k] for l in range(1, H + 1)], tr.logits]
        mats = [tr.edge_flow(l, k) for l in range(1, H + 1)]
        last = np.zeros((C, tr.edge_flow(H + 1, k).shape[1]))
        last[k] = tr.edge_flow(H + 1, k)[0]
        mats.append(last)
        diagram = flow_diagram(node_vals, mats, [layer.W for layer in self.network.layers],
                               max_nodes=self.config.max_nodes, max_edges=self.config.max_edges, output_shown=[k])
        layers, equations = [], []
        for l in range(1, H + 1):
            flow, const = tr.node_flow(l)[k], tr.constant_flow(l)[k]
            later = float(tr.later_constants(l)[k])
            names = tr.names[l - 1]
            layers.append({"layer": l, "names": list(names), "keys": [f"L{l}.n{j}" for j in range(len(names))],
                           "post": _display(tr.post[l - 1]), "gate": _display(tr.gate[l - 1]),
                           "flow": _display(flow), "constant_flow": _display(const), "later_constants": _display(later)})
            equations.append(_equation(k, names, flow, later, float(tr.logits[k])))
        formula = self.formulas().get(str(k)) if with_formula else None
        out = {"target": k, "prediction": int(np.argmax(tr.logits)), "logit": _display(tr.logits[k]),
               "logits": _display(tr.logits), "pixel_flow": _display(tr.node_flow(0)[k]),
               "pixel_constant": _display(tr.later_constants(0)[k]),
               "pixel_total": _display(tr.node_flow(0)[k].sum()), "layers": layers, "equations": equations,
               "diagram": diagram, "formula": formula}
        return self._cache["trace"].put(key, out)


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
