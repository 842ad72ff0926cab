"""The small error hierarchy of polylens.

Every error a user can cause (a wrong path, a malformed model, an unsupported operator, a parameter
out of range) is a :class:`PolylensError`. The command line turns any of them into one line on
stderr and exit code 2; a traceback means a bug in polylens.
"""

from __future__ import annotations


class PolylensError(Exception):
    """Base class: something the user can fix. The message says what and how."""


class ParameterError(PolylensError, ValueError):
    """A parameter is out of range or of the wrong type."""


class DataError(PolylensError):
    """A data file is missing, truncated or malformed."""


class ModelError(PolylensError):
    """A model file or directory is missing or malformed."""


class UnsupportedOperatorError(ModelError):
    """A model uses operators polylens cannot represent. Lists every one of them."""


class SolverError(PolylensError):
    """The LP solver ended without an optimal solution."""

    def __init__(self, message: str, status: str = "error"):
        super().__init__(message)
        self.status = status


class InfeasibleError(SolverError):
    """A polytope is empty: the solver found it infeasible, or it was proved empty before any solve
    (e.g. a fixed activation pattern that the pre-activation bounds exclude)."""

    def __init__(self, message: str):
        super().__init__(message, "infeasible")
