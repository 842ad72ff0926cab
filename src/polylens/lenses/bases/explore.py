"""What the explorer asks the bases lens: every basis of one layer of one model, with the strips'
images, the curves and one picture per shown vector. The model is the explorer's own (``session``) or
one of the models bundled for this lens (:data:`EXPLORER_MODELS`, with their test splits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from polylens.errors import ParameterError
from polylens.jsonio import jsonable
from polylens.lenses.base import LensOptions, option

__all__ = ["BasesParams", "EXPLORER_MODELS", "bases_grid", "bases_payload", "layer_choices"]

#: The models bundled for this lens that the view offers besides the session's own.
EXPLORER_MODELS = ("mnist-mlp", "mnist-cnn", "fashion-mlp", "fashion-cnn")
#: Inputs a bundled model is measured on in the explorer (its test split's first rows).
EXPLORER_N = 1000


@dataclass(frozen=True)
class BasesParams(LensOptions):
    where = "bases"
    model: str = option("session", "The explorer's model ('session') or a model bundled for this lens.",
                        choices=("session",) + EXPLORER_MODELS)
    layer: str = option("1", "A hidden layer's number, or a submodule's name of a torch model.")
    post: bool = option(False, "Activations after the nonlinearity.")


def layer_choices(model) -> list[dict]:
    """The layers a view offers: every hidden layer by number, and for a torch model its convolution
    and linear submodules by name."""
    out = [{"value": str(l), "label": f"hidden layer {l} (width {w})"}
           for l, w in enumerate(model.network.hidden_widths, start=1)]
    module = getattr(model, "module", None)
    if module is not None:
        import torch

        names = [n for n, m in module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        out += [{"value": n, "label": f"{n} ({type(dict(module.named_modules())[n]).__name__}"
                 f"{', per position' if isinstance(dict(module.named_modules())[n], torch.nn.Conv2d) else ''})"}
                for n in names[:-1]]
    return out


def _model_and_data(session, name: str):
    if name == "session":
        return session.model, session.data
    from polylens.data.labelled import Data
    from polylens.nn.model import load_model

    def make():
        try:
            m = load_model(name)
        except Exception as e:  # noqa: BLE001 - a model not bundled in this install
            raise ParameterError(f"The bases view cannot load the model {name!r}: {e}") from None
        return m, Data.of_model(m).head(EXPLORER_N)

    return session.resource(f"bases-model:{name}", make)


def _build(session, params: Mapping[str, Any]) -> dict:
    from polylens.explorer.api import display
    from polylens.lenses.bases.analysis import analyse

    model, data = _model_and_data(session, params["model"])
    if len(data) < 2:
        raise ParameterError(f"The bases view needs test images; {session.data_note}")
    o = session.options_for("bases")
    r = analyse(model, data.x, data.y, params["layer"], post=params["post"], bases=o.bases,
                components=min(o.components, 16), ablation_points=min(o.ablation_points, 17),
                strips=min(max(o.strips, 1), 6), strip_length=o.strip_length, seed=o.seed, max_rows=min(o.max_rows, 20000))
    d = r.to_dict()
    for name, br in r.results.items():
        b = d["bases"][name]
        b["strip_images"] = [display(np.asarray(imgs).reshape(len(imgs), -1)) for imgs in br.strip_images]
        b["pictures"] = [display(np.asarray(p).ravel()) for p in br.pictures]
        b["picture_shape"] = list(np.asarray(br.pictures[0]).shape) if br.pictures else []
        b["picture_kind"] = br.picture_kind
    d["strip_shape"] = list(r.strip_shape)
    d["layers"] = layer_choices(model)
    d["model_name"] = params["model"]
    d["models"] = ["session"] + [m for m in EXPLORER_MODELS if _bundled(m)]
    return jsonable(d)


def _bundled(name: str) -> bool:
    from polylens.nn.model import bundled_model_names

    return name in bundled_model_names()


def bases_payload(session, params: Mapping[str, Any]) -> dict:
    """The bases of one layer, computed once per (model, layer, post) in the background."""
    key = f"bases:{params['model']}:{params['layer']}:{bool(params['post'])}"
    return session.background(key, lambda: _build(session, params))


def bases_grid(session, grid: Sequence[float]) -> list[dict]:
    """What a static export precomputes: every hidden layer of the session's model, pre-activation."""
    return [{"model": "session", "layer": str(l), "post": False}
            for l in range(1, session.network.n_hidden_layers + 1)]
