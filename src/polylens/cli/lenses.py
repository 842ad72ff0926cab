"""One command per registered lens, made from its declaration, and ``polylens report``.

``polylens <command> MODEL [lens options] [--data F.npz] [--n N] [--out DIR] [--json]``: the lens's
options become flags (``per_digit`` -> ``--per-digit``, booleans ``--lp/--no-lp``, lists as
comma-separated text); ``--data`` reads labelled inputs from an ``.npz`` (default: the model's test
split) and ``--n`` keeps the first N; ``--out DIR`` writes the lens's report section as a one-section
HTML page with its figures, CSV tables and JSON (and is the lens's working directory, e.g. the
resumable sweep store of ``verify``); ``--json`` prints the result's ``to_dict()`` (with ``page``,
the page's path, when ``--out`` is given, and what ``prepare`` adds, e.g. ``saved``). Progress goes to stderr.

Nothing here names a lens: a lens registered with :func:`polylens.lenses.register` gets its command
the moment it is registered.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, List, Optional

import typer

from polylens.cli import app
from polylens.cli._common import (
    JSON_HELP, MODEL_HELP, load_model_arg, out_console, print_json, progress_reporter,
)
from polylens.errors import ParameterError
from polylens.lenses import all_lenses, on_register
from polylens.lenses.base import Lens, RunContext, SectionContext, option_specs

__all__ = ["add_lens_command", "remove_lens_command", "run_lens_command"]

OUT_HELP = "Directory for the figures (PNG, SVG), tables (CSV), data (JSON) and an HTML page."
DATA_HELP = ".npz with x (N x d, in [0, 1]) and y (labels); default: the model's test split."
N_HELP = "Use only the first N rows of the data."

_added: set[str] = set()


def _typer_param(spec) -> tuple[Any, Any]:
    """(annotation, typer.Option) of one lens option on the command line."""
    help_text = spec.help
    if spec.kind == "bool":
        base = spec.flag[2:]
        return bool, typer.Option(bool(spec.default), f"--{base}/--no-{base}", help=help_text)
    if spec.kind == "float" and spec.choices is None:
        ann = Optional[float] if spec.optional else float
        return ann, typer.Option(spec.default, spec.flag, help=help_text)
    if spec.kind == "int" and spec.choices is None:
        ann = Optional[int] if spec.optional else int
        return ann, typer.Option(spec.default, spec.flag, help=help_text)
    # Lists, names and enums travel as text and are converted by the lens's options (one message template).
    d = spec.default
    if isinstance(d, tuple):
        text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in d) or None
    elif d is None:
        text = None
    else:
        text = str(getattr(d, "value", d))
    if spec.choices:
        help_text = f"{help_text} One of: {', '.join(spec.choices)}."
    return Optional[str], typer.Option(text, spec.flag, help=help_text)


def add_lens_command(lens: Lens) -> None:
    """Add ``polylens <lens.cli_name>`` to the app (once)."""
    if lens.cli_name in _added:
        return
    specs = [s for s in option_specs(lens.options) if s.cli]
    P = inspect.Parameter
    params = [P("model", P.KEYWORD_ONLY, default=typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
                annotation=str)]
    for s in specs:
        ann, opt = _typer_param(s)
        params.append(P(s.name, P.KEYWORD_ONLY, default=opt, annotation=ann))
    if lens.needs_data:
        params.append(P("data_path", P.KEYWORD_ONLY, default=typer.Option(None, "--data", help=DATA_HELP),
                        annotation=Optional[Path]))
        params.append(P("n_rows", P.KEYWORD_ONLY, default=typer.Option(None, "--n", help=N_HELP),
                        annotation=Optional[int]))
    params.append(P("out", P.KEYWORD_ONLY, default=typer.Option(None, "--out", help=OUT_HELP),
                    annotation=Optional[Path]))
    params.append(P("json_out", P.KEYWORD_ONLY, default=typer.Option(False, "--json", help=JSON_HELP),
                    annotation=bool))

    def command(**kwargs) -> None:
        run_lens_command(lens, kwargs)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = lens.summary
    command.__name__ = lens.cli_name.replace("-", "_")
    app.command(name=lens.cli_name, help=lens.summary)(command)
    _added.add(lens.cli_name)


def remove_lens_command(lens: Lens) -> None:
    """Take ``polylens <lens.cli_name>`` off the app again (the lens was unregistered)."""
    if lens.cli_name not in _added:
        return
    app.registered_commands[:] = [c for c in app.registered_commands if c.name != lens.cli_name]
    _added.discard(lens.cli_name)


def load_data(model, lens: Lens, data_path: Path | None, n: int | None):
    """The data a lens command runs on: ``--data`` or the model's test split, first ``--n`` rows."""
    from polylens.data.labelled import Data

    if n is not None and n < 1:
        raise ParameterError(f"The '--n' option must be a positive int. Got {n} instead.")
    net = model.network
    data = Data.from_npz(data_path, net.input_dim, net.n_classes) if data_path is not None else Data.of_model(model)
    return data.head(n)


def run_lens_command(lens: Lens, kwargs: dict) -> None:
    """What every lens command does (see the module docstring)."""
    from polylens.report.html import write_report

    kwargs = dict(kwargs)
    model = load_model_arg(kwargs.pop("model"))
    out = kwargs.pop("out")
    json_out = kwargs.pop("json_out")
    data_path = kwargs.pop("data_path", None)
    n = kwargs.pop("n_rows", None)
    specs = {s.name: s for s in option_specs(lens.options)}
    # An option left out (None from the parser) keeps its default, unless None is one of its values.
    kwargs = {k: v for k, v in kwargs.items() if v is not None or specs[k].optional}
    options = lens.options.from_text(kwargs, {k: s.flag for k, s in specs.items()})
    extra: dict = {}
    if lens.prepare is not None:
        model, extra = lens.prepare(model, options, out)
    data = load_data(model, lens, data_path, n) if lens.needs_data else None
    with progress_reporter(not json_out) as (say, units):
        result = lens.run(model, data, options, RunContext(progress=say, units=units, workdir=out))
    page = None
    if out is not None and lens.section is not None:
        sec = lens.section(result, SectionContext(model, data, draw=True))
        page = write_report(out, [sec], title=f"polylens {lens.cli_name}: {lens.title}", filename=f"{lens.name}.html")
    if json_out:
        print_json({**result.to_dict(), **extra, **({"page": str(page)} if page is not None else {})})
        return
    con = out_console()
    if lens.show is not None:
        lens.show(result, con, options)
    if extra.get("saved"):
        con.print(f"saved names to {extra['saved']}")
    if page is not None:
        con.print(f"wrote {page}")


for _lens in all_lenses():
    add_lens_command(_lens)
on_register(add_lens_command, remove_lens_command)


# ---------------------------------------------------------------------------------------------
# report


def parse_settings(items: List[str]) -> dict[str, dict[str, str]]:
    """``["robustness.eps=0,0.01", "signatures.per_digit=30"]`` -> ``{lens: {option: text}}``."""
    out: dict[str, dict[str, str]] = {}
    for it in items:
        key, eq, value = it.partition("=")
        lens_name, dot, opt = key.strip().partition(".")
        if not eq or not dot or not lens_name or not opt:
            raise ParameterError(f"The '--set' option must look like LENS.OPTION=VALUE, e.g. robustness.eps=0,0.01. "
                                 f"Got {it!r} instead.")
        out.setdefault(lens_name, {})[opt.replace("-", "_")] = value
    return out


@app.command()
def report(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    out: Path = typer.Option(Path("polylens-report"), "--out", help="Directory for report.html and its files."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated lenses to run (default: every lens "
                                       "of the report)."),
    settings: List[str] = typer.Option([], "--set", help="A lens option, e.g. --set robustness.eps=0,0.01 or --set "
                                       "signatures.per_digit=30 (repeatable)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes of every lens that has a 'workers' "
                                          "option (the robustness sweep)."),
    n: Optional[int] = typer.Option(None, "--n", help="Use only the first N test images everywhere."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Run every lens of the report on MODEL's test split and write one self-contained HTML report."""
    from polylens.lenses import report_lenses
    from polylens.report.build import ReportOptions, run_report

    names = [t.strip() for t in only.split(",")] if only else None
    lenses = report_lenses(names)
    overrides = parse_settings(settings)
    if workers is not None:
        for l in lenses:
            if any(s.name == "workers" for s in option_specs(l.options)):
                overrides.setdefault(l.name, {}).setdefault("workers", str(workers))
    if n is not None and n < 1:
        raise ParameterError(f"The '--n' option must be a positive int. Got {n} instead.")
    opts = ReportOptions(lenses=tuple(l.name for l in lenses), overrides=overrides, n_images=n)
    m = load_model_arg(model)
    with progress_reporter(not json_out, stages=len(lenses) + 1) as (say, units):
        run = run_report(m, out, opts, progress=say, units=units)
    if json_out:
        print_json(run.to_dict())
        return
    con = out_console()
    for sid, msg in run.errors.items():
        con.print(f"[yellow]{sid}: skipped: {msg}[/]")
    con.print("Stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in run.timings.items()))
    con.print(f"Report: {run.report}")
