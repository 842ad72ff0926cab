"""Every registered lens joins this suite automatically: it runs on the seed network and on a small
ReLU network, its result's to_dict() is JSON that round-trips, its report section renders, its
explorer payloads answer, and its CLI command exits 0 with --json and 2 with one line on a bad option."""

from __future__ import annotations

import enum
import json

import pytest

from polylens.data.labelled import Data
from polylens.explorer.api import Explorer, ExplorerConfig, _payloads
from polylens.lenses import all_lenses
from polylens.lenses.base import RunContext, SectionContext, option_specs
from polylens.nn.model import Model, card_for_network, load_model
from polylens.nn.network import Network
from polylens.report.html import write_report

from conftest import random_network, run_cli

LENSES = all_lenses()
#: Labelled rows every lens runs on here: enough for every digit, few enough for seconds.
N = 60


@pytest.fixture(scope="module")
def models():
    """The seed (GELU) and a small ReLU network on the same 7x7 inputs, with the bundled test split."""
    seed = load_model("seed")
    net = random_network((49, 8, 8, 10), "relu", seed=5)
    net = Network(net.layers, net.activations, (7, 7))
    relu = Model(net, card_for_network(net), "memory")
    return {"seed": seed, "relu": relu}


@pytest.fixture(scope="module")
def data(models):
    d = Data.of_model(models["seed"])
    return d.head(N)


def run_lens(lens, model, data, tmp_path):
    return lens.run(model, data, lens.make_options(lens.quick), RunContext(workdir=tmp_path / "work"))


def _roundtrip(obj):
    text = json.dumps(obj, allow_nan=False)
    assert json.loads(text) == obj
    return text


@pytest.mark.parametrize("model_name", ["seed", "relu"])
@pytest.mark.parametrize("lens", LENSES, ids=[l.name for l in LENSES])
def test_lens_runs_and_its_result_is_json(lens, model_name, models, data, tmp_path):
    """The lens runs with its quick options; to_dict() is JSON (no NaN) that round-trips; the result
    shows itself in Jupyter; its report section renders to a self-contained page."""
    model = models[model_name]
    result = run_lens(lens, model, data, tmp_path)
    _roundtrip(result.to_dict())
    assert isinstance(result._repr_html_(), str) and result._repr_html_()
    if lens.section is not None:
        sec = lens.section(result, SectionContext(model, data, draw=True))
        page = write_report(tmp_path / "report", [sec], filename="one.html")
        text = page.read_text()
        assert f'id="{sec.id}"' in text and "<script" not in text
        if sec.data is not None:
            assert json.loads((tmp_path / "report" / "data" / f"{sec.id}.json").read_text()) is not None


@pytest.mark.parametrize("lens", [l for l in LENSES if l.view is not None], ids=lambda l: l.name)
def test_lens_explorer_payloads_answer(lens, models):
    """Every payload kind of the lens's view answers (per-input ones for a test sample), as JSON."""
    quick = {l.name: dict(l.quick) for l in LENSES if l.view is not None}
    quick.setdefault("robustness", {})["images"] = 4
    ex = Explorer(models["seed"], config=ExplorerConfig(lenses=quick), mode="static")
    try:
        for kind, p in _payloads(lens).items():
            params = dict(p.grid(ex, (0.0, 0.01))[0]) if p.grid is not None else {}
            if p.per_input:
                params["sample"] = 0
            out = ex.lens_payload(lens.name, kind, params)
            _roundtrip(json.loads(json.dumps(out)))
            assert out.get("status") != "error", out
    finally:
        ex.close()


def _cli_args(lens) -> list[str]:
    args = [lens.cli_name, "seed"] + (["--n", str(N)] if lens.needs_data else [])
    for s in option_specs(lens.options):
        if s.name in lens.quick and s.cli:
            v = lens.quick[s.name]
            if s.kind == "bool":
                args.append(s.flag if v else "--no-" + s.flag[2:])
            else:
                args += [s.flag, ",".join(f"{e:g}" for e in v) if isinstance(v, tuple) else str(v)]
    return args


def _bad_value(spec):
    """A value outside what the option allows (None when the option takes anything)."""
    if isinstance(spec.kind, type) and issubclass(spec.kind, enum.Enum) or spec.choices is not None:
        return "no-such-choice"
    if spec.kind in ("float", "int", "floats", "ints") and spec.lo is not None:
        return str(spec.lo - 1)
    if spec.kind in ("float", "int", "floats", "ints") and spec.hi is not None:
        return str(spec.hi + 1)
    return None


@pytest.mark.parametrize("lens", LENSES, ids=[l.name for l in LENSES])
def test_lens_cli_json_and_bad_option(lens):
    """`polylens <lens> seed ... --json` exits 0 with one JSON object; a value outside an option's
    bounds or choices exits 2 with one line naming the option."""
    code, out, err = run_cli(*_cli_args(lens), "--json")
    assert code == 0, err
    assert isinstance(json.loads(out), dict)
    bad = [(s, v) for s in option_specs(lens.options) if s.cli and (v := _bad_value(s)) is not None]
    assert bad, f"lens {lens.name} has no option whose bad values the command line refuses"
    spec, value = bad[0]
    code, out, err = run_cli(lens.cli_name, "seed", spec.flag, value)
    assert code == 2 and err.count("\n") == 1 and spec.flag in err, err
