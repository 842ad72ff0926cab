"""MatrixLP: a plain LP through the one solver adapter, with the same rigorous dual bound."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from polylens.errors import ParameterError
from polylens.lp.highs import LPSolver, Sense
from polylens.lp.matrix import MatrixLP


@pytest.mark.parametrize("seed", range(8))
def test_safe_bound_brackets_scipy_optimum(seed):
    """On random feasible LPs the safe bound is on the right side of scipy's optimum, within 1e-7."""
    rng = np.random.default_rng(seed)
    m, n = 12, 6
    A = rng.normal(size=(m, n))
    x0 = rng.random(n)
    hi = A @ x0 + rng.random(m)
    lp = MatrixLP.from_dense(A, np.full(m, -np.inf), hi, np.zeros(n), np.ones(n))
    c = rng.normal(size=n)
    ref = linprog(c, A_ub=A, b_ub=hi, bounds=[(0, 1)] * n, method="highs")
    lo = LPSolver(lp).solve(c, Sense.MIN)
    assert lo.safe_bound <= ref.fun + 1e-12 and ref.fun - lo.safe_bound < 1e-7
    up = LPSolver(lp).solve(c, Sense.MAX)
    ref_max = -linprog(-c, A_ub=A, b_ub=hi, bounds=[(0, 1)] * n, method="highs").fun
    assert up.safe_bound >= ref_max - 1e-12 and up.safe_bound - ref_max < 1e-7


def test_rows_can_be_added_and_bad_lps_are_refused():
    """with_rows adds constraints; infinite column bounds and mismatched shapes are refused."""
    lp = MatrixLP.from_dense(np.eye(2), [-np.inf, -np.inf], [1.0, 1.0], [0.0, 0.0], [2.0, 2.0])
    tighter = lp.with_rows(np.array([[1.0, 1.0]]), [-np.inf], [0.5])
    assert tighter.n_rows == 3
    assert LPSolver(tighter).solve(np.array([1.0, 1.0]), Sense.MAX).safe_bound == pytest.approx(0.5, abs=1e-9)
    with pytest.raises(ParameterError):
        MatrixLP.from_dense(np.eye(2), [0, 0], [1, 1], [0, -np.inf], [1, 1])
    with pytest.raises(ParameterError):
        MatrixLP.from_dense(np.eye(2), [0], [1], [0, 0], [1, 1])
