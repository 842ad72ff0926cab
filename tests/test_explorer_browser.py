"""The explorer in a real browser (Playwright + Debian's chromium): tooltips, the neuron panel, renaming
that persists to the model card, painting, the eps slider, URL state, a wide network, and the static
export loading with no console errors and no request leaving the machine.

Screenshots of every view go to $POLYLENS_ARTIFACTS (or the test's tmp_path)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from polylens.explorer.api import Explorer, ExplorerConfig
from polylens.lenses import get_lens
from polylens.nn.model import Model, card_for_network, load_model, save_model
from polylens.nn.network import Network

from conftest import random_network

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():  # pragma: no cover - ./dev setup installs it
    pytest.fail(f"The browser tests need Debian's chromium at {CHROMIUM} (./dev setup installs it).",
                pytrace=False)
sync_api = pytest.importorskip("playwright.sync_api")

CFG = ExplorerConfig(lenses={"robustness": {"images": 10, "eps": (0.01,), "chunk": 10}, "signatures": {"per_digit": 3}},
                     time_limit=1.0)
LOCAL = {"127.0.0.1", "localhost", "::1", "[::1]"}


def artifacts(tmp_path_factory) -> Path:
    d = os.environ.get("POLYLENS_ARTIFACTS")
    p = Path(d) if d else tmp_path_factory.getbasetemp() / "screenshots"
    p.mkdir(parents=True, exist_ok=True)
    return p


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return artifacts(tmp_path_factory)


class ServerThread:
    """uvicorn serving an app on a free port of 127.0.0.1, in a thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            assert time.monotonic() - t0 < 60, "the explorer server did not start"
            time.sleep(0.02)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def live_app(model, **kw):
    from polylens.explorer.server import create_app

    ex = Explorer(model, config=CFG, **kw)
    return create_app(ex), ex


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A copy of the seed model as a model directory, so renames go to its card on disk."""
    d = tmp_path_factory.mktemp("model") / "seed-copy"
    save_model(load_model("seed"), d)
    return d


@pytest.fixture(scope="module")
def server(model_dir):
    app, ex = live_app(load_model(model_dir))
    s = ServerThread(app)
    yield s
    s.stop()
    ex.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


class Page:
    """A page with its console errors and requests recorded."""

    def __init__(self, browser, url):
        self.ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.ctx.new_page()
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=30_000)

    def close(self):
        self.ctx.close()


@pytest.fixture
def page(browser, server):
    p = Page(browser, server.url)
    yield p.page
    assert not p.errors, p.errors
    p.close()


def wait_cert(page, eps: float, timeout=30_000):
    page.wait_for_function(f"document.querySelector('#cert-status').dataset.eps === '{eps}' && "
                           "!document.querySelector('#cert-status [data-status=pending]')", timeout=timeout)


def set_slider(page, value: str):
    page.locator("#eps").evaluate("(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true}));"
                                  " el.dispatchEvent(new Event('change', {bubbles: true})); }", value)


# ---------------------------------------------------------------------------------------------


def test_hover_shows_tooltips(page, shots):
    """Hovering a neuron shows its name, activations, bounds at eps and envelope cuts; a pixel its value and box."""
    page.wait_for_function("window.polylensApp.diagram.bounds !== null")
    page.hover("#diagram circle[data-key='L1.n0']")
    tip = page.locator("#tooltip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert "L1.n0" in text and "pre-activation a =" in text and "post-activation z =" in text
    assert "bounds at ε = 0.0100" in text and "envelope:" in text and ("z ≥" in text and "z ≤" in text)
    assert page.locator("#tooltip svg.envplot polyline.curve").count() == 1
    page.screenshot(path=shots / "tooltip-neuron.png", clip={"x": 0, "y": 0, "width": 1400, "height": 700})
    page.hover("#diagram rect[data-key='x[24]']")
    text = tip.inner_text()
    assert "pixel x[24]" in text and "row 3, col 3" in text and "box at ε = 0.0100" in text
    page.hover("#diagram circle[data-key='logit[3]']")
    assert "logit bounds at ε" in tip.inner_text()


def test_click_opens_neuron_panel(page, shots):
    """Clicking a neuron opens its panel: map, LP maximiser and minimiser, test images, histogram, suggestion."""
    page.click("#diagram circle[data-key='L1.n1']")
    page.wait_for_selector("#neuron-view[data-ready='L1.n1']", timeout=120_000)
    panel = page.locator("#neuron-view")
    text = panel.inner_text()
    assert "LP maximiser" in text and "LP minimiser" in text and "most activating test images" in text
    assert "suggested name:" in text and "score" in text
    assert page.locator("#neuron-view .thumbs.top .thumb").count() == get_lens("neurons").make_options().top
    page.wait_for_selector("#neuron-hist .main-svg")
    assert "n=L1.n1" in page.url
    page.mouse.move(5, 5)
    page.screenshot(path=shots / "neuron-panel.png", full_page=True)
    # A top image opens that sample.
    first = page.locator("#neuron-view .thumbs.top .thumb").first
    i = first.get_attribute("data-sample")
    first.click()
    page.wait_for_function(f"document.body.dataset.input === 'sample:{i}'")


def test_rename_persists_to_the_card(browser, server, model_dir, shots):
    """A rename shows in the diagram at once, survives a reload, and is in the model card on disk."""
    p = Page(browser, server.url + "#n=L2.n2")
    page = p.page
    page.wait_for_selector("#neuron-view[data-ready='L2.n2']", timeout=30_000)
    page.fill("#rename-input", "Closed loop")
    page.click("#rename-save")
    page.wait_for_function("document.querySelector('#rename-msg').textContent.startsWith('saved')")
    assert page.locator("#diagram .node-label", has_text="Closed loop").count() == 1
    assert "Closed loop" in page.inner_text("#neuron-title")
    page.wait_for_function("[...document.querySelectorAll('#trace-diagram .node-label')].some(e => e.textContent === 'Closed loop')")
    card = json.loads((model_dir / "card.json").read_text())
    assert card["neuron_names"]["L2.n2"] == "Closed loop"
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#diagram .node-label", has_text="Closed loop").count() == 1
    page.screenshot(path=shots / "renamed.png", clip={"x": 0, "y": 0, "width": 1400, "height": 700})
    assert not p.errors, p.errors
    p.close()


def test_painting_changes_the_prediction(page, server, shots):
    """Painting ink on the input changes the prediction shown, which is the network's on the painted input."""
    page.wait_for_function("document.body.dataset.input === 'sample:0'")
    before = page.inner_text("#pred-class")
    box = page.locator("#painter").bounding_box()
    cell = box["width"] / 7
    page.mouse.move(box["x"] + 6.5 * cell, box["y"] + 0.5 * cell)
    page.mouse.down()
    for r in range(1, 7):
        page.mouse.move(box["x"] + 6.5 * cell, box["y"] + (r + 0.5) * cell, steps=2)
    page.mouse.up()
    page.wait_for_function(f"document.querySelector('#pred-class').textContent !== '{before}'", timeout=10_000)
    after = int(page.inner_text("#pred-class"))
    x = page.evaluate("window.polylensApp.state.x")
    assert [x[r * 7 + 6] for r in range(7)] == [1.0] * 7
    net = load_model("seed").network
    assert after == int(net.predict(np.array([x]))[0]) != int(before)
    assert "x=" in page.url and "drawn input" in page.inner_text("#sample-counter")
    page.screenshot(path=shots / "painted.png", clip={"x": 0, "y": 0, "width": 1400, "height": 700})


def test_slider_updates_the_status(page, shots):
    """Moving the eps slider re-runs the check: sample 0 is verified at 0.01 and falsified at 0.05."""
    wait_cert(page, 0.01)
    assert page.locator("#cert-status [data-status]").get_attribute("data-status") == "verified"
    for v in ("0.02", "0.03", "0.04", "0.05"):  # a drag: stale checks are aborted, the last one wins
        set_slider(page, v)
    wait_cert(page, 0.05)
    assert page.locator("#cert-status [data-status]").get_attribute("data-status") == "falsified"
    assert page.locator("#counterexample svg.img").count() >= 1
    assert "eps=0.05" in page.url
    page.screenshot(path=shots / "robustness.png", clip={"x": 1000, "y": 0, "width": 400, "height": 700})


def test_navigation_filters_and_url_state(browser, server):
    """Loading a link restores sample, eps and panel; 'misclassified' navigation visits only misclassified samples."""
    p = Page(browser, server.url + "#s=17&eps=0.02&n=L1.n2")
    page = p.page
    page.wait_for_function("document.body.dataset.input === 'sample:17'")
    assert page.input_value("#eps") == "0.02"
    page.wait_for_selector("#neuron-view[data-ready='L1.n2']", timeout=30_000)
    page.check("#filter-mis")
    for _ in range(3):
        page.click("#next")
        page.wait_for_function("document.body.dataset.input !== 'sample:17'")
        app_state = page.evaluate("[window.polylensApp.fwd.label, window.polylensApp.fwd.prediction]")
        assert app_state[0] != app_state[1]
    assert "m=1" in page.url
    assert not p.errors, p.errors
    p.close()


def test_views_screenshots(page, shots):
    """Every view renders from the server's results (curves, trace, signatures, prototypes and their
    strip, the findings panel, the counterfactuals with their gap figure)."""
    page.wait_for_selector("#curves-plot .main-svg", timeout=60_000)
    page.wait_for_selector("#signature-grid svg.img", timeout=60_000)
    page.wait_for_selector("#prototype-grid svg.img", timeout=60_000)
    assert page.locator("#signature-grid .sig-card").count() == 10
    # the prototype strip: one row per digit, the start and one prototype per radius of the strip
    page.wait_for_selector("#prototype-strip table.proto-strip tbody tr", timeout=60_000)
    assert page.locator("#prototype-strip tbody tr").count() == 10
    # the findings panel (the generic view of the findings lens): one row per claim, with its verdict
    page.wait_for_selector("#findings-view[data-ready='1'] table.lens-table", timeout=120_000)
    text = page.inner_text("#findings-view")
    assert page.locator("#findings-view table.lens-table").first.locator("tbody tr").count() == 7
    assert "Digit 1 remains highly robust" in text and ("holds" in text or "partly" in text)
    # the counterfactual gap figure (generic view of the counterfactuals lens)
    page.wait_for_selector("#counterfactuals-view[data-ready='1'] img", timeout=120_000)
    page.click("#trace-classes button[data-class='5']")
    page.wait_for_function("document.querySelector('#trace-equations').textContent.includes('logit[5] =')")
    assert page.locator("#trace-diagram circle.neuron").count() == 6 + 1
    page.screenshot(path=shots / "live-full.png", full_page=True)


def test_wide_network(browser, tmp_path, shots):
    """A 49-64-64-10 ReLU network draws a readable diagram: 16 neurons per layer and a '+48 more' node."""
    net = random_network((49, 64, 64, 10), "relu", seed=1)
    net = Network(net.layers, net.activations, (7, 7))
    save_model(Model(net, card_for_network(net)), tmp_path / "wide")
    app, ex = live_app(load_model(tmp_path / "wide"))
    s = ServerThread(app)
    try:
        p = Page(browser, s.url)
        page = p.page
        assert page.locator("#diagram circle.neuron[data-key^='L1.']").count() == 16
        assert page.locator("#diagram rect.more-node").count() == 2
        assert page.locator("#diagram .node-label", has_text="+48 more").count() == 2
        page.hover("#diagram rect.more-node >> nth=0")
        assert "folded" in page.inner_text("#tooltip")
        page.mouse.move(5, 5)
        page.screenshot(path=shots / "wide-network.png", clip={"x": 0, "y": 0, "width": 1400, "height": 700})
        assert not p.errors, p.errors
        p.close()
    finally:
        s.stop()
        ex.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from polylens.explorer.export import export_site

    out = tmp_path_factory.mktemp("site")
    export_site(load_model("seed"), out, n_samples=6, eps_grid=(0.0, 0.01, 0.05),
                config=ExplorerConfig(lenses={"robustness": {"images": 10, "eps": (0.0, 0.01)},
                                              "signatures": {"per_digit": 3}}))
    return out


def check_local(requests):
    bad = [u for u in requests if urlparse(u).scheme not in ("file", "data", "blob") and urlparse(u).hostname not in LOCAL]
    assert not bad, f"requests leaving the machine: {bad}"


def static_page_checks(p: Page, shots: Path, name: str):
    page = p.page
    assert page.locator("#diagram circle.neuron").count() == 6 + 10  # a circle per neuron and logit
    assert page.locator("#diagram rect.pixel").count() == 49
    assert page.inner_text("#mode-badge") == "static export"
    page.wait_for_selector("#cert-status [data-status=verified]")
    set_slider(page, "2")  # the grid's third radius, 0.05
    page.wait_for_selector("#cert-status [data-status=falsified]")
    assert "precomputed at export" in page.inner_text("#cert-detail")
    page.click("#next")
    page.wait_for_function("document.body.dataset.input !== 'sample:0'")
    page.hover("#diagram circle[data-key='L1.n0']")
    page.wait_for_function("document.querySelector('#tooltip').textContent.includes('bounds at ε = 0.0500')")
    page.click("#diagram circle[data-key='L1.n0']")
    page.wait_for_selector("#neuron-view[data-ready='L1.n0']")
    assert "Painting needs the live server" in page.inner_text("#paint-note")
    page.wait_for_selector("#curves-plot .main-svg")
    page.mouse.move(5, 5)
    page.screenshot(path=shots / f"{name}.png", full_page=True)
    check_local(p.requests)
    assert not p.errors, p.errors


def test_static_export_over_http(browser, site, shots):
    """The export served by a plain static server loads with no console error and only local requests."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        p = Page(browser, f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
        static_page_checks(p, shots, "static-http")
        assert any(u.endswith("/static/main.js") for u in p.requests)  # modules as files over http
        p.close()
    finally:
        httpd.shutdown()


def test_static_export_from_disk(browser, site, shots):
    """The export opened from disk (file://) works too: modules come inline, data through script tags."""
    p = Page(browser, (site / "index.html").as_uri())
    static_page_checks(p, shots, "static-file")
    p.close()


def test_a_registered_lens_gets_a_view(browser, model_dir, shots):
    """A lens registered with one line (tests/example_lens.py, no module of its own) appears on the page
    as the generic view: its report section's table, computed by the server."""
    import example_lens
    from polylens.lenses import register, unregister

    lens = register(example_lens.MEAN_INPUT)
    try:
        app, ex = live_app(load_model(model_dir))
        s = ServerThread(app)
        try:
            p = Page(browser, s.url)
            page = p.page
            page.wait_for_selector("#mean-input-view[data-ready='1'] table.lens-table", timeout=60_000)
            assert page.locator("#mean-input-view table.lens-table tbody tr").count() == 10
            assert "Mean inputs" in page.inner_text("#mean-input-view")
            page.locator("#mean-input-view").screenshot(path=str(shots / "generic-view.png"))
            assert not p.errors, p.errors
            p.close()
        finally:
            s.stop()
            ex.close()
    finally:
        unregister(lens.name)
