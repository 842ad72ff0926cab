"""Model directories that also keep a torch module: a convolutional network stays a torch module.

A directory holding ``module.json`` next to ``card.json`` is a *module directory*:

``module.json``
    ``{"input_shape": [1, 28, 28], "layers": [["conv1", "Conv2d", {"in_channels": 1, ...}], ["relu1",
    "ReLU", {}], ...]}``: a torch ``nn.Sequential`` declared as data (names, module types from
    :data:`MODULE_TYPES`, keyword arguments); nothing is executed but those constructors.
``module.safetensors``
    its state dict (read with safetensors: nothing is unpickled).
``card.json``
    the :class:`~polylens.nn.model.ModelCard` of the network the module lowers to.

:func:`load_module_dir` builds the module, lowers it to a :class:`~polylens.nn.network.Network`
(:func:`~polylens.nn.torch_io.from_torch`, exact), and returns a :class:`TorchModel`: a
:class:`~polylens.nn.model.Model` (so every lens reads it) that also carries the module, whose named
submodules the bases lens reads with hooks.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polylens.errors import ModelError
from polylens.nn.model import CARD_FILE, Model, ModelCard

__all__ = ["MODULE_FILE", "MODULE_TYPES", "MODULE_WEIGHTS", "TorchModel", "build_module", "load_module_dir",
           "save_module_dir"]

MODULE_FILE = "module.json"
MODULE_WEIGHTS = "module.safetensors"
#: The torch module types a module directory may declare.
MODULE_TYPES = ("Conv2d", "Linear", "ReLU", "Flatten", "MaxPool2d", "AvgPool2d", "GELU", "Tanh", "Sigmoid")


@dataclass(frozen=True, eq=False)
class TorchModel(Model):
    """A :class:`Model` that also keeps the torch ``module`` it was lowered from, and the tensor
    shape of one input (``module_input_shape``, e.g. (1, 28, 28))."""

    module: Any = field(default=None, repr=False)
    module_input_shape: tuple[int, ...] = ()


def build_module(spec: dict, where: str = "module.json"):
    """The ``nn.Sequential`` a module spec declares (ModelError naming what is wrong)."""
    from torch import nn

    try:
        layers = spec["layers"]
        out = OrderedDict()
        for name, kind, kwargs in layers:
            if kind not in MODULE_TYPES:
                raise ModelError(f"{where} declares a module of type {kind!r}; allowed: {', '.join(MODULE_TYPES)}.")
            out[str(name)] = getattr(nn, kind)(**dict(kwargs))
        return nn.Sequential(out)
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{where} is malformed: {' '.join(str(e).split())}.") from None


def load_module_dir(directory: Path, source: str) -> TorchModel:
    """Load a module directory (see the module docstring)."""
    from safetensors.torch import load_file

    from polylens.nn.torch_io import from_torch

    directory = Path(directory)
    try:
        spec = json.loads((directory / MODULE_FILE).read_text(encoding="utf-8"))
        card = ModelCard.from_json((directory / CARD_FILE).read_text(encoding="utf-8"),
                                   where=f"model card {directory / CARD_FILE}")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"Cannot read the module directory {source}: {' '.join(str(e).split())}.") from None
    module = build_module(spec, f"{source}/{MODULE_FILE}")
    try:
        state = load_file(str(directory / MODULE_WEIGHTS))
        module.load_state_dict(state, strict=True)
    except Exception as e:  # a missing file, a corrupt header, mismatched tensors
        raise ModelError(f"Cannot load the weights of {source}: {' '.join(str(e).split())[:300]}.") from None
    module = module.float().eval()
    shape = tuple(int(s) for s in spec.get("input_shape", ()))
    network = from_torch(module.double(), input_shape=shape)
    module = module.float()
    from polylens.nn.network import Network

    network = Network(network.layers, network.activations, tuple(card.input_shape))
    return TorchModel(network, card, source, module=module, module_input_shape=shape)


def save_module_dir(module, input_shape, card: ModelCard, directory: str | Path, spec_layers: list) -> Path:
    """Write ``module.json`` (``spec_layers``: [name, type, kwargs] per layer), ``module.safetensors``
    (float32) and ``card.json``."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / MODULE_FILE).write_text(json.dumps({"input_shape": list(input_shape), "layers": spec_layers}, indent=1) + "\n")
    save_file({k: v.detach().float().contiguous() for k, v in module.state_dict().items()}, str(d / MODULE_WEIGHTS))
    (d / CARD_FILE).write_text(card.to_json())
    return d
