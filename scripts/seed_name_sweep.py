"""Train the seed architecture over many seeds and name each run's layer 1 (issue: do Frame, Spine
and Belt emerge?). Writes src/polylens/lenses/findings/seed_names.json, which the findings section
reads for the bundled seed.

    .venv/bin/python scripts/seed_name_sweep.py --seeds 24
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from polylens.lenses.findings.names_sweep import BUNDLED_SWEEP, CLAIMED, name_sweep


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=24, help="Seeds 0..N-1 (default 24).")
    ap.add_argument("--out", default=str(BUNDLED_SWEEP))
    a = ap.parse_args()
    t0 = time.perf_counter()
    sweep = name_sweep(range(a.seeds), progress=lambda i, n: print(f"  run {i}/{n}", file=sys.stderr, flush=True))
    doc = sweep.to_dict()
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    for r in sweep.runs:
        print(f"seed {r.seed:2d}  acc {r.accuracy:.4f}  " + ", ".join(f"{n} ({s:.2f})" for n, s in zip(r.names, r.scores)))
    print("named in runs:", {t: f"{sweep.frequency(t):.0%}" for t in CLAIMED})
    print("names:", sweep.name_counts())
    print(f"{doc['seconds']} s; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
