"""The polytope and its solver adapter, tested by certificate on hand-checkable LPs and by soundness
on random networks: the true network's point always lies in the polytope, the safe dual bound is
never above any attained value, re-solving with new costs equals a fresh solve, exports round-trip,
the exact MILP sits between the LP bound and every sampled value and names every row and column,
costs and extensions go through handles, and a fixed activation pattern gives the exact region."""

from __future__ import annotations

import highspy
import numpy as np
import pytest

from polylens.bounds import BoundMethod, compute_bounds
from polylens.errors import InfeasibleError, ParameterError
from polylens.lp import (OFF, ON, ActivationPattern, BlockKind, Handle, LPSolver, Role, Rows, Sense, SolveStatus,
                         build_polytope, tight_cols, tight_rows)
from polylens.lp.exact import build_milp
from polylens.lp.highs import BASIS, BasisStatus
from polylens.lp.tighten import lp_tightened_bounds
from polylens.nn import Network, NeuronId
from polylens.nn.linearise import linearise
from polylens.relax.envelopes import Envelope, Hull

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
    c = poly.cost({poly.handle(Role.LOGIT): np.array([1.0])})
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
    sol = solver.solve(poly.cost({poly.handle(Role.POST, 1): 1.0}), Sense.MAX)
    assert sol.objective == pytest.approx(1.0, abs=1e-9)
    _, at_hi = tight_rows(poly, sol)
    cut_rows = poly.cut_rows(1)
    upper_tight = [poly.row_name(i) for i in cut_rows if at_hi[i]]
    assert upper_tight and all(".upper." in n for n in upper_tight)
    c = poly.cost({poly.handle(Role.POST, 1): 1.0, poly.handle(Role.PRE, 1): -1.0})
    sol = solver.solve(c, Sense.MIN)
    assert sol.objective == pytest.approx(0.0, abs=1e-9)


def test_names_are_structured():
    """Every column and row has a readable name derived from its structured key."""
    net = random_network([4, 3, 2], "gelu", seed=1)
    xl, xu = np.zeros(4), np.ones(4)
    poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu), Hull(3))
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
        poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu, BoundMethod.CROWN), Envelope.from_mode(mode, 4))
        samples = xl + rng.random((200, 5)) * (xu - xl)
        samples[:2] = [xl, xu]
        for s in samples[:40]:
            assert poly.check_point(poly.point_from_input(s)) <= 1e-9
        solver = LPSolver(poly)
        logits = net(samples)
        for k in range(3):
            sol = solver.solve(poly.cost({poly.handle(Role.LOGIT): np.eye(3)[k]}), Sense.MIN)
            assert sol.safe_bound <= logits[:, k].min() + 1e-12
            assert sol.safe_bound <= sol.objective + 1e-9
            up = solver.solve(poly.cost({poly.handle(Role.LOGIT): np.eye(3)[k]}), Sense.MAX)
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
    """Extra columns and rows through handles: with u >= |x - x0| (with_l1_distance), minimising sum(u)
    subject to logit >= target gives the smallest L1 change of a linear model, known in closed form
    (move the cheapest pixels first); names render from each block's name and key."""
    net = Network.from_arrays([np.eye(3), np.array([[1.0, 2.0, 0.5]])], [np.zeros(3), np.zeros(1)], "identity")
    xl, xu = np.zeros(3), np.ones(3)
    poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu))
    l1 = poly.with_l1_distance(np.full(3, 0.5))
    u = l1.cols
    logit = poly.handle(Role.LOGIT)
    ext = l1.polytope.extend(rows=[Rows("target", {logit: np.ones((1, 1))}, 2.25, np.inf)])  # 1.75 at x0
    p = ext.polytope
    assert (u.name, u.kind, u.size) == ("u", BlockKind.COLUMNS, 3) and u.start == poly.n_cols
    assert p.col_name(u.start) == "u[0]" and p.row_name(p.n_rows - 1) == "target[0]"
    assert [p.row_name(i) for i in range(*l1.rows[0].slice.indices(p.n_rows))][:1] == ["u>=x-x0[0]"]
    assert np.all(p.col_hi[u.slice] >= 0.5) and np.all(p.col_hi[u.slice] <= 0.5 + 1e-15)
    sol = LPSolver(p).solve(p.cost({u: 1.0}), Sense.MIN)
    # raising logit by 0.5 is cheapest through pixel 1 (weight 2): |dx| = 0.25
    assert sol.objective == pytest.approx(0.25, abs=1e-9)
    assert sol.safe_bound <= 0.25 + 1e-12 and sol.safe_bound == pytest.approx(0.25, abs=1e-8)
    np.testing.assert_allclose(sol.x[p.inputs], [0.5, 0.75, 0.5], atol=1e-9)
    np.testing.assert_allclose(u.take(sol.x), [0.0, 0.25, 0.0], atol=1e-9)


def test_handles_name_blocks_and_costs_never_use_column_arithmetic():
    """Built-in handles cover exactly their blocks, stay valid after extensions, and cost() puts each
    block's coefficients there and nowhere else; a foreign or row handle and unbounded extra columns
    are refused with the one message template."""
    net = random_network([4, 3, 2], "relu", seed=2)
    xl, xu = np.zeros(4), np.ones(4)
    poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu))
    x, a1, z1, logit = (poly.handle(Role.INPUT), poly.handle(Role.PRE, 1), poly.handle(Role.POST, 1),
                        poly.handle(Role.LOGIT))
    assert [h.name for h in (x, a1, z1, logit)] == ["x", "a1", "z1", "logit"]
    assert (x.slice, logit.slice) == (poly.inputs, poly.logits) and z1.size == 3
    assert [poly.col_name(j) for j in range(a1.start, a1.stop)] == ["a1[0]", "a1[1]", "a1[2]"]
    ext = poly.extend("t", col_lo=[-5.0], col_hi=[5.0], keys=[7],
                      rows=[Rows("t>=logit", {"t": np.ones((2, 1)), logit: -np.eye(2)}, 0.0, np.inf)])
    t = ext.cols
    c = ext.polytope.cost({logit: np.array([1.0, 0.0]), t: -1.0, z1: 0.5})
    want = np.zeros(ext.polytope.n_cols)
    want[logit.start] = 1.0
    want[t.start] = -1.0
    want[z1.slice] = 0.5
    assert np.array_equal(c, want) and ext.polytope.col_name(t.start) == "t[7]"
    assert ext.rows[0].kind is BlockKind.ROWS and ext.rows[0].size == 2
    assert ext.polytope.handle(Role.LOGIT) == logit  # handles survive extensions
    with pytest.raises(ParameterError, match="'terms' parameter of cost"):
        poly.cost({t: 1.0})  # t belongs to the extended polytope only
    with pytest.raises(ParameterError, match="'terms' parameter of cost"):
        ext.polytope.cost({ext.rows[0]: 1.0})
    with pytest.raises(ParameterError, match="col_lo"):
        poly.extend("v", col_lo=[0.0], col_hi=[np.inf])
    with pytest.raises(ParameterError, match="coefficients of rows"):
        poly.extend(rows=[Rows("bad", {Handle("q", BlockKind.COLUMNS, 0, 99): np.ones((1, 99))}, 0.0, 1.0)])


def test_solve_returns_no_basis_and_basis_reads_it():
    """solve() returns bounds and the point with an enum status; the basis is a separate call, one status
    per row and column, and a polytope proved empty raises InfeasibleError (a SolverError)."""
    net = random_network([3, 3, 2], "gelu", seed=4)
    xl, xu = np.zeros(3), np.ones(3)
    poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu))
    solver = LPSolver(poly)
    with pytest.raises(ParameterError):
        solver.basis()
    sol = solver.solve(poly.margin_cost(0, 1))
    assert sol.status is SolveStatus.OPTIMAL and sol.status == "optimal" and sol.optimal
    assert not hasattr(sol, "row_basis")
    b = solver.basis()
    assert b.row.shape == (poly.n_rows,) and b.col.shape == (poly.n_cols,)
    assert sum(BASIS[k] is BasisStatus.BASIC for k in np.concatenate([b.row, b.col])) == poly.n_rows
    empty = poly.extend(rows=[Rows("impossible", {poly.handle(Role.INPUT): np.ones((1, 3))}, 10.0, np.inf)])
    with pytest.raises(InfeasibleError):
        LPSolver(empty.polytope).solve(poly.margin_cost(0, 1))


def test_milp_rows_and_columns_have_structured_names():
    """The exact MILP adds its binaries through extend(integer=True): every row and column renders a
    structured name (d{l}[j], bigM{l}.active[j], bigM{l}.inactive[j]) and only the binaries are integer."""
    net = random_network([2, 6, 6, 2], "relu", seed=11, scale=2.0)
    xl, xu = np.array([0.2, 0.3]), np.array([0.6, 0.8])
    pre = _pre_bounds(net, xl, xu, BoundMethod.CROWN)
    milp = build_milp(net, xl, xu, pre)
    cols, rows = milp.col_names(), milp.row_names()
    assert len(set(cols)) == len(cols) and len(set(rows)) == len(rows)
    unstable = [(l, j) for l, (L, U) in enumerate(pre, start=1) for j in np.flatnonzero((L < 0) & (U > 0))]
    assert unstable
    assert [c for c in cols if c.startswith("d")] == [f"d{l}[{j}]" for l, j in unstable]
    for l, j in unstable:
        assert f"bigM{l}.active[{j}]" in rows and f"bigM{l}.inactive[{j}]" in rows
    assert all(not r.endswith(".100") and "L0." not in r for r in rows)
    assert milp.integer.sum() == len(unstable) and all(cols[k].startswith("d") for k in np.flatnonzero(milp.integer))


def _relu_net(seed=5, widths=(3, 5, 4, 3), act="relu"):
    return random_network(list(widths), act, seed=seed, scale=2.0)


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_fixed_pattern_of_a_point_brackets_its_logits(act):
    """With every neuron fixed to the pattern of a point, the LP's min and max of each logit over a tiny
    box around the point bracket the network's logit there, and are within the box's reach of it."""
    net = _relu_net(act=act)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x0 = rng.uniform(0.2, 0.8, 3)
        xl, xu = x0 - 1e-4, x0 + 1e-4
        poly = build_polytope(net, xl, xu, _pre_bounds(net, xl, xu, BoundMethod.CROWN),
                              pattern=ActivationPattern.at(net, x0))
        solver, logit = LPSolver(poly), poly.handle(Role.LOGIT)
        y0 = net(x0[None])[0]
        for k in range(3):
            c = poly.cost({logit: np.eye(3)[k]})
            lo, hi = solver.solve(c, Sense.MIN).safe_bound, solver.solve(c, Sense.MAX).safe_bound
            assert lo <= y0[k] <= hi and hi - lo < 1e-1


def test_full_pattern_is_the_region_in_the_box():
    """All neurons fixed: a point of the box lies in the polytope exactly when it has the pattern; the LP
    minimum of a logit equals the minimum of the region's affine map (from the linearisation) over the
    region, solved independently by scipy; a pattern the bounds exclude is InfeasibleError."""
    from scipy.optimize import linprog

    net = _relu_net()
    xl, xu = np.full(3, 0.3), np.full(3, 0.7)
    pre = _pre_bounds(net, xl, xu, BoundMethod.CROWN)
    x0 = np.full(3, 0.5)
    pattern = ActivationPattern.at(net, x0)
    poly = build_polytope(net, xl, xu, pre, pattern=pattern)
    rng = np.random.default_rng(1)
    pts = xl + rng.random((400, 3)) * (xu - xl)
    same = np.array([all(np.array_equal(a, b) for a, b in zip(ActivationPattern.at(net, p).states, pattern.states))
                     for p in pts])
    assert same.any() and (~same).any()
    viol = np.array([poly.check_point(poly.point_from_input(p)) for p in pts])
    assert np.all(viol[same] <= 1e-9) and np.all(viol[~same] > 1e-9)
    # The region: sign_j * a_l[j](x) >= 0 with a_l = A_l x + c_l the point's affine maps; the logit's map.
    lin = linearise(net, x0[None])
    G = [-(s[:, None].astype(float) * lin.affine_map(l)[0][0]) for l, s in enumerate(pattern.states, start=1)]
    h = [s.astype(float) * lin.affine_map(l)[1][0] for l, s in enumerate(pattern.states, start=1)]
    A, c = lin.affine_map()
    for k in range(3):
        ref = linprog(A[0, k], A_ub=np.vstack(G), b_ub=np.concatenate(h), bounds=list(zip(xl, xu)), method="highs")
        lp = LPSolver(poly).solve(poly.cost({poly.handle(Role.LOGIT): np.eye(3)[k]}), Sense.MIN)
        assert lp.safe_bound <= ref.fun + c[0, k] + 1e-9 and lp.objective == pytest.approx(ref.fun + c[0, k], abs=1e-7)
    # Fix a neuron that is on everywhere in the box to off: no input has that pattern.
    L1, U1 = pre[0]
    j = int(np.argmax(L1))
    assert L1[j] > 0
    with pytest.raises(InfeasibleError, match=str(NeuronId(1, j))):
        build_polytope(net, xl, xu, pre, pattern=ActivationPattern.free(net).fixed(NeuronId(1, j), OFF))


def test_partial_pattern_is_sound_and_tighter():
    """One neuron fixed on, one off (branch and bound's split): every box point with those two states lies
    in the polytope, and its logit bounds are at least as tight as the relaxed polytope's."""
    net = _relu_net(seed=9)
    xl, xu = np.full(3, 0.2), np.full(3, 0.8)
    pre = _pre_bounds(net, xl, xu, BoundMethod.CROWN)
    unstable = [NeuronId(l, int(j)) for l, (L, U) in enumerate(pre, start=1) for j in np.flatnonzero((L < 0) & (U > 0))]
    assert len(unstable) >= 2
    n_on, n_off = unstable[0], unstable[-1]
    pattern = ActivationPattern.free(net).fixed(n_on, ON).fixed(n_off, OFF)
    assert pattern.n_fixed == 2
    part = build_polytope(net, xl, xu, pre, pattern=pattern)
    free = build_polytope(net, xl, xu, pre)
    rng = np.random.default_rng(2)
    pts = xl + rng.random((2000, 3)) * (xu - xl)
    fp = net.forward(pts)
    keep = (fp.pre[n_on.layer - 1][:, n_on.index] >= 0) & (fp.pre[n_off.layer - 1][:, n_off.index] <= 0)
    assert keep.any()
    assert max(part.check_point(part.point_from_input(p)) for p in pts[keep]) <= 1e-9
    for k in range(3):
        for sense in (Sense.MIN, Sense.MAX):
            bp = LPSolver(part).solve(part.cost({part.handle(Role.LOGIT): np.eye(3)[k]}), sense).safe_bound
            bf = LPSolver(free).solve(free.cost({free.handle(Role.LOGIT): np.eye(3)[k]}), sense).safe_bound
            y = net(pts[keep])[:, k]
            assert (bp >= bf - 1e-9 and bp <= y.min() + 1e-9) if sense is Sense.MIN else (bp <= bf + 1e-9 and bp >= y.max() - 1e-9)
    with pytest.raises(ParameterError, match="piecewise-linear"):
        build_polytope(random_network([3, 4, 2], "gelu"), xl, xu, _pre_bounds(random_network([3, 4, 2], "gelu"), xl, xu),
                       pattern=ActivationPattern.free(random_network([3, 4, 2], "gelu")).fixed(NeuronId(1, 0), ON))


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
    e = merge_envelopes(build_envelope(act, np.array([-3.0]), np.array([2.0]), Hull(3)),
                        build_envelope(act, np.array([-1.0]), np.array([1.5]), Hull(3)))
    a = np.linspace(-1.0, 1.5, 401)[:, None]
    lo, hi = e.evaluate(a)
    f = act(a)
    assert np.all(lo <= f + 1e-12) and np.all(f <= hi + 1e-12)
    assert e.lower[0] == -1.0 and e.upper[0] == 1.5
