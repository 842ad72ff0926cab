"""VNN-COMP instances end to end: an ONNX network, a VNN-LIB property and a timeout in; a verdict out.

:func:`run_instance` reads the network (:func:`polylens.nn.onnx_io.from_onnx`; gzipped files are
read too; inputs shaped [1, 784, 1] or [1, 1, 28, 28] flatten in C order, which is the order of
the property's X_i) and the property (:mod:`polylens.lenses.verify.vnnlib`), and decides every case
of the property under one wall-clock :class:`~polylens.lenses.verify.budget.Budget` of the
timeout: an attack first (PGD towards the property's rows when the property is a robustness
property), then branch and bound (:mod:`polylens.lenses.verify.bab`). The result is the
competition's: ``unsat`` (every case proved, each with a proof tree), ``sat`` (a counterexample,
replayed in onnxruntime on the float32 input that is written), ``timeout`` (the budget ran out) or
``unknown`` (the search ended undecided: out of nodes, a numerical tie, or a counterexample that
float32 inference does not confirm).

:func:`run_instances` runs every row of a competition instances CSV (onnx, vnnlib, timeout, relative
to a root folder), writes one result file per instance and ``summary.csv``.
"""

from __future__ import annotations

import csv
import gzip
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from polylens.errors import DataError, ParameterError
from polylens.lenses.verify.bab import BabOptions, Spec, branch_and_bound_many
from polylens.lenses.verify.budget import Budget, UnknownReason
from polylens.lenses.verify.vnnlib import Property, format_counterexample, read_vnnlib
from polylens.relax.envelopes import Hull

#: The search VNN-COMP instances get: alpha-CROWN intermediate bounds at the root (20 steps: on
#: mnistfc 256x4 prop_0 at eps 0.03 the weakest root margin bound goes from -1.34 to -0.76 and the
#: last layer's unstable neurons from 112 to 74; 60 steps gain 0.02 more), then alpha-beta-CROWN
#: bounds at every node (optimised slopes and split multipliers, warm-started from the parent),
#: filtered smart branching, 128 regions a batch (on 256x4, 9 to 17% more nodes in 120 s than 64;
#: 256 adds 5% more), no re-bounding of later layers (on 256x2 it cost
#: 4.5 times the nodes for the same bounds) and no LP except on fully split regions: on 256x2
#: prop_0 at eps 0.03 beta bounds decide in 5.8 s what an LP at every node decided in 10.2 s.
#: Where the root leaves a disjunct open, the root intervals of layers 2 and up are refined first
#: (``refine_nodes``: a search of at most 400 nodes per unstable neuron and side, within 80% of
#: the budget, each layer within its share of the time left; it stops once the intervals proved
#: so far, asked during each layer, prove the property at the root; the roots' corners are
#: attacked first): on 256x4 prop_0 at eps 0.03 the last layer's unstable neurons go from 63 to 21
#: and the instance is proved in 18.9 s, a timeout at 120 s without it. No node limit: the budget
#: ends the search. With a 30% share every instance solved was solved by 41 s and the main
#: search's 80 s after it solved none, while 256x6 prop_0 at eps 0.03 and prop_10 at eps 0.05 need
#: layer 5 (and 6) refined. 400 nodes instead of 100 prove 256x4 prop_6 at eps 0.05 in 100 s (a
#: timeout with 100: its last layer's searches prove 24 of 120 neuron sides stable instead of 7),
#: at the price of time where 100 nodes sufficed: 72 of 90 solved at 120 s, in 1,201 s in all,
#: against 71 in 800 s. A layer whose searches stop gaining ends early (``refine_stall`` 0.01: less
#: than 1% more of their gaps closed over the last quarter of the layer's time) and hands its time
#: on: the same 72 in 879 s, 256x2 prop_3 at eps 0.03 in 15.2 s (98.9 s), and on 256x4 prop_12 at
#: eps 0.05 the weakest disjunct at 120 s at -0.23 instead of -0.45.
VNNCOMP_OPTIONS = BabOptions(lp="never", rebound="never", envelope=Hull(2), batch=128, root_alpha_steps=20,
                             refine_nodes=400, refine_share=0.8, refine_stall=0.01, max_nodes=10_000_000)

Array = np.ndarray

__all__ = ["InstanceResult", "disjuncts", "load_onnx", "replay", "run_instance", "run_instances", "write_result"]


def _resolve(path: str | Path) -> Path:
    """``path``, or ``path.gz`` when only the gzipped file exists (the shared benchmark gzips them)."""
    p = Path(path)
    if p.exists():
        return p
    gz = p.with_name(p.name + ".gz")
    if gz.exists():
        return gz
    raise DataError(f"The file {str(p)!r} does not exist (nor {gz.name!r}).")


def _bytes(path: str | Path) -> bytes:
    data = _resolve(path).read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def load_onnx(path: str | Path):
    """(Network, ONNX bytes) of an ONNX file, gzipped or not."""
    from polylens.nn.onnx_io import from_onnx

    data = _bytes(path)
    return from_onnx(data), data


class _Runtime:
    """onnxruntime on the ONNX bytes: logits for flat float32 inputs."""

    def __init__(self, data: bytes):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        inp = self.sess.get_inputs()[0]
        self.name = inp.name
        self.shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        self.dtype = np.float64 if "double" in inp.type else np.float32

    def __call__(self, x: Array) -> Array:
        out = self.sess.run(None, {self.name: np.asarray(x, dtype=self.dtype).reshape(self.shape)})[0]
        return np.asarray(out, dtype=np.float64).ravel()


def replay(onnx_data: bytes, x: Array, prop: Property) -> tuple[bool, Array]:
    """Whether ``x`` (flat) is a counterexample of ``prop`` under onnxruntime: inside a case's box and
    satisfying one of its disjuncts on the runtime's outputs. Returns (confirmed, outputs)."""
    y = _Runtime(onnx_data)(x)
    for lo, hi, spec in prop.cases:
        if np.all(x >= lo) and np.all(x <= hi) and spec.holds(y[None])[0].any():
            return True, y
    return False, y


def _as_float32_inside(x: Array, lo: Array, hi: Array) -> Array:
    """float32 values inside [lo, hi] as close to x as float32 allows (what is written and replayed)."""
    x32 = np.clip(x, lo, hi).astype(np.float32)
    up = x32.astype(np.float64) > hi
    x32[up] = np.nextafter(x32[up], np.float32(-np.inf))
    dn = x32.astype(np.float64) < lo
    x32[dn] = np.nextafter(x32[dn], np.float32(np.inf))
    return x32.astype(np.float64)


def _robustness_label(spec: Spec) -> int | None:
    """The label when every disjunct is one row ``y_k - y_label (<=|<) 0``-shaped (a robustness
    property, in either orientation of the row), else None."""
    label = None
    for g in range(spec.n_groups):
        r = np.flatnonzero(spec.group == g)
        if len(r) != 1 or spec.h0[r[0]] != 0.0:
            return None
        h = spec.H[r[0]]
        pos, neg = np.flatnonzero(h == 1.0), np.flatnonzero(h == -1.0)
        if len(pos) != 1 or len(neg) != 1 or np.count_nonzero(h) != 2:
            return None
        # Unsafe when h @ y <= 0: y_pos <= y_neg; the label is the side that must stay larger.
        lab = int(pos[0])
        if label is not None and lab != label:
            return None
        label = lab
    return label


@dataclass(frozen=True)
class InstanceResult:
    """One instance: ``result`` (sat, unsat, timeout, unknown), ``seconds``, the counterexample
    ``x`` (flat) and its runtime outputs ``y`` for sat, BaB ``nodes`` and ``lp_solves``, the
    unknown ``reason``, and the proof trees' sizes."""

    result: str
    seconds: float
    x: Array | None = None
    y: Array | None = None
    nodes: int = 0
    lp_solves: int = 0
    reason: str | None = None
    tree_nodes: int = 0
    onnx: str = ""
    vnnlib: str = ""

    def to_dict(self) -> dict:
        return {"onnx": self.onnx, "vnnlib": self.vnnlib, "result": self.result, "seconds": self.seconds,
                "nodes": self.nodes, "lp_solves": self.lp_solves, "reason": self.reason,
                "tree_nodes": self.tree_nodes, "nodes_per_second": self.nodes / self.seconds if self.seconds else 0.0}


def run_instance(onnx_path: str | Path, vnnlib_path: str | Path, timeout: float, *,
                 options: BabOptions = VNNCOMP_OPTIONS) -> InstanceResult:
    """Decide one instance within ``timeout`` seconds (see the module docstring)."""
    from polylens.lenses.verify.attack import pgd_attack

    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ParameterError(f"The 'timeout' parameter of vnncomp must be a positive number. Got {timeout!r} instead.")
    t0 = time.monotonic()
    budget = Budget(float(timeout))
    net, data = load_onnx(onnx_path)
    prop = read_vnnlib(_resolve(vnnlib_path))
    if prop.n_inputs != net.input_dim or prop.n_outputs != net.n_classes:
        raise ParameterError(f"The property has {prop.n_inputs} inputs and {prop.n_outputs} outputs; the network has "
                             f"{net.input_dim} and {net.n_classes}.")
    nodes = solves = tree_nodes = 0
    reasons = []
    names = dict(onnx=str(onnx_path), vnnlib=str(vnnlib_path))

    def sat(x):
        x32 = _as_float32_inside(x, lo, hi)
        ok, y = replay(data, x32, prop)
        return (x32, y) if ok else None

    for lo, hi, spec in prop.cases:
        label = _robustness_label(spec)

        def attack(starts: Array, lo=lo, hi=hi, label=label) -> Array | None:
            if label is None:
                return None
            r = pgd_attack(net, np.clip(starts, lo, hi), np.full(len(starts), label), np.broadcast_to(lo, starts.shape),
                           np.broadcast_to(hi, starts.shape), steps=40, restarts=2)
            for i in np.flatnonzero(r.found):
                if sat(r.x[i]) is not None:
                    return r.x[i]
            return None

        parts = disjuncts(spec)
        results = branch_and_bound_many(net, np.repeat(lo[None], len(parts), 0), np.repeat(hi[None], len(parts), 0),
                                        parts, options=options, budget=budget,
                                        attack=lambda p, starts: attack(starts), stop_when_falsified=True)
        nodes += sum(r.nodes for r in results)
        solves += sum(r.lp_solves for r in results)
        for res in sorted(results, key=lambda r: r.status != "falsified"):
            if res.status == "falsified":
                hit = sat(res.counterexample)
                if hit is not None:
                    return InstanceResult("sat", time.monotonic() - t0, hit[0], hit[1], nodes, solves, **names)
                reasons.append("float32")
            elif res.status == "unknown":
                if res.reason is UnknownReason.STOPPED:
                    continue
                reasons.append(str(res.reason))
                if res.reason is UnknownReason.BUDGET:
                    return InstanceResult("timeout", time.monotonic() - t0, None, None, nodes, solves, "budget",
                                          **names)
            else:
                tree_nodes += res.tree.n_nodes
    if reasons:
        return InstanceResult("unknown", time.monotonic() - t0, None, None, nodes, solves, reasons[0], **names)
    return InstanceResult("unsat", time.monotonic() - t0, None, None, nodes, solves, None, tree_nodes, **names)


def disjuncts(spec: Spec) -> list[Spec]:
    """The property's disjuncts as separate specifications (one group each) when every disjunct has
    the same number of rows, else ``[spec]``. The property holds iff each disjunct is empty, and a
    search per disjunct splits the neurons that matter to it: on mnistfc's robustness properties
    (nine disjuncts, one per other class) one joint tree must refine every region until all nine are
    settled there, which costs far more nodes than nine trees."""
    counts = np.bincount(spec.group, minlength=spec.n_groups)
    if spec.n_groups == 1 or np.any(counts != counts[0]):
        return [spec]
    return [Spec(spec.H[spec.group == g], spec.h0[spec.group == g], np.zeros(int(counts[0]), dtype=int), spec.strict)
            for g in range(spec.n_groups)]


def write_result(path: str | Path, r: InstanceResult) -> Path:
    """The competition's result file: the verdict on the first line, then for sat the counterexample."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = r.result + "\n"
    if r.result == "sat":
        text += format_counterexample(r.x, r.y)
    p.write_text(text)
    return p


def run_instances(csv_path: str | Path, root: str | Path, out: str | Path, *, options: BabOptions = VNNCOMP_OPTIONS,
                  timeout_scale: float = 1.0, limit: int | None = None,
                  progress: Callable[[int, int, InstanceResult], None] | None = None) -> list[InstanceResult]:
    """Every row (onnx, vnnlib, timeout) of an instances CSV, paths relative to ``root``: one result
    file per instance in ``out`` (``<onnx stem>_<vnnlib stem>.txt``) and ``out/summary.csv``.
    ``timeout_scale`` multiplies each timeout; ``limit``: only the first rows."""
    root, out = Path(root), Path(out)
    try:
        rows = [r for r in csv.reader(Path(csv_path).read_text().splitlines()) if r and any(c.strip() for c in r)]
    except OSError as e:
        raise DataError(f"Cannot read the instances CSV {str(csv_path)!r}: {e.strerror or e}.") from None
    if any(len(r) < 3 for r in rows):
        raise DataError(f"Every row of {str(csv_path)!r} must read onnx,vnnlib,timeout.")
    if limit is not None:
        rows = rows[:limit]
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for k, (onnx, vnnlib, timeout, *_) in enumerate(rows):
        try:
            t = float(timeout) * timeout_scale
        except ValueError:
            raise DataError(f"The timeout {timeout!r} in {str(csv_path)!r} is not a number.") from None
        r = run_instance(root / onnx.strip(), root / vnnlib.strip(), t, options=options)
        r = InstanceResult(r.result, r.seconds, r.x, r.y, r.nodes, r.lp_solves, r.reason, r.tree_nodes,
                           onnx.strip(), vnnlib.strip())
        write_result(out / f"{_stem(onnx)}_{_stem(vnnlib)}.txt", r)
        results.append(r)
        if progress:
            progress(k + 1, len(rows), r)
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["onnx", "vnnlib", "result", "seconds", "nodes", "lp_solves", "reason"])
        for r in results:
            w.writerow([r.onnx, r.vnnlib, r.result, f"{r.seconds:.3f}", r.nodes, r.lp_solves, r.reason or ""])
    return results


def _stem(name: str) -> str:
    n = Path(name.strip()).name
    for suf in (".gz", ".onnx", ".vnnlib"):
        if n.endswith(suf):
            n = n[: -len(suf)]
    return n
