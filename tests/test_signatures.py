"""Constraint signatures: the recorded tight pixels really sit at their box bounds in the LP solution
(binding ones in an independent re-solve too), frequencies are fractions of the right counts, runs
are reproducible, the variants differ, the safe bound brackets the real value, the nearest-mean
distinctiveness matches a brute-force classifier, and the zero-width rule counts nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polylens.lenses.discover.signatures import nearest_mean, signatures
from polylens.bounds import BoundMethod, compute_bounds, crown_ibp_bounds, input_box
from polylens.errors import ParameterError
from polylens.lp import LPSolver, Role, Sense, build_polytope
from polylens.nn.model import load_model, model_split
from polylens.relax.envelopes import Pair

from conftest import random_network

PER_DIGIT = 4


@pytest.fixture(scope="module")
def seed():
    m = load_model("seed")
    return m, model_split(m)


@pytest.fixture(scope="module")
def result(seed):
    m, s = seed
    return signatures(m, s.x_test, s.y_test, eps=0.02, max_per_digit=PER_DIGIT, images=s.images_test)


def test_tight_pixels_sit_at_their_bounds(seed, result):
    """Every pixel recorded at lower (upper) equals xl (xu) in the LP point the result reports; in an
    independent single-image re-solve the optimum is the same and every binding pixel (nonzero reduced
    cost: at that bound in every optimum) is at its bound again."""
    m, s = seed
    net = m.network
    xl, xu = input_box(s.x_test[result.image_index], 0.02)
    st = result.pixel_state
    assert np.all(np.abs(result.lp_input - xl)[st == -1] <= 1e-7)
    assert np.all(np.abs(result.lp_input - xu)[st == 1] <= 1e-7)
    assert np.all((np.abs(result.lp_input - xl) > 1e-7)[st == 1])
    assert (st != 0).mean() > 0.5  # the optimum is a vertex: most pixels sit at a bound

    for i in (0, len(result.image_index) // 2, len(result.image_index) - 1):
        row = result.image_index[i]
        d = int(result.image_digit[i])
        bl, bu = input_box(s.x_test[row][None], 0.02)
        b = compute_bounds(net, bl, bu, BoundMethod.CROWN).intersect(compute_bounds(net, bl, bu, BoundMethod.IBP))
        assert all(np.array_equal(p, q) for p, q in zip(b.lower, crown_ibp_bounds(net, bl, bu).lower))
        poly = build_polytope(net, bl[0], bu[0], [(lo[0], hi[0]) for lo, hi in zip(b.lower, b.upper)])
        sol = LPSolver(poly).solve(poly.cost({poly.handle(Role.LOGIT): np.eye(10)[d]}), Sense.MAX)
        assert sol.objective == pytest.approx(result.lp_value[i], abs=1e-7)
        x = sol.x[poly.inputs]
        bind = result.pixel_binding[i]
        assert np.all(np.abs(x - bl[0])[bind & (st[i] == -1)] <= 1e-7)
        assert np.all(np.abs(x - bu[0])[bind & (st[i] == 1)] <= 1e-7)
        assert bind.sum() > 0


def test_frequencies_are_fractions_and_counts_add_up(seed, result):
    """Frequencies lie in [0, 1] and equal the per-image means; per digit, solved + failed images are
    the first PER_DIGIT correctly classified images of that digit."""
    m, s = seed
    correct = m.network.predict(s.x_test) == s.y_test
    for j, d in enumerate(result.digits):
        assert result.n_images[j] + result.n_failed[j] == min(PER_DIGIT, int(np.sum(correct & (s.y_test == d))))
        rows = result.image_digit == d
        assert rows.sum() == result.n_images[j]
        np.testing.assert_allclose(result.pixel_lower_freq[j], (result.pixel_state[rows] == -1).mean(axis=0))
        np.testing.assert_allclose(result.pixel_upper_freq[j], (result.pixel_state[rows] == 1).mean(axis=0))
        for c, f in zip(result.cut_tight, result.cut_tight_freq):
            np.testing.assert_allclose(f[j], c[rows].mean(axis=0))
    freqs = [result.pixel_lower_freq, result.pixel_upper_freq, result.pixel_lower_binding_freq,
             result.pixel_upper_binding_freq, *result.cut_tight_freq, *result.cut_index_tight_freq,
             *result.pre_bound_freq]
    for f in freqs:
        assert np.all((f >= 0) & (f <= 1))
    assert np.all(result.pixel_lower_freq + result.pixel_upper_freq <= 1 + 1e-12)
    assert np.all(result.pixel_lower_binding_freq <= result.pixel_lower_freq)
    # A side is tight when one of its cuts is: the side frequency is at least each cut's frequency.
    for f, fi in zip(result.cut_tight_freq, result.cut_index_tight_freq):
        assert np.all(fi <= f[..., None] + 1e-12)
    assert np.all(result.pixel_lower_raw_count >= np.round(result.pixel_lower_freq * result.n_images[:, None]))
    assert result.mean_image.shape == (10, 28, 28) and np.all((result.mean_image >= 0) & (result.mean_image <= 1))
    assert result.signature.shape == (result.n_images.sum(), len(result.signature_names))


def test_two_runs_are_identical(seed, result):
    """Reproducibility: the same call twice gives bit-identical arrays (deterministic simplex, fixed rule)."""
    m, s = seed
    again = signatures(m, s.x_test, s.y_test, eps=0.02, max_per_digit=PER_DIGIT, images=s.images_test)
    a, b = result.to_dict(), again.to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert np.array_equal(result.lp_input, again.lp_input)


@pytest.mark.parametrize("objective, sense", [("margin", "max"), ("logit", "min"), ("margin", "min")])
def test_variants_run_differ_and_bracket_the_real_value(seed, result, objective, sense):
    """The margin and min variants run, give other tight sets than max-logit, and their safe bound
    brackets the real network's value of the objective at the LP's input (a feasible point)."""
    m, s = seed
    r = signatures(m, s.x_test, s.y_test, eps=0.02, max_per_digit=PER_DIGIT, objective=objective, sense=sense)
    assert np.array_equal(r.image_index, result.image_index)
    assert not np.array_equal(r.signature, result.signature)
    if sense == "max":
        assert np.all(r.safe_bound >= r.real_value - 1e-9)
        assert np.all(r.safe_bound >= r.lp_value - 1e-7)
    else:
        assert np.all(r.safe_bound <= r.real_value + 1e-9)
    if objective == "margin" and sense == "min":
        assert np.all((r.competitor >= 0) & (r.competitor != r.image_digit))
    else:
        assert np.all(r.competitor == -1)
    if objective == "margin" and sense == "max":
        # The real margin at every image's own point is feasible, so the LP max is at least it.
        lg = m.network(s.x_test[r.image_index])
        own = lg[np.arange(len(lg)), r.image_digit]
        lg[np.arange(len(lg)), r.image_digit] = -np.inf
        assert np.all(r.safe_bound >= own - lg.max(axis=1) - 1e-9)


def test_nearest_mean_matches_brute_force():
    """The vectorised leave-one-out nearest-mean classifier equals an explicit loop (squared
    Euclidean, own mean without the row, ties to the first digit in order)."""
    rng = np.random.default_rng(3)
    S = (rng.random((60, 12)) < 0.4).astype(float)
    labels = rng.integers(0, 4, 60)
    labels[:2] = 5  # digit 5 has two rows, digit 6 none
    digits = (5, 0, 1, 2, 3, 6)
    got = nearest_mean(S, labels, digits)
    for i in range(len(S)):
        dist = []
        for d in digits:
            rows = np.flatnonzero((labels == d) & (np.arange(len(S)) != i))
            dist.append(np.inf if rows.size == 0 else float(((S[i] - S[rows].mean(axis=0)) ** 2).sum()))
        assert got[i] == digits[int(np.argmin(dist))]


def test_distinctiveness_is_consistent(result):
    """The confusion matrix counts every evaluated image once; accuracy and per-digit rates follow from it."""
    conf = result.distinct_confusion
    ev = result.nearest_mean >= 0
    assert conf.sum() == ev.sum()
    assert result.distinct_accuracy == pytest.approx(np.trace(conf) / conf.sum())
    assert result.distinct_accuracy == pytest.approx(np.mean(result.nearest_mean[ev] == result.image_digit[ev]))
    np.testing.assert_allclose(result.distinct_per_digit, np.diag(conf) / conf.sum(axis=1))


def test_zero_width_boxes_count_nowhere_but_in_the_raw_counts(seed):
    """With eps = 0 every box is a point: no pixel counts at lower or upper (the LP could not move it),
    while the raw position counts put every pixel at both ends."""
    m, s = seed
    r = signatures(m, s.x_test, s.y_test, eps=0.0, digits=[1, 7], max_per_digit=3)
    assert np.all(r.pixel_state == 0) and not r.pixel_binding.any()
    assert np.all(r.pixel_lower_raw_count == r.n_images[:, None])
    assert np.all(r.pixel_upper_raw_count == r.n_images[:, None])
    assert np.all(r.pixel_lower_freq == 0)


def test_random_network_other_activation_and_json():
    """A small random relu network with 4 classes: shapes follow the widths, the PAIR envelope has one
    cut index, only_correct=False keeps every image, and to_dict is strict JSON."""
    net = random_network([6, 5, 4, 4], "relu", seed=2)
    rng = np.random.default_rng(0)
    x = rng.random((30, 6))
    y = rng.integers(0, 4, 30)
    r = signatures(net, x, y, eps=0.05, only_correct=False, envelope=Pair(), digits=[0, 2, 3])
    assert r.n_images.sum() + r.n_failed.sum() == np.isin(y, [0, 2, 3]).sum()
    assert [c.shape[1:] for c in r.cut_tight] == [(5, 2), (4, 2)]
    assert [c.shape for c in r.cut_index_tight_freq] == [(3, 5, 2, 1), (3, 4, 2, 1)]
    assert r.mean_image.shape == (3, 6)
    text = json.dumps(r.to_dict(), allow_nan=False)
    assert json.loads(text)["digits"] == [0, 2, 3]
    assert "<table>" in r._repr_html_()


def test_bad_options_are_refused(seed):
    """Misspelt options and bad shapes raise ParameterError naming the parameter."""
    m, s = seed
    with pytest.raises(ParameterError, match="'objective' parameter of signatures"):
        signatures(m, s.x_test[:5], s.y_test[:5], objective="margn")
    with pytest.raises(ParameterError, match="'sense'"):
        signatures(m, s.x_test[:5], s.y_test[:5], sense="maximum")
    with pytest.raises(ParameterError, match="'digits'"):
        signatures(m, s.x_test[:5], s.y_test[:5], digits=[3, 3])
    with pytest.raises(ParameterError, match="'y'"):
        signatures(m, s.x_test[:5], s.y_test[:4])
    with pytest.raises(ParameterError, match="'images'"):
        signatures(m, s.x_test[:5], s.y_test[:5], images=s.images_test[:4])
