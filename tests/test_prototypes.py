"""Prototypes: the real-network margin of every prototype is at least its start's (re-checked with a
fresh forward pass), prototypes stay inside the eps-ball ∩ [0, 1], the LP's safe bounds are above the
real objective at x0, at the prototype and at random points of the ball (a theorem), the start is the
best image of its digit, the reported source matches the point, and the sweep agrees with single runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polylens.lenses.discover.prototypes import prototype_sweep, prototypes
from polylens.errors import ParameterError
from polylens.nn.model import load_model, model_split

from conftest import random_network


def _margin(net, X, labels):
    lg = net(np.atleast_2d(X))
    idx = np.arange(len(lg))
    own = lg[idx, labels].copy()
    lg[idx, labels] = -np.inf
    return own - lg.max(axis=1)


@pytest.fixture(scope="module")
def seed():
    m = load_model("seed")
    return m, model_split(m)


@pytest.fixture(scope="module", params=[(0.1, 0.01), (0.3, 0.0), (0.05, 0.1)], ids=lambda p: f"eps{p[0]}-lam{p[1]}")
def run(request, seed):
    m, s = seed
    eps, lam = request.param
    return prototypes(m, s.x_test, s.y_test, eps=eps, lam=lam)


def test_prototype_margin_is_at_least_the_start_margin(seed, run):
    """The guarantee of the issue: for every digit, a fresh forward pass gives the prototype a real
    margin >= the start image's (evaluated one image at a time, in another batch than the analysis)."""
    m, _ = seed
    labels = np.array(run.digits)
    for i, c in enumerate(run.digits):
        assert _margin(m.network, run.prototype[i], [c])[0] >= _margin(m.network, run.start[i], [c])[0]
    assert np.all(run.prototype_margin >= run.start_margin)
    np.testing.assert_allclose(run.prototype_margin, _margin(m.network, run.prototype, labels), atol=1e-12)


def test_prototype_stays_in_the_ball(run):
    """Every prototype (and every LP input) lies in the eps-ball around its start, within [0, 1]."""
    for X in (run.prototype, run.lp_input):
        assert np.all(np.abs(X - run.start) <= run.eps + 1e-12)
        assert np.all((X >= 0.0) & (X <= 1.0))
    np.testing.assert_array_equal(run.delta, run.prototype - run.start)
    assert np.array_equal(run.n_changed, run.changed.sum(axis=1))


def test_safe_bounds_are_above_every_real_value_in_the_ball(seed, run):
    """Theorem: the LP maximum's safe bound is >= the real objective margin - lam * L1 at any point of
    the ball (x0, the prototype, 3000 random points), and margin_upper >= the real margin anywhere."""
    m, _ = seed
    net = m.network
    rng = np.random.default_rng(7)
    for i, c in enumerate(run.digits):
        x0 = run.start[i]
        lo, hi = np.maximum(x0 - run.eps, 0), np.minimum(x0 + run.eps, 1)
        X = np.vstack([x0, run.prototype[i], lo + rng.random((300, x0.size)) * (hi - lo),
                       np.where(rng.random((300, x0.size)) < 0.5, lo, hi)])
        mg = _margin(net, X, np.full(len(X), c))
        obj = mg - run.lam * np.abs(X - x0).sum(axis=1)
        assert np.all(run.lp_safe_bound[i] >= obj - 1e-9)
        assert np.all(run.margin_upper[i] >= mg - 1e-9)
        assert run.margin_upper[i] >= run.lp_margin[i] - 1e-7  # the lam = 0 optimum is the largest LP margin


def test_start_is_the_best_image_and_source_matches(seed, run):
    """The start is the image of its digit with the largest real margin; "start" means the prototype
    is x0 itself, "lp" the LP's input, "line" a point strictly between, "ascent" a point refined on the
    real network (its objective is the real margin minus the L1 price)."""
    m, s = seed
    allm = _margin(m.network, s.x_test, s.y_test)
    for i, c in enumerate(run.digits):
        assert s.y_test[run.start_index[i]] == c
        assert allm[run.start_index[i]] == allm[s.y_test == c].max()
        np.testing.assert_array_equal(run.start[i], s.x_test[run.start_index[i]])
        if run.source[i] == "start":
            np.testing.assert_array_equal(run.prototype[i], run.start[i])
            assert run.alpha[i] == 0.0
        elif run.source[i] == "lp":
            np.testing.assert_array_equal(run.prototype[i], run.lp_input[i])
            assert run.alpha[i] == 1.0
        elif run.source[i] == "ascent":
            # refined on the real network from the best point of the line: its objective is the real one
            assert 0.0 <= run.alpha[i] <= 1.0
            assert run.objective[i] == pytest.approx(run.prototype_margin[i] - run.lam * run.l1[i], abs=1e-9)
        else:
            assert run.source[i] == "line" and 0.0 < run.alpha[i] < 1.0
            np.testing.assert_allclose(run.prototype[i], run.start[i] + run.alpha[i] * (run.lp_input[i] - run.start[i]))
    assert json.loads(json.dumps(run.to_dict(), allow_nan=False))["digits"] == list(run.digits)


def test_sweep_agrees_with_single_runs_and_keeps_the_guarantee(seed):
    """At the first radius the sweep solves the same LPs as prototypes() at the same (eps, lam) (same safe
    bounds; the sweep re-solves warm from the previous price, so among tied LP optima it may start its
    refinement from another vertex and end a hair away); at larger radii (chained from the smaller one)
    their real objective is never below prototypes()'s; real margins never fall below the start margins;
    each radius's margin upper bound is above the real margins found at it."""
    m, s = seed
    eps, lams = [0.05, 0.2], [0.0, 0.05]
    sw = prototype_sweep(m, s.x_test, s.y_test, eps, lams, digits=[0, 4, 7])
    assert sw.real_margin.shape == (2, 2, 3) and sw.source.shape == (2, 2, 3)
    assert np.all(sw.real_margin >= sw.start_margin[None, None, :])
    first = prototypes(m, s.x_test, s.y_test, eps=0.05, lam=0.05, digits=[0, 4, 7])
    np.testing.assert_allclose(sw.lp_safe_bound[0, 1], first.lp_safe_bound, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sw.margin_upper[0], first.margin_upper, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sw.real_margin[0, 1] - 0.05 * sw.l1[0, 1], first.objective, rtol=1e-3, atol=1e-3)
    assert list(sw.source[0, 1]) == [str(v.value) for v in first.source]
    # At a larger radius the sweep also starts from the smaller radius's prototype: never worse.
    one = prototypes(m, s.x_test, s.y_test, eps=0.2, lam=0.05, digits=[0, 4, 7])
    assert np.all(sw.real_margin[1, 1] - 0.05 * sw.l1[1, 1] >= one.objective - 1e-9)
    assert np.all(sw.margin_upper >= sw.real_margin.max(axis=1) - 1e-9)
    assert json.loads(json.dumps(sw.to_dict(), allow_nan=False))["lam"] == lams


def test_defaults_move_most_digits_and_the_strip_keeps_the_guarantee(seed):
    """At the lens's defaults (eps 0.1, lam 0.01) most digits' prototypes differ from their start image
    (the refinement on the real network moves them), and along the strip up to the whole box every
    prototype's real margin lies between its start's margin and the proven bound of its ball."""
    from polylens.lenses.discover.lenses import PrototypesOptions

    m, s = seed
    o = PrototypesOptions()
    r = prototypes(m, s.x_test, s.y_test, eps=o.eps, lam=o.lam)
    moved = int(np.sum(r.n_changed > 0))
    assert moved >= 6, f"only {moved} of 10 prototypes differ from their start image"
    assert np.all(r.prototype_margin >= r.start_margin) and np.all(r.prototype_margin <= r.margin_upper + 1e-9)
    sw = prototype_sweep(m, s.x_test, s.y_test, (0.2, 1.0), (o.lam,))
    real = _margin(m.network, sw.prototype.reshape(-1, sw.prototype.shape[-1]),
                   np.tile(np.array(sw.digits), 2)).reshape(sw.real_margin.shape)
    np.testing.assert_allclose(real, sw.real_margin, atol=1e-12)
    assert np.all(sw.real_margin >= sw.start_margin[None, None, :])
    assert np.all(sw.real_margin[:, 0, :] <= sw.margin_upper + 1e-9)
    # the smaller ball's prototype lies in the larger ball: the larger ball's bound holds for it too
    assert np.all(sw.margin_upper[1] >= sw.real_margin[0, 0] - 1e-9)
    assert np.all(sw.prototype[1] >= 0) and np.all(sw.prototype[1] <= 1)


def test_random_network_prototypes():
    """A random tanh network (3 classes): the guarantee and the ball hold there too."""
    net = random_network([5, 8, 3], "tanh", seed=4, scale=2.0)
    rng = np.random.default_rng(1)
    x = rng.random((40, 5))
    y = rng.integers(0, 3, 40)
    r = prototypes(net, x, y, eps=0.2, lam=0.0)
    assert r.digits == (0, 1, 2)
    assert np.all(_margin(net, r.prototype, np.array(r.digits)) >= _margin(net, r.start, np.array(r.digits)))
    assert np.all(np.abs(r.prototype - r.start) <= 0.2 + 1e-12)
    assert "<table>" in r._repr_html_()


def test_bad_parameters(seed):
    """A digit without images, a negative price and an empty grid are refused with ParameterError."""
    m, s = seed
    with pytest.raises(ParameterError, match="no image of digit 3"):
        prototypes(m, s.x_test[s.y_test != 3], s.y_test[s.y_test != 3], digits=[3])
    with pytest.raises(ParameterError, match="'lam' parameter of prototypes"):
        prototypes(m, s.x_test, s.y_test, lam=-1)
    with pytest.raises(ParameterError, match="non-empty"):
        prototype_sweep(m, s.x_test, s.y_test, [], [0.1])
