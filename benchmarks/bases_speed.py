"""How long the bases lens takes on every layer of the bundled MNIST CNN over 10,000 images.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bases_speed.py [--n 10000] [--out docs/images]

For conv1, conv2 (one vector per position: 1.44 million and 250,000 rows, of which at most --max-rows are
kept) and fc1, after their ReLU: the time of the activations, of the fits of each basis, of ablation
(9 values of k, both orders) and of 4 strips per basis, and the peak resident memory of the process.
Writes docs/images/bases-speed.png and prints one JSON line per layer.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from polylens.data import load_dataset
    from polylens.lenses.bases.analysis import analyse
    from polylens.nn.model import load_model

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--max-rows", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    a = ap.parse_args()
    model = load_model("mnist-cnn")
    ds = load_dataset("bundled")
    x = ds.images[:a.n].reshape(a.n, -1).astype(np.float64) / 255.0
    y = ds.labels[:a.n]
    out = []
    for layer in ("conv1", "conv2", "fc1"):
        t0 = time.perf_counter()
        r = analyse(model, x, y, layer, post=True, strips=4, ablation_points=9, max_rows=a.max_rows)
        total = time.perf_counter() - t0
        s = r.seconds
        row = {"layer": layer, "width": r.width, "rows": r.total_rows, "kept": r.rows, "total_s": round(total, 2),
               "activations_s": round(s["activations"], 2),
               "fits_s": {k[4:]: round(v, 2) for k, v in s.items() if k.startswith("fit ")},
               "ablation_s": round(sum(v for k, v in s.items() if k.startswith("ablation ")), 2),
               "strips_s": round(sum(v for k, v in s.items() if k.startswith("strips ")), 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)}
        out.append(row)
        print(json.dumps(row), flush=True)
    figure(out, a.out / "bases-speed.png")


def figure(rows, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    names = [f"{r['layer']}\n({r['kept']:,} of {r['rows']:,} rows)" for r in rows]
    parts = [("activations", [r["activations_s"] for r in rows])]
    for b in ("neuron", "pca", "ica", "nmf", "dictionary"):
        parts.append((f"fit {b}", [r["fits_s"].get(b, 0.0) for r in rows]))
    parts += [("ablation (9 k, both orders)", [r["ablation_s"] for r in rows]), ("strips", [r["strips_s"] for r in rows])]
    left = np.zeros(len(rows))
    for label, vals in parts:
        ax.barh(names, vals, left=left, label=label)
        left += np.asarray(vals)
    ax.set_xlabel("seconds (one core)")
    ax.set_title("bases lens on the MNIST CNN, 10,000 images, one core", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
