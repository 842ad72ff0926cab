"""The bases view in a real browser (Debian's chromium): on the live server it draws the seed's bases
(table, strip, picture, curves), switches basis and vector, and switches to a bundled wide model; in the
static export it draws the precomputed layers with no console error and no request leaving the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from polylens.explorer.api import ExplorerConfig
from polylens.nn.model import load_model

from test_explorer_browser import (  # noqa: F401 (browser and shots are shared fixtures)
    CHROMIUM, Page, ServerThread, artifacts, check_local, live_app, browser, shots)

sync_api = pytest.importorskip("playwright.sync_api")

CFG = {"robustness": {"images": 4, "eps": (0.01,), "chunk": 4}, "signatures": {"per_digit": 2},
       "bases": {"components": 4, "ablation_points": 9, "strips": 3}}




@pytest.fixture(scope="module")
def server():
    from polylens.explorer.api import Explorer
    from polylens.explorer.server import create_app

    ex = Explorer(load_model("seed"), config=ExplorerConfig(lenses=CFG, time_limit=1.0))
    s = ServerThread(create_app(ex))
    yield s
    s.stop()
    ex.close()


def test_live_bases_view(browser, server, shots):
    """The view shows the seed's layer-1 bases with its degenerate note, a strip of 8 images, a weight
    picture and both plots; picking the neuron basis and vector 2 redraws the strip (the bundled wide
    models are checked through the payload in test_bases.py)."""
    p = Page(browser, server.url)
    page = p.page
    page.wait_for_selector("#bases-table tbody tr[data-basis='pca']", timeout=60_000)
    assert "only 3 neurons" in page.inner_text("#bases-degenerate")
    assert page.locator("#bases-strip figure").count() == 8
    assert page.locator("#bases-picture svg, #bases-picture canvas").count() == 1
    page.wait_for_selector("#bases-variance .main-svg")
    page.wait_for_selector("#bases-ablation .main-svg")
    page.select_option("#bases-basis", "neuron")
    page.wait_for_selector("#bases-strip[data-basis='neuron'][data-component='0']")
    page.select_option("#bases-component", "1")
    page.wait_for_selector("#bases-strip[data-basis='neuron'][data-component='1']")
    page.locator("#bases-view").screenshot(path=shots / "bases-seed.png")
    check_local(p.requests)
    assert not p.errors, p.errors
    p.close()


def test_static_export_has_the_bases_view(browser, tmp_path, shots):
    """The static export precomputes the seed's two layers; opened from disk, the view draws layer 1 and,
    after picking layer 2, layer 2."""
    from polylens.explorer.export import export_site

    from polylens.lenses import all_lenses

    quick = {l.name: dict(l.quick) for l in all_lenses() if l.view is not None}  # the other views, quickly
    quick.update({**CFG, "robustness": {**quick.get("robustness", {}), "images": 2, "eps": (0.0, 0.01)}})
    export_site(load_model("seed"), tmp_path, n_samples=2, eps_grid=(0.0, 0.01), config=ExplorerConfig(lenses=quick))
    p = Page(browser, (tmp_path / "index.html").as_uri())
    page = p.page
    page.wait_for_selector("#bases-table tbody tr[data-basis='pca']", timeout=60_000)
    page.select_option("#bases-layer", "2")
    page.wait_for_function("document.querySelector('#bases-view').innerText.includes('layer 2 (before')",
                           timeout=30_000)
    assert page.locator("#bases-strip figure").count() == 8
    page.locator("#bases-view").screenshot(path=shots / "bases-static.png")
    check_local(p.requests)
    assert not p.errors, p.errors
    p.close()
