"""The tightness ladder: how many images each method verifies, and how long it takes.

Each rung keeps the best bound of the rungs below it (CROWN's bound of one specification can be looser
than interval propagation's at large radii; certification does the same).

    IBP <= CROWN <= alpha-CROWN ... and CROWN <= LP (same intermediate bounds) <= LP with
    LP-tightened bounds <= exact (MILP, ReLU networks only)

on the bundled seed network (49-3-3-10, GELU) and on a mid-size ReLU network (49-64-64-10, trained
here on the bundled data in a few seconds). Counts are images verified (correctly classified and
every margin bound > VERIFY_MARGIN); seconds are wall time for the whole batch on this machine.
Every method's per-image bound is also checked against the ladder order, which is printed as
"ladder holds: yes/no" (the LP rungs use safe dual bounds, so the order must hold exactly up to the
tiny tolerances of the MILP solver).

    .venv/bin/python benchmarks/tightness_ladder.py [--n-seed 300] [--n-mid 40] [--eps 0.005,0.01,0.02]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from polylens.bounds import BoundMethod, compute_bounds, crown_ibp_bounds, input_box, margin_lower_bound
from polylens.data import load_split
from polylens.lp import LPSolver, Role, Sense
from polylens.lp.exact import build_milp
from polylens.lp.polytope import build_polytopes
from polylens.lp.tighten import lp_tightened_polytope
from polylens.nn.model import load_model, model_split
from polylens.nn.train import train_mlp
from polylens.tolerances import VERIFY_MARGIN


def lp_margins(net, polys, y, exact=False):
    out = np.full((len(polys), net.n_classes), np.inf)
    for i, p in enumerate(polys):
        s = LPSolver(p, time_limit=60.0)
        for k in range(net.n_classes):
            if k != y[i]:
                sol = s.solve(p.margin_cost(int(y[i]), k), Sense.MIN)
                out[i, k] = sol.objective if exact else sol.safe_bound
    return out


def ladder(name, net, x, y, eps_list, exact_ok):
    rows = []
    ok = net.predict(x) == y
    for eps in eps_list:
        xl, xu = input_box(x, eps)
        res, times = {}, {}
        t = time.perf_counter(); ib = compute_bounds(net, xl, xu, BoundMethod.IBP)
        res["ibp"] = margin_lower_bound(net, xl, xu, y, BoundMethod.IBP, bounds=ib); times["ibp"] = time.perf_counter() - t
        t = time.perf_counter(); cb = crown_ibp_bounds(net, xl, xu, ibp_bounds=ib)
        # Per specification CROWN can be looser than interval bounds at large radii (both are sound); like
        # certification, each rung keeps the best bound of the rungs below it.
        res["crown"] = np.maximum(res["ibp"], margin_lower_bound(net, xl, xu, y, BoundMethod.CROWN, bounds=cb))
        times["crown"] = time.perf_counter() - t
        t = time.perf_counter()
        res["alpha-crown"] = np.maximum(res["crown"], margin_lower_bound(net, xl, xu, y, BoundMethod.ALPHA_CROWN, bounds=cb))
        times["alpha-crown"] = time.perf_counter() - t
        t = time.perf_counter()
        polys = build_polytopes(net, xl, xu, cb.lower, cb.upper)
        res["lp"] = lp_margins(net, polys, y); times["lp"] = time.perf_counter() - t
        t = time.perf_counter()
        polys_t = [lp_tightened_polytope(net, xl[i], xu[i], [cb.layer(i, l) for l in range(net.n_hidden_layers)])
                   for i in range(len(x))]
        tight = [[(p.col_lo[p.block(Role.PRE, l)], p.col_hi[p.block(Role.PRE, l)])
                  for l in range(1, net.n_hidden_layers + 1)] for p in polys_t]
        res["lp+tightened"] = lp_margins(net, polys_t, y); times["lp+tightened"] = time.perf_counter() - t
        if exact_ok:
            t = time.perf_counter()
            res["exact"] = lp_margins(net, [build_milp(net, xl[i], xu[i], tight[i]) for i in range(len(x))], y, exact=True)
            times["exact"] = time.perf_counter() - t
        own = np.arange(net.n_classes) == y[:, None]
        counts = {k: int(np.sum(ok & (np.where(own, np.inf, v).min(axis=1) > VERIFY_MARGIN))) for k, v in res.items()}
        order = ["ibp", "crown", "lp", "lp+tightened"] + (["exact"] if exact_ok else [])
        holds = all(np.all(res[a] <= res[b] + 1e-6) for a, b in zip(order, order[1:]))
        holds &= bool(np.all(res["crown"] <= res["alpha-crown"] + 1e-9))
        rows.append({"network": name, "eps": eps, "n": len(x), "verified": counts,
                     "seconds": {k: round(v, 3) for k, v in times.items()}, "ladder_holds": holds})
        print(f"{name:22s} eps={eps:<6g} n={len(x):4d}  " + "  ".join(f"{k}={counts[k]} ({times[k]:.2f}s)" for k in res)
              + f"  ladder holds: {'yes' if holds else 'NO'}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-seed", type=int, default=300)
    ap.add_argument("--n-mid", type=int, default=40)
    ap.add_argument("--eps", default="0.005,0.01,0.02")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    a = ap.parse_args()
    eps = [float(e) for e in a.eps.split(",")]
    seed = load_model("seed")
    s = model_split(seed)
    rows = ladder("seed 49-3-3-10 gelu", seed.network, s.x_test[:a.n_seed], s.y_test[:a.n_seed], eps, exact_ok=False)
    t = time.perf_counter()
    mid = train_mlp("49-64-64-10", "relu", load_split(), epochs=15, lr=0.005, batch_size=128, seed=0)
    print(f"(trained 49-64-64-10 relu in {time.perf_counter() - t:.1f}s, test accuracy {mid.card.test_accuracy:.3f})")
    rows += ladder("mid 49-64-64-10 relu", mid.network, s.x_test[:a.n_mid], s.y_test[:a.n_mid], eps, exact_ok=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
