"""Lowering imported models to the Network normal form (shared by the torch and ONNX importers).

An importer walks a model and reports, in order, what each step does to the flattened feature
vector of one sample: an affine map (:meth:`ChainBuilder.linear`, :meth:`ChainBuilder.elementwise`,
:meth:`ChainBuilder.permute`) or an element-wise activation (:meth:`ChainBuilder.activation`).
:meth:`ChainBuilder.build` turns that sequence into a :class:`~polylens.nn.Network`:

* consecutive affine maps are composed into one (a Linear after a Linear, input normalisation
  before the first layer, a rescaling between an activation and the next layer);
* an explicit identity activation (``nn.Identity``, ONNX ``Identity``) that sits between two
  affine maps is kept as a layer boundary, so a network exported by polylens comes back with the
  same layers; anywhere else it is a no-op;
* two activations in a row, or an activation first, get an identity affine map between them;
* a network that ends in an activation gets an identity affine map appended (its logits are the
  activation's outputs).

Element-wise scalings and permutations are kept in a compact form (``x -> d * x[perm] + b``) until
a dense map absorbs them, so folding the normalisation of a large image never forms an n x n
matrix. :func:`conv_as_dense` lowers a 1-D or 2-D convolution with static shapes to the dense
affine map it is, exactly (every matrix entry is a kernel weight or zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from polylens.errors import ModelError
from polylens.nn.activations import ActKind, Activation
from polylens.nn.network import Dense, Network

Array = np.ndarray

__all__ = ["ChainBuilder", "conv_as_dense", "last_axis_dense", "same_padding"]


@dataclass(frozen=True, eq=False)
class _Monomial:
    """``x -> d * x[perm] + b`` on vectors of width ``len(perm)``; perm is a permutation."""

    perm: Array  # (n,) int
    d: Array  # (n,)
    b: Array  # (n,)

    @classmethod
    def identity(cls, n: int) -> "_Monomial":
        return cls(np.arange(n), np.ones(n), np.zeros(n))

    def to_dense(self) -> Dense:
        n = self.perm.size
        W = np.zeros((n, n))
        W[np.arange(n), self.perm] = self.d
        return Dense(W, self.b)

    def before(self, dense: Dense) -> Dense:
        """``dense(self(x))`` as one Dense: W' = W * d, columns moved to perm, b' = W b + c."""
        W = np.zeros_like(dense.W)
        W[:, self.perm] = dense.W * self.d
        return Dense(W, dense.W @ self.b + dense.b)


_Affine = Dense | _Monomial


def _compose(first: _Affine | None, then: _Affine) -> _Affine:
    """The affine map ``then(first(x))``."""
    if first is None:
        return then
    if isinstance(then, _Monomial):
        if isinstance(first, _Monomial):
            return _Monomial(first.perm[then.perm], then.d * first.d[then.perm], then.d * first.b[then.perm] + then.b)
        return Dense(then.d[:, None] * first.W[then.perm], then.d * first.b[then.perm] + then.b)
    if isinstance(first, _Monomial):
        return first.before(then)
    return first.then(then)


def _as_dense(a: _Affine) -> Dense:
    return a.to_dense() if isinstance(a, _Monomial) else a


class ChainBuilder:
    """Collects the steps of a feed-forward model, in order, and normalises them into a Network.

    ``input_dim`` is the width of one flattened input sample. Every step states what it does to
    the current flattened vector; the builder tracks its width and checks that each step fits.
    """

    def __init__(self, input_dim: int):
        self._input_dim = int(input_dim)
        self._width = int(input_dim)
        self._pending: _Affine | None = None
        self._steps: list[Dense | Activation] = []

    @property
    def width(self) -> int:
        """Width of the current (flattened) vector."""
        return self._width

    def _push(self, affine: _Affine, out_width: int) -> None:
        self._pending = _compose(self._pending, affine)
        self._width = out_width

    def linear(self, W: Array, b: Array | None = None) -> None:
        """Apply ``x -> W @ x + b``; W has shape (out, width)."""
        W = np.asarray(W, dtype=np.float64)
        if W.ndim != 2 or W.shape[1] != self._width:
            raise ModelError(f"An affine map of shape {W.shape} cannot act on a vector of width {self._width}.")
        b = np.zeros(W.shape[0]) if b is None else np.broadcast_to(np.asarray(b, dtype=np.float64), (W.shape[0],))
        self._push(Dense(W, b), W.shape[0])

    def elementwise(self, scale: Array | float = 1.0, shift: Array | float = 0.0) -> None:
        """Apply ``x -> scale * x + shift`` element-wise (each broadcast to the current width)."""
        n = self._width
        d = np.broadcast_to(np.asarray(scale, dtype=np.float64), (n,)).copy()
        b = np.broadcast_to(np.asarray(shift, dtype=np.float64), (n,)).copy()
        if not (np.all(np.isfinite(d)) and np.all(np.isfinite(b))):
            raise ModelError("An element-wise scaling or shift has non-finite values (a division by zero?).")
        self._push(_Monomial(np.arange(n), d, b), n)

    def permute(self, perm: Array) -> None:
        """Apply ``x -> x[perm]`` (perm a permutation of range(width))."""
        perm = np.asarray(perm, dtype=np.int64)
        if perm.shape != (self._width,) or not np.array_equal(np.sort(perm), np.arange(self._width)):
            raise ModelError(f"Not a permutation of {self._width} features.")
        if np.array_equal(perm, np.arange(self._width)):
            return
        self._push(_Monomial(perm, np.ones(self._width), np.zeros(self._width)), self._width)

    def activation(self, act: Activation) -> None:
        """Apply an element-wise activation; the affine steps since the last one become a layer."""
        if self._pending is not None:
            self._steps.append(_as_dense(self._pending))
            self._pending = None
        self._steps.append(act)

    def build(self, input_shape: Sequence[int] | None = None) -> Network:
        """The Network these steps compute (see the module docstring for the rules)."""
        steps = list(self._steps)
        if self._pending is not None:
            steps.append(_as_dense(self._pending))
        # An explicit identity is a layer boundary only between two affine maps.
        kept: list[Dense | Activation] = []
        for i, s in enumerate(steps):
            if isinstance(s, Activation) and s.kind is ActKind.IDENTITY:
                between = (i > 0 and isinstance(steps[i - 1], Dense)
                           and i + 1 < len(steps) and isinstance(steps[i + 1], Dense))
                if not between:
                    continue
            kept.append(s)
        layers: list[Dense] = []
        acts: list[Activation] = []
        pending: Dense | None = None
        width = self._input_dim
        for s in kept:
            if isinstance(s, Dense):
                pending = s if pending is None else pending.then(s)
                width = s.out_features
            else:
                layers.append(pending if pending is not None else _identity(width))
                acts.append(s)
                pending = None
        layers.append(pending if pending is not None else _identity(width))
        return Network(tuple(layers), tuple(acts), tuple(input_shape) if input_shape is not None else None)


def _identity(n: int) -> Dense:
    return Dense(np.eye(n), np.zeros(n))


def last_axis_dense(W: Array, b: Array | None, feature_shape: Sequence[int]) -> tuple[Array, Array, tuple[int, ...]]:
    """A linear map applied along the last axis of a (C-order flattened) feature tensor.

    ``W`` is (out, k) and acts on the last axis (of size k) of ``feature_shape``; returns the
    block-diagonal matrix (prod(shape[:-1]) * out, prod(shape)), the tiled bias and the new shape.
    """
    W = np.asarray(W, dtype=np.float64)
    lead = int(np.prod(feature_shape[:-1], dtype=np.int64))
    b = np.zeros(W.shape[0]) if b is None else np.asarray(b, dtype=np.float64)
    return np.kron(np.eye(lead), W), np.tile(b, lead), (*feature_shape[:-1], W.shape[0])


def same_padding(size: int, kernel: int, stride: int, dilation: int, extra_at_end: bool) -> tuple[int, int]:
    """Padding (begin, end) that gives output size ceil(size / stride) ("same" padding)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    small = total // 2
    return (small, total - small) if extra_at_end else (total - small, small)


def conv_as_dense(weight: Array, bias: Array | None, in_shape: Sequence[int], strides: Sequence[int],
                  pads: Sequence[int], dilations: Sequence[int], groups: int) -> tuple[Array, Array, tuple[int, ...]]:
    """The dense affine map of a 1-D or 2-D convolution with zero padding, on C-order flattened tensors.

    ``weight`` is (C_out, C_in / groups, *kernel) with 1 or 2 spatial dimensions; ``in_shape`` is
    (C_in, *spatial); ``pads`` is ONNX order (begin per spatial axis, then end per spatial axis).
    Returns (M, c, out_shape): M has shape (prod(out_shape), prod(in_shape)) and every entry is a
    kernel weight or zero, so the map is exact; c is the bias repeated over output positions.
    """
    weight = np.asarray(weight, dtype=np.float64)
    nsp = weight.ndim - 2
    if nsp not in (1, 2) or len(in_shape) != nsp + 1:
        raise ModelError(f"Only 1-D and 2-D convolutions are lowered; got a kernel of shape {weight.shape} "
                         f"on an input of shape {tuple(in_shape)}.")
    if nsp == 1:  # a 1-D convolution is a 2-D one over a height-1 image
        M, c, out = conv_as_dense(weight[:, :, None, :], bias, (in_shape[0], 1, in_shape[1]), (1, strides[0]),
                                  (0, pads[0], 0, pads[1]), (1, dilations[0]), groups)
        return M, c, (out[0], out[2])
    c_out, c_in_g, kh, kw = weight.shape
    c_in, H, W = (int(s) for s in in_shape)
    if c_in != c_in_g * groups or c_out % groups:
        raise ModelError(f"A convolution with {groups} groups and kernel {weight.shape} cannot take {c_in} channels.")
    sh, sw = strides
    ph0, pw0, ph1, pw1 = pads
    dh, dw = dilations
    Ho = (H + ph0 + ph1 - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + pw0 + pw1 - dw * (kw - 1) - 1) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ModelError(f"A convolution with kernel {weight.shape[2:]} leaves no output on a {H}x{W} input.")
    co, cl, i, j, oh, ow = np.meshgrid(np.arange(c_out), np.arange(c_in_g), np.arange(kh), np.arange(kw),
                                       np.arange(Ho), np.arange(Wo), indexing="ij", sparse=True)
    ci = (co // (c_out // groups)) * c_in_g + cl
    ih = oh * sh - ph0 + i * dh
    iw = ow * sw - pw0 + j * dw
    shape = np.broadcast_shapes(ci.shape, ih.shape, iw.shape)
    valid = np.broadcast_to((ih >= 0) & (ih < H) & (iw >= 0) & (iw < W), shape)
    rows = np.broadcast_to((co * Ho + oh) * Wo + ow, shape)[valid]
    cols = np.broadcast_to((ci * H + ih) * W + iw, shape)[valid]
    vals = np.broadcast_to(weight[co, cl, i, j], shape)[valid]
    M = np.zeros((c_out * Ho * Wo, c_in * H * W))
    M[rows, cols] = vals  # each (row, col) pair occurs once: distinct kernel taps read distinct pixels
    b = np.zeros(c_out) if bias is None else np.asarray(bias, dtype=np.float64)
    return M, np.repeat(b, Ho * Wo), (c_out, Ho, Wo)
