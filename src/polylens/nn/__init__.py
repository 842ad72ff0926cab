"""Networks: the representation, the activation registry, import/export, model files, training."""

from polylens.nn.activations import REGISTRY, ActKind, ActSpec, Activation, Family
from polylens.nn.network import Dense, ForwardPass, Network

__all__ = ["REGISTRY", "ActKind", "ActSpec", "Activation", "Dense", "Family", "ForwardPass", "Network"]
