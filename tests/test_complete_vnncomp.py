"""VNN-LIB 1.0 round trips and the ``polylens vnncomp`` contract (result files, counterexamples that replay)."""

from __future__ import annotations

import csv
import glob
import json
import subprocess
import sys
import os
from pathlib import Path

import numpy as np
import pytest

from polylens.lenses.verify.bab import robustness_spec
from polylens.lenses.verify.vnncomp import replay
from polylens.lenses.verify.vnnlib import (Property, parse_counterexample, parse_vnnlib, read_vnnlib,
                                           write_vnnlib)
from polylens.nn import Network
from polylens.nn.onnx_io import to_onnx

# ../shared beside the checkout (POLYLENS_SHARED names another place, e.g. for a git worktree).
SHARED = Path(os.environ.get("POLYLENS_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")) \
    / "vnncomp2021" / "mnistfc"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/vnncomp2021 is absent (VNN-COMP 2021 mnistfc)")


@needs_shared
def test_vnnlib_round_trip_on_the_2021_files():
    """Every 2021 mnistfc property reads as one 784-input box in [0, 1] with nine disjuncts
    ``y_k >= y_label`` (label as in results_2021.csv), and writing it and reading it back gives an
    equal property."""
    labels = {r["vnnlib"]: int(r["true_label"]) for r in csv.DictReader(open(SHARED / "results_2021.csv"))}
    files = sorted(glob.glob(str(SHARED / "prop_*.vnnlib.gz")))
    assert len(files) == 30
    for f in files:
        p = read_vnnlib(f)
        assert (p.n_inputs, p.n_outputs, len(p.cases)) == (784, 10, 1)
        lo, hi, spec = p.cases[0]
        assert np.all(0 <= lo) and np.all(lo <= hi) and np.all(hi <= 1)
        eps = float(Path(f).name.split("_")[2][:4])
        assert np.all(hi - lo <= 2 * eps + 1e-6)
        y = labels[Path(f).name[:-3]]
        assert spec.n_groups == 9 and np.all(spec.H[:, y] == 1.0) and not spec.strict
        assert parse_vnnlib(write_vnnlib(p)).equals(p)


def test_vnnlib_general_formulas():
    """Disjunctions of conjunctions with sums and scaled terms read into the right rows; a mixed
    input/output comparison is refused in one clear error."""
    text = """(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)
    (assert (>= X_0 -1)) (assert (<= X_0 1)) (assert (>= X_1 0)) (assert (<= X_1 (* 2 0.5)))
    (assert (or (and (>= Y_0 3) (<= (+ Y_0 (* -2 Y_1)) 1)) (and (> Y_1 Y_0))))"""
    p = parse_vnnlib(text)
    lo, hi, spec = p.cases[0]
    assert lo.tolist() == [-1, 0] and hi.tolist() == [1, 1] and spec.n_groups == 2
    # y = (4, 2): first disjunct holds (4 >= 3, 4 - 4 <= 1); y = (0, 1): second holds.
    assert spec.holds(np.array([[4.0, 2.0]]))[0].tolist() == [True, False]
    assert spec.holds(np.array([[0.0, 1.0]]))[0].tolist() == [False, True]
    assert parse_vnnlib(write_vnnlib(p)).equals(p)
    from polylens.errors import ParameterError
    with pytest.raises(ParameterError):
        parse_vnnlib(text.replace("(>= Y_0 3)", "(>= Y_0 X_0)"))


def _fixture(tmp_path: Path, act: str, seed: int):
    """A small network (ONNX, float32) and a robustness property around a point, written by the test."""
    rng = np.random.default_rng(seed)
    net = Network.from_arrays([rng.normal(size=(8, 5)), rng.normal(size=(8, 8)), rng.normal(size=(3, 8))],
                              [0.3 * rng.normal(size=8), 0.3 * rng.normal(size=8), 0.3 * rng.normal(size=3)], act)
    onnx_path = tmp_path / f"net_{act}_{seed}.onnx"
    to_onnx(net, onnx_path)
    from polylens.nn.onnx_io import from_onnx
    net32 = from_onnx(str(onnx_path))
    x = rng.random(5)
    y = int(net32.predict(x[None])[0])
    eps = (0.02, 0.2)[seed % 2]
    spec = robustness_spec(y, 3)
    # VNN-LIB's unsafe set: y_k >= y_label, i.e. (e_label - e_k) @ y <= 0, not strict.
    from polylens.lenses.verify.bab import Spec
    vspec = Spec(spec.H, spec.h0, spec.group, strict=False)
    prop = Property(5, 3, ((np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1), vspec),))
    vpath = tmp_path / f"prop_{act}_{seed}.vnnlib"
    vpath.write_text(write_vnnlib(prop))
    return onnx_path, vpath, prop


def _result(path: Path):
    lines = path.read_text().splitlines()
    return lines[0], "\n".join(lines[1:])


def test_vnncomp_instances_and_replay(tmp_path):
    """On small relu, GELU and sigmoid networks made here, every result is sat, unsat or unknown,
    both verdicts occur, and every sat file's counterexample replays in onnxruntime (inside the box,
    violating the property); the CSV form writes one file per row and a summary."""
    rows, seen = [], set()
    for act in ("relu", "gelu", "sigmoid"):
        for seed in range(4):
            o, v, prop = _fixture(tmp_path, act, seed)
            rows.append((o.name, v.name, 5))
    with open(tmp_path / "instances.csv", "w") as f:
        csv.writer(f).writerows(rows)
    from polylens.cli import main
    assert main(["vnncomp", "--instances", str(tmp_path / "instances.csv"), "--out", str(tmp_path / "out")]) in (0, None)
    summary = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert len(summary) == len(rows)
    for (o, v, _), s in zip(rows, summary):
        res, cex = _result(tmp_path / "out" / f"{Path(o).stem}_{Path(v).stem}.txt")
        assert res == s["result"] and res in ("sat", "unsat", "unknown", "timeout")
        seen.add(res)
        if res == "sat":
            x, y = parse_counterexample(cex)
            prop = read_vnnlib(tmp_path / v)
            ok, y_rt = replay((tmp_path / o).read_bytes(), x, prop)
            assert ok and np.allclose(y, y_rt)
    assert {"sat", "unsat"} <= seen


def test_vnncomp_json_is_one_document(tmp_path):
    """Both forms of ``polylens vnncomp --json`` print exactly one JSON document on stdout and exit 0,
    and bad input is one error line with exit status 2 (the stdout contract, on files made here)."""
    o, v, _ = _fixture(tmp_path, "relu", 1)
    (tmp_path / "i.csv").write_text(f"{o.name},{v.name},5\n")
    for args in ([str(o), str(v), "--timeout", "5", "--result", str(tmp_path / "r.txt")],
                 ["--instances", str(tmp_path / "i.csv"), "--out", str(tmp_path / "o")]):
        p = subprocess.run([sys.executable, "-m", "polylens", "vnncomp", *args, "--json"], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert isinstance(json.loads(p.stdout), dict)
    p = subprocess.run([sys.executable, "-m", "polylens", "vnncomp", str(o)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.strip().splitlines()) == 1


@needs_shared
def test_vnncomp_one_instance_contract(tmp_path):
    """``polylens vnncomp ONNX VNNLIB --timeout S --result FILE`` on gzipped 2021 files: exit 0, the
    result file's first line is a verdict, a sat counterexample replays in onnxruntime, and the
    verdicts agree with the competition's ground truth where both are decided."""
    truth = {(r["onnx"], r["vnnlib"]): r["ground_truth"] for r in csv.DictReader(open(SHARED / "results_2021.csv"))}
    for onnx, prop in (("mnist-net_256x2.onnx", "prop_1_0.05.vnnlib"), ("mnist-net_256x2.onnx", "prop_2_0.03.vnnlib")):
        out = tmp_path / f"{prop}.txt"
        p = subprocess.run([sys.executable, "-m", "polylens", "vnncomp", str(SHARED / (onnx + ".gz")),
                            str(SHARED / (prop + ".gz")), "--timeout", "8", "--result", str(out), "--json"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        res, cex = _result(out)
        assert res == doc["result"] and res in ("sat", "unsat", "timeout", "unknown")
        if res in ("sat", "unsat"):
            assert res == truth[(onnx, prop)]
        if res == "sat":
            x, _ = parse_counterexample(cex)
            assert replay(__import__("gzip").decompress((SHARED / (onnx + ".gz")).read_bytes()), x,
                          read_vnnlib(SHARED / (prop + ".gz")))[0]
