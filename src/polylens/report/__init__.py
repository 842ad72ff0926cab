"""The rendering layer: analysis results become figures, tables, JSON and one self-contained HTML report.

- :mod:`polylens.report.figures`: one function per figure, each returning a matplotlib Figure (Agg,
  no pyplot state), in one colour language (blue = ink / positive, red = blank / negative).
- :mod:`polylens.report.html`: :class:`~polylens.report.html.Section` values and
  :func:`~polylens.report.html.write_report`, which writes ``report.html`` (CSS inline, figures as
  data: URIs, no external requests) with the figures, CSV tables and JSON data next to it.
- :mod:`polylens.report.build`: a section per analysis result, and
  :func:`~polylens.report.build.run_report`, which runs every analysis on a model and writes the report
  (``polylens report``, ``polylens demo``).
"""
