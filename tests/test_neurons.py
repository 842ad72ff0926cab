"""Neuron reports (LP-certified extreme inputs, top images, class profiles) and suggested names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ALL_ACTIVATIONS, random_network
from polylens.lenses.discover.naming import (ANTI, apply_names, name_model, score_map, suggest_names, templates)
from polylens.lenses.discover.neurons import neuron_report
from polylens.errors import ParameterError
from polylens.nn import ActKind, Network
from polylens.nn.activations import REGISTRY
from polylens.nn.model import load_model, model_split, save_card, save_model
from polylens.relax.envelopes import Hull


@pytest.fixture(scope="module")
def seed():
    m = load_model("seed")
    return m, model_split(m)


@pytest.fixture(scope="module")
def seed_report(seed):
    m, s = seed
    return neuron_report(m, s.x_test, s.y_test, s.images_test, top=8)


def _check_extrema(net, report, x, penalty):
    """The guarantee chain of every neuron: best test image <= refined point <= LP safe bound (max),
    reversed for min, with values recomputed by an independent forward pass."""
    fp = net.forward(x)
    dist = np.abs(x - report.mean_image).sum(axis=1)
    for p in report.neurons:
        z = fp.post[p.layer - 1][:, p.j]
        for e, sign in ((p.maximiser, 1.0), (p.minimiser, -1.0)):
            assert e.x.shape == (net.input_dim,) and e.x.min() >= 0.0 and e.x.max() <= 1.0
            real = float(net.forward(e.x).post[p.layer - 1][0, p.j])
            assert real == pytest.approx(e.value, abs=1e-12)
            obj = real - sign * penalty * float(np.abs(e.x - report.mean_image).sum())
            assert obj == pytest.approx(e.objective, abs=1e-9)
            test_obj = z - sign * penalty * dist
            if sign > 0:
                assert test_obj.max() <= e.objective <= e.safe_bound, (p.key, e.sense)
            else:
                assert test_obj.min() >= e.objective >= e.safe_bound, (p.key, e.sense)
            assert e.best_test_objective == pytest.approx(test_obj.max() if sign > 0 else test_obj.min(), abs=1e-12)


def test_seed_maximiser_beats_every_test_image_and_respects_the_lp_bound(seed, seed_report):
    """The LP maximiser of each neuron (refined on the real network) activates it at least as strongly as
    any of the 2000 test images and no more than the LP's rigorous upper bound; the minimiser likewise."""
    m, s = seed
    assert len(seed_report.neurons) == sum(m.network.hidden_widths)
    _check_extrema(m.network, seed_report, s.x_test, 0.0)


def test_seed_penalised_extrema_respect_the_same_chain(seed):
    """With the L1 pull towards the mean image the chain holds for the penalised objective."""
    m, s = seed
    r = neuron_report(m, s.x_test[:500], s.y_test[:500], penalty=0.3, top=4, steps=80)
    _check_extrema(m.network, r, s.x_test[:500], 0.3)
    # The penalty does pull: the penalised maximiser is closer to the mean than the unpenalised one.
    r0 = neuron_report(m, s.x_test[:500], s.y_test[:500], top=4, steps=80)
    d = lambda rep, p: np.abs(rep.neuron(p.layer, p.j).maximiser.x - rep.mean_image).sum()
    assert all(d(r, p) <= d(r0, p) + 1e-9 for p in r.neurons)


@pytest.mark.parametrize("act", ALL_ACTIVATIONS, ids=str)
def test_extrema_chain_for_every_activation_kind(act):
    """For random networks of every registered activation, the same chain holds (non-monotone kinds included)."""
    net = random_network((6, 5, 4, 3), act, seed=3, scale=2.0)
    rng = np.random.default_rng(1)
    x = rng.random((60, 6))
    y = rng.integers(0, 3, 60)
    r = neuron_report(net, x, y, top=3, steps=60, envelope=Hull(4))
    _check_extrema(net, r, x, 0.0)


def test_layer1_gelu_extrema_are_the_positive_vertex_and_the_gelu_minimum(seed_report):
    """Layer 1 of the seed: a(x) = w.x + b is affine, so z = gelu(a) is largest at the vertex x = 1[w > 0]
    (where a is largest, since gelu(U) > gelu(L) here) and smallest at gelu's argmin, which lies inside
    every layer-1 range: the minimiser reaches min gelu to 1e-9 although gelu is not monotone."""
    gelu = REGISTRY[ActKind.GELU]
    fmin = float(gelu.fn(np.array(gelu.argmin), 0.0))
    for p in seed_report.neurons:
        if p.layer != 1:
            continue
        w = p.map.ravel()
        L, U = p.pre_bounds
        assert L < gelu.argmin < U
        np.testing.assert_array_equal(p.maximiser.x, (w > 0).astype(float))
        assert p.maximiser.value == pytest.approx(float(gelu.fn(np.array(w[w > 0].sum() + p.bias), 0.0)), rel=1e-12)
        assert abs(p.minimiser.value - fmin) < 1e-9
        assert p.minimiser.safe_bound <= fmin


def test_top_images_histograms_and_class_statistics(seed, seed_report):
    """Top/bottom images are the true extremes in order; histograms cover every image of each class on shared
    edges; per-class means and stds match a direct computation."""
    m, s = seed
    fp = m.network.forward(s.x_test)
    for p in seed_report.neurons:
        z = fp.post[p.layer - 1][:, p.j]
        assert np.all(np.diff(p.top_values) <= 0) and np.all(np.diff(p.bottom_values) >= 0)
        np.testing.assert_array_equal(z[p.top_indices], p.top_values)
        assert p.top_values[0] == z.max() and p.bottom_values[0] == z.min()
        assert np.sort(z)[-8] == p.top_values[-1]
        np.testing.assert_array_equal(p.top_images, s.images_test[p.top_indices])
        np.testing.assert_array_equal(p.class_counts.sum(axis=1), np.bincount(s.y_test, minlength=10))
        assert p.bin_edges[0] == z.min() and p.bin_edges[-1] == z.max()
        for c in range(10):
            zc = z[s.y_test == c]
            assert p.class_mean[c] == pytest.approx(zc.mean(), abs=1e-12)
            assert p.class_std[c] == pytest.approx(zc.std(), abs=1e-9)
            counts, _ = np.histogram(zc, bins=p.bin_edges)
            np.testing.assert_array_equal(counts, p.class_counts[c])


def test_maps_are_weights_in_layer1_and_input_gradients_deeper(seed, seed_report):
    """Layer-1 maps are the weight rows on the 7x7 grid; deeper maps are d a_l[j] / dx at the mean image,
    checked against central finite differences."""
    m, s = seed
    net = m.network
    for p in seed_report.neurons:
        assert p.map.shape == (7, 7)
        if p.layer == 1:
            assert p.map_kind == "weights"
            np.testing.assert_array_equal(p.map.ravel(), net.layers[0].W[p.j])
        else:
            assert "gradient" in p.map_kind
            x0, h = seed_report.mean_image, 1e-6
            E = np.eye(49) * h
            fd = (net.forward(x0 + E).pre[p.layer - 1][:, p.j] - net.forward(x0 - E).pre[p.layer - 1][:, p.j]) / (2 * h)
            np.testing.assert_allclose(p.map.ravel(), fd, atol=1e-6)


def test_report_is_json_and_html(seed_report):
    """to_dict is JSON-able with no NaN, and the Jupyter table names every neuron."""
    text = json.dumps(seed_report.to_dict(), allow_nan=False)
    assert json.loads(text)["neurons"][0]["key"] == "L1.n0"
    h = seed_report._repr_html_()
    assert h.count("<tr>") == 1 + len(seed_report.neurons)


def test_bad_parameters_are_refused(seed):
    """Images outside [0, 1], negative penalties, mislabelled data and unknown envelopes fail with one clear error."""
    m, s = seed
    x, y = s.x_test[:20], s.y_test[:20]
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        neuron_report(m, x * 2.0 + 0.1, y)
    with pytest.raises(ParameterError, match="penalty"):
        neuron_report(m, x, y, penalty=-1.0)
    with pytest.raises(ParameterError, match="'y'"):
        neuron_report(m, x, y[:5])
    with pytest.raises(ParameterError, match="envelope"):
        neuron_report(m, x, y, envelope="tight")


# ---------------------------------------------------------------------------------------------
# Names


def _one_neuron(mask: np.ndarray) -> Network:
    d = mask.size
    return Network.from_arrays([mask.reshape(1, d), np.ones((2, 1))], [np.zeros(1), np.zeros(2)], "gelu",
                               input_shape=mask.shape)


def test_a_template_is_named_after_itself_and_its_negation_anti():
    """A weight map equal to a template scores ~1 on it and gets its name; the negated map gets "anti-" + name."""
    for t in templates((7, 7)):
        for sign, want in ((1.0, t.name), (-1.0, ANTI + t.name)):
            s = suggest_names(_one_neuron(sign * t.mask * 2.5 + 0.3))[0]
            assert s.name == want and s.score == pytest.approx(1.0, abs=1e-12) and s.sign == int(sign)
            assert s.runner_up is not None and s.runner_up[1] < 1.0 - 1e-6
            assert s.scores[t.name] == pytest.approx(sign, abs=1e-12)


def test_template_scores_are_correlations():
    """score_map is the Pearson correlation: invariant to offset and positive scale, flips sign under negation."""
    rng = np.random.default_rng(0)
    lib = templates((7, 7))
    wm = rng.normal(size=(7, 7))
    a, b, c = score_map(wm, lib), score_map(3.0 * wm + 1.0, lib), score_map(-wm, lib)
    for t in lib:
        assert a[t.name] == pytest.approx(np.corrcoef(wm.ravel(), t.mask.ravel())[0, 1], abs=1e-12)
        assert b[t.name] == pytest.approx(a[t.name], abs=1e-12) and c[t.name] == pytest.approx(-a[t.name], abs=1e-12)


def test_deeper_neurons_are_described_by_previous_names_strongest_first(seed):
    """A layer-2 name lists previous-layer names with the signs of their weights, strongest scaled term first."""
    m, s = seed
    sug = suggest_names(m, s.x_test)
    l1 = {g.j: g.name for g in sug if g.layer == 1}
    std1 = m.network.forward(s.x_test).post[0].std(axis=0)
    for g in sug:
        if g.layer != 2:
            continue
        e = m.network.layers[1].W[g.j] * std1
        i = int(np.argmax(np.abs(e)))
        first = g.name.split(" ")[0]
        assert first == f"{'+' if e[i] >= 0 else '-'}{l1[i]}"
        assert 0 < g.score <= 1 and g.sign == (1 if e[i] >= 0 else -1)


def test_names_round_trip_through_the_card(seed, tmp_path):
    """Suggested names land in the card under L{l}.n{j}, survive save_card / load_model, keep existing names
    unless overwrite, and deeper names are built from the kept names."""
    m, _ = seed
    m = m.with_neuron_names({k: "" for k in m.card.neuron_names})  # start unnamed (the bundled card has names)
    save_model(m, tmp_path / "m")
    kept = apply_names(m, {"L1.n0": "Hook"})
    named = name_model(kept)
    assert named.card.neuron_names["L1.n0"] == "Hook"
    assert set(named.card.neuron_names) == {f"L{l}.n{j}" for l in (1, 2) for j in range(3)}
    assert any("Hook" in named.card.neuron_names[f"L2.n{j}"] for j in range(3))
    save_card(named, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.card.neuron_names == named.card.neuron_names
    assert back.neuron_name(1, 0) == "Hook"
    over = name_model(kept, overwrite=True)
    assert over.card.neuron_names["L1.n0"] == suggest_names(m)[0].name


def test_naming_refuses_bad_input(seed):
    """Unknown neuron keys, data weighting without data and non-models fail with ParameterError."""
    m, _ = seed
    with pytest.raises(ParameterError):
        apply_names(m, {"L3.n0": "x"})
    with pytest.raises(ParameterError, match="weighting"):
        suggest_names(m, weighting="data")
    with pytest.raises(ParameterError, match="weighting"):
        suggest_names(m, weighting="colour")
    with pytest.raises(ParameterError):
        name_model(m.network)
