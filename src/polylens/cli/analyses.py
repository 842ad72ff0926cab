"""The discovery commands: ``signatures``, ``prototypes``, ``neurons``, ``trace`` and ``report``.

Each runs one analysis (``report``: all of them) on a model's test split, prints a table (or with
``--json`` one JSON object), and with ``--out DIR`` writes its figures (PNG and SVG), CSV tables,
JSON data and a one-section HTML page into DIR. Progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import numpy as np
import typer

from polylens.cli import app
from polylens.cli._common import (
    JSON_HELP, MODEL_HELP, err_console, jsonable, load_model_arg, out_console, parse_float_list, print_json,
)
from polylens.errors import ModelError, ParameterError

__all__ = ["progress_reporter"]

OUT_HELP = "Directory for the figures (PNG, SVG), tables (CSV), data (JSON) and an HTML page."


# ---------------------------------------------------------------------------------------------
# Shared


@contextlib.contextmanager
def progress_reporter(enabled: bool = True, stages: int | None = None) -> Iterator[tuple[Callable[[str], None],
                                                                                          Callable[[int, int], None]]]:
    """A rich progress display on stderr; yields ``(say, units)``: ``say(message)`` starts a stage
    (an overall bar over ``stages`` when given), ``units(done, total)`` moves the unit bar of the
    current stage (e.g. a sweep). Silent when stderr is not a terminal or ``enabled`` is False."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = err_console()
    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not (enabled and console.is_terminal), transient=False)
    with prog:
        overall = prog.add_task("starting", total=stages) if stages else None
        state = {"unit": None, "count": 0}

        def say(message: str) -> None:
            if overall is not None:
                if state["count"]:
                    prog.advance(overall)
                state["count"] += 1
                prog.update(overall, description=message)
            else:
                prog.console.print(f"[dim]{message}[/]")

        def units(done: int, total: int) -> None:
            if state["unit"] is None:
                state["unit"] = prog.add_task("  sweep units (image, eps)", total=total)
            prog.update(state["unit"], completed=done, total=total)

        yield say, units
        if overall is not None:
            prog.update(overall, completed=stages, description="done")


def _test_data(model, n: Optional[int]):
    from polylens.nn.model import model_split

    split = model_split(model)
    x, y, images = split.x_test, split.y_test, split.images_test
    if n is not None:
        if n < 1:
            raise ParameterError(f"The '--n' option must be a positive int. Got {n} instead.")
        x, y, images = x[:n], y[:n], images[:n]
    return x, y, images


def _write_section(out: Path, section, name: str) -> Path:
    from polylens.report.html import write_report

    return write_report(out, [section], title=f"polylens {name}", filename=f"{name}.html")


def _rich_table(title: str, columns, rows, digits: int = 3):
    from rich.table import Table as RichTable

    t = RichTable(title=title)
    cells = [["-" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v)) for v in r] for r in rows]
    for i, c in enumerate(columns):
        # Columns keep their longest cell on one line (up to 20 characters) before folding.
        width = max((len(r[i]) for r in cells), default=0)
        t.add_column(str(c), overflow="fold", min_width=min(width, 20))
    for r in cells:
        t.add_row(*r)
    return t


def _show_table(table) -> None:
    out_console().print(_rich_table(table.caption or table.name, table.columns, table.rows, table.digits))


def _check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ParameterError(f"The '{name}' option must be one of {', '.join(choices)}. Got {value!r} instead.")
    return value


# ---------------------------------------------------------------------------------------------
# signatures


@app.command()
def signatures(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    eps: float = typer.Option(0.02, "--eps", help="Radius of the L-infinity ball around each image."),
    objective: str = typer.Option("logit", "--objective", help="What each LP optimises: logit or margin."),
    sense: str = typer.Option("max", "--sense", help="max or min."),
    per_digit: Optional[int] = typer.Option(100, "--per-digit", help="Images per digit (the first correctly "
                                            "classified ones); 0 for all."),
    n: Optional[int] = typer.Option(None, "--n", hidden=True, help="Use only the first N test images."),
    out: Optional[Path] = typer.Option(None, "--out", help=OUT_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Constraint signatures: which pixels and envelope cuts hold each digit's LP optimum."""
    from polylens.lenses.discover.signatures import signatures as run
    from polylens.report.build import _names_of, signatures_section

    _check_choice(objective, "--objective", ("logit", "margin"))
    _check_choice(sense, "--sense", ("max", "min"))
    m = load_model_arg(model)
    x, y, images = _test_data(m, n)
    res = run(m, x, y, eps=eps, objective=objective, sense=sense, images=images,
              max_per_digit=None if not per_digit else per_digit)
    sec = signatures_section(res, _names_of(m, m.network, x)[0], draw=out is not None)
    page = _write_section(out, sec, "signatures") if out is not None else None
    if json_out:
        print_json({**sec.data, "report": page})
        return
    _show_table(sec.tables[0])
    if page is not None:
        out_console().print(f"wrote {page}")


# ---------------------------------------------------------------------------------------------
# prototypes


@app.command()
def prototypes(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    eps: float = typer.Option(0.1, "--eps", help="Radius of the ball around each digit's best image."),
    lam: float = typer.Option(0.01, "--lam", help="Price per unit of ink moved (L1)."),
    n: Optional[int] = typer.Option(None, "--n", hidden=True, help="Use only the first N test images."),
    out: Optional[Path] = typer.Option(None, "--out", help=OUT_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Max-margin prototypes: the image near each digit's best example that the LP says is most that digit."""
    from polylens.lenses.discover.prototypes import prototypes as run
    from polylens.report.build import prototypes_section

    m = load_model_arg(model)
    x, y, _ = _test_data(m, n)
    res = run(m, x, y, eps=eps, lam=lam)
    sec = prototypes_section(res, draw=out is not None)
    page = _write_section(out, sec, "prototypes") if out is not None else None
    if json_out:
        print_json({**jsonable(sec.data), "report": page})
        return
    _show_table(sec.tables[0])
    if page is not None:
        out_console().print(f"wrote {page}")


# ---------------------------------------------------------------------------------------------
# neurons

_RENAME = re.compile(r"^\s*(L\d+\.n\d+)\s*=(.*)$")


def _parse_renames(items: List[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items:
        m = _RENAME.match(it)
        if not m:
            raise ParameterError(f"The '--rename' option must look like L1.n0=Frame (an empty name removes one). "
                                 f"Got {it!r} instead.")
        out[m.group(1)] = m.group(2).strip()
    return out


@app.command()
def neurons(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    rename: List[str] = typer.Option([], "--rename", help="Name a neuron, e.g. --rename L1.n0=Frame (repeatable). "
                                     "Saved into the card of a model directory; for a bundled or ONNX model give "
                                     "--out, which receives a renamed copy in OUT/model."),
    suggest: bool = typer.Option(False, "--suggest", help="Also show a suggested name for every neuron (geometric "
                                 "templates for layer 1, compositions deeper)."),
    top: int = typer.Option(8, "--top", help="Most and least activating test images to keep per neuron."),
    n: Optional[int] = typer.Option(None, "--n", hidden=True, help="Use only the first N test images."),
    out: Optional[Path] = typer.Option(None, "--out", help=OUT_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Neuron patterns: weight maps, LP-certified extreme inputs, top images, activation per class, names."""
    from polylens.lenses.discover.naming import suggest_names
    from polylens.lenses.discover.neurons import neuron_report
    from polylens.nn.model import save_card, save_model
    from polylens.report.build import neurons_section

    m = load_model_arg(model)
    names = _parse_renames(rename)
    saved = None
    if names:
        m = m.with_neuron_names(names)  # ParameterError for unknown keys
        src = Path(m.source)
        if m.source.startswith("bundled:") or not src.is_dir():
            if out is None:
                raise ModelError(f"The model {m.source} is not a model directory, so its names cannot be saved in "
                                 "place; give --out DIR to write a renamed copy to DIR/model (then use DIR/model as "
                                 "MODEL).")
            saved = save_model(m, out / "model")
        else:
            saved = save_card(m, src)
    x, y, images = _test_data(m, n)
    sug = ()
    if suggest:
        sug = suggest_names(m, x if len(x) >= 2 else None)
    res = neuron_report(m, x, y, images, top=min(top, len(x)))
    card = dict(m.card.neuron_names)
    sec = neurons_section(res, sug, card, draw=out is not None)
    page = _write_section(out, sec, "neurons") if out is not None else None
    if json_out:
        print_json({**sec.data, "saved": saved, "report": page})
        return
    t = sec.tables[0]
    if suggest:
        cols, title = ["neuron", "name", "suggested", "score"], "Neurons and suggested names (score: template match)"
    else:
        cols = ["neuron", "name", "max value", "max <= (LP bound)", "min value", "min >= (LP bound)"]
        title = ("Neurons (max, min: value at the LP maximiser / minimiser after refinement; <=, >=: rigorous LP "
                 "bounds over [0, 1]^d)")
    keep = [t.columns.index(c) for c in cols]
    short = {"max <= (LP bound)": "max <=", "min >= (LP bound)": "min >=", "max value": "max", "min value": "min"}
    out_console().print(_rich_table(title, [short.get(c, c) for c in cols], [[r[i] for i in keep] for r in t.rows]))
    if suggest and not names:
        out_console().print("Apply a suggestion with --rename, e.g. "
                            f"--rename {sug[0].key}={sug[0].name}" if sug else "")
    if saved is not None:
        out_console().print(f"saved names to {saved}")
    if page is not None:
        out_console().print(f"wrote {page}")


# ---------------------------------------------------------------------------------------------
# trace


@app.command()
def trace(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    index: int = typer.Option(..., "--index", help="Row of the model's test split to trace."),
    target: Optional[int] = typer.Option(None, "--target", help="The logit to trace into (default: the prediction)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the flow figure (PNG, SVG)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Trace one test image: every neuron's exact contribution (flow) to a logit."""
    from polylens.lenses.discover.trace import trace as run
    from polylens.nn.model import model_split
    from polylens.report.build import _names_of

    m = load_model_arg(model)
    split = model_split(m)
    N = len(split.y_test)
    if not 0 <= index < N:
        raise ParameterError(f"The '--index' option must be an int in [0, {N - 1}]. Got {index} instead.")
    C = m.network.n_classes
    if target is not None and not 0 <= target < C:
        raise ParameterError(f"The '--target' option must be an int in [0, {C - 1}]. Got {target} instead.")
    display, _ = _names_of(m, m.network, split.x_test)
    named = m.with_neuron_names({k: v for k, v in display.items() if k not in m.card.neuron_names and v != k})
    t = run(named, split.x_test[index], target=target)
    k = t.target
    flow = t.flow(k)
    files = []
    if out is not None:
        from polylens.report.figures import save_figure, trace_flow

        shape = m.network.input_shape if len(m.network.input_shape) == 2 else None
        files = save_figure(trace_flow(flow, shape, title=f"Test image {index} (label {int(split.y_test[index])}): "
                                                          f"flow into logit[{k}]"), Path(out) / f"trace-{index}-{k}")
    if json_out:
        print_json({"index": index, "label": int(split.y_test[index]), "prediction": int(np.argmax(t.logits)),
                    **t.to_dict(), "flow_graph": flow.to_dict(), "files": files})
        return
    con = out_console()
    con.print(f"Test image {index}: label {int(split.y_test[index])}, prediction {int(np.argmax(t.logits))}; "
              f"logit[{k}] = {t.logits[k]:+.4f}")
    rows = []
    for l in range(1, t.n_hidden_layers + 1):
        for j, name in enumerate(t.names[l - 1]):
            rows.append((f"L{l}.n{j}", name, float(t.pre[l - 1][j]), float(t.gate[l - 1][j]), float(t.post[l - 1][j]),
                         float(t.downstream[l][k, j]), float(t.node_flow(l)[k, j])))
    con.print(_rich_table(f"Flow into logit[{k}] (flow = path weight x z; each layer's flows plus later constants "
                          "sum to the logit)", ("neuron", "name", "a", "gate", "z", "path weight", "flow"), rows, 4))
    for l in range(1, t.n_hidden_layers + 1):
        con.print(f"layer {l}: flows sum {t.node_flow(l)[k].sum():+.4f} + later constants "
                  f"{t.later_constants(l)[k]:+.4f} = {t.logits[k]:+.4f}")
    for f in files:
        con.print(f"wrote {f}")


# ---------------------------------------------------------------------------------------------
# report


@app.command()
def report(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    out: Path = typer.Option(Path("polylens-report"), "--out", help="Directory for report.html and its files."),
    eps: str = typer.Option("0,0.005,0.01,0.02,0.03,0.05", "--eps", help="Radii of the robustness sweep."),
    sweep_n: Optional[int] = typer.Option(None, "--sweep-n", help="Certify only the first N test images in the "
                                          "sweep (default: all)."),
    workers: int = typer.Option(2, "--workers", help="Processes of the robustness sweep."),
    lp_classifier: bool = typer.Option(True, "--lp-classifier/--no-lp-classifier", help="Also run the LP classifier "
                                       "at each radius (the largest worst-case margin over the polytope)."),
    n: Optional[int] = typer.Option(None, "--n", hidden=True, help="Use only the first N test images everywhere."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Run every analysis on MODEL's test split and write one self-contained HTML report."""
    from polylens.report.build import SECTION_IDS, ReportOptions, run_report

    eps_list = parse_float_list(eps, "--eps", 0.0, 1.0)
    m = load_model_arg(model)
    opts = ReportOptions(sweep_eps=tuple(eps_list), sweep_n=sweep_n, workers=workers, lp_classifier=lp_classifier,
                         n_images=n)
    with progress_reporter(not json_out, stages=len(SECTION_IDS) + 1) as (say, units):
        run = run_report(m, out, opts, progress=say, units=units)
    if json_out:
        print_json(run.to_dict())
        return
    con = out_console()
    for sid, msg in run.errors.items():
        con.print(f"[yellow]{sid}: skipped: {msg}[/]")
    con.print("Stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in run.timings.items()))
    con.print(f"Report: {run.report}")
