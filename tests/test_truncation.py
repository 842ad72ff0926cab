"""Truncation maps, their identities, the lift and the cones (TRUNCATION.md sections 1-3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from polylens.lenses.truncation.cones import (COLLAPSED, FIXED, cone_lemma, layer_cones, round_cone_angle,
                                              theta_n)
from polylens.lenses.truncation.lift import invertible_extension, iota, numerical_rank
from polylens.lenses.truncation.maps import (cumulative, identities, pinv, scale_invariance_residual, tau,
                                             trajectory)
from polylens.nn import Network
from polylens.nn.activations import ActKind, Activation

RELU, GELU = Activation(ActKind.RELU), Activation(ActKind.GELU)


def _net(widths, act, seed=0, rank_one=None):
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(size=(o, i)) / math.sqrt(i) for i, o in zip(widths, widths[1:])]
    bs = [rng.normal(size=o) * 0.5 for o in widths[1:]]
    if rank_one is not None:  # make layer `rank_one` (1-based) rank-deficient
        W = Ws[rank_one - 1]
        W[-1] = W[0] + W[1]
    return Network.from_arrays(Ws, bs, act)


def _x(n, d, seed=1):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("widths", [(6, 5, 4, 3, 7), (9, 9, 4, 10), (5, 3, 3, 2, 2, 4)])
def test_identities_hold_on_surjective_networks(act, widths):
    """Section 1 ([CE24] Prop. 3.2): with d_0 >= d_1 >= ... and surjective products, every
    cumulative identity and the output identity hold to 1e-10, for ReLU and for GELU; so do the
    projector facts of Lemma 3.3."""
    net = _net(widths, act)
    rows = identities(net, _x(300, widths[0]))
    assert [r.layer for r in rows] == list(range(1, len(widths)))
    for r in rows:
        assert r.holds and r.residual < 1e-10 and not r.lifted and r.reason == ""
        assert r.projector is None or r.projector < 1e-10


def test_layer_identity_needs_only_surjectivity():
    """Section 1: sigma(W x + b) = W tau_{W,b}(x) + b for any element-wise sigma when W W^+ = 1."""
    rng = np.random.default_rng(3)
    W, b, x = rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=(50, 5))
    for act in (RELU, GELU, Activation(ActKind.TANH)):
        assert np.max(np.abs(act(x @ W.T + b) - (tau(W, b, x, act) @ W.T + b))) < 1e-12


def test_widening_layer_fails_and_is_named():
    """Section 1: a layer wider than the one before breaks the identities from that layer on; the
    row names the widening layer."""
    net = _net((6, 3, 5, 2), "relu")
    rows = identities(net, _x(200, 6))
    assert rows[0].holds
    assert not rows[1].holds and "layer 2 widens" in rows[1].reason and rows[1].residual > 1e-3
    assert not rows[2].holds and "layer 2 widens" in rows[2].reason


def test_rank_deficient_layer_fails_and_is_named():
    """Section 1: a rank-deficient W_1 (so no product is surjective) fails, naming W_1; GELU too."""
    for act in ("relu", "gelu"):
        net = _net((6, 4, 3, 2), act, rank_one=1)
        rows = identities(net, _x(200, 6))
        assert not rows[0].holds and "W_1 is rank-deficient (rank 3 < 4)" in rows[0].reason


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_lift_restores_identities_on_a_widening_first_layer(act):
    """Section 2 ([Ewa25] Lemma 2.2): for d_0 < d_1 >= d_2 >= ..., lifting through iota(d_0, d_1) and
    an invertible extension W~_1 makes every identity hold again (lifted: true); without the lift
    they fail naming the widening first layer."""
    net = _net((2, 5, 4, 3), act, seed=5)
    x = _x(300, 2)
    rows = identities(net, x, lift=True)
    assert all(r.holds and r.lifted and r.residual < 1e-10 for r in rows)
    plain = identities(net, x, lift=False)
    assert not plain[0].holds and "layer 1 widens (2 -> 5)" in plain[0].reason
    assert not any(r.lifted for r in plain)


def test_lift_impossible_when_first_layer_not_injective():
    """Section 2: the lift needs W_1 injective; otherwise the reason says so."""
    rng = np.random.default_rng(2)
    W1 = rng.normal(size=(4, 3))
    W1[:, 2] = W1[:, 0] - W1[:, 1]
    net = Network.from_arrays([W1, rng.normal(size=(2, 4))], [rng.normal(size=4), np.zeros(2)], "relu")
    rows = identities(net, _x(100, 3))
    assert not rows[0].holds and "not injective" in rows[0].reason and not rows[0].lifted


def test_invertible_extension_and_iota():
    """Section 2: W = W~ iota(n, m) exactly, and W~ is invertible for an injective W."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(5, 2))
    Wt, ok = invertible_extension(W)
    assert ok and Wt.shape == (5, 5) and numerical_rank(Wt) == 5
    assert np.array_equal(Wt @ iota(2, 5), W)
    b, x = rng.normal(size=5), rng.normal(size=(40, 2))
    lhs = np.maximum(x @ W.T + b, 0)
    rhs = tau(Wt, b, x @ iota(2, 5).T) @ Wt.T + b
    assert np.max(np.abs(lhs - rhs)) < 1e-12


def test_scale_invariance_relu_and_its_failure_for_gelu():
    """[CE23] (2.66): tau_{cW,cb} = tau_{W,b} for ReLU and every c > 0; false for GELU."""
    rng = np.random.default_rng(4)
    W, b, x = rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=(100, 4))
    for c in (0.01, 0.5, 3.0, 1e3):
        assert scale_invariance_residual(W, b, x, c, RELU) < 1e-9
    assert scale_invariance_residual(W, b, x, 3.0, GELU) > 1e-2
    assert scale_invariance_residual(W, b, x, 0.5, GELU) > 1e-2


def _in_round_cone(rng, h, half, k):
    """k random vectors at angle < half from the unit vector h, of random lengths."""
    n = len(h)
    g = rng.normal(size=(k, n))
    g -= np.outer(g @ h, h)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    phi = rng.uniform(0, half * 0.999, size=k)
    r = rng.uniform(0.1, 5.0, size=k)
    return (np.cos(phi)[:, None] * h + np.sin(phi)[:, None] * g) * r[:, None]


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 8), theta_frac=st.floats(0.05, 0.97), seed=st.integers(0, 10_000), drop=st.integers(0, 2))
def test_cone_lemma_fixes_forward_and_collapses_backward(n, theta_frac, seed, drop):
    """Section 3 ([CE24] Lemma 3.4) on random cones: with (W, b) from the lemma, tau fixes p + C_theta[h]
    up to W^+ W and sends p + C_theta[-h] to p up to W^+ W, for theta below and above theta_n and
    for m < n."""
    rng = np.random.default_rng(seed)
    m = max(1, n - drop)
    p, h = rng.normal(size=n), rng.normal(size=n)
    h /= np.linalg.norm(h)
    theta = theta_frac * math.pi
    W, b = cone_lemma(p, h, theta, m)
    Pr = pinv(W) @ W
    fwd = p + _in_round_cone(rng, h, theta / 2, 40)
    bwd = p - _in_round_cone(rng, h, theta / 2, 40)
    assert np.min(fwd @ W.T + b) >= -1e-12 and np.max(bwd @ W.T + b) <= 1e-12
    assert np.max(np.abs(tau(W, b, fwd) - fwd @ Pr.T)) < 1e-9
    assert np.max(np.abs(tau(W, b, bwd) - Pr @ p)) < 1e-9
    # Outside the cone's angle the lemma promises nothing: a direction at theta/2 + margin leaves the
    # orthant for some directions when theta > theta_n (the cone is the widest the lambda allows).
    assert round_cone_angle(fwd - p, h).max() <= theta / 2


def test_theta_n_values():
    """Section 3: theta_2 = 90, theta_3 = 70.53, theta_10 = 36.87, theta_49 = 16.43, theta_784 = 4.09 degrees."""
    for n, deg in ((2, 90.0), (3, 70.53), (10, 36.87), (49, 16.43), (784, 4.09)):
        assert abs(math.degrees(theta_n(n)) - deg) < 0.01


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_cone_coordinates_are_preactivations(act):
    """Section 3: the cone coordinates of x^(tau,l-1) for map l equal the pre-activations of layer l,
    and for ReLU tau(x) = W^+ W p + sum_{a_i > 0} a_i v_i (fixed: a >= 0 maps to the projection,
    collapsed: a <= 0 maps to p)."""
    net = _net((7, 5, 4, 3), act, seed=9)
    x = _x(400, 7)
    fp = net.forward(x)
    cones = layer_cones(net, x)
    tr = trajectory(net, x)
    for cone in cones:
        assert np.max(np.abs(cone.coords - fp.pre[cone.layer - 1])) < 1e-10
        assert cone.relu == (act == "relu")
        if act == "relu":
            W = tr.params.W[cone.layer - 1]
            pred = cone.base + np.maximum(cone.coords, 0) @ cone.edges.T
            assert np.max(np.abs(tr.points[cone.layer] - pred)) < 1e-10
            fixed = cone.status == FIXED
            if fixed.any():
                proj = tr.points[cone.layer - 1][fixed] @ (pinv(W) @ W).T
                assert np.max(np.abs(tr.points[cone.layer][fixed] - proj)) < 1e-10
            coll = cone.status == COLLAPSED
            if coll.any():
                assert np.max(np.abs(tr.points[cone.layer][coll] - cone.base)) < 1e-10
    assert sum(cones[0].counts().values()) == 400


def test_cumulative_parameters():
    """Section 1 ([CE24] (3.4), (3.5)): W^(l) = W_l W^(l-1), b^(l) = W_l b^(l-1) + b_l."""
    net = _net((5, 4, 3, 2), "relu")
    c = cumulative(net)
    W1, W2, W3 = (l.W for l in net.layers)
    b1, b2, b3 = (l.b for l in net.layers)
    assert np.allclose(c.W[2], W3 @ W2 @ W1) and np.allclose(c.b[1], W2 @ b1 + b2)
    assert np.allclose(c.b[2], W3 @ (W2 @ b1 + b2) + b3)


def test_lens_on_the_seed_says_the_cone_picture_is_relu_only():
    """Sections 1 and 3 on the bundled GELU seed: every identity holds, and the result says that the cone
    picture does not apply (GELU); on a ReLU network it does."""
    from polylens.data.labelled import Data
    from polylens.lenses import get_lens
    from polylens.nn.model import Model, card_for_network, load_model

    lens = get_lens("truncation")
    seed = load_model("seed")
    data = Data.of_model(seed).head(80)
    r = lens.run(seed, data, lens.make_options({"sls": False, "toy": "none"}))
    d = r.to_dict()
    assert d["n"] == 80 and not d["cone_picture"] and "ReLU only" in d["note"]
    assert [row["layer"] for row in d["identities"]] == [1, 2, 3] and all(row["holds"] for row in d["identities"])
    net = _net((49, 8, 6, 10), "relu", seed=2)
    relu = Model(net, card_for_network(net))
    d = lens.run(relu, data, lens.make_options({"sls": False, "toy": "none"})).to_dict()
    assert d["cone_picture"] and d["note"] == "" and all(row["holds"] for row in d["identities"])
    assert sum(d["cones"][0]["counts"].values()) == 80
