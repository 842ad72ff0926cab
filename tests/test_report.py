"""The rendering layer: figures from real results of the seed model, the self-contained HTML report,
reports of non-image models, and the analysis commands on the command line."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from polylens.nn.model import Model, card_for_network, load_model, model_split, save_model
from polylens.nn.network import Network
from polylens.report import figures as F
from polylens.data.labelled import Data
from polylens.lenses import report_lenses
from polylens.lenses.discover.sections import (counterfactuals_section, neurons_section, prototypes_section,
                                               signatures_section, traces_section)
from polylens.lenses.verify.lens import Robustness, robustness_section
from polylens.lenses.base import SectionContext
from polylens.report.build import ReportOptions, run_report
from polylens.report.html import ReportFigure, Section, Table, write_report

from conftest import run_cli

#: The sections of a full report, in order: one per lens of the report.
SECTION_IDS = tuple(l.name for l in report_lenses())

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# Fixtures: small real results of the seed model


@pytest.fixture(scope="module")
def seed():
    return load_model("seed")


@pytest.fixture(scope="module")
def split(seed):
    return model_split(seed)


@pytest.fixture(scope="module")
def results(seed, split):
    """Every analysis on a small subset of the seed model's test split."""
    from polylens.lenses.discover.counterfactuals import counterfactual_pairs
    from polylens.lenses.discover.naming import suggest_names
    from polylens.lenses.discover.neurons import neuron_report
    from polylens.lenses.discover.prototypes import prototypes
    from polylens.lenses.discover.signatures import signatures
    from polylens.lenses.verify.sweep import run_sweep
    from polylens.lenses.discover.trace import digit_formulas

    x, y, im = split.x_test[:300], split.y_test[:300], split.images_test[:300]
    return {
        "sweep": run_sweep(seed.network, x[:40], y[:40], (0.0, 0.01), workers=1, with_lp_classifier=False),
        "signatures": signatures(seed, x, y, eps=0.02, max_per_digit=4, images=im),
        "prototypes": prototypes(seed, x, y, eps=0.1, lam=0.01),
        "counterfactuals": counterfactual_pairs(seed, x, y, [(4, 9)], eps=0.3),
        "neurons": neuron_report(seed, x[:200], y[:200], im[:200], top=4, steps=30),
        "names": suggest_names(seed, x),
        "formulas": digit_formulas(seed, x, y),
    }


def _pixels(fig_or_png) -> np.ndarray:
    png = fig_or_png if isinstance(fig_or_png, bytes) else F.figure_png(fig_or_png)
    assert png[:8] == PNG_MAGIC
    return imread(io.BytesIO(png), format="png")[..., :3]


def _not_blank(img: np.ndarray) -> None:
    assert img.shape[0] > 150 and img.shape[1] > 150
    assert float(img.std()) > 0.02  # something is drawn


def _has_blue_and_red(img: np.ndarray) -> None:
    r, b = img[..., 0], img[..., 2]
    assert np.sum(b > r + 0.3) > 50, "no blue (ink / positive) pixels"
    assert np.sum(r > b + 0.3) > 50, "no red (blank / negative) pixels"


# ---------------------------------------------------------------------------------------------
# Figures


def test_robustness_curves_draw_every_panel(results):
    """The robustness figure has one panel per digit plus the overall panel and a legend, and is drawn."""
    fig = F.robustness_curves(results["sweep"].summary)
    assert isinstance(fig, Figure)
    titles = [a.get_title() for a in fig.axes]
    assert any(t.startswith("all digits") for t in titles)
    assert sum(t.startswith("digit ") for t in titles) == len(results["sweep"].summary["per_digit"])
    _not_blank(_pixels(fig))


def test_signature_maps_are_red_and_blue(results):
    """Signature maps and overlays use the colour language: both blue (wants ink) and red (wants
    blank) regions are visible, one panel per digit."""
    sig = results["signatures"]
    fig = F.signature_maps(sig.pixel_upper_freq, sig.pixel_lower_freq, sig.input_shape)
    assert sum(a.get_title().startswith("digit") for a in fig.axes) == len(sig.digits)
    img = _pixels(fig)
    _not_blank(img)
    _has_blue_and_red(img)
    over = _pixels(F.signature_overlays(sig.pixel_upper_freq, sig.pixel_lower_freq, sig.mean_image, sig.input_shape))
    _has_blue_and_red(over)
    _not_blank(_pixels(F.tightness_bars(list(sig.cut_tight_freq))))


def test_other_figures_draw(results, seed, split):
    """Prototype, counterfactual, neuron and trace figures all render to non-blank images."""
    p = results["prototypes"]
    _not_blank(_pixels(F.prototype_panels(p.start, p.prototype, p.input_shape, lp_points=p.lp_input)))
    r = results["counterfactuals"].results[0]
    res = r.result if r.result is not None else r.lp_input
    _not_blank(_pixels(F.counterfactual_triptych(r.original, res, r.input_shape, "4 -> 9")))
    n = results["neurons"].neurons[0]
    img = _pixels(F.neuron_panel("L1.n0", n.map, n.maximiser.x, n.minimiser.x, (7, 7), top_images=n.top_images,
                                 bottom_images=n.bottom_images, class_counts=n.class_counts, bin_edges=n.bin_edges,
                                 class_mean=n.class_mean))
    _not_blank(img)
    _has_blue_and_red(img)  # the weight map has both signs
    from polylens.lenses.discover.trace import trace

    t = trace(seed, split.x_test[0])
    _has_blue_and_red(_pixels(F.trace_flow(t.flow(), (7, 7))))
    _not_blank(_pixels(F.formula_figure([f.text for f in results["formulas"]])))


def test_figures_are_deterministic(results):
    """The same figure gives the same PNG bytes and the same SVG text (no dates, fixed ids)."""
    sig = results["signatures"]
    make = lambda: F.tightness_bars(list(sig.cut_tight_freq))
    assert F.figure_png(make()) == F.figure_png(make())
    assert F.figure_svg(make()) == F.figure_svg(make())


def test_save_figure_keeps_dotted_stems(tmp_path):
    """save_figure writes <stem>.png and <stem>.svg even when the stem holds dots (neuron keys)."""
    fig = F.formula_figure(["digit 0 ~ (++ Frame)"])
    paths = F.save_figure(fig, tmp_path / "neuron-L1.n0")
    assert [p.name for p in paths] == ["neuron-L1.n0.png", "neuron-L1.n0.svg"]
    assert paths[0].read_bytes()[:8] == PNG_MAGIC and "<svg" in paths[1].read_text()


# ---------------------------------------------------------------------------------------------
# The HTML report


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            self.attrs.append((tag, k, v or ""))
            if k == "id":
                self.ids.add(v)


def assert_self_contained(text: str, ids=SECTION_IDS) -> _Collect:
    """The report asks for nothing outside itself: no http(s) URL in any attribute, every href an
    anchor, every <img> a PNG data: URI, no scripts, no external stylesheet; every section id present."""
    p = _Collect()
    p.feed(text)
    for tag, k, v in p.attrs:
        assert not re.match(r"\s*(https?:)?//", v), (tag, k, v[:80])
        if k == "href":
            assert v.startswith("#"), v
    imgs = [v for tag, k, v in p.attrs if tag == "img" and k == "src"]
    assert imgs, "no figures"
    for v in imgs:
        assert v.startswith("data:image/png;base64,")
        assert base64.b64decode(v.split(",", 1)[1])[:8] == PNG_MAGIC
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags
    for sid in ids:
        assert sid in p.ids, sid
    return p


@pytest.fixture(scope="module")
def sections(results, seed):
    names = results["names"].as_names()
    sweep = Robustness(results["sweep"], "bundled:seed", "test", False)
    return [robustness_section(sweep, SectionContext(seed, None)), signatures_section(results["signatures"], names),
            prototypes_section(results["prototypes"]), counterfactuals_section(results["counterfactuals"]),
            neurons_section(results["neurons"], results["names"], {}, names),
            traces_section(results["formulas"], seed.network.input_shape)]


def test_report_is_self_contained(sections, tmp_path):
    """write_report gives one HTML file with every section, figures as data: URIs and no external
    requests; figures, CSV tables and JSON data are written next to it, and read back."""
    path = write_report(tmp_path, sections, title="t", meta={"model": "seed"})
    text = path.read_text(encoding="utf-8")
    assert_self_contained(text, ids=[s.id for s in sections])
    n_img = text.count("<img ")
    assert n_img == sum(len(s.figures) for s in sections)
    pngs = sorted((tmp_path / "figures").glob("*.png"))
    assert len(pngs) == n_img + sum(len(s.files) for s in sections)
    assert (tmp_path / "figures" / "robustness.svg").is_file() and (tmp_path / "figures" / "trace-digit-0.svg").is_file()
    for s in sections:
        assert json.loads((tmp_path / "data" / f"{s.id}.json").read_text()) is not None
        for t in s.tables:
            rows = list(csv.reader((tmp_path / "tables" / f"{t.name}.csv").open()))
            assert rows[0] == list(t.columns) and len(rows) == len(t.rows) + 1
    # Signature maps per digit, named neurons and formulas per digit are in the page.
    assert 'id="fig-signature-maps"' in text and 'id="fig-prototypes"' in text
    for d in range(10):
        assert f"digit {d} ~" in text
    assert "Frame" in text


def test_report_escapes_text(tmp_path):
    """Every piece of text is escaped: a title, intro, table cell or block holding markup shows as text."""
    evil = '<script>alert("x")</script><img src="http://evil.example/x.png">'
    fig = ReportFigure.from_figure(F.formula_figure(["a"]), "f", evil)
    sec = Section("robustness", evil, evil, figures=(fig,), tables=(Table("t", (evil,), ((evil,),)),),
                  blocks=((evil, evil),), note=evil)
    text = write_report(tmp_path, [sec], title=evil, meta={evil: evil}).read_text()
    assert "<script" not in text.lower() and "http://evil" not in text.split("&lt;img")[0]
    assert "&lt;script&gt;" in text
    assert_self_contained(text, ids=("robustness",))


def test_report_rejects_bad_names(tmp_path):
    """Section ids, figure stems and table names must be plain (no path tricks), and unique."""
    from polylens.errors import ParameterError

    with pytest.raises(ParameterError):
        Section("Robust ness", "t", "i")
    with pytest.raises(ParameterError):
        Table("../x", ("a",), ())
    with pytest.raises(ParameterError):
        write_report(tmp_path, [Section("a", "t", "i"), Section("a", "t", "i")])


def test_report_of_a_non_image_model(tmp_path):
    """A model whose input is not an image still gets every section; image figures are left out
    with a note, nothing fails."""
    rng = np.random.default_rng(0)
    net = Network.from_arrays([rng.normal(0, 1, (4, 5)), rng.normal(0, 1, (3, 4))], [np.zeros(4), np.zeros(3)],
                              "gelu")
    model = Model(net, card_for_network(net))
    x = rng.random((60, 5))
    y = net.predict(x)
    y[:5] = (y[:5] + 1) % 3  # a few mistakes, so the counterfactual pairs have confusions
    opts = ReportOptions(overrides={"robustness": {"eps": (0.0, 0.05), "workers": 1},
                                    "signatures": {"per_digit": 5}, "counterfactuals": {"pairs": 1}})
    run = run_report(model, tmp_path, opts, data=Data(x, y))
    assert run.errors == {}
    text = run.report.read_text()
    assert_self_contained(text)
    assert "not a 2-D image" in text
    assert not (tmp_path / "figures" / "signature-maps.png").exists()
    assert (tmp_path / "figures" / "signature-tightness.png").exists()


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_signatures_and_prototypes_json(tmp_path):
    """`signatures --json` and `prototypes --json` print one JSON object with per-digit results;
    --out writes a one-section HTML page with the figures."""
    code, out, err = run_cli("signatures", "seed", "--n", "200", "--per-digit", "3", "--out", tmp_path, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert len(d["pixel_upper_freq"]) == 10 and len(d["pixel_upper_freq"][0]) == 49
    assert_self_contained(Path(d["page"]).read_text(), ids=("signatures",))
    code, out, err = run_cli("prototypes", "seed", "--n", "300", "--eps", "0.05", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert all(p >= s for p, s in zip(d["prototype_margin"], d["start_margin"]))


def test_cli_neurons_rename(tmp_path):
    """`neurons --rename` saves names: into a model directory's card in place; for the bundled model
    only with --out (a renamed copy), otherwise one error line and exit 2."""
    code, out, err = run_cli("neurons", "seed", "--rename", "L1.n0=Frame", "--n", "50")
    assert code == 2 and err.count("\n") == 1 and "--out" in err
    code, out, err = run_cli("neurons", "seed", "--rename", "L1.n0=Frame", "--n", "50", "--out", tmp_path / "o",
                             "--json")
    assert code == 0, err
    copy = load_model(tmp_path / "o" / "model")
    assert copy.neuron_name(1, 0) == "Frame"
    code, out, err = run_cli("neurons", tmp_path / "o" / "model", "--rename", "L1.n1=Ring", "--suggest", "--n", "50")
    assert code == 0, err
    assert load_model(tmp_path / "o" / "model").neuron_name(1, 1) == "Ring" and "Frame" in out
    code, out, err = run_cli("neurons", "seed", "--rename", "L9.n0=x")
    assert code == 2 and "L9.n0" in err


def test_cli_trace_flows_add_up():
    """`trace --json`: for every hidden layer, its neurons' flows into the traced logit plus the flows of
    all later constants (later biases, the output bias) sum to the logit."""
    code, out, err = run_cli("trace", "seed", "--index", "3", "--target", "5", "--json")
    assert code == 0, err
    d = json.loads(out)
    k, layers = d["target"], d["layers"]
    assert k == 5
    for l, layer in enumerate(layers, start=1):
        later = d["output"]["bias"][k] + sum(np.sum(layers[m - 1]["constant_flow"][k]) for m in range(l + 1, len(layers) + 1))
        assert abs(np.sum(layer["flow"][k]) + later - d["logits"][k]) < 1e-9
    code, out, err = run_cli("trace", "seed", "--index", "3")
    assert code == 0 and "later constants" in out


@pytest.mark.parametrize("args, needle", [
    (("signatures", "seed", "--objective", "loss"), "'--objective'"),
    (("trace", "seed", "--index", "5000"), "'index'"),
    (("trace", "seed", "--index", "1", "--target", "10"), "'target'"),
    (("report", "seed", "--set", "robustness.eps=0,x"), "'robustness.eps'"),
    (("report", "seed", "--set", "nolens.eps=0"), "'nolens'"),
    (("report", "seed", "--only", "signatures,nolens"), "'nolens'"),
])
def test_cli_errors_are_one_line(args, needle):
    """Bad options give exactly one error line naming the option, and exit status 2."""
    code, out, err = run_cli(*args)
    assert code == 2 and err.count("\n") == 1 and needle in err, err


def test_cli_report_needs_data(tmp_path):
    """`report` on a model whose card names no data fails with one line and exit 2."""
    rng = np.random.default_rng(1)
    net = Network.from_arrays([rng.normal(0, 1, (3, 6)), rng.normal(0, 1, (2, 3))], [np.zeros(3), np.zeros(2)], "relu")
    save_model(Model(net, card_for_network(net)), tmp_path / "m")
    code, out, err = run_cli("report", tmp_path / "m", "--out", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and "data" in err
