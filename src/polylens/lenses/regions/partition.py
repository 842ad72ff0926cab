"""Exact partitions of a piecewise-linear network's input space: along a segment, in a 2-D slice,
and in the whole input box.

* **Segment.** On x(t) = x0 + t (x1 - x0) every pre-activation of layer 1 is affine in t; its zeros
  split [0, 1] into intervals, on each of which layer 2's pre-activations are affine in t again, and
  so on: every boundary crossing, layer by layer, with no sampling.
* **Slice.** On the plane x(s, t) = x0 + s u + t v the same holds in two variables: the square
  [lo, hi]^2 is split recursively, one convex polygon at a time, by the zero line of each neuron's
  affine function restricted to the plane (only neurons whose sign changes over the polygon's
  vertices cut it). The pieces tile the square; on each the logits are affine in (s, t), so the
  decision boundary inside a piece is cut out exactly the same way.
* **Box.** Every full-dimensional region inside [0, 1]^d, by a breadth-first search from the region
  of the box's centre over patterns one bit away, each kept when its Chebyshev LP has a positive
  radius (regions that share a facet differ in the bit of that facet's neuron, and the facet graph of
  a tiling of the box is connected, so the search finds every region once it runs out of candidates).

For a network with smooth activations only :func:`segment_sampled` applies (patterns under a
convention, changes located by bisection; marked as not exact).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from polylens.lenses.regions.patterns import patterns, to_string
from polylens.lenses.regions.region import RADIUS_TOL, _check_pwl, chebyshev, halfspaces, slopes

#: What ``"exact": true`` means in every output of this module.
EXACT_MEANS = ("computed by the exact construction (affine pieces split where a neuron's affine function is zero; "
               "no sampling), in float64: vertices and crossings carry rounding of order 1e-15 relative, and "
               "pieces thinner than 1e-12 relative are merged into a neighbour")

__all__ = ["EXACT_MEANS", "Enumeration", "Segment", "Slice", "SlicePiece", "enumerate_regions", "segment", "segment_sampled",
           "slice_plane", "polygon_area"]

Array = np.ndarray


# ---------------------------------------------------------------------------------------------
# Segment


@dataclass(frozen=True, eq=False)
class Segment:
    """The partition of a segment: ``crossings`` (K,) in (0, 1), increasing; ``bits`` (K+1, H) the
    pattern of each piece in order; ``layers`` (K,) the hidden layer (1-based) whose neuron makes each
    crossing; ``exact``: computed layer by layer (False: sampled and bisected); ``convention``."""

    crossings: Array
    bits: Array
    layers: Array
    exact: bool
    convention: str = "sign"

    @property
    def patterns(self) -> list[str]:
        return [to_string(b) for b in self.bits]

    def flipped(self) -> list[list[int]]:
        """The flat indices of the neurons that flip at each crossing."""
        return [np.flatnonzero(self.bits[i] != self.bits[i + 1]).tolist() for i in range(len(self.crossings))]

    def to_dict(self) -> dict:
        return {"crossings": self.crossings.tolist(), "patterns": self.patterns, "exact": self.exact,
                **({"exact_means": EXACT_MEANS} if self.exact else
                   {"method": "dense sampling (patterns under the convention) and bisection to 1e-12 in t"}),
                "convention": self.convention, "layers": self.layers.tolist(), "flipped": self.flipped()}


def segment(net, x0: Array, x1: Array) -> Segment:
    """Every activation boundary on x(t) = x0 + t (x1 - x0), t in [0, 1], exactly (piecewise linear)."""
    _check_pwl(net, "An exact segment partition")
    x0 = np.asarray(x0, dtype=np.float64).ravel()
    dx = np.asarray(x1, dtype=np.float64).ravel() - x0
    W, b = net.layers[0].W, net.layers[0].b
    # pieces: list of (t0, t1, P, Q, bits-so-far, layer of the crossing at t0)
    pieces = [(0.0, 1.0, W @ x0 + b, W @ dx, np.zeros(0, bool), 0)]
    for l, act in enumerate(net.activations):
        out = []
        for t0, t1, P, Q, bits, lay in pieces:
            with np.errstate(divide="ignore", invalid="ignore"):
                roots = -P / Q
            cut = np.sort(np.unique(roots[(Q != 0) & (roots > t0) & (roots < t1)]))
            edges = np.concatenate([[t0], cut, [t1]])
            for i in range(len(edges) - 1):
                a, c = edges[i], edges[i + 1]
                if not c > a:
                    continue
                mid = 0.5 * (a + c)
                nb = (P + mid * Q) > 0
                D = slopes(act, nb)
                W2, b2 = net.layers[l + 1].W, net.layers[l + 1].b
                P2, Q2 = W2 @ (D * P) + b2, W2 @ (D * Q)
                out.append((a, c, P2, Q2, np.concatenate([bits, nb]), lay if i == 0 else l + 1))
        pieces = out
    # merge neighbouring pieces with the same full pattern (a root that changed nothing)
    ts, bs, ls = [], [pieces[0][4]], []
    for p in pieces[1:]:
        if np.array_equal(p[4], bs[-1]):
            continue
        ts.append(p[0])
        bs.append(p[4])
        ls.append(p[5])
    return Segment(np.array(ts), np.array(bs, dtype=bool).reshape(len(bs), -1), np.array(ls, dtype=np.int64), True)


def segment_sampled(net, x0: Array, x1: Array, convention: str = "sign", n: int = 2001,
                    tol: float = 1e-12) -> Segment:
    """Pattern changes on the segment found by dense sampling (``n`` points) and bisection to ``tol``
    in t: what any network admits (smooth activations under a convention); changes closer together
    than the sampling step can be missed, so the result is marked not exact."""
    x0 = np.asarray(x0, dtype=np.float64).ravel()
    dx = np.asarray(x1, dtype=np.float64).ravel() - x0
    widths = np.cumsum([0] + list(net.hidden_widths))
    pat = lambda t: patterns(net, x0[None] + np.atleast_1d(t)[:, None] * dx[None], convention)
    t = np.linspace(0.0, 1.0, n)
    bits = pat(t)
    ts, bs, ls = [], [bits[0]], []
    for i in np.flatnonzero(np.any(bits[1:] != bits[:-1], axis=1)):
        a, c = t[i], t[i + 1]
        ba = bits[i]
        while c - a > tol:
            m = 0.5 * (a + c)
            bm = pat(m)[0]
            if np.array_equal(bm, ba):
                a = m
            else:
                c = m
        ts.append(0.5 * (a + c))
        bs.append(bits[i + 1])
        j = int(np.flatnonzero(bits[i] != bits[i + 1])[0])
        ls.append(int(np.searchsorted(widths, j, side="right")))
    return Segment(np.array(ts), np.array(bs, dtype=bool).reshape(len(bs), -1), np.array(ls, dtype=np.int64),
                   False, convention)


# ---------------------------------------------------------------------------------------------
# Slice


def polygon_area(poly: Array) -> float:
    """Area of a simple polygon (V, 2) by the shoelace formula."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _split(poly: Array, f: Array) -> tuple[Array | None, Array | None]:
    """Split a convex polygon (V, 2) by the affine function with values ``f`` (V,) at its vertices:
    (part where f >= 0, part where f <= 0); None for an empty part."""
    pos, neg = [], []
    V = len(poly)
    for i in range(V):
        j = (i + 1) % V
        p, fp, q, fq = poly[i], f[i], poly[j], f[j]
        if fp >= 0:
            pos.append(p)
        if fp <= 0:
            neg.append(p)
        if (fp > 0 and fq < 0) or (fp < 0 and fq > 0):
            r = fp / (fp - fq)
            x = p + r * (q - p)
            pos.append(x)
            neg.append(x)
    mk = lambda pts: np.array(pts) if len(pts) >= 3 else None
    return mk(pos), mk(neg)


@dataclass(frozen=True, eq=False)
class SlicePiece:
    """One region of a slice: ``polygon`` (V, 2) in (s, t), ``bits`` (H,), ``area``, ``cls`` (the class at
    its centroid), ``classes`` (every class that wins somewhere inside), ``logits`` (k, 3): logits =
    M @ (1, s, t) on the piece; ``cells``: ((class, polygon), ...) the argmax cells where the decision
    boundary crosses the piece (empty when one class wins all of it)."""

    polygon: Array
    bits: Array
    area: float
    cls: int
    classes: tuple[int, ...]
    logits: Array
    cells: tuple = ()

    @property
    def centroid(self) -> Array:
        return self.polygon.mean(axis=0)


@dataclass(frozen=True, eq=False)
class Slice:
    """The partition of the square ``[lo, hi]^2`` of the plane x(s, t) = origin + s u + t v: ``pieces``;
    ``boundary``: decision-boundary segments ((s, t), (s, t)); ``leaves_box``: the square maps partly
    outside [0, 1]^d; ``area_in_box``: the area of the square that maps inside; ``seconds``."""

    pieces: tuple[SlicePiece, ...]
    boundary: tuple[tuple[tuple[float, float], tuple[float, float]], ...]
    extent: tuple[float, float]
    origin: Array
    u: Array
    v: Array
    leaves_box: bool
    area_in_box: float
    seconds: float

    @property
    def area(self) -> float:
        return float(sum(p.area for p in self.pieces))

    def point(self, s: float, t: float) -> Array:
        return self.origin + s * self.u + t * self.v

    def to_dict(self) -> dict:
        lo, hi = self.extent
        return {"regions": [{"pattern": to_string(p.bits), "polygon": p.polygon.tolist(), "area": p.area,
                             "class": p.cls, "classes": list(p.classes)} for p in self.pieces],
                "area": self.area, "extent": [lo, hi], "count": len(self.pieces),
                "decision_boundary": [[list(a), list(b)] for a, b in self.boundary],
                "leaves_box": self.leaves_box, "area_in_box": self.area_in_box,
                "box_note": ("the slice leaves [0, 1]^d: pieces outside the box are inputs the network never saw"
                             if self.leaves_box else "the slice lies inside [0, 1]^d"),
                "seconds": self.seconds, "exact": True, "exact_means": EXACT_MEANS, "convention": "sign"}


def _class_cells(poly: Array, M: Array) -> tuple[list[tuple[int, Array]], list]:
    """The argmax cells of the affine logits M (k, 3) on a convex polygon, and the boundary segments."""
    k = M.shape[0]
    cells = []
    for c in range(k):
        cell = poly
        for j in range(k):
            if j == c or cell is None:
                continue
            D = M[c] - M[j]
            f = D[0] + cell @ D[1:]
            if np.all(f >= 0):
                continue
            cell, _ = _split(cell, f)
        if cell is not None and polygon_area(cell) > 0:
            cells.append((c, cell))
    segs = []
    for c, cell in cells:
        V = len(cell)
        for i in range(V):
            p, q = cell[i], cell[(i + 1) % V]
            m = 0.5 * (p + q)
            lm = M[:, 0] + M[:, 1:] @ m
            others = np.delete(np.arange(k), c)
            j = others[int(np.argmax(lm[others]))]
            if j > c and abs(lm[j] - lm[c]) <= 1e-9 * (1 + abs(lm[c])):
                segs.append((tuple(map(float, p)), tuple(map(float, q))))
    return cells, segs


def _box_area(origin, u, v, lo, hi) -> tuple[bool, float]:
    sq = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]], dtype=np.float64)
    poly = sq
    for j in range(len(origin)):
        for sign, bound in ((1.0, 0.0), (-1.0, 1.0)):
            # sign * (x_j - bound) >= 0
            f = sign * (origin[j] + poly[:, 0] * u[j] + poly[:, 1] * v[j] - bound)
            if np.all(f >= 0):
                continue
            poly, _ = _split(poly, f)
            if poly is None:
                return True, 0.0
    inside = polygon_area(poly)
    return not np.isclose(inside, (hi - lo) ** 2, rtol=1e-12, atol=0), inside


def slice_plane(net, origin: Array, u: Array, v: Array, extent: tuple[float, float] = (-0.5, 1.5),
                boundary: bool = True) -> Slice:
    """Every region of the plane origin + s u + t v over (s, t) in [lo, hi]^2, exactly (piecewise linear)."""
    _check_pwl(net, "An exact slice")
    t_start = time.perf_counter()
    origin = np.asarray(origin, dtype=np.float64).ravel()
    u = np.asarray(u, dtype=np.float64).ravel()
    v = np.asarray(v, dtype=np.float64).ravel()
    lo, hi = float(extent[0]), float(extent[1])
    W, b = net.layers[0].W, net.layers[0].b
    M0 = np.stack([W @ origin + b, W @ u, W @ v], axis=1)
    square = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]], dtype=np.float64)
    work = [(square, M0, np.zeros(0, bool))]
    for l, act in enumerate(net.activations):
        nxt = []
        W2, b2 = net.layers[l + 1].W, net.layers[l + 1].b
        for poly, M, bits in work:
            vals = M[:, 0][None, :] + poly @ M[:, 1:].T  # (V, n)
            scale = 1e-12 * (1.0 + np.abs(M).sum(axis=1) * max(abs(lo), abs(hi), 1.0))
            cutting = np.flatnonzero((vals.max(axis=0) > scale) & (vals.min(axis=0) < -scale))
            pieces = [poly]
            for j in cutting:
                new = []
                for pc in pieces:
                    f = M[j, 0] + pc @ M[j, 1:]
                    if f.max() <= scale[j] or f.min() >= -scale[j]:
                        new.append(pc)
                        continue
                    a, c = _split(pc, f)
                    new.extend(x for x in (a, c) if x is not None)
                pieces = new
            for pc in pieces:
                cen = pc.mean(axis=0)
                nb = (M[:, 0] + M[:, 1:] @ cen) > 0
                D = slopes(act, nb)
                M2 = W2 @ (D[:, None] * M)
                M2[:, 0] += b2
                nxt.append((pc, M2, np.concatenate([bits, nb])))
        work = nxt
    out, segs = [], []
    for poly, M, bits in work:
        area = polygon_area(poly)
        cen = poly.mean(axis=0)
        cls = int(np.argmax(M[:, 0] + M[:, 1:] @ cen))
        classes, cells = (cls,), ()
        if boundary and M.shape[0] > 1:
            vl = M[:, 0][None, :] + poly @ M[:, 1:].T
            top = np.argmax(vl, axis=1)
            # the cell of a class is convex: when every vertex picks cls, the whole polygon does
            cells, sg = _class_cells(poly, M) if np.any(top != cls) else ([], [])
            if cells:
                classes = tuple(sorted({c for c, _ in cells}))
                segs.extend(sg)
        out.append(SlicePiece(poly, bits, area, cls, classes, M, tuple(cells)))
    leaves, inside = _box_area(origin, u, v, lo, hi)
    return Slice(tuple(out), tuple(segs), (lo, hi), origin, u, v, leaves, inside, time.perf_counter() - t_start)


# ---------------------------------------------------------------------------------------------
# Box


@dataclass(frozen=True, eq=False)
class Enumeration:
    """Every region found in [0, 1]^d: ``bits`` (n, H), ``centers`` (n, d), ``radii`` (n,);
    ``complete``: the search ran out of candidates within its budget; ``lps``: Chebyshev LPs solved;
    ``witnessed``: how many centres the forward pass confirms; ``seconds``."""

    bits: Array
    centers: Array
    radii: Array
    complete: bool
    lps: int
    witnessed: int
    seconds: float
    budget: int

    @property
    def count(self) -> int:
        return int(len(self.radii))

    def to_dict(self) -> dict:
        return {"regions": [{"pattern": to_string(b), "center": c.tolist(), "radius": float(r)}
                            for b, c, r in zip(self.bits, self.centers, self.radii)],
                "count": self.count, "complete": self.complete, "budget": self.budget, "lps": self.lps,
                "witnessed": self.witnessed, "seconds": self.seconds, "exact": True, "convention": "sign",
                "exact_means": ("every region reported has a witness (its Chebyshev centre's forward pattern); "
                                "complete: the search over one-bit neighbours ran out of candidates, each refused "
                                "by its Chebyshev LP (radius <= radius_tol: the solver's verdict within its 1e-9 "
                                "tolerances, not a certificate)"),
                "radius_tol": RADIUS_TOL}


def enumerate_regions(net, budget: int = 10_000, progress=None, seeds: Array | None = None) -> Enumeration:
    """Every full-dimensional region of ``net`` in [0, 1]^d (see the module docstring), at most
    ``budget`` regions; ``progress(done, total)`` is called as regions are found (total: the budget)."""
    _check_pwl(net, "Enumerating regions")
    t0 = time.perf_counter()
    d = net.input_dim
    start = np.full((1, d), 0.5) if seeds is None else np.atleast_2d(np.asarray(seeds, dtype=np.float64))
    seen: set[bytes] = set()
    found_b, found_c, found_r = [], [], []
    queue: deque = deque()
    lps = 0

    def consider(bits: Array) -> None:
        nonlocal lps
        key = np.packbits(bits).tobytes() + bytes([len(bits) % 8])
        if key in seen:
            return
        seen.add(key)
        G, h, _ = halfspaces(net, bits)
        lps += 1
        c, r = chebyshev(G, h)
        if c is not None and r > RADIUS_TOL:
            found_b.append(bits)
            found_c.append(c)
            found_r.append(r)
            queue.append(bits)
            if progress is not None:
                progress(len(found_b), budget)

    for b in patterns(net, start):
        consider(b)
    complete = True
    while queue:
        if len(found_b) >= budget:
            complete = False
            break
        bits = queue.popleft()
        for j in range(len(bits)):
            if len(found_b) >= budget:
                break
            fl = bits.copy()
            fl[j] = ~fl[j]
            consider(fl)
    if queue and len(found_b) >= budget:
        complete = False
    n = min(len(found_b), budget)
    bits = np.array(found_b[:n], dtype=bool).reshape(n, -1)
    centers = np.array(found_c[:n]).reshape(n, d)
    witnessed = int(np.sum(np.all(patterns(net, centers) == bits, axis=1))) if n else 0
    return Enumeration(bits, centers, np.array(found_r[:n]), complete, lps, witnessed,
                       time.perf_counter() - t0, budget)
