"""`polylens demo` end to end on a small subset: the files it writes, the same numbers on every run,
the command line contract, and the report as a browser shows it (headless chromium, screenshots)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from polylens.cli.demo import run_demo
from polylens.lenses import report_lenses

from conftest import run_cli

from test_report import assert_self_contained

#: The sections of the report: one per lens of the report, in registry order.
SECTION_IDS = tuple(l.name for l in report_lenses())
#: Test images per stage: small enough for seconds, large enough for every digit.
N = 80
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two independent runs on the first N test images, in two directories: the demo in Python, and
    `polylens report seed` on the command line (the same analyses with the same options)."""
    a = tmp_path_factory.mktemp("demo-a")
    b = tmp_path_factory.mktemp("report-b")
    steps: list[str] = []
    ra = run_demo(a, steps.append, n=N, workers=1)
    code, out, err = run_cli("report", "seed", "--out", b, "--n", N, "--workers", 1, "--json")
    assert code == 0, err
    rb = json.loads(out)
    return a, b, ra, rb, steps


def test_demo_writes_the_report_and_its_files(runs):
    """The demo writes report.html (self-contained, every section), figures, CSV tables, JSON data,
    demo.json and timings.json, announces each stage, and no stage fails."""
    a, _, ra, _, steps = runs
    assert ra.errors == {}
    assert ra.report == a / "report.html" and ra.report.is_file()
    assert_self_contained(ra.report.read_text(encoding="utf-8"))
    for name in ("robustness", "signature-maps", "signature-overlays", "signature-tightness", "prototypes",
                 "neuron-L1.n0", "trace-digit-0"):
        assert (a / "figures" / f"{name}.png").is_file(), name
    assert (a / "figures" / "robustness.svg").is_file()
    for sid in SECTION_IDS:
        assert (a / "data" / f"{sid}.json").is_file()
    assert (a / "tables" / "robustness-overall.csv").is_file() and (a / "tables" / "formulas.csv").is_file()
    demo = json.loads((a / "demo.json").read_text())
    assert demo["report"] == str(a / "report.html") and demo["test_accuracy"] > 0.7
    timings = json.loads((a / "timings.json").read_text())
    assert set(SECTION_IDS) <= set(timings) and timings["total"] > 0
    assert any("robustness" in s for s in steps) and any("report" in s for s in steps)
    assert all(Path(f).exists() for f in ra.files)
    # The explorer's static site is written next to the report.
    assert (a / "explorer" / "index.html").is_file()


def test_demo_numbers_are_reproducible(runs):
    """The demo and `polylens report seed` on the same images write byte-identical JSON data and CSV
    tables (every analysis is deterministic), and the same figures and section ids."""
    a, b, _, rb, _ = runs
    assert rb["errors"] == {} and rb["report"] == str(b / "report.html")
    assert_self_contained((b / "report.html").read_text(encoding="utf-8"))
    for sub in ("data", "tables", "figures"):
        names = sorted(p.name for p in (a / sub).iterdir())
        assert names == sorted(p.name for p in (b / sub).iterdir())
        if sub == "figures":
            continue
        for name in names:
            assert (a / sub / name).read_bytes() == (b / sub / name).read_bytes(), name


def test_demo_evaluates_the_seed_model(runs):
    """run_demo reports the seed model's accuracy (measured on the whole split, whatever subset the
    stages ran on) and writes it to demo.json."""
    from polylens.nn.model import load_model

    a, _, ra, _, _ = runs
    seed = load_model("seed")
    assert ra.test_accuracy == seed.card.test_accuracy and ra.architecture == "49-3-3-10"
    assert json.loads((a / "demo.json").read_text())["test_accuracy"] == ra.test_accuracy


def test_demo_command_reuses_the_sweep(runs):
    """`polylens demo --out DIR --json`, in a fresh process, run again on the directory of a finished
    demo: standard output is one JSON document naming the report and the seed's accuracy per class;
    the sweep store is reused (no new units) and the numbers are unchanged (demo.json and the data).
    This is also the demo's entry in the guard of tests/test_stdout.py (worker processes included)."""
    from polylens.nn.model import load_model

    from test_stdout import one_json_document, run_polylens

    a, b, _, _, _ = runs
    db = next((a / "store" / f"robustness-n{N}").glob("*.sqlite"))
    before = sqlite3.connect(db).execute("SELECT count(*) FROM units").fetchone()[0]
    before_json = (a / "demo.json").read_text()
    proc = run_polylens(["demo", "--out", str(a), "--n", str(N), "--workers", "2", "--json"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = one_json_document(proc.stdout)
    assert doc["report"] == str(a / "report.html")
    assert doc["per_class_accuracy"] == load_model("seed").card.per_class_accuracy
    assert (a / "demo.json").read_text() == before_json
    assert sqlite3.connect(db).execute("SELECT count(*) FROM units").fetchone()[0] == before
    assert (a / "data" / "robustness.json").read_bytes() == (b / "data" / "robustness.json").read_bytes()


def _artifacts(tmp_path: Path) -> Path:
    d = Path(os.environ.get("POLYLENS_ARTIFACTS") or tmp_path) / "report-screenshots"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_report_in_headless_chromium(runs, tmp_path):
    """Chromium opens the report from disk with no console errors and no request but the file itself;
    every section is visible and has its figures loaded; a screenshot of each section is saved."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (Debian package 'chromium'; `./dev test` installs it)")
    from playwright.sync_api import sync_playwright

    a = runs[0]
    shots = _artifacts(tmp_path)
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((a / "report.html").as_uri(), wait_until="load")
            page.screenshot(path=str(shots / "top.png"))
            for sid in SECTION_IDS:
                sec = page.locator(f"section#{sid}")
                assert sec.is_visible(), sid
                box = sec.bounding_box()
                assert box is not None and box["width"] > 600 and box["height"] > 200, (sid, box)
                imgs = sec.locator("img")
                assert imgs.count() >= 1, sid
                natural = imgs.evaluate_all("els => els.map(e => e.complete && e.naturalWidth > 100)")
                assert all(natural), sid
                sec.screenshot(path=str(shots / f"{sid}.png"))
        finally:
            browser.close()
    assert errors == []
    assert requests == [(a / "report.html").as_uri()]
    for sid in SECTION_IDS:
        assert (shots / f"{sid}.png").stat().st_size > 10_000
