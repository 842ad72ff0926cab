"""Robustness sweeps: the summary's counts and Wilson intervals are consistent with the rows; rows are
typed values that round-trip through the store's JSON; the rate table keeps close radii apart; a sweep
killed with SIGKILL in the middle and started again ends with exactly the rows of an uninterrupted
run (none lost, none duplicated); the verify command's contract and its error paths hold."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from polylens.lenses.verify.certify import DecidedBy, Status
from polylens.lenses.verify.sweep import (MAX_CHUNK, MAX_CHUNK_NEURONS, RateTable, SweepRow, auto_chunk, radius_key,
                                         rate_table, run_sweep, summarize, wilson)

POLYLENS = [sys.executable, "-m", "polylens"]


def _run(args, **kw):
    return subprocess.run(POLYLENS + args, capture_output=True, text=True, timeout=600, **kw)


def test_wilson_interval_contains_rate_and_shrinks():
    """The Wilson interval contains the observed rate, stays in [0, 1], and narrows as n grows."""
    for k, n in [(0, 10), (3, 10), (10, 10), (50, 100)]:
        lo, hi = wilson(k, n)
        assert 0 <= lo <= k / n <= hi <= 1
    assert np.diff(wilson(30, 100)) > np.diff(wilson(300, 1000))


def test_summary_counts_match_rows():
    """Every rate in the summary equals its count over the rows of that eps and digit."""
    from polylens.nn.model import load_model, model_split

    m = load_model("seed")
    s = model_split(m)
    res = run_sweep(m.network, s.x_test[:80], s.y_test[:80], [0.0, 0.01], workers=1)
    assert len(res.rows) == 160
    for e in res.eps:
        rows = [r for r in res.rows if r.eps == e]
        o = res.summary["overall"][f"{e:g}"]
        assert o["lp"]["count"] == sum(r.status is Status.VERIFIED for r in rows)
        assert o["attack"]["count"] == sum(r.status is not Status.FALSIFIED for r in rows)
        assert o["ibp"]["count"] <= o["crown"]["count"] <= o["lp"]["count"] <= o["attack"]["count"] <= 80
        per = res.summary["per_digit"]
        assert sum(per[str(c)][f"{e:g}"]["lp"]["count"] for c in range(10)) == o["lp"]["count"]
        assert sum(per[str(c)][f"{e:g}"]["lp"]["n"] for c in range(10)) == 80


def test_rows_are_typed_and_round_trip_through_the_store_json():
    """Rows are SweepRow values with enum statuses; every row's JSON reads back into an equal row (the
    store's path on resume); rows settled at a smaller radius render decided_by "eps <radius>"; the
    table from rows equals the table from their JSON."""
    from polylens.nn.model import load_model, model_split

    m = load_model("seed")
    s = model_split(m)
    res = run_sweep(m.network, s.x_test[:40], s.y_test[:40], [0.0, 0.02, 0.05], workers=1, with_lp_classifier=False)
    assert all(isinstance(r, SweepRow) and isinstance(r.status, Status) for r in res.rows)
    inherited = [r for r in res.rows if r.decided_by is DecidedBy.INHERITED]
    assert inherited and all(r.status is Status.FALSIFIED and r.inherited_from < r.eps for r in inherited)
    assert all(r.to_dict()["decided_by"] == f"eps {radius_key(r.inherited_from)}" for r in inherited)
    for r in res.rows:
        d = r.to_dict()
        assert SweepRow.from_dict(json.loads(json.dumps(d))).to_dict() == d
        assert r["status"] == d["status"] and r.get("lp_class") is None  # the dict view of the stopgap
    dicts = [r.to_dict() for r in res.rows]
    assert summarize(dicts, res.eps, 10) == res.summary == rate_table(res.rows, res.eps, 10).to_dict()


def test_rate_table_keys_keep_close_radii_apart():
    """The usual radii keep today's keys ("0", "0.005", "0.01", ...); 0.01 and 0.010000001 get two keys
    and two columns of the table, each indexed by its float radius."""
    assert [radius_key(e) for e in (0, 0.005, 0.01, 0.02, 0.03, 0.05)] == ["0", "0.005", "0.01", "0.02", "0.03", "0.05"]
    assert radius_key(0.010000001) == "0.010000001" and radius_key(1e-05) == "1e-05"
    from polylens.nn.model import load_model, model_split

    m = load_model("seed")
    s = model_split(m)
    res = run_sweep(m.network, s.x_test[:20], s.y_test[:20], [0.01, 0.010000001, 0.3], workers=1,
                    with_lp_classifier=False)
    assert isinstance(res.table, RateTable)
    assert list(res.summary["overall"]) == ["0.01", "0.010000001", "0.3"]
    for e in res.eps:
        rows = [r for r in res.rows if r.eps == e]
        assert len(rows) == 20 and res.table.rate("lp", e).count == sum(r.status is Status.VERIFIED for r in rows)
        assert res.table.rate("attack", e).n == 20 == sum(res.table.rate("lp", e, c).n for c in range(10))
    assert res.table.rate("lp", 0.3).count < res.table.rate("lp", 0.01).count


def test_sweep_killed_and_resumed_equals_uninterrupted(tmp_path):
    """SIGKILL in the middle of `polylens verify --out D`, then the same command again: the final rows are
    those of an uninterrupted run, with every unit present once."""
    args = ["verify", "seed", "--eps", "0,0.01,0.02", "--n", "200", "--workers", "1", "--json", "--no-lp-classifier"]
    ref = _run(args + ["--out", str(tmp_path / "ref")])
    assert ref.returncode == 0, ref.stderr
    want = json.loads(ref.stdout)["results"]

    out = tmp_path / "killed"
    proc = subprocess.Popen(POLYLENS + args + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "sweep.sqlite"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline:
        if db.exists():
            try:
                done = sqlite3.connect(str(db), timeout=1).execute("SELECT COUNT(*) FROM units").fetchone()[0]
            except sqlite3.Error:
                done = 0
            if done > 0:
                break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < done < 600, f"expected a partial sweep, found {done} units"
    again = _run(args + ["--out", str(out)])
    assert again.returncode == 0, again.stderr
    got = json.loads(again.stdout)["results"]
    assert got == want
    con = sqlite3.connect(str(db))
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM units").fetchone() == (600, 600)


def test_chunking_changes_no_verdict():
    """How images are grouped into jobs only batches the work: a sweep in jobs of 7 and one in the
    default jobs give every unit the same status, deciding stage and LP class; the default stays
    within its limits and gives every worker several jobs."""
    from polylens.nn.model import load_model, model_split

    m = load_model("seed")
    s = model_split(m)
    x, y = s.x_test[:30], s.y_test[:30]
    a = run_sweep(m.network, x, y, (0.01, 0.03), workers=1, chunk=7)
    b = run_sweep(m.network, x, y, (0.01, 0.03), workers=1)
    assert [(r.index, r.eps, r.status, r.decided_by, r.lp_class) for r in a.rows] == \
        [(r.index, r.eps, r.status, r.decided_by, r.lp_class) for r in b.rows]
    for n in (1, 5, 30, 2000, 10**6):
        for w in (1, 2, 16):
            for h in (6, 512, 10**5):
                c = auto_chunk(n, w, h)
                assert 1 <= c <= MAX_CHUNK and (c == 1 or c * h <= MAX_CHUNK_NEURONS)
                if n >= 16 * w:
                    assert -(-n // c) >= 2 * w  # every worker gets at least two jobs


def test_verify_json_contract_and_counterexamples():
    """`--json` prints {"summary", "results"}; one row per (image, eps) with index, eps, label, prediction,
    status; every falsified row (misclassified images included) carries a counterexample of input width."""
    r = _run(["verify", "seed", "--eps", "0,0.02", "--n", "40", "--json", "--workers", "1"])
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) == {"summary", "results"} and len(d["results"]) == 80
    for row in d["results"]:
        assert {"index", "eps", "label", "prediction", "status"} <= set(row)
        assert row["status"] in ("verified", "falsified", "unknown")
        if row["status"] == "falsified":
            assert len(row["counterexample"]) == 49
        if row["prediction"] != row["label"]:
            assert row["status"] == "falsified"
    assert {r["index"] for r in d["results"]} == set(range(40))


@pytest.mark.parametrize("case", ["eps_high", "eps_neg", "x_range", "label_range", "missing", "bad_npz", "width"])
def test_verify_bad_input_one_line_exit_2(tmp_path, case):
    """Bad inputs to verify give exit code 2 and exactly one line on stderr."""
    x = np.full((3, 49), 0.5)
    y = np.array([1, 2, 3])
    path = tmp_path / "d.npz"
    args = ["verify", "seed", "--n", "3", "--workers", "1"]
    if case == "eps_high":
        args += ["--eps", "0,1.5"]
    elif case == "eps_neg":
        args += ["--eps", "-0.1"]
    else:
        if case == "x_range":
            x[0, 0] = 1.2
        if case == "label_range":
            y[0] = 12
        if case == "width":
            x = np.full((3, 50), 0.5)
        if case == "bad_npz":
            path.write_bytes(b"not a zip")
        elif case != "missing":
            np.savez(path, x=x, y=y)
        args += ["--data", str(path), "--eps", "0.01"]
    r = _run(args)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("polylens: error:"), r.stderr
