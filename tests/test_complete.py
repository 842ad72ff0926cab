"""Complete verification: branch and bound against the exact MILP, proof trees, budgets that hold."""

from __future__ import annotations

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
from polylens.lp.exact import build_milp
from polylens.lp.highs import LPSolver, Sense, SolveStatus
from polylens.lp.polytope import build_polytope
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
