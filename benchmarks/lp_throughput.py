"""LP solves per second: one polytope built once and re-solved for many objectives (changing costs).

On the seed network (49-3-3-10, 71 columns) and a random 49-64-64-10 ReLU network (~300 columns),
at eps = 0.02 around test images: median seconds per solve (warm, the certification's margin
objectives), per build (envelopes + assembly + passing to HiGHS), and solves per second.

    .venv/bin/python benchmarks/lp_throughput.py
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from polylens.bounds import BoundMethod, compute_bounds, input_box
from polylens.lp import LPSolver, Sense
from polylens.lp.polytope import build_polytopes
from polylens.nn import Network
from polylens.nn.model import load_model, model_split


def bench(name, net, x):
    xl, xu = input_box(x, 0.02)
    b = compute_bounds(net, xl, xu, BoundMethod.CROWN)
    t = time.perf_counter()
    polys = build_polytopes(net, xl, xu, b.lower, b.upper)
    build = (time.perf_counter() - t) / len(polys)
    per_solve, per_pass = [], []
    for p in polys:
        t = time.perf_counter()
        s = LPSolver(p)
        per_pass.append(time.perf_counter() - t)
        for k in range(1, net.n_classes):
            t = time.perf_counter()
            s.solve(p.margin_cost(0, k), Sense.MIN)
            per_solve.append(time.perf_counter() - t)
    med = statistics.median(per_solve)
    print(f"{name:24s} cols={polys[0].n_cols:4d} rows={polys[0].n_rows:4d}  build {1e3 * build:6.2f} ms  "
          f"pass {1e3 * statistics.median(per_pass):6.2f} ms  solve {1e3 * med:6.2f} ms (median)  "
          f"{1 / med:7.0f} solves/s", flush=True)


def main():
    m = load_model("seed")
    s = model_split(m)
    bench("seed 49-3-3-10 gelu", m.network, s.x_test[:200])
    rng = np.random.default_rng(0)
    Ws = [rng.normal(0, 1 / np.sqrt(i), (o, i)) for i, o in [(49, 64), (64, 64), (64, 10)]]
    mid = Network.from_arrays(Ws, [np.zeros(64), np.zeros(64), np.zeros(10)], "relu")
    bench("random 49-64-64-10 relu", mid, s.x_test[:50])


if __name__ == "__main__":
    sys.exit(main())
