"""The full report of a model: run every lens of the report, one section each, and write it.

:func:`run_report` is what ``polylens report`` and ``polylens demo`` call. It runs every registered
lens with ``in_report`` (see :mod:`polylens.lenses`), in registry order, each on the same data with
its options (the lens's defaults, its ``report_options``, then the caller's overrides), turns each
result into a section with the lens's ``section`` and writes ``OUT/report.html`` with
:func:`polylens.report.html.write_report` (figures, CSV tables and JSON data next to it) and
``OUT/timings.json`` (wall time per lens). Lenses that keep resumable state (the robustness sweep)
keep it under ``OUT/store/<lens>``, so a second run reuses it.

Reproducibility: every lens is deterministic (seeded attacks, single-threaded simplex), so two runs
write the same numbers; the JSON under ``OUT/data`` leaves out wall times (those go to
``timings.json`` only).

Models whose input is not a 2-D image still get every section; the image figures are left out with
a note.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from polylens.errors import PolylensError
from polylens.report.html import Section, write_report

__all__ = ["ReportOptions", "ReportRun", "run_report"]

#: Keys left out of section JSON: wall times differ between runs (they go to timings.json).
_VOLATILE = frozenset({"seconds"})


@dataclass(frozen=True)
class ReportOptions:
    """What the report runs, and how hard.

    ``lenses``: the names of the lenses to run (None: every lens of the report, in registry order);
    ``overrides``: option values per lens name, over the lens's defaults and report options
    (``{"robustness": {"eps": (0, 0.01), "workers": 1}}``; text as on the command line is accepted);
    ``n_images``: use only the first that many test images for every lens (None: all; for quick
    runs and tests).
    """

    lenses: tuple[str, ...] | None = None
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    n_images: int | None = None

    def __post_init__(self):
        from polylens.lenses import report_lenses

        if self.lenses is not None:
            object.__setattr__(self, "lenses", tuple(self.lenses))
        known = {l.name for l in report_lenses()}
        bad = sorted(k for k in self.overrides if k not in known)
        if bad:
            from polylens.errors import ParameterError

            raise ParameterError(f"The report has no lens {', '.join(map(repr, bad))}; its lenses are "
                                 f"{', '.join(sorted(known))}.")
        object.__setattr__(self, "overrides", {k: dict(v) for k, v in self.overrides.items()})

    def options_for(self, lens):
        """The options ``lens`` runs with in the report."""
        over = self.overrides.get(lens.name, {})
        labels = {k: f"{lens.name}.{k}" for k in over}
        return lens.options.from_text({**lens.report_options, **over}, labels)

    def to_dict(self) -> dict:
        from polylens.jsonio import jsonable

        return {"lenses": None if self.lenses is None else list(self.lenses), "overrides": jsonable(self.overrides),
                "n_images": self.n_images}


@dataclass
class ReportRun:
    """What :func:`run_report` did: the model, the result of every lens by name, the sections, the
    report path, the files written, wall seconds per lens (and ``write``, ``total``), the options each
    lens ran with, and the error message of every lens that failed (its section then says so)."""

    model: Any
    options: ReportOptions
    out: Path
    results: dict = field(default_factory=dict)
    sections: list = field(default_factory=list)
    report: Path | None = None
    files: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    lens_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model": getattr(self.model, "source", "memory"), "out": str(self.out),
                "report": None if self.report is None else str(self.report), "files": [str(f) for f in self.files],
                "timings": dict(self.timings), "errors": dict(self.errors), "options": self.options.to_dict(),
                "lens_options": {k: v.to_dict() for k, v in self.lens_options.items()}}


def _strip(obj: Any) -> Any:
    """``obj`` with every ``seconds`` key removed, recursively (for reproducible JSON)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in _VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _skipped(lens, message: str) -> Section:
    return Section(lens.name, lens.title, "This part of the report could not be computed.", note=f"Skipped: {message}")


#: Where lenses keep resumable state inside a report's directory (left out of the report's file list).
STORE_DIR = "store"


def run_report(model: Any, out: str | Path, options: ReportOptions = ReportOptions(), *, data: Any = None,
               progress: Callable[[str], None] | None = None, units: Callable[[int, int], None] | None = None,
               title: str | None = None,
               writers: Sequence[Callable[["ReportRun"], Sequence[Path]]] = ()) -> ReportRun:
    """Run every lens of the report on ``model`` (a :class:`~polylens.nn.model.Model`) and write the
    report into ``out``.

    ``data``: a :class:`~polylens.data.labelled.Data` (default: the model's test split).
    ``progress(message)`` is told as each lens starts; ``units(done, total)`` follows long stages (the
    robustness sweep). ``writers``: callables run after the report is written, each given the
    :class:`ReportRun` and returning the paths it wrote (e.g. a static site next to the report).

    A lens that fails with a :class:`~polylens.errors.PolylensError` does not stop the others: its
    section says why and ``ReportRun.errors`` holds the message.
    """
    from polylens.data.labelled import Data
    from polylens.jsonio import jsonable
    from polylens.lenses import report_lenses
    from polylens.lenses.base import RunContext, SectionContext

    t_start = time.perf_counter()
    say = progress or (lambda _m: None)
    out = Path(out)
    lenses = report_lenses(options.lenses)
    lens_options = {l.name: options.options_for(l) for l in lenses}  # bad options fail before any work
    if data is None:
        data = Data.of_model(model)
    data = data.head(options.n_images)
    run = ReportRun(model, options, out, lens_options=lens_options)
    out.mkdir(parents=True, exist_ok=True)
    ctx = SectionContext(model, data, draw=True)
    for lens in lenses:
        say(lens.name)
        t0 = time.perf_counter()
        workdir = out / STORE_DIR / (lens.name if options.n_images is None else f"{lens.name}-n{len(data)}")
        try:
            result = lens.run(model, data, lens_options[lens.name],
                              RunContext(progress=lambda _m: None, units=units or (lambda *_: None), workdir=workdir,
                                         earlier=dict(run.results)))
            run.results[lens.name] = result
            sec = lens.section(result, ctx)
        except PolylensError as e:
            run.errors[lens.name] = str(e)
            sec = _skipped(lens, str(e))
        run.timings[lens.name] = time.perf_counter() - t0
        if sec.data is not None:
            sec = replace(sec, data=_strip(jsonable(sec.data)))
        run.sections.append(sec)

    say("writing the report")
    t0 = time.perf_counter()
    network = model.network
    meta = {"model": getattr(model, "source", "memory"), "architecture": network.architecture,
            "activation": getattr(getattr(model, "card", None), "activation", "") or "",
            "test images": len(data)}
    acc = getattr(getattr(model, "card", None), "test_accuracy", None)
    if acc is not None:
        meta["test accuracy"] = f"{100 * acc:.2f}%"
    path = write_report(out, run.sections, title=title or f"polylens report: {meta['model']}",
                        subtitle="What the polytope says about this network: "
                                 + ", ".join(l.name for l in lenses) + ".", meta=meta)
    run.report = path
    run.files = sorted(p for p in out.rglob("*") if p.is_file() and p.relative_to(out).parts[0] != STORE_DIR)
    for w in writers:
        run.files.extend(Path(p) for p in w(run))
    run.timings["write"] = time.perf_counter() - t0
    run.timings["total"] = time.perf_counter() - t_start
    (out / "timings.json").write_text(json.dumps({k: round(v, 3) for k, v in run.timings.items()}, indent=2) + "\n",
                                      encoding="utf-8")
    return run
