"""The truncation view in a real browser (Debian's chromium, headless): a toy set moving through the
maps one step at a time with its cones drawn, a hovered point followed through every map, the seed's
identities and flow; live and in the static export opened from disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from polylens.explorer.api import Explorer, ExplorerConfig
from polylens.nn.model import load_model

from test_explorer_browser import CHROMIUM, Page, ServerThread, artifacts, check_local, browser, shots  # noqa: F401 (shared fixtures)

sync_api = pytest.importorskip("playwright.sync_api")




def _only_truncation(monkeypatch):
    """Keep the page to the truncation view (the other lenses have browser tests of their own)."""
    import polylens.lenses as L

    mine = tuple(l for l in L.all_lenses() if l.name == "truncation")
    monkeypatch.setattr(L, "all_lenses", lambda: mine)


def _check_view(p: Page, shots: Path, name: str) -> None:
    page = p.page
    page.wait_for_selector("#truncation-toy[data-ready='sls'] .flow-svg", timeout=30_000)
    flow = "#truncation-toy-flow"
    assert page.locator(f"{flow} .flow-point").count() == 120
    assert page.locator(f"{flow} .cone-base").count() == 0  # the input step has no cone
    page.dispatch_event(f"{flow} circle.flow-point[data-i='3']", "mouseenter")  # points overlap: no pointer
    page.wait_for_function("document.querySelector('#truncation-toy-flow-follow').dataset.point === '3'")
    page.click(f"{flow} button.flow-step[data-step='1']")
    page.wait_for_selector(f"{flow} svg[data-step='1']")
    assert page.locator(f"{flow} .cone-base").count() == 1 and page.locator(f"{flow} .cone-edge").count() == 2
    assert page.locator(f"{flow} polygon.cone-forward").count() == 1
    assert "60 collapsed" in page.inner_text(flow)
    text = page.inner_text("#truncation-toy-flow-follow")
    assert "point #3" in text and "map 1:" in text and "map 2:" in text
    assert page.locator("#truncation-path").count() == 1  # the hovered point's path through the steps
    page.click(f"{flow} button.flow-next")
    page.wait_for_selector(f"{flow} svg[data-step='2']")
    page.select_option("#truncation-toy-select", "rings")
    page.wait_for_selector("#truncation-toy[data-ready='rings'] .flow-svg")
    assert "lifted" in page.inner_text("#truncation-toy")
    page.wait_for_selector("#truncation-model[data-ready='1'] #truncation-identities")
    rows = page.locator("#truncation-identities tbody tr")
    assert rows.count() == 3 and page.locator("#truncation-identities tr[data-holds='1']").count() == 3
    assert "ReLU only" in page.inner_text("#truncation-model")  # the seed is GELU
    page.click("#truncation-model-flow button.flow-step[data-step='2']")
    page.wait_for_selector("#truncation-model-flow svg[data-step='2']")
    page.locator("#truncation-view").screenshot(path=str(shots / f"{name}.png"))
    assert not p.errors, p.errors


def test_truncation_view_live(browser, shots, monkeypatch):
    """Served live: the toy flow steps, draws the cone of each map, follows a hovered point; the seed's
    identities all hold and its flow steps too."""
    from polylens.explorer.server import create_app

    _only_truncation(monkeypatch)
    ex = Explorer(load_model("seed"), config=ExplorerConfig())
    s = ServerThread(create_app(ex))
    try:
        p = Page(browser, s.url)
        _check_view(p, shots, "truncation-live")
        p.close()
    finally:
        s.stop()
        ex.close()


def test_truncation_view_static_export(browser, shots, tmp_path, monkeypatch):
    """In the static export opened from disk the same view works from precomputed answers (every toy
    set of the payload's grid), with only local requests."""
    from polylens.explorer.export import export_site

    _only_truncation(monkeypatch)
    index = export_site(load_model("seed"), tmp_path / "site", n_samples=4, eps_grid=(0.0,))
    p = Page(browser, index.as_uri())
    _check_view(p, shots, "truncation-static")
    check_local(p.requests)
    p.close()
