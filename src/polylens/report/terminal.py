"""Tables on the terminal (rich), for the commands' human output."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["table"]


def table(title: str, columns: Sequence[Any], rows: Sequence[Sequence[Any]], digits: int = 3):
    """A rich table: None as "-", floats with ``digits`` significant digits; each column keeps its
    longest cell on one line (up to 20 characters) before folding."""
    from rich.table import Table as RichTable

    t = RichTable(title=title)
    cells = [["-" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v)) for v in r] for r in rows]
    for i, c in enumerate(columns):
        width = max((len(r[i]) for r in cells), default=0)
        t.add_column(str(c), overflow="fold", min_width=min(width, 20))
    for r in cells:
        t.add_row(*r)
    return t
