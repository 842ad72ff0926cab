"""The bases lens: explained variance, PCA against numpy's SVD, ablation's two ends, reproducible strips,
hooks on a torch CNN, and the `polylens bases` JSON contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from polylens.data.labelled import Data
from polylens.lenses.bases.ablation import ablate, k_grid
from polylens.lenses.bases.activations import NetworkProbe, TorchProbe, make_probe
from polylens.lenses.bases.analysis import analyse
from polylens.lenses.bases.basis import BASES, fit_basis, gram_schmidt
from polylens.lenses.bases.strips import coherence, make_strip
from polylens.nn.model import load_model

from conftest import random_network, run_cli


def _data(n=300, d=12, seed=0, rank=None):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    if rank is not None:
        A = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
    return A


@pytest.fixture(scope="module")
def relu_net():
    net = random_network((16, 10, 8, 4), "relu", seed=3)
    x = np.random.default_rng(1).random((200, 16))
    y = net.predict(x)
    y[::5] = (y[::5] + 1) % 4  # not every label the prediction, so accuracy moves
    return net, x, y


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 9))
def test_orthogonal_fractions_sum_to_one_and_do_not_increase(seed, d):
    """Neurons and PCA: the fractions of variance sum to 1 within 1e-9 and never increase in the basis's order."""
    A = _data(80, d, seed)
    for name in ("neuron", "pca"):
        b = fit_basis(name, A)
        ev = b.explained_variance
        assert abs(ev.sum() - 1.0) < 1e-9
        assert np.all(np.diff(ev) <= 1e-12)
        assert b.k80() is not None and b.k80() <= b.k99() <= d


def test_pca_matches_numpy_svd():
    """PCA's directions (up to sign) and fractions are those of numpy's SVD of the centred data."""
    A = _data(400, 10, 7)
    b = fit_basis("pca", A)
    _, s, Vt = np.linalg.svd(A - A.mean(0), full_matrices=False)
    np.testing.assert_allclose(b.explained_variance, s ** 2 / np.sum(s ** 2), atol=1e-10)
    for v, w in zip(b.directions, Vt):
        assert min(np.abs(v - w).max(), np.abs(v + w).max()) < 1e-7
    # sign normalisation: the largest-magnitude entry is positive, and two fits agree exactly
    assert np.all(b.directions[np.arange(10), np.abs(b.directions).argmax(1)] > 0)
    assert np.array_equal(b.directions, fit_basis("pca", A.copy()).directions)


def test_neuron_basis_is_ordered_by_variance():
    """The neuron basis lists neurons by variance, largest first, and its codes are those neurons."""
    A = _data(200, 6, 2)
    b = fit_basis("neuron", A)
    var = A.var(0)
    assert list(b.order) == list(np.argsort(-var, kind="stable"))
    np.testing.assert_allclose(b.project(A)[:, 0], A[:, b.order[0]] - A[:, b.order[0]].mean())


@pytest.mark.parametrize("name", ["ica", "nmf", "dictionary"])
def test_cumulative_r2_reaches_one_for_a_complete_basis(name):
    """ICA, NMF and a dictionary with as many vectors as the width: the cumulative R^2 (the fraction of the
    variance in the span of the first k vectors) never decreases, matches the reconstruction's R^2 from
    the data, and reaches 1."""
    A = np.abs(_data(300, 6, 4)) if name == "nmf" else _data(300, 6, 4)
    b = fit_basis(name, A, components=6, seed=0)
    cum = b.cumulative
    assert np.all(np.diff(cum) >= -1e-12)
    assert abs(cum[-1] - 1.0) < 1e-9
    for k in (1, 3):
        assert abs(b.r2(A, k) - cum[k - 1]) < 1e-9


def test_incomplete_basis_stops_short_and_nmf_refuses_negative_values():
    """Two ICA vectors of 6-dimensional full-rank data explain less than everything (k99 undefined); NMF
    on values below zero is refused with a message that says why."""
    A = _data(300, 6, 5)
    b = fit_basis("ica", A, components=2)
    assert b.cumulative[-1] < 0.999 and b.k99() is None and "components" in b.note
    from polylens.errors import ParameterError

    with pytest.raises(ParameterError, match="non-negative"):
        fit_basis("nmf", A)


def test_gram_schmidt_skips_dependent_vectors():
    """A vector in the span of the earlier ones adds no direction."""
    D = np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 1.0]])
    Q, new = gram_schmidt(D)
    assert list(new) == [True, False, True] and Q.shape == (2, 3)
    np.testing.assert_allclose(Q @ Q.T, np.eye(2), atol=1e-12)


@pytest.mark.parametrize("post", [False, True])
@pytest.mark.parametrize("name", ["neuron", "pca", "ica"])
def test_ablation_ends(relu_net, name, post):
    """Removing no vector changes nothing; removing every vector of a complete basis gives the
    prediction for the mean activation, in both orders."""
    net, x, y = relu_net
    probe = NetworkProbe(net, 1, post)
    A = probe.activations(x).values
    b = fit_basis(name, A, components=A.shape[1], seed=0)
    ab = ablate(probe, b, x, y, points=100)
    acc = float(np.mean(net.predict(x) == y))
    assert ab.top_first[0] == ab.bottom_first[0] == acc
    mean_pred = int(np.argmax(probe.rest(A.mean(0)[None, :])))
    assert ab.top_first[-1] == ab.bottom_first[-1] == float(np.mean(y == mean_pred)) == ab.mean_accuracy
    # removing everything from the layer's own vectors reproduces the mean exactly
    Q, _ = gram_schmidt(b.directions)
    from polylens.lenses.bases.ablation import projector_out

    np.testing.assert_allclose(projector_out(Q, b.mean)(A), np.broadcast_to(A.mean(0), A.shape), atol=1e-9)


def test_ablation_grid_says_what_it_evaluated():
    """A wide basis is evaluated on a grid including 0 and all; the other entries are None."""
    assert k_grid(4, 10) == [0, 1, 2, 3, 4]
    g = k_grid(256, 33)
    assert g[0] == 0 and g[-1] == 256 and len(g) <= 33


def test_strips_reproducible_and_coherence_scored(relu_net):
    """Two strips with the same seed are identical; a strip of smoothly changing images scores a higher
    coherence than the same images in a random order."""
    net, x, y = relu_net
    probe = NetworkProbe(net, 2, True)
    acts = probe.activations(x)
    b = fit_basis("pca", acts.values)
    codes = b.project(acts.values)
    imgs = x.reshape(-1, 4, 4)
    s1, i1 = make_strip(b, 0, acts, codes, imgs, length=6, candidates=100, seed=3)
    s2, i2 = make_strip(b, 0, acts, codes, imgs, length=6, candidates=100, seed=3)
    assert s1 == s2 and np.array_equal(i1, i2)
    assert list(s1.codes) == sorted(s1.codes) or len(set(s1.samples)) == 6
    ramp = np.linspace(0, 1, 8)[:, None, None] * np.ones((8, 3, 3))
    coh, mono = coherence(ramp, seed=0)
    assert coh > 0.5 and mono == pytest.approx(1.0)
    coh_shuffled, _ = coherence(ramp[np.random.default_rng(0).permutation(8)], seed=0)
    assert coh_shuffled < coh


def _cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3, stride=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(6 * 4 * 4, 10)).eval()


def test_hooks_on_a_torch_cnn_capture_the_real_shapes():
    """A hook on each conv layer gives one vector per spatial position with the layer's channels, in the
    (sample, position) order of the layer's real output; receptive fields follow the strides; --post
    reads the ReLU after the conv."""
    m = _cnn()
    x = np.random.default_rng(0).random((7, 1 * 13 * 13))
    t = torch.tensor(x, dtype=torch.float32).reshape(7, 1, 13, 13)
    out1 = m[0](t)                       # (7, 4, 6, 6)
    out2 = m[2](m[1](out1))              # (7, 6, 4, 4)
    p1 = TorchProbe(m, "0", (1, 13, 13))
    a1 = p1.activations(x, batch=3)
    assert p1.spatial == (6, 6) and a1.values.shape == (7 * 36, 4)
    np.testing.assert_allclose(a1.values, out1.permute(0, 2, 3, 1).reshape(-1, 4).detach().numpy(), atol=1e-6)
    assert list(a1.receptive[0]) == [0, 3, 0, 3] and list(a1.receptive[1]) == [0, 3, 2, 5]
    p2 = TorchProbe(m, "2", (1, 13, 13), post=True)
    a2 = p2.activations(x)
    assert p2.hooked == "3" and a2.values.shape == (7 * 16, 6) and a2.values.min() >= 0
    np.testing.assert_allclose(a2.values, torch.relu(out2).permute(0, 2, 3, 1).reshape(-1, 6).detach().numpy(),
                               atol=1e-6)
    assert list(a2.receptive[0]) == [0, 7, 0, 7]  # 3 + (3 - 1) * 2
    p3 = TorchProbe(m, "5", (1, 13, 13))
    assert p3.spatial is None and p3.activations(x).values.shape == (7, 10)


def test_torch_ablation_ends_and_bounded_rows():
    """On a conv layer, ablating nothing keeps the module's predictions, ablating a complete PCA gives one
    prediction for every input; max_rows keeps a seeded subset of rows."""
    m = _cnn()
    x = np.random.default_rng(1).random((40, 169))
    probe = TorchProbe(m, "0", (1, 13, 13), post=True)
    with torch.no_grad():
        pred = m(torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 13, 13)).argmax(1).numpy()
    acts = probe.activations(x, max_rows=500, seed=0)
    assert acts.values.shape == (500, 4) and acts.subsampled
    again = probe.activations(x, max_rows=500, seed=0)
    assert np.array_equal(acts.values, again.values)
    b = fit_basis("pca", probe.activations(x).values)
    ab = ablate(probe, b, x, pred, points=10)
    assert ab.top_first[0] == 1.0
    assert ab.top_first[-1] == ab.mean_accuracy == ab.bottom_first[-1]


def test_analyse_on_a_torch_module_and_the_seed():
    """analyse() runs on a bare torch module (layer by name) and on the seed (whose 3-neuron layer is
    flagged degenerate)."""
    m = _cnn()
    x = np.random.default_rng(2).random((30, 169))
    r = analyse(m, x, np.zeros(30, dtype=np.int64), "2", post=True, bases=("neuron", "pca"), strips=1,
                input_shape=(1, 13, 13), strip_length=4)
    assert r.width == 6 and r.positions == 16 and r.strip_shape == (7, 7)
    seed = load_model("seed")
    d = Data.of_model(seed).head(200)
    r2 = analyse(seed, d.x, d.y, "1", bases=("neuron", "pca"), strips=1)
    assert r2.degenerate and r2.width == 3


def test_cli_contract_on_the_seed():
    """`polylens bases seed --layer 2 --post --json`: layer, n, width and, per basis, explained_variance
    (summing to 1 for neurons and PCA), k80, k99 and ablation lists of length width + 1."""
    code, out, err = run_cli("bases", "seed", "--layer", "2", "--post", "--n", "120", "--bases", "neuron,pca,ica",
                             "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["layer"] == "2" and d["n"] == 120 and d["width"] == 3 and d["post"] is True
    assert set(d["bases"]) == {"neuron", "pca", "ica"}
    for name, b in d["bases"].items():
        assert len(b["explained_variance"]) == 3 and b["k80"] <= b["k99"] <= 3
        assert len(b["ablation"]["top_first"]) == len(b["ablation"]["bottom_first"]) == 4
        if name in ("neuron", "pca"):
            assert abs(sum(b["explained_variance"]) - 1) < 1e-9


def test_cli_refuses_a_layer_the_model_lacks():
    """A layer that is not there is one line and exit code 2."""
    code, out, err = run_cli("bases", "seed", "--layer", "7", "--n", "30")
    assert code == 2 and err.count("\n") == 1 and "--layer" in err
    code, out, err = run_cli("bases", "seed", "--layer", "conv9", "--n", "30")
    assert code == 2 and err.count("\n") == 1


def test_bundled_cnn_layer_by_name():
    """The bundled MNIST CNN loads safely (safetensors) as a torch model; its conv1 gives 8 channels at
    12x12 positions, and its Network has the same predictions as the module."""
    try:
        m = load_model("mnist-cnn")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"the bundled CNN is not installed: {e}")
    x = Data.of_model(m).head(20).x
    p = make_probe(m, "conv1")
    assert p.spatial == (12, 12) and p.width == 8
    np.testing.assert_array_equal(p.logits(x).argmax(1), m.network.predict(x))


def test_explorer_payload_for_a_bundled_cnn():
    """The view's payload for the bundled MNIST CNN's conv1 (one vector per position): its layers by name,
    strips of receptive-field patches, pictures of the conv kernels combined along each vector."""
    try:
        load_model("mnist-cnn")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"the bundled CNN is not installed: {e}")
    from polylens.explorer.api import Explorer, ExplorerConfig

    ex = Explorer(load_model("seed"), config=ExplorerConfig(lenses={"bases": {"components": 3, "ablation_points": 5,
                                                                               "strips": 2}}), mode="static")
    try:
        p = ex.lens_payload("bases", "main", {"model": "mnist-cnn", "layer": "conv1", "post": True})
    finally:
        ex.close()
    assert p["status"] == "ready", p
    assert p["width"] == 8 and p["positions"] == 144 and p["strip_shape"] == [5, 5]
    assert {"value": "conv1", "label": "conv1 (Conv2d, per position)"} in p["layers"]
    pca = p["bases"]["pca"]
    assert pca["picture_kind"] == "weights" and pca["picture_shape"] == [5, 5]
    assert len(pca["strip_images"][0]) == 8 and len(pca["strip_images"][0][0]) == 25


def test_front_door_takes_a_bare_torch_module():
    """pl.bases(module, data, layer=NAME) works on any torch module: the input shape is read from the data's
    width (a square image, one channel), and the first Linear layer's vectors get weight pictures."""
    import polylens as pl

    torch.manual_seed(1)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    rng = np.random.default_rng(0)
    data = Data(rng.random((50, 16)), rng.integers(0, 3, 50))
    r = pl.bases(m, data, layer="1", post=True, bases=("neuron", "pca"), strips=2)
    assert r.width == 6 and r.results["pca"].picture_kind == "weights"
    assert r.results["pca"].pictures[0].shape == (4, 4) and r.strip_shape == (4, 4)


def test_findings_rules_and_the_report_table():
    """The findings' verdicts follow their stated rules (a smaller PCA k80 is compactness, a coherence gap
    within two standard errors is undecided), and the section shows the bundled models' table."""
    from polylens.lenses.bases.findings import load_bundled_findings, verdict_row

    row = {"neuron_k80": 10, "pca_k80": 3, "neuron_k99": 12, "pca_k99": 12, "neuron_area": 0.5, "pca_area": 0.6,
           "neuron_coherence": 0.10, "pca_coherence": 0.12, "neuron_coherence_se": 0.01, "pca_coherence_se": 0.01}
    assert verdict_row(row) == {"compactness": "holds", "ablation": "refuted", "coherence": "undecided"}
    assert verdict_row({**row, "pca_coherence": 0.2})["coherence"] == "holds"
    assert verdict_row({**row, "pca_k99": 13})["compactness"] == "refuted"
    rows = load_bundled_findings()
    assert rows and {r["model"] for r in rows} == {"mnist-mlp", "mnist-cnn", "fashion-mlp", "fashion-cnn"}
    from polylens.lenses.base import SectionContext
    from polylens.lenses.bases.lens import bases_section

    seed = load_model("seed")
    d = Data.of_model(seed).head(100)
    sec = bases_section(analyse(seed, d.x, d.y, "1", bases=("neuron", "pca"), strips=0), SectionContext(seed, d, False))
    assert [t.name for t in sec.tables] == ["bases", "bases-findings"] and len(sec.tables[1].rows) == len(rows)
    assert "degenerate" in sec.note


def test_module_directory_declares_only_known_modules(tmp_path):
    """A module directory builds only the listed torch module types from data: anything else (or a
    missing weights file) is a one-line ModelError, never code."""
    import shutil

    from polylens.errors import ModelError
    from polylens.nn.module_dir import build_module

    with pytest.raises(ModelError, match="allowed"):
        build_module({"layers": [["x", "Module", {}]]})
    try:
        src = load_model("mnist-cnn").source
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"the bundled CNN is not installed: {e}")
    from importlib import resources

    with resources.as_file(resources.files("polylens").joinpath("models/mnist-cnn")) as d:
        shutil.copytree(d, tmp_path / "cnn")
    (tmp_path / "cnn" / "module.safetensors").unlink()
    with pytest.raises(ModelError, match="Cannot load the weights") as e:
        load_model(tmp_path / "cnn")
    assert "\n" not in str(e.value) and src == "bundled:mnist-cnn"
