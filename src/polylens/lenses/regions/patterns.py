"""Activation patterns (spline codes) of a batch, under a named convention.

A *pattern* of an input x is one bit per hidden neuron, layer 1 first: bit 1 when the neuron's
pre-activation is > 0 (the ``sign`` convention). For a network with piecewise-linear activations
(ReLU, leaky ReLU) the inputs sharing a pattern form its *activation region*, a convex polytope on
which the network is one affine map. (An activation region is not the same as a *linear piece*, a
maximal connected set on which the network is affine: two neighbouring regions may carry the same
affine map, e.g. across the boundary of a neuron whose outgoing weights are zero.)

For smooth activations (the GELU seed) a pattern is a convention, never a fact of the network, and
every output names it: ``sign`` (pre-activation > 0) or ``gelu-curvature`` (bit 1 where GELU is
convex, |a| < sqrt(2), where GELU'' = phi(a) (2 - a^2) changes sign).

Patterns are stored as boolean arrays (N, H) and written as strings of ``0``/``1`` (the CLI contract)
or bit-packed bytes (:func:`pack`) for grouping many of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from polylens.errors import ParameterError

__all__ = ["CONVENTIONS", "PatternSet", "convention_note", "group", "hamming", "is_piecewise_linear", "jaccard",
           "pack", "patterns", "pre_activations", "to_string", "from_string", "unpack"]

Array = np.ndarray

SQRT2 = math.sqrt(2.0)
#: The conventions a pattern can be read under, with what bit 1 means.
CONVENTIONS = {
    "sign": "bit 1 = pre-activation > 0",
    "gelu-curvature": "bit 1 = pre-activation in (-sqrt(2), sqrt(2)), where GELU is convex",
}


def is_piecewise_linear(net) -> bool:
    """Whether every hidden activation is ReLU, leaky ReLU or the identity (then activation regions
    are polytopes and the partitions of this lens are exact)."""
    from polylens.nn.activations import ActKind

    return all(a.kind in (ActKind.RELU, ActKind.LEAKY_RELU, ActKind.IDENTITY) for a in net.activations)


def convention_note(net, convention: str) -> str:
    """One sentence for every output: which convention the patterns follow and whether regions are exact."""
    if convention not in CONVENTIONS:
        raise ParameterError(f"The 'convention' parameter of regions must be one of "
                             f"{', '.join(map(repr, CONVENTIONS))}. Got {convention!r} instead.")
    if is_piecewise_linear(net) and convention == "sign":
        return "patterns: sign of the pre-activation (exact activation regions of a piecewise-linear network)"
    acts = ", ".join(sorted({str(a) for a in net.activations}))
    return (f"patterns: convention '{convention}' ({CONVENTIONS[convention]}) on a {acts} network: a convention, "
            "not a fact of the network; its regions are not polytopes beyond layer 1, so partitions are sampled")


def pre_activations(net, x: Array) -> Array:
    """Every hidden pre-activation of a batch, layer 1 first: (N, H)."""
    fp = net.forward(np.asarray(x, dtype=np.float64))
    return np.concatenate(fp.pre, axis=1) if fp.pre else np.zeros((fp.x.shape[0], 0))


def bits_of(a: Array, convention: str = "sign") -> Array:
    """The pattern bits of pre-activations ``a`` (any shape) under ``convention``."""
    if convention == "sign":
        return a > 0
    if convention == "gelu-curvature":
        return np.abs(a) < SQRT2
    raise ParameterError(f"The 'convention' parameter of regions must be one of "
                         f"{', '.join(map(repr, CONVENTIONS))}. Got {convention!r} instead.")


def patterns(net, x: Array, convention: str = "sign") -> Array:
    """The patterns of a batch ``x`` (N, d): boolean (N, H), layer 1 first."""
    return bits_of(pre_activations(net, x), convention)


def to_string(bits: Array) -> str:
    """One pattern (H,) as the contract's string of 0/1."""
    return "".join("1" if b else "0" for b in np.asarray(bits, dtype=bool).ravel())


def from_string(text: str, n: int | None = None) -> Array:
    """A pattern string back to bits; ParameterError for anything but 0/1 of length ``n``."""
    if not text or any(c not in "01" for c in text) or (n is not None and len(text) != n):
        raise ParameterError(f"A pattern must be a string of {n if n is not None else 'some'} characters 0/1. "
                             f"Got {text!r} instead.")
    return np.array([c == "1" for c in text], dtype=bool)


def pack(bits: Array) -> Array:
    """Bit-packed patterns: (N, H) bool -> (N, ceil(H/8)) uint8 (rows are hashable as bytes)."""
    return np.packbits(np.asarray(bits, dtype=bool), axis=1)


def unpack(packed: Array, n_bits: int) -> Array:
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1, count=n_bits).astype(bool)


def hamming(a: Array, b: Array | None = None) -> Array:
    """Hamming distances between the rows of ``a`` (N, H) and of ``b`` (M, H) (default: ``a``): (N, M)."""
    a = np.asarray(a, dtype=np.float64)
    b = a if b is None else np.asarray(b, dtype=np.float64)
    return a @ (1 - b).T + (1 - a) @ b.T


def jaccard(a: Array, b: Array | None = None) -> Array:
    """Jaccard distances 1 - |on(a) & on(b)| / |on(a) | on(b)| between rows (0 where both are all-off)."""
    a = np.asarray(a, dtype=np.float64)
    b = a if b is None else np.asarray(b, dtype=np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, 1.0 - inter / np.maximum(union, 1e-300), 0.0)


@dataclass(frozen=True, eq=False)
class PatternSet:
    """The distinct patterns of a batch: ``unique`` (K, H) bool, ``inverse`` (N,) the group of each
    input, ``counts`` (K,), in order of first appearance."""

    unique: Array
    inverse: Array
    counts: Array

    @property
    def strings(self) -> list[str]:
        return [to_string(u) for u in self.unique]


def group(bits: Array) -> PatternSet:
    """Group a batch by exact pattern (through the packed bytes)."""
    bits = np.asarray(bits, dtype=bool)
    if bits.shape[0] == 0:
        return PatternSet(bits.reshape(0, bits.shape[1]), np.zeros(0, np.int64), np.zeros(0, np.int64))
    packed = pack(bits)
    keys = [r.tobytes() for r in packed]
    first: dict[bytes, int] = {}
    inverse = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        inverse[i] = first.setdefault(k, len(first))
    order = np.zeros(len(first), dtype=np.int64)
    for i in range(len(keys) - 1, -1, -1):
        order[inverse[i]] = i
    return PatternSet(bits[order], inverse, np.bincount(inverse, minlength=len(first)))
