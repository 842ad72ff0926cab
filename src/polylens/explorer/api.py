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
* :meth:`Explorer.certify_payload` - a :class:`~polylens.analyses.certify.Certificate` as JSON.
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

import dataclasses
import hashlib
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from polylens.errors import ModelError, ParameterError, PolylensError
from polylens.nn.model import Model, ModelCard, neuron_keys, save_card
from polylens.nn.network import Network
from polylens.validation import check_float, check_int

__all__ = [
    "Explorer", "ExplorerConfig", "NameStore", "SweepRunner", "batch_bounds_payloads", "certify_safe",
    "diagram_payload", "jsonify", "parse_eps", "parse_input",
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
    ``sweep_chunk``: images per background job.
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


def jsonify(obj: Any) -> Any:
    """``obj`` with numpy values, tuples, enums and result objects (anything with ``to_dict``) turned
    into JSON types; NaN and infinities become None (JSON has no NaN)."""
    from enum import Enum

    if isinstance(obj, dict):
        return {str(k): jsonify(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonify(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonify(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Enum):
        return jsonify(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "to_dict"):
        return jsonify(obj.to_dict())
    if dataclasses.is_dataclass(obj):
        return jsonify({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    raise TypeError(f"cannot turn {type(obj).__name__} into JSON")


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
# Certification (with a guard for a batch that needs no LP; see certify_safe)


def certify_safe(network: Network, x: Array, y: Array, eps: float, *, options=None, indices=None):
    """:func:`~polylens.analyses.certify.certify`, robust to a batch in which no image reaches the
    LP stage: certify's LP stage then builds polytopes for zero images, which fails in the current
    ``build_polytopes`` (division by zero). The result without the LP stage is identical in that
    case (no image would have been sent to an LP), so the call is repeated with ``use_lp=False``."""
    from polylens.analyses.certify import CertifyOptions, certify

    options = options or CertifyOptions()
    try:
        return certify(network, x, y, eps, options=options, indices=indices)
    except ZeroDivisionError:
        return certify(network, x, y, eps, options=dataclasses.replace(options, use_lp=False), indices=indices)


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


def diagram_payload(network: Network, x: Array, fp_post: Sequence[Array], logits: Array, *,
                    max_nodes: int = 16, max_edges: int = 240) -> dict:
    """What the network diagram draws for one input.

    ``columns``: one per layer (input, hidden 1..H, output) with ``shown`` (neuron indices drawn) and
    ``more`` (how many are folded into one "+N more" node, index -1). ``edges``: one entry per pair of
    adjacent columns, parallel lists ``src``, ``dst`` (neuron index or -1), ``c`` (contribution
    w * a of the source's activation to the target's pre-activation; for the "+N more" node the sum
    over its members) and ``w`` (the weight, None for an aggregated edge), the ``max_edges``
    strongest |c| that are non-zero, strongest first; ``total`` counts the non-zero contributions.
    """
    vals = [np.asarray(x, dtype=np.float64)] + [np.asarray(p, dtype=np.float64) for p in fp_post] + \
           [np.asarray(logits, dtype=np.float64)]
    L = len(network.layers)
    columns = []
    shown = []
    for c, v in enumerate(vals):
        if c == 0:
            s = np.arange(v.shape[0]) if v.shape[0] <= 1024 else _shown(v, 1024)
            kind = "input"
        elif c == L:
            s = np.arange(v.shape[0]) if v.shape[0] <= 32 else _shown(v, 32)
            kind = "output"
        else:
            s = _shown(v, max_nodes)
            kind = "hidden"
        shown.append(s)
        columns.append({"kind": kind, "layer": c, "width": int(v.shape[0]), "shown": s.tolist(),
                        "more": int(v.shape[0] - s.shape[0])})
    edges = []
    for c in range(1, L + 1):
        W = network.layers[c - 1].W  # (out, in)
        src_v = vals[c - 1]
        C = W * src_v[None, :]
        s_in, s_out = shown[c - 1], shown[c]
        hid_in = np.setdiff1d(np.arange(W.shape[1]), s_in)
        hid_out = np.setdiff1d(np.arange(W.shape[0]), s_out)
        # Rows: shown targets then (if any) the aggregate; columns likewise.
        rows = [C[s_out]] + ([C[hid_out].sum(axis=0, keepdims=True)] if hid_out.size else [])
        Cr = np.concatenate(rows, axis=0)
        cols = [Cr[:, s_in]] + ([Cr[:, hid_in].sum(axis=1, keepdims=True)] if hid_in.size else [])
        Ca = np.concatenate(cols, axis=1)
        dst_ids = np.concatenate([s_out, [-1] * bool(hid_out.size)]).astype(np.int64)
        src_ids = np.concatenate([s_in, [-1] * bool(hid_in.size)]).astype(np.int64)
        di, si = np.nonzero(Ca != 0)
        mag = np.abs(Ca[di, si])
        order = np.argsort(-mag, kind="stable")[:max_edges]
        di, si = di[order], si[order]
        src, dst = src_ids[si], dst_ids[di]
        real = (src >= 0) & (dst >= 0)
        w = [float(f"{W[d, s]:.{DISPLAY_DIGITS}g}") if r else None
             for s, d, r in zip(src.tolist(), dst.tolist(), real.tolist())]
        edges.append({"from": c - 1, "to": c, "src": src.tolist(), "dst": dst.tolist(),
                      "c": _display(Ca[di, si]), "w": w, "total": int(np.count_nonzero(C))})
    return {"columns": columns, "edges": edges}


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


def _sweep_chunk(network: Network, x: Array, y: Array, idx: Array, eps: float, time_limit: float) -> list[dict]:
    """One background job: certificates of x[idx] at eps, as dicts (runs in a worker process)."""
    from polylens.analyses.certify import CertifyOptions

    certs = certify_safe(network, x, y, eps, indices=idx, options=CertifyOptions(time_limit=time_limit))
    return [{**c.to_dict(), "lp_class": None} for c in certs]


class SweepRunner:
    """A modest robustness sweep computed in the background (one spawned worker process, so the
    server's threads keep the interpreter to themselves), summarised per digit with
    :func:`~polylens.analyses.sweep.summarize` when every chunk is in."""

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
            for e in self.eps:
                for s in range(0, n, self.chunk):
                    ids = np.arange(s, min(n, s + self.chunk))
                    self._futures.append(self._pool.submit(_sweep_chunk, self.network, self.x[ids], self.y[ids],
                                                           ids, e, self.time_limit))

    def stop(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    def payload(self) -> dict:
        """``{"status": "idle" | "running" | "ready" | "error", "done", "total", "n", "eps", "summary"}``."""
        from polylens.analyses.sweep import summarize

        with self._lock:
            base = {"n": int(len(self.x)), "eps": list(self.eps), "done": 0, "total": len(self._futures)}
            if self._result is not None:
                return self._result
            if self._error is not None:
                return {**base, "status": "error", "error": self._error}
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


def _optional(module: str, name: str):
    """A function of an analysis module, or None while that module is not there yet."""
    import importlib

    try:
        mod = importlib.import_module(f"polylens.analyses.{module}")
    except ImportError:
        return None
    return getattr(mod, name, None)


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
        self._neurons = _LRU(512)
        self._once: dict[str, Any] = {}
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

    def resolve(self, body: Any, where: str) -> tuple[Array, int | None]:
        """The input of a request body: ``{"sample": i}`` (a test sample) or ``{"x": [...]}``."""
        if not isinstance(body, dict):
            raise ParameterError(f"The request body of {where} must be a JSON object. Got {type(body).__name__} instead.")
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
            "analyses": {name: _optional(mod, fn) is not None for name, mod, fn in _ANALYSES},
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
        key = (x.tobytes(), eps, self.config.cuts)
        hit = self._cache["bounds"].get(key)
        if hit is not None:
            return hit
        return self._cache["bounds"].put(key, batch_bounds_payloads(self.network, x, eps, cuts=self.config.cuts)[0])

    def certify_payload(self, x: Array, eps: float, label: int | None = None, sample: int | None = None) -> dict:
        """The certificate of one input at eps (LP solves limited to ``config.time_limit`` seconds each).

        The label is the sample's true label when ``sample`` is given, else ``label`` when given, else
        the network's prediction (robustness of the prediction of a drawn input).
        """
        from polylens.analyses.certify import CertifyOptions

        if sample is not None:
            label, source = int(self.y_test[sample]), "label"
        elif label is not None:
            source = "given"
        else:
            label, source = int(self.network.predict(x[None, :])[0]), "prediction"
        key = (x.tobytes(), eps, label)
        hit = self._cache["certify"].get(key)
        if hit is not None:
            return {**hit, "cached": True}
        t0 = time.perf_counter()
        cert = certify_safe(self.network, x[None, :], np.array([label]), eps,
                            options=CertifyOptions(time_limit=self.config.time_limit))[0]
        d = jsonify(cert)
        d.update({"label_source": source, "elapsed_s": round(time.perf_counter() - t0, 4),
                  "time_limit": self.config.time_limit, "sample": sample, "cached": False})
        if cert.counterexample is not None:
            lg = self.network(cert.counterexample[None, :])[0]
            d["counterexample_prediction"] = int(np.argmax(lg))
            d["counterexample_logits"] = _display(lg)
        return self._cache["certify"].put(key, d)

    def robust_payload(self, eps: float) -> dict:
        """Certification status of every test sample at eps: ``codes`` is a string with one letter per
        sample (``v`` verified, ``f`` falsified, ``u`` unknown), plus counts."""
        hit = self._robust.get(eps)
        if hit is not None:
            return hit
        from polylens.analyses.certify import CertifyOptions

        t0 = time.perf_counter()
        certs = certify_safe(self.network, self.x_test, self.y_test, eps,
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
        self._neurons.data.clear()
        return {"key": f"L{layer}.n{j}", "name": model.neuron_name(layer, j), "saved_to": str(path) if path else None,
                "storage": self.names.kind, "note": self.names.note}

    def parse_neuron(self, layer: Any, j: Any, where: str = "the explorer") -> tuple[int, int]:
        widths = self.network.hidden_widths
        layer = check_int(layer, "layer", where, 1, len(widths))
        j = check_int(j, "neuron", where, 0, widths[layer - 1] - 1)
        return layer, j

    # -- neuron panel --------------------------------------------------------------------------

    def neuron_payload(self, layer: Any, j: Any) -> dict:
        """Everything the neuron panel shows: the neuron_report analysis (weight map, LP maximiser and
        minimiser, top and bottom test images, per-class activation histograms) when it is available,
        the suggested name with its score, and the current name."""
        layer, j = self.parse_neuron(layer, j, "neuron")
        hit = self._neurons.get((layer, j))
        if hit is None:
            hit = self._neurons.put((layer, j), self._neuron_analysis(layer, j))
        return {**hit, "key": f"L{layer}.n{j}", "name": self.model.neuron_name(layer, j),
                "named": f"L{layer}.n{j}" in self.model.card.neuron_names}

    def _neuron_analysis(self, layer: int, j: int) -> dict:
        report = _optional("neurons", "neuron_report")
        out: dict[str, Any] = {"layer": layer, "neuron": j}
        if report is not None and self.n_samples:
            out["report"] = jsonify(self._call_neuron_report(report, layer, j))
        else:
            out["report"] = None
            out["report_note"] = ("The neuron analysis (polylens.analyses.neurons) is not available in this "
                                  "installation." if report is None else "No test samples to analyse.")
        out.update(self._neuron_basics(layer, j))
        out["suggestion"] = self._suggestion(layer, j)
        return out

    def _call_neuron_report(self, fn: Callable, layer: int, j: int):
        return fn(self.network, self.x_test, self.y_test, layer, j)

    def _neuron_basics(self, layer: int, j: int) -> dict:
        """Facts read straight off the network: incoming weights (as an image for the first layer)."""
        W = self.network.layers[layer - 1].W[j]
        out = {"weights": _display(W), "bias": _display(self.network.layers[layer - 1].b[j]),
               "weights_shape": list(self.network.input_shape) if layer == 1 else [int(W.shape[0])]}
        return out

    def _suggestion(self, layer: int, j: int) -> dict | None:
        names = self._once_call("names", self._suggest_all)
        if not names:
            return None
        return names.get(f"L{layer}.n{j}")

    def _suggest_all(self) -> dict | None:
        fn = _optional("naming", "suggest_names")
        if fn is None or not self.n_samples:
            return None
        res = jsonify(fn(self.network, self.x_test, self.y_test))
        return _index_suggestions(res)

    def _once_call(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._once:
            value = fn()
            with self._lock:
                self._once.setdefault(key, value)
        return self._once[key]

    # -- whole-network analyses ----------------------------------------------------------------

    def signatures_payload(self, eps: float | None = None) -> dict:
        fn = _optional("signatures", "signatures")
        if fn is None:
            return {"available": False, "note": "The signature analysis is not available in this installation."}
        e = self.config.eps if eps is None else eps
        return self._once_call(f"signatures:{e}", lambda: {
            "available": True, "eps": e, "result": jsonify(fn(self.network, self.x_test, self.y_test, eps=e))})

    def prototypes_payload(self) -> dict:
        fn = _optional("prototypes", "prototypes")
        if fn is None:
            return {"available": False, "note": "The prototype analysis is not available in this installation."}
        return self._once_call("prototypes", lambda: {"available": True, "result": jsonify(fn(self.network))})

    def trace_payload(self, x: Array, target: int | None) -> dict:
        fn = _optional("trace", "trace")
        if fn is None:
            return {"available": False, "note": "The trace analysis is not available in this installation."}
        target = int(self.network.predict(x[None, :])[0]) if target is None else target
        key = (x.tobytes(), target, tuple(sorted(self.model.card.neuron_names.items())))
        hit = self._cache["trace"].get(key)
        if hit is None:
            hit = self._cache["trace"].put(key, {"available": True, "target": target,
                                                 "result": jsonify(fn(self.model, x, target=target))})
        return hit


#: (payload key, module, function) of the analyses other modules provide.
_ANALYSES = (("neurons", "neurons", "neuron_report"), ("naming", "naming", "suggest_names"),
             ("signatures", "signatures", "signatures"), ("prototypes", "prototypes", "prototypes"),
             ("trace", "trace", "trace"))


def _index_suggestions(res: Any) -> dict:
    """Suggested names keyed by neuron key, from whatever list/dict shape suggest_names returns."""
    if isinstance(res, dict) and all(isinstance(v, dict) for v in res.values()):
        return res
    if isinstance(res, dict) and "suggestions" in res:
        res = res["suggestions"]
    out = {}
    if isinstance(res, list):
        for item in res:
            if isinstance(item, dict) and "key" in item:
                out[item["key"]] = item
    return out
