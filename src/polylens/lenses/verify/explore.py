"""What the explorer asks the robustness lens: a certificate for the input on screen, the status of
every test sample at one radius, and a modest sweep computed in the background.

Each function is a :class:`~polylens.lenses.base.Payload` builder ``(session, params) -> dict``;
``session`` is the explorer's :class:`~polylens.explorer.api.Session`.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from polylens.jsonio import jsonable
from polylens.lenses.base import LensOptions, option

Array = np.ndarray

__all__ = ["CertifyParams", "EpsParams", "SweepRunner", "certificate_dict", "certify_export", "certify_payload",
           "robust_export", "robust_payload", "sweep_payload", "sweep_rows"]


@dataclass(frozen=True)
class EpsParams(LensOptions):
    where = "the explorer"
    eps: float = option(0.01, "Radius of the L-infinity ball.", lo=0.0, hi=1.0)


@dataclass(frozen=True)
class CertifyParams(LensOptions):
    where = "certify"
    eps: float = option(0.01, "Radius of the L-infinity ball.", lo=0.0, hi=1.0)
    label: int | None = option(None, "The class to certify (default: the sample's label, else the prediction).", lo=0)


def _options(session):
    from polylens.lenses.verify.certify import CertifyOptions

    return CertifyOptions(time_limit=session.config.time_limit)


def certificate_dict(session, cert, x: Array, label_source: str, elapsed: float, sample: int | None) -> dict:
    """A Certificate's ``to_dict()`` plus what the page shows with it: where the label came from,
    the time taken, and for a counterexample its prediction, logits and change from x."""
    from polylens.explorer.api import display

    d = jsonable(cert)
    d.update({"label_source": label_source, "elapsed_s": round(elapsed, 4), "time_limit": session.config.time_limit,
              "sample": sample, "cached": False})
    if cert.counterexample is not None:
        lg = session.network(cert.counterexample[None, :])[0]
        d["counterexample_prediction"] = int(np.argmax(lg))
        d["counterexample_logits"] = display(lg)
        d["counterexample_delta"] = display(cert.counterexample - x)
    return d


def certify_payload(session, params: Mapping[str, Any]) -> dict:
    """The certificate of one input at eps (LP solves limited to the explorer's ``time_limit``).

    The label is ``label`` when given, else the sample's true label, else the network's prediction
    (robustness of the prediction of a drawn input)."""
    from polylens.lenses.verify.certify import certify

    inp, eps, label = params["input"], params["eps"], params["label"]
    if label is not None:
        session.check_class(label, "label", "certify")
        source = "given"
    elif inp.sample is not None:
        label, source = int(session.data.y[inp.sample]), "label"
    else:
        label, source = int(session.network.predict(inp.x[None, :])[0]), "prediction"
    cache = session.cache("certify")
    key = (inp.x.tobytes(), eps, label)
    hit = cache.get(key)
    if hit is not None:
        return {**hit, "cached": True}
    t0 = time.perf_counter()
    cert = certify(session.network, inp.x[None, :], np.array([label]), eps, options=_options(session))[0]
    return cache.put(key, certificate_dict(session, cert, inp.x, source, time.perf_counter() - t0, inp.sample))


def certify_export(session, samples: Array, grid: Sequence[float]) -> dict[int, dict[str, dict]]:
    """Certificates of every exported sample at every radius of the grid, batched per radius."""
    from polylens.explorer.api import canonical_key
    from polylens.lenses.verify.certify import certify

    out: dict[int, dict[str, dict]] = {int(i): {} for i in samples}
    if not len(samples):
        return out
    X, Y = session.data.x[samples], session.data.y[samples]
    for eps in grid:
        t0 = time.perf_counter()
        certs = certify(session.network, X, Y, eps, indices=np.asarray(samples), options=_options(session))
        el = (time.perf_counter() - t0) / len(samples)
        for k, (i, c) in enumerate(zip(samples, certs)):
            out[int(i)][canonical_key({"eps": eps})] = certificate_dict(session, c, X[k], "label", el, int(i))
    return out


def _codes(certs) -> dict:
    codes = "".join(c.status.value[0] for c in certs)
    return {"codes": codes, "counts": {s: codes.count(s[0]) for s in ("verified", "falsified", "unknown")}}


def robust_payload(session, params: Mapping[str, Any]) -> dict:
    """Certification status of every test sample at eps: ``codes`` has one letter per sample (``v``
    verified, ``f`` falsified, ``u`` unknown), plus counts."""
    from polylens.lenses.verify.certify import certify

    eps = params["eps"]
    cache = session.cache("robust", 64)
    hit = cache.get(eps)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    certs = certify(session.network, session.data.x, session.data.y, eps, options=_options(session)) \
        if session.n_samples else []
    return cache.put(eps, {"eps": eps, **_codes(certs), "elapsed_s": round(time.perf_counter() - t0, 3)})


def robust_export(session, samples: Array, grid: Sequence[float]) -> dict[str, dict]:
    """The status of the exported samples (only those: a static page shows no others) at every radius."""
    from polylens.explorer.api import canonical_key
    from polylens.lenses.verify.certify import certify

    out = {}
    X, Y = session.data.x[samples], session.data.y[samples]
    for eps in grid:
        certs = certify(session.network, X, Y, eps, indices=np.asarray(samples), options=_options(session)) \
            if len(samples) else []
        out[canonical_key({"eps": eps})] = {"eps": eps, **_codes(certs)}
    return out


def sweep_rows(network, x: Array, y: Array, eps: Sequence[float], time_limit: float, offset: int = 0) -> list[dict]:
    """The rows of a small sweep of ``x`` at every radius (one chunk of the background sweep)."""
    from polylens.lenses.verify.certify import CertifyOptions
    from polylens.lenses.verify.sweep import run_sweep

    res = run_sweep(network, x, y, eps, options=CertifyOptions(time_limit=time_limit), workers=1,
                    with_lp_classifier=False)
    rows = []
    for r in res.rows:
        r = dict(r)
        r["index"] = int(r["index"]) + offset
        rows.append(r)
    return rows


class SweepRunner:
    """A modest robustness sweep computed in the background: :func:`sweep_rows` on chunks of images
    (so progress can be shown) in one spawned worker process (so the server's threads keep the
    interpreter to themselves), summarised per digit when every chunk is in."""

    def __init__(self, network, x: Array, y: Array, eps: Sequence[float], *, chunk: int = 50,
                 time_limit: float = 1.0):
        self.network, self.x, self.y = network, x, y
        self.eps = tuple(float(e) for e in eps)
        self.chunk, self.time_limit = chunk, time_limit
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future] = []
        self._result: dict | None = None
        self._error: str | None = None
        self._started = 0.0

    def start(self) -> None:
        """Submit every chunk (idempotent)."""
        with self._lock:
            if self._pool is not None or len(self.x) == 0 or not self.eps:
                return
            self._started = time.monotonic()
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            n = len(self.x)
            for s0 in range(0, n, self.chunk):  # a job: a chunk of images at every radius
                ids = slice(s0, min(n, s0 + self.chunk))
                self._futures.append(self._pool.submit(sweep_rows, self.network, self.x[ids], self.y[ids], self.eps,
                                                       self.time_limit, s0))

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    def payload(self) -> dict:
        """``{"status": "idle" | "running" | "ready" | "error" | "disabled", "done", "total", "n", "eps",
        "summary"}``."""
        from polylens.lenses.verify.sweep import summarize

        with self._lock:
            base = {"n": int(len(self.x)), "eps": list(self.eps), "done": 0, "total": len(self._futures)}
            if self._result is not None:
                return self._result
            if self._error is not None:
                return {**base, "status": "error", "error": self._error}
            if len(self.x) == 0 or not self.eps:
                return {**base, "status": "disabled", "error": "No robustness sweep: it was turned off "
                                                               "(images 0) or there are no test samples."}
            if self._pool is None:
                return {**base, "status": "idle"}
            done = [f for f in self._futures if f.done()]
            base["done"] = len(done)
            for f in done:
                if f.cancelled() or f.exception() is not None:
                    exc = "cancelled" if f.cancelled() else f.exception()
                    self._error = f"the background sweep failed: {exc}"
                    return {**base, "status": "error", "error": self._error}
            if len(done) < len(self._futures):
                return {**base, "status": "running"}
            rows = [r for f in self._futures for r in f.result()]
            rows.sort(key=lambda r: (r["eps"], r["index"]))
            summary = summarize(rows, self.eps, self.network.n_classes)
            self._result = {**base, "status": "ready", "summary": jsonable(summary),
                            "elapsed_s": round(time.monotonic() - self._started, 2)}
            self._pool.shutdown(wait=False)
            return self._result


def _sweep_settings(session) -> tuple[int, tuple[float, ...], int]:
    opts = session.options_for("robustness")
    n = session.n_samples if opts.images is None else min(opts.images, session.n_samples)
    return n, tuple(opts.eps), opts.chunk


def sweep_payload(session, params: Mapping[str, Any]) -> dict:
    """The background sweep's state (live: started on first request, polled until ready; static
    export: computed in place)."""
    from polylens.lenses.verify.sweep import summarize

    n, eps, chunk = _sweep_settings(session)
    if session.live:
        runner = session.resource("robustness.sweep", lambda: SweepRunner(
            session.network, session.data.x[:n], session.data.y[:n], eps if n else (), chunk=chunk,
            time_limit=session.config.time_limit))
        runner.start()
        return runner.payload()
    if n == 0 or not eps:
        return {"status": "disabled", "error": "No robustness sweep: no test samples or no radii.", "n": 0,
                "eps": list(eps)}
    rows = sweep_rows(session.network, session.data.x[:n], session.data.y[:n], eps, session.config.time_limit)
    summary = summarize(rows, eps, session.network.n_classes)
    return {"status": "ready", "n": n, "eps": list(eps), "done": 1, "total": 1, "summary": jsonable(summary)}
