"""``polylens demo``: the bundled seed network on the bundled digits, end to end.

For now the demo loads the seed model, evaluates it on its test split and writes a summary;
later stages (bounds, certification, signatures, the report) join :func:`run_demo` as further
steps, each announced through ``progress``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import typer

from polylens.cli import app
from polylens.cli._common import JSON_HELP, accuracy_table, err_console, jsonable, out_console, percent, print_json

__all__ = ["DEMO_MODEL", "DemoResult", "run_demo"]

#: The bundled model the demo opens.
DEMO_MODEL = "seed"
#: Where ``polylens demo`` writes unless told otherwise (ignored by git).
DEFAULT_OUT = Path("polylens-out")


@dataclass(frozen=True)
class DemoResult:
    """What the demo found. ``per_class_accuracy`` and ``test_counts`` have one entry per class;
    ``files`` are the paths written under ``out``."""

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

    def to_dict(self) -> dict:
        return {"model": self.model, "architecture": self.architecture, "activation": self.activation,
                "n_params": self.n_params, "n_test": self.n_test, "test_accuracy": self.test_accuracy,
                "per_class_accuracy": self.per_class_accuracy, "test_counts": self.test_counts,
                "out": None if self.out is None else str(self.out), "files": [str(f) for f in self.files]}


def run_demo(out: str | Path | None = DEFAULT_OUT, progress: Callable[[str], None] | None = None) -> DemoResult:
    """Run the demo: load the bundled seed model, evaluate it on its test split and, when ``out``
    is given, write ``out/demo.json`` (the result as JSON). ``progress`` receives a short
    description of each step as it starts."""
    from polylens.nn.model import evaluate, load_model, model_split

    say = progress or (lambda _msg: None)
    say(f"loading the bundled model '{DEMO_MODEL}'")
    model = load_model(DEMO_MODEL)
    say("loading its test split")
    split = model_split(model)
    say("evaluating")
    n_classes = model.network.n_classes
    acc, per_class = evaluate(model.network, split.x_test, split.y_test, n_classes)
    counts = np.bincount(split.y_test, minlength=n_classes).tolist()
    files: list[Path] = []
    out_dir = None if out is None else Path(out)
    result = DemoResult(model=model.source, architecture=model.network.architecture,
                        activation=model.card.activation, n_params=model.network.n_params,
                        n_test=int(len(split.y_test)), test_accuracy=acc, per_class_accuracy=per_class,
                        test_counts=counts, out=out_dir, files=())
    if out_dir is not None:
        say(f"writing {out_dir}")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "demo.json"
        files.append(path)
        result = dataclasses.replace(result, files=tuple(files))
        path.write_text(json.dumps(jsonable(result.to_dict()), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return result


@app.command()
def demo(
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Directory for the demo's files."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Open the bundled seed network (49-3-3-10 GELU on 7x7 MNIST) and show what polylens finds."""
    err = err_console()
    show = (lambda msg: err.print(f"[dim]demo: {msg}[/]")) if (err.is_terminal and not json_out) else None
    result = run_demo(out, show)
    if json_out:
        print_json(result.to_dict())
        return
    con = out_console()
    con.print(f"Model [bold]{result.model}[/]: {result.architecture} {result.activation}, "
              f"{result.n_params} parameters.")
    con.print(f"Test accuracy [bold]{percent(result.test_accuracy)}[/] on {result.n_test} test images.")
    con.print(accuracy_table(result.per_class_accuracy, result.test_counts, title="Test accuracy per class"))
    for f in result.files:
        con.print(f"wrote {f}")
