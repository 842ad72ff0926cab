"""The HTML report: one self-contained file, plus the figures and tables next to it.

:func:`write_report` takes :class:`Section` values (an id, a title, a short explanation, figures,
tables, preformatted blocks such as formulas, and the section's data as JSON) and writes

``OUT/report.html``
    one HTML file that needs nothing else: the CSS is inline, every figure is a base64 PNG in a
    ``data:`` URI, there are no scripts and no external requests, and it opens from disk without a
    server. Every piece of text is escaped with :func:`html.escape`.
``OUT/figures/<stem>.png`` (and ``.svg``)
    the same figures as files.
``OUT/tables/<name>.csv``
    every table as CSV.
``OUT/data/<section id>.json``
    the data each section was drawn from.

>>> import tempfile
>>> from polylens.report.html import Section, Table, write_report
>>> d = tempfile.mkdtemp()
>>> p = write_report(d, [Section("robustness", "Robustness", "What survives a push.",
...                              tables=(Table("t", ("eps", "rate"), ((0.01, 0.5),)),))])
>>> p.name
'report.html'
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from polylens.errors import ParameterError

__all__ = ["ReportFigure", "Section", "Table", "figure", "finite", "is_image", "render_html", "section_fragment",
           "section_json", "write_report"]

_ID = re.compile(r"^[a-z][a-z0-9-]*$")
_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ReportFigure:
    """A rendered figure: ``png`` bytes (embedded in the report), optional ``svg`` text (written
    next to it), a file ``stem`` (``robustness``, ``neuron-L1.n0``), a caption and alt text."""

    stem: str
    caption: str
    png: bytes
    svg: str | None = None
    alt: str = ""

    def __post_init__(self):
        if not _STEM.match(self.stem):
            raise ParameterError(f"A report figure's stem must be a plain file name (letters, digits, '.', '_', "
                                 f"'-'). Got {self.stem!r} instead.")

    @classmethod
    def from_figure(cls, fig, stem: str, caption: str, alt: str = "", svg: bool = True) -> "ReportFigure":
        """Render a matplotlib Figure (PNG, and SVG when ``svg``)."""
        from polylens.report.figures import figure_png, figure_svg

        return cls(stem, caption, figure_png(fig), figure_svg(fig) if svg else None, alt or caption)


@dataclass(frozen=True)
class Table:
    """A table: ``columns`` (k,) and ``rows`` (each k values: str, int, float or None), written as
    ``tables/<name>.csv`` and, when ``show``, shown in the report; floats are shown with ``digits``
    significant digits (the CSV keeps them in full)."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""
    digits: int = 3
    show: bool = True

    def __post_init__(self):
        if not _STEM.match(self.name):
            raise ParameterError(f"A report table's name must be a plain file name. Got {self.name!r} instead.")
        object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        bad = [i for i, r in enumerate(self.rows) if len(r) != len(self.columns)]
        if bad:
            raise ParameterError(f"Table {self.name!r} has {len(self.columns)} columns but rows {bad[:5]} have "
                                 "another length.")

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        for r in self.rows:
            w.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in r])
        return buf.getvalue()

    def cell(self, v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.{self.digits}g}"
        return str(v)


@dataclass(frozen=True)
class Section:
    """One part of the report. ``id``: the HTML anchor (lowercase, ``robustness``); ``intro``:
    plain text, paragraphs separated by blank lines, saying what the reader sees; ``blocks``:
    (caption, preformatted text) pairs such as formulas; ``data``: JSON-ready dict written to
    ``data/<id>.json``; ``note``: a remark shown in a box (e.g. why something was skipped);
    ``files``: figures written to ``figures/`` but not shown; ``extra``: closing paragraphs."""

    id: str
    title: str
    intro: str
    figures: tuple[ReportFigure, ...] = ()
    tables: tuple[Table, ...] = ()
    blocks: tuple[tuple[str, str], ...] = ()
    data: Mapping | None = None
    note: str = ""
    extra: tuple[str, ...] = field(default=())
    files: tuple[ReportFigure, ...] = field(default=())

    def __post_init__(self):
        if not _ID.match(self.id):
            raise ParameterError(f"A report section id must be lowercase letters, digits and '-'. Got {self.id!r} instead.")
        for name in ("figures", "tables", "blocks", "extra", "files"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


def is_image(shape: Sequence[int]) -> bool:
    """Whether an input of this shape is drawn as an image (2-D, at least 2x2)."""
    return len(tuple(shape)) == 2 and min(shape) >= 2


def finite(v: Any) -> float | None:
    """``v`` as a finite float, or None (NaN, infinities, non-numbers); -0.0 becomes 0.0."""
    import math

    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v + 0.0 if math.isfinite(v) else None


def figure(fig, stem: str, caption: str, alt: str = "", svg: bool = False) -> ReportFigure:
    """Render a matplotlib figure for a section. SVG only where it is cheap and useful: line and bar
    charts (``svg=True``); figures made of images (maps, digits) are raster inside an SVG anyway."""
    return ReportFigure.from_figure(fig, stem, caption, alt, svg=svg)


def section_fragment(s: Section) -> str:
    """One section as an HTML fragment with the report's styles (what a result shows in Jupyter)."""
    return f'<div class="polylens-report"><style>{_css()}</style>{_section_html(s)}</div>'


def section_json(s: Section) -> dict:
    """One section as JSON-ready data for the explorer's generic view: title, intro, note, the shown
    tables (columns and rows as displayed), the preformatted blocks and the figures as PNG data URLs."""
    return {"id": s.id, "title": s.title, "intro": s.intro, "note": s.note,
            "tables": [{"name": t.name, "caption": t.caption, "columns": list(t.columns),
                        "rows": [[t.cell(v) for v in r] for r in t.rows]} for t in s.tables if t.show],
            "blocks": [{"caption": c, "text": text} for c, text in s.blocks],
            "figures": [{"stem": f.stem, "caption": f.caption, "alt": f.alt,
                         "src": "data:image/png;base64," + base64.b64encode(f.png).decode("ascii")}
                        for f in s.figures]}


def _css() -> str:
    return resources.files("polylens.report").joinpath("report.css").read_text(encoding="utf-8")


def _paragraphs(text: str) -> str:
    parts = [p.strip() for p in re.split(r"\n\s*\n", text or "") if p.strip()]
    return "".join(f"<p>{html.escape(' '.join(p.split()))}</p>\n" for p in parts)


def _figure_html(f: ReportFigure) -> str:
    b64 = base64.b64encode(f.png).decode("ascii")
    return (f'<figure id="fig-{html.escape(f.stem)}"><img src="data:image/png;base64,{b64}" '
            f'alt="{html.escape(f.alt or f.caption)}" loading="eager">'
            f"<figcaption>{html.escape(f.caption)}</figcaption></figure>\n")


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if isinstance(v, (int, float)) and not isinstance(v, bool) else "txt"}">'
        f"{html.escape(t.cell(v))}</td>" for v in r) + "</tr>\n" for r in t.rows)
    cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return (f'<div class="table-wrap"><table id="table-{html.escape(t.name)}">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}</tbody></table></div>\n")


def _section_html(s: Section) -> str:
    out = [f'<section id="{s.id}">\n<h2>{html.escape(s.title)}<a class="top" href="#top">&uarr; contents</a></h2>\n',
           _paragraphs(s.intro)]
    if s.note:
        out.append(f'<div class="note">{html.escape(s.note)}</div>\n')
    for t in s.tables:
        if t.show:
            out.append(_table_html(t))
    for cap, text in s.blocks:
        out.append(f'<div class="block"><div class="block-caption">{html.escape(cap)}</div>'
                   f"<pre>{html.escape(text)}</pre></div>\n")
    if s.figures:
        out.append('<div class="figures">\n' + "".join(_figure_html(f) for f in s.figures) + "</div>\n")
    for p in s.extra:
        out.append(_paragraphs(p))
    out.append("</section>\n")
    return "".join(out)


def render_html(sections: Sequence[Section], title: str = "polylens report", subtitle: str = "",
                meta: Mapping[str, Any] | None = None) -> str:
    """The report as one HTML document (see the module docstring); ``meta``: key/value facts shown
    under the title (model, architecture, accuracy, ...)."""
    ids = [s.id for s in sections]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ParameterError(f"Report section ids must be unique; repeated: {', '.join(dup)}.")
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    facts = "".join(f"<div><dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd></div>"
                    for k, v in (meta or {}).items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">\n"
        f"<title>{html.escape(title)}</title>\n<style>\n{_css()}</style>\n</head>\n<body>\n"
        f'<header id="top"><h1>{html.escape(title)}</h1>'
        + (f'<p class="subtitle">{html.escape(subtitle)}</p>' if subtitle else "")
        + (f'<dl class="facts">{facts}</dl>' if facts else "")
        + f"<nav>{nav}</nav></header>\n<main>\n"
        + "".join(_section_html(s) for s in sections)
        + "</main>\n<footer>Made by polylens. Figures: blue = ink / positive, red = blank / negative. "
          "Files next to this report: figures/ (PNG, SVG), tables/ (CSV), data/ (JSON).</footer>\n</body>\n</html>\n"
    )


def _json_text(obj: Any) -> str:
    from polylens.jsonio import jsonable

    return json.dumps(jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_report(out_dir: str | Path, sections: Iterable[Section], *, title: str = "polylens report",
                 subtitle: str = "", meta: Mapping[str, Any] | None = None,
                 filename: str = "report.html") -> Path:
    """Write the report and its files into ``out_dir`` (created if needed); returns the HTML path.

    Figures go to ``figures/``, tables to ``tables/``, section data to ``data/`` (see the module
    docstring). Writing the same sections twice gives the same bytes.
    """
    sections = list(sections)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stems = [f.stem for s in sections for f in (*s.figures, *s.files)]
    names = [t.name for s in sections for t in s.tables]
    for kind, seq in (("figure stems", stems), ("table names", names)):
        dup = sorted({v for v in seq if seq.count(v) > 1})
        if dup:
            raise ParameterError(f"Report {kind} must be unique; repeated: {', '.join(dup)}.")
    text = render_html(sections, title, subtitle, meta)
    for s in sections:
        for f in (*s.figures, *s.files):
            (out / "figures").mkdir(exist_ok=True)
            (out / "figures" / f"{f.stem}.png").write_bytes(f.png)
            if f.svg is not None:
                (out / "figures" / f"{f.stem}.svg").write_text(f.svg, encoding="utf-8")
        for t in s.tables:
            (out / "tables").mkdir(exist_ok=True)
            (out / "tables" / f"{t.name}.csv").write_text(t.csv_text(), encoding="utf-8")
        if s.data is not None:
            (out / "data").mkdir(exist_ok=True)
            (out / "data" / f"{s.id}.json").write_text(_json_text(s.data), encoding="utf-8")
    path = out / filename
    path.write_text(text, encoding="utf-8")
    return path
