"""The static explorer: the same page as ``polylens serve`` with every answer precomputed.

:func:`export_site` writes a folder any static host can serve (and that opens from disk):

``index.html``, ``static/``
    the page and its shell modules, byte for byte the files the live server serves;
``lens/<name>/<module>``
    each lens's view module, copied from the lens's own folder;
``vendor/plotly.min.js``
    plotly.js from the installed ``plotly`` wheel (nothing is fetched from a CDN);
``config.js``
    ``window.POLYLENS_CONFIG = {"mode": "static", "eps_grid": [...], "modules": {...}}``; ``modules``
    maps each module to a ``data:`` URL, which the page uses only when opened over ``file://``
    (Chromium refuses ES module files there; see ``docs/explorer.md``);
``data/core.json``, ``data/sample-<i>.json``, ``data/lens-<name>.json``
    the precomputed payloads (the same JSON the live API answers), and the same data as
    ``data/*.js`` scripts (``polylensData(name, payload)``), which the page loads with ``<script>``
    tags because ``fetch()`` of local files is blocked over ``file://``.

What is precomputed: for each exported test sample its forward pass and diagram and its interval
bounds and envelope cuts at every eps of the grid (for the neurons the diagram draws); and for every
lens with a view, every payload kind: per-input payloads for every exported sample and every
parameter set the payload's ``grid`` names (e.g. the certificate at every grid eps, the trace into
every class), the others for every parameter set of their grid (e.g. every neuron's panel), each
filed under :func:`~polylens.explorer.api.canonical_key` of its parameters. Live features that need
a server (painting a new input, an eps off the grid) say so on the page.

>>> from polylens.nn.model import load_model
>>> export_site(load_model("seed"), "site", n_samples=20)  # doctest: +SKIP
PosixPath('site/index.html')
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from polylens.errors import ParameterError
from polylens.explorer.api import Explorer, ExplorerConfig, batch_bounds_payloads, jsonify
from polylens.nn.model import Model
from polylens.validation import check_float, check_int

__all__ = ["DEFAULT_EPS_GRID", "ExportResult", "choose_samples", "export_site", "export_site_report", "report_writer"]

#: The radii a static export precomputes (the slider moves over these).
DEFAULT_EPS_GRID = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)


def choose_samples(labels: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """``n`` test sample indices balanced over classes: the first ceil(n / C) of each class in test
    order (classes with fewer give what they have), topped up in test order, sorted."""
    labels = np.asarray(labels)
    n = min(n, len(labels))
    per = -(-n // max(n_classes, 1))
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per] for c in range(n_classes)] or [np.zeros(0, np.int64)])
    chosen = np.sort(chosen)[:n] if len(chosen) > n else chosen
    if len(chosen) < n:
        rest = np.setdiff1d(np.arange(len(labels)), chosen)[: n - len(chosen)]
        chosen = np.concatenate([chosen, rest])
    return np.sort(chosen.astype(np.int64))


#: Keys of wall-clock times, left out of an export so that two exports of a model are identical.
_TIMING_KEYS = frozenset({"seconds", "elapsed_s"})


def _strip_timings(obj):
    if isinstance(obj, dict):
        return {k: _strip_timings(v) for k, v in obj.items() if k not in _TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip_timings(v) for v in obj]
    return obj


def _write_payload(data_dir: Path, name: str, payload: dict) -> int:
    text = json.dumps(_strip_timings(payload), separators=(",", ":"), allow_nan=False)
    (data_dir / f"{name}.json").write_text(text, encoding="utf-8")
    # </script> cannot occur in JSON produced from our payloads except inside strings; escape "</" anyway.
    safe = text.replace("</", "<\\/")
    js = f"polylensData({json.dumps(name)},{safe});\n"
    (data_dir / f"{name}.js").write_text(js, encoding="utf-8")
    return len(text)


class ExportResult(dict):
    """What :func:`export_site` wrote: ``index`` (path of index.html), ``out``, ``n_samples``,
    ``eps_grid``, ``files``, ``bytes``, ``seconds``."""


def export_site(model: Model, out_dir: str | Path, *, n_samples: int = 60,
                eps_grid: Sequence[float] = DEFAULT_EPS_GRID, config: ExplorerConfig | None = None,
                progress: Callable[[str], None] | None = None) -> Path:
    """Write the static explorer of ``model`` into ``out_dir`` (created; files there are replaced).

    ``n_samples``: test samples exported (balanced over classes, see :func:`choose_samples`);
    ``eps_grid``: the radii precomputed for each of them; ``config``: the explorer settings (diagram
    size, sweep, signature and prototype settings). ``progress`` receives a line per step.
    Returns the path of ``index.html``.
    """
    return Path(export_site_report(model, out_dir, n_samples=n_samples, eps_grid=eps_grid, config=config,
                                   progress=progress)["index"])


def _lens_answers(ex: Explorer, idx: np.ndarray, grid: Sequence[float], say) -> tuple[dict, dict]:
    """Every lens payload the page may ask for: ({sample: {"name/kind": {key: payload}}},
    {lens name: {kind: {key: payload}}})."""
    from polylens.explorer.api import _payloads, canonical_key
    from polylens.lenses import all_lenses

    per_sample: dict[int, dict] = {int(i): {} for i in idx}
    per_lens: dict[str, dict] = {}
    for lens in all_lenses():
        if lens.view is None:
            continue
        for kind, p in _payloads(lens).items():
            say(f"{lens.name}: {kind}")
            tag = f"{lens.name}/{kind}"
            sets = list(p.grid(ex, grid)) if p.grid is not None else [{}]
            if p.per_input:
                if p.export is not None:
                    done = p.export(ex, idx, grid)
                else:
                    done = {int(i): {canonical_key(q): ex.lens_payload(lens.name, kind, {**q, "sample": int(i)})
                                     for q in sets} for i in idx}
                for i in idx:
                    per_sample[int(i)][tag] = jsonify(done[int(i)])
            else:
                if p.export is not None:
                    done = p.export(ex, idx, grid)
                else:
                    done = {canonical_key(q): ex.lens_payload(lens.name, kind, q) for q in sets}
                per_lens.setdefault(lens.name, {})[kind] = jsonify(done)
    return per_sample, per_lens


def export_site_report(model: Model, out_dir: str | Path, *, n_samples: int = 60,
                       eps_grid: Sequence[float] = DEFAULT_EPS_GRID, config: ExplorerConfig | None = None,
                       progress: Callable[[str], None] | None = None) -> ExportResult:
    """:func:`export_site`, returning an :class:`ExportResult` with what was written."""
    from polylens.explorer.server import plotly_js_path, static_dir
    from polylens.lenses import all_lenses

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    n_samples = check_int(n_samples, "n_samples", "export_site", 0, 100_000)
    grid = tuple(sorted({check_float(e, "eps_grid", "export_site", 0.0, 1.0) for e in eps_grid}))
    if not grid:
        raise ParameterError("The 'eps_grid' parameter of export_site must list at least one radius.")
    cfg = config or ExplorerConfig()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"Cannot export the site to {out}: it exists and is not a directory.")
    ex = Explorer(model, config=cfg, mode="static")
    try:
        net = ex.network
        idx = choose_samples(ex.data.y, n_samples, net.n_classes) if ex.n_samples else np.zeros(0, np.int64)
        X = ex.data.x[idx]
        data_dir = out / "data"
        if data_dir.exists():
            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True)
        n_bytes = 0

        # -- the shell: forward passes, diagrams, and bounds at every grid eps (batched) -------------
        say(f"forward passes of {len(idx)} samples")
        forwards = [ex.forward_payload(X[k], int(i)) for k, i in enumerate(idx)]
        shown = [[c["shown"] for c in f["diagram"]["columns"][1:-1]] for f in forwards]
        bounds = [[None] * len(grid) for _ in idx]
        for g, eps in enumerate(grid):
            say(f"bounds at eps={eps:g}")
            bs = batch_bounds_payloads(net, X, eps, cuts=cfg.cuts, neurons=shown) if len(idx) else []
            for k, b in enumerate(bs):
                bounds[k][g] = b

        # -- every lens's payloads ------------------------------------------------------------------
        per_sample, per_lens = _lens_answers(ex, idx, grid, say)
        for k, i in enumerate(idx):
            payload = {"forward": forwards[k], "bounds": bounds[k], "lens": per_sample[int(i)]}
            n_bytes += _write_payload(data_dir, f"sample-{int(i)}", jsonify(payload))
        for name, kinds in per_lens.items():
            n_bytes += _write_payload(data_dir, f"lens-{name}", kinds)
        model_payload = ex.model_payload()
        model_payload["n_samples"] = int(len(idx))
        model_payload["names"] = {"storage": "browser", "path": None,
                                  "note": "Static site: names typed here are kept in this browser only."}
        core = {"model": model_payload, "samples": ex.samples_payload(idx), "eps_grid": list(grid)}
        n_bytes += _write_payload(data_dir, "core", jsonify(core))

        # -- the page ------------------------------------------------------------------------------
        say("page files")
        sdir = static_dir()
        (out / "static").mkdir(exist_ok=True)
        modules = {}
        for f in sorted(sdir.iterdir()):
            if f.is_file() and f.suffix in (".js", ".css", ".html"):
                shutil.copyfile(f, out / "static" / f.name)
                if f.suffix == ".js":
                    modules[f"polylens/{f.name}"] = _data_url(f)
        for lens in all_lenses():
            if lens.view is None or lens.view.module is None:
                continue
            src = lens.folder() / lens.view.module
            dst = out / "lens" / lens.name
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst / src.name)
            modules[f"polylens-lens/{lens.name}/{src.name}"] = _data_url(src)
        shutil.copyfile(sdir / "index.html", out / "index.html")
        (out / "static" / "index.html").unlink(missing_ok=True)
        (out / "vendor").mkdir(exist_ok=True)
        shutil.copyfile(plotly_js_path(), out / "vendor" / "plotly.min.js")
        conf = {"mode": "static", "eps_grid": list(grid), "model_id": f"{model.source}:{net.architecture}",
                "modules": modules}
        (out / "config.js").write_text(f"window.POLYLENS_CONFIG = {json.dumps(conf)};\n", encoding="utf-8")
        files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        return ExportResult(index=str(out / "index.html"), out=str(out), n_samples=int(len(idx)), eps_grid=list(grid),
                            files=len(files), bytes=int(sum((out / f).stat().st_size for f in files)),
                            data_bytes=n_bytes, seconds=round(time.perf_counter() - t0, 2))
    finally:
        ex.close()


def _data_url(path: Path) -> str:
    return "data:text/javascript;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def report_writer(run, *, n_samples: int = 60, config: ExplorerConfig | None = None) -> list[Path]:
    """A writer for :func:`polylens.report.build.run_report` (and ``polylens demo``'s ``EXTRA_WRITERS``):
    the static explorer of ``run.model`` in ``run.out / "explorer"``. Returns the files written."""
    out = Path(run.out) / "explorer"
    export_site(run.model, out, n_samples=n_samples, config=config)
    return sorted(p for p in out.rglob("*") if p.is_file())
