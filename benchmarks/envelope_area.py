"""How close the envelopes of polylens.relax come to the convex hull of each activation's graph.

For every activation of the registry (leaky_relu at alpha 0.01 and 0.2) and every mode (pair; hull
with 2, 4, 8, 16 cuts per side), the median and 90th percentile over typical pre-activation
intervals (centres uniform in [-3, 3], radii uniform in [0.1, 4], seeded) of

    area between the envelope's lower and upper boundary / area of the true convex hull,

plus the mean number of cuts per neuron (both sides) and the build time per neuron. 1.000 means the
envelope is the hull. Run: ``.venv/bin/python benchmarks/envelope_area.py [--intervals N]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from polylens.nn.activations import REGISTRY, ActKind, Activation
from polylens.relax.envelopes import Hull, Pair, build_envelope, convex_hull_areas, envelope_areas

MODES = [("pair", Pair())] + [(f"hull-{k}", Hull(k)) for k in (2, 4, 8, 16)]


def activations() -> list[Activation]:
    return [Activation(k) for k in REGISTRY if k is not ActKind.LEAKY_RELU] + [
        Activation(ActKind.LEAKY_RELU, a) for a in (0.01, 0.2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intervals", type=int, default=200, help="intervals per activation (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    c = rng.uniform(-3.0, 3.0, args.intervals)
    r = rng.uniform(0.1, 4.0, args.intervals)
    L, U = c - r, c + r
    head = f"| {'activation':<16} |" + "".join(f" {name:>15} |" for name, _ in MODES) + " curved |"
    print(f"Median (p90) area ratio to the convex hull; {args.intervals} intervals, centres in [-3, 3], "
          f"radii in [0.1, 4]; machine: {platform.machine()} {platform.python_implementation()} "
          f"{platform.python_version()}\n")
    print(head)
    print("|" + "---|" * (len(MODES) + 2))
    cuts_rows, time_rows = [], []
    for act in activations():
        hull = convex_hull_areas(act, L, U)
        # Intervals where f is linear (identity; stable relu) have a flat hull, and every mode is
        # exact there (tested); the ratio is taken over the others, counted in the last column.
        curved = hull > 1e-9 * (U - L)
        cells, cuts, times = [], [], []
        for _, envelope in MODES:
            t0 = time.perf_counter()
            env = build_envelope(act, L, U, envelope)
            times.append((time.perf_counter() - t0) / L.size * 1e6)
            ratio = envelope_areas(env)[curved] / hull[curved]
            cells.append(f"{np.median(ratio):.4f} ({np.quantile(ratio, 0.9):.4f})" if ratio.size else "exact")
            cuts.append(env.n_cuts / L.size)
        print(f"| {str(act):<16} |" + "".join(f" {cell:>15} |" for cell in cells) + f" {int(curved.sum()):>6} |")
        cuts_rows.append((str(act), cuts))
        time_rows.append((str(act), times))
    print("\nMean cuts per neuron (lower + upper) / build time per neuron in microseconds, "
          f"{args.intervals} neurons at once\n")
    print(head[: head.rindex(" curved |")])
    print("|" + "---|" * (len(MODES) + 1))
    for (name, cuts), (_, times) in zip(cuts_rows, time_rows):
        print(f"| {name:<16} |" + "".join(f" {f'{n:.2f} / {t:.0f} us':>15} |" for n, t in zip(cuts, times)))


if __name__ == "__main__":
    main()
