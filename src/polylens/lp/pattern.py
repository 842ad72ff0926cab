"""Activation patterns: which hidden neurons sit on which linear piece.

For a network whose hidden activations are piecewise linear with their kink at 0 (relu,
leaky_relu), an input x determines an *activation pattern*: neuron (l, j) is ON when its
pre-activation a_l[j](x) >= 0 and OFF when a_l[j](x) <= 0. On the set of inputs sharing a pattern
(a *region*) the network is one affine map, and the polytope built with that pattern fixed is exact
there: a fixed neuron's envelope is replaced by the line of its piece (``z = a`` on, ``z = 0`` or
``z = alpha * a`` off) and its pre-activation interval is cut at 0.

A :class:`ActivationPattern` may fix only some neurons (state 0 leaves a neuron relaxed): branch and
bound fixes one neuron at a time. :func:`polylens.lp.polytope.build_polytope` takes it as ``pattern``.

>>> import numpy as np
>>> from polylens.nn import Network
>>> net = Network.from_arrays([np.array([[1.0], [-1.0]]), np.ones((1, 2))], [np.zeros(2), np.zeros(1)], "relu")
>>> p = ActivationPattern.at(net, np.array([0.5]))
>>> [s.tolist() for s in p.states], p.n_fixed
([[1, -1]], 2)
>>> q = ActivationPattern.free(net).fixed(NeuronId(1, 0), ON)
>>> [s.tolist() for s in q.states]
[[1, 0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from polylens.arrays import frozen
from polylens.errors import ParameterError
from polylens.nn.network import Network, NeuronId

Array = np.ndarray

__all__ = ["ON", "OFF", "FREE", "ActivationPattern"]

#: Neuron states: ON (a >= 0, the right piece), OFF (a <= 0, the left piece), FREE (relaxed).
ON, OFF, FREE = 1, -1, 0


@dataclass(frozen=True, eq=False)
class ActivationPattern:
    """The state of every hidden neuron: ``states[l-1]`` int8 (n_l,) with values ON (+1), OFF (-1)
    or FREE (0), one array per hidden layer l = 1 .. L-1."""

    states: tuple[Array, ...]

    def __post_init__(self):
        states = tuple(frozen(s, np.int8) for s in self.states)
        for l, s in enumerate(states, start=1):
            if s.ndim != 1 or not np.isin(s, (ON, OFF, FREE)).all():
                raise ParameterError(f"The 'states' parameter of ActivationPattern must hold, per hidden layer, a 1-D "
                                     f"array of -1, 0 and +1. Got layer {l} of shape {s.shape} with values "
                                     f"{sorted(set(s.ravel().tolist()))} instead.")
        object.__setattr__(self, "states", states)

    @classmethod
    def free(cls, network: Network) -> "ActivationPattern":
        """Every neuron relaxed (the plain polytope)."""
        return cls(tuple(np.zeros(w, np.int8) for w in network.hidden_widths))

    @classmethod
    def at(cls, network: Network, x: Array) -> "ActivationPattern":
        """The full pattern of the input ``x`` (d,): ON where a_l[j](x) >= 0, OFF elsewhere."""
        fp = network.forward(np.asarray(x, dtype=np.float64).reshape(1, -1))
        return cls(tuple(np.where(a[0] >= 0.0, ON, OFF).astype(np.int8) for a in fp.pre))

    @property
    def n_fixed(self) -> int:
        """How many neurons are fixed ON or OFF."""
        return int(sum(np.count_nonzero(s) for s in self.states))

    def fixed(self, neuron: NeuronId, state: int) -> "ActivationPattern":
        """This pattern with ``neuron`` set to ``state`` (ON, OFF or FREE): one branch-and-bound split."""
        if state not in (ON, OFF, FREE):
            raise ParameterError(f"The 'state' parameter of ActivationPattern.fixed must be one of 1, -1, 0. "
                                 f"Got {state!r} instead.")
        if not (neuron.layer <= len(self.states) and neuron.index < self.states[neuron.layer - 1].shape[0]):
            raise ParameterError(f"The 'neuron' parameter of ActivationPattern.fixed must be a neuron of the "
                                 f"pattern's layers {[s.shape[0] for s in self.states]}. Got {str(neuron)!r} instead.")
        states = [s.copy() for s in self.states]
        states[neuron.layer - 1][neuron.index] = state
        return ActivationPattern(tuple(states))

    def check(self, widths: Sequence[int], where: str) -> None:
        """ParameterError unless the pattern has one state per neuron of hidden layers of ``widths``."""
        have = tuple(s.shape[0] for s in self.states)
        if have != tuple(widths):
            raise ParameterError(f"The 'pattern' parameter of {where} must have layers of widths {tuple(widths)}. "
                                 f"Got widths {have} instead.")
