"""The network at a point: forward pass with gates, local affine maps, backpropagation.

Notation (as in :mod:`polylens.nn.network`): ``z_0 = x``; hidden layer l = 1..L-1 has
``a_l = W_l z_{l-1} + b_l`` and ``z_l = f_l(a_l)``; ``logits = a_L = W_L z_{L-1} + b_L``.

**Backpropagation.** For any per-neuron slopes ``s_l`` (N, n_l) of the hidden layers, a cotangent
``y_m`` on ``z_m`` (the post-activations of hidden layer m; ``z_0 = x``) is pulled back to the input by

    y_{l-1} = (y_l * s_l) W_l   for l = m .. 1;

a cotangent ``y`` on the output of affine layer k (``a_k``; k = L: the logits) enters it as
``y_{k-1} = y W_k``. :func:`pull_back` is that recursion, the only one in polylens. Two choices of
slopes make it what the analyses need:

* **derivatives** ``s_l = f_l'(a_l)``: ``y_0`` is the gradient of ``y . a_k`` with respect to x
  (a vector-Jacobian product; :meth:`Linearisation.gradient`, used by attacks and searches);
* **secant gates** ``s_l = g_l``, with every activation written at the point as

      z = g * a + o,   g = (f(a) - f(0)) / a   (g = f'(a/2) when |a| < GATE_SMALL),   o = f(a) - g * a,

  the *local affine map*: with the gates frozen the network is affine in x, and
  ``y_0 = y D`` with D the summed path weights of :mod:`polylens.lenses.discover.trace`.
  :meth:`Linearisation.affine_map` gives it as (A, c) with ``a_k = A x + c`` at the point, for the
  logits or any hidden layer. For relu and leaky_relu, whose gates are the 0/1 (or alpha) indicator
  of the piece, it is the exact affine map of the network on the point's linear region.

Every function is batched over N points.

>>> import numpy as np
>>> from polylens.nn import Network
>>> net = Network.from_arrays([np.array([[1.0, -1.0], [1.0, 1.0]]), np.array([[1.0, 2.0]])],
...                           [np.zeros(2), np.array([0.5])], "relu")
>>> lin = linearise(net, np.array([[0.2, 0.7]]))
>>> A, c = lin.affine_map()
>>> A.tolist(), c.tolist()
([[[2.0, 2.0]]], [[0.5]])
>>> lin.gradient(np.array([[1.0]])).tolist()
[[2.0, 2.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from polylens.errors import ParameterError
from polylens.nn.activations import Activation
from polylens.nn.network import Network

Array = np.ndarray

__all__ = ["GATE_SMALL", "Linearisation", "input_gradient", "linearise", "neuron_values_and_gradients", "pull_back",
           "secant_gates"]

#: Below this |a| the secant slope (f(a) - f(0)) / a loses digits to cancellation; f'(a/2) equals it
#: to O(a^2 f''') (< 1e-12 here for every registered kind) and the offset absorbs the rest exactly.
GATE_SMALL = 1e-6


def secant_gates(act: Activation, a: Array) -> tuple[Array, Array]:
    """Secant gates and offsets of ``act`` at pre-activations ``a`` (any shape): ``f(a) = g*a + o``.

    ``g`` is the secant slope of f between 0 and a; for the gating activations (relu, leaky_relu, gelu,
    silu, identity), where f(a) = a * s(a), it is the gate s(a) itself and ``o`` is zero up to
    rounding. ``o`` is computed as ``f(a) - g * a``, so ``g * a + o`` reproduces f(a) to rounding for
    every kind: the decomposition never relies on a property of the activation.
    """
    a = np.asarray(a, dtype=np.float64)
    fa = act(a)
    f0 = float(act(np.zeros(1))[0])
    small = np.abs(a) < GATE_SMALL
    safe = np.where(small, 1.0, a)
    g = np.where(small, act.derivative(a / 2.0), (fa - f0) / safe)
    return g, fa - g * a


def _broadcast_slope(s: Array, ndim: int) -> Array:
    """Slopes (N, n) shaped to multiply cotangents (N, ..., n) of ``ndim`` dimensions."""
    return s if ndim == 2 else s.reshape(s.shape[0], *([1] * (ndim - 2)), s.shape[1])


def pull_back(network: Network, slopes: Sequence[Array], cotangent: Array, layer: int) -> tuple[Array, ...]:
    """The backpropagation recursion of the module docstring.

    ``cotangent``: (N, n_m) or (N, K, n_m) on ``z_m``, m = ``layer`` (0 .. L-1; 0 is the input).
    ``slopes[l-1]``: (N, n_l) for the hidden layers l = 1 .. m. Returns the cotangents on
    ``z_0 = x, z_1, ..., z_m`` (the last is ``cotangent`` itself), each of shape (N, [K,] n_l).
    """
    H = network.n_hidden_layers
    if not 0 <= layer <= H:
        raise ParameterError(f"The 'layer' parameter of pull_back must be an int in [0, {H}]. Got {layer!r} instead.")
    y = np.asarray(cotangent, dtype=np.float64)
    out = [None] * (layer + 1)
    out[layer] = y
    for l in range(layer, 0, -1):  # z_l -> a_l -> z_{l-1}
        y = (y * _broadcast_slope(slopes[l - 1], y.ndim)) @ network.layers[l - 1].W
        out[l - 1] = y
    return tuple(out)


def _onto_inputs(network: Network, cotangent: Array, layer: int) -> Array:
    """A cotangent (N, [K,] n_k) on ``a_k`` (k = ``layer``, 1 .. L) as one on ``z_{k-1}``: ``y W_k``."""
    return np.asarray(cotangent, dtype=np.float64) @ network.layers[layer - 1].W


@dataclass(frozen=True, eq=False)
class Linearisation:
    """The network at N points (see the module docstring). Shapes: ``x`` (N, d); ``pre[l-1]``,
    ``post[l-1]`` (N, n_l) per hidden layer; ``logits`` (N, C). ``gates``, ``offsets`` (secant) and
    ``derivatives`` (f') are computed on first use, (N, n_l) per hidden layer."""

    network: Network
    x: Array
    pre: tuple[Array, ...]
    post: tuple[Array, ...]
    logits: Array

    @cached_property
    def _secants(self) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        if not self.pre:
            return (), ()
        gs, os_ = zip(*(secant_gates(act, a) for act, a in zip(self.network.activations, self.pre)))
        return tuple(gs), tuple(os_)

    @property
    def gates(self) -> tuple[Array, ...]:
        """Secant gates g_l (N, n_l): ``z_l = g_l * a_l + o_l`` at each point."""
        return self._secants[0]

    @property
    def offsets(self) -> tuple[Array, ...]:
        """Offsets o_l (N, n_l) of the secant decomposition (zero up to rounding when f(0) = 0)."""
        return self._secants[1]

    @cached_property
    def derivatives(self) -> tuple[Array, ...]:
        """f_l'(a_l) (N, n_l) per hidden layer."""
        return tuple(act.derivative(a) for act, a in zip(self.network.activations, self.pre))

    def _output_layer(self, layer: int | None) -> int:
        L = len(self.network.layers)
        if layer is None:
            return L
        if not 1 <= layer <= L:
            raise ParameterError(f"The 'layer' parameter of Linearisation must be an int in [1, {L}] "
                                 f"(L = {L} is the logits) or None. Got {layer!r} instead.")
        return int(layer)

    def gradient(self, cotangent: Array, layer: int | None = None, *, post: bool = False) -> Array:
        """Input gradient (N, d) of ``sum_j cotangent[:, j] * v[:, j]`` at each point, where v is the
        pre-activation ``a_layer`` (default: the logits) or, with ``post``, the post-activation
        ``z_layer`` of hidden layer ``layer``. ``cotangent``: (N, n_layer)."""
        k = self._output_layer(layer)
        if post:
            if k == len(self.network.layers):
                raise ParameterError("The logits have no post-activation: give post=False for layer None or L.")
            return pull_back(self.network, self.derivatives, cotangent, k)[0]
        return pull_back(self.network, self.derivatives, _onto_inputs(self.network, cotangent, k), k - 1)[0]

    def path_weights(self, cotangent: Array, layer: int | None = None) -> tuple[Array, ...]:
        """Summed path weights through the secant gates: a cotangent (N, [K,] n_m) on ``z_m`` (m =
        ``layer``, default L-1, the last hidden layer) pulled back onto z_l for every l = 0 .. m.
        With ``cotangent = W_L[k]`` it is D_l of :mod:`polylens.lenses.discover.trace`, the weight of
        every path from (l, j) to logit k."""
        m = self.network.n_hidden_layers if layer is None else int(layer)
        return pull_back(self.network, self.gates, cotangent, m)

    def rows(self, index: Array) -> "Linearisation":
        """The linearisation at a subset of the points, ``index`` (R,) ints or a boolean mask (N,)."""
        return Linearisation(self.network, self.x[index], tuple(a[index] for a in self.pre),
                             tuple(z[index] for z in self.post), self.logits[index])

    def affine_map(self, layer: int | None = None) -> tuple[Array, Array]:
        """The local affine map ``a_layer = A x + c`` at each point (default: the logits), with every
        gate frozen: A (N, n_layer, d) and c (N, n_layer). Exact at the point for every activation; for
        relu and leaky_relu it is the network itself on the point's linear region.

        Built forward, layer by layer: ``(A, c) <- (W_l diag(g) A, W_l (g c + o) + b_l)``."""
        k = self._output_layer(layer)
        N, d = self.x.shape
        W0, b0 = self.network.layers[0].W, self.network.layers[0].b
        A = np.broadcast_to(W0, (N, *W0.shape)).copy()
        c = np.broadcast_to(b0, (N, b0.shape[0])).copy()
        for l in range(1, k):
            g, o = self.gates[l - 1], self.offsets[l - 1]
            W, b = self.network.layers[l].W, self.network.layers[l].b
            A = W @ (g[:, :, None] * A)
            c = (g * c + o) @ W.T + b
        return A, c


def linearise(network: Network, x: Array) -> Linearisation:
    """The network's forward pass at the rows of ``x`` (N, d) or one input (d,), as a :class:`Linearisation`."""
    fp = network.forward(x)
    return Linearisation(network, fp.x, fp.pre, fp.post, fp.logits)


def input_gradient(network: Network, x: Array, cotangent: Array, layer: int | None = None, *,
                   post: bool = False) -> Array:
    """Input gradient (N, d) of the linear functional ``cotangent`` (N, n_layer) of ``a_layer`` (default:
    the logits; ``post``: of ``z_layer``) at each row of x (N, d): ``linearise(network, x).gradient(...)``."""
    return linearise(network, x).gradient(cotangent, layer, post=post)


def neuron_values_and_gradients(network: Network, X: Array, layer: Array, neuron: Array, *,
                                pre: bool = False) -> tuple[Array, Array]:
    """For each row r: the value of z_{layer[r]}[neuron[r]] (or the pre-activation a, if ``pre``) at
    X[r] and its gradient with respect to the input (:meth:`Linearisation.gradient` of a one-hot
    cotangent, each hidden layer's rows in one batch).

    X (R, d); layer (R,) 1-based hidden layers; neuron (R,). Returns values (R,) and gradients (R, d).
    """
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    layer = np.asarray(layer, dtype=np.int64)
    neuron = np.asarray(neuron, dtype=np.int64)
    lin = linearise(network, X)
    vals = np.empty(len(X))
    grads = np.empty((len(X), network.input_dim))
    for l in np.unique(layer):
        rows = np.flatnonzero(layer == l)
        sub = lin.rows(rows)
        a = sub.pre[l - 1]
        j = neuron[rows]
        idx = np.arange(len(rows))
        cot = np.zeros_like(a)
        if pre:
            vals[rows] = a[idx, j]
            cot[idx, j] = 1.0
        else:
            vals[rows] = sub.post[l - 1][idx, j]
            cot[idx, j] = network.activations[l - 1].derivative(a[idx, j])
        grads[rows] = sub.gradient(cot, int(l))
    return vals, grads
