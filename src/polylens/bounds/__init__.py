"""Sound pre-activation bounds by propagation: interval (IBP), backward linear (CROWN), alpha-CROWN.

Every function takes a batch of N input boxes ``[xl, xu]`` of shape (N, d) and returns bounds that
hold in floating point (see :mod:`polylens.bounds.common` for the rounding argument). Tightness
order, per neuron: IBP <= CROWN <= alpha-CROWN (CROWN's bounds are intersected with interval
propagation, alpha-CROWN's with CROWN's).

>>> import numpy as np
>>> from polylens.nn import Network
>>> from polylens.bounds import BoundMethod, compute_bounds, input_box, margin_lower_bound
>>> rng = np.random.default_rng(0)
>>> net = Network.from_arrays([rng.normal(size=(4, 2)), rng.normal(size=(3, 4))], [np.zeros(4), np.zeros(3)], "relu")
>>> xl, xu = input_box(np.array([[0.5, 0.5]]), 0.01)
>>> b = compute_bounds(net, xl, xu, BoundMethod.CROWN)
>>> b.lower[0].shape, b.logit_upper.shape
((1, 4), (1, 3))
>>> m = margin_lower_bound(net, xl, xu, [0])
>>> bool(m[0, 0] == np.inf)
True
"""

from __future__ import annotations

import numpy as np

from polylens.bounds.common import Bounds, BoundMethod, input_box
from polylens.bounds.crown import alpha_crown, crown, margin_lower_bound, margin_spec, spec_lower_bound
from polylens.bounds.ibp import ibp
from polylens.nn.network import Network
from polylens.validation import check_enum

__all__ = ["BoundMethod", "Bounds", "alpha_crown", "compute_bounds", "crown", "crown_ibp_bounds", "ibp", "input_box",
           "margin_lower_bound", "margin_spec", "spec_lower_bound"]


def compute_bounds(network: Network, xl: np.ndarray, xu: np.ndarray,
                   method: BoundMethod | str = BoundMethod.CROWN) -> Bounds:
    """Bounds of every hidden pre-activation and every logit by ``method`` ('ibp', 'crown',
    'alpha-crown'); see :func:`ibp`, :func:`crown`, :func:`alpha_crown`."""
    method = check_enum(method, BoundMethod, "method", "compute_bounds")
    if method is BoundMethod.IBP:
        return ibp(network, xl, xu)
    if method is BoundMethod.CROWN:
        return crown(network, xl, xu)
    return alpha_crown(network, xl, xu)


def crown_ibp_bounds(network: Network, xl: np.ndarray, xu: np.ndarray, *, ibp_bounds: Bounds | None = None) -> Bounds:
    """The polytope's bounds recipe: CROWN's bounds intersected with interval propagation's, element-wise
    the tighter of the two (both sound, so the intersection is). ``ibp_bounds``: interval bounds of the
    same boxes already computed (certification has them from its first stage), else computed here.

    ``xl``, ``xu``: (N, d) or (d,). Every analysis that builds polytopes takes its pre-activation
    bounds from here, so they all relax the same intervals.
    """
    return crown(network, xl, xu).intersect(ibp(network, xl, xu) if ibp_bounds is None else ibp_bounds)
