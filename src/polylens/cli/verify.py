"""``polylens verify``: certified robustness sweeps over radii, resumable, on every core."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from polylens.cli import app
from polylens.cli._common import JSON_HELP, MODEL_HELP, err_console, load_model_arg, out_console, parse_float_list, print_json
from polylens.errors import DataError, ParameterError

DEFAULT_EPS = "0,0.005,0.01,0.02,0.03,0.05"


def _load_npz(path: Path, width: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read ``x`` (N, width) in [0, 1] and ``y`` (N,) labels from an .npz, never unpickling."""
    if not path.is_file():
        raise DataError(f"No data file at {path}.")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise DataError(f"{path} lacks the array(s) {', '.join(missing)}; it needs x (N x d) and y (N labels).")
            x, y = np.asarray(f["x"]), np.asarray(f["y"])
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz file ({str(e).splitlines()[0] if str(e) else type(e).__name__}).") from None
    if x.ndim == 3:
        x = x.reshape(len(x), -1)
    if x.ndim != 2 or x.shape[1] != width:
        raise ParameterError(f"The data's x must have shape (N, {width}) for this model. Got {x.shape} instead.")
    if not np.issubdtype(x.dtype, np.number) or not np.issubdtype(y.dtype, np.integer) and not (
            np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
        raise ParameterError("The data's x must be numeric and y integer labels.")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)) or x.min(initial=0) < 0 or x.max(initial=0) > 1:
        raise ParameterError(f"Every image value must lie in [0, 1]; {path} has values in [{x.min():g}, {x.max():g}].")
    y = y.astype(np.int64).ravel()
    if y.shape != (len(x),):
        raise ParameterError(f"The data has {len(x)} images but {y.shape[0]} labels.")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        bad = int(y[(y < 0) | (y >= n_classes)][0])
        raise ParameterError(f"The 'label' values must be ints in [0, {n_classes - 1}]. Got {bad} instead.")
    return x, y


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


@app.command()
def verify(
    model: str = typer.Argument(..., metavar="MODEL", help=MODEL_HELP),
    eps: str = typer.Option(DEFAULT_EPS, "--eps", help="Comma-separated L-infinity radii in [0, 1]."),
    n: int = typer.Option(2000, "--n", min=1, help="Certify the first N images."),
    data: Optional[Path] = typer.Option(None, "--data", help=".npz with x (N x d, in [0,1]) and y (labels); "
                                        "default: the model's test split."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the sweep's database (resumable) and "
                                       "its summary, table and plot; rerunning with the same --out continues."),
    mode: str = typer.Option("hull", "--mode", help="Envelope of the LP: hull (several cuts per side) or pair."),
    cuts: int = typer.Option(8, "--cuts", min=1, max=64, help="Cuts per side in hull mode."),
    lp: bool = typer.Option(True, "--lp/--no-lp", help="Run LPs where bound propagation fails."),
    alpha: bool = typer.Option(False, "--alpha/--no-alpha", help="Also try CROWN with optimised slopes before LPs."),
    lp_classifier: bool = typer.Option(True, "--lp-classifier/--no-lp-classifier",
                                       help="Also report the LP classifier (largest worst-case margin)."),
    attack_steps: int = typer.Option(30, "--attack-steps", min=0, help="PGD steps per attack run."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Seconds per LP solve (default: none)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Certify robustness at each radius: verified by IBP / backward linear bounds / LP, attacked, unknown."""
    import os

    from polylens.lenses.verify.certify import CertifyOptions
    from polylens.lenses.verify.sweep import run_sweep
    from polylens.nn.model import model_split

    eps_list = parse_float_list(eps, "eps", 0.0, 1.0)
    m = load_model_arg(model)
    net = m.network
    if data is not None:
        x, y = _load_npz(Path(data), net.input_dim, net.n_classes)
        data_name = str(Path(data).resolve())
    else:
        split = model_split(m)
        x, y = split.x_test, split.y_test
        data_name = f"{split.name} test split"
    x, y = x[:n], y[:n]
    options = CertifyOptions(mode=mode, cuts=cuts, use_lp=lp, alpha=alpha, attack_steps=attack_steps,
                             time_limit=time_limit)
    workers = min(workers, os.cpu_count() or 1)
    settings = {"model": _digest(*[a for l in net.layers for a in (l.W, l.b)]), "data": _digest(x, y)}

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = err_console()
    bar = Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TextColumn("units"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
                   disable=not console.is_terminal)
    with bar:
        task = bar.add_task("sweep", total=len(x) * len(eps_list))
        result = run_sweep(net, x, y, eps_list, options=options, out_dir=out, workers=workers,
                           with_lp_classifier=lp_classifier, settings=settings,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    payload = result.to_json()
    payload["summary"]["model"] = m.source
    payload["summary"]["data"] = data_name
    payload["summary"]["n"] = len(x)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(payload["summary"], indent=2))
        (out / "results.json").write_text(json.dumps(payload))
        _write_plot(result, out)
    if json_out:
        print_json(payload)
        return
    _print_tables(result, lp_classifier)
    if out is not None:
        out_console().print(f"results in {out}/ (sweep.sqlite, summary.json, results.json, robustness.png/.svg)")


def _write_plot(result, out: Path) -> None:
    """Accuracy against eps per digit (robustness.png and .svg), drawn by the report layer."""
    from polylens.report.figures import robustness_curves, save_figure

    save_figure(robustness_curves(result.summary), out / "robustness")


def _print_tables(result, with_lp_classifier: bool) -> None:
    from rich.table import Table

    con = out_console()
    s = result.summary
    names = [("clean", "clean"), ("ibp", "IBP"), ("crown", "CROWN"), ("lp", "LP"), ("attack", "attack"),
             ("unknown", "unknown")] + ([("lp_classifier", "LP classifier")] if with_lp_classifier else [])
    t = Table(title=f"Robust accuracy on {result.n_images} images (verified: cumulative ladder; attack: upper bound)")
    t.add_column("eps", justify="right")
    for _, label in names:
        t.add_column(label, justify="right")
    for e in result.eps:
        row = s["overall"][f"{e:g}"]
        t.add_row(f"{e:g}", *[f"{100 * row[k]['value']:.1f}%" for k, _ in names])
    con.print(t)
    d = Table(title="LP-verified accuracy per digit, with 95% Wilson intervals")
    d.add_column("digit", justify="right")
    for e in result.eps:
        d.add_column(f"eps {e:g}", justify="right")
    for c in range(result.n_classes):
        cells = []
        for e in result.eps:
            r = s["per_digit"][str(c)][f"{e:g}"]["lp"]
            cells.append(f"{100 * r['value']:.0f}% [{100 * r['ci'][0]:.0f}-{100 * r['ci'][1]:.0f}] n={r['n']}" if r["n"] else "-")
        d.add_row(str(c), *cells)
    con.print(d)
