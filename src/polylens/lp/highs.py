"""The one solver adapter: the only module of polylens that imports highspy.

:class:`LPSolver` passes a :class:`~polylens.lp.polytope.Polytope` to HiGHS once and then solves it
for many objectives by changing costs (the simplex warm-starts from the previous basis). Every solve
returns a typed :class:`Solution`; anything but an optimal status raises :class:`SolverError`, except
a time limit, which returns a solution whose ``status`` says so (callers decide: certification turns
it into ``unknown``).

Rigour: an LP solver works in floating point with tolerances, so its optimal objective is not a
bound. :meth:`Solution.safe_bound` is: from any dual vector y, weak duality gives

    min c^T v  >=  sum_i y_i * (row_lo_i if y_i > 0 else row_hi_i)  +  sum_j r_j * (col_lo_j if r_j > 0 else col_hi_j)

with r = c - A^T y, for *every* y (signs that point at an infinite row side are clipped to 0, which
is just another y). Every column bound is finite, so the right side is finite. It is evaluated in
float64 and then lowered by a rigorous bound on the rounding error of that evaluation (Higham's
gamma_k on sums of k terms, applied to the magnitudes of every term), so the result is a lower bound
of the exact LP minimum whatever the solver's tolerances were (Neumaier and Shcherbina, 2004).
For a maximisation the same argument gives a safe upper bound.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path

import highspy
import numpy as np

from polylens.arrays import frozen
from polylens.errors import InfeasibleError, ParameterError, SolverError
from polylens.lp.polytope import Polytope
from polylens.stdio import stdout_to_devnull
from polylens.tolerances import EPS64, LP_FEASIBILITY_TOL, TIGHT_TOL

Array = np.ndarray
_INF = highspy.kHighsInf


class Sense(str, Enum):
    MIN = "min"
    MAX = "max"


#: A Farkas certificate proves a polytope empty when its rigorous value exceeds this (the ray is
#: scaled to unit infinity norm first, so the margin is scale-free).
FARKAS_MARGIN = 1e-9


class SolveStatus(StrEnum):
    """How a solve ended (its text is the JSON value): at an optimum, or stopped by the time limit."""

    OPTIMAL = "optimal"
    TIME_LIMIT = "time_limit"


#: Model statuses of a solve stopped before its end: by the time limit, by the simplex iteration
#: limit, or by the deadline's interrupt. All read as SolveStatus.TIME_LIMIT.
_STOPPED = (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kIterationLimit,
            highspy.HighsModelStatus.kInterrupt)


class BasisStatus(Enum):
    LOWER = "lower"  # nonbasic at its lower bound (row: at row_lo)
    BASIC = "basic"
    UPPER = "upper"
    ZERO = "zero"
    NONBASIC = "nonbasic"


_STATUS_MAP = {
    highspy.HighsBasisStatus.kLower: 0, highspy.HighsBasisStatus.kBasic: 1, highspy.HighsBasisStatus.kUpper: 2,
    highspy.HighsBasisStatus.kZero: 3, highspy.HighsBasisStatus.kNonbasic: 4,
}


@dataclass(frozen=True, eq=False)
class Solution:
    """One LP solve. Shapes: n columns, m rows.

    ``x`` (n,) primal values; ``row_activity`` (m,) = A x; ``row_dual`` (m,) and ``col_dual`` (n,)
    in HiGHS's convention (col_dual = c - A^T row_dual, for a minimisation). ``objective`` is the
    solver's value; ``safe_bound`` a rigorous bound on the exact optimum (a lower bound for MIN, an
    upper bound for MAX). ``status``: :class:`SolveStatus` OPTIMAL or TIME_LIMIT (then the primal values
    are not optimal and ``safe_bound`` is still valid when a dual vector was available, else -inf/+inf).
    The simplex basis is not part of it: :meth:`LPSolver.basis` reads it after a solve.
    """

    status: SolveStatus
    sense: Sense
    objective: float
    safe_bound: float
    x: Array
    row_activity: Array
    row_dual: Array
    col_dual: Array

    @property
    def optimal(self) -> bool:
        return self.status is SolveStatus.OPTIMAL


@dataclass(frozen=True, eq=False)
class Basis:
    """The simplex basis after a solve: ``row`` (m,) and ``col`` (n,) int8 codes into :class:`BasisStatus`
    (``BASIS[code]`` is the status)."""

    row: Array
    col: Array


#: Basis codes to statuses: ``BASIS[basis.row[i]]``.
BASIS = (BasisStatus.LOWER, BasisStatus.BASIC, BasisStatus.UPPER, BasisStatus.ZERO, BasisStatus.NONBASIC)


def safe_dual_bound(poly: Polytope, cost: Array, row_dual: Array, sense: Sense = Sense.MIN) -> float:
    """A rigorous bound on the exact optimum of ``cost`` over ``poly`` from any dual vector.

    Lower bound for MIN, upper bound for MAX (see the module docstring for the argument).
    """
    c = np.asarray(cost, dtype=np.float64)
    sgn = 1.0 if sense is Sense.MIN else -1.0
    c = sgn * c
    y = sgn * np.asarray(row_dual, dtype=np.float64)
    # Clip dual signs that point at an infinite row side: still a valid multiplier vector.
    y = np.where((y > 0) & ~np.isfinite(poly.row_lo), 0.0, y)
    y = np.where((y < 0) & ~np.isfinite(poly.row_hi), 0.0, y)
    r = c - poly.At @ y
    row_b = np.where(y > 0, poly.row_lo, np.where(y < 0, poly.row_hi, 0.0))
    col_b = np.where(r > 0, poly.col_lo, np.where(r < 0, poly.col_hi, 0.0))
    if not (np.all(np.isfinite(col_b)) and np.all(np.isfinite(row_b))):
        return -np.inf * sgn
    terms_row = y * row_b
    terms_col = r * col_b
    value = float(np.sum(terms_row) + np.sum(terms_col))
    # Rounding error: r_j carries at most gamma_k (|c_j| + |A_j|^T |y|) with k = nnz in column j + 1;
    # the two sums carry gamma_{m+n} of the sum of absolute terms. Bound both generously.
    k_col = poly.max_col_nnz + 2
    gamma = lambda k: k * EPS64 / (1.0 - k * EPS64)
    r_err = gamma(k_col) * (np.abs(c) + poly.abs_At @ np.abs(y))
    err = float(np.sum(r_err * poly.col_mag))
    err += gamma(poly.n_rows + poly.n_cols + 2) * float(np.sum(np.abs(terms_row)) + np.sum(np.abs(terms_col)))
    err = 2.0 * err + 1e-300  # factor 2 for the error of computing err itself
    return sgn * (value - err)


# ---------------------------------------------------------------------------------------------
# Silence at birth. HiGHS 1.16 prints a two-line banner ("Running HiGHS 1.16.0 ...: Copyright ...")
# on the C-level standard output the first time a process constructs a Highs object, before any
# option (output_flag, log_to_console) can be set. Standard output belongs to polylens (``--json``
# prints exactly one document there), so the first construction in each process runs with file
# descriptor 1 pointed at /dev/null. The C stdio buffers are flushed *before* the descriptor is
# restored: on a pipe stdout is fully buffered, and a banner left in the buffer would be written
# to the real stdout later, at the next flush or at exit.

_birth_lock = threading.Lock()
_born_in: int | None = None  # the pid whose first Highs() was made quietly (a forked child makes its own)


def new_highs() -> "highspy.Highs":
    """A fresh ``highspy.Highs`` with its output off; the first one of each process is born with
    standard output silenced (see above), so no library banner reaches polylens' stdout."""
    global _born_in
    with _birth_lock:
        if _born_in != os.getpid():
            with stdout_to_devnull():
                h = highspy.Highs()
            _born_in = os.getpid()
        else:
            h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


class LPSolver:
    """HiGHS holding one polytope; solve it for many objectives.

    >>> # solver = LPSolver(poly); sol = solver.solve(poly.margin_cost(3, 5), Sense.MIN); basis = solver.basis()
    """

    def __init__(self, poly: Polytope, *, time_limit: float | None = None, threads: int = 1,
                 deadline: float | None = None, iteration_limit: int | None = None):
        """``time_limit``: seconds per solve. ``deadline``: a ``time.monotonic()`` instant after which
        no solve runs on: each solve gets at most the time left as its time limit and is interrupted
        from HiGHS's simplex callback once the deadline has passed (a solve started after it ends at
        once as ``time_limit``). ``iteration_limit``: simplex iterations per solve at most. A solve
        stopped by any of them returns a TIME_LIMIT solution (see :mod:`polylens.lenses.verify.budget`)."""
        self.poly = poly
        self.deadline = None if deadline is None else float(deadline)
        self.time_limit = None if time_limit is None else float(time_limit)
        h = new_highs()
        h.setOptionValue("log_to_console", False)
        h.setOptionValue("threads", int(threads))
        h.setOptionValue("random_seed", 0)
        h.setOptionValue("presolve", "off")  # keeps basis statuses and duals of the model as built
        h.setOptionValue("solver", "simplex")
        h.setOptionValue("primal_feasibility_tolerance", LP_FEASIBILITY_TOL)
        h.setOptionValue("dual_feasibility_tolerance", LP_FEASIBILITY_TOL)
        if time_limit is not None:
            if not time_limit > 0:
                raise ParameterError(f"The 'time_limit' parameter of LPSolver must be a float in (0, inf). Got {time_limit!r} instead.")
            h.setOptionValue("time_limit", float(time_limit))
        if iteration_limit is not None:
            h.setOptionValue("simplex_iteration_limit", int(iteration_limit))
        if self.deadline is not None:
            deadline_ = self.deadline

            def _interrupt(event) -> None:
                if time.monotonic() >= deadline_:
                    event.interrupt()

            h.cbSimplexInterrupt += _interrupt
            self._interrupt = _interrupt  # kept alive with the solver
        lp = highspy.HighsLp()
        A = poly.A.tocsc()
        lp.num_col_ = poly.n_cols
        lp.num_row_ = poly.n_rows
        lp.col_cost_ = np.zeros(poly.n_cols)
        lp.col_lower_ = poly.col_lo
        lp.col_upper_ = poly.col_hi
        lp.row_lower_ = np.where(np.isfinite(poly.row_lo), poly.row_lo, -_INF)
        lp.row_upper_ = np.where(np.isfinite(poly.row_hi), poly.row_hi, _INF)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data.astype(np.float64)
        lp.a_matrix_.num_col_ = poly.n_cols
        lp.a_matrix_.num_row_ = poly.n_rows
        if poly.integer is not None and poly.integer.any():
            lp.integrality_ = [highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous
                               for b in poly.integer]
            h.setOptionValue("mip_rel_gap", 0.0)
            h.setOptionValue("mip_abs_gap", 1e-9)
        status = h.passModel(lp)
        if status == highspy.HighsStatus.kError:
            raise SolverError("HiGHS rejected the polytope (passModel failed).")
        self._h = h
        self._all = np.arange(poly.n_cols, dtype=np.int32)
        self.n_solves = 0

    def solve(self, cost: Array, sense: Sense | str = Sense.MIN) -> Solution:
        """Optimise ``cost @ v`` over the polytope. Raises SolverError unless optimal or out of time
        (InfeasibleError, a SolverError, when the polytope is empty). The basis is not read (it costs a
        third of a solve on small polytopes): call :meth:`basis` after the solve for it."""
        sense = Sense(sense)
        cost = np.asarray(cost, dtype=np.float64)
        if cost.shape != (self.poly.n_cols,):
            raise ParameterError(f"The cost vector must have {self.poly.n_cols} entries; got shape {cost.shape}.")
        h = self._h
        h.changeObjectiveSense(highspy.ObjSense.kMinimize if sense is Sense.MIN else highspy.ObjSense.kMaximize)
        h.changeColsCost(self.poly.n_cols, self._all, cost)
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            limit = left if self.time_limit is None else min(left, self.time_limit)
            h.setOptionValue("time_limit", max(float(limit), 1e-6))
        h.run()
        self.n_solves += 1
        ms = h.getModelStatus()
        if ms == highspy.HighsModelStatus.kOptimal:
            status = SolveStatus.OPTIMAL
        elif ms in _STOPPED:
            status = SolveStatus.TIME_LIMIT
        elif ms == highspy.HighsModelStatus.kInfeasible:
            raise InfeasibleError("The polytope is infeasible: the bounds or envelopes it was built from exclude every input.")
        else:
            raise SolverError(f"HiGHS ended with status '{h.modelStatusToString(ms)}'.", "error")
        sol = h.getSolution()
        x = np.asarray(sol.col_value, dtype=np.float64)
        row_dual = np.asarray(sol.row_dual, dtype=np.float64)
        if self.poly.integer is not None and self.poly.integer.any():
            # A MILP has no dual certificate; its value is exact up to the MIP tolerances (tests only).
            safe = float(h.getInfo().objective_function_value)
        elif status is SolveStatus.OPTIMAL or sol.dual_valid:
            safe = safe_dual_bound(self.poly, cost, row_dual, sense)
        else:
            safe = -np.inf if sense is Sense.MIN else np.inf
        return Solution(
            status=status, sense=sense, objective=float(h.getInfo().objective_function_value), safe_bound=safe, x=x,
            row_activity=np.asarray(sol.row_value, dtype=np.float64), row_dual=row_dual,
            col_dual=np.asarray(sol.col_dual, dtype=np.float64),
        )

    def proves_empty(self) -> bool:
        """Whether the polytope is provably empty, by a Farkas certificate: the solver's dual ray y,
        checked in the rigorous arithmetic of :func:`safe_dual_bound`. For *any* multipliers y the
        safe dual bound of the zero objective is a lower bound of 0 over a non-empty polytope, so a
        bound above :data:`FARKAS_MARGIN` proves that no point satisfies every row and column bound.
        Call it after :meth:`solve` raised :class:`~polylens.errors.InfeasibleError`; False when the
        solver offers no ray (a solver's "infeasible" alone is never taken as a proof)."""
        if self.n_solves == 0:
            raise ParameterError("LPSolver.proves_empty reads the dual ray of the last solve; call solve first.")
        try:
            _status, has_ray, ray = self._h.getDualRay()
        except (AttributeError, TypeError, RuntimeError):  # a highspy without the call: no proof
            return False
        if not has_ray:
            return False
        ray = np.asarray(ray, dtype=np.float64)
        scale = float(np.max(np.abs(ray))) if ray.size else 0.0
        if not (scale > 0 and np.isfinite(scale)) or ray.shape != (self.poly.n_rows,):
            return False
        zero = np.zeros(self.poly.n_cols)
        return any(safe_dual_bound(self.poly, zero, sign * ray / scale, Sense.MIN) > FARKAS_MARGIN
                   for sign in (1.0, -1.0))

    def basis(self) -> Basis:
        """The simplex basis of the last solve (row and column statuses)."""
        if self.n_solves == 0:
            raise ParameterError("LPSolver.basis reads the basis of the last solve; call solve first.")
        b = self._h.getBasis()
        return Basis(frozen([_STATUS_MAP[s] for s in b.row_status], np.int8),
                     frozen([_STATUS_MAP[s] for s in b.col_status], np.int8))

    def write(self, path: str | Path) -> Path:
        """Write the polytope (with the current objective) as .mps or .lp, with every name."""
        path = Path(path)
        if path.suffix.lower() not in (".mps", ".lp"):
            raise ParameterError(f"The 'path' parameter of write must end in .mps or .lp. Got {str(path)!r} instead.")
        h = self._h
        for j, name in enumerate(self.poly.col_names()):
            h.passColName(j, name.replace("[", "_").replace("]", "") if path.suffix.lower() == ".lp" else name)
        for i, name in enumerate(self.poly.row_names()):
            h.passRowName(i, name)
        h.writeModel(str(path))
        return path


def tight_rows(poly: Polytope, sol: Solution, tol: float = TIGHT_TOL) -> tuple[Array, Array]:
    """Which rows are tight at the solution, and at which side.

    Rule: a row is tight at a side when its activity is within ``tol * (1 + |bound|)`` of that side's
    bound. This reads the primal point, so it is independent of how a degenerate basis was chosen;
    :meth:`LPSolver.basis` gives the simplex's view to callers who want it.
    Returns boolean arrays (at_lower, at_upper), shape (m,).
    """
    act = sol.row_activity
    at_lo = np.isfinite(poly.row_lo) & (np.abs(act - poly.row_lo) <= tol * (1 + np.abs(poly.row_lo)))
    at_hi = np.isfinite(poly.row_hi) & (np.abs(act - poly.row_hi) <= tol * (1 + np.abs(poly.row_hi)))
    return at_lo, at_hi


def tight_cols(poly: Polytope, sol: Solution, tol: float = TIGHT_TOL) -> tuple[Array, Array]:
    """Which columns sit at their lower and at their upper bound (same rule as :func:`tight_rows`).

    A column with equal bounds (a pixel fixed by the box) is reported at both.
    """
    v = sol.x
    at_lo = np.abs(v - poly.col_lo) <= tol * (1 + np.abs(poly.col_lo))
    at_hi = np.abs(v - poly.col_hi) <= tol * (1 + np.abs(poly.col_hi))
    return at_lo, at_hi
