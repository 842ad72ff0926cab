"""The explorer's JSON API (starlette TestClient) and its static export: every endpoint answers what
the analyses say, malformed requests get a 4xx JSON error (never a traceback), names persist where the
model allows, and the export writes the same payloads the live server answers."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from polylens.lenses.verify.certify import CertifyOptions, certify
from polylens.bounds import input_box
from polylens.explorer.api import Explorer, ExplorerConfig, canonical_key, lens_catalog
from polylens.explorer.export import choose_samples, export_site_report
from polylens.explorer.server import create_app, static_dir
from polylens.nn.model import Model, card_for_network, load_model, save_model

from conftest import random_network

CFG = ExplorerConfig(lenses={"robustness": {"images": 12, "eps": (0.01,), "chunk": 12}, "signatures": {"per_digit": 3}},
                     request_timeout=30.0)
NO_SWEEP = {"robustness": {"images": 0}}


@pytest.fixture(scope="module")
def seed():
    return load_model("seed")


@pytest.fixture(scope="module")
def ex(seed):
    e = Explorer(seed, config=CFG)
    yield e
    e.close()


@pytest.fixture(scope="module")
def client(ex):
    with TestClient(create_app(ex, warm=False)) as c:
        yield c


def lens_url(name, kind="main"):
    return f"/api/lens/{name}" + ("" if kind == "main" else f"/{kind}")


def poll(client, name, kind="main", body=None, timeout=60.0):
    """Ask lens payload (name, kind) until its status is no longer 'running'."""
    t0 = time.monotonic()
    while True:
        r = client.post(lens_url(name, kind), json=body or {})
        assert r.status_code == 200, r.text
        d = r.json()
        st = d.get("status") if "report" not in d else d["report"].get("status")
        if st not in ("running", "idle"):
            return d
        assert time.monotonic() - t0 < timeout, f"{name}/{kind} still running after {timeout} s"
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Pages


def test_pages_are_served_offline(client):
    """The page, its config, its modules and plotly.js come from the server itself (no CDN)."""
    r = client.get("/")
    assert r.status_code == 200 and "importmap" in r.text and "polylens/main.js" in r.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", r.text)
    r = client.get("/config.js")
    assert r.status_code == 200 and '"mode": "live"' in r.text
    r = client.get("/static/main.js")
    assert r.status_code == 200 and "export async function boot" in r.text
    r = client.get("/vendor/plotly.min.js")
    assert r.status_code == 200 and len(r.content) > 1_000_000 and "javascript" in r.headers["content-type"]


def test_lens_views_are_listed_and_served(client):
    """/api/lenses lists every lens with a view in order; each lens's module is served from its own
    folder, and nothing else of that folder (or outside it) is."""
    cat = client.get("/api/lenses").json()["lenses"]
    assert [l["name"] for l in cat] == [l["name"] for l in lens_catalog()]
    assert {"robustness", "neurons", "trace", "signatures", "prototypes"} <= {l["name"] for l in cat}
    for l in cat:
        if l["module"]:
            r = client.get(f"/lens/{l['name']}/{l['module']}")
            assert r.status_code == 200 and "export function mount" in r.text, l
    assert client.get("/lens/trace/lenses.py").status_code == 404
    assert client.get("/lens/trace/..%2F..%2Fnn%2Fmodel.py").status_code == 404
    assert client.get("/lens/nothing/x.js").status_code == 404
    assert client.get("/api/model").json()["lenses"] == cat


# ---------------------------------------------------------------------------------------------
# Payloads agree with the network and the analyses


def test_model_and_samples(client, seed, ex):
    """/api/model describes the network; /api/samples gives every test label and the network's prediction."""
    m = client.get("/api/model").json()
    assert m["architecture"] == "49-3-3-10" and m["input_shape"] == [7, 7] and m["n_classes"] == 10
    assert [n["key"] for n in m["layers"][1]["neurons"]] == ["L2.n0", "L2.n1", "L2.n2"]
    assert m["names"]["storage"] == "memory" and "memory" in m["names"]["note"]
    s = client.get("/api/samples").json()
    assert s["n"] == 2000 == len(s["labels"]) == len(s["predictions"])
    assert s["predictions"] == seed.network.predict(ex.data.x).tolist()
    assert s["labels"] == ex.data.y.tolist()


def test_forward_matches_network(client, seed, ex):
    """The forward payload's activations, prediction and diagram edges (w * a) are the network's."""
    net = seed.network
    p = client.post("/api/forward", json={"sample": 7}).json()
    fp = net.forward(ex.data.x[7:8])
    assert p["prediction"] == int(fp.predictions[0]) and p["label"] == int(ex.data.y[7])
    np.testing.assert_allclose(p["logits"], fp.logits[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p["layers"][1]["post"], fp.post[1][0], rtol=1e-5, atol=1e-6)
    assert len(p["original"]) == 28
    e = p["diagram"]["edges"][1]  # layer 1 -> layer 2: every edge drawn (3 x 3)
    W = net.layers[1].W
    for s_, d_, c in zip(e["src"], e["dst"], e["c"]):
        assert c == pytest.approx(W[d_, s_] * fp.post[0][0, s_], rel=1e-5)
    assert abs(e["c"][0]) == max(abs(c) for c in e["c"])  # strongest first
    # A drawn input: the same numbers as the network on that input.
    x = np.clip(ex.data.x[7] + 0.3 * (np.arange(49) % 2), 0, 1)
    q = client.post("/api/forward", json={"x": x.tolist()}).json()
    np.testing.assert_allclose(q["logits"], net(x[None])[0], rtol=1e-5, atol=1e-6)
    assert q["sample"] is None and "label" not in q


def test_wide_network_diagram_folds_layers(tmp_path):
    """A 49-64-64-10 network draws max_nodes neurons per hidden layer (largest |activation|) plus one
    '+N more' node whose edges carry the summed contributions of its members."""
    from polylens.nn.model import Model, card_for_network
    from polylens.nn.network import Network

    net = random_network((49, 64, 64, 10), "relu", seed=3)
    net = Network(net.layers, net.activations, (7, 7))
    e = Explorer(Model(net, card_for_network(net)), config=CFG)
    try:
        x = e.data.x[0]
        p = e.forward_payload(x)
        col = p["diagram"]["columns"][1]
        assert len(col["shown"]) == CFG.max_nodes and col["more"] == 64 - CFG.max_nodes
        post = np.abs(net.forward(x[None]).post[0][0])
        assert post[col["shown"]].min() >= np.delete(post, col["shown"]).max()
        e12 = p["diagram"]["edges"][1]
        C = net.layers[1].W * net.forward(x[None]).post[0][0][None, :]
        hidden_src = np.setdiff1d(np.arange(64), col["shown"])
        for s_, d_, c in zip(e12["src"], e12["dst"], e12["c"]):
            if s_ == -1 and d_ >= 0:
                assert c == pytest.approx(C[d_, hidden_src].sum(), rel=1e-4, abs=1e-9)
        assert len(e12["src"]) <= CFG.max_edges and e12["total"] == np.count_nonzero(C)
    finally:
        e.close()


def test_bounds_hold_at_the_input(client, seed, ex):
    """Tooltip bounds contain the input's own activations, and every envelope cut holds there."""
    x = ex.data.x[3]
    b = client.post("/api/bounds", json={"x": x.tolist(), "eps": 0.02}).json()
    xl, xu = input_box(x[None], 0.02)
    assert b["input"]["lower"] == xl[0].tolist() and b["input"]["upper"] == xu[0].tolist()
    fp = seed.network.forward(x[None])
    for l, layer in enumerate(b["layers"]):
        a, z = fp.pre[l][0], fp.post[l][0]
        assert np.all(np.array(layer["lower"]) <= a) and np.all(a <= np.array(layer["upper"]))
        assert np.all(np.array(layer["zlo"]) <= z) and np.all(z <= np.array(layer["zhi"]))
        for j, cuts in zip(layer["neurons"], layer["cuts"]):
            assert {c[0] for c in cuts} == {0, 1}
            for side, k, c in cuts:
                line = k * a[j] + c
                assert (z[j] >= line - 1e-12) if side == 0 else (z[j] <= line + 1e-12)
    assert np.all(np.array(b["logits"]["lower"]) <= fp.logits[0])


def test_certify_matches_certify(client, seed, ex):
    """The live check is certify() on that input: same status and margins; a counterexample lies in
    the box and is misclassified."""
    net = seed.network
    for i, eps in ((0, 0.01), (0, 0.05), (1, 0.01)):
        c = client.post(lens_url("robustness", "certify"), json={"sample": i, "eps": eps}).json()
        ref = certify(net, ex.data.x[i:i + 1], ex.data.y[i:i + 1], eps, options=CertifyOptions(time_limit=1.0))[0]
        assert c["status"] == ref.status.value and c["label"] == int(ex.data.y[i]) and c["label_source"] == "label"
        got = np.array([math.inf if v is None else v for v in c["margin_lower"]])
        want = np.where(np.isfinite(ref.margin_lower), ref.margin_lower, math.inf)
        np.testing.assert_allclose(got, want)
        if c["status"] == "verified":
            assert all(v > 0 for k, v in enumerate(c["margin_lower"]) if k != c["label"])
        if c["status"] == "falsified":
            cex = np.array(c["counterexample"])
            xl, xu = input_box(ex.data.x[i:i + 1], eps)
            assert np.all(cex >= xl[0]) and np.all(cex <= xu[0])
            assert int(net.predict(cex[None])[0]) == c["counterexample_prediction"] != c["label"]
    # A drawn input is certified for its own prediction unless a label is given.
    x = ex.data.x[0]
    c = client.post(lens_url("robustness", "certify"), json={"x": x.tolist(), "eps": 0.0}).json()
    assert c["label_source"] == "prediction" and c["label"] == int(net.predict(x[None])[0]) and c["status"] == "verified"
    c = client.post(lens_url("robustness", "certify"), json={"x": x.tolist(), "eps": 0.0, "label": 5}).json()
    assert c["label"] == 5 and c["status"] == "falsified" and c["decided_by"] == "clean"


def test_certify_time_limit_answers_timeout(seed):
    """A live LP request that exceeds its wall-clock limit answers status 'timeout', not an error."""
    e = Explorer(seed, config=ExplorerConfig(lenses=NO_SWEEP, request_timeout=1e-3, time_limit=0.05))
    try:
        with TestClient(create_app(e, warm=False)) as c:
            r = c.post(lens_url("robustness", "certify"), json={"sample": 4, "eps": 0.013})
            assert r.status_code == 200
            d = r.json()
            assert d["status"] == "timeout" and "time" in d["message"] and d["eps"] == 0.013
    finally:
        e.close()


def test_robust_codes(client, seed, ex):
    """/api/robust gives one status letter per test sample, agreeing with certify on those samples."""
    r = client.post(lens_url("robustness", "robust"), json={"eps": 0.01}).json()
    assert len(r["codes"]) == 2000 and set(r["codes"]) <= set("vfu")
    assert sum(r["counts"].values()) == 2000
    idx = np.arange(0, 2000, 250)
    ref = certify(seed.network, ex.data.x[idx], ex.data.y[idx], 0.01, options=CertifyOptions(time_limit=1.0))
    assert [r["codes"][i] for i in idx] == [c.status.value[0] for c in ref]


def test_sweep_summary(client):
    """The background sweep finishes and gives per-digit rates from summarize()."""
    d = poll(client, "robustness", "sweep", timeout=120)
    assert d["status"] == "ready", d
    sm = d["summary"]
    assert sm["eps"] == [0.01] and set(sm["per_digit"]) <= {str(k) for k in range(10)}
    assert sm["overall"]["0.01"]["lp"]["n"] == 12
    lp = sm["overall"]["0.01"]["lp"]["value"]
    assert 0.0 <= lp <= sm["overall"]["0.01"]["attack"]["value"] <= 1.0


def test_neuron_panel(client, ex):
    """The neuron panel carries the neuron analysis (maximiser at least the best test image and at most
    its LP bound), the suggested name, and the incoming weights."""
    d = poll(client, "neurons", body={"layer": 1, "neuron": 2})
    assert d["key"] == "L1.n2" and d["report"]["status"] == "ready"
    rep = d["report"]
    mx = rep["maximiser"]
    assert rep["top_values"][0] <= mx["value"] + 1e-9 <= mx["safe_bound"] + 2e-9
    assert len(rep["top_inputs"]) == ex.options_for("neurons").top and len(rep["top_inputs"][0]) == 49
    assert np.array(rep["class_counts"]).sum() == ex.n_samples
    assert d["suggestion"]["key"] == "L1.n2" and 0 <= d["suggestion"]["score"] <= 1
    d2 = poll(client, "neurons", body={"layer": 2, "neuron": 0})
    assert [n["key"] for n in d2["inputs"]] and {n["key"] for n in d2["inputs"]} == {"L1.n0", "L1.n1", "L1.n2"}


def test_signatures_prototypes_trace(client, seed, ex):
    """Signatures and prototypes come from their analyses; a trace's flows add up to the logit."""
    s = poll(client, "signatures")
    assert s["status"] == "ready" and s["result"]["eps"] == ex.options_for("signatures").eps
    assert np.array(s["result"]["pixel_lower_freq"]).shape == (10, 49) and len(s["pixel_map"]) == 10
    p = poll(client, "prototypes")
    assert p["status"] == "ready"
    r = p["result"]
    assert np.all(np.array(r["prototype_margin"]) >= np.array(r["start_margin"]) - 1e-12)
    t = client.post(lens_url("trace"), json={"sample": 0, "target": 4}).json()
    assert t["target"] == 4 and len(t["equations"]) == 2 and t["equations"][0].startswith("logit[4] = ")
    logit = seed.network(ex.data.x[:1])[0, 4]
    for layer in t["layers"]:
        assert sum(layer["flow"]) + layer["later_constants"] == pytest.approx(logit, abs=1e-4)
    assert t["pixel_total"] + t["pixel_constant"] == pytest.approx(logit, abs=1e-4)
    assert t["formula"]["digit"] == 4 and t["formula"]["text"].startswith("digit 4")
    d = client.post(lens_url("trace"), json={"sample": 0}).json()
    assert d["target"] == d["prediction"] == int(seed.network.predict(ex.data.x[:1])[0])


# ---------------------------------------------------------------------------------------------
# Names


def test_rename_in_memory_for_a_bundled_model(client):
    """Renaming a neuron of a bundled model keeps the name in memory and every payload shows it."""
    r = client.post("/api/rename", json={"layer": 1, "neuron": 0, "name": "  Frame  "})
    assert r.status_code == 200 and r.json()["name"] == "Frame" and r.json()["saved_to"] is None
    m = client.get("/api/model").json()
    assert m["layers"][0]["neurons"][0] == {"key": "L1.n0", "name": "Frame", "named": True}
    t = client.post(lens_url("trace"), json={"sample": 0}).json()
    assert t["layers"][0]["names"][0] == "Frame"
    assert client.post("/api/rename", json={"layer": 1, "neuron": 0, "name": ""}).json()["name"] == "L1.n0"


def test_rename_saves_the_card_of_a_model_directory(tmp_path, seed):
    """For a model directory the name goes into its card.json on disk, read back by load_model."""
    d = tmp_path / "m"
    save_model(seed, d)
    e = Explorer(load_model(d), config=ExplorerConfig(lenses=NO_SWEEP))
    try:
        with TestClient(create_app(e, warm=False)) as c:
            r = c.post("/api/rename", json={"layer": 2, "neuron": 1, "name": "Loop"}).json()
            assert r["storage"] == "model-dir" and Path(r["saved_to"]) == (d / "card.json").resolve()
        names = json.loads((d / "card.json").read_text())["neuron_names"]
        assert names == {**seed.card.neuron_names, "L2.n1": "Loop"}
        assert load_model(d).neuron_name(2, 1) == "Loop"
    finally:
        e.close()


def test_rename_bundled_model_with_names_dir(tmp_path, seed):
    """With names_dir, a bundled model's names go to a writable copy of its card and come back at the
    next start; the installed package is never written."""
    pkg_card = (Path(__import__("polylens").__file__).parent / "models" / "seed" / "card.json")
    before = pkg_card.read_bytes()
    e = Explorer(seed, config=ExplorerConfig(lenses=NO_SWEEP), names_dir=tmp_path / "names")
    e.rename(1, 1, "Spine")
    e.close()
    assert (tmp_path / "names" / "seed" / "card.json").is_file()
    e2 = Explorer(seed, config=ExplorerConfig(lenses=NO_SWEEP), names_dir=tmp_path / "names")
    assert e2.model.neuron_name(1, 1) == "Spine" and e2.names.kind == "names-dir"
    e2.close()
    assert pkg_card.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# Malformed requests: 4xx JSON, never a traceback


BAD = [
    ("post", "/api/forward", b"{not json", 400),
    ("post", "/api/forward", b"", 400),
    ("post", "/api/forward", [1, 2], 400),
    ("post", "/api/forward", {}, 400),
    ("post", "/api/forward", {"sample": 0, "x": [0.0] * 49}, 400),
    ("post", "/api/forward", {"x": [0.0] * 48}, 400),
    ("post", "/api/forward", {"x": [0.0] * 48 + [1.5]}, 400),
    ("post", "/api/forward", {"x": [0.0] * 48 + [-0.1]}, 400),
    ("post", "/api/forward", {"x": [0.0] * 48 + ["a"]}, 400),
    ("post", "/api/forward", {"x": [0.0] * 48 + [True]}, 400),
    ("post", "/api/forward", b'{"x": [' + b"0," * 48 + b"NaN]}", 400),
    ("post", "/api/forward", {"x": "0" * 49}, 400),
    ("post", "/api/forward", {"sample": -1}, 400),
    ("post", "/api/forward", {"sample": 2000}, 400),
    ("post", "/api/forward", {"sample": 1.5}, 400),
    ("post", "/api/forward", {"sample": "abc"}, 400),
    ("post", "/api/forward", {"sample": 0, "model": "/etc/passwd"}, 400),
    ("post", "/api/bounds", {"sample": 0, "eps": -0.1}, 400),
    ("post", "/api/bounds", {"sample": 0, "eps": 2}, 400),
    ("post", "/api/bounds", {"sample": 0, "eps": "big"}, 400),
    ("post", "/api/lens/robustness/certify", {"sample": 0, "eps": 0.01, "label": 10}, 400),
    ("post", "/api/lens/robustness/certify", {"sample": 0, "eps": 0.01, "label": -1}, 400),
    ("post", "/api/lens/robustness/certify", {"sample": 0, "epsilon": 0.01}, 400),
    ("post", "/api/lens/robustness/certify", {"eps": 0.01}, 400),
    ("get", "/api/lens/robustness/robust?eps=1.5", None, 400),
    ("get", "/api/lens/robustness/robust?eps=nan", None, 400),
    ("get", "/api/lens/robustness/robust?eps=", None, 400),
    ("post", "/api/lens/robustness/robust", {"eps": 0.01, "sample": 0}, 400),
    ("post", "/api/lens/neurons", {"layer": 0, "neuron": 0}, 400),
    ("post", "/api/lens/neurons", {"layer": 3, "neuron": 0}, 400),
    ("post", "/api/lens/neurons", {"layer": 1, "neuron": 3}, 400),
    ("post", "/api/lens/neurons", {"layer": "a", "neuron": "b"}, 400),
    ("get", "/api/lens/nothing", None, 404),
    ("get", "/api/lens/robustness/nothing", None, 404),
    ("post", "/api/rename", {"layer": 1, "neuron": 0}, 400),
    ("post", "/api/rename", {"layer": 1, "neuron": 5, "name": "x"}, 400),
    ("post", "/api/rename", {"layer": 1, "neuron": 0, "name": 3}, 400),
    ("post", "/api/rename", {"layer": 1, "neuron": 0, "name": "x" * 61}, 400),
    ("post", "/api/rename", {"layer": 1, "neuron": 0, "name": "a\nb\x00"}, 400),
    ("post", "/api/rename", {"layer": 1, "neuron": 0, "name": "x", "path": "/tmp"}, 400),
    ("post", "/api/lens/trace", {"sample": 0, "target": 10}, 400),
    ("get", "/api/lens/signatures?eps=-1", None, 400),
    ("get", "/api/nothing", None, 404),
    ("get", "/api/forward", None, 405),
    ("post", "/api/model", {}, 405),
    ("post", "/api/forward", b'{"x": "' + b"0" * 300_000 + b'"}', 413),
]


@pytest.mark.parametrize("method,url,body,status", BAD, ids=[f"{m}-{u}-{i}" for i, (m, u, _, _) in enumerate(BAD)])
def test_malformed_requests_get_4xx_json(client, method, url, body, status):
    """Each malformed request gets its 4xx status and {"error": message}, never a traceback."""
    kw = {}
    if isinstance(body, bytes):
        kw = {"content": body, "headers": {"content-type": "application/json"}}
    elif body is not None:
        kw = {"json": body}
    r = getattr(client, method)(url, **kw)
    assert r.status_code == status, r.text
    d = r.json()
    assert set(d) == {"error"} and d["error"] and "Traceback" not in d["error"]


def test_internal_errors_are_json_without_traceback(seed, monkeypatch):
    """A bug inside a handler answers 500 with a one-line JSON error, not a traceback."""
    e = Explorer(seed, config=ExplorerConfig(lenses=NO_SWEEP))
    monkeypatch.setattr(e, "forward_payload", lambda *a, **k: 1 / 0)
    try:
        with TestClient(create_app(e, warm=False), raise_server_exceptions=False) as c:
            r = c.post("/api/forward", json={"sample": 0})
            assert r.status_code == 500 and "ZeroDivisionError" in r.json()["error"] and "Traceback" not in r.text
    finally:
        e.close()


# ---------------------------------------------------------------------------------------------
# Static export


def test_choose_samples_is_balanced():
    """Exported samples: the first of each class, as evenly as the classes allow, sorted."""
    y = np.array([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    assert choose_samples(y, 6, 3).tolist() == [0, 1, 2, 3, 4, 6]
    assert choose_samples(y, 20, 3).tolist() == list(range(10))


def test_export_writes_the_live_payloads(tmp_path, seed, ex):
    """export_site writes index.html, the modules, plotly, and per-sample JSON equal to the live
    payloads: forward pass, certificates at every grid eps, traces; core holds the neuron panels."""
    cfg = ExplorerConfig(lenses={"robustness": {"images": 10, "eps": (0.01,)}, "signatures": {"per_digit": 3}})
    res = export_site_report(seed, tmp_path / "site", n_samples=4, eps_grid=(0.0, 0.02), config=cfg)
    out = tmp_path / "site"
    assert Path(res["index"]) == out / "index.html" and res["n_samples"] == 4
    for f in ("index.html", "config.js", "static/main.js", "static/style.css", "vendor/plotly.min.js",
              "data/core.json", "data/core.js"):
        assert (out / f).is_file(), f
    assert (out / "index.html").read_bytes() == (static_dir() / "index.html").read_bytes()
    conf = (out / "config.js").read_text()
    assert '"mode": "static"' in conf and "data:text/javascript;base64," in conf
    core = json.loads((out / "data/core.json").read_text())
    idx = core["samples"]["indices"]
    assert idx == choose_samples(ex.data.y, 4, 10).tolist() and core["eps_grid"] == [0.0, 0.02]
    assert [l["name"] for l in core["model"]["lenses"]] == [l["name"] for l in lens_catalog()]
    neurons = json.loads((out / "data/lens-neurons.json").read_text())["main"]
    keys = [canonical_key({"layer": l, "neuron": j}) for l in (1, 2) for j in range(3)]
    assert sorted(neurons) == sorted(keys) and neurons[keys[0]]["report"]["status"] == "ready"
    rob = json.loads((out / "data/lens-robustness.json").read_text())
    assert rob["sweep"]["{}"]["status"] == "ready"
    assert json.loads((out / "data/lens-signatures.json").read_text())["main"]["{}"]["status"] == "ready"
    i = idx[1]
    sp = json.loads((out / f"data/sample-{i}.json").read_text())
    live = ex.forward_payload(ex.data.x[i], i)
    assert sp["forward"]["logits"] == live["logits"] and sp["forward"]["diagram"] == live["diagram"]
    for g, eps in enumerate(core["eps_grid"]):
        ref = certify(seed.network, ex.data.x[i:i + 1], ex.data.y[i:i + 1], eps)[0]
        key = canonical_key({"eps": eps})
        assert sp["lens"]["robustness/certify"][key]["status"] == ref.status.value and sp["bounds"][g]["eps"] == eps
        assert rob["robust"][key]["codes"][1] == ref.status.value[0]
    traces = sp["lens"]["trace/main"]
    assert sorted(traces) == sorted(canonical_key({"target": k}) for k in [None, *range(10)])
    assert [traces[canonical_key({"target": k})]["target"] for k in range(10)] == list(range(10))
    js = (out / f"data/sample-{i}.js").read_text()
    assert js.startswith(f'polylensData("sample-{i}",') and json.loads(js[js.index(",") + 1:js.rindex(")")]) == sp


def test_report_writer_puts_the_site_next_to_the_report(tmp_path, seed):
    """report_writer (for polylens demo's EXTRA_WRITERS) writes out/explorer/index.html and lists its files."""
    from types import SimpleNamespace

    from polylens.explorer.export import report_writer

    files = report_writer(SimpleNamespace(model=seed, out=tmp_path), n_samples=2,
                          config=ExplorerConfig(lenses={"robustness": {"images": 4, "eps": (0.01,)},
                                                        "signatures": {"per_digit": 2}}))
    assert tmp_path / "explorer" / "index.html" in files and all(f.is_file() for f in files)


def test_cli_export_site(tmp_path):
    """`polylens export-site MODEL OUT` writes OUT/index.html and reports it as JSON."""
    from polylens.cli import main

    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export-site", "seed", str(tmp_path / "s"), "--samples", "2", "--eps-grid", "0.01",
                   "--set", "robustness.images=5", "--json"])
    assert rc == 0
    d = json.loads(buf.getvalue())
    assert d["n_samples"] == 2 and (tmp_path / "s" / "index.html").is_file() and d["eps_grid"] == [0.01]
    assert main(["export-site", "seed", str(tmp_path / "t"), "--eps-grid", "0.5,2"]) == 2


def test_cli_serve_prints_the_url_and_serves(tmp_path):
    """`polylens serve MODEL --port 0` binds 127.0.0.1, prints its URL and answers there; a bad model
    is one error line and exit status 2."""
    import subprocess
    import sys
    import urllib.request

    code = "from polylens.cli import main; raise SystemExit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "seed", "--port", "0", "--set", "robustness.images=0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("polylens explorer at http://127.0.0.1:") and line.rstrip().endswith("/")
        url = line.split()[-1]
        with urllib.request.urlopen(url + "api/model", timeout=20) as r:
            assert json.loads(r.read())["architecture"] == "49-3-3-10"
        with urllib.request.urlopen(url, timeout=20) as r:
            assert b"polylens explorer" in r.read()
    finally:
        proc.terminate()
        proc.wait(20)
    bad = subprocess.run([sys.executable, "-c", code, "serve", str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("polylens: error: ") and bad.stderr.count("\n") == 1


def test_model_without_data_or_image_grid():
    """A network with no test split and a flat 10-wide input still serves drawn inputs (forward,
    bounds, certify, trace); sample requests are 400 and the data-driven analyses say why."""
    net = random_network((10, 8, 3), "tanh", seed=2)
    e = Explorer(Model(net, card_for_network(net)), config=ExplorerConfig(lenses={"robustness": {"images": 5}}))
    try:
        with TestClient(create_app(e, warm=False)) as c:
            m = c.get("/api/model").json()
            assert m["n_samples"] == 0 and m["input_shape"] == [10] and "dataset 'unknown'" in m["data_note"]
            x = [0.5] * 10
            f = c.post("/api/forward", json={"x": x}).json()
            assert f["prediction"] == int(net.predict(np.array([x]))[0])
            assert c.post("/api/bounds", json={"x": x, "eps": 0.1}).status_code == 200
            assert c.post(lens_url("robustness", "certify"), json={"x": x, "eps": 0.0}).json()["status"] == "verified"
            assert len(c.post(lens_url("trace"), json={"x": x}).json()["equations"]) == 1
            r = c.post("/api/forward", json={"sample": 0})
            assert r.status_code == 400 and "send 'x' instead" in r.json()["error"]
            assert c.post(lens_url("robustness", "sweep"), json={}).json()["status"] == "disabled"
            n = poll(c, "neurons", body={"layer": 1, "neuron": 0})
            assert n["report"]["status"] == "error" and "needs test images" in n["report"]["error"]
            assert n["suggestion"] is None
            s = poll(c, "signatures")
            assert s["status"] == "error" and "needs test images" in s["error"]
    finally:
        e.close()
