"""The lens registry is the only list: a lens added as one module and one registration line appears in
the CLI, the report, the explorer's views and the static export, with no other file touched."""

from __future__ import annotations

import json

import pytest

import polylens as pl
from polylens.lenses import all_lenses, get_lens, lens_names, register, report_lenses, unregister
from polylens.nn.model import load_model

from conftest import run_cli

import example_lens


@pytest.fixture
def registered():
    """The example lens, registered for one test (the one line a new lens needs)."""
    lens = register(example_lens.MEAN_INPUT)
    yield lens
    unregister(lens.name)


@pytest.fixture(scope="module")
def seed():
    return load_model("seed")


def test_builtin_lenses_in_order():
    """The built-in lenses are registered in the order of the report, and names are unique."""
    names = lens_names()
    assert names[:7] == ("robustness", "signatures", "prototypes", "counterfactuals", "neurons", "traces", "trace")
    assert len(set(names)) == len(names)
    assert [l.name for l in report_lenses()][:6] == list(names[:6])
    assert get_lens("verify") is get_lens("robustness")  # a lens is found by its command too


def test_registering_twice_or_clashing_is_refused(registered):
    """The same lens registered again changes nothing; another lens under a taken name or command is refused."""
    from dataclasses import replace

    assert register(registered) is registered
    with pytest.raises(ValueError):
        register(replace(registered, summary="another"))
    with pytest.raises(ValueError):
        register(replace(registered, name="other-name", command="verify"))


def test_example_lens_joins_the_cli(registered):
    """`polylens --help` lists the new lens; its command runs with --json and refuses a bad option."""
    code, out, _ = run_cli("--help")
    assert code == 0 and "mean-input" in out
    code, out, err = run_cli("mean-input", "seed", "--n", "100", "--classes", "3", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert len(d["counts"]) == 3 and sum(d["counts"]) <= 100 and len(d["means"][0]) == 49
    code, out, err = run_cli("mean-input", "seed", "--classes", "0")
    assert code == 2 and err.count("\n") == 1 and "'--classes'" in err


def test_unregistering_takes_the_command_away():
    """A lens registered and unregistered again leaves no command behind (the CLI is as before)."""
    lens = register(example_lens.MEAN_INPUT)
    unregister(lens.name)
    code, out, _ = run_cli("--help")
    assert code == 0 and "mean-input" not in out
    code, _, _ = run_cli("mean-input", "seed")
    assert code == 2


def test_example_lens_joins_the_report(registered, seed, tmp_path):
    """The report runs the new lens as a section of its own (after the built-in ones)."""
    from polylens.report.build import ReportOptions, run_report

    assert report_lenses()[-1] is registered
    run = run_report(seed, tmp_path, ReportOptions(lenses=("traces", "mean-input"), n_images=120))
    assert run.errors == {}
    text = run.report.read_text()
    assert 'id="mean-input"' in text and 'id="table-mean-input"' in text
    assert json.loads((tmp_path / "data" / "mean-input.json").read_text())["counts"]


def test_example_lens_joins_the_explorer_and_the_export(registered, seed, tmp_path):
    """The explorer lists the new lens's view (the generic one: no module), answers its payload, and a
    static export precomputes it."""
    from polylens.explorer.api import Explorer, ExplorerConfig
    from polylens.explorer.export import export_site_report

    cfg = ExplorerConfig(lenses={"robustness": {"images": 0}, "signatures": {"per_digit": 1}})
    ex = Explorer(seed, config=cfg, mode="static")
    try:
        views = {v["name"]: v for v in ex.model_payload()["lenses"]}
        assert views["mean-input"]["module"] is None and views["mean-input"]["title"] == "Mean inputs"
        p = ex.lens_payload("mean-input")
        assert p["status"] == "ready" and p["section"]["tables"][0]["columns"] == ["class", "images", "logit at the mean"]
    finally:
        ex.close()
    export_site_report(seed, tmp_path / "site", n_samples=2, eps_grid=(0.01,), config=cfg)
    data = json.loads((tmp_path / "site" / "data" / "lens-mean-input.json").read_text())
    assert data["main"]["{}"]["status"] == "ready"
    core = json.loads((tmp_path / "site" / "data" / "core.json").read_text())
    assert "mean-input" in [v["name"] for v in core["model"]["lenses"]]


def test_example_lens_joins_the_front_door(registered, seed):
    """`import polylens as pl`: the new lens is pl.mean_input(model, data, **options)."""
    data = pl.load_data(seed).head(50)
    r = pl.mean_input(seed, data, classes=2)
    assert len(r.counts) == 2
    with pytest.raises(pl.PolylensError):
        pl.mean_input(seed, data, classes=0)
    with pytest.raises(pl.PolylensError):
        pl.mean_input(seed, data, clases=2)  # a misspelt option is never ignored


def test_front_door_names_every_lens():
    """Every registered lens is an attribute of the package; unknown names are AttributeErrors."""
    for lens in all_lenses():
        assert callable(getattr(pl, lens.name.replace("-", "_")))
    with pytest.raises(AttributeError):
        pl.no_such_lens
