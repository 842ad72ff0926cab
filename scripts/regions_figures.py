"""Make the figures and numbers of docs/regions.md: the polytope lens's three predictions on the
bundled ReLU networks (seed-relu, wide-relu) and on the GELU seed (sign convention), the slices, the
3-D hidden spaces of the seed and its twin, and the Hanin-Rolnick check.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/regions_figures.py [--pairs 20] [--out docs/images]

Prints one JSON document with every measured number (docs/regions.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    a = ap.parse_args()
    from polylens.data.labelled import Data
    from polylens.lenses.regions import figures as F
    from polylens.lenses.regions.lens import REGIONS, _anchor_marks
    from polylens.lenses.base import RunContext
    from polylens.nn.model import load_model
    from polylens.report.figures import save_figure

    a.out.mkdir(parents=True, exist_ok=True)
    measured, hidden = {}, []
    for name in ("seed-relu", "wide-relu", "seed"):
        m = load_model(name)
        d = Data.of_model(m)
        r = REGIONS.run(m, d, REGIONS.make_options({"pairs": a.pairs}), RunContext())
        ob, b = r.objects, r.body
        stem = a.out / f"regions-{name}"
        if "slice" in ob:
            save_figure(F.slice_figure(ob["slice"], title=f"{name}: {len(ob['slice'].pieces)} regions of the plane "
                                       f"through test images {ob['images']}", images=_anchor_marks(ob["images"])),
                        f"{stem}-slice", svg=False)
        save_figure(F.monosemantic_figure(ob["monosemantic"]), f"{stem}-monosemantic", svg=False)
        save_figure(F.density_figure(ob["density"]), f"{stem}-density", svg=False)
        ex = [e for e in ob["density"]["examples"] if e["kind"] == "different"][:1]
        if ex:
            save_figure(F.path_figure(ex[0]), f"{stem}-path", svg=False)
        if ob.get("scaling"):
            save_figure(F.scaling_figure(ob["scaling"]), f"{stem}-scaling", svg=False)
        if ob.get("hidden"):
            hidden.append((f"{name} ({m.card.activation})", ob["hidden"]))
        p = b["predictions"]
        measured[name] = {
            "accuracy": m.card.test_accuracy, "patterns": b["patterns"]["distinct"], "n": b["n"],
            "slice": b.get("slice"),
            "monosemantic": {k: p["monosemantic"][k] for k in ("verdict", "neuron_mean", "direction_mean", "top",
                                                               "distinct_patterns", "singletons")}
            | {"hamming": p["monosemantic"]["hamming_clusters"], "jaccard": p["monosemantic"]["jaccard_clusters"],
               "exact": p["monosemantic"]["exact"]},
            "boundary_density": {k: p["boundary_density"][k] for k in ("verdict", "rho", "p", "by_kind",
                                                                       "density_at_switch", "density_elsewhere",
                                                                       "n_switch_bins", "exact")},
            "scaling": {k: p["scaling"][k] for k in ("verdict", "prediction_steps", "with_pattern_change",
                                                     "p_pattern_given_prediction", "p_pattern_given_steady", "ratio")},
        }
        if name == "seed-relu":
            save_figure(F.scaling_law_figure(b["scaling_law"]), a.out / "regions-scaling-law", svg=False)
            measured["scaling_law"] = b["scaling_law"]
    save_figure(F.hidden_figure(hidden), a.out / "regions-hidden", svg=False)
    print(json.dumps(measured, indent=1, default=float))


if __name__ == "__main__":
    main()
