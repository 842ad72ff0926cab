"""The polytope and its solver adapter, tested by certificate on hand-checkable LPs and by soundness
on random networks: the true network's point always lies in the polytope, the safe dual bound is
never above any attained value, re-solving with new costs equals a fresh solve, exports round-trip,
and the exact MILP sits between the LP bound and every sampled value."""

from __future__ import annotations

import highspy
import numpy as np
import pytest

from polylens.bounds import BoundMethod, compute_bounds
from polylens.errors import ParameterError
from polylens.lp import LPSolver, Role, Sense, build_polytope, tight_cols, tight_rows
from polylens.lp.exact import build_milp
from polylens.lp.tighten import lp_tightened_bounds
from polylens.nn import Network

from conftest import random_network


def _pre_bounds(net, xl, xu, method=BoundMethod.IBP):
    b = compute_bounds(net, xl[None], xu[None], method)
    return [b.layer(0, l) for l in range(net.n_hidden_layers)]


def test_linear_network_optimum_duals_and_tight_set():
    """A linear network: logit = 3 x1 - x2 + 0.5 on [0,1]^2 has min -0.5 at (0,1), max 3.5 at (1,0),
    its reduced costs are complementary to the bounds, and the minimiser's x1 sits at its lower bound, x2 at its upper."""
    net = Network.from_arrays([np.array([[1.0, 1.0], [1.0, -1.0]]), np.array([[1.0, 2.0]])],
                              [np.zeros(2), np.array([0.5])], "identity")
    xl, xu = np.zeros(2), np.ones(2)
    poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu))
    solver = LPSolver(poly)
    c = poly.cost(Role.LOGIT, np.array([1.0]))
    lo = solver.solve(c, Sense.MIN)
    assert lo.objective == pytest.approx(-0.5, abs=1e-9)
    assert lo.safe_bound <= -0.5 and lo.safe_bound == pytest.approx(-0.5, abs=1e-8)
    np.testing.assert_allclose(lo.x[poly.inputs], [0.0, 1.0], atol=1e-9)
    at_lo, at_hi = tight_cols(poly, lo)
    assert at_lo[poly.inputs].tolist() == [True, False] and at_hi[poly.inputs].tolist() == [False, True]
    # Complementary slackness: a column with a non-zero reduced cost sits at the bound its sign points to
    # (duals are not unique here: the bounds of a1 are active too, so only this is a theorem).
    rc = lo.col_dual
    assert np.all((rc <= 1e-9) | at_lo) and np.all((rc >= -1e-9) | at_hi)
    hi = solver.solve(c, Sense.MAX)
    assert hi.objective == pytest.approx(3.5, abs=1e-9)
    assert hi.safe_bound >= 3.5 and hi.safe_bound == pytest.approx(3.5, abs=1e-8)


def test_single_relu_triangle_is_exact_and_cut_tightness():
    """One unstable relu on [-1, 1]: the triangle is the convex hull, so max z = 1 (at a = 1, where the
    chord upper cut is tight) and min (z - a) = 0 (where the lower cut z >= a is tight)."""
    net = Network.from_arrays([np.array([[1.0]]), np.array([[1.0]])], [np.zeros(1), np.zeros(1)], "relu")
    xl, xu = np.array([-1.0]), np.array([1.0])
    poly = build_polytope(net, xl, xu, [(np.array([-1.0]), np.array([1.0]))])
    solver = LPSolver(poly)
    sol = solver.solve(poly.cost(Role.POST, np.array([1.0]), layer=1), Sense.MAX)
    assert sol.objective == pytest.approx(1.0, abs=1e-9)
    _, at_hi = tight_rows(poly, sol)
    cut_rows = poly.cut_rows(1)
    upper_tight = [poly.row_name(i) for i in cut_rows if at_hi[i]]
    assert upper_tight and all(".upper." in n for n in upper_tight)
    c = poly.cost(Role.POST, np.array([1.0]), layer=1) - poly.cost(Role.PRE, np.array([1.0]), layer=1)
    sol = solver.solve(c, Sense.MIN)
    assert sol.objective == pytest.approx(0.0, abs=1e-9)


def test_names_are_structured():
    """Every column and row has a readable name derived from its structured key."""
    net = random_network([4, 3, 2], "gelu", seed=1)
    xl, xu = np.zeros(4), np.ones(4)
    poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu), cuts=3)
    names = poly.col_names()
    assert names[:4] == ["x[0]", "x[1]", "x[2]", "x[3]"] and "a1[2]" in names and "z1[0]" in names and "logit[1]" in names
    rows = poly.row_names()
    assert "affine.L1.n0" in rows and "affine.out.1" in rows
    assert any(r.startswith("L1.n2.upper.") for r in rows) and any(r.startswith("L1.n0.lower.") for r in rows)
    assert len(set(rows)) == len(rows) and len(set(names)) == len(names)


@pytest.mark.parametrize("mode", ["hull", "pair"])
def test_true_points_lie_in_polytope_and_safe_bound_is_below_them(activation, mode):
    """Soundness: for random boxes, the network's own intermediates at sampled inputs satisfy every row,
    and the safe lower bound of each logit over the polytope is below the logit at every sample."""
    rng = np.random.default_rng(7)
    net = random_network([5, 4, 4, 3], activation, seed=3, scale=2.0)
    for trial in range(3):
        centre = rng.random(5)
        eps = [0.0, 0.05, 0.4][trial]
        xl, xu = np.clip(centre - eps, 0, 1), np.clip(centre + eps, 0, 1)
        poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu, BoundMethod.CROWN), mode=mode, cuts=4)
        samples = xl + rng.random((200, 5)) * (xu - xl)
        samples[:2] = [xl, xu]
        for s in samples[:40]:
            assert poly.check_point(poly.point_from_input(s)) <= 1e-9
        solver = LPSolver(poly)
        logits = net(samples)
        for k in range(3):
            sol = solver.solve(poly.cost(Role.LOGIT, np.eye(3)[k]), Sense.MIN)
            assert sol.safe_bound <= logits[:, k].min() + 1e-12
            assert sol.safe_bound <= sol.objective + 1e-9
            up = solver.solve(poly.cost(Role.LOGIT, np.eye(3)[k]), Sense.MAX)
            assert up.safe_bound >= logits[:, k].max() - 1e-12


def test_resolve_with_new_costs_equals_fresh_solve():
    """Build once, solve many: changing the costs on a warm solver gives the same optima as fresh solvers."""
    net = random_network([6, 5, 4], "tanh", seed=5)
    xl, xu = np.full(6, 0.2), np.full(6, 0.6)
    poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu))
    warm = LPSolver(poly)
    rng = np.random.default_rng(0)
    for _ in range(5):
        c = rng.normal(size=poly.n_cols)
        a = warm.solve(c, Sense.MIN)
        b = LPSolver(poly).solve(c, Sense.MIN)
        assert a.objective == pytest.approx(b.objective, rel=1e-9, abs=1e-9)


def test_export_mps_and_lp_round_trip(tmp_path):
    """The polytope written as MPS (and LP) and read back by HiGHS has the same optimum."""
    net = random_network([3, 3, 2], "sigmoid", seed=2)
    xl, xu = np.zeros(3), np.ones(3)
    poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu))
    solver = LPSolver(poly)
    c = poly.margin_cost(0, 1)
    ref = solver.solve(c, Sense.MIN).objective
    for suffix in (".mps", ".lp"):
        path = solver.write(tmp_path / f"poly{suffix}")
        text = path.read_text()
        assert "x[0]" in text or "x_0" in text
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.readModel(str(path))
        h.run()
        assert h.getInfo().objective_function_value == pytest.approx(ref, abs=1e-7)
    with pytest.raises(ParameterError):
        solver.write(tmp_path / "poly.txt")


def test_milp_is_exact_between_lp_bound_and_samples():
    """On a small ReLU net the MILP minimum lies between the LP's safe bound and the smallest sampled value,
    and LP-tightened bounds only ever shrink the intervals."""
    net = random_network([2, 6, 6, 2], "relu", seed=11, scale=2.0)
    xl, xu = np.array([0.2, 0.3]), np.array([0.6, 0.8])
    pre = _pre_bounds(net, xl, xu, BoundMethod.CROWN)
    tight = lp_tightened_bounds(net, xl, xu, pre)
    for (L0, U0), (L1, U1) in zip(pre, tight):
        assert np.all(L1 >= L0 - 1e-12) and np.all(U1 <= U0 + 1e-12)
    g = np.stack(np.meshgrid(np.linspace(xl[0], xu[0], 81), np.linspace(xl[1], xu[1], 81)), -1).reshape(-1, 2)
    margin = net(g) @ np.array([1.0, -1.0])
    poly = build_polytope(net, xl, xu, tight)
    lp = LPSolver(poly).solve(poly.margin_cost(0, 1), Sense.MIN).safe_bound
    milp_poly = build_milp(net, xl, xu, tight)
    exact = LPSolver(milp_poly).solve(milp_poly.margin_cost(0, 1), Sense.MIN).objective
    assert lp <= exact + 1e-7
    assert exact <= margin.min() + 1e-7
    assert margin.min() - exact < 0.05  # a fine grid comes close to the exact minimum


def test_bad_box_is_a_parameter_error():
    """A box of the wrong width or with lower > upper is refused with a clear error."""
    net = random_network([3, 2, 2], "relu")
    with pytest.raises(ParameterError):
        build_polytope(net, np.zeros(2), np.ones(2), [(np.zeros(2), np.ones(2))])
    with pytest.raises(ParameterError):
        build_polytope(net, np.ones(3), np.zeros(3), [(np.zeros(2), np.ones(2))])


def test_extend_adds_named_auxiliary_variables_for_an_l1_objective():
    """Extra columns and rows: with u >= |x - x0|, minimising sum(u) subject to logit >= target gives the
    smallest L1 change of a linear model, which is known in closed form (move the cheapest pixels first)."""
    import scipy.sparse as sp

    net = Network.from_arrays([np.eye(3), np.array([[1.0, 2.0, 0.5]])], [np.zeros(3), np.zeros(1)], "identity")
    xl, xu = np.zeros(3), np.ones(3)
    poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu))
    n = poly.n_cols
    xs = poly.inputs
    rows = sp.lil_matrix((7, n + 3))
    for i in range(3):
        rows[2 * i, n + i] = 1.0; rows[2 * i, xs.start + i] = -1.0      # u - x >= -x0
        rows[2 * i + 1, n + i] = 1.0; rows[2 * i + 1, xs.start + i] = 1.0  # u + x >= x0
    rows[6, poly.logits.start] = 1.0  # logit >= 2.25 (it is 1.75 at x0)
    ext = poly.extend(col_lo=np.zeros(3), col_hi=np.ones(3), col_names=[f"u[{i}]" for i in range(3)],
                      rows=rows, row_lo=np.r_[np.tile([-0.5, 0.5], 3), 2.25], row_hi=np.full(7, np.inf),
                      row_names=[f"abs.{i}.{s}" for i in range(3) for s in "+-"] + ["target"])
    assert ext.col_name(n) == "u[0]" and ext.row_name(ext.n_rows - 1) == "target"
    sol = LPSolver(ext).solve(ext.cost(Role.EXTRA, np.ones(3)), Sense.MIN)
    # raising logit by 0.5 is cheapest through pixel 1 (weight 2): |dx| = 0.25
    assert sol.objective == pytest.approx(0.25, abs=1e-9)
    assert sol.safe_bound <= 0.25 + 1e-12 and sol.safe_bound == pytest.approx(0.25, abs=1e-8)
    np.testing.assert_allclose(sol.x[xs], [0.5, 0.75, 0.5], atol=1e-9)


def test_lp_tightened_polytope_is_never_looser():
    """The tightness ladder's upper rungs: the polytope on LP-tightened bounds (which keeps the original cuts)
    gives margin bounds at least as high as the polytope on CROWN bounds, for every image and class, and the
    merged envelope still encloses the activation."""
    from polylens.lp.tighten import lp_tightened_polytope
    from polylens.relax.envelopes import build_envelope, merge_envelopes

    net = random_network([6, 5, 5, 3], "gelu", seed=13, scale=3.0)
    rng = np.random.default_rng(1)
    for _ in range(4):
        c = rng.random(6)
        xl, xu = np.clip(c - 0.15, 0, 1), np.clip(c + 0.15, 0, 1)
        pre = _pre_bounds(net, xl, xu, BoundMethod.CROWN)
        p0 = build_polytope(net, xl, xu, pre)
        p1 = lp_tightened_polytope(net, xl, xu, pre)
        s0, s1 = LPSolver(p0), LPSolver(p1)
        for k in (1, 2):
            assert s1.solve(p1.margin_cost(0, k)).safe_bound >= s0.solve(p0.margin_cost(0, k)).safe_bound - 1e-9
        for point in xl + rng.random((20, 6)) * (xu - xl):
            assert p1.check_point(p1.point_from_input(point)) <= 1e-9
    act = net.activations[0]
    e = merge_envelopes(build_envelope(act, np.array([-3.0]), np.array([2.0]), cuts=3),
                        build_envelope(act, np.array([-1.0]), np.array([1.5]), cuts=3))
    a = np.linspace(-1.0, 1.5, 401)[:, None]
    lo, hi = e.evaluate(a)
    f = act(a)
    assert np.all(lo <= f + 1e-12) and np.all(f <= hi + 1e-12)
    assert e.lower[0] == -1.0 and e.upper[0] == 1.5
