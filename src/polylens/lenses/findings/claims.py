"""The seed's claims, each measured and judged by a stated rule.

Every claim of the seed presentation becomes a :class:`Claim`: the claim in one line, the quantity
that measures it (named precisely: the LP classifier's accuracy is not the verified rate), the
measured figures, a :class:`Verdict` and the rule that gave it. The rules and their thresholds are
constants of this module, so a verdict can be argued with:

==========================  =========================================================================
claim                       rule (``HOLDS`` / ``PARTLY``; otherwise ``DOES_NOT_HOLD``)
==========================  =========================================================================
verified accuracy           verified rate at every eps <= 0.02 within :data:`CLOSE` (5 points) of the
                            clean accuracy / at least :data:`HALF` of it
LP classifier               LP-classifier accuracy at every eps <= 0.02 within :data:`CLOSE` of clean
                            accuracy / within :data:`NEAR` (15 points)
digit 1 robust at 0.02      digit 1's verified rate at 0.02 >= :data:`HIGH` (0.8) / its attack bound
                            (images no attack flips) >= :data:`HIGH` but not proven
digit 4 degrades quickly    digit 4's mean verified rate over the radii > 0 among the
                            :data:`LOWEST` (3) lowest of the digits / below the median digit
distinct signatures         nearest-mean accuracy of signatures >= :data:`DISTINCT` (0.8) overall and
                            above chance (1 / digits) for every digit / >= 0.5 overall
Frame, Spine, Belt          all three named among layer 1's suggestions / one or two of them
digit-0 formula             the layer-1 neurons that best match Frame, anti-Spine and anti-Belt (the
                            formula's polarity) all push logit 0 up with the formula's activation
                            signs, and each is named after its template / two of the three terms
                            hold, one of them on a neuron named after its template
==========================  =========================================================================

A claim whose ingredients were not measured (a lens skipped, a model that is not a 10-class 7x7
classifier) gets ``NOT_MEASURED`` with the reason, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["CLOSE", "Claim", "Verdict", "claim_digit_formula", "claim_digit_one", "claim_digit_four",
           "claim_lp_classifier", "claim_names", "claim_signatures", "claim_verified", "template_matches"]

#: "Keeps high accuracy": within 5 points of the clean accuracy.
CLOSE = 0.05
#: "Partly": within 15 points.
NEAR = 0.15
#: "Partly" for verified accuracy: at least half the clean accuracy.
HALF = 0.5
#: "Highly robust": a verified rate of at least 0.8.
HIGH = 0.8
#: "Degrades more quickly": among the 3 lowest digits.
LOWEST = 3
#: "Distinctive": signatures classify their digit by nearest mean with accuracy >= 0.8.
DISTINCT = 0.8
#: Radii up to this one are "eps <= 0.02".
SMALL_EPS = 0.02


class Verdict(str, Enum):
    HOLDS = "holds"
    PARTLY = "partly"
    DOES_NOT_HOLD = "does not hold"
    NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Claim:
    """One claim: ``key`` (stable id), ``claim`` (the seed's words, one line), ``measure`` (the
    quantity that tests it), ``measurement`` (the measured figures, one line), ``verdict``, ``rule``
    (the rule that gave the verdict), ``figure`` (stem of the figure that shows it, or "") and
    ``data`` (the numbers, JSON-ready)."""

    key: str
    claim: str
    measure: str
    measurement: str
    verdict: Verdict
    rule: str
    figure: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"key": self.key, "claim": self.claim, "measure": self.measure, "measurement": self.measurement,
                "verdict": self.verdict.value, "rule": self.rule, "figure": self.figure, "data": dict(self.data)}


def _unmeasured(key: str, claim: str, measure: str, why: str, figure: str = "") -> Claim:
    return Claim(key, claim, measure, why, Verdict.NOT_MEASURED, "", figure)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def verified_rate(summary: Mapping) -> str:
    """The sweep's rate of images proven robust: the last rung of the cumulative ladder it has
    (``bab`` where branch and bound ran after the LPs, else ``lp``)."""
    return "bab" if "bab" in summary.get("rates", ()) else "lp"


def _rate(summary: Mapping, eps_key: str, rate: str, digit: int | None = None) -> dict | None:
    if rate == "verified":
        rate = verified_rate(summary)
    table = summary["overall"] if digit is None else summary["per_digit"].get(str(digit), {})
    return table.get(eps_key, {}).get(rate)


def _small_radii(summary: Mapping) -> list[tuple[float, str]]:
    from polylens.lenses.verify.sweep import radius_key

    return [(float(e), radius_key(float(e))) for e in summary["eps"] if 0 < float(e) <= SMALL_EPS + 1e-12]


def _ci(r: Mapping) -> str:
    return f"{_pct(r['value'])} [{_pct(r['ci'][0])}, {_pct(r['ci'][1])}]"


# ---------------------------------------------------------------------------------------------
# Robustness claims


def claim_verified(summary: Mapping | None, missing: str = "the robustness sweep did not run") -> Claim:
    """"The LP keeps high accuracy for eps <= 0.02", read as verified accuracy (the fraction of test
    images proven robust: by interval bounds, backward bounds or the LP)."""
    claim, measure = "The LP keeps high accuracy for eps <= 0.02.", \
        "verified accuracy (images proven robust) at each eps <= 0.02, against clean accuracy"
    if summary is None:
        return _unmeasured("verified", claim, measure, missing, "findings-accuracy")
    radii = _small_radii(summary)
    if not radii:
        return _unmeasured("verified", claim, measure, "the sweep has no radius in (0, 0.02]", "findings-accuracy")
    clean = _rate(summary, radii[0][1], "clean")["value"]
    ver = {k: _rate(summary, k, "verified") for _, k in radii}
    worst = min(r["value"] for r in ver.values())
    v = Verdict.HOLDS if worst >= clean - CLOSE else Verdict.PARTLY if worst >= HALF * clean else Verdict.DOES_NOT_HOLD
    text = f"clean {_pct(clean)}; verified " + ", ".join(f"{_ci(r)} at eps {k}" for k, r in ver.items())
    return Claim("verified", claim, measure, text, v,
                 f"holds if the verified rate stays within {CLOSE:.0%} of clean accuracy at every eps <= 0.02; "
                 f"partly if it stays above {HALF:.0%} of it", "findings-accuracy",
                 {"clean": clean, "verified": ver})


def claim_lp_classifier(summary: Mapping | None, ran: bool = True,
                        missing: str = "the robustness sweep did not run") -> Claim:
    """"The LP itself appears to be a good classifier": the LP classifier (the class whose worst-case
    margin over the eps-polytope is largest) scored against the labels (``ran``: whether the sweep
    computed it)."""
    claim, measure = "The LP itself appears to be a good classifier.", \
        "accuracy of the LP classifier (class with the largest worst-case margin over the polytope) at each eps <= 0.02"
    if summary is None:
        return _unmeasured("lp-classifier", claim, measure, missing, "findings-accuracy")
    if not ran:
        return _unmeasured("lp-classifier", claim, measure, "the sweep ran without the LP classifier",
                           "findings-accuracy")
    radii = _small_radii(summary)
    if not radii:
        return _unmeasured("lp-classifier", claim, measure, "the sweep has no radius in (0, 0.02]",
                           "findings-accuracy")
    clean = _rate(summary, radii[0][1], "clean")["value"]
    lpc = {k: _rate(summary, k, "lp_classifier") for _, k in radii}
    worst = min(r["value"] for r in lpc.values())
    v = Verdict.HOLDS if worst >= clean - CLOSE else Verdict.PARTLY if worst >= clean - NEAR else Verdict.DOES_NOT_HOLD
    ver = _rate(summary, radii[-1][1], "verified")
    text = (f"clean {_pct(clean)}; LP classifier " + ", ".join(f"{_ci(r)} at eps {k}" for k, r in lpc.items())
            + f" (verified at eps {radii[-1][1]}: {_pct(ver['value'])})")
    return Claim("lp-classifier", claim, measure, text, v,
                 f"holds if the LP classifier stays within {CLOSE:.0%} of clean accuracy at every eps <= 0.02; "
                 f"partly within {NEAR:.0%}", "findings-accuracy", {"clean": clean, "lp_classifier": lpc})


def _at(summary: Mapping, eps: float) -> str | None:
    from polylens.lenses.verify.sweep import radius_key

    for e in summary["eps"]:
        if abs(float(e) - eps) < 1e-12:
            return radius_key(float(e))
    return None


def claim_digit_one(summary: Mapping | None, digit: int = 1, eps: float = 0.02,
                    missing: str = "the robustness sweep did not run") -> Claim:
    """"Digit 1 remains highly robust even at eps = 0.02": its verified rate there, and the attack
    bound (images no attack flips: an upper bound on the true robust rate)."""
    claim, measure = f"Digit {digit} remains highly robust even at eps = {eps:g}.", \
        f"digit {digit}'s verified rate and attack bound at eps {eps:g}, with 95% Wilson intervals"
    if summary is None:
        return _unmeasured("digit-1", claim, measure, missing, "findings-digits")
    key = _at(summary, eps)
    if key is None or _rate(summary, key, "verified", digit) is None or not _rate(summary, key, "verified", digit)["n"]:
        return _unmeasured("digit-1", claim, measure, f"no sweep row for digit {digit} at eps {eps:g}",
                           "findings-digits")
    ver, att = _rate(summary, key, "verified", digit), _rate(summary, key, "attack", digit)
    others = [_rate(summary, key, "verified", c)["value"] for c in range(len(summary["per_digit"]))
              if c != digit and _rate(summary, key, "verified", c) and _rate(summary, key, "verified", c)["n"]]
    rank = 1 + sum(o > ver["value"] for o in others)
    v = Verdict.HOLDS if ver["value"] >= HIGH else Verdict.PARTLY if att["value"] >= HIGH else Verdict.DOES_NOT_HOLD
    text = (f"verified {_ci(ver)}, attack bound {_ci(att)} (n={ver['n']}); rank {rank} of {len(others) + 1} digits "
            f"by verified rate")
    return Claim("digit-1", claim, measure, text, v,
                 f"holds if the verified rate is >= {HIGH:.0%}; partly if only the attack bound is (robust to the "
                 "attack, not proven)", "findings-digits", {"verified": ver, "attack": att, "rank": rank})


def _mean_verified(summary: Mapping, digit: int) -> float | None:
    from polylens.lenses.verify.sweep import radius_key

    vals = [_rate(summary, radius_key(float(e)), "verified", digit) for e in summary["eps"] if float(e) > 0]
    vals = [r["value"] for r in vals if r and r["n"]]
    return float(np.mean(vals)) if vals else None


def claim_digit_four(summary: Mapping | None, digit: int = 4,
                     missing: str = "the robustness sweep did not run") -> Claim:
    """"Digit 4 degrades more quickly": its verified rate averaged over the radii > 0 (the area under
    its curve, per radius), against the other digits'."""
    claim, measure = f"Digit {digit} degrades more quickly.", \
        "mean verified rate over the radii > 0 (area under the per-digit curve), digit by digit"
    if summary is None:
        return _unmeasured("digit-4", claim, measure, missing, "findings-digits")
    if not any(float(e) > 0 for e in summary["eps"]):
        return _unmeasured("digit-4", claim, measure, "the sweep has no radius > 0", "findings-digits")
    means = {c: _mean_verified(summary, c) for c in range(len(summary["per_digit"]))}
    means = {c: m for c, m in means.items() if m is not None}
    if digit not in means:
        return _unmeasured("digit-4", claim, measure, f"no test image of digit {digit}", "findings-digits")
    order = sorted(means, key=lambda c: (means[c], c))
    rank = order.index(digit) + 1   # 1 = lowest
    median = float(np.median(list(means.values())))
    v = Verdict.HOLDS if rank <= LOWEST else Verdict.PARTLY if means[digit] < median else Verdict.DOES_NOT_HOLD
    lowest = ", ".join(f"{c} ({_pct(means[c])})" for c in order[:LOWEST])
    text = f"digit {digit}: {_pct(means[digit])}, rank {rank} from the bottom of {len(means)}; lowest: {lowest}"
    return Claim("digit-4", claim, measure, text, v,
                 f"holds if digit {digit} is among the {LOWEST} lowest digits; partly if below the median digit",
                 "findings-digits", {"mean_verified": {str(c): m for c, m in means.items()}, "rank": rank})


# ---------------------------------------------------------------------------------------------
# Signatures


def claim_signatures(sig: Any | None, missing: str = "the signatures lens did not run") -> Claim:
    """"Each digit has a distinctive constraint signature": signatures classified by the nearest
    digit mean, leave-one-out (the signatures lens's ``distinct_accuracy``)."""
    claim, measure = "Each digit has a distinctive constraint signature.", \
        "leave-one-out nearest-mean accuracy of the constraint signatures, overall and per digit"
    if sig is None:
        return _unmeasured("signatures", claim, measure, missing, "findings-signatures")
    per = np.asarray(sig.distinct_per_digit, dtype=float)
    digits = tuple(int(d) for d in sig.digits)
    ok = np.isfinite(per)
    if not np.isfinite(sig.distinct_accuracy) or not ok.any():
        return _unmeasured("signatures", claim, measure, "too few images per digit to compare signatures",
                           "findings-signatures")
    chance = 1.0 / max(len(digits), 1)
    acc = float(sig.distinct_accuracy)
    v = (Verdict.HOLDS if acc >= DISTINCT and bool(np.all(per[ok] > chance)) else
         Verdict.PARTLY if acc >= 0.5 else Verdict.DOES_NOT_HOLD)
    worst = int(np.nanargmin(per))
    text = (f"nearest-mean accuracy {_pct(acc)} (chance {_pct(chance)}); least distinct: digit {digits[worst]} "
            f"({_pct(per[worst])})")
    return Claim("signatures", claim, measure, text, v,
                 f"holds if the accuracy is >= {DISTINCT:.0%} and every digit is above chance; partly if >= 50%",
                 "findings-signatures",
                 {"accuracy": acc, "per_digit": {str(d): (None if not np.isfinite(p) else float(p))
                                                 for d, p in zip(digits, per)}})


# ---------------------------------------------------------------------------------------------
# Names and the digit-0 formula

CLAIMED = ("Frame", "Spine", "Belt")


def template_matches(suggestions: Sequence[Any]) -> dict[str, dict]:
    """For each claimed template, the layer-1 neuron that matches it best: ``{"Frame": {"j", "r",
    "name", "named"}}`` with r the signed correlation and ``named`` whether its suggested name is
    the template's (either sign)."""
    layer1 = [s for s in suggestions if s.layer == 1]
    out = {}
    for t in CLAIMED:
        s = max(layer1, key=lambda s: (abs(s.scores.get(t, 0.0)), -s.j))
        out[t] = {"j": s.j, "r": float(s.scores.get(t, 0.0)), "name": s.name,
                  "named": s.name.removeprefix("anti-") == t}
    return out


def claim_names(suggestions: Sequence[Any] | None, card_names: Mapping[str, str], sweep: Any | None,
                same_architecture: bool) -> Claim:
    """"Layer 1 learns a Frame, a Spine and a Belt detector": the suggested names of layer 1 (template
    matching, see :mod:`polylens.lenses.discover.naming`), and for the seed's architecture how often
    each detector is named over many training seeds (:mod:`polylens.lenses.findings.names_sweep`)."""
    claim, measure = "Layer 1 learns a Frame, a Spine and a Belt detector.", \
        "layer-1 names by template matching (|r| of the best template), and how often over training seeds"
    if not suggestions:
        return _unmeasured("names", claim, measure, "layer 1 is not laid out on a 2-D grid of at least 3x3",
                           "findings-names")
    m = template_matches(suggestions)
    named = [t for t in CLAIMED if m[t]["named"]]
    v = Verdict.HOLDS if len(named) == 3 else Verdict.PARTLY if named else Verdict.DOES_NOT_HOLD
    layer1 = [s for s in suggestions if s.layer == 1]
    text = ("names " + ", ".join(f"{s.name} ({s.score:.2f})" for s in layer1) + "; best match " +
            ", ".join(f"{t} |r|={abs(m[t]['r']):.2f}" for t in CLAIMED))
    data: dict[str, Any] = {"suggested": [s.name for s in layer1], "scores": [s.score for s in layer1],
                            "card": dict(card_names), "matches": m}
    if sweep is not None and same_architecture:
        freq = {t: sweep.frequency(t) for t in CLAIMED}
        text += (f"; over {len(sweep.runs)} training seeds named in " +
                 ", ".join(f"{t} {freq[t]:.0%}" for t in CLAIMED) + " of runs")
        data["sweep"] = {"runs": len(sweep.runs), "frequency": freq}
    return Claim("names", claim, measure, text, v,
                 "holds if all three are named among layer 1's suggestions; partly if one or two are",
                 "findings-names", data)


#: The seed's formula for digit 0, term by term: template, activation mark sign, path-weight sign
#: (``(++ Frame) - (- Spine) - (- Belt)``: Frame on and weighted up; Spine and Belt driven negative
#: and weighted down, so all three raise logit 0; see :class:`polylens.lenses.discover.trace.Formula`).
DIGIT0 = (("Frame", +1, +1), ("Spine", -1, -1), ("Belt", -1, -1))


def claim_digit_formula(formula: Any | None, suggestions: Sequence[Any] | None) -> Claim:
    """"Digit 0 ~ (++ Frame) - (- Spine) - (- Belt)": the digit-0 formula of layer 1
    (:func:`polylens.lenses.discover.trace.digit_formulas`) checked term by term on the neurons that
    best match each template. A neuron matching a template with negative r (``anti-Spine``) has
    the opposite activation sign, so the formula's activation sign is compared after that flip; the
    contribution (activation times path weight) must be positive for all three terms either way."""
    claim, measure = "Digit 0 ~ (++ Frame) - (- Spine) - (- Belt).", \
        "layer-1 flows into logit 0 over the test 0s, for the neurons matching Frame, Spine, Belt"
    if formula is None or not suggestions:
        return _unmeasured("digit-0", claim, measure, "no digit-0 formula (no test 0s, or no 2-D layer-1 names)",
                           "findings-formula")
    m = template_matches(suggestions)
    terms = {t.j: t for t in formula.terms}
    rows, ok, ok_named = [], 0, 0
    for tmpl, mark, path in DIGIT0:
        j = m[tmpl]["j"]
        t = terms[j]
        flip = 1 if m[tmpl]["r"] >= 0 else -1
        act_ok = np.sign(t.activation) * flip == mark
        good = bool(act_ok and t.contribution > 0)
        ok += good
        ok_named += good and m[tmpl]["named"]
        rows.append({"template": tmpl, "neuron": f"L1.n{j}", "name": t.name, "r": m[tmpl]["r"],
                     "activation": t.activation, "path_weight": t.path_weight, "contribution": t.contribution,
                     "holds": good})
    v = (Verdict.HOLDS if ok_named == 3 else Verdict.PARTLY if ok >= 2 and ok_named >= 1 else Verdict.DOES_NOT_HOLD)
    text = (f"measured: {formula.text}; " + "; ".join(
        f"{r['template']} ~ {r['neuron']} ({r['name']}): flow {r['contribution']:+.2f}" for r in rows))
    return Claim("digit-0", claim, measure, text, v,
                 "holds if the neurons matching Frame, Spine and Belt all raise logit 0 with the formula's signs "
                 "and are named so; partly if two of the three terms hold and one of them on a neuron named after "
                 "its template", "findings-formula",
                 {"formula": formula.text, "terms": rows})
