"""Train the models of the bases lens: a 784-256-256-10 MLP and a small CNN, on 28x28 MNIST (the 10,000
bundled digits, seeded 8,000/2,000 split) and on Fashion-MNIST (Debian's dataset-fashion-mnist, 60,000
train images; 2,000 seeded test images in the card's split).

    .venv/bin/python scripts/bases_models.py [--only NAME ...] [--out src/polylens/models]

Each model is written as a module directory (polylens.nn.module_dir: module.json, module.safetensors in
float32, card.json), which ``polylens bases NAME`` loads by name once it lies in src/polylens/models.
Deterministic: one thread, seeded initialisation and batch order.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

FASHION = "/usr/share/datasets/fashion-mnist"

MLP = [["flatten", "Flatten", {}], ["fc1", "Linear", {"in_features": 784, "out_features": 256}],
       ["relu1", "ReLU", {}], ["fc2", "Linear", {"in_features": 256, "out_features": 256}],
       ["relu2", "ReLU", {}], ["fc3", "Linear", {"in_features": 256, "out_features": 10}]]
CNN = [["conv1", "Conv2d", {"in_channels": 1, "out_channels": 8, "kernel_size": 5, "stride": 2}],
       ["relu1", "ReLU", {}],
       ["conv2", "Conv2d", {"in_channels": 8, "out_channels": 16, "kernel_size": 3, "stride": 2}],
       ["relu2", "ReLU", {}], ["flatten", "Flatten", {}],
       ["fc1", "Linear", {"in_features": 400, "out_features": 64}], ["relu3", "ReLU", {}],
       ["fc2", "Linear", {"in_features": 64, "out_features": 10}]]

#: name -> (layers, dataset, epochs)
MODELS = {
    "mnist-mlp": (MLP, "mnist", 20),
    "mnist-cnn": (CNN, "mnist", 20),
    "fashion-mlp": (MLP, "fashion", 6),
    "fashion-cnn": (CNN, "fashion", 6),
}


def load(dataset: str):
    from polylens.data import load_split

    if dataset == "mnist":
        s = load_split("bundled", factor=1, seed=0, n_test=2000)
    else:
        s = load_split(FASHION, factor=1, seed=0, n_test=2000)
    return s


def train(name: str, out: Path) -> dict:
    from polylens.nn.model import ModelCard, evaluate
    from polylens.nn.module_dir import build_module, load_module_dir, save_module_dir
    from polylens.nn.torch_io import from_torch

    layers, dataset, epochs = MODELS[name]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    split = load(dataset)
    net = build_module({"layers": layers})
    x = torch.tensor(split.x_train, dtype=torch.float32).reshape(-1, 1, 28, 28)
    y = torch.tensor(split.y_train)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t0
    net = net.eval()
    lowered = from_torch(_copy_double(net, layers), input_shape=(1, 28, 28))
    acc, per = evaluate(lowered, split.x_test, split.y_test)
    train_acc, _ = evaluate(lowered, split.x_train[:10000], split.y_train[:10000])
    card = ModelCard(
        architecture=lowered.architecture, activation="relu", input_shape=(28, 28),
        dataset="mnist-bundled" if dataset == "mnist" else FASHION,
        preprocessing={"downsample_factor": 1, "pixel_range": [0, 1]},
        split={"seed": 0, "n_train": len(split.y_train), "n_test": 2000},
        seed=0,
        training={"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": epochs, "loss": "cross_entropy",
                  "final_train_loss": round(float(loss.detach()), 6), "train_accuracy": train_acc, "seconds": round(seconds, 2),
                  "threads": 1, "deterministic": True, "framework": f"torch {torch.__version__}",
                  "dtype": "float32 (module.safetensors in float32)",
                  "module": " ".join(f"{n}:{k}" for n, k, _ in layers)},
        test_accuracy=acc, per_class_accuracy=per,
        command=f"python scripts/bases_models.py --only {name}",
    )
    d = save_module_dir(net, (1, 28, 28), card, out / name, layers)
    back = load_module_dir(d, str(d))
    assert back.network.architecture == lowered.architecture
    sizes = {p.name: p.stat().st_size for p in d.iterdir()}
    return {"name": name, "accuracy": acc, "seconds": seconds, "sizes": sizes}


def _copy_double(net, layers):
    from polylens.nn.module_dir import build_module

    m = build_module({"layers": layers}).double().eval()
    m.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS), default=sorted(MODELS))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "src/polylens/models")
    a = ap.parse_args()
    for name in a.only:
        print(train(name, a.out), flush=True)


if __name__ == "__main__":
    main()
