"""The polytope lens (issue 10): patterns, the exact region of a point, exact partitions of segments,
slices and the input box, the predictions' rules, the Hanin-Rolnick scaling law and the CLI contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_network, run_cli
from polylens.data.labelled import Data
from polylens.lenses.regions import partition as P
from polylens.lenses.regions import patterns as PT
from polylens.lenses.regions.predictions import monosemanticity, scaling, scaling_law
from polylens.lenses.regions.region import REDUNDANCY_TOL, halfspaces, region_of
from polylens.nn.model import load_model


@pytest.fixture(scope="module")
def wide():
    m = load_model("wide-relu")
    return m, Data.of_model(m)


def _inside(center, radius, n, rng):
    """n points strictly inside the ball of ``radius`` around ``center``."""
    d = rng.normal(size=(n, len(center)))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return center + 0.9 * radius * d * rng.uniform(0, 1, (n, 1))


def test_pattern_strings_packing_and_distances():
    """Patterns round-trip through strings and bit packing; Hamming and Jaccard match their definitions."""
    rng = np.random.default_rng(0)
    bits = rng.random((30, 13)) < 0.4
    assert all(np.array_equal(PT.from_string(PT.to_string(b), 13), b) for b in bits)
    assert np.array_equal(PT.unpack(PT.pack(bits), 13), bits)
    H, J = PT.hamming(bits), PT.jaccard(bits)
    for i in range(5):
        for j in range(5):
            assert H[i, j] == np.sum(bits[i] != bits[j])
            union = np.sum(bits[i] | bits[j])
            assert J[i, j] == pytest.approx(0.0 if union == 0 else 1 - np.sum(bits[i] & bits[j]) / union)
    g = PT.group(np.vstack([bits, bits[:7]]))
    assert len(g.counts) == len({b.tobytes() for b in bits}) and g.counts.sum() == 37
    assert all(np.array_equal(g.unique[g.inverse[i]], np.vstack([bits, bits[:7]])[i]) for i in range(37))


def test_smooth_conventions_are_explicit():
    """For GELU the pattern is a named convention: sign is a > 0, gelu-curvature is |a| < sqrt(2)."""
    seed = load_model("seed").network
    x = Data.of_model(load_model("seed")).x[:50]
    a = PT.pre_activations(seed, x)
    assert np.array_equal(PT.patterns(seed, x, "sign"), a > 0)
    assert np.array_equal(PT.patterns(seed, x, "gelu-curvature"), np.abs(a) < np.sqrt(2))
    assert "gelu-curvature" in PT.convention_note(seed, "gelu-curvature")
    assert "not a fact" in PT.convention_note(seed, "sign")


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_region_of_a_point(seed):
    """The region of a random point: its centre is a witness, sampled interior points have its pattern,
    its affine map reproduces the logits to 1e-9, and redundancy removal drops no needed facet (each
    dropped row is implied by the kept ones, by LP); neighbours differ by one flip."""
    from polylens.lp.highs import LPSolver, Sense
    from polylens.lenses.regions.region import _lp

    rng = np.random.default_rng(seed)
    net = random_network((6, 7, 6, 4), "relu", seed=seed)
    x = rng.uniform(size=(1, 6))
    bits = PT.patterns(net, x)[0]
    R = region_of(net, bits)
    assert R.witness and R.radius > 0
    pts = _inside(R.center, R.radius, 40, rng)
    assert np.all(PT.patterns(net, pts) == bits)
    assert np.max(np.abs(pts @ R.C.T + R.e - net(pts))) <= 1e-9
    G, h, idx = halfspaces(net, bits)
    kept = set(R.neurons.tolist())
    lo, hi = np.zeros(6), np.ones(6)
    for r in range(len(h)):
        if idx[r] in kept:
            continue
        sol = LPSolver(_lp(R.G, R.h, lo, hi) if len(R.h) else _lp(np.zeros((1, 6)), np.ones(1), lo, hi)).solve(G[r], Sense.MAX)
        assert sol.objective <= h[r] + 10 * REDUNDANCY_TOL
    for k in range(len(R.h)):  # every kept row is needed: without it the set reaches beyond it
        rest = np.delete(np.arange(len(R.h)), k)
        if len(rest) == 0:
            continue
        sol = LPSolver(_lp(R.G[rest], R.h[rest], lo, hi)).solve(R.G[k], Sense.MAX)
        assert sol.objective > R.h[k]
    for j, p in R.neighbours:
        assert sum(a != b for a, b in zip(p, R.pattern)) == 1 and p[j] != R.pattern[j]
    cls = np.argmax(net(pts), axis=1)
    if R.class_proven:
        assert np.all(cls == R.cls)
    if np.any(cls != R.cls):
        assert R.crosses


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), act=st.sampled_from(["relu", "leaky_relu(0.1)"]))
def test_segment_matches_sampling_with_bisection(seed, act):
    """Exact crossings along a segment agree with dense sampling plus bisection (to 1e-9), and each
    piece's pattern is the forward pass's pattern at its midpoint."""
    rng = np.random.default_rng(seed)
    net = random_network((5, 8, 8, 3), act, seed=seed)
    x0, x1 = rng.uniform(size=5), rng.uniform(size=5)
    ex = P.segment(net, x0, x1)
    gaps = np.diff(np.concatenate([[0.0], ex.crossings, [1.0]]))
    if len(gaps) and gaps.min() < 1e-3:
        return  # two crossings closer than the sampling step: sampling cannot see both
    sa = P.segment_sampled(net, x0, x1, n=4001)
    assert len(sa.crossings) == len(ex.crossings)
    assert np.allclose(sa.crossings, ex.crossings, atol=1e-9, rtol=0)
    assert ex.patterns == sa.patterns
    mids = 0.5 * (np.concatenate([[0.0], ex.crossings]) + np.concatenate([ex.crossings, [1.0]]))
    assert np.array_equal(PT.patterns(net, x0 + mids[:, None] * (x1 - x0)), ex.bits)


def test_slice_tiles_and_finds_every_sampled_pattern(wide):
    """The slice of wide-relu through three test images: areas sum to the square's to 1e-9, points
    sampled inside every piece have its pattern and class, and every pattern of a dense grid is a piece's."""
    model, data = wide
    net, x = model.network, data.x
    sl = P.slice_plane(net, x[0], x[1] - x[0], x[2] - x[0], (-0.5, 1.5))
    assert abs(sl.area - 4.0) <= 1e-9
    rng = np.random.default_rng(1)
    pats = {PT.to_string(p.bits) for p in sl.pieces}
    for p in sl.pieces:
        if p.area < 1e-8:
            continue
        w = rng.dirichlet(np.ones(len(p.polygon)), 3)
        st_ = 0.5 * p.centroid + 0.5 * (w @ p.polygon)
        X = np.array([sl.point(s, t) for s, t in st_])
        assert np.all(PT.patterns(net, X) == p.bits)
        L = np.hstack([np.ones((3, 1)), st_]) @ p.logits.T
        assert np.max(np.abs(L - net(X))) <= 1e-9
        if len(p.classes) == 1:
            assert np.all(np.argmax(net(X), axis=1) == p.cls)
    g = np.linspace(-0.5, 1.5, 151)
    S, T = np.meshgrid(g, g)
    X = x[0] + S.reshape(-1, 1) * (x[1] - x[0]) + T.reshape(-1, 1) * (x[2] - x[0])
    grid = {PT.to_string(b) for b in PT.patterns(net, X)}
    assert grid <= pats and len(pats) >= len(grid)


def test_enumeration_is_complete_and_covers_sampling():
    """Enumerating a small ReLU net's box: complete, every centre is a witness, every pattern of dense
    uniform sampling is found, no pattern twice; a small budget is reported incomplete."""
    net = random_network((4, 6, 5, 3), "relu", seed=3)
    en = P.enumerate_regions(net, budget=5000)
    assert en.complete and en.witnessed == en.count
    found = {b.tobytes() for b in en.bits}
    assert len(found) == en.count
    rng = np.random.default_rng(0)
    sampled = {b.tobytes() for b in PT.patterns(net, rng.uniform(size=(100_000, 4)))}
    assert sampled <= found
    rng2 = np.random.default_rng(2)
    for b, c, r in zip(en.bits, en.centers, en.radii):
        assert np.all(PT.patterns(net, np.clip(_inside(c, r, 5, rng2), 0, 1)) == b)
    small = P.enumerate_regions(net, budget=3)
    assert small.count == 3 and not small.complete


def test_seed_twin_enumeration_covers_sampling():
    """The bundled ReLU twin of the seed: every region of [0, 1]^49 found, with every sampled pattern."""
    net = load_model("seed-relu").network
    en = P.enumerate_regions(net, budget=10_000)
    assert en.complete and en.witnessed == en.count
    rng = np.random.default_rng(0)
    sampled = {b.tobytes() for b in PT.patterns(net, rng.uniform(size=(50_000, 49)))}
    assert sampled <= {b.tobytes() for b in en.bits}


def test_hanin_rolnick_scaling_law():
    """At initialisation the number of regions along a line grows about linearly with the neurons."""
    law = scaling_law(widths=(4, 8, 16, 32, 64), nets=3, lines=8, seed=1)
    assert 0.75 <= law["loglog_slope"] <= 1.25, law
    assert law["mean_crossings"][-1] > 4 * law["mean_crossings"][0]


def test_prediction_verdicts_follow_their_rules(wide):
    """The verdicts are what the stated rules give on the measured numbers."""
    model, data = wide
    net = model.network
    m = monosemanticity(net, data.x[:400], data.y[:400])
    hp, nm, dm = m["hamming_clusters"]["purity"], m["neuron_mean"], m["direction_mean"]
    want = "supported" if hp >= max(nm, dm) + 0.05 else "not supported" if hp < min(nm, dm) else "mixed"
    assert m["verdict"] == want
    s = scaling(net, data.x[:200])
    assert s["with_pattern_change"] <= s["prediction_steps"]
    assert s["pattern_changed"][int(np.argmin(np.abs(np.array(s["alphas"]) - 1)))] == 0


def test_hidden_planes_are_the_next_layer(tmp_path):
    """The seed's 3-D hidden spaces: the planes drawn in layer 1's space are layer 2's neurons (their
    sign at each image's point is its layer-2 pattern); layer 2's space carries the decision regions."""
    from polylens.lenses.regions.hidden import hidden_spaces

    m = load_model("seed")
    d = Data.of_model(m).head(100)
    sp = hidden_spaces(m.network, d.x, d.y)
    assert [s["layer"] for s in sp] == [1, 2]
    Z = np.array(sp[0]["points"])
    W = np.array([p["w"] for p in sp[0]["planes"]])
    b = np.array([p["b"] for p in sp[0]["planes"]])
    assert np.array_equal(Z @ W.T + b > 0, PT.patterns(m.network, d.x)[:, 3:])
    assert sp[1]["planes"] == [] and len(set(sp[1]["grid"]["class"])) > 1


def _cli_json(*args):
    code, out, err = run_cli("regions", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_cli_contract_shapes(tmp_path):
    """The JSON shapes scripts rely on: --slice, --path (one more pattern than crossings), --enumerate,
    --point, and --data F.npz."""
    d = _cli_json("seed-relu", "--slice", "0,1,2", "--extent", "-0.5,1.5")
    assert set(d) >= {"regions", "area"} and abs(d["area"] - 4.0) <= 1e-9
    r = d["regions"][0]
    assert set(r) >= {"pattern", "polygon", "area", "class"} and set(r["pattern"]) <= {"0", "1"}
    assert len(r["pattern"]) == 6 and "leaves_box" in d
    p = _cli_json("wide-relu", "--path", "0,1")
    assert len(p["patterns"]) == len(p["crossings"]) + 1 and p["crossings"] == sorted(p["crossings"])
    assert all(0 < t < 1 for t in p["crossings"]) and all(len(s) == 64 for s in p["patterns"])
    e = _cli_json("seed-relu", "--enumerate", "--budget", "5")
    assert set(e) >= {"regions", "count", "complete"} and e["count"] == 5 and e["complete"] is False
    assert set(e["regions"][0]) >= {"pattern", "center", "radius"}
    q = _cli_json("seed-relu", "--point", "3")
    assert q["affine_error"] <= 1e-9 and q["input_in_region"]
    m = load_model("seed-relu")
    dd = Data.of_model(m)
    np.savez(tmp_path / "d.npz", x=dd.x[5:9], y=dd.y[5:9])
    s = _cli_json("seed-relu", "--path", "0,1", "--data", str(tmp_path / "d.npz"))
    ref = P.segment(m.network, dd.x[5], dd.x[6])
    assert s["crossings"] == ref.crossings.tolist()


@pytest.mark.parametrize("args, text", [
    (["seed-relu", "--slice", "0,1"], "three test-image indices"),
    (["seed-relu", "--path", "0,1", "--enumerate"], "at most one of"),
    (["seed", "--slice", "0,1,2"], "piecewise-linear"),
    (["seed-relu", "--point", "999999"], "must name test images"),
    (["seed-relu", "--extent", "1,0", "--slice", "0,1,2"], "LO < HI"),
    (["seed-relu", "--convention", "cubic"], "convention"),
])
def test_cli_bad_input_is_one_line(args, text):
    """Bad input: exit code 2 and one line naming the problem, never a traceback."""
    code, out, err = run_cli("regions", *args)
    assert code == 2 and text in err and "Traceback" not in err


def test_leaky_relu_slice_tiles_with_exact_maps():
    """A leaky-ReLU network's slice: pieces tile the square to 1e-9, and each piece's affine logits
    and pattern match the network at an interior point."""
    net = random_network((6, 9, 7, 4), "leaky_relu(0.1)", seed=11)
    rng = np.random.default_rng(4)
    o, u, v = rng.uniform(size=6), rng.normal(size=6), rng.normal(size=6)
    sl = P.slice_plane(net, o, u, v, (-1.0, 1.0))
    assert abs(sl.area - 4.0) <= 1e-9 and len(sl.pieces) > 5
    for p in sl.pieces:
        if p.area < 1e-8:
            continue
        c = p.centroid
        X = sl.point(*c)[None]
        assert np.array_equal(PT.patterns(net, X)[0], p.bits)
        assert np.max(np.abs(p.logits[:, 0] + p.logits[:, 1:] @ c - net(X)[0])) <= 1e-9


def test_onnx_and_torch_models_run(tmp_path):
    """Any ReLU or leaky-ReLU model works: a leaky-ReLU net through ONNX (the CLI, by path) and a torch
    module (from_torch) give the same exact crossings as the network they came from."""
    from polylens.nn.onnx_io import to_onnx
    from polylens.nn.torch_io import from_torch, to_torch

    net = random_network((49, 10, 10, 10), "leaky_relu(0.1)", seed=2)
    to_onnx(net, tmp_path / "m.onnx", dtype="float64")
    d = Data.of_model(load_model("seed"))
    np.savez(tmp_path / "d.npz", x=d.x[:3], y=d.y[:3])
    out = _cli_json(str(tmp_path / "m.onnx"), "--path", "0,1", "--data", str(tmp_path / "d.npz"))
    ref = P.segment(net, d.x[0], d.x[1])
    assert out["patterns"] == ref.patterns and np.allclose(out["crossings"], ref.crossings, atol=1e-12)
    back = from_torch(to_torch(net))
    assert np.allclose(P.segment(back, d.x[0], d.x[1]).crossings, ref.crossings, atol=1e-12)
