"""Wall-clock budgets that hold: one per unit of work (an image at a radius, a VNN-COMP instance).

A :class:`Budget` is a deadline on the monotonic clock. Everything that can run long checks it:
branch and bound between batches of nodes, and every LP through three limits at once, so that no
single solve can overrun the unit (HiGHS's ``time_limit`` alone is not enough: it is checked at
points of the simplex that a hard LP may not reach for minutes):

- ``time_limit``: the time left in the budget, set before every solve;
- ``simplex_iteration_limit``: a cap on the iterations of one solve (:data:`LP_ITERATION_LIMIT`);
- an interrupt: HiGHS calls back into polylens during the simplex iterations and the solve stops
  as soon as the deadline has passed (:meth:`polylens.lp.highs.LPSolver.solve`).

A solve stopped by any of the three returns a ``time_limit`` solution (its safe bound still rests
on whatever dual vector the solver had), and the unit ends ``unknown`` with reason ``budget``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum

from polylens.errors import ParameterError

__all__ = ["Budget", "LP_ITERATION_LIMIT", "UnknownReason"]

#: Simplex iterations of one LP solve at most (a polytope of the mnist_fc 256x6 network at eps 0.05
#: needs about 20,000 for an optimum; beyond this a solve is not converging in a useful time).
LP_ITERATION_LIMIT = 200_000


class UnknownReason(StrEnum):
    """Why a unit ends unknown (its text is the JSON value): out of time (``budget``), out of
    branch-and-bound nodes (``nodes``), or a margin within the numerical tolerance of zero that
    neither a proof nor a counterexample can settle (``tie``), or not searched to the end because
    another part of the same property was falsified, which decides it (``stopped``)."""

    BUDGET = "budget"
    NODES = "nodes"
    TIE = "tie"
    STOPPED = "stopped"


@dataclass
class Budget:
    """A wall-clock budget of ``seconds`` (None: unlimited) starting now.

    >>> b = Budget(10.0)
    >>> 9.0 < b.remaining() <= 10.0, b.expired()
    (True, False)
    """

    seconds: float | None = None
    start: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        if self.seconds is not None and not (isinstance(self.seconds, (int, float)) and self.seconds > 0
                                             and math.isfinite(self.seconds)):
            raise ParameterError(f"The 'seconds' parameter of Budget must be a positive finite number or None. "
                                 f"Got {self.seconds!r} instead.")

    @property
    def deadline(self) -> float | None:
        """The monotonic time at which the budget ends (None when unlimited)."""
        return None if self.seconds is None else self.start + float(self.seconds)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        """Seconds left (inf when unlimited, 0 once spent)."""
        if self.seconds is None:
            return math.inf
        return max(0.0, self.start + float(self.seconds) - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def sub(self, seconds: float | None) -> "Budget":
        """A budget of at most ``seconds`` that ends no later than this one."""
        left = self.remaining()
        want = math.inf if seconds is None else float(seconds)
        s = min(left, want)
        return Budget(None if math.isinf(s) else max(s, 1e-6))
