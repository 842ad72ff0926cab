"""Speed of the polytope lens's exact partitions, each against the obvious alternative in the same run.

* 2-D slices through test images 0, 1, 2 (of different classes) of seed-relu (49-3-3-10), wide-relu
  (49-32-32-10) and a 49-64-64-10 ReLU net trained here: regions, seconds (best of 3), regions per
  second; against a dense G x G grid of the same square (distinct patterns it sees, seconds). The exact
  method must find every pattern the grid finds.
* Full enumeration of [0, 1]^49 for 49-3-3-10 (seed-relu), 49-8-8-10 and 49-16-16-10 ReLU nets trained
  here (budget per net): count, complete or not, LPs, seconds; against uniform sampling of the box.
* Segment crossings per second (exact, layer by layer) on paths between test images, against dense
  sampling with bisection.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/regions_speed.py [--grid 400] [--samples 200000]

Prints one JSON document (the README and docs/regions.md quote it).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np


def _trained(arch: str, epochs: int):
    import torch

    torch.set_num_threads(1)
    from polylens.data import load_split
    from polylens.nn.train import train_mlp

    split = load_split(source="bundled", factor=4, seed=0)
    return train_mlp(arch, "relu", split, epochs=epochs, lr=0.005, batch_size=256, seed=0, weight_decay=0.0,
                     dataset="mnist-bundled").network


def _best(fn, k=3):
    best, out = float("inf"), None
    for _ in range(k):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=400)
    ap.add_argument("--samples", type=int, default=200_000)
    a = ap.parse_args()
    from polylens.data.labelled import Data
    from polylens.lenses.regions import partition as P
    from polylens.lenses.regions.patterns import patterns
    from polylens.nn.model import load_model

    seed_relu, wide = load_model("seed-relu"), load_model("wide-relu")
    x = Data.of_model(wide).x
    nets = {"49-3-3-10 (seed-relu)": seed_relu.network, "49-32-32-10 (wide-relu)": wide.network,
            "49-64-64-10": _trained("49-64-64-10", 40)}
    out = {"slices": [], "enumeration": [], "segments": []}
    G = a.grid
    g = np.linspace(-0.5, 1.5, G)
    S, T = np.meshgrid(g, g)
    for name, net in nets.items():
        sec, sl = _best(lambda: P.slice_plane(net, x[0], x[1] - x[0], x[2] - x[0]))
        t = time.perf_counter()
        X = x[0] + S.reshape(-1, 1) * (x[1] - x[0]) + T.reshape(-1, 1) * (x[2] - x[0])
        grid = {b.tobytes() for b in patterns(net, X)}
        gsec = time.perf_counter() - t
        exact = {p.bits.tobytes() for p in sl.pieces}
        out["slices"].append({"net": name, "regions": len(sl.pieces), "distinct_patterns": len(exact),
                              "seconds": sec, "regions_per_second": len(sl.pieces) / sec,
                              "area_error": abs(sl.area - 4.0), "grid": G, "grid_patterns": len(grid),
                              "grid_seconds": gsec, "grid_subset_of_exact": grid <= exact})
        print(json.dumps(out["slices"][-1]), flush=True)
    enum_nets = {"49-3-3-10 (seed-relu)": (seed_relu.network, 100_000), "49-8-8-10": (_trained("49-8-8-10", 30), 20_000),
                 "49-16-16-10": (_trained("49-16-16-10", 30), 3_000)}
    rng = np.random.default_rng(0)
    U = rng.uniform(size=(a.samples, 49))
    for name, (net, budget) in enum_nets.items():
        en = P.enumerate_regions(net, budget=budget)
        t = time.perf_counter()
        sampled = {b.tobytes() for b in patterns(net, U)}
        ssec = time.perf_counter() - t
        found = {b.tobytes() for b in en.bits}
        out["enumeration"].append({"net": name, "count": en.count, "complete": en.complete, "budget": budget,
                                   "lps": en.lps, "seconds": en.seconds, "witnessed": en.witnessed,
                                   "samples": a.samples, "sampled_patterns": len(sampled), "sample_seconds": ssec,
                                   "sampled_subset_of_found": sampled <= found,
                                   "sampled_missing": len(sampled - found)})
        print(json.dumps(out["enumeration"][-1]), flush=True)
    pairs = rng.integers(0, len(x), (200, 2))
    for name in ("49-32-32-10 (wide-relu)", "49-64-64-10"):
        net = nets[name]
        t = time.perf_counter()
        n = sum(len(P.segment(net, x[i], x[j]).crossings) for i, j in pairs)
        sec = time.perf_counter() - t
        t = time.perf_counter()
        m = sum(len(P.segment_sampled(net, x[i], x[j], n=2001).crossings) for i, j in pairs[:20])
        ssec = (time.perf_counter() - t) * 10
        out["segments"].append({"net": name, "paths": len(pairs), "crossings": n, "seconds": sec,
                                "crossings_per_second": n / sec, "sampled_bisection_seconds_est": ssec,
                                "sampled_crossings_first_20": m})
        print(json.dumps(out["segments"][-1]), flush=True)
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
