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

from polylens.lenses.verify.certify import CertifyOptions, certify, lp_classifier
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


def _run_chunk(network: Network, x: Array, y: Array, idx: Array, eps: Sequence[float], options: CertifyOptions,
               with_lp_classifier: bool, done: dict[str, dict]) -> list[tuple[str, dict]]:
    """Certify a chunk of images at every radius, smallest first, skipping units in ``done``.

    A counterexample found at radius e lies in every larger ball (the balls are nested, and so are
    their intersections with [0, 1]), so an image falsified at e is falsified at every larger radius
    with the same input: those units are settled without any work (``decided_by`` names the radius).
    Units already in ``done`` (a resumed run) feed this inheritance exactly as fresh ones do, so a
    resumed sweep ends with the rows of an uninterrupted one.
    """
    out = []
    cex: dict[int, tuple[list, float]] = {}
    pred = network.predict(x)
    for e in sorted(eps):
        for i in idx:
            r = done.get(_unit_key(e, int(i)))
            if r is not None and r["status"] == "falsified" and int(i) not in cex:
                cex[int(i)] = (r["counterexample"], e)
        need = np.array([j for j, i in enumerate(idx) if _unit_key(e, int(i)) not in done], dtype=np.int64)
        if need.size == 0:
            continue
        inherit = np.array([j for j in need if int(idx[j]) in cex], dtype=np.int64)
        fresh = np.array([j for j in need if int(idx[j]) not in cex], dtype=np.int64)
        rows: dict[int, dict] = {}
        if fresh.size:
            for j, c in zip(fresh, certify(network, x[fresh], y[fresh], e, indices=idx[fresh], options=options)):
                rows[int(j)] = c.to_dict()
                if c.counterexample is not None:
                    cex[int(idx[j])] = ([float(v) for v in c.counterexample], e)
        for j in inherit:
            ce, e0 = cex[int(idx[j])]
            rows[int(j)] = {"index": int(idx[j]), "eps": float(e), "label": int(y[j]), "prediction": int(pred[j]),
                            "status": "falsified", "decided_by": f"eps {e0:g}",
                            "verified_by": {"ibp": False, "crown": False, "lp": False},
                            "margin_lower": None, "lp_solves": 0, "counterexample": ce}
        lp_pred = lp_classifier(network, x[need], e, mode=options.mode, cuts=options.cuts,
                                time_limit=options.time_limit)[0] if with_lp_classifier else None
        for pos, j in enumerate(need):
            d = rows[int(j)]
            d["lp_class"] = int(lp_pred[pos]) if lp_pred is not None else None
            out.append((_unit_key(e, int(idx[j])), d))
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
              out_dir: str | Path | None = None, workers: int = 2, chunk: int = 40, with_lp_classifier: bool = True,
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
    # A job is a chunk of images at every radius (see _run_chunk), with the units it already has.
    jobs = []
    for s0 in range(0, N, chunk):
        ids = np.arange(s0, min(N, s0 + chunk))
        have = {k: rows[k] for e in eps for i in ids if (k := _unit_key(e, int(i))) in rows}
        if len(have) < len(ids) * len(eps):
            jobs.append((ids, have))
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
            for ids, have in jobs:
                take(_run_chunk(network, x[ids], y[ids], ids, eps, options, with_lp_classifier, have))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futs = [pool.submit(_run_chunk, network, x[ids], y[ids], ids, eps, options, with_lp_classifier, have)
                        for ids, have in jobs]
                for f in as_completed(futs):
                    take(f.result())
    finally:
        if store is not None:
            store.close()
    ordered = tuple(rows[_unit_key(e, i)] for e in eps for i in range(N))
    return SweepResult(eps, N, network.n_classes, ordered, summarize(ordered, eps, network.n_classes))
