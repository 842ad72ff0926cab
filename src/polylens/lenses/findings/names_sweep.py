"""Do Frame, Spine and Belt emerge? The seed architecture trained over many seeds, named each time.

Each run is the bundled seed's own training command (``polylens train 49-3-3-10 --act gelu ...``)
with only ``--seed`` changed, so run 0 reproduces the bundled model bit for bit. Every run's layer-1
neurons are named by :func:`polylens.lenses.discover.naming.suggest_names` (data weighting, the
run's own test split), and for each of the three templates of the seed's claim (Frame, Spine, Belt)
the run keeps the best |correlation| any of its neurons has with it and whether some neuron is
*named* after it (its best template, either sign).

``scripts/seed_name_sweep.py`` runs the sweep and writes :data:`BUNDLED_SWEEP`, which the findings
section reads for the bundled seed (training 24 networks takes minutes, too long for a report).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["BUNDLED_SWEEP", "CLAIMED", "NameRun", "NameSweep", "load_bundled_sweep", "name_sweep"]

#: The three detectors the seed claims layer 1 learns.
CLAIMED = ("Frame", "Spine", "Belt")
#: The sweep the findings section shows for the bundled seed (made by scripts/seed_name_sweep.py).
BUNDLED_SWEEP = Path(__file__).with_name("seed_names.json")
#: The bundled seed's training settings; a run differs only in its seed.
SEED_SETTINGS = {"architecture": "49-3-3-10", "activation": "gelu", "epochs": 300, "lr": 0.02,
                 "batch_size": 256, "weight_decay": 0.0, "factor": 4, "split_seed": 0}


@dataclass(frozen=True)
class NameRun:
    """One training run: its ``seed``, test ``accuracy``, its layer-1 ``names`` and their ``scores``
    (|correlation| of the chosen template), ``maps`` (the layer-1 weight rows, rounded to 4 decimals,
for drawing), and ``best`` (template -> best |r| of any neuron) and
    ``named`` (template -> whether a neuron is named after it, either sign) for :data:`CLAIMED`."""

    seed: int
    accuracy: float
    names: tuple[str, ...]
    scores: tuple[float, ...]
    best: dict
    named: dict
    maps: tuple[tuple[float, ...], ...] = ()

    def to_dict(self) -> dict:
        return {"seed": self.seed, "accuracy": self.accuracy, "names": list(self.names),
                "scores": list(self.scores), "best": dict(self.best), "named": dict(self.named),
                "maps": [list(m) for m in self.maps]}

    @classmethod
    def from_dict(cls, d: dict) -> "NameRun":
        return cls(int(d["seed"]), float(d["accuracy"]), tuple(d["names"]), tuple(float(s) for s in d["scores"]),
                   {k: float(v) for k, v in d["best"].items()}, {k: bool(v) for k, v in d["named"].items()},
                   tuple(tuple(float(v) for v in m) for m in d.get("maps", ())))


@dataclass(frozen=True)
class NameSweep:
    """Every run of a sweep, with the settings they share."""

    settings: dict
    runs: tuple[NameRun, ...]

    def frequency(self, template: str) -> float:
        """Fraction of runs in which some layer-1 neuron is named after ``template`` (either sign)."""
        return float(np.mean([r.named[template] for r in self.runs])) if self.runs else 0.0

    def name_counts(self) -> dict[str, int]:
        """How often each layer-1 name (sign folded: ``anti-Belt`` counts as Belt) occurs over all runs."""
        out: dict[str, int] = {}
        for r in self.runs:
            for n in r.names:
                base = n.removeprefix("anti-")
                out[base] = out.get(base, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def best_run(self) -> NameRun:
        """The run whose neurons match the three claimed templates best (largest sum of best |r|)."""
        return max(self.runs, key=lambda r: (sum(r.best[t] for t in CLAIMED), -r.seed))

    def to_dict(self) -> dict:
        return {"settings": dict(self.settings), "runs": [r.to_dict() for r in self.runs],
                "frequency": {t: self.frequency(t) for t in CLAIMED}, "name_counts": self.name_counts()}

    @classmethod
    def from_dict(cls, d: dict) -> "NameSweep":
        return cls(dict(d["settings"]), tuple(NameRun.from_dict(r) for r in d["runs"]))


def _name_run(model, x: np.ndarray, seed: int) -> NameRun:
    from polylens.lenses.discover.naming import suggest_names

    sug = [s for s in suggest_names(model, x) if s.layer == 1]
    best = {t: max(abs(s.scores.get(t, 0.0)) for s in sug) for t in CLAIMED}
    named = {t: any(s.name.removeprefix("anti-") == t for s in sug) for t in CLAIMED}
    W = np.asarray(model.network.layers[0].W, dtype=np.float64)
    return NameRun(int(seed), float(model.card.test_accuracy), tuple(s.name for s in sug),
                   tuple(round(float(s.score), 6) for s in sug), best, named,
                   tuple(tuple(round(float(v), 4) for v in row) for row in W))


def name_sweep(seeds: Sequence[int], *, epochs: int = SEED_SETTINGS["epochs"],
               progress: Callable[[int, int], None] | None = None) -> NameSweep:
    """Train the seed architecture once per seed in ``seeds`` (the bundled seed's settings, ``epochs``
    passes) and name every run's layer 1; deterministic: the same seeds give the same names."""
    from polylens.data import load_split
    from polylens.nn.train import train_mlp

    s = dict(SEED_SETTINGS, epochs=int(epochs))
    split = load_split(source="bundled", factor=s["factor"], seed=s["split_seed"])
    runs = []
    for i, seed in enumerate(seeds):
        model = train_mlp(s["architecture"], s["activation"], split, epochs=s["epochs"], lr=s["lr"],
                          batch_size=s["batch_size"], seed=int(seed), weight_decay=s["weight_decay"])
        runs.append(_name_run(model, split.x_test, int(seed)))
        if progress is not None:
            progress(i + 1, len(seeds))
    return NameSweep(s, tuple(runs))


def load_bundled_sweep() -> NameSweep | None:
    """The bundled sweep (:data:`BUNDLED_SWEEP`), or None where it is absent."""
    if not BUNDLED_SWEEP.is_file():
        return None
    return NameSweep.from_dict(json.loads(BUNDLED_SWEEP.read_text(encoding="utf-8")))
