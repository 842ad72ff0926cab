"""The polytope (named LP relaxation of a network on a box), activation patterns, and the one solver adapter."""

from polylens.lp.highs import Basis, LPSolver, Sense, Solution, SolveStatus, safe_dual_bound, tight_cols, tight_rows
from polylens.lp.pattern import FREE, OFF, ON, ActivationPattern
from polylens.lp.polytope import (BlockKind, Extension, Handle, Polytope, Role, RowKind, Rows, build_polytope,
                                  build_polytopes)

__all__ = ["FREE", "OFF", "ON", "ActivationPattern", "Basis", "BlockKind", "Extension", "Handle", "LPSolver",
           "Polytope", "Role", "RowKind", "Rows", "Sense", "Solution", "SolveStatus", "build_polytope",
           "build_polytopes", "safe_dual_bound", "tight_cols", "tight_rows"]
