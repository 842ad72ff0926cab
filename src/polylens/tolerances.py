"""Named numerical tolerances, each with the reason it has the value it has."""

from __future__ import annotations

import numpy as np

#: Unit roundoff of float64.
EPS64 = float(np.finfo(np.float64).eps)

#: Absolute slack added to every envelope cut after its worst violation on [L, U] has been computed,
#: covering the error of evaluating f and the line in float64 (a few ulps of values of order 1..100).
ENVELOPE_SLACK = 1e-9

#: Relative slack for the same, scaled by the magnitude of the values involved.
ENVELOPE_REL_SLACK = 64 * EPS64

#: Outward widening of interval bounds after each layer, absorbing float64 rounding in W @ x + b.
#: Relative to the magnitude of |W| @ max(|l|, |u|) + |b|; 8 * n * eps would be a rigorous
#: worst case for sums of n terms, but we use the explicit per-row bound in bounds code.
BOUND_REL_SLACK = 4 * EPS64

#: A certified margin must exceed this after the safe dual bound: it absorbs the difference between
#: the real-arithmetic network the LP describes and its float64 evaluation (forward error of a few
#: hundred ulps on logits of order 10).
VERIFY_MARGIN = 1e-7

#: Primal feasibility / optimality tolerance handed to HiGHS.
LP_FEASIBILITY_TOL = 1e-9

#: A constraint counts as tight when its slack is below this (relative to the row's scale) and the
#: solver's basis marks it nonbasic; see polylens.lp for the rule.
TIGHT_TOL = 1e-7
