"""Exact verification of ReLU networks by mixed-integer programming (big-M), for tests and benchmarks.

For a ReLU network with sound pre-activation bounds [L, U], every unstable neuron (l, j) gets a
binary ``d{l}[j]`` with

    z >= a,  z >= 0           (the triangle's lower cuts)
    z <= a - L (1 - d)        row ``bigM{l}.active[j]``   (d = 1: z = a)
    z <= U d                  row ``bigM{l}.inactive[j]`` (d = 0: z = 0)

which describes the graph of relu on [L, U] exactly; stable neurons are already exact in the triangle
polytope. The binaries are integer columns added by :meth:`Polytope.extend` (one block per layer),
so every row and column of the MILP has a structured name. The minimum of a linear objective over
this MILP is the exact minimum over the input box, the top rung of the tightness ladder and a second
implementation to test soundness against.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from polylens.errors import ParameterError
from polylens.lp.polytope import Polytope, Role, Rows, build_polytope
from polylens.nn.activations import ActKind
from polylens.relax.envelopes import Hull

__all__ = ["build_milp"]


def build_milp(network, xl, xu, pre_bounds) -> Polytope:
    """The triangle polytope of a ReLU network plus one binary and two rows per unstable neuron."""
    if any(a.kind is not ActKind.RELU for a in network.activations):
        raise ParameterError("Exact MILP verification needs a network whose hidden activations are all relu.")
    poly = build_polytope(network, xl, xu, pre_bounds, Hull(2))
    for l, (L, U) in enumerate(pre_bounds, start=1):
        L, U = np.asarray(L, float), np.asarray(U, float)
        J = np.flatnonzero((L < 0) & (U > 0))
        if J.size == 0:
            continue
        u = J.size
        pick = sp.coo_matrix((np.ones(u), (np.arange(u), J)), shape=(u, L.shape[0]))
        a, z, d = poly.handle(Role.PRE, l), poly.handle(Role.POST, l), f"d{l}"
        poly = poly.extend(d, col_lo=np.zeros(u), col_hi=np.ones(u), integer=True, keys=J, rows=[
            Rows(f"bigM{l}.active", {z: pick, a: -pick, d: sp.diags(-L[J])}, -np.inf, -L[J], keys=J),
            Rows(f"bigM{l}.inactive", {z: pick, d: sp.diags(-U[J])}, -np.inf, 0.0, keys=J),
        ]).polytope
    return poly
