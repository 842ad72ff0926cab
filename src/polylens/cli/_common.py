"""Helpers every command module shares: JSON and table output, loading a MODEL argument, and
parsing number lists given on the command line.

Output conventions: results go to stdout (a rich table, or with ``--json`` exactly one JSON
object); progress bars and notes go to stderr, so ``--json`` output can always be piped.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from polylens.errors import DataError, ParameterError
from polylens.jsonio import jsonable  # noqa: F401 (re-exported for the commands)
from polylens.stdio import json_stream

__all__ = [
    "JSON_HELP", "MODEL_HELP", "accuracy_table", "err_console", "jsonable", "load_inputs", "load_model_arg",
    "out_console", "parse_float_list", "parse_int_list", "percent", "print_json", "progress_reporter", "softmax",
]

MODEL_HELP = "A model directory, an .onnx file, or a bundled model name (e.g. 'seed')."
JSON_HELP = "Print one JSON object on stdout instead of tables."


def out_console():
    """A rich console on the current stdout (created per call, so redirected streams are honoured)."""
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def err_console():
    """A rich console on the current stderr, for progress and notes."""
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False)


def print_json(obj: Any) -> None:
    """Print ``obj`` as one JSON document (indented) on stdout: polylens' own stream, which under
    :func:`polylens.stdio.reserved_stdout` nothing else writes to."""
    stream = json_stream()
    stream.write(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")
    stream.flush()


def load_model_arg(spec: str):
    """Load the MODEL argument of a command (bundled name, directory or .onnx); ModelError with
    one line when it cannot."""
    from polylens.nn.model import load_model

    return load_model(spec)


def _split_items(text: str, name: str, what: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",")]
    if not text.strip() or any(t == "" for t in items):
        raise ParameterError(f"The '{name}' option must be a comma-separated list of {what}, like "
                             f"{'0,1,2' if what == 'ints' else '0,0.01,0.02'}. Got {text!r} instead.")
    return items


def parse_int_list(text: str, name: str, lo: int | None = None, hi: int | None = None) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; each in [lo, hi]; ParameterError naming the option otherwise."""
    out = []
    for t in _split_items(text, name, "ints"):
        try:
            v = int(t)
        except ValueError:
            raise ParameterError(f"The '{name}' option must be a comma-separated list of ints, like 0,1,2. "
                                 f"Got {text!r} instead.") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ParameterError(f"The '{name}' option must hold ints in [{'-inf' if lo is None else lo}, "
                                 f"{'inf' if hi is None else hi}]. Got {v} in {text!r} instead.")
        out.append(v)
    return out


def parse_float_list(text: str, name: str, lo: float | None = None, hi: float | None = None) -> list[float]:
    """``"0,0.01,0.02"`` -> [0.0, 0.01, 0.02]; finite, each in [lo, hi]; ParameterError otherwise."""
    out = []
    for t in _split_items(text, name, "floats"):
        try:
            v = float(t)
        except ValueError:
            v = float("nan")
        if not math.isfinite(v):
            raise ParameterError(f"The '{name}' option must be a comma-separated list of finite floats, like "
                                 f"0,0.01,0.02. Got {text!r} instead.")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ParameterError(f"The '{name}' option must hold floats in [{'-inf' if lo is None else lo}, "
                                 f"{'inf' if hi is None else hi}]. Got {t} in {text!r} instead.")
        out.append(v)
    return out


def load_inputs(path: str | Path, width: int) -> np.ndarray:
    """Read inputs from a ``.npy`` file (never unpickled), shape (N, width) or (width,); returns
    float64 (N, width). DataError for an unreadable file or non-finite values, ParameterError for
    a wrong shape."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"No input file at {p}.")
    with open(p, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise DataError(f"{p} is not a .npy file (it lacks the .npy header); save inputs with numpy.save.")
    try:
        x = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"Cannot read {p} as a .npy array (pickled object arrays are refused): "
                        f"{' '.join(str(e).split())}") from None
    if x.dtype.kind not in "biuf":
        raise DataError(f"{p} holds a {x.dtype} array; inputs must be numbers.")
    shape = x.shape
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != width or x.shape[0] == 0:
        raise ParameterError(f"The inputs in {p} must have shape (N, {width}) or ({width},) for this model. "
                             f"Got shape {shape} instead.")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"{p} holds non-finite values (NaN or infinity).")
    return x


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits (scipy's, computed stably)."""
    from scipy.special import softmax as _softmax

    return _softmax(logits, axis=1)


def percent(v: float | None) -> str:
    """``0.7675`` -> ``"76.8%"``; ``"-"`` for None or NaN."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def accuracy_table(per_class: Iterable[float], counts: Iterable[int] | None = None, title: str | None = None):
    """A rich table of per-class accuracies (and test counts when given)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("class", justify="right")
    table.add_column("accuracy", justify="right")
    counts = list(counts) if counts is not None else None
    if counts is not None:
        table.add_column("test examples", justify="right")
    for c, a in enumerate(per_class):
        row = [str(c), percent(a)]
        if counts is not None:
            row.append(str(counts[c]))
        table.add_row(*row)
    return table


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
