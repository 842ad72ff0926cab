"""The paper's three findings (Dey et al., TMLR 2025) measured on the bundled models of the bases lens.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bases_findings.py [--n 2000] [--out docs/images]

For every bundled MLP and CNN (MNIST, Fashion-MNIST) and every hidden layer (after its ReLU; convolution
layers one vector per position), on the first N test images: k80 and k99 of every basis (finding 1:
fewer principal components than neurons hold 80%/99% of the variance), the area under the accuracy
curve when the top vectors are removed first (finding 2: removing the top components hurts more, i.e.
a smaller area), and the mean strip coherence over the first 16 vectors (finding 3: strips along
components are more coherent). Writes src/polylens/lenses/bases/bundled_findings.json (the rows and
verdicts every report shows), docs/images/bases-findings.json (with the curves), bases-variance.png,
bases-ablation.png and bases-strips.png, and prints the Markdown table of docs/bases.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

LAYERS = {"mnist-mlp": ("fc1", "fc2"), "mnist-cnn": ("conv1", "conv2", "fc1"),
          "fashion-mlp": ("fc1", "fc2"), "fashion-cnn": ("conv1", "conv2", "fc1")}
STRIPS = 16


def area(ab: dict) -> float:
    ks = ab["evaluated"]
    n = len(ab["top_first"]) - 1
    return float(np.trapezoid([ab["top_first"][k] for k in ks], np.asarray(ks) / n))


def main() -> None:
    import torch

    from polylens.data.labelled import Data
    from polylens.lenses.bases.analysis import analyse
    from polylens.nn.model import load_model

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    a = ap.parse_args()
    rows, curves, strips = [], {}, {}
    for name, layers in LAYERS.items():
        model = load_model(name)
        data = Data.of_model(model).head(a.n)
        for layer in layers:
            t = time.perf_counter()
            r = analyse(model, data.x, data.y, layer, post=True, strips=STRIPS, ablation_points=33)
            secs = time.perf_counter() - t
            d = r.to_dict()
            b = d["bases"]
            coh = {k: [s["coherence"] for s in v["strips"]] for k, v in b.items()}
            row = {"model": name, "layer": layer, "width": r.width, "rows": r.rows, "accuracy": r.accuracy,
                   "seconds": round(secs, 1),
                   **{f"{k}_k80": v["k80"] for k, v in b.items()}, **{f"{k}_k99": v["k99"] for k, v in b.items()},
                   **{f"{k}_area": area(v["ablation"]) for k, v in b.items()},
                   **{f"{k}_coherence": float(np.mean(coh[k])) for k in b},
                   **{f"{k}_coherence_se": float(np.std(coh[k]) / np.sqrt(len(coh[k]))) for k in b},
                   "skipped": d["skipped"]}
            rows.append(row)
            curves[f"{name}/{layer}"] = {k: {"cumulative": v["cumulative"], "ablation": v["ablation"]}
                                         for k, v in b.items()}
            if name == "mnist-mlp" and layer == "fc1" or name == "mnist-cnn" and layer == "conv1":
                strips[f"{name}/{layer}"] = {k: ([np.asarray(im) for im in r.results[k].strip_images[:4]],
                                                 [s.coherence for s in r.results[k].strips[:4]])
                                             for k in ("neuron", "pca")}
            print(json.dumps({k: row[k] for k in ("model", "layer", "width", "seconds")}), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "bases-findings.json").write_text(json.dumps({"rows": rows, "curves": curves}, indent=1))
    from polylens.lenses.bases.findings import FINDINGS_FILE, verdicts

    lens_dir = Path(__file__).resolve().parents[1] / "src/polylens/lenses/bases"
    (lens_dir / FINDINGS_FILE).write_text(json.dumps({"command": "python scripts/bases_findings.py", "n": a.n,
                                                      "rows": rows, "verdicts": verdicts(rows)}, indent=1) + "\n")
    figures(rows, curves, strips, a.out)
    print(table(rows))


def table(rows) -> str:
    out = ["| model | layer (vectors) | width | k80 neuron / PCA | k99 neuron / PCA | k80 ICA / NMF / dict. | "
           "ablation area neuron / PCA | strip coherence neuron / PCA |", "|" + "---|" * 8]
    for r in rows:
        def g(k):
            return "–" if r.get(k) is None else str(r[k])
        out.append(f"| {r['model']} | {r['layer']} ({'per position' if r['rows'] > 2000 else 'per image'}) | "
                   f"{r['width']} | {g('neuron_k80')} / {g('pca_k80')} | {g('neuron_k99')} / {g('pca_k99')} | "
                   f"{g('ica_k80')} / {g('nmf_k80')} / {g('dictionary_k80')} | "
                   f"{r['neuron_area']:.3f} / {r['pca_area']:.3f} | "
                   f"{r['neuron_coherence']:.3f} ± {r['neuron_coherence_se']:.3f} / "
                   f"{r['pca_coherence']:.3f} ± {r['pca_coherence_se']:.3f} |")
    return "\n".join(out)


def figures(rows, curves, strips, out: Path) -> None:
    from matplotlib.figure import Figure

    from polylens.lenses.bases.figures import COLOURS, strips_figure

    keys = list(curves)
    for kind in ("variance", "ablation"):
        fig = Figure(figsize=(12, 5.2))
        for i, key in enumerate(keys):
            ax = fig.add_subplot(2, 5, i + 1)
            for b, c in curves[key].items():
                if kind == "variance":
                    cum = c["cumulative"]
                    ax.plot(np.arange(0, len(cum) + 1), [0.0] + cum, color=COLOURS[b], label=b, lw=1.3)
                    ax.set_xscale("symlog", linthresh=1.0)
                    ax.axhline(0.8, color="0.7", lw=0.7, ls=":")
                    ax.axhline(0.99, color="0.7", lw=0.7, ls=":")
                else:
                    ab = c["ablation"]
                    ks = ab["evaluated"]
                    n = len(ab["top_first"]) - 1
                    x = np.asarray(ks) / n
                    ax.plot(x, [ab["top_first"][k] for k in ks], color=COLOURS[b], lw=1.3, label=b)
                    ax.plot(x, [ab["bottom_first"][k] for k in ks], color=COLOURS[b], lw=0.8, ls="--")
            ax.set_ylim(0, 1.02)
            ax.set_title(key, fontsize=8)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.legend(fontsize=6)
        fig.suptitle("Cumulative explained variance against vectors k (dotted: 80%, 99%)" if kind == "variance" else
                     "Accuracy against the fraction of vectors removed (solid: top first, dashed: bottom first)",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(out / f"bases-{kind}.png", dpi=90)
    rowsf = []
    for key, per in strips.items():
        for b in ("neuron", "pca"):
            imgs, cohs = per[b]
            for j, (im, c) in enumerate(zip(imgs, cohs)):
                rowsf.append((f"{key.split('/')[0]} {key.split('/')[1]}\n{b} {j + 1}", list(im), c))
    fig = strips_figure(rowsf, "Strips along the first 4 neurons and components (c: coherence vs shuffled)")
    fig.savefig(out / "bases-strips.png", dpi=80)


if __name__ == "__main__":
    main()
