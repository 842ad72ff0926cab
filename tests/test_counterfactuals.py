"""Counterfactuals: results lie in the ball; "achieved" means a forward pass predicts the target; an
"unreachable" target is never made to win by any sampled or attacked input of the ball (soundness),
whose real margins all stay below the max-margin bound; the safe L1 lower bound is below the L1 of
every concrete counterfactual found (the LP minimum bounds the true minimum); the two statuses are
never conflated; instructive pairs come from the confusion matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polylens.lenses.verify.attack import pgd_attack
from polylens.lenses.discover.counterfactuals import (CLASSIC_PAIRS, representative_image, counterfactual, counterfactual_pairs,
                                              instructive_pairs)
from polylens.bounds import input_box
from polylens.errors import ParameterError
from polylens.nn.linearise import input_gradient
from polylens.nn.model import load_model, model_split

from conftest import random_network


def _target_margin(net, X, t):
    lg = net(np.atleast_2d(X))
    own = lg[:, t].copy()
    lg[:, t] = -np.inf
    return own - lg.max(axis=1)


def _search(net, x0, t, eps, n_random=2000, n_starts=40, steps=80, seed=0):
    """Independent probes of the ball: random points, random corners, and targeted signed-gradient
    ascent of logit_t - max_k logit_k from x0 and random starts. Returns the probed points (P, d)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.maximum(x0 - eps, 0.0), np.minimum(x0 + eps, 1.0)
    pts = [lo + rng.random((n_random, x0.size)) * (hi - lo), np.where(rng.random((n_random, x0.size)) < 0.5, lo, hi)]
    z = np.vstack([x0, lo + rng.random((n_starts, x0.size)) * (hi - lo)])
    C = net.n_classes
    for i in range(steps):
        lg = net(z)
        comp = np.where(np.arange(C) == t, -np.inf, lg).argmax(axis=1)
        g = np.zeros((len(z), C))
        g[:, t] += 1.0
        g[np.arange(len(z)), comp] -= 1.0
        z = np.clip(z + (hi - lo) / 3 * (1 - i / steps) * np.sign(input_gradient(net, z, g)), lo, hi)
        pts.append(z.copy())
    return np.vstack(pts)


def _shrink(net, x0, X, t):
    """For each winning row of X, the smallest step x0 + a (x - x0), a on a grid, that still wins."""
    out = []
    for x in X:
        a = np.arange(1, 129) / 128
        cand = x0 + a[:, None] * (x - x0)
        win = _target_margin(net, cand, t) > 0
        out.append(cand[int(np.argmax(win))])
    return np.array(out)


@pytest.fixture(scope="module")
def seed():
    m = load_model("seed")
    return m, model_split(m)


def _image(seed, label):
    """The representative image counterfactual_pairs uses for ``label``."""
    m, s = seed
    return representative_image(m.network, s.x_test, s.y_test, label)


@pytest.mark.parametrize("label, target, eps", [(4, 9, 0.02), (1, 0, 0.05), (3, 5, 0.3)])
def test_reached_counterfactual_is_in_the_ball_and_bracketed(seed, label, target, eps):
    """A reachable target: the result lies in the ball ∩ [0, 1], "achieved" means the forward pass
    predicts the target, and the safe L1 lower bound is <= the L1 of the result, of the LP point, and of
    every concrete counterfactual an independent targeted search finds (shrunk towards x0)."""
    m, s = seed
    net = m.network
    i = _image(seed, label)
    x0 = s.x_test[i]
    r = counterfactual(m, x0, label, target, eps=eps)
    assert r.relaxed == "reached" and r.concrete == "achieved"
    assert r.result is not None and np.all(np.abs(r.result - x0) <= eps + 1e-12)
    assert np.all((r.result >= 0) & (r.result <= 1)) and np.all(np.abs(r.lp_input - x0) <= eps + 1e-12)
    assert net.predict(r.result[None])[0] == target and _target_margin(net, r.result, target)[0] > 0
    np.testing.assert_allclose(r.logits_after, net(r.result[None])[0])
    assert r.l1 == pytest.approx(np.abs(r.result - x0).sum())
    assert r.l1_lower_bound <= r.l1
    assert r.l1_lower_bound_lp <= r.lp_l1 + 1e-7   # the LP point lies in the relaxation, not always a real change
    P = _search(net, x0, target, eps, n_random=500, n_starts=20, steps=60)
    win = P[_target_margin(net, P, target) > 0]
    if len(win):
        small = _shrink(net, x0, win[:: max(1, len(win) // 200)], target)
        assert np.all(np.abs(small - x0).sum(axis=1) >= r.l1_lower_bound)
    assert r.max_margin_upper >= _target_margin(net, P, target).max() - 1e-9


def test_positive_lower_bound_is_informative(seed):
    """At a small radius the relaxation proves a nonzero minimum change (4 -> 9 at eps = 0.02), and the
    concrete counterfactual sits above it."""
    m, s = seed
    i = _image(seed, 4)
    r = counterfactual(m, s.x_test[i], 4, 9, eps=0.02)
    assert r.l1_lower_bound > 0.0
    assert r.l1_lower_bound <= r.l1


def test_tightened_bounds_stay_below_every_real_counterfactual(seed):
    """At the lens's defaults (the network's most frequent confusions, eps 0.03) the tightened proven
    L1 bound is at least the LP's own bound and at most the L1 of the reported counterfactual and of
    every concrete counterfactual an independent targeted search finds (shrunk towards x0)."""
    from polylens.lenses.discover.lenses import CounterfactualsOptions

    m, s = seed
    net = m.network
    o = CounterfactualsOptions()
    cfs = counterfactual_pairs(m, s.x_test, s.y_test, instructive_pairs(net, s.x_test, s.y_test, n=2),
                               eps=o.eps, tighten_nodes=16)
    assert any(r.l1_lower_bound > 0 for r in cfs.results), "no pair has an informative bound at the defaults"
    for idx, (a, b), r in zip(cfs.indices, cfs.pairs, cfs.results):
        assert r.l1_lower_bound >= r.l1_lower_bound_lp - 1e-12
        if r.result is not None:
            assert r.l1_lower_bound <= r.l1
        x0 = s.x_test[idx]
        P = _search(net, x0, b, o.eps, n_random=300, n_starts=10, steps=40)
        win = P[_target_margin(net, P, b) > 0]
        if len(win):
            small = _shrink(net, x0, win[:: max(1, len(win) // 100)], b)
            assert np.all(np.abs(small - x0).sum(axis=1) >= r.l1_lower_bound - 1e-9)


@pytest.mark.parametrize("label, target, eps", [(0, 1, 0.02), (1, 0, 0.02), (0, 1, 0.05)])
def test_unreachable_target_is_never_reached(seed, label, target, eps):
    """Soundness: when relaxed == "unreachable", no random point, corner, targeted-gradient point or
    PGD attack point of the ball makes the target win, and all their real margins for the target stay
    below the rigorous max-margin bound (which is below 0)."""
    m, s = seed
    net = m.network
    i = _image(seed, label)
    x0 = s.x_test[i]
    r = counterfactual(m, x0, label, target, eps=eps)
    assert r.relaxed == "unreachable" and r.concrete == "not achieved"
    assert r.result is None and r.lp_input is None and r.l1_lower_bound == np.inf and r.max_margin_upper < 0
    P = _search(net, x0, target, eps)
    xl, xu = input_box(x0[None], eps)
    att = pgd_attack(net, x0[None], np.array([label]), xl, xu, steps=60, restarts=4, targeted=True)
    P = np.vstack([P, att.x])
    mg = _target_margin(net, P, target)
    assert not np.any(net.predict(P) == target)
    assert np.all(mg <= r.max_margin_upper + 1e-9)


def test_statuses_are_never_conflated(seed):
    """Across pairs and radii: unreachable implies not achieved with no result; achieved implies a
    result the network classifies as the target; not achieved while reached keeps the LP point but no
    result, and found_by says "failed"."""
    m, s = seed
    net = m.network
    seen = set()
    for eps in (0.02, 0.1, 0.3):
        cs = counterfactual_pairs(m, pairs=[(4, 9), (7, 9), (0, 1)], eps=eps)
        for r in cs.results:
            seen.add((r.relaxed, r.concrete))
            assert r.relaxed in ("reached", "unreachable") and r.concrete in ("achieved", "not achieved")
            if r.relaxed == "unreachable":
                assert r.concrete == "not achieved" and r.found_by == "unreachable" and r.result is None
            elif r.concrete == "achieved":
                assert net.predict(r.result[None])[0] == r.target and r.found_by != "failed"
                assert 0 < r.shrink <= 1
                assert r.l1 == pytest.approx(min(r.candidates.values()))
                assert r.lp_point_achieved == (f"lp@eps={r.eps:g}" in r.candidates)
            else:
                assert r.result is None and r.lp_input is not None and r.found_by == "failed"
            json.dumps(r.to_dict(), allow_nan=False)
    assert seen == {("unreachable", "not achieved"), ("reached", "achieved"), ("reached", "not achieved")}


def test_margin_makes_the_lp_point_win_by_the_margin_on_a_linear_network():
    """On an identity-activation network the polytope is exact: the LP's input reaches the requested
    margin, its L1 equals the safe bound up to tolerance, the concrete result keeps the margin with an L1
    between the bound and (nearly) the LP's, and an impossible margin is reported unreachable."""
    net = random_network([4, 3, 3], "identity", seed=5)
    x0 = np.full(4, 0.5)
    lab = int(net.predict(x0[None])[0])
    P = np.random.default_rng(0).random((2000, 4))
    best = {k: _target_margin(net, P, k).max() for k in range(3) if k != lab}
    t = max(best, key=best.get)  # a class that wins somewhere in [0, 1]^4 (= the ball) by a clear margin
    assert best[t] > 0.2
    r = counterfactual(net, x0, lab, t, eps=0.5, margin=0.1)
    assert r.relaxed == "reached" and r.concrete == "achieved"
    assert _target_margin(net, r.lp_input, t)[0] >= 0.1 - 1e-7
    assert r.lp_l1 == pytest.approx(r.l1_lower_bound, abs=1e-6)
    assert _target_margin(net, r.result, t)[0] >= 0.1  # achieved means: with the requested margin
    assert r.l1_lower_bound <= r.l1 <= r.lp_l1 + 1e-3
    big = counterfactual(net, x0, lab, t, eps=0.5, margin=1e6)
    assert big.relaxed == "unreachable"


def test_instructive_pairs_come_from_the_confusion_matrix(seed):
    """The first suggested pair is the most frequent confusion of the test split, pairs are distinct
    off-diagonal entries, and without data the classic pairs are suggested."""
    m, s = seed
    pairs = instructive_pairs(m, n=5)
    conf = np.zeros((10, 10), int)
    np.add.at(conf, (s.y_test, m.network.predict(s.x_test)), 1)
    np.fill_diagonal(conf, 0)
    assert conf[pairs[0]] == conf.max()
    assert len(set(pairs)) == 5 and all(a != b for a, b in pairs)
    assert [conf[p] for p in pairs] == sorted([conf[p] for p in pairs], reverse=True)
    assert instructive_pairs(m.network) == CLASSIC_PAIRS[:4]
    cs = counterfactual_pairs(m, eps=0.02)
    assert cs.pairs == instructive_pairs(m) and len(cs.results) == 4
    for (a, _), i in zip(cs.pairs, cs.indices):
        assert s.y_test[i] == a and m.network.predict(s.x_test[i][None])[0] == a
    assert "<table>" in cs._repr_html_()


def test_bad_parameters(seed):
    """A target equal to the label, a negative margin and a batch of images are refused."""
    m, s = seed
    with pytest.raises(ParameterError, match="'target' parameter of counterfactual must differ"):
        counterfactual(m, s.x_test[0], 3, 3)
    with pytest.raises(ParameterError, match="'margin'"):
        counterfactual(m, s.x_test[0], 3, 4, margin=-0.5)
    with pytest.raises(ParameterError, match="one image"):
        counterfactual(m, s.x_test[:2], 3, 4)
    with pytest.raises(ParameterError, match="pairs"):
        counterfactual_pairs(m, s.x_test, s.y_test, pairs=[(1, 2, 3)])
