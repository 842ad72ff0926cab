"""polylens: open neural networks with geometry and linear programming.

A network restricted to a region of its input space becomes a polytope; linear programs over
that polytope verify robustness and discover what the network has learned.

The one representation every method reads is :class:`polylens.nn.Network`.
"""

from polylens.errors import PolylensError

__version__ = "0.1.0"
__all__ = ["PolylensError", "__version__"]
