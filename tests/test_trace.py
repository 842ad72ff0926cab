"""Mechanistic traces: exact layer-wise, neuron-wise, edge-wise and path-wise decompositions of logits,
and the digit formulas built from them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import random_network
from polylens.lenses.discover.trace import STRONG_SHARE, WEAK_SHARE, digit_formulas, trace
from polylens.errors import ParameterError
from polylens.nn import ActKind, Network
from polylens.nn.model import load_model, model_split

TOL = 1e-10


@pytest.fixture(scope="module")
def seed():
    m = load_model("seed")
    return m, model_split(m)


def _check_trace(net: Network, x: np.ndarray) -> None:
    """Every exactness identity of one trace, for every logit."""
    t = trace(net, x)
    fp = net.forward(x)
    H = net.n_hidden_layers
    np.testing.assert_allclose(t.logits, fp.logits[0], rtol=0, atol=0)
    # Layer-wise: weight x activation summed with the bias gives each pre-activation and each logit.
    for l in range(1, H + 2):
        want = fp.logits[0] if l == H + 1 else fp.pre[l - 1][0]
        assert np.abs(t.direct[l - 1].sum(axis=1) + t.bias[l - 1] - want).max() <= TOL
    # Gates: g * a + o reproduces the post-activation.
    for l in range(1, H + 1):
        assert np.abs(t.gate[l - 1] * t.pre[l - 1] + t.offset[l - 1] - t.post[l - 1]).max() <= TOL
    # Neuron-wise: at every layer (0 = pixels) the flows plus the later constants give the logits.
    for l in range(H + 1):
        assert np.abs(t.node_flow(l).sum(axis=1) + t.later_constants(l) - t.logits).max() <= TOL
    if H:
        # The last hidden layer's flows are the layer-wise contributions into the logits.
        assert np.abs(t.node_flow(H) - t.direct[-1]).max() <= TOL
    for k in range(net.n_classes):
        # Path-wise: all paths sum to the logit; aggregated over paths they give each layer's flows.
        p = t.paths(k)
        assert abs(p.total() - t.logits[k]) <= TOL
        for l in range(1, H + 1):
            assert np.abs(p.through(l) - t.node_flow(l)[k]).max() <= TOL
        if H:
            assert np.abs(p.through(H) - t.direct[-1][k]).max() <= TOL
        # Edges: flow is conserved through every hidden node.
        for l in range(1, H + 1):
            E_in = t.edge_flow(l, k)
            E_out = t.edge_flow(l + 1, k)
            assert np.abs(E_in.sum(axis=1) + t.constant_flow(l)[k] - t.node_flow(l)[k]).max() <= TOL
            assert np.abs(E_out.sum(axis=0) - t.node_flow(l)[k]).max() <= TOL
        assert np.abs(t.edge_flow(1, k).sum(axis=0) - t.node_flow(0)[k]).max() <= TOL


def test_contributions_sum_exactly_for_every_activation_kind(activation):
    """For random networks of every registered activation (two hidden layers, several inputs, some
    pre-activations exactly 0), layer-wise, neuron-wise, edge-wise and path-wise contributions sum to
    the logits to 1e-10, and aggregated paths equal the layer-wise contributions."""
    net = random_network((6, 5, 4, 3), activation, seed=7, scale=2.0)
    rng = np.random.default_rng(0)
    for x in rng.random((5, 6)):
        _check_trace(net, x)
    # A network whose first pre-activations are exactly 0 at x = 0: the gate is f'(0), sums stay exact.
    zero = Network.from_arrays([net.layers[0].W, net.layers[1].W, net.layers[2].W],
                               [np.zeros(5), net.layers[1].b, net.layers[2].b], activation)
    t = trace(zero, np.zeros(6))
    np.testing.assert_array_equal(t.pre[0], 0.0)
    np.testing.assert_allclose(t.gate[0], activation.derivative(np.zeros(5)), rtol=1e-12)
    _check_trace(zero, np.zeros(6))


def test_three_hidden_layers_and_no_hidden_layer():
    """The path and flow identities hold for a deeper network and for a purely affine one."""
    _check_trace(random_network((4, 3, 3, 2, 3), ActKind.GELU_TANH, seed=1, scale=2.0), np.full(4, 0.3))
    affine = Network.from_arrays([np.arange(6.0).reshape(2, 3)], [np.ones(2)], [])
    _check_trace(affine, np.array([0.1, 0.2, 0.3]))


def test_seed_traces_are_exact_on_test_images(seed):
    """On 30 test images of the seed network every decomposition identity holds to 1e-10."""
    m, s = seed
    for x in s.x_test[:30]:
        _check_trace(m.network, x)
    t = trace(m, s.x_test[0], target=4)
    assert t.target == 4 and t.names[0] == tuple(m.neuron_name(1, j) for j in range(3))


def test_flow_graph_is_consistent(seed):
    """The flow-figure data: pixels, hidden neurons and the logit as nodes; every edge's flow as in edge_flow;
    each hidden node's flow = incoming + own constant; the logit = incoming + output bias."""
    m, s = seed
    t = trace(m, s.x_test[3])
    g = t.flow()
    assert len(g.node_id) == 49 + 3 + 3 + 1 and len(g.edge_flow) == 49 * 3 + 3 * 3 + 3
    inc = np.bincount(g.edge_target, weights=g.edge_flow, minlength=len(g.node_id))
    out = np.bincount(g.edge_source, weights=g.edge_flow, minlength=len(g.node_id))
    hidden = g.node_layer == 1
    hidden |= g.node_layer == 2
    assert np.abs(inc[hidden] + g.node_constant[hidden] - g.node_flow[hidden]).max() <= TOL
    assert np.abs(out[g.node_layer < 3] - g.node_flow[g.node_layer < 3]).max() <= TOL
    assert abs(inc[-1] + g.node_constant[-1] - t.logits[t.target]) <= TOL
    d = g.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["nodes"][-1]["id"] == f"logit[{t.target}]"


def test_seed_formulas_for_every_digit(seed):
    """Ten formulas; each term's written sign (path weight sign x activation sign) matches the sign of its
    average contribution; contributions + constant = the mean logit exactly; strength classes follow the
    documented thresholds; the text shows exactly the non-weak terms; the averaged flow graph conserves flow."""
    m, s = seed
    F = digit_formulas(m, s.x_test, s.y_test)
    assert [f.digit for f in F] == list(range(10))
    logits = m.network(s.x_test)
    for f in F:
        mask = s.y_test == f.digit
        assert f.n_images == int(mask.sum())
        assert f.mean_logit == pytest.approx(logits[mask, f.digit].mean(), abs=1e-12)
        assert abs(sum(t.contribution for t in f.terms) + f.constant - f.mean_logit) <= TOL
        assert f.text.startswith(f"digit {f.digit} ~ ")
        big = max(abs(t.contribution) for t in f.terms)
        for t in f.terms:
            assert np.sign(t.path_weight) * np.sign(t.activation) == np.sign(t.contribution)
            assert t.sign == (1 if t.path_weight >= 0 else -1)
            assert t.path_weight * t.activation == pytest.approx(t.contribution, rel=1e-12)
            share = abs(t.contribution) / big
            want = "strong" if share >= STRONG_SHARE else "moderate" if share >= WEAK_SHARE else "weak"
            assert t.strength == want
            if want != "weak":
                mark = ("+" if t.activation >= 0 else "-") * (2 if want == "strong" else 1)
                assert t.mark == mark and f"({mark} {t.name})" in f.text
            else:
                assert f"{t.name})" not in f.text
        g = f.flow
        inc = np.bincount(g.edge_target, weights=g.edge_flow, minlength=len(g.node_id))
        assert abs(inc[-1] + g.node_constant[-1] - f.mean_logit) <= TOL
        hidden = (g.node_layer == 1) | (g.node_layer == 2)
        assert np.abs(inc[hidden] + g.node_constant[hidden] - g.node_flow[hidden]).max() <= TOL
        json.dumps(f.to_dict(), allow_nan=False)
    assert F._repr_html_().count("<tr>") == 11


def test_formulas_of_a_bare_network_use_keys():
    """A network without a card or an image grid gets formulas over its neuron keys, for the classes present."""
    net = random_network((6, 5, 4, 3), ActKind.TANH, seed=2)
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6)), np.repeat([0, 2], 20)
    F = digit_formulas(net, x, y, layer=2)
    assert [f.digit for f in F] == [0, 2]
    assert {t.key for t in F[0].terms} == {f"L2.n{j}" for j in range(4)} == {t.name for t in F[0].terms}
    for f in F:
        assert abs(sum(t.contribution for t in f.terms) + f.constant - f.mean_logit) <= TOL


def test_formulas_use_card_names_first(seed):
    """A name in the card (or passed explicitly) appears in the formulas instead of the suggestion."""
    m, s = seed
    named = m.with_neuron_names({"L1.n0": "Hook"})
    F = digit_formulas(named, s.x_test[:300], s.y_test[:300], names={"L1.n1": "Arch"})
    names = {t.key: t.name for t in F[0].terms}
    assert names["L1.n0"] == "Hook" and names["L1.n1"] == "Arch"


def test_trace_refuses_bad_input(seed):
    """Wrong input shapes, targets and path requests on huge networks fail with ParameterError."""
    m, s = seed
    with pytest.raises(ParameterError):
        trace(m, s.x_test[:2])
    with pytest.raises(ParameterError):
        trace(m, s.x_test[0], target=10)
    big = random_network((784, 100, 100, 10), ActKind.RELU)
    with pytest.raises(ParameterError, match="paths"):
        trace(big, np.zeros(784)).paths(0)
    with pytest.raises(ParameterError):
        digit_formulas(m, s.x_test[:10], s.y_test[:9])
