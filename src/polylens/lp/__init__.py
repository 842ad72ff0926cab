"""The polytope (named LP relaxation of a network on a box) and its one solver adapter."""

from polylens.lp.highs import LPSolver, Sense, Solution, safe_dual_bound, tight_cols, tight_rows
from polylens.lp.polytope import Polytope, Role, RowKind, build_polytope

__all__ = ["LPSolver", "Polytope", "Role", "RowKind", "Sense", "Solution", "build_polytope", "safe_dual_bound",
           "tight_cols", "tight_rows"]
