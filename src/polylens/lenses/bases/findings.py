"""The paper's three findings on the bundled models: stated rules, and the measurements that
``scripts/bases_findings.py`` wrote to ``bundled_findings.json`` (shown in every report's bases section).

Rules, per layer (activations after the ReLU):

1. *Compactness* holds when fewer principal components than neurons reach 80% of the variance and no
   more reach 99%.
2. *Ablation* holds when the area under accuracy against the fraction of vectors removed (top first)
   is smaller for PCA than for neurons (removing the top components hurts more).
3. *Strip coherence* holds when the PCA strips' mean coherence exceeds the neuron strips' by more than
   two standard errors of the difference; it is refuted when it falls short by more than two, and
   undecided in between.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

__all__ = ["FINDINGS_FILE", "load_bundled_findings", "verdicts"]

FINDINGS_FILE = "bundled_findings.json"


def verdict_row(r: dict) -> dict:
    """The three verdicts of one measured layer (see the module docstring)."""
    f1 = r["pca_k80"] < r["neuron_k80"] and r["pca_k99"] <= r["neuron_k99"]
    f2 = r["pca_area"] < r["neuron_area"]
    diff = r["pca_coherence"] - r["neuron_coherence"]
    se = float(np.hypot(r["pca_coherence_se"], r["neuron_coherence_se"]))
    f3 = "holds" if diff > 2 * se else "refuted" if diff < -2 * se else "undecided"
    return {"compactness": "holds" if f1 else "refuted", "ablation": "holds" if f2 else "refuted", "coherence": f3}


def verdicts(rows: list[dict]) -> dict:
    """Per finding, how many layers it holds on, out of how many."""
    per = [verdict_row(r) for r in rows]
    return {k: {"holds": sum(v[k] == "holds" for v in per), "layers": len(per),
                "refuted": sum(v[k] == "refuted" for v in per)} for k in ("compactness", "ablation", "coherence")}


def load_bundled_findings() -> list[dict] | None:
    """The rows the findings script measured (None when the file is absent)."""
    try:
        text = resources.files("polylens.lenses.bases").joinpath(FINDINGS_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text)["rows"]
