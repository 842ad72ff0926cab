"""LP-tightened pre-activation bounds: two LPs per neuron, layer by layer (for small networks).

For hidden layer l, the polytope of the network truncated after layer l's affine map (so that a_l
are its "logits", :meth:`~polylens.nn.network.Network.truncated`) is built from the best bounds known
for layers 1..l-1; minimising and maximising each a_l[j] gives bounds that are rigorous (safe dual
bounds) and at least as tight as the bounds the polytope was built from, which are intersected in.
Tighter early layers tighten the envelopes of the later ones: this is the "LP with LP-tightened
bounds" rung of the tightness ladder.
"""

from __future__ import annotations

import numpy as np

from polylens.errors import SolverError
from polylens.lp.highs import LPSolver, Sense
from polylens.lp.polytope import Role, build_polytope
from polylens.nn.network import Network
from polylens.relax.envelopes import Envelope, Hull, build_envelope, check_envelope, merge_envelopes

__all__ = ["lp_tightened_bounds", "lp_tightened_polytope"]


def lp_tightened_polytope(network: Network, xl, xu, pre_bounds, *, envelope: Envelope = Hull(),
                          time_limit: float | None = None):
    """The polytope on LP-tightened bounds, with the cuts of the original envelopes kept as well (they
    stay valid on the smaller intervals), so that it is never looser than the polytope on ``pre_bounds``."""
    envelope = check_envelope(envelope, "lp_tightened_polytope")
    tight = lp_tightened_bounds(network, xl, xu, pre_bounds, envelope=envelope, time_limit=time_limit)
    envs = []
    for act, (L0, U0), (L1, U1) in zip(network.activations, pre_bounds, tight):
        e0 = build_envelope(act, np.asarray(L0, float), np.asarray(U0, float), envelope)
        e1 = build_envelope(act, L1, U1, envelope)
        envs.append(merge_envelopes(e0, e1))
    return build_polytope(network, xl, xu, tight, envelopes=envs)


def lp_tightened_bounds(network: Network, xl, xu, pre_bounds, *, envelope: Envelope = Hull(),
                        time_limit: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tighten ``pre_bounds`` (list of (L, U) per hidden layer, each (n_l,)) for the box [xl, xu]."""
    envelope = check_envelope(envelope, "lp_tightened_bounds")
    out = [(np.asarray(L, float).copy(), np.asarray(U, float).copy()) for L, U in pre_bounds]
    for l in range(2, network.n_hidden_layers + 1):  # layer 1's bounds are already exact (affine in x)
        net_l = network.truncated(l)
        poly = build_polytope(net_l, xl, xu, out[:l - 1], envelope)
        solver = LPSolver(poly, time_limit=time_limit)
        L, U = out[l - 1]
        logit = poly.handle(Role.LOGIT)
        for j in range(net_l.n_classes):
            c = poly.cost({logit: np.eye(net_l.n_classes)[j]})
            try:
                lo = solver.solve(c, Sense.MIN).safe_bound
                hi = solver.solve(c, Sense.MAX).safe_bound
            except SolverError:
                continue
            L[j] = max(L[j], lo)
            U[j] = min(U[j], hi)
        out[l - 1] = (L, np.maximum(U, L))
    return out
