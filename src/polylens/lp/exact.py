"""Exact verification of ReLU networks by mixed-integer programming (big-M), for tests and benchmarks.

For a ReLU (or leaky-ReLU-free) network with sound pre-activation bounds [L, U], every unstable neuron
gets a binary d with

    z >= a,  z >= 0,  z <= a - L (1 - d),  z <= U d,

which describes the graph of relu on [L, U] exactly; stable neurons are already exact in the triangle
polytope. The minimum of a linear objective over this MILP is the exact minimum over the input box,
the top rung of the tightness ladder and a second implementation to test soundness against.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from polylens.errors import ParameterError
from polylens.lp.polytope import Polytope, Role, RowKind, build_polytope
from polylens.nn.activations import ActKind
from polylens.relax.envelopes import EnvelopeMode


def build_milp(network, xl, xu, pre_bounds) -> Polytope:
    """The triangle polytope of a ReLU network plus one binary and two rows per unstable neuron."""
    if any(a.kind is not ActKind.RELU for a in network.activations):
        raise ParameterError("Exact MILP verification needs a network whose hidden activations are all relu.")
    poly = build_polytope(network, xl, xu, pre_bounds, mode=EnvelopeMode.HULL, cuts=2)
    n = poly.n_cols
    extra_cols = 0
    trip_r, trip_c, trip_v, lo, hi = [], [], [], [], []
    r = 0
    for l, (L, U) in enumerate(pre_bounds, start=1):
        L, U = np.asarray(L, float), np.asarray(U, float)
        unstable = np.flatnonzero((L < 0) & (U > 0))
        a_s, z_s = poly.block(Role.PRE, l).start, poly.block(Role.POST, l).start
        for j in unstable:
            d = n + extra_cols
            extra_cols += 1
            # z - a - L d <= -L
            trip_r += [r, r, r]; trip_c += [z_s + j, a_s + j, d]; trip_v += [1.0, -1.0, -L[j]]
            lo.append(-np.inf); hi.append(-L[j]); r += 1
            # z - U d <= 0
            trip_r += [r, r]; trip_c += [z_s + j, d]; trip_v += [1.0, -U[j]]
            lo.append(-np.inf); hi.append(0.0); r += 1
    if extra_cols == 0:
        return poly
    B = sp.coo_matrix((trip_v, (trip_r, trip_c)), shape=(r, n + extra_cols))
    A = sp.vstack([sp.hstack([poly.A, sp.csc_matrix((poly.n_rows, extra_cols))]), B]).tocsc()
    m = r
    integer = np.concatenate([np.zeros(n, bool), np.ones(extra_cols, bool)])
    return replace(
        poly, A=A,
        row_lo=np.concatenate([poly.row_lo, lo]), row_hi=np.concatenate([poly.row_hi, hi]),
        col_lo=np.concatenate([poly.col_lo, np.zeros(extra_cols)]), col_hi=np.concatenate([poly.col_hi, np.ones(extra_cols)]),
        col_role=np.concatenate([poly.col_role, np.full(extra_cols, -1, np.int8)]),
        col_layer=np.concatenate([poly.col_layer, np.zeros(extra_cols, np.int32)]),
        col_index=np.concatenate([poly.col_index, np.arange(extra_cols, dtype=np.int32)]),
        row_kind=np.concatenate([poly.row_kind, np.full(m, RowKind.CUT, np.int8)]),
        row_layer=np.concatenate([poly.row_layer, np.zeros(m, np.int32)]),
        row_neuron=np.concatenate([poly.row_neuron, np.zeros(m, np.int32)]),
        row_side=np.concatenate([poly.row_side, np.ones(m, np.int8)]),
        row_index=np.concatenate([poly.row_index, np.arange(m, dtype=np.int32) + 100]),
        integer=integer)
