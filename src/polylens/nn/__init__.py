"""Networks: the representation, the activation registry, import/export, model files, training."""

from polylens.nn.activations import REGISTRY, ActKind, ActSpec, Activation, Family
from polylens.nn.network import Dense, ForwardPass, Network, NeuronId, neuron_ids

__all__ = ["REGISTRY", "ActKind", "ActSpec", "Activation", "Dense", "Family", "ForwardPass", "Network", "NeuronId", "neuron_ids"]
