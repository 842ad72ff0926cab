"""Interval bound propagation (IBP): push boxes through the network layer by layer.

Each affine layer maps a box to a box with :func:`~polylens.bounds.common.interval_affine`
(centre/radius form, rounded outward); each activation maps [L, U] to a rigorous enclosure of
f([L, U]) from the relax layer. Cheapest and loosest of the bound methods.
"""

from __future__ import annotations

import numpy as np

from polylens.bounds.common import Bounds, BoundMethod, activation_image, as_boxes, interval_affine
from polylens.nn.network import Network

Array = np.ndarray


def ibp(network: Network, xl: Array, xu: Array) -> Bounds:
    """Interval bounds of every hidden pre-activation and every logit over the boxes [xl, xu].

    ``xl``, ``xu``: (N, d) or (d,). Returns :class:`Bounds` with (N, n_l) arrays; sound in floating
    point (every affine step rounded outward, activation images from ``polylens.relax``).

    >>> import numpy as np
    >>> from polylens.nn import Network
    >>> net = Network.from_arrays([np.array([[1.0, -1.0]]), np.array([[2.0]])], [np.zeros(1), np.ones(1)], "relu")
    >>> b = ibp(net, np.zeros(2), np.ones(2))
    >>> float(b.lower[0][0, 0].round(9)), float(b.upper[0][0, 0].round(9)), float(b.logit_upper[0, 0].round(9))
    (-1.0, 1.0, 3.0)
    """
    xl, xu = as_boxes(network, xl, xu, "ibp")
    lower, upper = [], []
    lo, hi = xl, xu
    for layer, act in zip(network.layers[:-1], network.activations):
        L, U = interval_affine(layer.W, layer.b, lo, hi)
        lower.append(L)
        upper.append(U)
        lo, hi = activation_image(act, L, U)
    last = network.layers[-1]
    ll, lu = interval_affine(last.W, last.b, lo, hi)
    return Bounds(tuple(lower), tuple(upper), ll, lu, BoundMethod.IBP)
