"""Robustness sweeps: certify many images at many radii, resumably, on every core.

A sweep's unit is one (image, eps). Units are grouped into chunks, certified in worker processes,
and written to the results store (SQLite, one row per unit) as each chunk finishes; rerunning with
the same output directory skips finished units. The summary gives per digit and overall, at every
eps: clean accuracy, verified accuracy by interval bounds, by backward linear bounds and by the LP
(each cumulative: verified by that stage or a cheaper one), attack accuracy (images not falsified:
an upper bound on true robust accuracy), the unknown gap between the two, and the accuracy of the
LP classifier; every per-digit rate carries a 95% Wilson confidence interval, since each digit is a
finite sample.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from polylens.analyses.certify import CertifyOptions, certify, lp_classifier
from polylens.errors import ParameterError
from polylens.nn.network import Network
from polylens.store import Store
from polylens.validation import check_float, check_int

Array = np.ndarray
RATES = ("clean", "ibp", "crown", "lp", "attack", "unknown", "lp_classifier")


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for a rate k/n (n > 0)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # The interval always contains p; rounding alone can push an end across it at k = 0 or k = n.
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def _unit_key(eps: float, index: int) -> str:
    return f"{eps:.8f}:{index:07d}"


def _run_chunk(network: Network, x: Array, y: Array, idx: Array, eps: float, options: CertifyOptions,
               with_lp_classifier: bool) -> list[tuple[str, dict]]:
    certs = certify(network, x, y, eps, indices=idx, options=options)
    lp_pred = lp_classifier(network, x, eps, mode=options.mode, cuts=options.cuts,
                            time_limit=options.time_limit)[0] if with_lp_classifier else None
    out = []
    for j, c in enumerate(certs):
        d = c.to_dict()
        d["lp_class"] = int(lp_pred[j]) if lp_pred is not None else None
        out.append((_unit_key(eps, c.index), d))
    return out


@dataclass(frozen=True)
class SweepResult:
    """All rows of a sweep (one per (image, eps), sorted by eps then index) and their summary."""

    eps: tuple[float, ...]
    n_images: int
    n_classes: int
    rows: tuple[dict, ...]
    summary: dict

    def to_json(self) -> dict:
        return {"summary": self.summary, "results": list(self.rows)}


def summarize(rows: Sequence[dict], eps: Sequence[float], n_classes: int) -> dict:
    """Rates per eps, overall and per digit (with Wilson intervals); see the module docstring."""
    out = {"eps": list(eps), "rates": list(RATES), "overall": {}, "per_digit": {}}
    by_eps: dict[float, list[dict]] = {e: [] for e in eps}
    for r in rows:
        by_eps.setdefault(r["eps"], []).append(r)

    def rates(rs: list[dict]) -> dict:
        n = len(rs)
        k = {
            "clean": sum(r["prediction"] == r["label"] for r in rs),
            "ibp": sum(r["verified_by"]["ibp"] for r in rs),
            "crown": sum(r["verified_by"]["crown"] for r in rs),
            "lp": sum(r["verified_by"]["lp"] for r in rs),
            "attack": sum(r["status"] != "falsified" for r in rs),
            "unknown": sum(r["status"] == "unknown" for r in rs),
            "lp_classifier": sum(r.get("lp_class") == r["label"] for r in rs) if rs and rs[0].get("lp_class") is not None else 0,
        }
        return {name: {"value": (k[name] / n if n else 0.0), "count": int(k[name]), "n": n,
                       "ci": list(wilson(int(k[name]), n))} for name in RATES}

    for e in eps:
        rs = by_eps.get(e, [])
        out["overall"][f"{e:g}"] = rates(rs)
        for c in range(n_classes):
            out["per_digit"].setdefault(str(c), {})[f"{e:g}"] = rates([r for r in rs if r["label"] == c])
    return out


def run_sweep(network: Network, x: Array, y: Array, eps: Sequence[float], *, options: CertifyOptions = CertifyOptions(),
              out_dir: str | Path | None = None, workers: int = 2, chunk: int = 50, with_lp_classifier: bool = True,
              settings: dict | None = None, progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Certify every row of x at every eps; resumable through ``out_dir`` (see the module docstring).

    ``settings`` identifies the run in the store (model, data, options); a store made with other
    settings is refused. ``progress(done, total)`` is called as units finish.
    """
    eps = tuple(check_float(e, "eps", "verify", 0.0, 1.0) for e in eps)
    if not eps:
        raise ParameterError("The 'eps' parameter of verify must list at least one radius.")
    workers = check_int(workers, "workers", "verify", 1, os.cpu_count() or 1)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.asarray(y, dtype=np.int64)
    N = len(x)
    store = None
    done: set[str] = set()
    rows: dict[str, dict] = {}
    if out_dir is not None:
        run_settings = {"options": {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(options).items()},
                        "n": N, "lp_classifier": with_lp_classifier, **(settings or {})}
        store = Store(Path(out_dir) / "sweep.sqlite", "verify", run_settings)
        wanted = {_unit_key(e, i) for e in eps for i in range(N)}
        for k, v in store.items():
            if k in wanted:
                rows[k] = v
        done = set(rows)
    jobs = []
    for e in eps:
        todo = np.array([i for i in range(N) if _unit_key(e, i) not in done], dtype=np.int64)
        for s in range(0, len(todo), chunk):
            jobs.append((e, todo[s:s + chunk]))
    total = N * len(eps)
    finished = len(done)
    if progress:
        progress(finished, total)

    def take(items):
        nonlocal finished
        if store is not None:
            store.put_many(items)
        for k, v in items:
            rows[k] = v
        finished += len(items)
        if progress:
            progress(finished, total)

    try:
        if workers == 1 or len(jobs) <= 1:
            for e, ids in jobs:
                take(_run_chunk(network, x[ids], y[ids], ids, e, options, with_lp_classifier))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futs = [pool.submit(_run_chunk, network, x[ids], y[ids], ids, e, options, with_lp_classifier)
                        for e, ids in jobs]
                for f in as_completed(futs):
                    take(f.result())
    finally:
        if store is not None:
            store.close()
    ordered = tuple(rows[_unit_key(e, i)] for e in eps for i in range(N))
    return SweepResult(eps, N, network.n_classes, ordered, summarize(ordered, eps, network.n_classes))
