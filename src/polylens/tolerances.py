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

#: A certified margin must exceed this after the safe dual bound: it absorbs the difference between
#: the real-arithmetic network the LP describes and its float64 evaluation (forward error of a few
#: hundred ulps on logits of order 10).
VERIFY_MARGIN = 1e-7

#: A neuron whose rigorous output range [zlo, zhi] is narrower than this (relative to 1 + |zhi|) gets no
#: envelope cuts in the LP: its cuts' slack would be of the order of the solver's feasibility tolerance,
#: which made HiGHS call feasible polytopes infeasible; its column bounds enclose f on their own.
TINY_RANGE = 1e-7

#: Primal feasibility / optimality tolerance handed to HiGHS.
LP_FEASIBILITY_TOL = 1e-9

#: A constraint counts as tight when its slack is below this (relative to the row's scale) and the
#: solver's basis marks it nonbasic; see polylens.lp for the rule.
TIGHT_TOL = 1e-7

#: Rounding unit of the rigorous error model of ``polylens.bounds``. A float64 sum of m products,
#: evaluated in any order (BLAS blocking, threads, with or without FMA), is within
#: gamma(m) * sum |products| of the exact sum, gamma(m) = m*u / (1 - m*u), u = 2**-53 the unit
#: roundoff (Higham, Accuracy and Stability of Numerical Algorithms, 2002, Lemma 3.1 and eq. 3.5).
#: The bound code evaluates gamma with u = EPS64 = 2**-52, twice the unit roundoff: the factor 2
#: absorbs the rounding of the slack's own evaluation (the magnitudes |W| @ max(|l|, |u|) are float
#: sums themselves, low by at most a relative gamma(m)). Every bound is then moved one ulp outward
#: (``np.nextafter``) to cover the final subtraction of the slack.
BOUND_ROUNDING_UNIT = EPS64

#: Absolute rounding slack per product in the same model: gradual underflow adds at most 2**-1075 per
#: product (Higham eq. 2.8); we use 2**-1074, the smallest subnormal.
BOUND_UNDERFLOW_UNIT = float(np.finfo(np.float64).smallest_subnormal)

#: An importer (torch, ONNX) re-runs the source model on random inputs and requires the imported
#: Network to agree within this relative slack, |y - z| <= tol * (1 + |y|). It is a guard against
#: misread graphs (which are off by O(1)), not a precision claim. Float64 sources: fusing affine
#: maps reorders sums (a few hundred ulps), and ONNX float attributes are float32 even in float64
#: graphs (LeakyRelu's alpha 0.1 is read as 0.1 but evaluated as 0.10000000149: 1.5e-8 relative).
IMPORT_CHECK_TOL_F64 = 1e-7
#: The same for float32 (or float16) sources, whose own evaluation is accurate to ~1e-7 relative
#: per operation; a generous bound for deep or wide float32 graphs.
IMPORT_CHECK_TOL_F32 = 1e-3

#: A compound element-wise ONNX subgraph (e.g. the Erf or Tanh pattern of GELU) is identified with
#: an activation kind when, on a fixed grid, it equals a * f(x) + c to this relative slack. The
#: subgraph's constants are float32 roundings of irrational numbers (sqrt 2, sqrt(2/pi)), which
#: perturb it by ~1e-7 relative; distinct kinds differ by far more (gelu vs gelu_tanh: ~5e-4).
PATTERN_MATCH_TOL = 1e-6

#: Two candidate minima of f(x) - s*x closer than this (relative to 1 + |minimum|) count as one
#: minimum touched twice (the line lies along a straight stretch of the hull, e.g. a piece of relu).
#: Only used to choose slopes in polylens.relax; no bound depends on it.
ENVELOPE_TIE_REL = 1e-13

#: polylens.relax's HULL builder stops adding cuts to a neuron's side once its largest error triangle
#: is below this times (U - L) * max(1, |f(L)|, |f(U)|): what is left is float64 noise in the touch
#: points, and a further cut would duplicate one already there.
ENVELOPE_GAP_REL = 1e-12

#: Discovery analyses (polylens.lenses.discover.signatures): a pixel at a bound of its box counts as
#: *binding* when its reduced cost exceeds this in magnitude. 100x HiGHS's dual feasibility
#: tolerance (LP_FEASIBILITY_TOL), so a reduced cost that is zero up to solver noise is never read
#: as binding. A label, not a bound: nothing rigorous depends on it.
BINDING_DUAL_TOL = 1e-7

#: Discovery analyses (prototypes, counterfactual repair): a candidate input replaces the start
#: image only when its real margin is higher by more than this. Logits of order 10 carry float64
#: forward errors of ~1e-14 that depend on the batch a row is evaluated in (BLAS blocking); with
#: this gap "the prototype's real margin is at least the start's" survives re-evaluation anywhere.
REAL_MARGIN_GAIN = 1e-9

#: Discovery analyses: a pixel counts as changed (prototype, counterfactual) when it moved by more
#: than this. LP optima sit on their bounds to ~1e-9 (LP_FEASIBILITY_TOL); a pixel value of 1e-6 is
#: far below one grey level (1/255). Display only; nothing rigorous depends on it.
PIXEL_CHANGE_TOL = 1e-6
