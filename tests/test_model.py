"""Model files: save/load round trips, malformed inputs, no unpickling, the bundled seed model."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from polylens.errors import ModelError, ParameterError
from polylens.nn import Network
from polylens.nn.model import (
    CARD_FILE, WEIGHTS_FILE, Model, ModelCard, bundled_model_names, card_for_network, evaluate, load_model,
    model_split, save_card, save_model,
)

from conftest import random_network


def _model(widths=(49, 3, 3, 10), act="gelu", seed=0) -> Model:
    net = random_network(widths, act, seed=seed)
    net = Network(net.layers, net.activations, (7, 7) if widths[0] == 49 else None)
    card = dataclasses.replace(card_for_network(net), seed=seed, training={"epochs": 1, "lr": 0.01},
                               test_accuracy=0.5, per_class_accuracy=[0.1 * i for i in range(widths[-1])],
                               command="polylens train 49-3-3-10 --seed 0 --out x")
    return Model(net, card)


def _same_weights(a: Network, b: Network) -> bool:
    return len(a.layers) == len(b.layers) and all(
        np.array_equal(x.W, y.W) and np.array_equal(x.b, y.b) for x, y in zip(a.layers, b.layers))


def test_round_trip_is_exact(tmp_path):
    """Saving then loading gives bit-identical float64 weights, an equal card and the neuron names."""
    m = _model().with_neuron_names({"L1.n0": "loop detector", "L2.n2": "stroke"})
    save_model(m, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert _same_weights(m.network, back.network)
    assert back.card == m.card
    assert back.network.activations == m.network.activations
    assert back.network.input_shape == (7, 7)
    assert back.neuron_name(1, 0) == "loop detector" and back.neuron_name(2, 2) == "stroke"
    assert back.neuron_name(1, 1) == "L1.n1"
    assert back.source == str(tmp_path / "m")
    tensors = load_file(str(tmp_path / "m" / WEIGHTS_FILE))
    assert sorted(tensors) == [f"layers.{i}.{p}" for i in range(3) for p in "Wb"]
    assert all(t.dtype == np.float64 for t in tensors.values())


def test_round_trip_mixed_activations_and_nan_class(tmp_path):
    """A network with a different activation per layer and a class absent from the test data
    (NaN accuracy, stored as JSON null) survives the round trip."""
    net = Network.from_arrays([np.eye(2), np.ones((2, 2)), np.ones((3, 2))], [np.zeros(2), np.zeros(2), np.zeros(3)],
                              ["relu", "leaky_relu(0.2)"])
    card = dataclasses.replace(card_for_network(net), per_class_accuracy=[1.0, float("nan"), 0.5])
    save_model(Model(net, card), tmp_path)
    assert "null" in (tmp_path / CARD_FILE).read_text()
    back = load_model(tmp_path)
    assert back.network.activations == net.activations
    assert back.card.per_class_accuracy[0] == 1.0 and math.isnan(back.card.per_class_accuracy[1])


def test_save_card_rewrites_only_the_card(tmp_path):
    """save_card updates names without touching the weights file; no temporary files are left behind."""
    m = _model()
    save_model(m, tmp_path)
    before = (tmp_path / WEIGHTS_FILE).read_bytes()
    save_card(m.with_neuron_names({"L1.n2": "left edge"}), tmp_path)
    assert (tmp_path / WEIGHTS_FILE).read_bytes() == before
    assert load_model(tmp_path).neuron_name(1, 2) == "left edge"
    assert sorted(p.name for p in tmp_path.iterdir()) == [CARD_FILE, WEIGHTS_FILE]


def test_model_checks_card_against_network():
    """A Model whose card disagrees with its network (architecture, activation, input shape,
    per-class count) is refused with every disagreement named."""
    m = _model()
    bad = dataclasses.replace(m.card, architecture="49-4-3-10", activation="relu", input_shape=(49,),
                              per_class_accuracy=[0.5] * 3)
    with pytest.raises(ModelError) as e:
        Model(m.network, bad)
    for w in ("49-4-3-10", "relu", "(49,)", "3 per-class"):
        assert w in str(e.value)


def test_neuron_names_are_checked():
    """Names for neurons the network lacks, and lookups of such neurons, are ParameterErrors."""
    m = _model()
    with pytest.raises(ParameterError, match="L3.n0"):
        m.with_neuron_names({"L3.n0": "x"})
    with pytest.raises(ParameterError):
        m.neuron_name(1, 3)
    assert m.with_neuron_names({"L1.n0": "a"}).with_neuron_names({"L1.n0": ""}).card.neuron_names == {}


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(colour="red"), ["unknown", "'colour'"]),
    (lambda d: d.pop("architecture"), ["missing", "'architecture'"]),
    (lambda d: (d.pop("seed"), d.update(extra=1)), ["'extra'", "'seed'"]),
    (lambda d: d.update(test_accuracy=1.5), ["'test_accuracy'"]),
    (lambda d: d.update(input_shape="7x7"), ["'input_shape'"]),
])
def test_card_validation_names_the_problem(edit, words):
    """from_json rejects unknown, missing and mistyped keys, naming each of them."""
    d = json.loads(_model().card.to_json())
    edit(d)
    with pytest.raises(ModelError) as e:
        ModelCard.from_json(json.dumps(d))
    for w in words:
        assert w in str(e.value)
    assert "\n" not in str(e.value)


def _write_dir(tmp_path, mutate_card=None, mutate_tensors=None) -> Path:
    d = tmp_path / "model"
    save_model(_model(), d)
    if mutate_card is not None:
        (d / CARD_FILE).write_text(mutate_card((d / CARD_FILE).read_text()))
    if mutate_tensors is not None:
        t = load_file(str(d / WEIGHTS_FILE))
        mutate_tensors(t)
        save_file(t, str(d / WEIGHTS_FILE))
    return d


@pytest.mark.parametrize("case, match", [
    ("missing dir", "does not exist"),
    ("no card", "no card.json"),
    ("no weights", "no model.safetensors"),
    ("bad json", "not valid JSON"),
    ("missing tensor", "missing tensors layers.2.b"),
    ("extra tensor", "unknown tensors layers.3.W"),
    ("shape", r"layers.1.W of shape \(4, 3\)"),
    ("arch mismatch", r"architecture needs \(4, 49\)"),
    ("bad activation", "not understood"),
    ("corrupt weights", "Cannot read"),
    ("unknown bundled", r"bundled models: (.*, )?seed"),
    ("pickle file", "never unpickles"),
])
def test_malformed_models_raise_one_line_model_errors(tmp_path, case, match):
    """Every way a model can be missing or malformed is a ModelError with a one-line message."""
    if case == "missing dir":
        spec = tmp_path / "nope" / "model"
    elif case == "no card":
        spec = _write_dir(tmp_path)
        (spec / CARD_FILE).unlink()
    elif case == "no weights":
        spec = _write_dir(tmp_path)
        (spec / WEIGHTS_FILE).unlink()
    elif case == "bad json":
        spec = _write_dir(tmp_path, mutate_card=lambda s: s[:-10])
    elif case == "missing tensor":
        spec = _write_dir(tmp_path, mutate_tensors=lambda t: t.pop("layers.2.b"))
    elif case == "extra tensor":
        spec = _write_dir(tmp_path, mutate_tensors=lambda t: t.update({"layers.3.W": np.zeros((2, 2))}))
    elif case == "shape":
        spec = _write_dir(tmp_path, mutate_tensors=lambda t: t.update({"layers.1.W": np.zeros((4, 3))}))
    elif case == "arch mismatch":
        spec = _write_dir(tmp_path, mutate_card=lambda s: s.replace("49-3-3-10", "49-4-3-10"))
    elif case == "bad activation":
        spec = _write_dir(tmp_path, mutate_card=lambda s: s.replace('"gelu"', '"swish9"'))
    elif case == "corrupt weights":
        spec = _write_dir(tmp_path)
        (spec / WEIGHTS_FILE).write_bytes(b"\xff" * 40)
    elif case == "unknown bundled":
        spec = "no-such-model"
    else:
        spec = tmp_path / "model.pt"
        spec.write_bytes(pickle.dumps({"W": [1.0]}))
    with pytest.raises(ModelError, match=match) as e:
        load_model(spec)
    assert "\n" not in str(e.value)


class _Boom:
    """Unpickling this writes a marker file: proof that something was unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_loading_a_model_dir_never_unpickles(tmp_path, monkeypatch):
    """Loading a directory reads only safetensors and JSON: with every unpickling entry point
    disabled it still loads, and booby-trapped pickles lying next to the model are never run."""
    d = tmp_path / "m"
    save_model(_model(), d)
    marker = tmp_path / "UNPICKLED"
    for name in ("model.pt", "model.pth", "model.pkl", "pytorch_model.bin"):
        (d / name).write_bytes(pickle.dumps(_Boom(str(marker))))

    def refuse(*a, **k):
        raise AssertionError("something tried to unpickle")

    import torch

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    m = load_model(d)
    assert m.network.architecture == "49-3-3-10"
    assert not marker.exists()


def test_bundled_seed_model_is_what_its_card_says():
    """The bundled seed model is 49-3-3-10 GELU on 7x7 inputs, and its card's test accuracy is
    reproduced exactly by evaluating the stored float64 weights on the split the card names."""
    assert "seed" in bundled_model_names()
    m = load_model("seed")
    assert m.network.architecture == "49-3-3-10"
    assert m.card.activation == "gelu" and m.network.input_shape == (7, 7)
    assert m.card.dataset == "mnist-bundled" and m.card.preprocessing["downsample_factor"] == 4
    assert m.card.command.startswith("polylens train 49-3-3-10 --act gelu --seed 0 ")
    split = model_split(m)
    assert split.x_test.shape == (m.card.split["n_test"], 49)
    acc, per_class = evaluate(m.network, split.x_test, split.y_test)
    assert acc == m.card.test_accuracy
    assert per_class == m.card.per_class_accuracy
    assert 0.7 < acc < 0.9


def test_onnx_file_gets_a_derived_card(tmp_path):
    """An .onnx export of the seed network loads with the same weights and a card that infers the
    bundled MNIST data at downsample factor 4 from its input width."""
    from polylens.nn.onnx_io import to_onnx

    seed = load_model("seed")
    to_onnx(seed.network, tmp_path / "seed.onnx", dtype="float64")
    m = load_model(tmp_path / "seed.onnx")
    assert _same_weights(seed.network, m.network)
    assert m.card.dataset == "mnist-bundled" and m.card.preprocessing["downsample_factor"] == 4
    assert m.card.test_accuracy is None and m.network.input_shape == (7, 7)


def test_card_for_network_infers_factor_or_unknown():
    """Widths 784/196/49 with 10 classes map to factors 1/2/4; anything else has dataset unknown,
    for which model_split refuses with a ModelError."""
    for width, factor in ((784, 1), (196, 2), (49, 4)):
        card = card_for_network(random_network((width, 2, 10), "relu"))
        assert card.dataset == "mnist-bundled" and card.preprocessing["downsample_factor"] == factor
    net = random_network((30, 2, 10), "relu")
    card = card_for_network(net)
    assert card.dataset == "unknown"
    with pytest.raises(ModelError, match="unknown"):
        model_split(Model(net, card))


def test_evaluate_counts_per_class():
    """evaluate returns overall and per-class accuracy of argmax predictions, NaN for absent classes."""
    # Logits equal the inputs (identity network), so the prediction is the argmax of x.
    net = Network.from_arrays([np.eye(3)], [np.zeros(3)], [])
    x = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0.0]])
    y = np.array([0, 1, 0, 0])
    acc, per_class = evaluate(net, x, y)
    assert acc == 0.75
    assert per_class[:2] == [2 / 3, 1.0] and math.isnan(per_class[2])
    with pytest.raises(ParameterError):
        evaluate(net, x, np.array([0, 1, 2, 3]))
