"""Training: a short run learns, the same seed gives the same weights, bad settings are refused."""

from __future__ import annotations

import shlex
import time

import numpy as np
import pytest
import torch

from polylens.data import load_split
from polylens.errors import ParameterError
from polylens.nn.model import evaluate
from polylens.nn.train import DEFAULTS, EpochReport, parse_architecture, train_mlp


@pytest.fixture(scope="module")
def split():
    return load_split("bundled", factor=4, seed=0)


def _weights(model):
    return [(l.W, l.b) for l in model.network.layers]


def test_short_run_learns_the_seed_architecture(split):
    """30 epochs of the seed recipe (49-3-3-10 GELU, seed 0) reach > 60% test accuracy in well
    under 30 s (measured: 66.6% in about 1 s on one thread), and the card's figures are those of
    the float64 network that is returned."""
    reports: list[EpochReport] = []
    t0 = time.perf_counter()
    m = train_mlp("49-3-3-10", "gelu", split, epochs=30, seed=0, progress=reports.append)
    assert time.perf_counter() - t0 < 30
    assert m.card.test_accuracy > 0.6
    assert [r.epoch for r in reports] == list(range(1, 31)) and all(r.epochs == 30 for r in reports)
    assert reports[-1].loss < reports[0].loss
    acc, per_class = evaluate(m.network, split.x_test, split.y_test, 10)
    assert m.card.test_accuracy == acc and m.card.per_class_accuracy == per_class
    assert m.network.architecture == "49-3-3-10" and m.network.input_shape == (7, 7)
    assert all(l.W.dtype == np.float64 for l in m.network.layers)
    card = m.card
    assert card.dataset == "mnist-bundled" and card.split == {"seed": 0, "n_train": 8000, "n_test": 2000}
    assert card.training["epochs"] == 30 and card.training["lr"] == DEFAULTS.lr and card.seed == 0
    args = shlex.split(card.command)
    assert args[:3] == ["polylens", "train", "49-3-3-10"]
    assert args[args.index("--epochs") + 1] == "30" and args[args.index("--seed") + 1] == "0"


def test_training_is_deterministic_and_leaves_torch_state_alone(split):
    """Same seed: bit-identical weights; another seed: different weights. The caller's torch
    thread count, determinism flag and global RNG stream are unchanged by training."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = train_mlp("49-3-3-10", "gelu", split, epochs=2, seed=7)
    after = torch.rand(3)
    b = train_mlp("49-3-3-10", "gelu", split, epochs=2, seed=7)
    c = train_mlp("49-3-3-10", "gelu", split, epochs=2, seed=8)
    for (Wa, ba), (Wb, bb) in zip(_weights(a), _weights(b)):
        assert np.array_equal(Wa, Wb) and np.array_equal(ba, bb)
    assert not np.array_equal(_weights(a)[0][0], _weights(c)[0][0])
    assert torch.equal(after, expected_next)
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == det


@pytest.mark.parametrize("arch, kwargs, match", [
    ("50-3-10", {}, "takes 50 inputs but the data has 49"),
    ("49-3-9", {}, "9 outputs but the data has 10 classes"),
    ("49-x-10", {}, "architecture"),
    ("49", {}, "architecture"),
    ("49-3-10", {"epochs": 0}, "'epochs'"),
    ("49-3-10", {"epochs": -3}, "'epochs'"),
    ("49-3-10", {"lr": 0.0}, "'lr'"),
    ("49-3-10", {"batch_size": 0}, "'batch_size'"),
    ("49-3-10", {"weight_decay": -1.0}, "'weight_decay'"),
])
def test_bad_settings_are_parameter_errors(split, arch, kwargs, match):
    """Architectures that do not fit the data, and out-of-range settings, raise ParameterError."""
    with pytest.raises(ParameterError, match=match):
        train_mlp(arch, "relu", split, **kwargs)


def test_parse_architecture():
    """Widths joined by dashes parse to ints; anything else is a ParameterError."""
    assert parse_architecture("49-3-3-10") == (49, 3, 3, 10)
    for bad in ("", "49--10", "49-0-10", "a-b", "49-3.5-10"):
        with pytest.raises(ParameterError):
            parse_architecture(bad)
