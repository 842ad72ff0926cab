"""Complete verification: branch and bound against the exact MILP, proof trees, budgets that hold."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polylens.bounds import crown_ibp_bounds, input_box
from polylens.lenses.verify.bab import (BabOptions, ProofNode, ProofTree, Spec, branch_and_bound, recheck,
                                        robustness_spec)
from polylens.lenses.verify.budget import Budget, UnknownReason
from polylens.errors import InfeasibleError
from polylens.lp.exact import build_milp
from polylens.lp.highs import LPSolver, Sense, SolveStatus
from polylens.lp.polytope import Role, build_polytope
from polylens.nn import Network
from polylens.relax.envelopes import Hull


def _net(seed: int, d: int = 4, h: int = 8, C: int = 3, act: str = "relu") -> Network:
    rng = np.random.default_rng(seed)
    return Network.from_arrays([rng.normal(size=(h, d)), rng.normal(size=(h, h)), rng.normal(size=(C, h))],
                               [0.3 * rng.normal(size=h), 0.3 * rng.normal(size=h), 0.3 * rng.normal(size=C)], act)


def _box(seed: int, d: int, eps: float):
    x = np.random.default_rng(seed + 1000).random(d)
    return x, np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)


def _milp_margin(net: Network, xl, xu, y: int) -> float:
    b = crown_ibp_bounds(net, xl[None], xu[None])
    poly = build_milp(net, xl, xu, [(L[0], U[0]) for L, U in zip(b.lower, b.upper)])
    s = LPSolver(poly)
    return min(s.solve(poly.margin_cost(y, k), Sense.MIN).objective for k in range(net.n_classes) if k != y)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.15, 0.3]), lp=st.sampled_from(["always", "never"]))
def test_bab_agrees_with_exact_milp(seed, eps, lp):
    """On random small relu networks, branch and bound's verdict is the exact MILP's: verified iff the
    exact minimum margin is positive, falsified (with a real counterexample) iff it is negative."""
    net = _net(seed, h=8 if lp == "always" else 4)  # CROWN-only search needs more nodes: a smaller net
    x, xl, xu = _box(seed, 4, eps)
    y = int(net.predict(x[None])[0])
    m = _milp_margin(net, xl, xu, y)
    r = branch_and_bound(net, xl, xu, robustness_spec(y, 3), options=BabOptions(lp=lp, max_nodes=3000))
    if abs(m) < 1e-6:
        assert r.status in ("verified", "falsified", "unknown")
        return
    assert r.status == ("verified" if m > 0 else "falsified"), (m, r)
    if r.status == "falsified":
        z = net(r.counterexample[None])[0]
        assert np.all(r.counterexample >= xl) and np.all(r.counterexample <= xu)
        assert z[y] - np.delete(z, y).max() < 0
    else:
        assert recheck(r.tree, net, xl, xu).ok


def _split_tree(act: str = "relu"):
    """A verified instance whose proof needs splits (found by trying seeds)."""
    for seed in range(200):
        net = _net(seed, act=act)
        x, xl, xu = _box(seed, 4, 0.3)
        y = int(net.predict(x[None])[0])
        r = branch_and_bound(net, xl, xu, robustness_spec(y, 3), options=BabOptions(lp="always"))
        if r.status == "verified" and r.tree.depth >= 2:
            return net, xl, xu, y, r
    raise AssertionError("no instance needing splits")


def test_recheck_accepts_trees_and_rejects_tampered_ones():
    """recheck accepts the tree branch and bound built (also after a JSON round trip) and rejects a tree
    with a subtree cut off, a leaf claiming a disjunct it cannot prove, a false empty region, or a
    tree presented for another specification."""
    net, xl, xu, y, r = _split_tree()
    tree = r.tree
    assert recheck(tree, net, xl, xu).ok
    back = ProofTree.from_dict(tree.to_dict())
    assert recheck(back, net, xl, xu).ok and back.n_nodes == tree.n_nodes
    everything = tuple(range(tree.spec.n_groups))
    # The root, cut to a leaf that claims every disjunct by CROWN.
    cut = replace(tree, root=ProofNode(everything, "crown", (1.0,) * len(everything)))
    assert not recheck(cut, net, xl, xu).ok
    # The root claimed empty.
    empty = replace(tree, root=ProofNode((), "empty"))
    assert not recheck(empty, net, xl, xu).ok
    # One child dropped.
    half = replace(tree, root=replace(tree.root, high=None))
    assert not recheck(half, net, xl, xu).ok
    # The tree asked to prove a stricter property (every margin above 100).
    other = Spec(tree.spec.H, tree.spec.h0 - 100.0, tree.spec.group, tree.spec.strict)
    assert not recheck(tree, net, xl, xu, other).ok
    assert not recheck(replace(tree, spec=other), net, xl, xu).ok


def test_bab_smooth_networks_against_sampling():
    """On GELU and sigmoid networks, verified instances have no misclassified point among dense samples
    of the box, falsified ones carry a real counterexample, and verified trees re-check."""
    seen = set()
    for act in ("gelu", "sigmoid"):
        for seed in range(12):
            net = _net(seed, d=3, h=6, act=act)
            x, xl, xu = _box(seed, 3, 0.2)
            y = int(net.predict(x[None])[0])
            r = branch_and_bound(net, xl, xu, robustness_spec(y, 3), options=BabOptions(lp="always", max_nodes=400),
                                 budget=Budget(3.0))
            seen.add(r.status)
            pts = xl + np.random.default_rng(seed).random((4000, 3)) * (xu - xl)
            z = net(pts)
            worst = (z[:, y] - np.delete(z, y, axis=1).max(axis=1)).min()
            if r.status == "verified":
                assert worst > 0 and recheck(r.tree, net, xl, xu).ok
            elif r.status == "falsified":
                c = net(r.counterexample[None])[0]
                assert c[y] - np.delete(c, y).max() < 0
    assert "verified" in seen and "falsified" in seen


def _long_lp():
    """A polytope whose margin LP takes many seconds: a wide random network, wide box."""
    rng = np.random.default_rng(3)
    d, h = 300, 300
    net = Network.from_arrays([rng.normal(size=(h, d)) / 8, rng.normal(size=(h, h)) / 8, rng.normal(size=(h, h)) / 8,
                               rng.normal(size=(10, h))], [np.zeros(h)] * 3 + [np.zeros(10)], "relu")
    x = rng.random(d)
    xl, xu = np.clip(x - 0.3, 0, 1), np.clip(x + 0.3, 0, 1)
    b = crown_ibp_bounds(net, xl[None], xu[None])
    return build_polytope(net, xl, xu, [(L[0], U[0]) for L, U in zip(b.lower, b.upper)], Hull(8))


def test_budget_stops_a_long_lp():
    """An LP that would run long is stopped at its deadline (within a second), reports TIME_LIMIT, and
    a solve started after the deadline returns at once; the safe bound stays a valid bound (or -inf)."""
    poly = _long_lp()
    t = time.monotonic()
    s = LPSolver(poly, deadline=t + 0.4, iteration_limit=10**9)
    sol = s.solve(poly.margin_cost(0, 1), Sense.MIN)
    took = time.monotonic() - t
    assert sol.status is SolveStatus.TIME_LIMIT
    assert took < 1.5
    t = time.monotonic()
    sol2 = s.solve(poly.margin_cost(0, 2), Sense.MIN)
    assert sol2.status is SolveStatus.TIME_LIMIT and time.monotonic() - t < 0.5
    # Also the iteration cap alone stops it.
    s3 = LPSolver(poly, iteration_limit=50)
    assert s3.solve(poly.margin_cost(0, 1), Sense.MIN).status is SolveStatus.TIME_LIMIT


def test_bab_budget_ends_unknown_budget():
    """Branch and bound given a tiny budget ends unknown with reason budget, close to the deadline."""
    for seed in range(200):
        net = _net(seed, d=4, h=16)
        x, xl, xu = _box(seed, 4, 0.4)
        y = int(net.predict(x[None])[0])
        t = time.monotonic()
        r = branch_and_bound(net, xl, xu, robustness_spec(y, 3), options=BabOptions(lp="never", batch=2),
                             budget=Budget(0.05))
        if r.status == "unknown":
            assert r.reason is UnknownReason.BUDGET
            assert time.monotonic() - t < 1.0
            return
    pytest.skip("every instance was decided within 0.05 s")


def test_certify_settles_the_seed_units_lps_leave_open():
    """On the bundled GELU seed, the units that IBP, CROWN, attack and LP leave open (first 300 test
    images at eps 0.02) are all settled by branch and bound: verified rows say ``bab`` and carry a
    proof tree that re-checks, falsified ones carry a real counterexample; nothing decided before
    changes its verdict."""
    from polylens.data.labelled import Data
    from polylens.lenses.verify.certify import CertifyOptions, DecidedBy, Status, certify
    from polylens.nn.model import load_model

    m = load_model("seed")
    d = Data.of_model(m).head(300)
    net, eps = m.network, 0.02
    before = certify(net, d.x, d.y, eps, options=CertifyOptions(bab=False))
    after = certify(net, d.x, d.y, eps, options=CertifyOptions())
    open_ = [i for i, c in enumerate(before) if c.status is Status.UNKNOWN]
    assert open_, "the seed has units the LP leaves open at this radius"
    for i, (b, a) in enumerate(zip(before, after)):
        if b.status is not Status.UNKNOWN:
            assert a.status is b.status
    for i in open_:
        a = after[i]
        assert a.status is not Status.UNKNOWN
        xl, xu = input_box(d.x[i][None], eps)
        if a.status is Status.VERIFIED:
            assert a.decided_by is DecidedBy.BAB and a.verified_by.bab and not a.verified_by.lp
            assert recheck(a.proof, net, xl[0], xu[0]).ok
            assert np.all(np.delete(a.margin_lower, a.label) > 0)
            assert a.to_dict()["proof"]["nodes"] == a.proof.n_nodes
        else:
            assert a.decided_by is DecidedBy.BAB_POINT
            z = net(a.counterexample[None])[0]
            assert z[a.label] < np.delete(z, a.label).max()


# -- alpha-beta-CROWN bounds at nodes, disjunct by disjunct -------------------------------------

def _split_region(net: Network, xl, xu, seed: int, n_splits: int):
    """Root intervals with ``n_splits`` random unstable neurons split to a random side, as branch
    and bound narrows them; the masks of the split neurons."""
    from polylens.lenses.verify.bab import root_bounds

    b = root_bounds(net, xl[None], xu[None])
    L = [a[0].copy() for a in b.lower]
    U = [a[0].copy() for a in b.upper]
    masks = [np.zeros((1, w), bool) for w in net.hidden_widths]
    rng = np.random.default_rng(seed)
    for _ in range(n_splits):
        l = int(rng.integers(net.n_hidden_layers))
        un = np.flatnonzero((L[l] < 0) & (U[l] > 0))
        if un.size == 0:
            continue
        j = int(rng.choice(un))
        if rng.random() < 0.5:
            U[l][j] = 0.0
        else:
            L[l][j] = 0.0
        masks[l][0, j] = True
    return L, U, masks


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), splits=st.integers(1, 5))
def test_beta_bounds_are_sound_on_split_regions(seed, splits):
    """Optimised slopes and split multipliers give a lower bound of every margin over the split
    region (the box where each split neuron's pre-activation lies on its side): never above the
    exact MILP minimum over that region, nor above any sampled point of it."""
    import sys

    crown_mod = sys.modules["polylens.bounds.crown"]
    net = _net(seed)
    x, xl, xu = _box(seed, 4, 0.3)
    y = int(net.predict(x[None])[0])
    L, U, masks = _split_region(net, xl, xu, seed, splits)
    if any(np.any(a > b) for a, b in zip(L, U)):
        return
    relax = [crown_mod.relax_layer(a, Lq[None], Uq[None], l) for l, (a, Lq, Uq) in enumerate(zip(net.activations, L, U))]
    spec = robustness_spec(y, 3)
    C = spec.H[None]
    lb, _ = crown_mod.optimised_bounds(net, net.n_hidden_layers, relax, xl[None], xu[None], C, 30, masks)
    # The exact minimum over the region: the MILP on the narrowed intervals (column bounds hold the splits).
    poly = build_milp(net, xl, xu, list(zip(L, U)))
    solver = LPSolver(poly)
    empty = False
    for r in range(spec.H.shape[0]):
        try:
            sol = solver.solve(poly.margin_cost(y, int(np.flatnonzero(spec.H[r] < 0)[0])), Sense.MIN)
        except InfeasibleError:
            empty = True  # the splits exclude every input: any bound holds
            break
        if sol.status is SolveStatus.OPTIMAL:
            assert lb[0, r] <= sol.objective + 1e-9
    pts = xl + np.random.default_rng(seed).random((20_000, 4)) * (xu - xl)
    inside = np.ones(len(pts), bool)
    h = pts
    for l, layer in enumerate(net.layers[:-1]):
        a = h @ layer.W.T + layer.b
        inside &= np.all((a >= L[l] - 1e-12) & (a <= U[l] + 1e-12), axis=1)
        h = net.activations[l](a)
    assert not (empty and inside.any())
    if inside.any():
        z = net(pts[inside])
        assert np.all(z @ spec.H.T >= lb[0] - 1e-9)


def test_split_multipliers_tighten_bounds():
    """On split regions the multipliers carry the split conditions to the input: the optimised bound
    beats plain CROWN on the same intervals, by a margin, on most regions."""
    import sys

    crown_mod = sys.modules["polylens.bounds.crown"]
    gains = []
    for seed in range(12):
        net = _net(seed)
        x, xl, xu = _box(seed, 4, 0.3)
        y = int(net.predict(x[None])[0])
        L, U, masks = _split_region(net, xl, xu, seed, 4)
        if any(np.any(a > b) for a, b in zip(L, U)) or not any(m.any() for m in masks):
            continue
        relax = [crown_mod.relax_layer(a, Lq[None], Uq[None], l)
                 for l, (a, Lq, Uq) in enumerate(zip(net.activations, L, U))]
        C = robustness_spec(y, 3).H[None]
        plain = crown_mod.backward_bounds(net, net.n_hidden_layers, relax, xl[None], xu[None], C)
        alpha, _ = crown_mod.optimised_bounds(net, net.n_hidden_layers, relax, xl[None], xu[None], C, 30)
        beta, _ = crown_mod.optimised_bounds(net, net.n_hidden_layers, relax, xl[None], xu[None], C, 30, masks)
        gains.append((float((alpha - plain).min()), float((beta - alpha).min())))
    assert len(gains) >= 6
    assert sum(b > 1e-3 for _, b in gains) >= len(gains) // 2, gains


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.15, 0.3]))
def test_beta_bab_agrees_with_exact_milp(seed, eps):
    """Branch and bound as VNN-COMP runs it (alpha-CROWN root intervals, alpha-beta-CROWN at nodes,
    filtered smart branching, no LP but on fully split regions, disjuncts searched apart) reaches the
    exact MILP's verdict on random relu networks, and its trees (with their multipliers) re-check."""
    from polylens.lenses.verify.bab import branch_and_bound_many
    from polylens.lenses.verify.vnncomp import disjuncts

    net = _net(seed)
    x, xl, xu = _box(seed, 4, eps)
    y = int(net.predict(x[None])[0])
    m = _milp_margin(net, xl, xu, y)
    opts = BabOptions(lp="never", rebound="never", root_alpha_steps=5, batch=8, max_nodes=3000)
    parts = disjuncts(robustness_spec(y, 3))
    assert len(parts) == 2
    rs = branch_and_bound_many(net, np.repeat(xl[None], 2, 0), np.repeat(xu[None], 2, 0), parts, options=opts,
                               stop_when_falsified=True)
    if abs(m) < 1e-6:
        return
    if m > 0:
        assert all(r.status == "verified" for r in rs), rs
        for r, part in zip(rs, parts):
            assert recheck(r.tree, net, xl, xu).ok
            assert recheck(ProofTree.from_dict(r.tree.to_dict()), net, xl, xu).ok
    else:
        hit = [r for r in rs if r.status == "falsified"]
        assert len(hit) == 1 and all(r.status == "unknown" and r.reason is UnknownReason.STOPPED
                                     for r in rs if r is not hit[0])
        z = net(hit[0].counterexample[None])[0]
        assert z[y] - np.delete(z, y).max() < 0


def test_recheck_replays_multipliers_and_rejects_tampered_ones():
    """A tree proved with optimised multipliers re-checks (also after a JSON round trip); with its
    multipliers blown up, or dropped where CROWN alone does not prove the node, it does not."""
    for seed in range(300):
        net = _net(seed)
        x, xl, xu = _box(seed, 4, 0.3)
        y = int(net.predict(x[None])[0])
        r = branch_and_bound(net, xl, xu, robustness_spec(y, 3), options=BabOptions(lp="never", max_nodes=3000))
        if r.status != "verified" or r.tree.depth < 2:
            continue
        tree = r.tree
        assert recheck(tree, net, xl, xu).ok
        assert recheck(ProofTree.from_dict(tree.to_dict()), net, xl, xu).ok

        def nodes(n):
            return [] if n is None else [n] + nodes(n.low) + nodes(n.high)
        tuned = [n for n in nodes(tree.root) if n.tuned is not None
                 and any(v != 0 for _, _, vals in n.tuned.d for v in vals)]
        if not tuned:
            continue

        def swap(n, target, new):
            if n is None:
                return None
            if n is target:
                return new
            return replace(n, low=swap(n.low, target, new), high=swap(n.high, target, new))
        # A node whose proof needs its multipliers: without them, CROWN alone does not prove it.
        needed = [n for n in tuned if not recheck(replace(tree, root=swap(tree.root, n, replace(n, tuned=None))),
                                                   net, xl, xu).ok]
        if not needed:
            continue
        target = needed[0]
        blown = replace(target.tuned, d=tuple((l, j, tuple(1e6 * v for v in vals)) for l, j, vals in target.tuned.d))
        assert not recheck(replace(tree, root=swap(tree.root, target, replace(target, tuned=blown))), net, xl, xu).ok
        return
    raise AssertionError("no verified tree with split multipliers among the seeds tried")


def test_disjuncts_split_a_property_only_when_rows_match():
    """A robustness property becomes one specification per other class; a property whose disjuncts
    have different numbers of rows stays whole."""
    from polylens.lenses.verify.vnncomp import disjuncts

    parts = disjuncts(robustness_spec(1, 4))
    assert len(parts) == 3 and all(p.n_groups == 1 and p.H.shape == (1, 4) for p in parts)
    assert [int(np.flatnonzero(p.H[0] < 0)[0]) for p in parts] == [0, 2, 3]
    mixed = Spec(np.eye(3)[[0, 1, 2]], np.zeros(3), np.array([0, 0, 1]))
    assert disjuncts(mixed) == [mixed]


def test_pair_slope_shortcut_matches_the_search():
    """For piecewise-linear activations an interval inside one piece takes that piece's slope, and
    one around a single kink the piece slope at its midpoint (kink bending up) or the chord (bending
    down), without the hull search; the result is bit-identical to the search's."""
    from polylens.nn.activations import ActKind, Activation, Family
    from polylens.relax import lines

    rng = np.random.default_rng(0)
    for kind, alpha in itertools.product(ActKind, (0.1, 2.0)):
        act = Activation(kind, alpha)
        if act.spec.family is Family.SMOOTH:
            continue
        L = rng.normal(size=5000) * 2
        U = L + np.abs(rng.normal(size=5000)) * rng.choice([0.0, 1e-12, 0.01, 1.0, 3.0], 5000)
        L[:50] = U[:50] = 0.0
        U[50:100] = 0.0
        L[100:150] = 0.0
        for sigma in (1.0, -1.0):
            assert np.array_equal(lines._pair_slope(act, L, U, sigma), lines._pair_slope_search(act, L, U, sigma))


def _deep_net(seed: int, d: int = 4, h: int = 8, depth: int = 3, C: int = 3) -> Network:
    rng = np.random.default_rng(seed)
    widths = [d] + [h] * depth + [C]
    return Network.from_arrays([rng.normal(size=(o, i)) / np.sqrt(i) * 1.5 for i, o in zip(widths, widths[1:])],
                               [0.3 * rng.normal(size=o) for o in widths[1:]], "relu")


def _exact_range(net: Network, xl, xu, layer: int, j: int) -> tuple[float, float]:
    """The exact min and max of hidden layer ``layer``'s (1-based) pre-activation j over the box (MILP)."""
    tr = net.truncated(layer)
    b = crown_ibp_bounds(tr, xl[None], xu[None])
    poly = build_milp(tr, xl, xu, [(L[0], U[0]) for L, U in zip(b.lower, b.upper)])
    s = LPSolver(poly)
    c = np.zeros(tr.n_classes)
    c[j] = 1.0
    cost = poly.cost({poly.handle(Role.LOGIT): c})
    return s.solve(cost, Sense.MIN).objective, s.solve(cost, Sense.MAX).objective


def test_refined_root_intervals_contain_the_exact_ranges():
    """refine_root's intervals hold: each contains its neuron's exact range over the box (MILP), each
    lies inside the intervals it started from, a stabilised neuron really keeps its sign, and
    across the networks tried the refinement narrows some intervals and stabilises some neurons."""
    from polylens.lenses.verify.bab import refine_root, root_bounds

    narrowed = stabilised = 0
    for seed in range(6):
        net = _deep_net(seed)
        x, xl, xu = _box(seed, 4, 0.3)
        base = root_bounds(net, xl[None], xu[None], 5)
        b, layers, items = refine_root(net, xl, xu, base, nodes=12, alpha_steps=5)
        assert layers == net.n_hidden_layers
        for l in range(net.n_hidden_layers):
            assert np.all(b.lower[l] >= base.lower[l]) and np.all(b.upper[l] <= base.upper[l])
            for j in range(net.hidden_widths[l]):
                lo, hi = _exact_range(net, xl, xu, l + 1, j)
                assert b.lower[l][0, j] <= lo + 1e-7 and hi - 1e-7 <= b.upper[l][0, j], (seed, l, j)
            narrowed += int(np.sum(b.upper[l] - b.lower[l] < base.upper[l] - base.lower[l] - 1e-9))
            stabilised += int(np.sum((base.lower[l] < 0) & (base.upper[l] > 0)
                                     & ((b.lower[l] >= 0) | (b.upper[l] <= 0))))
        assert all(2 <= r.layer <= layers for r in items)
    assert narrowed >= 3 and stabilised >= 1, (narrowed, stabilised)


def test_refinement_stops_once_the_property_is_proved_at_the_root():
    """refine_root asks ``until`` after each layer but the last and stops at the first True; in
    branch and bound the question is whether the root bound proves the property, so an instance
    whose refinement stopped early is verified at the root by a tree that re-checks."""
    from polylens.lenses.verify.bab import refine_root, root_bounds

    net = _deep_net(0, depth=4)
    x, xl, xu = _box(0, 4, 0.3)
    base = root_bounds(net, xl[None], xu[None], 5)
    asked = []
    b, layers, items = refine_root(net, xl, xu, base, nodes=12, alpha_steps=5,
                                   until=lambda b_: asked.append(b_) or False)
    assert layers == net.n_hidden_layers and len(asked) == net.n_hidden_layers - 2
    b, layers, items = refine_root(net, xl, xu, base, nodes=12, alpha_steps=5, until=lambda b_: True)
    assert layers == 2 and all(r.layer == 2 for r in items)

    opts = BabOptions(lp="never", rebound="never", root_alpha_steps=5, batch=8, max_nodes=3000, refine_nodes=12)
    early = 0
    for seed in range(60):
        net = _deep_net(seed, depth=4)
        x, xl, xu = _box(seed, 4, 0.3)
        y = int(net.predict(x[None])[0])
        r = branch_and_bound(net, xl, xu, robustness_spec(y, 3), options=opts)
        if r.status == "verified" and 2 <= r.tree.refined_layers < net.n_hidden_layers:
            early += 1
            assert r.tree.root.split is None and recheck(r.tree, net, xl, xu).ok
            assert _milp_margin(net, xl, xu, y) > 0
            break
    assert early == 1


def test_refinement_asked_during_a_layer_stops_there_and_holds(monkeypatch):
    """With the checkpoint asked at every batch, an ``until`` that is met at once ends the first
    layer's searches mid-way: the refinement stops at layer 2 and its intervals still contain the
    exact ranges (MILP)."""
    import polylens.lenses.verify.bab as bab

    monkeypatch.setattr(bab._Checkpoint, "wait", 0.0)
    net = _deep_net(1, depth=4)
    x, xl, xu = _box(1, 4, 0.3)
    base = bab.root_bounds(net, xl[None], xu[None], 5)
    inside = []  # per call of until: asked from inside a layer's searches (by the checkpoint)
    call = bab._Checkpoint.__call__

    def wrapped(self, lowers):
        inside.append(True)
        try:
            return call(self, lowers)
        finally:
            inside.append(False)
    monkeypatch.setattr(bab._Checkpoint, "__call__", wrapped)

    def until(answer):
        def ask(b_):
            asked.append(bool(inside) and inside[-1])
            return answer
        return ask

    asked = []
    _, layers, _ = bab.refine_root(net, xl, xu, base, nodes=50, alpha_steps=5, until=until(False))
    assert layers == net.n_hidden_layers and any(asked) and asked.count(False) == net.n_hidden_layers - 2
    asked = []
    b, layers, items = bab.refine_root(net, xl, xu, base, nodes=50, alpha_steps=5, until=until(True))
    assert layers == 2 and asked == [True] and all(r.layer == 2 for r in items)
    for l in range(net.n_hidden_layers):
        for j in range(net.hidden_widths[l]):
            lo, hi = _exact_range(net, xl, xu, l + 1, j)
            assert b.lower[l][0, j] <= lo + 1e-7 and hi - 1e-7 <= b.upper[l][0, j], (l, j)


def test_each_refined_layer_gets_its_share_of_the_time_left(monkeypatch):
    """With a budget, layer k's searches get at most the time left over the layers still to refine
    (hidden layers k to H), so that a deep node limit on the first layers cannot starve the later
    ones; the refinement still reaches the last layer and its intervals hold (MILP)."""
    import polylens.lenses.verify.bab as bab
    from polylens.lenses.verify.budget import Budget

    net = _deep_net(3, depth=4)
    x, xl, xu = _box(3, 4, 0.3)
    base = bab.root_bounds(net, xl[None], xu[None], 5)
    given = []  # per layer: (seconds its searches got, seconds the refinement had left then)
    outer = Budget(60.0)
    search = bab.branch_and_bound_many

    def spy(tr, *args, budget=None, **kw):
        given.append((tr.n_hidden_layers + 1, budget.seconds, outer.remaining()))
        return search(tr, *args, budget=budget, **kw)
    monkeypatch.setattr(bab, "branch_and_bound_many", spy)
    b, layers, items = bab.refine_root(net, xl, xu, base, nodes=10_000, alpha_steps=5, budget=outer)
    assert layers == net.n_hidden_layers and [g[0] for g in given] == list(range(2, net.n_hidden_layers + 1))
    for layer, seconds, left in given:
        assert seconds <= left / (net.n_hidden_layers - layer + 1) + 1e-3, (layer, seconds, left)
    for l in range(net.n_hidden_layers):
        for j in range(net.hidden_widths[l]):
            lo, hi = _exact_range(net, xl, xu, l + 1, j)
            assert b.lower[l][0, j] <= lo + 1e-7 and hi - 1e-7 <= b.upper[l][0, j], (l, j)


def test_a_layer_whose_searches_stall_hands_its_time_on(monkeypatch):
    """With ``stall``, a refined layer's searches end (keeping their bound trees) once the share of
    their gaps they close stops rising, and the refinement goes on to the next layer: here every
    layer stalls at once (any gain short of closing every gap counts as a stall), each layer's
    open searches end stopped, the last layer is still reached, and every interval holds (MILP).
    Without it the same searches run to their node limit."""
    import polylens.lenses.verify.bab as bab
    from polylens.lenses.verify.budget import Budget

    net = _deep_net(3, depth=4)
    x, xl, xu = _box(3, 4, 0.3)
    base = bab.root_bounds(net, xl[None], xu[None], 5)
    monkeypatch.setattr(bab._Checkpoint, "stall_after", 0.0)
    monkeypatch.setattr(bab._Checkpoint, "stall_window", 0.0)
    ended = []  # per layer: the searches' statuses and reasons
    search = bab.branch_and_bound_many

    def spy(tr, *args, **kw):
        res = search(tr, *args, **kw)
        ended.append((tr.n_hidden_layers + 1, [(r.status, r.reason) for r in res]))
        return res
    monkeypatch.setattr(bab, "branch_and_bound_many", spy)
    b, layers, items = bab.refine_root(net, xl, xu, base, nodes=10_000, alpha_steps=5, budget=Budget(60.0),
                                       stall=1.0)
    assert layers == net.n_hidden_layers and [e[0] for e in ended] == list(range(2, net.n_hidden_layers + 1))
    assert any(st == ("unknown", UnknownReason.STOPPED) for _, sts in ended for st in sts)
    for _, sts in ended:
        assert all(st[0] == "verified" or st == ("unknown", UnknownReason.STOPPED) for st in sts)
    for l in range(net.n_hidden_layers):
        for j in range(net.hidden_widths[l]):
            lo, hi = _exact_range(net, xl, xu, l + 1, j)
            assert b.lower[l][0, j] <= lo + 1e-7 and hi - 1e-7 <= b.upper[l][0, j], (l, j)
    ended.clear()
    bab.refine_root(net, xl, xu, base, nodes=50, alpha_steps=5, budget=Budget(60.0))
    assert not any(st == ("unknown", UnknownReason.STOPPED) for _, sts in ended for st in sts)

    # Proofs resting on stalled layers' bound trees re-check, and their verdicts are the MILP's.
    opts = BabOptions(lp="never", rebound="never", root_alpha_steps=5, batch=8, max_nodes=3000, refine_nodes=12,
                      refine_stall=1.0)
    proved = 0
    for seed in range(40):
        net = _deep_net(seed, depth=4)
        x, xl, xu = _box(seed, 4, 0.3)
        y = int(net.predict(x[None])[0])
        r = bab.branch_and_bound(net, xl, xu, robustness_spec(y, 3), options=opts)
        if r.status == "verified" and r.tree.refinements:
            assert recheck(r.tree, net, xl, xu).ok and _milp_margin(net, xl, xu, y) > 0
            proved += 1
            if proved == 2:
                break
    assert proved == 2


def test_a_checkpoint_ends_bound_searches_with_what_they_proved():
    """``checkpoint`` sees each search's proved bound after every batch (never falling; inf once
    proved); when it says stop, the open searches end ``unknown`` (stopped) with trees that prove
    the bound it saw last and re-check."""
    from polylens.lenses.verify.bab import _truncated_root, branch_and_bound_many, refinement_spec, root_bounds

    net = _deep_net(2)
    x, xl, xu = _box(2, 4, 0.3)
    layer = 3
    base = root_bounds(net, xl[None], xu[None], 5)
    unstable = np.flatnonzero(base.unstable(layer - 1)[0])
    assert unstable.size
    tr = net.truncated(layer)
    specs = [refinement_spec(tr.n_classes, int(j), side, 0.0) for j in unstable for side in (0, 1)]
    P = len(specs)
    seen = []

    def checkpoint(lowers):
        seen.append(lowers.copy())
        return len(seen) == 3

    opts = BabOptions(lp="never", rebound="never", batch=4, attack_every=0, root_lp=False, root_attack=False,
                      max_nodes=10_000)
    res = branch_and_bound_many(tr, np.repeat(xl[None], P, 0), np.repeat(xu[None], P, 0), specs, options=opts,
                                root=_truncated_root(base, layer, P), keep_bounds=True, checkpoint=checkpoint)
    assert len(seen) == 3 and all(np.all(b >= a) for a, b in zip(seen, seen[1:]))
    stopped = 0
    for k, r in enumerate(res):
        if r.status == "verified":
            assert seen[-1][k] == np.inf
            continue
        assert r.status == "unknown" and r.reason is UnknownReason.STOPPED and r.bound_tree is not None
        stopped += 1
        assert seen[-1][k] - 1e-5 * (1 + abs(seen[-1][k])) <= r.lower <= seen[-1][k]
        assert recheck(r.bound_tree, tr, xl, xu, root=_truncated_root(base, layer)).ok
    assert stopped >= 1


def _refined_tree():
    """A verified deep instance whose proof carries root refinements (found by trying seeds)."""
    opts = BabOptions(lp="never", rebound="never", root_alpha_steps=5, batch=8, max_nodes=3000, refine_nodes=12)
    for seed in range(100):
        net = _deep_net(seed)
        x, xl, xu = _box(seed, 4, 0.3)
        y = int(net.predict(x[None])[0])
        r = branch_and_bound(net, xl, xu, robustness_spec(y, 3), options=opts)
        if r.status == "verified" and any(q.side == 0 and q.bound < 0 for q in r.tree.refinements) \
                and any(q.bound == 0 for q in r.tree.refinements):
            return net, xl, xu, r.tree
    raise AssertionError("no verified instance with refinements among the seeds tried")


def test_recheck_replays_refinements_and_rejects_tampered_ones():
    """A tree whose root intervals were refined re-checks (also after a JSON round trip); with one
    refinement's bound pushed past what its own tree proves, its tree replaced by a bare claim, or
    a refinement named for a layer without one, it does not."""
    net, xl, xu, tree = _refined_tree()
    assert tree.refined_layers >= 2
    assert recheck(tree, net, xl, xu).ok
    assert recheck(ProofTree.from_dict(tree.to_dict()), net, xl, xu).ok
    refs = list(tree.refinements)
    k = next(i for i, q in enumerate(refs) if q.side == 0 and q.bound < 0)
    pushed = refs[:k] + [replace(refs[k], bound=refs[k].bound + 0.5)] + refs[k + 1:]
    assert not recheck(replace(tree, refinements=tuple(pushed)), net, xl, xu).ok
    k = next(i for i, q in enumerate(refs) if q.bound == 0)
    claim = replace(refs[k].tree, root=ProofNode((0,), "crown", (1.0,)))
    bare = refs[:k] + [replace(refs[k], tree=claim)] + refs[k + 1:]
    assert not recheck(replace(tree, refinements=tuple(bare)), net, xl, xu).ok
    assert not recheck(replace(tree, refinements=(replace(refs[0], layer=1),) + tuple(refs[1:])), net, xl, xu).ok


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.2, 0.4]))
def test_refined_bab_agrees_with_exact_milp(seed, eps):
    """With refined root intervals (three hidden layers), branch and bound still reaches the exact
    MILP's verdict, and its verified trees re-check."""
    net = _deep_net(seed)
    x, xl, xu = _box(seed, 4, eps)
    y = int(net.predict(x[None])[0])
    m = _milp_margin(net, xl, xu, y)
    opts = BabOptions(lp="never", rebound="never", root_alpha_steps=5, batch=8, max_nodes=3000, refine_nodes=12)
    r = branch_and_bound(net, xl, xu, robustness_spec(y, 3), options=opts)
    if abs(m) < 1e-6:
        return
    assert r.status == ("verified" if m > 0 else "falsified"), (m, r)
    if r.status == "verified":
        assert recheck(r.tree, net, xl, xu).ok
    else:
        z = net(r.counterexample[None])[0]
        assert z[y] - np.delete(z, y).max() < 0


class _Countdown(Budget):
    """A budget that runs out at its n-th look at the clock, whatever the time (deterministic)."""

    def __init__(self, looks: int):
        super().__init__(None)
        self.looks = looks

    def expired(self) -> bool:
        self.looks -= 1
        return self.looks < 0


def test_bound_searches_cut_by_the_budget_keep_what_they_proved():
    """Searches that only raise a bound (keep_bounds: refine_root's) and are cut by the budget mid-
    search still return a tree proving the bound they reached: it re-checks, holds against the
    neuron's exact range (MILP), and some improve on the interval they started from; a search
    whose tree was complete when the budget ran out ends verified."""
    from polylens.lenses.verify.bab import _truncated_root, branch_and_bound_many, refinement_spec, root_bounds

    improved = kept = 0
    for seed in range(6):
        net = _deep_net(seed)
        x, xl, xu = _box(seed, 4, 0.3)
        layer = 3
        base = root_bounds(net, xl[None], xu[None], 5)
        unstable = np.flatnonzero(base.unstable(layer - 1)[0])
        if not unstable.size:
            continue
        tr = net.truncated(layer)
        specs = [refinement_spec(tr.n_classes, int(j), side, 0.0) for j in unstable for side in (0, 1)]
        P = len(specs)
        opts = BabOptions(lp="never", rebound="never", batch=4, attack_every=0, root_lp=False, root_attack=False,
                          max_nodes=10_000)
        res = branch_and_bound_many(tr, np.repeat(xl[None], P, 0), np.repeat(xu[None], P, 0), specs, options=opts,
                                    budget=_Countdown(4), root=_truncated_root(base, layer, P), keep_bounds=True)
        for k, r in enumerate(res):
            j, side = int(unstable[k // 2]), k % 2
            lo, hi = _exact_range(net, xl, xu, layer, j)
            if r.status == "verified":
                assert (lo > -1e-7) if side == 0 else (hi < 1e-7), (seed, j, side)
                assert recheck(r.tree, tr, xl, xu, root=_truncated_root(base, layer)).ok
                continue
            assert r.status == "unknown" and r.reason is UnknownReason.BUDGET
            if r.bound_tree is None:
                continue
            kept += 1
            assert recheck(r.bound_tree, tr, xl, xu, root=_truncated_root(base, layer)).ok, (seed, j, side)
            if side == 0:
                assert r.lower <= lo + 1e-7
                improved += r.lower > base.lower[layer - 1][0, j] + 1e-9
            else:
                assert -r.lower >= hi - 1e-7
                improved += -r.lower < base.upper[layer - 1][0, j] - 1e-9
    assert kept >= 5 and improved >= 1, (kept, improved)
