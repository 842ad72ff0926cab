"""Sequential linear separability on real and toy data (the measurements of docs/truncation.md).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/truncation_sls.py --per-class 100 --out sls.json

For each dataset: a balanced subset (the first ``per_class`` images of each class in file order),
the order search of polylens.lenses.truncation.sls (budget of LP solves) or a given order, its
answer, time and LP count; for SLS subsets also the CE24 Thm. 5.2 network and its training loss.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def subset(x, y, per_class, classes=None):
    classes = sorted(set(y.tolist())) if classes is None else list(classes)
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in classes])
    return x[idx], y[idx]


def datasets(per_class):
    from polylens.data import load_split, toy

    out = {}
    for f, name in ((4, "mnist-7x7"), (1, "mnist-28x28")):
        s = load_split("bundled", factor=f, seed=0)
        out[name] = subset(s.x_train, s.y_train, per_class)
    fm = "/usr/share/datasets/fashion-mnist"
    if os.path.isdir(fm):
        for f, name in ((4, "fashion-7x7"), (1, "fashion-28x28")):
            s = load_split(fm, factor=f, seed=0, n_test=1)
            out[name] = subset(s.x_train, s.y_train, per_class)
    for t in ("clusters", "sls", "rings", "xor", "spirals"):
        out[f"toy-{t}"] = toy.make(t, 200, seed=0)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--only", default="")
    ap.add_argument("--order", default="", help="check this order (comma list) on the datasets named by --only")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    from polylens.lenses.truncation.construct import sls_network
    from polylens.lenses.truncation.sls import check_order, find_order

    rows = []
    for name, (x, y) in datasets(a.per_class).items():
        if a.only and name not in a.only.split(","):
            continue
        t0 = time.perf_counter()
        if a.order:
            order = [int(c) for c in a.order.split(",")]
            keep = np.isin(y, order)
            x, y = x[keep], y[keep]
            r = check_order(x, y, order)
        else:
            r = find_order(x, y, budget=a.budget)
        dt = time.perf_counter() - t0
        row = {"data": name, "n": int(len(y)), "dim": int(x.shape[1]), "classes": sorted(set(y.tolist())),
               "sls": r.sls, "order": list(r.order), "reason": r.reason, "lp_solves": r.lp_solves, "seconds": round(dt, 2)}
        if r.sls:
            try:
                c = sls_network(x, y, r)
                row["thm52"] = {"architecture": c.network.architecture, "loss": c.loss, "max_error": c.max_error,
                                "n_params": c.n_params}
            except Exception as e:  # a failed hypothesis: say which
                row["thm52"] = {"error": str(e)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
