"""The pictures of docs/truncation.md: toy flows through constructed networks and the seed's cones.

    .venv/bin/python scripts/truncation_figures.py docs/images
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(out: str = "docs/images") -> None:
    from polylens.data.labelled import Data
    from polylens.lenses.truncation import figures as F
    from polylens.lenses.truncation.flow import analyse, toy_flow
    from polylens.nn.model import load_model
    from polylens.report.figures import figure_png

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    for name in ("sls", "clusters", "rings"):
        t = toy_flow(name)
        fig = F.flow_figure(t.analysis.points, t.y, t.analysis.cones,
                            f"{name}: {t.construction.network.architecture} ({t.construction.details['theorem']})")
        (d / f"truncation-toy-{name}.png").write_bytes(figure_png(fig))
    m = load_model("seed")
    data = Data.of_model(m).head(200)
    a = analyse(m.network, data.x, data.y)
    (d / "truncation-seed-flow.png").write_bytes(figure_png(F.flow_figure(a.points, a.y, a.cones,
                                                                          "the seed's first 200 test digits, each step on its principal plane")))
    (d / "truncation-seed-cones.png").write_bytes(figure_png(F.cone_images_figure(a.cones, (7, 7))))


if __name__ == "__main__":
    main(*sys.argv[1:])
