"""Do Frame, Spine and Belt detectors emerge? Train the seed architecture over many seeds and name them.

Trains 49-3-3-10 GELU networks with the seed's own command (the bundled seed's card), one per
training seed, and records for every run its test accuracy and, for every layer-1 neuron, the
suggested name, its template score and its |correlation| with the Frame, Spine and Belt templates
(``polylens.lenses.discover.naming``, weight x pixel spread over the test images, as the seed's names
were made). Writes JSON that the findings lens reads (the bundled copy is
``src/polylens/lenses/findings/seed_names.json``):

    python scripts/seed_name_sweep.py --seeds 0-23 --out src/polylens/lenses/findings/seed_names.json

The same seeds give the same names (training is deterministic on one machine and torch build).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

TEMPLATES = ("Frame", "Spine", "Belt")


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return out


def name_run(model, x) -> list[dict]:
    """Layer-1 names and template scores of one trained model."""
    from polylens.lenses.discover.naming import suggest_names

    rows = []
    for s in suggest_names(model, x):
        if s.layer != 1:
            continue
        rows.append({"key": s.key, "name": s.name, "score": round(float(s.score), 6),
                     **{t.lower(): round(abs(float(s.scores.get(t, 0.0))), 6) for t in TEMPLATES}})
    return rows


def sweep(seeds: list[int], epochs: int = 300, progress=print) -> dict:
    from polylens.data import load_split
    from polylens.nn.model import load_model
    from polylens.nn.train import train_mlp

    seed_card = load_model("seed").card
    split = load_split("bundled", factor=4, seed=0)
    runs = []
    for s in seeds:
        t0 = time.perf_counter()
        m = train_mlp("49-3-3-10", "gelu", split, epochs=epochs, lr=0.02, batch_size=256, seed=s)
        runs.append({"seed": s, "test_accuracy": round(float(m.card.test_accuracy), 6),
                     "neurons": name_run(m, split.x_test), "seconds": round(time.perf_counter() - t0, 1)})
        progress(f"seed {s}: accuracy {m.card.test_accuracy:.4f}, "
                 + ", ".join(f"{n['name']} ({n['score']:.2f})" for n in runs[-1]["neurons"]))
    return {"architecture": "49-3-3-10", "activation": "gelu", "epochs": epochs, "command": seed_card.command,
            "templates": list(TEMPLATES), "runs": runs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-23", help="Training seeds, e.g. 0-23 or 0,3,5.")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    res = sweep(parse_seeds(a.seeds), a.epochs)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    acc = np.array([r["test_accuracy"] for r in res["runs"]])
    print(f"wrote {a.out}: {len(acc)} runs, accuracy median {np.median(acc):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
