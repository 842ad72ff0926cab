"""The one network representation every polylens method reads.

A :class:`Network` is an alternating sequence of affine maps and element-wise activations,

    x = z_0 -> a_1 = W_1 z_0 + b_1 -> z_1 = f_1(a_1) -> ... -> a_L = W_L z_{L-1} + b_L = logits,

in float64 numpy. ``layers[l]`` is the affine map (W of shape (out, in), b of shape (out,));
``activations[l]`` follows ``layers[l]`` for every layer but the last, whose output is the logits.
Importers (torch, ONNX) fuse consecutive affine maps (flatten, input normalisation, a trailing
linear layer) into this normal form, so nothing downstream knows where a network came from.

Example
-------
>>> import numpy as np
>>> from polylens.nn import Network, Dense, Activation, ActKind
>>> net = Network.from_arrays([np.eye(2), np.ones((1, 2))], [np.zeros(2), np.zeros(1)], "relu")
>>> net.architecture
'2-2-1'
>>> net(np.array([[1.0, -1.0]])).tolist()
[[1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from polylens.arrays import frozen
from polylens.errors import ModelError, ParameterError
from polylens.nn.activations import Activation
from polylens.validation import check_int

Array = np.ndarray


@dataclass(frozen=True, order=True)
class NeuronId:
    """One hidden neuron: ``layer`` 1-based (hidden layer l = 1 .. L-1), ``index`` 0-based within it.

    Renders as ``L2.n1`` (the key of model cards, LP row names and every payload) and is read back
    from that text by :meth:`parse`, the one parser of the form. Ordered by (layer, index).

    >>> str(NeuronId(2, 1)), NeuronId.parse("L2.n1") == NeuronId(2, 1)
    ('L2.n1', True)
    """

    layer: int
    index: int

    def __post_init__(self):
        for name, value, lo in (("layer", self.layer, 1), ("index", self.index, 0)):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < lo:
                raise ParameterError(f"The '{name}' parameter of NeuronId must be an int in [{lo}, inf). "
                                     f"Got {value!r} instead.")
        object.__setattr__(self, "layer", int(self.layer))
        object.__setattr__(self, "index", int(self.index))

    def __str__(self) -> str:
        return f"L{self.layer}.n{self.index}"

    @classmethod
    def parse(cls, text: str) -> "NeuronId":
        """The neuron named by ``L{layer}.n{index}`` (e.g. ``"L2.n1"``); ParameterError otherwise."""
        head, sep, tail = str(text).strip().partition(".n")
        if sep and head[:1] == "L" and head[1:].isdigit() and tail.isdigit() and head[1:].isascii() and tail.isascii():
            layer, index = int(head[1:]), int(tail)
            if layer >= 1:
                return cls(layer, index)
        raise ParameterError(f"The 'neuron' parameter of NeuronId.parse must be a key like 'L2.n1' (hidden layer "
                             f"from 1, neuron from 0). Got {text!r} instead.")

    def check(self, network: "Network", where: str = "NeuronId") -> "NeuronId":
        """This neuron if ``network`` has it; ParameterError naming the valid range otherwise."""
        widths = network.hidden_widths
        if not (self.layer <= len(widths) and self.index < widths[self.layer - 1]):
            raise ParameterError(f"The 'neuron' parameter of {where} must be a hidden neuron of the network "
                                 f"{network.architecture} (layers 1..{len(widths)}, neurons from 0). Got {str(self)!r} instead.")
        return self


def neuron_ids(network: "Network") -> tuple[NeuronId, ...]:
    """Every hidden neuron of ``network``, layer by layer, in index order."""
    return tuple(NeuronId(l, j) for l, w in enumerate(network.hidden_widths, start=1) for j in range(w))


@dataclass(frozen=True, eq=False)
class Dense:
    """An affine map ``x -> W @ x + b``; W has shape (out, in), b shape (out,)."""

    W: Array
    b: Array

    def __post_init__(self):
        W, b = frozen(self.W), frozen(self.b)
        if W.ndim != 2 or b.ndim != 1 or W.shape[0] != b.shape[0]:
            raise ModelError(f"A dense layer needs W of shape (out, in) and b of shape (out,); got {W.shape} and {b.shape}.")
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ModelError("A dense layer has non-finite weights or biases.")
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)

    @property
    def in_features(self) -> int:
        return self.W.shape[1]

    @property
    def out_features(self) -> int:
        return self.W.shape[0]

    def __call__(self, x: Array) -> Array:
        """Apply to a batch x of shape (N, in); returns (N, out)."""
        return x @ self.W.T + self.b

    def then(self, other: "Dense") -> "Dense":
        """The composition ``other(self(x))`` as one affine map."""
        return Dense(other.W @ self.W, other.W @ self.b + other.b)


@dataclass(frozen=True)
class ForwardPass:
    """Every intermediate of a batched forward pass.

    ``pre[l]`` and ``post[l]`` have shape (N, width of hidden layer l) for l = 0 .. L-2;
    ``logits`` has shape (N, n_classes); ``x`` is the (N, d) input.
    """

    x: Array
    pre: tuple[Array, ...]
    post: tuple[Array, ...]
    logits: Array

    @property
    def predictions(self) -> Array:
        return np.argmax(self.logits, axis=1)


@dataclass(frozen=True, eq=False)
class Network:
    """Affine layers with element-wise activations between them (see the module docstring).

    ``input_shape`` is how an input vector is laid out as an image (e.g. (7, 7)); it only guides
    display. ``len(activations) == len(layers) - 1``.
    """

    layers: tuple[Dense, ...]
    activations: tuple[Activation, ...]
    input_shape: tuple[int, ...] | None = field(default=None)

    def __post_init__(self):
        layers = tuple(self.layers)
        acts = tuple(a if isinstance(a, Activation) else Activation.parse(str(a)) for a in self.activations)
        if not layers:
            raise ModelError("A network needs at least one affine layer.")
        if len(acts) != len(layers) - 1:
            raise ModelError(f"A network with {len(layers)} affine layers needs {len(layers) - 1} activations; got {len(acts)}.")
        for i, (a, b) in enumerate(zip(layers, layers[1:])):
            if a.out_features != b.in_features:
                raise ModelError(f"Layer {i} has {a.out_features} outputs but layer {i + 1} takes {b.in_features} inputs.")
        shape = tuple(int(s) for s in self.input_shape) if self.input_shape is not None else (layers[0].in_features,)
        if int(np.prod(shape)) != layers[0].in_features:
            raise ModelError(f"Input shape {shape} does not hold {layers[0].in_features} inputs.")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "activations", acts)
        object.__setattr__(self, "input_shape", shape)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, weights: Sequence[Array], biases: Sequence[Array],
                    activation: str | Activation | Sequence[str | Activation],
                    input_shape: tuple[int, ...] | None = None) -> "Network":
        """Build from lists of weight matrices (out, in) and biases, with one activation for all
        hidden layers or one per hidden layer."""
        if isinstance(activation, (str, Activation)):
            activation = [activation] * (len(weights) - 1)
        acts = tuple(a if isinstance(a, Activation) else Activation.parse(a) for a in activation)
        return cls(tuple(Dense(W, b) for W, b in zip(weights, biases)), acts, input_shape)

    # -- facts -------------------------------------------------------------------------------

    @property
    def input_dim(self) -> int:
        return self.layers[0].in_features

    @property
    def n_classes(self) -> int:
        return self.layers[-1].out_features

    @property
    def widths(self) -> tuple[int, ...]:
        """Input width, every hidden width, output width."""
        return (self.input_dim, *(l.out_features for l in self.layers))

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return tuple(l.out_features for l in self.layers[:-1])

    @property
    def architecture(self) -> str:
        """Widths joined by dashes, e.g. ``49-3-3-10``."""
        return "-".join(str(w) for w in self.widths)

    @property
    def activation(self) -> Activation | None:
        """The activation shared by every hidden layer, or None if they differ (or there are none)."""
        kinds = set(self.activations)
        return next(iter(kinds)) if len(kinds) == 1 else None

    @property
    def n_params(self) -> int:
        return int(sum(l.W.size + l.b.size for l in self.layers))

    @property
    def n_hidden_layers(self) -> int:
        return len(self.activations)

    # -- evaluation --------------------------------------------------------------------------

    def _as_batch(self, x: Array) -> Array:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ParameterError(
                f"The network takes inputs of width {self.input_dim}; got an array of shape {x.shape}.")
        return x

    def forward(self, x: Array) -> ForwardPass:
        """Batched forward pass keeping every pre- and post-activation. x: (N, d) or (d,)."""
        z = self._as_batch(x)
        x0 = z
        pre, post = [], []
        for layer, act in zip(self.layers[:-1], self.activations):
            a = layer(z)
            z = act(a)
            pre.append(a)
            post.append(z)
        return ForwardPass(x0, tuple(pre), tuple(post), self.layers[-1](z))

    def __call__(self, x: Array) -> Array:
        """Logits of a batch, shape (N, n_classes)."""
        z = self._as_batch(x)
        for layer, act in zip(self.layers[:-1], self.activations):
            z = act(layer(z))
        return self.layers[-1](z)

    def predict(self, x: Array) -> Array:
        return np.argmax(self(x), axis=1)

    def truncated(self, layer: int) -> "Network":
        """The network whose outputs are the pre-activations of hidden layer ``layer`` (1-based):
        its first ``layer`` affine maps and the activations between them."""
        layer = check_int(layer, "layer", "Network.truncated", 1, self.n_hidden_layers)
        return Network(self.layers[:layer], self.activations[:layer - 1], self.input_shape)

    def describe(self) -> str:
        acts = {str(a) for a in self.activations} or {"none"}
        return f"{self.architecture} ({', '.join(sorted(acts))}, {self.n_params} parameters)"

    def __repr__(self) -> str:
        return f"Network({self.describe()})"
