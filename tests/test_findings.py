"""The findings lens: each claim's verdict follows its stated rule (on made-up sweeps where the answer
is known, on both sides of every threshold), the lens on the bundled seed measures every claim and
agrees with the sweep it read, a report reuses the lenses that ran before it, and the sweep of names
over training seeds is reproducible and matches the bundled model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polylens.lenses.base import RunContext
from polylens.lenses.findings import claims as C
from polylens.lenses.findings.names_sweep import BUNDLED_SWEEP, load_bundled_sweep, name_sweep
from polylens.lenses.verify.sweep import RATES, RateTable
from polylens.nn.model import load_model


def summary(eps, clean, verified, lp_classifier=None, attack=None, n=100):
    """A sweep summary where every digit of 10 has ``n`` images and, at eps[i], rate values given per
    digit (``verified[c][i]``; scalars broadcast); clean, LP classifier and attack likewise."""
    E, Cn = len(eps), 10

    def grid(v):
        a = np.broadcast_to(np.asarray(v, dtype=float), (Cn, E)) if np.ndim(v) != 1 else np.tile(v, (Cn, 1))
        return np.rint(np.asarray(a) * n).astype(np.int64)

    parts = {"clean": grid(clean), "lp": grid(verified), "ibp": grid(0.0), "crown": grid(0.0),
             "attack": grid(verified if attack is None else attack), "unknown": grid(0.0),
             "lp_classifier": grid(clean if lp_classifier is None else lp_classifier), "bab": grid(verified)}
    dc = np.stack([parts[r] for r in RATES], axis=-1)              # (C, E, R)
    dn = np.full((Cn, E), n, np.int64)
    return RateTable(tuple(eps), RATES, dc.sum(axis=0), dn.sum(axis=0), dc, dn).to_dict()


EPS = (0.0, 0.01, 0.02)


@pytest.mark.parametrize("verified, verdict", [(0.78, C.Verdict.HOLDS), (0.6, C.Verdict.PARTLY),
                                               (0.3, C.Verdict.DOES_NOT_HOLD)])
def test_verified_claim_follows_its_thresholds(verified, verdict):
    """Clean 0.8: a verified rate of 0.78 at every small radius holds (within 5 points), 0.6 is partly
    (above half of clean) and 0.3 does not hold."""
    s = summary(EPS, 0.8, [0.8, verified, verified])
    c = C.claim_verified(s)
    assert c.verdict is verdict and c.figure == "findings-accuracy"
    assert c.data["clean"] == pytest.approx(0.8)


def test_lp_classifier_claim_is_not_the_verified_claim():
    """A sweep whose LP classifier keeps clean accuracy while almost nothing is verified: the LP
    classifier claim holds and the verified claim does not; without the LP classifier it is not measured."""
    s = summary(EPS, 0.8, [0.8, 0.1, 0.05], lp_classifier=[0.8, 0.79, 0.77])
    assert C.claim_lp_classifier(s).verdict is C.Verdict.HOLDS
    assert C.claim_verified(s).verdict is C.Verdict.DOES_NOT_HOLD
    assert C.claim_lp_classifier(s, ran=False).verdict is C.Verdict.NOT_MEASURED
    assert C.claim_lp_classifier(None).verdict is C.Verdict.NOT_MEASURED


def test_digit_claims_read_the_right_digit():
    """Digit 1 verified at 0.9 at eps 0.02 holds; verified 0.2 with an attack bound of 0.9 is partly;
    digit 4 lowest of all holds, in the middle does not."""
    v = np.full((10, 3), 0.5)
    v[1] = [1.0, 0.95, 0.9]
    v[4] = [1.0, 0.1, 0.05]
    s = summary(EPS, 1.0, v)
    assert C.claim_digit_one(s).verdict is C.Verdict.HOLDS and C.claim_digit_one(s).data["rank"] == 1
    assert C.claim_digit_four(s).verdict is C.Verdict.HOLDS and C.claim_digit_four(s).data["rank"] == 1
    v2 = v.copy()
    v2[1] = [1.0, 0.3, 0.2]
    a = v2.copy()
    a[1] = [1.0, 0.95, 0.9]
    assert C.claim_digit_one(summary(EPS, 1.0, v2, attack=a)).verdict is C.Verdict.PARTLY
    v3 = np.tile(np.linspace(0.1, 0.9, 10)[:, None], (1, 3))
    v3[4] = 0.95
    assert C.claim_digit_four(summary(EPS, 1.0, v3)).verdict is C.Verdict.DOES_NOT_HOLD
    assert C.claim_digit_one(summary((0.0, 0.01), 1.0, 0.5)).verdict is C.Verdict.NOT_MEASURED


@pytest.fixture(scope="module")
def seed_findings():
    from polylens.data.labelled import Data
    from polylens.lenses import get_lens

    m = load_model("seed")
    lens = get_lens("findings")
    data = Data.of_model(m).head(200)
    return m, data, lens.run(m, data, lens.make_options({"eps": (0.0, 0.005, 0.02), "per_digit": 4, "workers": 1}),
                             RunContext())


def test_every_claim_is_measured_on_the_seed_and_matches_its_sweep(seed_findings):
    """On the bundled seed all seven claims are measured (none 'not measured'), each with a figure and a
    rule, and the digit-1 verdict is the rule applied to the sweep's own digit-1 rate."""
    m, data, f = seed_findings
    assert [c.key for c in f.claims] == ["verified", "lp-classifier", "digit-1", "digit-4", "signatures", "names",
                                         "digit-0"]
    for c in f.claims:
        assert c.verdict is not C.Verdict.NOT_MEASURED, c
        assert c.figure and c.rule and c.measurement
    r = f.summary["per_digit"]["1"]["0.02"]
    d1 = f.claim("digit-1")
    want = (C.Verdict.HOLDS if r["lp"]["value"] >= C.HIGH else
            C.Verdict.PARTLY if r["attack"]["value"] >= C.HIGH else C.Verdict.DOES_NOT_HOLD)
    assert d1.verdict is want and d1.data["verified"] == r["lp"]
    doc = json.loads(json.dumps(f.to_dict(), allow_nan=False))
    assert len(doc["claims"]) == 7 and doc["name_sweep"]["runs"]


def test_the_digit0_terms_are_the_formula_of_the_trace_lens(seed_findings):
    """The digit-0 claim's flows are the layer-1 terms of digit_formulas for digit 0, and its neurons are
    the best template matches of the name suggestions."""
    from polylens.lenses.discover.naming import suggest_names
    from polylens.lenses.discover.trace import digit_formulas

    m, data, f = seed_findings
    f0 = next(x for x in digit_formulas(m, data.x, data.y) if x.digit == 0)
    by_j = {t.j: t for t in f0.terms}
    match = C.template_matches(suggest_names(m, data.x))
    for row in f.claim("digit-0").data["terms"]:
        j = match[row["template"]]["j"]
        assert row["neuron"] == f"L1.n{j}"
        assert row["contribution"] == pytest.approx(by_j[j].contribution)


def test_findings_reuse_earlier_results_instead_of_running_them():
    """Given the robustness and signatures results of an earlier lens (as a report passes them), the
    findings lens reads those and runs no sweep: a stand-in whose rates are known comes back verbatim."""
    from polylens.data.labelled import Data
    from polylens.lenses import get_lens

    class FakeRobustness:
        summary = summary(EPS, 0.9, 0.88)
        lp_classifier = True

    class FakeSignatures:
        digits = tuple(range(10))
        distinct_per_digit = np.full(10, 0.9)
        distinct_accuracy = 0.9

    m = load_model("seed")
    lens = get_lens("findings")
    data = Data.of_model(m).head(50)
    f = lens.run(m, data, lens.make_options(), RunContext(earlier={"robustness": FakeRobustness(),
                                                                   "signatures": FakeSignatures()}))
    assert f.summary is FakeRobustness.summary
    assert f.claim("verified").verdict is C.Verdict.HOLDS
    assert f.claim("signatures").verdict is C.Verdict.HOLDS


def test_name_sweep_is_reproducible_and_run_zero_is_the_bundled_seed():
    """Training the seed architecture with seed 0 names layer 1 exactly as the bundled seed is named
    (same names, same scores), and as the bundled sweep file, made in another process, records it."""
    from polylens.data.labelled import Data
    from polylens.lenses.discover.naming import suggest_names

    a = name_sweep([0])
    m = load_model("seed")
    x = Data.of_model(m).x
    want = [s.name for s in suggest_names(m, x) if s.layer == 1]
    assert list(a.runs[0].names) == want
    assert a.runs[0].accuracy == pytest.approx(m.card.test_accuracy)
    bundled = load_bundled_sweep()
    assert bundled is not None, f"{BUNDLED_SWEEP} is missing"
    r0 = next(r for r in bundled.runs if r.seed == 0)
    # The file keeps six decimals: a score near a rounding edge may differ by one unit there.
    assert r0.names == a.runs[0].names and r0.scores == pytest.approx(a.runs[0].scores, abs=2e-6)
    assert len(bundled.runs) >= 20 and sorted(r.seed for r in bundled.runs) == list(range(len(bundled.runs)))
