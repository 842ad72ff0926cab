"""Training small fully connected classifiers in torch, reproducibly, into polylens models.

:func:`train_mlp` trains an MLP such as ``49-3-3-10`` with one activation on a
:class:`~polylens.data.Split`: Adam on the mean cross-entropy, float32 in torch, minibatches drawn
by a seeded shuffle. The weights are then stored as float64 in a :class:`~polylens.nn.Network`
and the card's test accuracy is measured on that float64 network (the one every analysis reads).

Reproducibility: the same arguments give bit-identical weights on the same machine and torch
build. Initialisation and shuffling use their own seeded generators (the caller's global torch
RNG is saved and restored), ``torch.use_deterministic_algorithms(True)`` is on and torch runs
on one thread while training (both restored afterwards); a different torch version or CPU may
still change the last bits.

Example
-------
>>> from polylens.data import load_split
>>> from polylens.nn.train import train_mlp
>>> m = train_mlp("49-3-3-10", "gelu", load_split("bundled"), epochs=1, seed=0)  # doctest: +SKIP
>>> m.card.test_accuracy  # doctest: +SKIP
0.6...
"""

from __future__ import annotations

import contextlib
import shlex
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from polylens.errors import ParameterError
from polylens.nn.activations import Activation
from polylens.nn.model import BUNDLED_DATASET, Model, ModelCard, evaluate
from polylens.nn.network import Network
from polylens.validation import check_float, check_int

if TYPE_CHECKING:  # pragma: no cover
    from polylens.data import Split

__all__ = ["DEFAULTS", "TrainDefaults", "EpochReport", "parse_architecture", "train_mlp", "train_command"]


@dataclass(frozen=True)
class TrainDefaults:
    """Default optimiser settings. Chosen for the 49-3-3-10 GELU seed network on the bundled
    digits: about 77% test accuracy (76.5-77.3% over seeds 0-2) in under ten seconds on one CPU
    thread. With only three hidden units the accuracy is bounded by the bottleneck; a shorter run
    (or a smaller lr) tends to stop near 70%, a constant lr beat cosine or one-cycle schedules here."""

    epochs: int = 300
    lr: float = 2e-2
    batch_size: int = 256
    weight_decay: float = 0.0
    seed: int = 0


DEFAULTS = TrainDefaults()


@dataclass(frozen=True)
class EpochReport:
    """Handed to the ``progress`` callback after every epoch: mean training loss of the epoch."""

    epoch: int  # 1-based
    epochs: int
    loss: float


def _torch_activation(act: Activation):
    """The torch module computing ``act``, from torch_io's one table of torch activations."""
    from polylens.nn.torch_io import TORCH_ACTIVATIONS

    return next(e for e in TORCH_ACTIVATIONS if e.kind is act.kind).make(act)


def parse_architecture(text: str, where: str = "train_mlp") -> tuple[int, ...]:
    """``"49-3-3-10"`` -> (49, 3, 3, 10); at least two positive widths, else ParameterError."""
    parts = str(text).strip().split("-")
    widths = []
    for p in parts:
        if not p.strip().isdigit() or int(p) < 1:
            raise ParameterError(f"The 'architecture' parameter of {where} must be positive widths joined by "
                                 f"dashes, like '49-3-3-10'. Got {text!r} instead.")
        widths.append(int(p))
    if len(widths) < 2:
        raise ParameterError(f"The 'architecture' parameter of {where} needs an input and an output width, "
                             f"like '49-3-3-10'. Got {text!r} instead.")
    return tuple(widths)


def train_command(architecture: str, activation: str, *, epochs: int, lr: float, batch_size: int, seed: int,
                  weight_decay: float, data: str, factor: int, split_seed: int = 0, out: str | None = None) -> str:
    """The ``polylens train`` command line that reproduces a training run, every option explicit."""
    args = ["polylens", "train", architecture, "--act", activation, "--seed", str(seed), "--epochs", str(epochs),
            "--lr", repr(float(lr)), "--batch-size", str(batch_size), "--weight-decay", repr(float(weight_decay)),
            "--data", data, "--factor", str(factor), "--split-seed", str(split_seed)]
    if out is not None:
        args += ["--out", out]
    return shlex.join(args)


@contextlib.contextmanager
def _deterministic_torch() -> Iterator[None]:
    """One thread, deterministic algorithms, and a private global RNG state; all restored after."""
    import torch

    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)


def train_mlp(architecture: str, activation: str | Activation, split: "Split", *,
              epochs: int = DEFAULTS.epochs, lr: float = DEFAULTS.lr, batch_size: int = DEFAULTS.batch_size,
              seed: int = DEFAULTS.seed, weight_decay: float = DEFAULTS.weight_decay,
              progress: Callable[[EpochReport], None] | None = None,
              dataset: str | None = None, command: str | None = None) -> Model:
    """Train an MLP classifier on ``split`` and return it as a :class:`Model` with a filled card.

    ``architecture``: widths like ``"49-3-3-10"``; the first must equal the data width
    (``split.x_train.shape[1]``) and the last the number of classes (max label + 1), else
    ParameterError. ``activation``: one kind for every hidden layer (``"gelu"``, ``"relu"``, ...).
    Adam with learning rate ``lr`` and L2 penalty ``weight_decay`` (torch Adam's) on mean cross-entropy,
    ``epochs`` passes over the training set in minibatches of ``batch_size`` (the last one
    smaller), reshuffled every epoch by a generator seeded with ``seed``; initialisation is
    torch's default, drawn after ``torch.manual_seed(seed)``. ``progress`` is called after each
    epoch with an :class:`EpochReport`.

    The card records the architecture, activation, data (``dataset``: defaults to the split's name,
    ``"mnist-bundled"`` for the bundled digits; give the IDX directory for other data so the card
    can find it again), the split, every training setting, the final training loss, test accuracy
    overall and per class (of the float64 network), and ``command`` (default: the equivalent
    ``polylens train`` command).
    """
    act = activation if isinstance(activation, Activation) else Activation.parse(str(activation))
    widths = parse_architecture(architecture)
    epochs = check_int(epochs, "epochs", "train", lo=1)
    batch_size = check_int(batch_size, "batch_size", "train", lo=1)
    seed = check_int(seed, "seed", "train", lo=0)
    lr = check_float(lr, "lr", "train", lo=0.0, lo_open=True)
    weight_decay = check_float(weight_decay, "weight_decay", "train", lo=0.0)
    x_train = np.asarray(split.x_train, dtype=np.float64)
    y_train = np.asarray(split.y_train, dtype=np.int64)
    n_classes = int(max(y_train.max(), np.max(split.y_test))) + 1
    if widths[0] != x_train.shape[1]:
        raise ParameterError(f"The architecture {architecture} takes {widths[0]} inputs but the data has "
                             f"{x_train.shape[1]} features (image {split.image_shape}, downsample factor "
                             f"{split.factor}).")
    if widths[-1] != n_classes:
        raise ParameterError(f"The architecture {architecture} has {widths[-1]} outputs but the data has "
                             f"{n_classes} classes.")

    import torch
    import torch.nn as tnn

    start = time.perf_counter()
    with _deterministic_torch():
        torch.manual_seed(seed)
        modules: list[tnn.Module] = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            modules.append(tnn.Linear(a, b))
            if i < len(widths) - 2:
                modules.append(_torch_activation(act))
        net = tnn.Sequential(*modules)
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        loss_fn = tnn.CrossEntropyLoss()
        xt = torch.from_numpy(x_train.astype(np.float32))
        yt = torch.from_numpy(y_train)
        gen = torch.Generator().manual_seed(seed)
        n = len(yt)
        loss_value = float("nan")
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for s in range(0, n, batch_size):
                idx = perm[s:s + batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            loss_value = total / n
            if progress is not None:
                progress(EpochReport(epoch, epochs, loss_value))
        linears = [m for m in net if isinstance(m, tnn.Linear)]
        weights = [m.weight.detach().numpy().astype(np.float64) for m in linears]
        biases = [m.bias.detach().numpy().astype(np.float64) for m in linears]
        torch_version = torch.__version__
    seconds = time.perf_counter() - start

    network = Network.from_arrays(weights, biases, act, input_shape=tuple(split.image_shape))
    train_acc, _ = evaluate(network, x_train, y_train, n_classes)
    test_acc, per_class = evaluate(network, split.x_test, split.y_test, n_classes)
    data_name = dataset if dataset is not None else split.name
    data_arg = "bundled" if data_name == BUNDLED_DATASET else data_name
    if command is None:
        command = train_command(network.architecture, str(act), epochs=epochs, lr=lr, batch_size=batch_size,
                                seed=seed, weight_decay=weight_decay, data=data_arg, factor=split.factor,
                                split_seed=split.seed)
    card = ModelCard(
        architecture=network.architecture,
        activation=str(act),
        input_shape=tuple(split.image_shape),
        dataset=data_name,
        preprocessing={"downsample_factor": int(split.factor), "pixel_range": [0, 1]},
        split={"seed": int(split.seed), "n_train": int(len(split.y_train)), "n_test": int(len(split.y_test))},
        seed=seed,
        training={
            "framework": f"torch {torch_version}",
            "optimizer": "adam",
            "loss": "cross_entropy",
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "weight_decay": weight_decay,
            "dtype": "float32 (weights stored as float64)",
            "threads": 1,
            "deterministic": True,
            "final_train_loss": round(loss_value, 6),
            "train_accuracy": train_acc,
            "seconds": round(seconds, 2),
        },
        test_accuracy=test_acc,
        per_class_accuracy=per_class,
        command=command,
    )
    return Model(network, card, source="memory")
