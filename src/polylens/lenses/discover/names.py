"""The names a neuron is shown under: the card's name where there is one, else a suggestion, else its key."""

from __future__ import annotations

from typing import Any

import numpy as np

from polylens.errors import PolylensError

__all__ = ["display_names", "suggested_names"]


def suggested_names(model: Any, x: np.ndarray | None = None) -> dict[str, str]:
    """Suggested names by neuron key (made with the images ``x`` when given; {} when the input is not
    a 2-D image or there is nothing to suggest from)."""
    from polylens.lenses.discover.naming import suggest_names

    try:
        return suggest_names(model, x if x is not None and len(x) >= 2 else None).as_names()
    except PolylensError:
        return {}


def display_names(model: Any, x: np.ndarray | None = None) -> dict[str, str]:
    """Display name of every hidden neuron by key: the card's name, else the suggestion (made with the
    images ``x`` when given), else the key."""
    from polylens.nn.model import neuron_keys

    network = getattr(model, "network", model)
    card = dict(getattr(getattr(model, "card", None), "neuron_names", {}) or {})
    sug = suggested_names(model, x)
    return {k: card.get(k) or sug.get(k) or k for k in neuron_keys(network)}
