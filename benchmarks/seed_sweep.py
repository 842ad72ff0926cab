"""The seed sweep: `polylens verify seed` on 2,000 test images at 6 radii, timed.

Runs the sweep three times in one process tree (all stages; without the LP classifier; one worker)
and prints wall seconds and units per second for each, so the figures in the README can be
reproduced:

    .venv/bin/python benchmarks/seed_sweep.py [--n 2000] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from polylens.lenses.verify.certify import CertifyOptions
from polylens.lenses.verify.sweep import run_sweep
from polylens.nn.model import load_model, model_split


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    m = load_model("seed")
    s = model_split(m)
    x, y = s.x_test[:a.n], s.y_test[:a.n]
    eps = [0, 0.005, 0.01, 0.02, 0.03, 0.05]
    for label, kw in [("full (with LP classifier)", dict(with_lp_classifier=True, workers=a.workers)),
                      ("certification only", dict(with_lp_classifier=False, workers=a.workers)),
                      ("certification only, 1 worker", dict(with_lp_classifier=False, workers=1))]:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            r = run_sweep(m.network, x, y, eps, options=CertifyOptions(), out_dir=d, **kw)
            dt = time.perf_counter() - t
        lp = sum(row.lp_solves for row in r.rows)
        print(f"{label:32s} {dt:7.1f}s  {len(r.rows) / dt:7.1f} units/s  ({len(r.rows)} units, {lp} certification LPs)",
              flush=True)


if __name__ == "__main__":
    main()
