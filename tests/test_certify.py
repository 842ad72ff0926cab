"""Certification is sound: no 'verified' verdict is ever contradicted by a strong attack, by dense
sampling or by an exact MILP; every 'falsified' verdict carries an input that lies in the region and
really flips the prediction; the verified ladder and the LP's margin bounds respect the tightness
order; bad inputs are refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polylens.lenses.verify.attack import is_counterexample, pgd_attack
from polylens.lenses.verify.certify import CertifyOptions, Status, certify, lp_classifier
from polylens.bounds import BoundMethod, compute_bounds, input_box, margin_lower_bound
from polylens.errors import ParameterError
from polylens.lp import LPSolver, Sense, build_polytope
from polylens.lp.exact import build_milp
from polylens.relax.envelopes import Envelope
from polylens.tolerances import VERIFY_MARGIN

from conftest import ALL_ACTIVATIONS, random_network


def _data(net, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((n, net.input_dim))
    return x, net.predict(x)  # labels = the network's own predictions: every image starts correct


def _check_sound(net, x, y, eps, certs, sample_seed=0):
    xl, xu = input_box(x, eps)
    strong = pgd_attack(net, x, y, xl, xu, steps=60, restarts=4, seed=sample_seed)
    rng = np.random.default_rng(sample_seed)
    for i, c in enumerate(certs):
        if c.status is Status.VERIFIED:
            assert not strong.found[i], f"image {i} verified at eps={eps} but PGD broke it"
            pts = xl[i] + rng.random((400, x.shape[1])) * (xu[i] - xl[i])
            pts[:2] = [xl[i], xu[i]]
            assert not is_counterexample(net, pts, np.full(400, y[i]), xl[i], xu[i]).any()
            assert np.all(np.delete(c.margin_lower, y[i]) > VERIFY_MARGIN)
        elif c.status is Status.FALSIFIED:
            assert c.counterexample is not None
            assert is_counterexample(net, c.counterexample[None], np.array([y[i]]), xl[i:i + 1], xu[i:i + 1])[0]


@pytest.mark.parametrize("act", ALL_ACTIVATIONS, ids=str)
def test_verdicts_are_sound_for_every_activation(act):
    """For random 8-6-5-4 networks of every kind and radii from tiny to large, verified images survive a
    strong attack and dense sampling, and falsified images carry real counterexamples."""
    net = random_network([8, 6, 5, 4], act, seed=4, scale=1.5)
    x, y = _data(net, 24, seed=1)
    for eps in (0.0, 0.01, 0.05, 0.2):
        certs = certify(net, x, y, eps)
        _check_sound(net, x, y, eps, certs)
        if eps == 0.0:
            assert all(c.status is Status.VERIFIED for c in certs)


def test_verdicts_are_sound_property():
    """Hypothesis draws networks, radii, activations and envelopes: no verdict is ever wrong, every draw
    decides at least one of its images, and over the whole run at least two thirds of the verdicts are
    decided (so the test cannot pass by answering "unknown")."""
    decided: list[int] = []

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(seed=st.integers(0, 10_000), eps=st.floats(0.0, 0.3), act=st.sampled_from(ALL_ACTIVATIONS),
           mode=st.sampled_from(["hull", "pair"]))
    def draw(seed, eps, act, mode):
        net = random_network([5, 4, 4, 3], act, seed=seed, scale=2.0)
        x, y = _data(net, 6, seed=seed + 1)
        certs = certify(net, x, y, eps, options=CertifyOptions(envelope=Envelope.from_mode(mode, 4)))
        _check_sound(net, x, y, eps, certs, sample_seed=seed)
        n = sum(c.status is not Status.UNKNOWN for c in certs)
        assert n >= 1, f"every verdict unknown at eps={eps}"
        decided.append(n)

    draw()
    assert decided and sum(decided) >= (2 / 3) * 6 * len(decided), decided


def test_relu_verdicts_agree_with_exact_milp_and_ladder():
    """On small ReLU networks the exact MILP minimum margin decides robustness: a verified image has a
    positive exact minimum; an image whose exact minimum is clearly negative is never verified. The
    margin bounds follow IBP <= CROWN <= LP <= exact for every class."""
    net = random_network([6, 8, 8, 3], "relu", seed=21, scale=2.0)
    x, y = _data(net, 12, seed=2)
    for eps in (0.02, 0.08):
        certs = certify(net, x, y, eps)
        xl, xu = input_box(x, eps)
        ibp = margin_lower_bound(net, xl, xu, y, BoundMethod.IBP)
        crown_b = compute_bounds(net, xl, xu, BoundMethod.CROWN)
        crown = margin_lower_bound(net, xl, xu, y, BoundMethod.CROWN, bounds=crown_b)
        for i, c in enumerate(certs):
            pre = [crown_b.layer(i, l) for l in range(net.n_hidden_layers)]
            poly = build_polytope(net, xl[i], xu[i], pre)
            milp = build_milp(net, xl[i], xu[i], pre)
            lp_s, ex_s = LPSolver(poly), LPSolver(milp)
            exact_min = np.inf
            for k in range(3):
                if k == y[i]:
                    continue
                lp = lp_s.solve(poly.margin_cost(int(y[i]), k), Sense.MIN).safe_bound
                ex = ex_s.solve(milp.margin_cost(int(y[i]), k), Sense.MIN).objective
                assert ibp[i, k] <= crown[i, k] + 1e-7 <= lp + 2e-7 and lp <= ex + 1e-6
                exact_min = min(exact_min, ex)
            if c.status is Status.VERIFIED:
                assert exact_min > 0
            if exact_min < -1e-6:
                assert c.status is not Status.VERIFIED
            if c.status is Status.FALSIFIED:
                assert exact_min <= 1e-9


def test_seed_network_falsified_rows_carry_real_counterexamples():
    """On the bundled seed network, every falsified image (misclassified ones included) has a
    counterexample in its ball that the network misclassifies; verified ones survive a strong attack."""
    from polylens.nn.model import load_model, model_split

    m = load_model("seed")
    s = model_split(m)
    x, y = s.x_test[:60], s.y_test[:60]
    for eps in (0.0, 0.01, 0.03):
        certs = certify(m.network, x, y, eps)
        _check_sound(m.network, x, y, eps, certs)
        wrong = m.network.predict(x) != y
        for c, w in zip(certs, wrong):
            if w:
                assert c.status is Status.FALSIFIED and c.decided_by == "clean"


def test_lp_classifier_at_zero_radius_is_the_network():
    """At eps = 0 the polytope is a point, so the LP classifier predicts what the network predicts."""
    net = random_network([6, 5, 4], "gelu", seed=8)
    x, _ = _data(net, 15, seed=3)
    pred, margin = lp_classifier(net, x, 0.0)
    assert np.array_equal(pred, net.predict(x))


@pytest.mark.parametrize("bad", [
    dict(eps=-0.1), dict(eps=1.5), dict(eps=float("nan")), dict(x_shift=1.5), dict(label=10), dict(label=-1),
])
def test_bad_inputs_are_parameter_errors(bad):
    """eps outside [0, 1], an image outside [0, 1] and a label out of range are refused clearly."""
    net = random_network([4, 3, 10], "relu")
    x = np.full((1, 4), 0.5) + bad.get("x_shift", 0.0)
    y = np.array([bad.get("label", 0)])
    with pytest.raises(ParameterError) as e:
        certify(net, x, y, bad.get("eps", 0.1))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_onnx_models_trained_elsewhere_get_sound_verdicts(tmp_path, act):
    """A torch MLP trained briefly outside polylens, exported with torch.onnx.export and loaded from the .onnx
    file, gets sound verdicts: verified images survive a strong attack (and, for ReLU, the exact MILP agrees),
    falsified ones carry real counterexamples."""
    import torch

    from polylens.data import load_split
    from polylens.nn.model import load_model

    s = load_split()
    torch.manual_seed(0)
    A = torch.nn.GELU() if act == "gelu" else torch.nn.ReLU()
    mod = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(49, 16), A, torch.nn.Linear(16, 12),
                              type(A)(), torch.nn.Linear(12, 10))
    opt = torch.optim.Adam(mod.parameters(), lr=1e-2)
    X, Y = torch.tensor(s.x_train, dtype=torch.float32), torch.tensor(s.y_train)
    for step in range(150):
        i = torch.randint(0, len(X), (128,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(mod(X[i]), Y[i]).backward()
        opt.step()
    path = tmp_path / f"mlp_{act}.onnx"
    torch.onnx.export(mod.eval(), torch.zeros(1, 49), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    net = load_model(path).network
    x, y = s.x_test[:40], s.y_test[:40]
    for eps in (0.005, 0.02):
        certs = certify(net, x, y, eps)
        _check_sound(net, x, y, eps, certs)
        if act == "relu":
            xl, xu = input_box(x, eps)
            cb = compute_bounds(net, xl, xu, BoundMethod.CROWN)
            for i, c in enumerate(certs):
                if c.status is Status.VERIFIED:
                    milp = build_milp(net, xl[i], xu[i], [cb.layer(i, l) for l in range(net.n_hidden_layers)])
                    sol = LPSolver(milp)
                    for k in range(10):
                        if k != y[i]:
                            assert sol.solve(milp.margin_cost(int(y[i]), k), Sense.MIN).objective > 0
