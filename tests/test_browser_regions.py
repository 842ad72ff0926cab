"""The polytope lens's explorer view in a real browser (Debian's chromium): the slice (hovering a
region shows its pattern), the path (hovering a crossing lights up the flipping neurons in the
network diagram), the 3-D hidden spaces (plotly), and the static export carrying all three."""

from __future__ import annotations

import pytest

from polylens.explorer.api import ExplorerConfig
from polylens.nn.model import load_model

from test_explorer_browser import CHROMIUM, Page, ServerThread, check_local, sync_api, browser  # noqa: F401 (shared fixtures)

CFG = ExplorerConfig(lenses={"robustness": {"images": 10, "eps": (0.01,), "chunk": 10}, "signatures": {"per_digit": 3}},
                     time_limit=1.0)



@pytest.fixture(scope="module")
def server():
    from polylens.explorer.api import Explorer
    from polylens.explorer.server import create_app

    ex = Explorer(load_model("seed-relu"), config=CFG)
    s = ServerThread(create_app(ex))
    yield s
    s.stop()
    ex.close()


def _check_view(page):
    page.wait_for_selector("#regions-slice polygon.region", timeout=60_000)
    page.locator("#regions-slice").scroll_into_view_if_needed()
    # the centroid of the largest region, in page coordinates (the SVG's viewBox is its pixel size)
    x, y, want = page.evaluate("""() => {
      const svg = document.querySelector('#regions-slice'), r = svg.getBoundingClientRect();
      let best = null, area = -1;
      for (const p of svg.querySelectorAll('polygon.region')) {
        const b = p.getBBox();
        if (b.width * b.height > area) { area = b.width * b.height; best = p; }
      }
      const pts = [...best.points];
      const cx = pts.reduce((a, q) => a + q.x, 0) / pts.length, cy = pts.reduce((a, q) => a + q.y, 0) / pts.length;
      return [r.left + cx, r.top + cy, best.dataset.pattern];
    }""")
    page.mouse.move(x, y)
    page.wait_for_selector("#regions-hover-pattern")
    assert page.inner_text("#regions-hover-pattern") == want
    assert "affine map on it" in page.inner_text("#regions-hover")
    page.wait_for_selector("#regions-hidden-1 .js-plotly-plot, #regions-hidden-1.js-plotly-plot", timeout=60_000)
    page.wait_for_selector("#regions-hidden-2", timeout=60_000)


def test_live_view(browser, server, tmp_path):
    """Live: hovering a slice region shows its pattern and affine map; hovering a crossing on the path
    names the flipping neurons and lights them up in the diagram; both 3-D hidden spaces render."""
    p = Page(browser, server.url + "#s=3")  # test sample 3's path to sample 0 crosses a boundary
    page = p.page
    _check_view(page)
    page.wait_for_function("document.querySelectorAll('#regions-path-svg line.regions-tick').length > 0",
                           timeout=30_000)
    page.locator("#regions-path-svg line.regions-tick").first.hover(force=True)
    page.wait_for_selector("#regions-flipped")
    flipped = page.inner_text("#regions-flipped").split(", ")
    assert flipped and all(k.startswith("L") for k in flipped)
    assert page.locator(f"#diagram [data-key='{flipped[0]}'].regions-flip").count() >= 1
    page.locator("#regions-view").screenshot(path=str(tmp_path / "regions-view.png"))
    assert not p.errors, p.errors
    p.close()


def test_static_export_has_the_views(browser, tmp_path):
    """The static export (opened from disk) shows the slice, the path and the 3-D spaces with no
    console error and no request leaving the machine."""
    from polylens.explorer.export import export_site

    out = tmp_path / "site"
    export_site(load_model("seed-relu"), out, n_samples=3, eps_grid=(0.0, 0.01),
                config=ExplorerConfig(lenses={"robustness": {"images": 6, "eps": (0.0, 0.01)},
                                              "signatures": {"per_digit": 2}, "findings": {"images": 10, "per_digit": 2},
                                              "counterfactuals": {"tighten": 0}}))
    p = Page(browser, (out / "index.html").as_uri())
    page = p.page
    _check_view(page)
    page.wait_for_selector("#regions-path-svg", timeout=30_000)
    check_local(p.requests)
    assert not p.errors, p.errors
    p.close()
