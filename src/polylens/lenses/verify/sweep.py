"""Robustness sweeps: certify many images at many radii, resumably, on every core.

A sweep's unit is one (image, eps). Units are grouped into chunks, certified in worker processes,
and written to the results store (SQLite, one row per unit) as each chunk finishes; rerunning with
the same output directory skips finished units. The summary (:class:`RateTable`) gives per digit and
overall, at every eps: clean accuracy, verified accuracy by interval bounds, by backward linear
bounds and by the LP (each cumulative: verified by that stage or a cheaper one), attack accuracy
(images not falsified: an upper bound on true robust accuracy), the unknown gap between the two, and
the accuracy of the LP classifier; every per-digit rate carries a 95% Wilson confidence interval,
since each digit is a finite sample.

Rows are :class:`SweepRow` values; the store keeps each as its ``to_dict()`` JSON (the schema of
the results files) and reads it back with :meth:`SweepRow.from_dict`. Radii are keyed in JSON by
:func:`radius_key`: ``f"{e:g}"`` where that text reads back as e (the usual radii: "0", "0.005",
"0.01"), else ``repr(e)``, so that two different radii never share a key.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from polylens.arrays import frozen
from polylens.errors import ParameterError
from polylens.lenses.verify.certify import (Certificate, CertifyOptions, DecidedBy, Status, VerifiedBy, certify,
                                            lp_classifier)
from polylens.nn.network import Network
from polylens.store import Store
from polylens.validation import check_float, check_int

Array = np.ndarray

__all__ = ["RATES", "Rate", "RateTable", "SweepResult", "SweepRow", "auto_chunk", "radius_key", "rate_table",
           "run_sweep", "summarize", "wilson"]

RATES = ("clean", "ibp", "crown", "lp", "attack", "unknown", "lp_classifier", "bab")


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


def radius_key(eps: float) -> str:
    """The JSON key of a radius: ``f"{eps:g}"`` when that text reads back as ``eps`` ("0", "0.01"),
    else ``repr(eps)`` ("0.010000001"), so that distinct radii never share a key.

    >>> radius_key(0.0), radius_key(0.01), radius_key(0.010000001)
    ('0', '0.01', '0.010000001')
    """
    e = float(eps)
    short = f"{e:g}"
    return short if float(short) == e else repr(e)


def _unit_key(eps: float, index: int) -> str:
    """The store key of one (image, eps): ``0.01000000:0000042``; a radius that eight decimals do not
    pin down (0.010000001) is written in full, so that close radii never share a unit."""
    fixed = f"{eps:.8f}"
    return f"{fixed if float(fixed) == eps else repr(float(eps))}:{index:07d}"


# ---------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, eq=False)
class SweepRow:
    """The verdict for one (image, eps) of a sweep: a :class:`~polylens.lenses.verify.certify.Certificate`'s
    fields, or a row settled by a counterexample found at the smaller radius ``inherited_from``
    (``decided_by`` INHERITED; no margin bounds, no LP), plus ``lp_class``, the LP classifier's class
    (None when it was not run). Shapes: ``margin_lower`` (n_classes,) or None; ``counterexample``
    (d,) on falsified rows, else None.

    The row reads like a dict of its JSON (``row["status"]``, ``row.get("lp_class")``): a stopgap
    for callers written when rows were dicts; use the attributes.
    """

    index: int
    eps: float
    label: int
    prediction: int
    status: Status
    decided_by: DecidedBy | None
    verified_by: VerifiedBy
    margin_lower: Array | None
    lp_solves: int
    counterexample: Array | None
    lp_class: int | None = None
    inherited_from: float | None = None
    reason: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "status", Status(self.status))
        if self.decided_by is not None:
            object.__setattr__(self, "decided_by", DecidedBy(self.decided_by))
        for name in ("margin_lower", "counterexample"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, frozen(v))

    @classmethod
    def from_certificate(cls, c: Certificate, lp_class: int | None = None) -> "SweepRow":
        return cls(c.index, c.eps, c.label, c.prediction, c.status, c.decided_by, c.verified_by, c.margin_lower,
                   c.lp_solves, c.counterexample, lp_class, None, c.reason)

    @classmethod
    def inherited(cls, index: int, eps: float, label: int, prediction: int, counterexample: Array,
                  from_eps: float) -> "SweepRow":
        """A falsified row settled by the counterexample found at the smaller radius ``from_eps``."""
        return cls(index, eps, label, prediction, Status.FALSIFIED, DecidedBy.INHERITED, VerifiedBy(), None, 0,
                   counterexample, None, from_eps)

    def with_lp_class(self, lp_class: int | None) -> "SweepRow":
        return SweepRow(self.index, self.eps, self.label, self.prediction, self.status, self.decided_by,
                        self.verified_by, self.margin_lower, self.lp_solves, self.counterexample, lp_class,
                        self.inherited_from, self.reason)

    def to_dict(self) -> dict:
        """The row's JSON (what the store keeps): index, eps, label, prediction, status, decided_by
        (``"eps <radius>"`` for an inherited row), verified_by, margin_lower, lp_solves,
        counterexample (falsified rows), lp_class."""
        if self.decided_by is DecidedBy.INHERITED:
            decided = f"eps {radius_key(self.inherited_from)}"
        else:
            decided = None if self.decided_by is None else self.decided_by.value
        d = {"index": self.index, "eps": self.eps, "label": self.label, "prediction": self.prediction,
             "status": self.status.value, "decided_by": decided, "verified_by": self.verified_by.to_dict(),
             "margin_lower": None if self.margin_lower is None else
             [None if not np.isfinite(v) else float(v) for v in self.margin_lower],
             "lp_solves": self.lp_solves}
        if self.counterexample is not None:
            d["counterexample"] = [float(v) for v in self.counterexample]
        d["lp_class"] = self.lp_class
        if self.reason is not None:
            d["reason"] = self.reason
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SweepRow":
        """The row :meth:`to_dict` wrote (read back from the store). A margin bound JSON holds as null
        (an infinite one: +inf for the label's own column, -inf where an LP failed) reads back as NaN."""
        decided, inherited = d.get("decided_by"), None
        if isinstance(decided, str) and decided.startswith("eps "):
            decided, inherited = DecidedBy.INHERITED, float(decided[4:])
        ml = d.get("margin_lower")
        cex = d.get("counterexample")
        return cls(int(d["index"]), float(d["eps"]), int(d["label"]), int(d["prediction"]), Status(d["status"]),
                   None if decided is None else DecidedBy(decided), VerifiedBy(**d["verified_by"]),
                   None if ml is None else np.array([np.nan if v is None else v for v in ml], dtype=np.float64),
                   int(d.get("lp_solves", 0)), None if cex is None else np.asarray(cex, dtype=np.float64),
                   d.get("lp_class"), inherited, d.get("reason"))

    # -- the dict view (a stopgap for callers that read rows as dicts) ----------------------------

    def keys(self):
        return self.to_dict().keys()

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)


def _row(r: "SweepRow | Mapping[str, Any]") -> SweepRow:
    return r if isinstance(r, SweepRow) else SweepRow.from_dict(r)


# ---------------------------------------------------------------------------------------------
# Rate tables


@dataclass(frozen=True)
class Rate:
    """``count`` of ``n`` rows, its ``value`` count / n (0 when n = 0) and the 95% Wilson interval ``ci``."""

    count: int
    n: int

    @property
    def value(self) -> float:
        return self.count / self.n if self.n else 0.0

    @property
    def ci(self) -> tuple[float, float]:
        return wilson(self.count, self.n)

    def to_dict(self) -> dict:
        return {"value": self.value, "count": self.count, "n": self.n, "ci": list(self.ci)}


@dataclass(frozen=True, eq=False)
class RateTable:
    """Rates of a sweep, indexed by radius (a float) and digit. E = len(eps), R = len(names), C classes.

    ``counts`` int (E, R) and ``n`` int (E,): overall; ``digit_counts`` int (C, E, R) and ``digit_n``
    int (C, E): per digit (by label). :meth:`rate` reads one; :meth:`to_dict` is the summary JSON,
    keyed by :func:`radius_key`.
    """

    eps: tuple[float, ...]
    names: tuple[str, ...]
    counts: Array
    n: Array
    digit_counts: Array
    digit_n: Array

    def __post_init__(self):
        for name in ("counts", "n", "digit_counts", "digit_n"):
            object.__setattr__(self, name, frozen(getattr(self, name), np.int64))

    @property
    def n_classes(self) -> int:
        return int(self.digit_counts.shape[0])

    def _eps_index(self, eps: float) -> int:
        e = float(eps)
        for i, v in enumerate(self.eps):
            if v == e:
                return i
        raise ParameterError(f"The 'eps' parameter of RateTable.rate must be one of the sweep's radii "
                             f"{list(self.eps)}. Got {eps!r} instead.")

    def rate(self, name: str, eps: float, digit: int | None = None) -> Rate:
        """The rate ``name`` (one of ``names``) at radius ``eps``, overall or for one ``digit``."""
        if name not in self.names:
            raise ParameterError(f"The 'name' parameter of RateTable.rate must be one of {list(self.names)}. "
                                 f"Got {name!r} instead.")
        i, r = self._eps_index(eps), self.names.index(name)
        if digit is None:
            return Rate(int(self.counts[i, r]), int(self.n[i]))
        return Rate(int(self.digit_counts[digit, i, r]), int(self.digit_n[digit, i]))

    def to_dict(self) -> dict:
        """``{"eps": [...], "rates": [...], "overall": {key: {rate: {value, count, n, ci}}},
        "per_digit": {"c": {key: ...}}}`` with keys from :func:`radius_key`."""
        def rates(counts, n) -> dict:
            return {name: Rate(int(counts[r]), int(n)).to_dict() for r, name in enumerate(self.names)}

        return {"eps": list(self.eps), "rates": list(self.names),
                "overall": {radius_key(e): rates(self.counts[i], self.n[i]) for i, e in enumerate(self.eps)},
                "per_digit": {str(c): {radius_key(e): rates(self.digit_counts[c, i], self.digit_n[c, i])
                                       for i, e in enumerate(self.eps)} for c in range(self.n_classes)}}


def rate_table(rows: Sequence["SweepRow | Mapping[str, Any]"], eps: Sequence[float], n_classes: int) -> RateTable:
    """Rates per eps, overall and per digit, from sweep rows (:class:`SweepRow` or their dicts); see the
    module docstring. The LP classifier's rate counts rows whose ``lp_class`` equals the label, and is
    0 when the sweep did not run it."""
    rows = [_row(r) for r in rows]
    eps = tuple(float(e) for e in eps)
    E, R = len(eps), len(RATES)
    counts = np.zeros((E, R), np.int64)
    n = np.zeros(E, np.int64)
    dcounts = np.zeros((n_classes, E, R), np.int64)
    dn = np.zeros((n_classes, E), np.int64)
    for i, e in enumerate(eps):
        rs = [r for r in rows if r.eps == e]
        with_lpc = bool(rs) and rs[0].lp_class is not None
        k = np.array([[r.prediction == r.label, r.verified_by.ibp, r.verified_by.crown, r.verified_by.lp,
                       r.status is not Status.FALSIFIED, r.status is Status.UNKNOWN,
                       with_lpc and r.lp_class == r.label, r.verified_by.bab] for r in rs],
                     dtype=np.int64).reshape(-1, R)
        labels = np.array([r.label for r in rs], dtype=np.int64)
        counts[i], n[i] = k.sum(axis=0), len(rs)
        for c in range(n_classes):
            m = labels == c
            dcounts[c, i], dn[c, i] = k[m].sum(axis=0), int(m.sum())
    return RateTable(eps, RATES, counts, n, dcounts, dn)


def summarize(rows: Sequence["SweepRow | Mapping[str, Any]"], eps: Sequence[float], n_classes: int) -> dict:
    """``rate_table(rows, eps, n_classes).to_dict()``: the summary JSON (kept for callers that want the dict)."""
    return rate_table(rows, eps, n_classes).to_dict()


# ---------------------------------------------------------------------------------------------
# Running


def _run_chunk(network: Network, x: Array, y: Array, idx: Array, eps: Sequence[float], options: CertifyOptions,
               with_lp_classifier: bool, done: dict[str, SweepRow]) -> list[tuple[str, SweepRow]]:
    """Certify a chunk of images at every radius, smallest first, skipping units in ``done``.

    A counterexample found at radius e lies in every larger ball (the balls are nested, and so are
    their intersections with [0, 1]), so an image falsified at e is falsified at every larger radius
    with the same input: those units are settled without any work (``decided_by`` INHERITED, with the
    radius). Units already in ``done`` (a resumed run) feed this inheritance exactly as fresh ones do,
    so a resumed sweep ends with the rows of an uninterrupted one.
    """
    out = []
    cex: dict[int, tuple[Array, float]] = {}
    pred = network.predict(x)
    for e in sorted(eps):
        for i in idx:
            r = done.get(_unit_key(e, int(i)))
            if r is not None and r.status is Status.FALSIFIED and int(i) not in cex:
                cex[int(i)] = (r.counterexample, e)
        need = np.array([j for j, i in enumerate(idx) if _unit_key(e, int(i)) not in done], dtype=np.int64)
        if need.size == 0:
            continue
        inherit = np.array([j for j in need if int(idx[j]) in cex], dtype=np.int64)
        fresh = np.array([j for j in need if int(idx[j]) not in cex], dtype=np.int64)
        rows: dict[int, SweepRow] = {}
        if fresh.size:
            for j, c in zip(fresh, certify(network, x[fresh], y[fresh], e, indices=idx[fresh], options=options)):
                rows[int(j)] = SweepRow.from_certificate(c)
                if c.counterexample is not None:
                    cex[int(idx[j])] = (c.counterexample, e)
        for j in inherit:
            ce, e0 = cex[int(idx[j])]
            rows[int(j)] = SweepRow.inherited(int(idx[j]), float(e), int(y[j]), int(pred[j]), ce, e0)
        lp_pred = lp_classifier(network, x[need], e, envelope=options.envelope,
                                time_limit=options.time_limit)[0] if with_lp_classifier else None
        for pos, j in enumerate(need):
            row = rows[int(j)].with_lp_class(int(lp_pred[pos]) if lp_pred is not None else None)
            out.append((_unit_key(e, int(idx[j])), row))
    return out


#: Test hook: when this environment variable names a file that does not exist yet, the first Ray task
#: to see it creates the file and kills its own worker process (a killed worker, on demand).
RAY_DIE_ONCE = "POLYLENS_RAY_TEST_DIE_ONCE"


def _ray_chunk(*args):
    """:func:`_run_chunk` as a Ray task (see :data:`RAY_DIE_ONCE`)."""
    marker = os.environ.get(RAY_DIE_ONCE)
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os._exit(1)
    return _run_chunk(*args)


def _run_on_ray(network: Network, x: Array, y: Array, eps, options: CertifyOptions, with_lp_classifier: bool, jobs,
                take, address: str | None) -> None:
    """Every job as a Ray task (``max_retries``: a task whose worker dies runs again); rows are taken
    by the driver in the order tasks finish."""
    try:
        import ray
    except ImportError:
        raise ParameterError("The 'ray' executor needs Ray: pip install 'polylens[ray]'.") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    task = ray.remote(max_retries=3, num_cpus=1)(_ray_chunk)
    net_ref = ray.put(network)
    pending = [task.remote(net_ref, x[ids], y[ids], ids, eps, options, with_lp_classifier, have) for ids, have in jobs]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        take(ray.get(ready[0]))


@dataclass(frozen=True, eq=False)
class SweepResult:
    """All rows of a sweep (one :class:`SweepRow` per (image, eps), sorted by eps then index) and their
    :class:`RateTable`. ``summary`` is the table's JSON (``table.to_dict()``)."""

    eps: tuple[float, ...]
    n_images: int
    n_classes: int
    rows: tuple[SweepRow, ...]
    table: RateTable

    @property
    def summary(self) -> dict:
        """The rate table as JSON (a fresh dict each time: callers may add keys to it)."""
        return self.table.to_dict()

    def to_json(self) -> dict:
        return {"summary": self.summary, "results": [r.to_dict() for r in self.rows]}

    def to_dict(self) -> dict:
        return self.to_json()


#: The most images in one job, and the most hidden neurons (summed over its images) its vectorised
#: envelope and bound passes hold at once.
MAX_CHUNK, MAX_CHUNK_NEURONS = 250, 20_000


def auto_chunk(n_images: int, workers: int, n_hidden: int) -> int:
    """The default images per job: about four jobs per worker (so that the last ones balance), but no
    more than MAX_CHUNK images or MAX_CHUNK_NEURONS hidden neurons in all.

    Large jobs matter: the envelopes and bounds of a job's images are computed in one vectorised
    call per layer, whose fixed cost a small network pays per call (on the seed, 40 images a job
    took 1.7 times as long as 250).
    """
    by_neurons = MAX_CHUNK_NEURONS // max(1, n_hidden)
    return max(1, min(MAX_CHUNK, by_neurons, math.ceil(n_images / (4 * max(1, workers)))))


def run_sweep(network: Network, x: Array, y: Array, eps: Sequence[float], *, options: CertifyOptions = CertifyOptions(),
              out_dir: str | Path | None = None, workers: int = 2, chunk: int | None = None,
              with_lp_classifier: bool = True,
              settings: dict | None = None, progress: Callable[[int, int], None] | None = None,
              executor: str = "process", address: str | None = None) -> SweepResult:
    """Certify every row of x at every eps; resumable through ``out_dir`` (see the module docstring).

    ``settings`` identifies the run in the store (model, data, options); a store made with other
    settings is refused. ``progress(done, total)`` is called as units finish. ``chunk``: images per
    job (default :func:`auto_chunk`).

    ``executor``: ``"process"`` (a local process pool of ``workers``) or ``"ray"``: every chunk is a
    Ray task on the cluster at ``address`` (None: a local Ray instance, or the one already
    initialised), retried by Ray when its worker dies; the driver alone writes the store, as each
    task's rows arrive, so a killed driver resumes from what it had written.
    """
    if executor not in ("process", "ray"):
        raise ParameterError(f"The 'executor' parameter of verify must be one of process, ray. Got {executor!r} instead.")
    eps = tuple(check_float(e, "eps", "verify", 0.0, 1.0) for e in eps)
    if not eps:
        raise ParameterError("The 'eps' parameter of verify must list at least one radius.")
    workers = check_int(workers, "workers", "verify", 1, os.cpu_count() or 1)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.asarray(y, dtype=np.int64)
    N = len(x)
    if chunk is None:
        chunk = auto_chunk(N, workers, sum(network.hidden_widths))
    chunk = check_int(chunk, "chunk", "verify", 1, None)
    store = None
    done: set[str] = set()
    rows: dict[str, SweepRow] = {}
    if out_dir is not None:
        run_settings = {"options": options.settings(), "n": N, "lp_classifier": with_lp_classifier,
                        **(settings or {})}
        store = Store(Path(out_dir) / "sweep.sqlite", "verify", run_settings)
        wanted = {_unit_key(e, i) for e in eps for i in range(N)}
        for k, v in store.items():
            if k in wanted:
                rows[k] = SweepRow.from_dict(v)
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
            store.put_many([(k, v.to_dict()) for k, v in items])
        for k, v in items:
            rows[k] = v
        finished += len(items)
        if progress:
            progress(finished, total)

    try:
        if executor == "ray" and jobs:
            _run_on_ray(network, x, y, eps, options, with_lp_classifier, jobs, take, address)
        elif workers == 1 or len(jobs) <= 1:
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
    return SweepResult(eps, N, network.n_classes, ordered, rate_table(ordered, eps, network.n_classes))
