"""Model files: a network's weights plus the card that says what it is and how it was made.

A model is a directory holding two files and nothing executable:

``model.safetensors``
    The affine layers as float64 tensors ``layers.{i}.W`` (out, in) and ``layers.{i}.b`` (out,),
    i = 0 .. L-1. Read with safetensors only: loading a model never unpickles anything.
``card.json``
    A :class:`ModelCard`: architecture (``49-3-3-10``), activation, input shape, the data and
    preprocessing it was trained on, the seeded split, training settings, the test accuracy
    overall and per class, the command that made it, human names for hidden neurons, the polylens
    version and a creation time.

:func:`load_model` also accepts the name of a model bundled with polylens (``"seed"``: the
49-3-3-10 GELU network of the case study) and an ``.onnx`` file, whose card is derived.

Example
-------
>>> from polylens.nn.model import load_model
>>> m = load_model("seed")
>>> m.network.architecture, m.card.activation
('49-3-3-10', 'gelu')
>>> m.neuron_name(1, 0)   # hidden layer 1 (1-based), neuron 0 (0-based)
'L1.n0'
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polylens.errors import ModelError, ParameterError
from polylens.nn.activations import Activation
from polylens.nn.network import Dense, Network, NeuronId, neuron_ids

if TYPE_CHECKING:  # pragma: no cover
    from polylens.data import Split

__all__ = [
    "BUNDLED_DATASET", "CARD_FILE", "WEIGHTS_FILE", "Model", "ModelCard", "bundled_model_names",
    "evaluate", "load_model", "model_split", "save_card", "save_model",
]

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
#: The dataset name a card uses for the MNIST digits bundled with polylens.
BUNDLED_DATASET = "mnist-bundled"
#: Image side of MNIST; a bundled-data network of input width (28 / f)^2 used downsample factor f.
_MNIST_SIDE = 28
#: The default seeded split of the bundled digits (polylens.data.load_split("bundled")).
_BUNDLED_SPLIT = {"seed": 0, "n_train": 8000, "n_test": 2000}
_FACTOR_OF_WIDTH = {(_MNIST_SIDE // f) ** 2: f for f in (1, 2, 4)}


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _version() -> str:
    from polylens import __version__

    return __version__


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------
# The card


@dataclass(frozen=True)
class ModelCard:
    """What a model is and how it was made; stored as ``card.json`` next to the weights.

    ``architecture``: widths joined by dashes (``49-3-3-10``); must match the weights.
    ``activation``: one activation for every hidden layer (``gelu``, ``leaky_relu(0.1)``) or a
    comma-separated list with one per hidden layer.
    ``input_shape``: how an input vector is laid out as an image, e.g. ``(7, 7)``.
    ``dataset``: ``"mnist-bundled"``, a directory of IDX files, or ``"unknown"``.
    ``preprocessing``: ``{"downsample_factor": 4, "pixel_range": [0, 1]}``.
    ``split``: ``{"seed": 0, "n_train": 8000, "n_test": 2000}``.
    ``seed``: the training seed (None when unknown). ``training``: optimiser settings and figures.
    ``test_accuracy`` in [0, 1] and ``per_class_accuracy`` (one entry per class, NaN for a class
    absent from the test split; ``null`` in JSON) as measured on the float64 network.
    ``command``: a polylens command that reproduces the model. ``neuron_names``: human names of
    hidden neurons, keyed ``"L{layer}.n{j}"`` with layer 1-based and j 0-based.
    """

    architecture: str
    activation: str
    input_shape: tuple[int, ...]
    dataset: str
    preprocessing: dict
    split: dict
    seed: int | None = None
    training: dict = field(default_factory=dict)
    test_accuracy: float | None = None
    per_class_accuracy: list[float] | None = None
    command: str | None = None
    neuron_names: dict[str, str] = field(default_factory=dict)
    polylens_version: str = field(default_factory=_version)
    created: str = field(default_factory=_now)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "neuron_names", dict(self.neuron_names))
        if self.per_class_accuracy is not None:
            object.__setattr__(self, "per_class_accuracy",
                               [float("nan") if v is None else float(v) for v in self.per_class_accuracy])
        if self.test_accuracy is not None:
            object.__setattr__(self, "test_accuracy", float(self.test_accuracy))

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists, NaN becomes None)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["input_shape"] = list(self.input_shape)
        if self.per_class_accuracy is not None:
            d["per_class_accuracy"] = [None if math.isnan(v) else v for v in self.per_class_accuracy]
        return d

    def to_json(self) -> str:
        """Canonical JSON text: sorted keys, two-space indent, trailing newline."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = "model card") -> "ModelCard":
        """Build from a dict, naming every unknown or missing key and every mistyped value."""
        if not isinstance(data, dict):
            raise ModelError(f"The {where} must be a JSON object; got {type(data).__name__}.")
        names = [f.name for f in dataclasses.fields(cls)]
        problems = []
        unknown = sorted(set(data) - set(names))
        missing = [n for n in names if n not in data]
        if unknown:
            problems.append(f"unknown keys {', '.join(map(repr, unknown))}")
        if missing:
            problems.append(f"missing keys {', '.join(map(repr, missing))}")
        if not problems:
            problems.extend(_type_problems(data))
        if problems:
            raise ModelError(f"The {where} is malformed: {'; '.join(problems)}.")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str, where: str = "model card") -> "ModelCard":
        """Parse JSON text written by :meth:`to_json`; ModelError on anything malformed."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"The {where} is not valid JSON: {_one_line(e)}.") from None
        return cls.from_dict(data, where)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_CHECKS: dict[str, tuple[str, Any]] = {
    "architecture": ("a string", lambda v: isinstance(v, str)),
    "activation": ("a string", lambda v: isinstance(v, str)),
    "input_shape": ("a list of positive ints",
                    lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_is_int(s) and s > 0 for s in v)),
    "dataset": ("a string", lambda v: isinstance(v, str)),
    "preprocessing": ("an object", lambda v: isinstance(v, dict)),
    "split": ("an object", lambda v: isinstance(v, dict)),
    "seed": ("an int or null", lambda v: v is None or _is_int(v)),
    "training": ("an object", lambda v: isinstance(v, dict)),
    "test_accuracy": ("a number in [0, 1] or null", lambda v: v is None or (_is_num(v) and 0 <= v <= 1)),
    "per_class_accuracy": ("a list of numbers (or nulls) or null",
                           lambda v: v is None or (isinstance(v, list) and all(x is None or _is_num(x) for x in v))),
    "command": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "neuron_names": ("an object of strings",
                     lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values())),
    "polylens_version": ("a string", lambda v: isinstance(v, str)),
    "created": ("a string", lambda v: isinstance(v, str)),
}


def _type_problems(data: dict) -> list[str]:
    return [f"{k!r} must be {what} (got {data[k]!r})" for k, (what, ok) in _CHECKS.items() if not ok(data[k])]


def _activation_text(network: Network) -> str:
    shared = network.activation
    if shared is not None:
        return str(shared)
    return ",".join(str(a) for a in network.activations)


def _parse_activations(text: str, n_hidden: int) -> tuple[Activation, ...]:
    parts = [p for p in text.split(",")] if "," in text else [text] * n_hidden
    try:
        acts = tuple(Activation.parse(p) for p in parts)
    except ParameterError as e:
        raise ModelError(f"The model card's activation {text!r} is not understood: {e}") from None
    if len(acts) != n_hidden:
        raise ModelError(f"The model card lists {len(acts)} activations for {n_hidden} hidden layers.")
    return acts


def _parse_architecture(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split("-"))
    except ValueError:
        widths = ()
    if len(widths) < 2 or any(w < 1 for w in widths):
        raise ModelError(f"The model card's architecture must look like '49-3-3-10'; got {text!r}.")
    return widths


# ---------------------------------------------------------------------------------------------
# The model


def neuron_keys(network: Network) -> list[str]:
    """Every hidden neuron's structural key ``L{layer}.n{j}`` (layer 1-based, j 0-based), in order:
    the text of :func:`~polylens.nn.network.neuron_ids`."""
    return [str(n) for n in neuron_ids(network)]


@dataclass(frozen=True)
class Model:
    """A network with its card and where it was loaded from (a path, ``bundled:NAME`` or ``memory``)."""

    network: Network
    card: ModelCard
    source: str = "memory"

    def __post_init__(self):
        _check_consistent(self.network, self.card, self.source)

    def neuron_name(self, layer: int, j: int) -> str:
        """The human name of neuron ``j`` (0-based) of hidden layer ``layer`` (1-based), or
        ``"L{layer}.n{j}"`` when it has none. ParameterError for a neuron the network lacks."""
        widths = self.network.hidden_widths
        if not (1 <= layer <= len(widths)) or not (0 <= j < widths[layer - 1]):
            raise ParameterError(f"The network {self.network.architecture} has no hidden neuron "
                                 f"(layer {layer}, neuron {j}); layers are 1..{len(widths)}, neurons 0-based.")
        key = str(NeuronId(layer, j))
        return self.card.neuron_names.get(key, key)

    def with_neuron_names(self, names: dict[str, str]) -> "Model":
        """A copy whose card also carries ``names`` (merged over existing ones; an empty string
        removes a name). Keys must be hidden neurons of this network, e.g. ``"L1.n0"``."""
        valid = set(neuron_keys(self.network))
        bad = sorted(k for k in names if k not in valid)
        if bad:
            raise ParameterError(f"Unknown neuron keys {', '.join(map(repr, bad))}; this network's hidden "
                                 f"neurons are {neuron_keys(self.network)[0]} .. {neuron_keys(self.network)[-1]}.")
        merged = {**self.card.neuron_names, **{k: str(v) for k, v in names.items()}}
        merged = {k: v for k, v in merged.items() if v}
        return dataclasses.replace(self, card=dataclasses.replace(self.card, neuron_names=merged))


def _check_consistent(network: Network, card: ModelCard, source: str) -> None:
    problems = []
    if card.architecture != network.architecture:
        problems.append(f"card architecture {card.architecture} but weights {network.architecture}")
    if tuple(card.input_shape) != tuple(network.input_shape):
        problems.append(f"card input shape {tuple(card.input_shape)} but network {tuple(network.input_shape)}")
    if _parse_activations(card.activation, network.n_hidden_layers) != network.activations:
        problems.append(f"card activation {card.activation} but network {_activation_text(network)}")
    valid = set(neuron_keys(network))
    bad = sorted(k for k in card.neuron_names if k not in valid)
    if bad:
        problems.append(f"neuron names for missing neurons {', '.join(bad)}")
    if card.per_class_accuracy is not None and len(card.per_class_accuracy) != network.n_classes:
        problems.append(f"{len(card.per_class_accuracy)} per-class accuracies for {network.n_classes} classes")
    if problems:
        raise ModelError(f"The model at {source} is inconsistent: {'; '.join(problems)}.")


# ---------------------------------------------------------------------------------------------
# Saving


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename, so a
    reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:  # default permissions (umask), unlike mkstemp's 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _weights_bytes(network: Network) -> bytes:
    from safetensors.numpy import save

    tensors = {}
    for i, layer in enumerate(network.layers):
        tensors[f"layers.{i}.W"] = np.ascontiguousarray(layer.W, dtype=np.float64)
        tensors[f"layers.{i}.b"] = np.ascontiguousarray(layer.b, dtype=np.float64)
    return save(tensors, metadata={"format": "polylens", "architecture": network.architecture})


def save_card(model: Model, directory: str | os.PathLike) -> Path:
    """Write ``card.json`` of ``model`` into ``directory`` (created if needed), atomically.
    Returns the path written."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / CARD_FILE
    _atomic_write(path, model.card.to_json().encode("utf-8"))
    return path


def save_model(model: Model, directory: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``card.json`` into ``directory`` (created if needed), each
    atomically (weights first, so a directory with a card always has its weights). Returns the
    directory."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ModelError(f"Cannot save a model to {d}: it exists and is not a directory.")
    d.mkdir(parents=True, exist_ok=True)
    _atomic_write(d / WEIGHTS_FILE, _weights_bytes(model.network))
    save_card(model, d)
    return d


# ---------------------------------------------------------------------------------------------
# Loading


def _bundled_root():
    return resources.files("polylens").joinpath("models")


def bundled_model_names() -> list[str]:
    """Names of the models that ship with polylens (directories holding a card), sorted."""
    root = _bundled_root()
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir() and p.joinpath(CARD_FILE).is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read_weights(path: Path, widths: tuple[int, ...], where: str) -> list[Dense]:
    from safetensors import safe_open

    if not path.is_file():
        raise ModelError(f"The model at {where} has no {WEIGHTS_FILE}.")
    try:
        with safe_open(str(path), framework="numpy") as f:
            keys = set(f.keys())
            n = len(widths) - 1
            expected = [f"layers.{i}.{p}" for i in range(n) for p in ("W", "b")]
            missing = [k for k in expected if k not in keys]
            unknown = sorted(keys - set(expected))
            if missing or unknown:
                parts = ([f"missing tensors {', '.join(missing)}"] if missing else []) + \
                        ([f"unknown tensors {', '.join(unknown)}"] if unknown else [])
                raise ModelError(f"The weights at {where} do not match the card's architecture "
                                 f"{'-'.join(map(str, widths))}: {'; '.join(parts)}.")
            arrays = {k: f.get_tensor(k) for k in expected}
    except ModelError:
        raise
    except Exception as e:  # safetensors raises its own error type for a corrupt header
        raise ModelError(f"Cannot read {path}: {_one_line(e)}.") from None
    layers = []
    for i in range(len(widths) - 1):
        W, b = arrays[f"layers.{i}.W"], arrays[f"layers.{i}.b"]
        want_W, want_b = (widths[i + 1], widths[i]), (widths[i + 1],)
        if W.shape != want_W or b.shape != want_b:
            raise ModelError(f"The weights at {where} have layers.{i}.W of shape {W.shape} and layers.{i}.b of "
                             f"shape {b.shape}; the card's architecture needs {want_W} and {want_b}.")
        if W.dtype.kind != "f" or b.dtype.kind != "f":
            raise ModelError(f"The weights at {where} must be floating point; layers.{i} has {W.dtype}/{b.dtype}.")
        layers.append(Dense(W.astype(np.float64), b.astype(np.float64)))
    return layers


def _load_dir(directory: Path, source: str) -> Model:
    if (directory / "module.json").is_file():  # a torch module kept beside its card (polylens.nn.module_dir)
        from polylens.nn.module_dir import load_module_dir

        return load_module_dir(directory, source)
    card_path = directory / CARD_FILE
    if not card_path.is_file():
        raise ModelError(f"The model directory {source} has no {CARD_FILE}.")
    try:
        text = card_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"The model card {card_path} is not UTF-8 text.") from None
    card = ModelCard.from_json(text, where=f"model card {card_path}")
    widths = _parse_architecture(card.architecture)
    layers = _read_weights(directory / WEIGHTS_FILE, widths, source)
    acts = _parse_activations(card.activation, len(widths) - 2)
    try:
        network = Network(tuple(layers), acts, tuple(card.input_shape))
    except ModelError as e:
        raise ModelError(f"The model at {source} is malformed: {e}") from None
    return Model(network, card, source)


def _display_shape(width: int) -> tuple[int, ...]:
    side = math.isqrt(width)
    return (side, side) if side * side == width and width > 1 else (width,)


def card_for_network(network: Network, dataset: str = "unknown", factor: int | None = None) -> ModelCard:
    """A minimal card for a network that came without one (an ONNX file, a network built in code).

    A width of 784, 196 or 49 is read as MNIST downsampled by 1, 2 or 4 (dataset
    ``mnist-bundled``) unless ``dataset`` says otherwise; any other width gets dataset
    ``unknown``, which has no test split to evaluate on.
    """
    if dataset == "unknown" and network.input_dim in _FACTOR_OF_WIDTH and network.n_classes == 10:
        dataset, factor = BUNDLED_DATASET, _FACTOR_OF_WIDTH[network.input_dim]
    return ModelCard(
        architecture=network.architecture,
        activation=_activation_text(network),
        input_shape=tuple(network.input_shape),
        dataset=dataset,
        preprocessing={"downsample_factor": factor, "pixel_range": [0, 1]} if factor else {},
        split=dict(_BUNDLED_SPLIT) if dataset == BUNDLED_DATASET else {},
    )


def _load_onnx(path: Path, source: str) -> Model:
    from polylens.nn.onnx_io import from_onnx

    network = from_onnx(path)
    if network.input_shape == (network.input_dim,):
        network = Network(network.layers, network.activations, _display_shape(network.input_dim))
    return Model(network, card_for_network(network), source)


def load_model(spec: str | os.PathLike) -> Model:
    """Load a model from a bundled name (``"seed"``), a model directory, or an ``.onnx`` file.

    An existing path wins over a bundled name. Anything missing or malformed (no such path,
    unknown bundled name, malformed card JSON, missing or extra tensors, a shape that does not
    match the card) raises :class:`ModelError` with a one-line message. Only safetensors and
    JSON are read from a model directory; nothing is ever unpickled (``.pt``/``.pth`` pickles
    are refused).
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_dir(path, str(path))
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            return _load_onnx(path, str(path))
        if path.name in (CARD_FILE, WEIGHTS_FILE):
            return _load_dir(path.parent, str(path.parent))
        if suffix in (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"):
            raise ModelError(f"{path} looks like a pickle; polylens never unpickles files. Export the "
                             "network to ONNX, or save it as a polylens model directory.")
        raise ModelError(f"{path} is not a model: give a model directory (card.json + model.safetensors), "
                         "an .onnx file or a bundled model name.")
    names = bundled_model_names()
    if os.sep not in text and "/" not in text and not path.suffix:
        if text in names:
            with resources.as_file(_bundled_root().joinpath(text)) as p:
                model = _load_dir(Path(p), f"bundled:{text}")
            return model
        known = ", ".join(names) or "none"
        raise ModelError(f"No model {text!r}: not a file or directory, and not a bundled model "
                         f"(bundled models: {known}).")
    raise ModelError(f"No model at {text}: the path does not exist.")


# ---------------------------------------------------------------------------------------------
# Data and evaluation


def model_split(model: Model) -> "Split":
    """The train/test split named by the model's card (dataset, downsample factor, split seed),
    for evaluation. ModelError when the card names no dataset polylens can load."""
    from polylens.data import load_split

    card = model.card
    if card.dataset in ("", "unknown"):
        raise ModelError(f"The model at {model.source} does not say which data it was trained on "
                         "(card dataset 'unknown'); evaluate it with explicit data instead.")
    factor = card.preprocessing.get("downsample_factor")
    if not isinstance(factor, int) or isinstance(factor, bool):
        raise ModelError(f"The model card at {model.source} has no integer preprocessing.downsample_factor.")
    seed = card.split.get("seed", 0)
    n_test = card.split.get("n_test")
    if card.dataset == BUNDLED_DATASET:
        split = load_split(source="bundled", factor=factor, seed=seed, n_test=n_test)
    else:
        # An IDX directory: all of t10k unless the card recorded a smaller seeded subset.
        split = load_split(source=card.dataset, factor=factor, seed=seed)
        if isinstance(n_test, int) and 0 < n_test < len(split.y_test):
            split = load_split(source=card.dataset, factor=factor, seed=seed, n_test=n_test)
    if split.x_test.shape[1] != model.network.input_dim:
        raise ModelError(f"The data named by the card at {model.source} has width {split.x_test.shape[1]}, "
                         f"but the network takes {model.network.input_dim} inputs.")
    return split


def evaluate(network: Network, x: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> tuple[float, list[float]]:
    """Accuracy of ``network`` on inputs ``x`` (N, d) with integer labels ``y`` (N,).

    Returns ``(accuracy, per_class)`` where ``per_class[c]`` is the accuracy on the examples of
    class c (NaN for a class with no examples), for c in 0 .. n_classes-1 (default: the
    network's output width). Predictions are argmax of the float64 logits.
    """
    n_classes = network.n_classes if n_classes is None else int(n_classes)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(np.atleast_2d(x)) or len(y) == 0:
        raise ParameterError(f"evaluate needs one label per input; got {len(np.atleast_2d(x))} inputs and labels of shape {y.shape}.")
    if y.min() < 0 or y.max() >= n_classes:
        raise ParameterError(f"Labels must lie in 0..{n_classes - 1}; got labels in {y.min()}..{y.max()}.")
    y = y.astype(np.int64)
    correct = (network.predict(x) == y).astype(np.float64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    hits = np.bincount(y, weights=correct, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, hits / np.maximum(counts, 1.0), np.nan)
    return float(correct.mean()), [float(v) for v in per_class]
