"""Sequential linear separability by LP and the networks built from geometry (TRUNCATION.md section 4),
with `polylens construct` and the `polylens truncation` contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from polylens.data import toy
from polylens.lenses.truncation import construct as C
from polylens.lenses.truncation.maps import identities, trajectory
from polylens.lenses.truncation.sls import check_order, find_order
from polylens.nn.model import load_model


def brute_force_sls(x, y, order, nt=25, nphi=360):
    """Def. 5.1 by enumeration in 2-D: every p_j on a grid of the open segment, every hyperplane through
    it on a grid of angles (t on a uniform grid and a geometric one near 0), recursing over every feasible p_j (no use of the LP's monotonicity argument)."""
    classes = list(order)
    means = {c: x[y == c].mean(0) for c in classes}
    m = np.mean([means[c] for c in classes], axis=0)
    ts = np.concatenate([np.geomspace(1e-5, 0.5 / nt, 12, endpoint=False), (np.arange(nt) + 0.5) / nt])
    phi = np.arange(nphi) * 2 * np.pi / nphi
    N = np.stack([np.cos(phi), np.sin(phi)], 1)

    def rec(k, ps):
        if k == len(classes):
            return True
        Xj = x[y == classes[k]]
        rest = np.concatenate([x[y == d] for d in classes[k + 1:]] + [np.array(ps).reshape(-1, 2)])
        for t in ts:
            p = m + t * (means[classes[k]] - m)
            ok = ((Xj - p) @ N.T).max(0) < 0
            if len(rest):
                ok &= ((rest - p) @ N.T).min(0) > 0
            if ok.any() and rec(k + 1, ps + [p]):
                return True
        return False

    return rec(0, [])


def _blobs(seed, q=3, k=5, scale=0.12):
    rng = np.random.default_rng(seed)
    means = rng.uniform(0, 1, size=(q, 2))
    y = np.repeat(np.arange(q), k)
    return means[y] + rng.normal(scale=scale, size=(len(y), 2)), y, tuple(int(c) for c in rng.permutation(q))


def test_sls_decision_agrees_with_brute_force():
    """Section 4 (CE24 Def. 5.1): on 30 small random 3-class sets in the plane, the LP decision for a
    random order equals the brute-force enumeration of points and hyperplanes; both answers occur."""
    answers = []
    for seed in range(30):
        x, y, order = _blobs(seed)
        lp = check_order(x, y, order)
        assert lp.sls is not None, lp.reason
        assert lp.sls == brute_force_sls(x, y, order), (seed, lp.reason)
        answers.append(lp.sls)
    assert any(answers) and not all(answers)


def test_order_matters_and_search_finds_an_order():
    """Section 4: the order matters (some set is SLS in one order and not in another, as brute force also
    says), and the order search finds a working order exactly when brute force finds one."""
    import itertools

    seen_mixed = False
    for seed in range(30):
        x, y, _ = _blobs(seed)
        per = {o: brute_force_sls(x, y, o) for o in itertools.permutations(range(3))}
        if any(per.values()) and not all(per.values()):
            seen_mixed = True
            for o, v in per.items():
                assert check_order(x, y, o).sls == v
        found = find_order(x, y)
        assert found.sls == any(per.values()), (seed, found.reason)
        if found.sls:
            assert per[found.order]
    assert seen_mixed


def test_sls_certificate_is_what_def_5_1_asks():
    """Section 4: each p_j lies on the open segment from the barycentre of the means to mu_j, its
    hyperplane passes through p_j, X_j is strictly on one side, the later classes and earlier p_i on the other."""
    x, y = toy.sls_set(150, 3, 3, seed=1)
    r = find_order(x, y)
    assert r.sls
    m = np.mean([x[y == c].mean(0) for c in r.classes], axis=0)
    for j, s in enumerate(r.steps):
        mu = x[y == s.cls].mean(0)
        assert 0 < s.t < 1 and np.allclose(s.p, m + s.t * (mu - m), atol=1e-12)
        f = lambda v: v @ s.w + s.c  # noqa: E731
        assert abs(f(s.p)) < 1e-12
        assert f(x[y == s.cls]).max() < 0
        later = np.isin(y, list(r.order[j + 1:]))
        pos = np.concatenate([x[later], np.array([q.p for q in r.steps[:j]]).reshape(-1, 3)])
        assert pos.shape[0] == 0 or f(pos).min() > 0


def test_not_sls_and_budget():
    """Section 4: XOR and concentric rings are not SLS in any order (the search is exhaustive and says
    why); a budget too small leaves the answer undecided, saying so."""
    for name in ("xor", "rings", "spirals"):
        x, y = toy.make(name, 120)
        r = find_order(x, y)
        assert r.sls is False and r.exhaustive and "cannot come first" in r.reason
    x, y = toy.clusters(90, 3, 2)
    r = find_order(x, y, budget=2)
    assert r.sls is None and "budget" in r.reason


def _zero(c):
    assert c.loss < 1e-18 and c.max_error < 1e-8, (c.loss, c.max_error)


@pytest.mark.parametrize("q,dim,seed", [(2, 2, 0), (3, 3, 1), (2, 5, 3)])
def test_theorem_5_2_network_interpolates_sls_data(q, dim, seed):
    """Section 4 (CE24 Thm. 5.2): the Q+1-layer network built from the SLS certificate has zero squared
    loss on its data, (M + 1)(Q M + K) parameters, and after the Q maps class j sits at p_j."""
    x, y = toy.sls_set(150, q, dim, seed=seed)
    cert = find_order(x, y)
    c = C.sls_network(x, y, cert)
    _zero(c)
    M, K = dim, q
    assert c.network.widths == (M,) * (q + 1) + (K,)
    assert c.n_params == (M + 1) * (q * M + K) == c.formula_value
    end = trajectory(c.network, x).points[-1]
    for s in cert.steps:
        assert np.max(np.abs(end[y == s.cls] - s.p)) < 1e-9
    assert all(r.holds for r in identities(c.network, x))


def test_dependent_points_are_refused():
    """Section 4: the hypothesis hidden in Thm. 5.2's proof. Centred clusters have linearly dependent
    p_j (they sum to zero after weighting), and three classes in the plane cannot have independent p_j:
    both are refused, naming the hypothesis."""
    x, y = toy.clusters(120, 2, 2)
    x = x - x.mean(axis=0)
    with pytest.raises(C.ConstructionError, match="linearly dependent"):
        C.sls_network(x, y, find_order(x, y))
    x3, y3 = toy.clusters(150, 3, 2)
    with pytest.raises(C.ConstructionError, match="linearly dependent"):
        C.sls_network(x3, y3, find_order(x3, y3))


def test_clustered_network_parameter_count_is_independent_of_points():
    """Section 4 (CE24 Prop. 4.1, Cor. 4.2): on clustered data the network interpolates with Q (M + Q^2)
    weights, however many points there are; clusters too wide are refused."""
    counts = set()
    for n in (60, 600):
        x, y = toy.clusters(n, 3, 6, radius=0.05, seed=2)
        c = C.clustered_network(x, y)
        _zero(c)
        assert c.n_weights == 3 * (6 + 9) == c.formula_value
        counts.add(c.n_params)
    assert len(counts) == 1
    x, y = toy.clusters(120, 3, 3, radius=0.2, seed=2)
    with pytest.raises(C.ConstructionError, match="too wide"):
        C.clustered_network(x, y)


def test_simplex_network_on_concentric_rings():
    """Section 4 (Ewa25 Thm. 3.3): R^2 -> R^3 -> R^2 -> R^2 interpolates the disc inside the ring;
    its first map is lifted (d0 < d1) and its identity holds; XOR has no such simplex."""
    x, y = toy.rings(200, seed=4)
    c = C.simplex_network(x, y)
    _zero(c)
    assert c.network.architecture == "2-3-2-2" and c.n_params == c.formula_value == 23
    rows = identities(c.network, x)
    assert rows[0].holds and rows[0].lifted
    with pytest.raises(C.ConstructionError, match="No simplex"):
        C.simplex_network(*toy.xor(120))


def test_construct_command_contract(tmp_path):
    """`polylens construct DATA.npz --out DIR` writes a model whose logits on the training points are the
    one-hot labels; a failed hypothesis exits 2 with one line naming it."""
    x, y = toy.sls_set(100, 2, 2, seed=0)
    np.savez(tmp_path / "sls.npz", x=x, y=y)
    code, out, err = run_cli("construct", str(tmp_path / "sls.npz"), "--out", str(tmp_path / "m"), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["loss"] < 1e-18 and doc["formula_matches"] and doc["sls"]["sls"] is True
    model = load_model(tmp_path / "m")
    assert np.max(np.abs(model.network(x) - C.one_hot(y, 2))) < 1e-8
    code, out, err = run_cli("truncation", str(tmp_path / "m"), "--json", "--no-sls", "--toy", "none")
    assert code == 0, err
    rows = json.loads(out)["identities"]
    assert [r["layer"] for r in rows] == [1, 2, 3] and all(r["holds"] for r in rows)
    xr, yr = toy.xor(80)
    np.savez(tmp_path / "xor.npz", x=xr, y=yr)
    for method, needle in (("sls", "not SLS"), ("simplex", "No simplex"), ("clustered", "")):
        code, out, err = run_cli("construct", str(tmp_path / "xor.npz"), "--out", str(tmp_path / "x"), "--method", method)
        assert code == 2 and err.count("\n") == 1 and needle in err, err
    code, _, err = run_cli("construct", str(tmp_path / "sls.npz"), "--out", str(tmp_path / "y"), "--method", "magic")
    assert code == 2 and "--method" in err


def test_truncation_command_contract_on_a_widening_model(tmp_path):
    """`polylens truncation MODEL --data F.npz --n N --json`: one row per hidden layer and one for the
    output, residual, holds, lifted and the failed hypothesis as reason."""
    from conftest import random_network
    from polylens.nn.model import Model, card_for_network, save_model

    net = random_network((4, 3, 5, 2), "relu", seed=1)
    save_model(Model(net, card_for_network(net)), tmp_path / "w")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.uniform(0, 1, (50, 4)), y=rng.integers(0, 2, 50))
    code, out, err = run_cli("truncation", str(tmp_path / "w"), "--data", str(tmp_path / "d.npz"), "--n", "30",
                             "--json", "--toy", "none")
    assert code == 0, err
    doc = json.loads(out)
    rows = doc["identities"]
    assert [r["layer"] for r in rows] == [1, 2, 3] and doc["n"] == 30
    assert set(rows[0]) >= {"layer", "residual", "holds", "lifted", "reason"}
    assert rows[0]["holds"] and not rows[1]["holds"] and "layer 2 widens" in rows[1]["reason"]
    assert not rows[2]["holds"] and not any(r["lifted"] for r in rows)


def test_toy_sets_are_seeded_and_in_the_unit_box():
    """The toy generators (polylens.data.toy) give the same points for the same seed, other points for
    another, in [0, 1]^d with every class present."""
    for name in toy.GENERATORS:
        a, ya = toy.make(name, 80, seed=3)
        b, yb = toy.make(name, 80, seed=3)
        c, _ = toy.make(name, 80, seed=4)
        assert np.array_equal(a, b) and np.array_equal(ya, yb) and not np.array_equal(a, c)
        assert a.min() >= 0 and a.max() <= 1 and len(set(ya.tolist())) >= 2
    with pytest.raises(Exception, match="one of"):
        toy.make("moons")
