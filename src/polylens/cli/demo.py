"""``polylens demo``: the bundled seed network on the bundled digits, end to end.

The demo loads the seed model (49-3-3-10 GELU on 7x7 MNIST), evaluates it on its 2,000 test images
and runs the full report (:func:`polylens.report.build.run_report`): the robustness sweep over
eps = 0, 0.005, 0.01, 0.02, 0.03, 0.05 on every test image (resumable, stored in
``OUT/store/robustness``, so a second run reuses it) and every other lens of the report (see
:mod:`polylens.lenses`): constraint signatures, prototypes, counterfactuals for a few instructive
pairs, neuron patterns with suggested names, and the flow and formula of every digit. It writes

``OUT/report.html``
    one self-contained HTML file (figures embedded, no external requests), one section per lens;
``OUT/figures``, ``OUT/tables``, ``OUT/data``
    the figures (PNG, SVG), tables (CSV) and data (JSON) of the report;
``OUT/demo.json``, ``OUT/timings.json``
    the summary below and the wall time of each stage.

Every number is reproducible: two runs write the same JSON. To add an output (e.g. a static site
next to the report), append a writer to :data:`EXTRA_WRITERS` or pass ``writers=`` to
:func:`run_demo`: a callable that receives the :class:`~polylens.report.build.ReportRun` and returns
the paths it wrote.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import typer

from polylens.cli import app
from polylens.cli._common import JSON_HELP, accuracy_table, jsonable, out_console, percent, print_json

__all__ = ["DEMO_EPS", "DEMO_MODEL", "DemoResult", "EXTRA_WRITERS", "run_demo"]

#: The bundled model the demo opens.
DEMO_MODEL = "seed"
#: Where ``polylens demo`` writes unless told otherwise (ignored by git).
DEFAULT_OUT = Path("polylens-out")
#: Radii of the demo's robustness sweep.
DEMO_EPS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
#: Writers run after the report: each gets the ReportRun and returns the paths it wrote.
def _explorer_site(run) -> list:
    """The explorer's static site, in ``<out>/explorer/`` next to the report."""
    from polylens.explorer.export import report_writer

    return report_writer(run)


EXTRA_WRITERS: list[Callable] = [_explorer_site]


@dataclass(frozen=True)
class DemoResult:
    """What the demo found. ``per_class_accuracy`` and ``test_counts`` have one entry per class;
    ``files`` are the paths written under ``out``; ``report`` the HTML report (None without
    ``out``); ``timings`` wall seconds per stage; ``errors`` a message per stage that failed."""

    model: str
    architecture: str
    activation: str
    n_params: int
    n_test: int
    test_accuracy: float
    per_class_accuracy: list[float]
    test_counts: list[int]
    out: Path | None
    files: tuple[Path, ...]
    report: Path | None = None
    timings: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model": self.model, "architecture": self.architecture, "activation": self.activation,
                "n_params": self.n_params, "n_test": self.n_test, "test_accuracy": self.test_accuracy,
                "per_class_accuracy": self.per_class_accuracy, "test_counts": self.test_counts,
                "out": None if self.out is None else str(self.out), "files": [str(f) for f in self.files],
                "report": None if self.report is None else str(self.report),
                "timings": {k: round(v, 3) for k, v in self.timings.items()}, "errors": dict(self.errors)}


def run_demo(out: str | Path | None = DEFAULT_OUT, progress: Callable[[str], None] | None = None, *,
             n: int | None = None, eps: Sequence[float] = DEMO_EPS, workers: int = 2,
             units: Callable[[int, int], None] | None = None,
             writers: Sequence[Callable] | None = None) -> DemoResult:
    """Run the demo (see the module docstring).

    ``out``: the output directory; None only evaluates the model and writes nothing. ``progress``
    receives a short description of each step as it starts; ``units(done, total)`` follows the
    robustness sweep. ``n``: use only the first n test images in every stage (quick runs, tests);
    ``eps``: the sweep's radii; ``workers``: its processes. ``writers``: extra writers (default
    :data:`EXTRA_WRITERS`).
    """
    from polylens.nn.model import evaluate, load_model, model_split

    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    say(f"loading the bundled model '{DEMO_MODEL}'")
    model = load_model(DEMO_MODEL)
    say("loading its test split")
    split = model_split(model)
    say("evaluating")
    n_classes = model.network.n_classes
    acc, per_class = evaluate(model.network, split.x_test, split.y_test, n_classes)
    counts = np.bincount(split.y_test, minlength=n_classes).tolist()
    out_dir = None if out is None else Path(out)
    result = DemoResult(model=model.source, architecture=model.network.architecture,
                        activation=model.card.activation, n_params=model.network.n_params,
                        n_test=int(len(split.y_test)), test_accuracy=acc, per_class_accuracy=per_class,
                        test_counts=counts, out=out_dir, files=())
    if out_dir is None:
        return result
    from polylens.data.labelled import Data
    from polylens.report.build import ReportOptions, run_report

    opts = ReportOptions(overrides={"robustness": {"eps": tuple(eps), "workers": workers}}, n_images=n)
    data = Data(split.x_test, split.y_test, split.images_test, f"{split.name} test split")
    run = run_report(model, out_dir, opts, data=data,
                     progress=say, units=units, title="polylens demo: the seed network on 7x7 MNIST",
                     writers=tuple(EXTRA_WRITERS if writers is None else writers))
    timings = {**run.timings, "total": time.perf_counter() - t0}
    path = out_dir / "demo.json"
    files = sorted({*run.files, path, out_dir / "timings.json"})
    result = dataclasses.replace(result, files=tuple(files), report=run.report, timings=timings, errors=dict(run.errors))
    data = result.to_dict()
    data.pop("timings")  # wall times live in timings.json; demo.json stays identical across runs
    path.write_text(json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return result


@app.command()
def demo(
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Directory for the demo's report and files."),
    n: Optional[int] = typer.Option(None, "--n", hidden=True, help="Use only the first N test images (quick runs)."),
    workers: int = typer.Option(2, "--workers", help="Processes of the robustness sweep."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Open the bundled seed network (49-3-3-10 GELU on 7x7 MNIST), run every analysis and write the HTML report."""
    from polylens.cli._common import progress_reporter
    from polylens.lenses import report_lenses

    if n is not None and n < 1:
        from polylens.errors import ParameterError

        raise ParameterError(f"The '--n' option must be a positive int. Got {n} instead.")
    # Stages: loading the model, its test split, evaluating, one per lens of the report, writing.
    with progress_reporter(not json_out, stages=3 + len(report_lenses()) + 1) as (say, units):
        result = run_demo(out, say, n=n, workers=workers, units=units)
    if json_out:
        print_json(result.to_dict())
        return
    con = out_console()
    con.print(f"Model [bold]{result.model}[/]: {result.architecture} {result.activation}, "
              f"{result.n_params} parameters.")
    con.print(f"Test accuracy [bold]{percent(result.test_accuracy)}[/] on {result.n_test} test images.")
    con.print(accuracy_table(result.per_class_accuracy, result.test_counts, title="Test accuracy per class"))
    for sid, msg in result.errors.items():
        con.print(f"[yellow]{sid}: skipped: {msg}[/]")
    con.print("Stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))
    con.print(f"Report: {result.report}")
