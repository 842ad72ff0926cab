"""The activation region of a pattern, exactly: its H-representation in the input box, redundant
rows removed by LP, its Chebyshev centre and inradius, the affine map to the logits on it, its
neighbours across each facet and whether the decision boundary crosses it.

For a piecewise-linear network and a pattern p, every hidden pre-activation is an affine function of
the input on the region of p, built layer by layer (``a_1 = W_1 x + b_1``, ``a_{l+1} = W_{l+1} D_l a_l
+ b_{l+1}`` with ``D_l`` the slopes that p chooses: 1 on, 0 (ReLU) or alpha (leaky ReLU) off), and
the region is ``{x in box : a_j(x) >= 0 where p_j = 1, a_j(x) <= 0 where p_j = 0}`` (its closure: the
contract's bit 1 means a > 0, so points on a facet belong to the side with bit 0). Each row is
written ``g . x <= h`` with ``|g| = 1``, so slacks are distances.

LPs go through the one solver adapter (:class:`polylens.lp.highs.LPSolver` on a
:class:`polylens.lp.matrix.MatrixLP`). A region is reported non-empty only with a witness: its
Chebyshev centre, whose pattern is re-computed by the network's own forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from polylens.errors import InfeasibleError, ParameterError
from polylens.lenses.regions.patterns import is_piecewise_linear, patterns, to_string

__all__ = ["REDUNDANCY_TOL", "RADIUS_TOL", "Region", "affine_maps", "chebyshev", "halfspaces", "region_of",
           "remove_redundant", "slopes"]

Array = np.ndarray

#: A row is dropped as redundant when the polytope without it reaches no further than this (a distance,
#: rows have unit norm) beyond the row, by the LP's rigorous (safe dual) upper bound.
REDUNDANCY_TOL = 1e-9
#: A region counts as full-dimensional when its Chebyshev radius exceeds this.
RADIUS_TOL = 1e-9


def _check_pwl(net, where: str) -> None:
    if not is_piecewise_linear(net):
        acts = ", ".join(sorted({str(a) for a in net.activations}))
        raise ParameterError(f"{where} needs a piecewise-linear network (ReLU or leaky ReLU); this one is {acts}. "
                             "Its patterns are a convention there (--convention), and its regions are not polytopes.")


def slopes(act, bits: Array) -> Array:
    """The slope of each neuron of one layer under its pattern bits."""
    from polylens.nn.activations import ActKind

    if act.kind is ActKind.IDENTITY:
        return np.ones(bits.shape, dtype=np.float64)
    off = act.alpha if act.kind is ActKind.LEAKY_RELU else 0.0
    return np.where(bits, 1.0, off)


def split_layers(net, bits: Array) -> list[Array]:
    out, k = [], 0
    for w in net.hidden_widths:
        out.append(np.asarray(bits[k:k + w], dtype=bool))
        k += w
    if k != len(bits):
        raise ParameterError(f"A pattern of this network has {k} bits; got {len(bits)}.")
    return out


def affine_maps(net, bits: Array) -> tuple[list[tuple[Array, Array]], tuple[Array, Array]]:
    """Under pattern ``bits`` (H,): the affine map (A_l, c_l) of every hidden layer's pre-activations
    as functions of the input, and (C, e), the logits' map: logits = C x + e on the region."""
    per = split_layers(net, bits)
    A, c = net.layers[0].W.copy(), net.layers[0].b.copy()
    maps = []
    for l, act in enumerate(net.activations):
        maps.append((A, c))
        D = slopes(act, per[l])
        W, b = net.layers[l + 1].W, net.layers[l + 1].b
        A, c = W @ (D[:, None] * A), W @ (D * c) + b
    return maps, (A, c)


def halfspaces(net, bits: Array) -> tuple[Array, Array, Array]:
    """The region of ``bits`` as ``G x <= h`` (rows of unit norm, one per neuron whose function is not
    constant): ``(G (m, d), h (m,), neuron (m,))``, ``neuron`` the flat index of each row's neuron.
    A neuron constant on the region that contradicts its bit makes the region empty: then one row
    ``0 . x <= -1`` stands for it."""
    maps, _ = affine_maps(net, bits)
    A = np.concatenate([m[0] for m in maps], axis=0)
    c = np.concatenate([m[1] for m in maps], axis=0)
    s = np.where(bits, 1.0, -1.0)
    G, h = -s[:, None] * A, s * c
    norm = np.linalg.norm(G, axis=1)
    keep = norm > 1e-12 * (1 + np.abs(h))
    bad = ~keep & (h < 0)
    G, h, idx = G[keep] / norm[keep, None], h[keep] / norm[keep], np.flatnonzero(keep)
    if bad.any():
        G = np.vstack([G, np.zeros((1, A.shape[1]))])
        h = np.append(h, -1.0)
        idx = np.append(idx, int(np.flatnonzero(bad)[0]))
    return G, h, idx


def _lp(G: Array, h: Array, lo: Array, hi: Array):
    from polylens.lp.matrix import MatrixLP

    m = G.shape[0]
    return MatrixLP(sp.csr_matrix(G), np.full(m, -np.inf), h, lo, hi)


def chebyshev(G: Array, h: Array, lo: Array | None = None, hi: Array | None = None) -> tuple[Array | None, float]:
    """The Chebyshev centre and radius of ``{G x <= h, lo <= x <= hi}`` (rows of unit norm; default box
    [0, 1]^d): the largest ball inside. ``(None, 0.0)`` when the set is empty."""
    from polylens.lp.highs import LPSolver, Sense
    from polylens.lp.matrix import MatrixLP

    m, d = G.shape
    lo = np.zeros(d) if lo is None else np.asarray(lo, dtype=np.float64)
    hi = np.ones(d) if hi is None else np.asarray(hi, dtype=np.float64)
    rmax = float(np.max(hi - lo)) / 2 if d else 0.0
    A = np.zeros((m + 2 * d, d + 1))
    A[:m, :d] = G
    A[:m, d] = 1.0
    A[m:m + d, :d] = np.eye(d)
    A[m:m + d, d] = -1.0
    A[m + d:, :d] = np.eye(d)
    A[m + d:, d] = 1.0
    A = sp.csr_matrix(A)
    row_lo = np.concatenate([np.full(m, -np.inf), lo, np.full(d, -np.inf)])
    row_hi = np.concatenate([h, np.full(d, np.inf), hi])
    lp = MatrixLP(A, row_lo, row_hi, np.append(lo, 0.0), np.append(hi, rmax))
    cost = np.zeros(d + 1)
    cost[-1] = 1.0
    try:
        sol = LPSolver(lp).solve(cost, Sense.MAX)
    except InfeasibleError:
        return None, 0.0
    r = float(sol.x[-1])
    if not r > 0:
        return None, 0.0
    return np.clip(sol.x[:d], lo, hi), r


def remove_redundant(G: Array, h: Array, lo: Array | None = None, hi: Array | None = None,
                     tol: float = REDUNDANCY_TOL) -> Array:
    """Indices of the rows of ``{G x <= h}`` within the box that are needed: each row in turn is dropped
    when the rigorous upper bound of ``g_i . x`` over the rows still kept (and the box) is at most
    ``h_i + tol``. The rows kept describe the same set up to ``tol``."""
    from polylens.lp.highs import LPSolver, Sense

    m, d = G.shape
    lo = np.zeros(d) if lo is None else np.asarray(lo, dtype=np.float64)
    hi = np.ones(d) if hi is None else np.asarray(hi, dtype=np.float64)
    # Rows that the box alone satisfies are redundant without an LP.
    box_max = np.where(G > 0, G * hi, G * lo).sum(axis=1)
    keep = box_max > h + tol
    for i in np.flatnonzero(keep):
        others = keep.copy()
        others[i] = False
        if not others.any():
            continue
        try:
            sol = LPSolver(_lp(G[others], h[others], lo, hi)).solve(G[i], Sense.MAX)
        except InfeasibleError:
            continue
        if sol.safe_bound <= h[i] + tol:
            keep[i] = False
    return np.flatnonzero(keep)


def _max_over(G, h, lo, hi, cost: Array) -> tuple[float, float, Array]:
    from polylens.lp.highs import LPSolver, Sense

    sol = LPSolver(_lp(G, h, lo, hi)).solve(cost, Sense.MAX)
    return sol.objective, sol.safe_bound, sol.x


@dataclass(frozen=True, eq=False)
class Region:
    """The activation region of one pattern in the input box.

    ``bits`` (H,); ``G`` (m, d), ``h`` (m,): the needed rows (unit norm), ``neurons`` (m,) the flat
    neuron index of each; ``n_rows``: rows before redundancy removal (neurons with non-constant
    functions); ``center``/``radius``: the Chebyshev ball; ``witness``: the forward pass at the centre
    has this pattern; ``C``/``e``: logits = C x + e on the region; ``cls``: the class at the centre;
    ``crosses``: the decision boundary passes through the region, with a witness (an LP optimum in the
    region, with the region's pattern, where the forward pass ranks some class above ``cls``); ``class_proven``: ``cls`` is the argmax everywhere in it, by rigorous LP bounds;
    ``neighbours``: (neuron, pattern string) across each needed facet whose flipped pattern is a
    full-dimensional region."""

    bits: Array
    G: Array
    h: Array
    neurons: Array
    n_rows: int
    center: Array
    radius: float
    witness: bool
    C: Array
    e: Array
    cls: int
    crosses: bool
    class_proven: bool
    neighbours: tuple[tuple[int, str], ...] = field(default=())

    @property
    def pattern(self) -> str:
        return to_string(self.bits)

    def to_dict(self, net=None) -> dict:
        from polylens.nn.network import neuron_ids

        ids = [str(n) for n in neuron_ids(net)] if net is not None else None
        name = (lambda j: ids[j]) if ids else (lambda j: int(j))
        return {"pattern": self.pattern, "center": self.center.tolist(), "radius": self.radius,
                "witness": self.witness, "class": self.cls, "crosses_decision_boundary": self.crosses,
                "class_proven": self.class_proven, "rows_before": self.n_rows, "facets": len(self.h),
                "halfspaces": [{"neuron": name(j), "g": g.tolist(), "h": float(hh)}
                               for j, g, hh in zip(self.neurons, self.G, self.h)],
                "box": "0 <= x <= 1 (implicit)",
                "affine_map": {"C": self.C.tolist(), "e": self.e.tolist()},
                "neighbours": [{"neuron": name(j), "pattern": p} for j, p in self.neighbours]}


def region_of(net, bits: Array, *, neighbours: bool = True) -> Region:
    """The region of pattern ``bits`` in [0, 1]^d (ParameterError when it is empty or not
    full-dimensional)."""
    _check_pwl(net, "The region of a pattern")
    bits = np.asarray(bits, dtype=bool)
    d = net.input_dim
    lo, hi = np.zeros(d), np.ones(d)
    G, h, idx = halfspaces(net, bits)
    center, radius = chebyshev(G, h)
    if center is None or radius <= RADIUS_TOL:
        raise ParameterError(f"The pattern {to_string(bits)} has no full-dimensional region in the input box.")
    keep = remove_redundant(G, h)
    Gk, hk, nk = G[keep], h[keep], idx[keep]
    _, (C, e) = affine_maps(net, bits)
    witness = bool(np.array_equal(patterns(net, center[None])[0], bits))
    logit = C @ center + e
    k = int(np.argmax(logit))
    crosses, proven = False, True
    if len(e) > 1:
        for j in range(len(e)):
            if j == k:
                continue
            obj, safe, xs = _max_over(Gk if len(hk) else np.zeros((1, d)), hk if len(hk) else np.zeros(1) + 1.0,
                                      lo, hi, C[j] - C[k])
            const = e[j] - e[k]
            if obj + const > 0 and not crosses:
                # a witness: the LP optimum (pulled a hair towards the centre, into the region) where the
                # network's own forward pass ranks class j above class k
                for w in (1e-9, 0.0):
                    xw = np.clip((1 - w) * xs + w * center, 0.0, 1.0)
                    z = net(xw[None])[0]
                    if z[j] > z[k] and np.array_equal(patterns(net, xw[None])[0], bits):
                        crosses = True
                        break
            if safe + const >= 0:
                proven = False
    nb = []
    if neighbours:
        for j in nk:
            flipped = bits.copy()
            flipped[j] = ~flipped[j]
            G2, h2, _ = halfspaces(net, flipped)
            c2, r2 = chebyshev(G2, h2)
            if c2 is not None and r2 > RADIUS_TOL:
                nb.append((int(j), to_string(flipped)))
    return Region(bits, Gk, hk, nk, len(h), center, radius, witness, C, e, k, crosses, proven, tuple(nb))
