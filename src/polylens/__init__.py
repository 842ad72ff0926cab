"""polylens: open neural networks with geometry and linear programming.

A network restricted to a region of its input space becomes a polytope; linear programs over that
polytope verify robustness and discover what the network has learned. The one representation every
method reads is :class:`polylens.nn.Network`.

The front door:

>>> import polylens as pl
>>> m = pl.load_model("seed")                       # a bundled name, a model directory or an .onnx file
>>> data = pl.load_data(m).head(200)                # the model's test split (or pl.load_data("F.npz", m))
>>> certs = pl.certify(m.network, data.x[:20], data.y[:20], eps=0.01)
>>> sorted({c.status.value for c in certs}) <= ["falsified", "unknown", "verified"]
True
>>> sig = pl.signatures(m, data, per_digit=2)       # every lens is a function: pl.<lens>(model, data, **options)
>>> len(sig.digits)
10
>>> "regions" in pl.lens_names() or "signatures" in pl.lens_names()
True

Every lens of the registry (:mod:`polylens.lenses`) is reachable as ``pl.<name>(model, data=None,
**options)`` (a name with ``-`` is spelt with ``_``) or as ``pl.run(name, model, data, **options)``;
``data`` defaults to the model's test split and the options are the lens's (checked, with one
message for a bad value). Results have ``to_dict()`` and show themselves in Jupyter.
"""

from __future__ import annotations

from typing import Any

from polylens.errors import PolylensError

__version__ = "0.1.0"
__all__ = ["PolylensError", "__version__", "certify", "get_lens", "lens_names", "lenses", "load_data", "load_model",
           "register", "run"]


def load_model(spec):
    """Load a model: a bundled name (``"seed"``), a model directory, or an ``.onnx`` file
    (:func:`polylens.nn.model.load_model`)."""
    from polylens.nn.model import load_model as _load

    return _load(spec)


def load_data(source: Any = None, model: Any = None):
    """Labelled inputs (:class:`~polylens.data.labelled.Data`): ``load_data(model)`` is the model's test
    split; ``load_data("F.npz", model)`` reads ``x`` and ``y`` from an .npz checked against the model."""
    from polylens.data.labelled import Data

    if model is None and source is not None and hasattr(source, "network"):
        return Data.of_model(source)
    if model is None:
        raise TypeError("load_data needs a model: load_data(model) or load_data('F.npz', model)")
    if source is None:
        return Data.of_model(model)
    net = model.network
    return Data.from_npz(source, net.input_dim, net.n_classes)


def certify(network, x, labels, eps, **kwargs):
    """Certify each row of ``x`` in its eps-ball (:func:`polylens.lenses.verify.certify.certify`)."""
    from polylens.lenses.verify.certify import certify as _certify

    return _certify(getattr(network, "network", network), x, labels, eps, **kwargs)


def lenses():
    """Every registered lens (:func:`polylens.lenses.all_lenses`)."""
    from polylens.lenses import all_lenses

    return all_lenses()


def lens_names() -> tuple[str, ...]:
    from polylens.lenses import lens_names as _names

    return _names()


def get_lens(name: str):
    from polylens.lenses import get_lens as _get

    return _get(name)


def register(lens):
    """Add a lens to the registry (:func:`polylens.lenses.register`): it joins the CLI, the report,
    the explorer and this front door at once."""
    from polylens.lenses import register as _register

    return _register(lens)


def run(name: str, model: Any, data: Any = None, *, workdir=None, **options):
    """Run lens ``name`` on ``model`` (a Model, or a spec for :func:`load_model`) and ``data`` (a
    :class:`~polylens.data.labelled.Data`, default the model's test split) with ``options``; returns
    the lens's result. ``workdir``: where a long lens keeps resumable state."""
    from polylens.lenses.base import RunContext

    lens = get_lens(name)
    if isinstance(model, str):
        model = load_model(model)
    if data is None and lens.needs_data:
        data = load_data(model)
    return lens.run(model, data, lens.make_options(options), RunContext(workdir=workdir))


def __getattr__(name: str):
    """``pl.<lens>``: the lens as a function (see :func:`run`)."""
    if name.startswith("_"):
        raise AttributeError(name)
    from polylens.lenses import all_lenses

    for lens in all_lenses():
        if name in (lens.name.replace("-", "_"), lens.cli_name.replace("-", "_")):
            def call(model, data=None, **options):
                return run(lens.name, model, data, **options)

            call.__name__ = name
            call.__doc__ = f"{lens.summary}\n\nThe lens {lens.name!r} as a function: see polylens.run."
            return call
    raise AttributeError(f"module 'polylens' has no attribute {name!r}")
