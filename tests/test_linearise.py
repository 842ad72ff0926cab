"""The shared machinery under every lens, each piece tested once: the network at a point (secant gates,
local affine maps, vector-Jacobian products) against finite differences and the forward pass; margins;
the box search (never worse than its start, reproducible per row id); the parameter checks and their
one message template; neuron identities; digests; read-only arrays."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ALL_ACTIVATIONS, random_network
from polylens.arrays import frozen
from polylens.digest import digest
from polylens.errors import ParameterError
from polylens.nn import ActKind, Activation, Network, NeuronId, neuron_ids
from polylens.nn.linearise import input_gradient, linearise, neuron_values_and_gradients, pull_back, secant_gates
from polylens.nn.margins import margins
from polylens.nn.search import (AdaptiveSteps, MarginObjective, SignedSteps, box_search, row_seeded_points)
from polylens.validation import check_classes, check_input, check_inputs, check_labels, check_network


# ---------------------------------------------------------------------------------------------
# The network at a point


@pytest.mark.parametrize("kind", list(ActKind), ids=lambda k: k.value)
def test_gates_are_the_activation_gates_and_offsets_vanish_where_f0_is_0(kind):
    """The secant gate is the textbook gate for gating kinds (relu 1[a>0], gelu Phi, silu sigmoid, tanh
    tanh(a)/a) with a zero offset; sigmoid carries the explicit offset 1/2; g*a + o reproduces f."""
    from scipy.special import erf, expit

    act = Activation(kind, 0.1 if kind is ActKind.LEAKY_RELU else 0.0)
    a = np.linspace(-6, 6, 121)
    g, o = secant_gates(act, a)
    np.testing.assert_allclose(g * a + o, act(a), atol=1e-15)
    expected = {ActKind.RELU: (a > 0) * 1.0, ActKind.LEAKY_RELU: np.where(a >= 0, 1.0, 0.1),
                ActKind.GELU: 0.5 * (1 + erf(a / np.sqrt(2))), ActKind.SILU: expit(a), ActKind.IDENTITY: np.ones_like(a),
                ActKind.TANH: np.where(a == 0, 1.0, np.tanh(a) / np.where(a == 0, 1.0, a)),
                ActKind.GELU_TANH: 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3)))}
    if kind in expected:
        np.testing.assert_allclose(g, expected[kind], atol=1e-12)
    if kind is ActKind.SIGMOID:
        np.testing.assert_allclose(o, 0.5, atol=1e-12)
        assert np.all((g > 0) & (g <= 0.25 + 1e-12))
    else:
        assert np.abs(o).max() <= 1e-12


@pytest.mark.parametrize("act", ALL_ACTIVATIONS, ids=str)
def test_affine_maps_reproduce_every_layer_at_the_point(act):
    """For every activation, the local affine map (A, c) of the logits and of every hidden layer gives
    that layer's pre-activations at the point itself (batched over points): A x + c = a_l(x)."""
    net = random_network([5, 4, 3, 3], act, seed=1, scale=2.0)
    X = np.random.default_rng(0).random((7, 5))
    lin = linearise(net, X)
    for layer, want in ((1, lin.pre[0]), (2, lin.pre[1]), (None, lin.logits)):
        A, c = lin.affine_map(layer)
        assert A.shape == (7, want.shape[1], 5) and c.shape == want.shape
        np.testing.assert_allclose(np.einsum("nkd,nd->nk", A, X) + c, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_relu_affine_map_is_the_network_on_the_region(act):
    """For relu and leaky_relu the affine map at a point equals the network at every nearby input with
    the same activation pattern (the exact map of the region), and its rows are the input gradients."""
    net = random_network([4, 6, 5, 3], act, seed=3, scale=2.0)
    rng = np.random.default_rng(1)
    x0 = rng.random(4)
    lin = linearise(net, x0[None])
    A, c = lin.affine_map()
    near = x0 + rng.uniform(-1e-3, 1e-3, (300, 4))
    fp = net.forward(near)
    same = np.all([np.all((a >= 0) == (a0 >= 0), axis=1) for a, a0 in zip(fp.pre, lin.pre)], axis=0)
    assert same.sum() > 10
    np.testing.assert_allclose(near[same] @ A[0].T + c[0], fp.logits[same], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lin.gradient(np.eye(3)), A[0], rtol=1e-12, atol=1e-13)


def test_gradients_match_finite_differences():
    """Vector-Jacobian products of logits, pre- and post-activations (silu network) match central
    differences, and neuron_values_and_gradients agrees with them row by row."""
    net = random_network((5, 4, 3, 2), ActKind.SILU, seed=2)
    rng = np.random.default_rng(0)
    X = rng.random((6, 5))
    h = 1e-6
    E = np.eye(5) * h
    lin = linearise(net, X)
    cot = rng.normal(size=(6, 2))
    g = lin.gradient(cot)
    fd = np.stack([(np.sum(cot * (net(X + e) - net(X - e)), axis=1)) / (2 * h) for e in E], axis=1)
    np.testing.assert_allclose(g, fd, atol=1e-7)
    np.testing.assert_allclose(input_gradient(net, X, cot), g, rtol=0, atol=0)
    for layer in (1, 2):
        for post in (False, True):
            c = rng.normal(size=(6, net.hidden_widths[layer - 1]))
            val = (lambda P: net.forward(P).post[layer - 1]) if post else (lambda P: net.forward(P).pre[layer - 1])
            fd = np.stack([np.sum(c * (val(X + e) - val(X - e)), axis=1) / (2 * h) for e in E], axis=1)
            np.testing.assert_allclose(lin.gradient(c, layer, post=post), fd, atol=1e-7)
    layer, neuron = np.array([1, 1, 2, 2, 2, 1]), np.array([0, 3, 0, 1, 2, 2])
    v, gn = neuron_values_and_gradients(net, X, layer, neuron)
    for r in range(6):
        for i in range(5):
            vp, _ = neuron_values_and_gradients(net, (X[r] + E[i])[None], layer[r:r + 1], neuron[r:r + 1])
            vm, _ = neuron_values_and_gradients(net, (X[r] - E[i])[None], layer[r:r + 1], neuron[r:r + 1])
            assert gn[r, i] == pytest.approx((vp[0] - vm[0]) / (2 * h), abs=1e-7)


def test_pull_back_and_path_weights_follow_the_recursion():
    """pull_back applies y_{l-1} = (y_l * s_l) W_l with any slopes, keeps the cotangent's leading shape,
    and the path weights through the gates sum to the local affine map's rows."""
    net = random_network([3, 4, 2, 2], "gelu", seed=5)
    X = np.random.default_rng(2).random((4, 3))
    lin = linearise(net, X)
    s = [np.full((4, 4), 2.0), np.full((4, 2), 0.5)]
    y = np.ones((4, 5, 2))
    out = pull_back(net, s, y, 2)
    assert [o.shape for o in out] == [(4, 5, 3), (4, 5, 4), (4, 5, 2)]
    np.testing.assert_allclose(out[0][:, 0], ((np.ones((4, 2)) * 0.5) @ net.layers[1].W * 2.0) @ net.layers[0].W)
    D = lin.path_weights(np.broadcast_to(net.layers[-1].W, (4, 2, 2)).copy())
    np.testing.assert_allclose(D[0], lin.affine_map()[0], rtol=1e-12, atol=1e-14)
    with pytest.raises(ParameterError, match="'layer' parameter of pull_back"):
        pull_back(net, s, y, 3)


# ---------------------------------------------------------------------------------------------
# Margins and the box search


def test_margins_and_runner_up():
    """margins gives logit_y - max_{k != y} logit_k and the first rival on ties; negative exactly when
    another class is strictly ahead."""
    lg = np.array([[1.0, 3.0, 2.0], [2.0, 2.0, 0.0], [0.0, -1.0, 5.0]])
    m, r = margins(lg, np.array([1, 0, 0]))
    assert m.tolist() == [1.0, 0.0, -5.0] and r.tolist() == [2, 1, 2]


def test_signed_search_never_loses_and_finds_the_optimum_of_a_linear_objective():
    """Signed steps keep the best point ever evaluated (never worse than the start); on a linear
    network the margin's maximum over the box is a corner, which the search reaches; the adaptive
    schedule only accepts improvements."""
    net = Network.from_arrays([np.array([[1.0, -2.0, 0.5], [-1.0, 1.0, 0.0]])], [np.zeros(2)], [])
    starts = np.random.default_rng(0).random((5, 3))
    lo, hi = np.zeros(3), np.ones(3)
    obj = MarginObjective(net, np.zeros(5, np.int64), sign=1.0)
    r = box_search(obj, starts, lo, hi, steps=40, schedule=SignedSteps())
    assert np.all(r.value >= obj.value(starts) - 1e-15)
    np.testing.assert_allclose(r.x, np.tile([1.0, 0.0, 1.0], (5, 1)))
    np.testing.assert_allclose(r.value, obj.value(r.x))
    a = box_search(obj, starts, lo, hi, steps=40, schedule=AdaptiveSteps())
    assert np.all(a.value >= obj.value(starts)) and np.all((a.x >= 0) & (a.x <= 1))
    z = box_search(obj, starts, lo, hi, steps=0, schedule=SignedSteps())
    np.testing.assert_array_equal(z.x, starts)


def test_targeted_objective_pushes_the_rival_and_seeded_starts_depend_only_on_the_row_id():
    """A targeted margin objective ascends logit_rival - logit_label; random starts for row id i are
    the same whatever batch the row is in (what makes a resumed sweep reproduce an uninterrupted one)."""
    net = Network.from_arrays([np.eye(3)], [np.zeros(3)], [])
    obj = MarginObjective(net, np.array([0]), sign=-1.0, rivals=np.array([2]))
    _, g = obj.value_and_gradient(np.full((1, 3), 0.5))
    assert g.tolist() == [[-1.0, 0.0, 1.0]]
    lo, hi = np.zeros((3, 4)), np.ones((3, 4))
    a = row_seeded_points(lo, hi, 7, np.array([4, 9, 11]), 1)
    b = row_seeded_points(lo[:1], hi[:1], 7, np.array([9]), 1)
    np.testing.assert_array_equal(a[1], b[0])
    assert not np.array_equal(a[0], a[1])


# ---------------------------------------------------------------------------------------------
# Checks, identities, digests, arrays


def test_input_and_label_checks_use_the_one_template():
    """Inputs, labels, classes and networks are checked at the boundary with the message template
    "The 'x' parameter of f must be .... Got ... instead."; canonical forms come back."""
    assert check_inputs([0.5, 1.0], 2, "f").shape == (1, 2)
    assert check_input(np.array([2.0, -3.0]), 2, "f", unit_box=False).tolist() == [2.0, -3.0]
    assert check_labels(np.array([1.0, 3.0]), 2, 4, "f").dtype == np.int64
    assert check_classes(None, 3, "digits", "f") == (0, 1, 2) and check_classes(2, 3, "digits", "f") == (2,)
    cases = [(lambda: check_inputs(np.full((2, 3), 0.5), 2, "f"), "The 'x' parameter of f must be an array of shape (N, 2). Got shape (2, 3) instead."),
             (lambda: check_inputs([[0.5, 1.5]], 2, "f"), "The 'x' parameter of f must be an array with every value in [0, 1]. Got a value of 1.5 instead."),
             (lambda: check_inputs([[0.5, np.nan]], 2, "f", unit_box=False), "The 'x' parameter of f must be finite. Got a value of nan instead."),
             (lambda: check_inputs(np.zeros((1, 2)), 2, "f", min_rows=2), "The 'x' parameter of f must be an array of shape (N, 2) with N >= 2. Got shape (1, 2) instead."),
             (lambda: check_labels([0, 1], 3, 4, "f"), "The 'y' parameter of f must be one integer label per image (3). Got shape (2,), dtype int64 instead."),
             (lambda: check_labels([0.5], 1, 4, "f"), "The 'y' parameter of f must be one integer label per image (1). Got shape (1,), dtype float64 instead."),
             (lambda: check_labels([0, 7], 2, 4, "f"), "The 'y' parameter of f must be labels in [0, 3]. Got 7 instead."),
             (lambda: check_classes([1, 1], 3, "digits", "f"), "The 'digits' parameter of f must be a non-empty list of distinct classes. Got [1, 1] instead."),
             (lambda: check_network("seed", "f"), "The 'network' parameter of f must be a Network or a Model. Got type str instead.")]
    for call, message in cases:
        with pytest.raises(ParameterError) as e:
            call()
        assert str(e.value) == message


def test_neuron_ids_render_and_parse_one_way():
    """NeuronId renders as L{layer}.n{index}, parse reads exactly that form back, ids order by
    (layer, index), and malformed text or a neuron the network lacks is refused."""
    net = random_network([3, 2, 4, 2], "relu")
    ids = neuron_ids(net)
    assert [str(n) for n in ids] == ["L1.n0", "L1.n1", "L2.n0", "L2.n1", "L2.n2", "L2.n3"]
    assert all(NeuronId.parse(str(n)) == n for n in ids) and sorted(reversed(ids)) == list(ids)
    assert NeuronId(2, 3).check(net) == NeuronId(2, 3)
    for bad in ("L0.n1", "L1n2", "l1.n2", "L1.n-1", "L1.n²", "L1.n2.upper", ""):
        with pytest.raises(ParameterError, match="'neuron' parameter of NeuronId.parse"):
            NeuronId.parse(bad)
    with pytest.raises(ParameterError):
        NeuronId(0, 1)
    with pytest.raises(ParameterError, match="hidden neuron of the network"):
        NeuronId(1, 2).check(net)


def test_digest_covers_dtype_shape_and_bytes_and_frozen_copies():
    """digest differs for the same bytes in another shape or dtype and is stable; frozen returns a
    read-only copy that leaves the caller's array writable."""
    a = np.arange(6.0)
    assert digest(a.reshape(2, 3)) != digest(a.reshape(3, 2)) != digest(a.astype(np.float32))
    assert digest(a, a) == digest(a.copy(), a.copy()) and len(digest(a)) == 16
    f = frozen(a)
    assert not f.flags.writeable and a.flags.writeable and f is not a
    with pytest.raises(ValueError):
        f[0] = 1.0
