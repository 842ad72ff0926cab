"""Conformance suite of the relaxation layer (polylens.relax): every activation of the registry joins
automatically (leaky_relu at alpha 0.01, 0.2 and the concave-kink 3.0). For each, the cuts of both
modes and every cut count are sound on dense samples refined to each cut's touch point, on
hypothesis-drawn intervals (centre and radius, never filtered) and on zero-width, inflection-
straddling and huge intervals; tightest_intercept is valid and tight; linear pieces are exact;
HULL is never looser than PAIR; the area ratio to the true convex hull falls towards 1."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polylens.errors import ParameterError
from polylens.nn.activations import REGISTRY, ActKind, Activation, Family
from polylens.relax import Lines, Side, image_bounds, pair_lines, slope_range, tightest_intercept
from polylens.relax.envelopes import (MAX_CUTS, Cuts, Envelope, EnvelopeMode, Hull, Pair, build_envelope,
                                      check_envelope, hull_area_ratio, hull_area_ratios)

ACTS = [Activation(k) for k in REGISTRY if k is not ActKind.LEAKY_RELU] + [
    Activation(ActKind.LEAKY_RELU, a) for a in (0.01, 0.2, 3.0)]
SMOOTH = [a for a in ACTS if a.spec.family is Family.SMOOTH]
CUT_COUNTS = (1, 2, 3, 5, 8, 16)

# Intervals that exercise every piece structure: around 0, around each inflection and minimiser,
# one-sided, wide, zero-width (on and off special points), tiny.
BASE_INTERVALS = [(-1.0, 1.0), (-3.0, 3.0), (-4.0, 0.5), (0.5, 4.0), (-6.0, -2.0), (-2.0, -0.5),
                  (-0.7, 2.9), (0.0, 0.0), (1.3, 1.3), (-1e-9, 1e-9), (-0.3, 0.0), (0.0, 0.3),
                  (-20.0, 15.0), (2.0, 2.0 + 1e-7)]


def special_points(act: Activation) -> list[float]:
    s = act.spec
    return [*s.inflections, *([s.argmin] if s.argmin is not None else []), 0.0]


def intervals_for(act: Activation) -> tuple[np.ndarray, np.ndarray]:
    """BASE_INTERVALS plus, for each special point p, intervals straddling it and starting at it."""
    iv = list(BASE_INTERVALS)
    for p in special_points(act):
        for r in (1e-6, 0.05, 0.7, 3.0):
            iv += [(p - r, p + r), (p - r, p + 0.3 * r), (p, p + r), (p - r, p)]
        iv.append((p, p))
    L, U = np.array(iv).T
    return L, U


def sampled_min_gap(act: Activation, L, U, s, c, side: Side, levels: int = 4, pts: int = 801) -> np.ndarray:
    """For each line r, min over sampled x in [L_r, U_r] of the line's margin (f - line for LOWER,
    line - f for UPPER), zooming `levels` times around the sampled minimiser and adding the interval's
    ends and the activation's special points: within ~1e-15 of the true minimum."""
    L, U, s, c = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(L, U, s, c))
    sign = 1.0 if side is Side.LOWER else -1.0

    def margin(x):
        return sign * (act(x) - (s * x + c))

    extra = np.stack([L, U] + [np.clip(p, L, U) for p in special_points(act)])
    best = margin(extra).min(axis=0)
    lo, hi = L.copy(), U.copy()
    t = np.linspace(0.0, 1.0, pts)[:, None]
    cols = np.arange(L.size)
    for _ in range(levels):
        x = np.clip(lo + (hi - lo) * t, L, U)
        m = margin(x)
        i = np.argmin(m, axis=0)
        best = np.minimum(best, m[i, cols])
        step = (hi - lo) / (pts - 1)
        centre = x[i, cols]
        lo, hi = np.maximum(L, centre - step), np.minimum(U, centre + step)
    return best


def cut_margins(act: Activation, env: Cuts) -> np.ndarray:
    """Sampled minimum margin of every cut over its neuron's interval (>= 0 means sound)."""
    out = np.empty(env.n_cuts)
    for side in Side:
        r = env.side == side
        j = env.neuron[r]
        out[r] = sampled_min_gap(act, env.lower[j], env.upper[j], env.slope[r], env.intercept[r], side)
    return out


def dense_grid(L, U, n: int = 2001) -> np.ndarray:
    """(N, n) grid of points in each [L_j, U_j]."""
    return L + (U - L) * np.linspace(0.0, 1.0, n)[:, None]


@pytest.fixture(params=ACTS, ids=str)
def act(request) -> Activation:
    return request.param


#: The kinds polylens represents, written out: a kind added to (or dropped from) the registry must be
#: added here on purpose, with the envelope checks below run for it.
EXPECTED_KINDS = ("identity", "relu", "leaky_relu", "gelu", "gelu_tanh", "sigmoid", "tanh", "silu")


def test_every_registry_kind_joins_the_suite():
    """The registry holds exactly the expected kinds, the suite's list covers each, and each kind's
    declared facts pass the envelope checks: consistent curvature pieces, a stationary argmin, and
    sound pair and hull cuts (with enclosing image bounds) on intervals around its special points."""
    assert sorted(k.value for k in REGISTRY) == sorted(EXPECTED_KINDS)
    assert {a.kind for a in ACTS} == set(REGISTRY)
    for kind, spec in REGISTRY.items():
        assert spec.kind is kind and list(spec.inflections) == sorted(spec.inflections)
        assert len(spec.curvature) == len(spec.inflections) + 1, kind
        act = Activation(kind, 0.2 if kind is ActKind.LEAKY_RELU else 0.0)
        if spec.argmin is not None:
            assert abs(float(act.derivative(np.array(spec.argmin)))) < 1e-12, kind
        L, U = intervals_for(act)
        for env in (Pair(), Hull(4)):
            cuts = build_envelope(act, L, U, env)
            assert cut_margins(act, cuts).min() >= 0.0, (kind, env)
            x = dense_grid(L, U, 401).clip(L, U)
            f = act(x)
            assert np.all(cuts.zlo <= f) and np.all(f <= cuts.zhi), (kind, env)


# ---------------------------------------------------------------------------------------------
# Soundness.


@pytest.mark.parametrize("mode", list(EnvelopeMode))
def test_cuts_sound_on_refined_samples(act, mode):
    """Every cut of every cut count holds at the sampled minimiser of its margin (to 1e-15), at the
    ends and at the inflection points, on intervals around every special point."""
    L, U = intervals_for(act)
    for K in (CUT_COUNTS if mode is EnvelopeMode.HULL else (1,)):
        env = build_envelope(act, L, U, Envelope.from_mode(mode, K))
        m = cut_margins(act, env)
        assert m.min() >= 0.0, (K, env.neuron[np.argmin(m)], m.min())
        lo, hi = env.evaluate(dense_grid(L, U).clip(L, U))
        f = act(dense_grid(L, U).clip(L, U))
        assert np.all(lo <= f) and np.all(f <= hi)


def test_image_bounds_enclose_samples(act):
    """image_bounds encloses f on dense samples (including special points) of every interval."""
    L, U = intervals_for(act)
    zlo, zhi = image_bounds(act, L, U)
    x = np.vstack([dense_grid(L, U), *[np.clip(p, L, U)[None] for p in special_points(act)]])
    f = act(x)
    assert np.all(zlo <= f.min(axis=0)) and np.all(f.max(axis=0) <= zhi)


centres = st.floats(-50.0, 50.0, allow_nan=False)
radii = st.one_of(st.just(0.0), st.floats(0.0, 100.0, allow_nan=False), st.floats(0.0, 1e-6, allow_nan=False))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(iv=st.lists(st.tuples(centres, radii), min_size=1, max_size=6),
       mode=st.sampled_from(list(EnvelopeMode)), K=st.integers(1, 16))
def test_cuts_sound_on_drawn_intervals(act, iv, mode, K):
    """Cuts are sound on intervals drawn as centre in [-50, 50] and radius in [0, 100] (radius 0
    included), every mode and cut count 1..16; zlo <= f <= zhi too."""
    c, r = np.array(iv).T
    L, U = c - r, c + r
    env = build_envelope(act, L, U, Envelope.from_mode(mode, K))
    assert cut_margins(act, env).min() >= 0.0
    x = dense_grid(L, U, 501).clip(L, U)
    f = act(x)
    assert np.all(env.zlo <= f) and np.all(f <= env.zhi)
    assert np.all(np.bincount(env.neuron * 2 + env.side, minlength=2 * L.size) <= K)


def test_huge_intervals_sound_and_finite(act):
    """Intervals with ends up to 1e4 in magnitude give finite, sound cuts (also near the ends)."""
    L = np.array([-1e4, -1e4, 9e3, -1e4, -1.0, -1e4])
    U = np.array([1e4, -9e3, 1e4, 1.0, 1e4, -1e4])
    for mode, K in ((EnvelopeMode.PAIR, 1), (EnvelopeMode.HULL, 4), (EnvelopeMode.HULL, 16)):
        env = build_envelope(act, L, U, Envelope.from_mode(mode, K))
        assert np.all(np.isfinite(env.slope)) and np.all(np.isfinite(env.intercept))
        assert cut_margins(act, env).min() >= 0.0
        x = np.vstack([dense_grid(L, U, 4001), np.clip(np.linspace(-10, 10, 2001)[:, None], L, U)])
        lo, hi = env.evaluate(x)
        f = act(x)
        assert np.all(lo <= f) and np.all(f <= hi)


# ---------------------------------------------------------------------------------------------
# tightest_intercept: valid and tight.


@pytest.mark.parametrize("side", list(Side))
def test_tightest_intercept_valid_and_touching(act, side):
    """For random intervals and slopes, the line is sound and touches the graph: the sampled minimum
    margin lies in [0, 1e-7 * scale + 2e-9], scale = max(|f|, |s x|) on the interval."""
    rng = np.random.default_rng(7 + side)
    n = 300
    c = rng.uniform(-8, 8, n) * rng.choice([1.0, 6.0], n)
    r = rng.uniform(0, 6, n) * rng.choice([0.0, 1e-3, 1.0, 10.0], n)
    L, U = c - r, c + r
    s = rng.normal(0, 1, n) * rng.choice([0.01, 0.3, 1.0, 5.0], n)
    ci = tightest_intercept(act, L, U, s, side)
    m = sampled_min_gap(act, L, U, s, ci, side)
    x = dense_grid(L, U, 201)
    scale = np.maximum(np.abs(act(x)), np.abs(s * x)).max(axis=0)
    assert m.min() >= 0.0
    assert np.all(m <= 1e-7 * scale + 2e-9), np.max(m - 1e-7 * scale)


def test_tightest_intercept_broadcasts_and_rejects_bad_input():
    """Scalars broadcast against arrays; L > U by one ulp, NaN intervals or slopes raise ParameterError."""
    act = Activation(ActKind.GELU)
    out = tightest_intercept(act, -1.0, np.array([1.0, 2.0]), np.array([[0.1], [0.2]]), Side.LOWER)
    assert out.shape == (2, 2)
    with pytest.raises(ParameterError, match="lower > upper"):
        tightest_intercept(act, np.nextafter(1.0, 2.0), 1.0, 0.0, Side.LOWER)
    with pytest.raises(ParameterError, match="non-finite"):
        tightest_intercept(act, np.nan, 1.0, 0.0, Side.UPPER)
    with pytest.raises(ParameterError, match="slope"):
        tightest_intercept(act, 0.0, 1.0, np.inf, Side.UPPER)
    with pytest.raises(ParameterError, match="side"):
        tightest_intercept(act, 0.0, 1.0, 0.0, 2)


# ---------------------------------------------------------------------------------------------
# Exactness where the function is linear.


@pytest.mark.parametrize("mode", list(EnvelopeMode))
def test_identity_is_exact(mode):
    """identity: exactly one lower and one upper cut per neuron, both z = a (slope 1, intercept 0)."""
    L, U = np.array([-3.0, 0.0, 2.0, -1e4]), np.array([4.0, 0.0, 2.5, 1e4])
    env = build_envelope(Activation(ActKind.IDENTITY), L, U, Envelope.from_mode(mode, 8))
    assert env.n_cuts == 2 * L.size
    assert np.all(env.slope == 1.0) and np.all(env.intercept == 0.0)


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.2, 3.0])
def test_stable_piecewise_linear_is_exact(alpha):
    """relu / leaky_relu on a stable interval (one piece, ends on the kink included): one lower and
    one upper cut, both exactly the active piece (slope 1 or alpha, intercept 0)."""
    act = Activation(ActKind.LEAKY_RELU, alpha) if alpha else Activation(ActKind.RELU)
    L, U = np.array([0.5, 0.0, -3.0, -2.0, 7.0]), np.array([3.0, 2.0, -0.5, 0.0, 7.0])
    piece = np.where(U > 0, 1.0, alpha)
    for mode in EnvelopeMode:
        env = build_envelope(act, L, U, Envelope.from_mode(mode, 8))
        assert env.n_cuts == 2 * L.size
        assert np.all(env.slope == piece[env.neuron]) and np.all(env.intercept == 0.0)


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.2])
def test_unstable_relu_hull_is_the_triangle(alpha):
    """Unstable relu / leaky_relu (alpha < 1), HULL: exactly two lower cuts z >= alpha*a, z >= a and
    the chord as the only upper cut, its intercept within 1e-14 relative of -U L / (U - L) above it;
    the area ratio is 1."""
    act = Activation(ActKind.LEAKY_RELU, alpha) if alpha else Activation(ActKind.RELU)
    L, U = np.array([-1.0, -3.0, -0.25, -7.0]), np.array([2.0, 1.0, 5.0, 7.0])
    for K in (2, 3, 8, 16):
        env = build_envelope(act, L, U, Hull(K))
        low = env.side == 0
        assert np.all(np.bincount(env.neuron[low]) == 2)
        assert set(zip(env.neuron[low].tolist(), env.slope[low].tolist(), env.intercept[low].tolist())) == {
            (j, p, 0.0) for j in range(L.size) for p in (alpha, 1.0)}
        up = ~low
        chord = (U - alpha * L) / (U - L)
        icpt = (1 - alpha) * (-U * L) / (U - L)
        assert np.allclose(env.slope[up], chord, rtol=1e-15, atol=0)
        assert np.all(env.intercept[up] >= icpt * (1 - 1e-15)) and np.allclose(env.intercept[up], icpt, rtol=1e-14)
        assert hull_area_ratio(act, -1.0, 2.0, Hull(K)) == pytest.approx(1.0, abs=1e-6)


def test_relu_pair_lines_follow_the_adaptive_rule():
    """relu pair lines: chord upper; lower slope 1 if U >= -L else 0 on unstable neurons."""
    L, U = np.array([-1.0, -3.0, -2.0, -0.5]), np.array([2.0, 1.0, 2.0, 0.4])
    lines = pair_lines(Activation(ActKind.RELU), L, U)
    assert lines.lower_slope.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert lines.lower_intercept.tolist() == [0.0] * 4
    assert np.allclose(lines.upper_slope, U / (U - L), rtol=1e-15)


def test_pair_lines_accept_optimiser_slopes(act):
    """pair_lines with a caller's lower slopes keeps them, takes intercepts from tightest_intercept,
    and stays sound for arbitrary slopes."""
    L, U = intervals_for(act)
    rng = np.random.default_rng(3)
    slopes = rng.normal(0.3, 1.0, L.size)
    lines = pair_lines(act, L, U, lower_slope=slopes)
    assert isinstance(lines, Lines) and lines.lower_slope.shape == L.shape
    assert np.array_equal(lines.lower_slope, slopes)
    assert np.array_equal(lines.lower_intercept, tightest_intercept(act, L, U, slopes, Side.LOWER))
    assert sampled_min_gap(act, L, U, lines.lower_slope, lines.lower_intercept, Side.LOWER).min() >= 0
    assert sampled_min_gap(act, L, U, lines.upper_slope, lines.upper_intercept, Side.UPPER).min() >= 0
    default = pair_lines(act, L, U)
    assert np.array_equal(lines.upper_slope, default.upper_slope)


def test_slope_range_ends_touch_the_interval_ends(act):
    """slope_range gives the hull's end slopes: on the LOWER side the line of slope lo touches the
    graph at L and that of slope hi at U (UPPER: hi at L, lo at U), and a slope outside the range
    gives a line dominated on [L, U] by the nearer end's line."""
    L, U = intervals_for(act)
    keep = U - L > 1e-3
    L, U = L[keep], U[keep]
    for side, sign in ((Side.LOWER, 1.0), (Side.UPPER, -1.0)):
        lo, hi = slope_range(act, L, U, side)
        assert np.all(lo <= hi)
        at_L, at_U = (lo, hi) if side is Side.LOWER else (hi, lo)
        for s, x in ((at_L, L), (at_U, U)):
            c = tightest_intercept(act, L, U, s, side)
            assert np.all(np.abs(act(x) - (s * x + c)) <= 1e-7 * (1 + np.abs(x))), side
        out = at_L - sign * 0.5
        c_out, c_in = tightest_intercept(act, L, U, out, side), tightest_intercept(act, L, U, at_L, side)
        for x in (L, U):
            assert np.all(sign * ((at_L * x + c_in) - (out * x + c_out)) >= -1e-7 * (1 + np.abs(x)))


def test_relu_slope_range():
    """relu, unstable: LOWER range [0, 1]; UPPER the chord slope twice."""
    L, U = np.array([-1.0]), np.array([3.0])
    relu = Activation(ActKind.RELU)
    assert [float(v[0]) for v in slope_range(relu, L, U, Side.LOWER)] == [0.0, 1.0]
    lo, hi = slope_range(relu, L, U, Side.UPPER)
    assert lo[0] == pytest.approx(0.75, rel=1e-12) and hi[0] == pytest.approx(0.75, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# HULL versus PAIR, and convergence to the convex hull.


def test_hull_never_looser_than_pair(act):
    """On a dense grid of every interval, HULL's lower bound >= PAIR's and its upper bound <= PAIR's,
    exactly: cut 0 of each side of a HULL envelope is the pair line, bit for bit."""
    L, U = intervals_for(act)
    pair = build_envelope(act, L, U, Pair())
    x = dense_grid(L, U).clip(L, U)
    plo, phi = pair.evaluate(x)
    for K in (2, 5, 16):
        hull = build_envelope(act, L, U, Hull(K))
        hlo, hhi = hull.evaluate(x)
        assert np.all(hlo >= plo) and np.all(hhi <= phi)
        first = hull.index == 0
        assert np.array_equal(hull.slope[first], pair.slope) and np.array_equal(hull.intercept[first], pair.intercept)


def test_area_ratio_decreases_towards_one(act):
    """hull_area_ratio is >= 1 (up to sampling error), weakly decreasing in the cut count, equal to
    PAIR's at one cut, and within 1% of the hull at 16 cuts and 0.2% at 40 on typical intervals."""
    L, U = np.array([-1.0, -3.0, 0.5, -5.0]), np.array([1.0, 2.0, 4.0, -1.0])
    counts = (1, 2, 4, 8, 16, 40)
    ratios = np.array([hull_area_ratios(act, L, U, Hull(K)) for K in counts])
    assert np.allclose(ratios[0], hull_area_ratios(act, L, U, Pair()), rtol=1e-12)
    assert ratios.min() >= 1.0 - 1e-6
    assert np.all(ratios[1:] <= ratios[:-1] * (1 + 1e-9)), ratios
    assert np.all(ratios[4] <= 1.01) and np.all(ratios[5] <= 1.002), ratios


def test_area_ratios_vectorised_match_scalar():
    """hull_area_ratios (per interval) agrees with hull_area_ratio on each interval; flat graphs give 1."""
    act = Activation(ActKind.SIGMOID)
    L, U = np.array([-1.0, 0.5, 2.0]), np.array([1.0, 3.0, 2.0])
    r = hull_area_ratios(act, L, U, Hull(4))
    assert r[2] == 1.0
    for j in range(2):
        assert r[j] == pytest.approx(hull_area_ratio(act, L[j], U[j], Hull(4)), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# The Envelope value and the builder's parameters.


def test_envelope_structure_and_evaluate():
    """Cuts are sorted by (neuron, side, index), indices count 0.. per (neuron, side), every neuron
    has both sides, and evaluate handles (n,) and (N, n) and agrees with a direct max/min."""
    act = Activation(ActKind.GELU)
    L, U = np.array([-3.0, -0.5, 1.0]), np.array([1.0, 0.5, 4.0])
    env = build_envelope(act, L, U, Hull(6))
    key = env.neuron * 2 + env.side
    assert np.all(np.diff(key) >= 0)
    for k in np.unique(key):
        assert env.index[key == k].tolist() == list(range(int((key == k).sum())))
    assert set(key.tolist()) == set(range(6))
    assert env.neuron.dtype == np.int64 and env.side.dtype == np.int8 and env.index.dtype == np.int64
    a = dense_grid(L, U, 7)
    lo, hi = env.evaluate(a)
    assert lo.shape == a.shape and env.evaluate(a[3])[0].shape == (3,)
    for j in range(3):
        for side, red, got in ((0, np.max, lo), (1, np.min, hi)):
            r = (env.neuron == j) & (env.side == side)
            assert np.allclose(got[:, j], red(env.slope[r] * a[:, j:j + 1] + env.intercept[r], axis=1), rtol=0, atol=0)
    with pytest.raises(ParameterError):
        env.evaluate(np.zeros(4))


def test_build_envelope_rejects_bad_parameters():
    """Misspelt envelopes and modes, cut counts out of [1, 64] (in Hull and in the old mode/cuts
    spelling), inverted or non-1-D intervals raise ParameterError."""
    act = Activation(ActKind.TANH)
    L, U = np.array([-1.0]), np.array([1.0])
    with pytest.raises(ParameterError, match="'envelope' parameter of build_envelope"):
        build_envelope(act, L, U, "hul")
    with pytest.raises(ParameterError, match="'mode' parameter of build_envelope"):
        build_envelope(act, L, U, mode="hul")
    for bad in (0, 65, 2.5, True):
        with pytest.raises(ParameterError, match="cuts"):
            Hull(bad)
        with pytest.raises(ParameterError, match="'cuts' parameter of build_envelope"):
            build_envelope(act, L, U, mode=EnvelopeMode.HULL, cuts=bad)
    with pytest.raises(ParameterError, match="lower > upper"):
        build_envelope(act, np.array([1.0 + 1e-15]), np.array([1.0]))
    with pytest.raises(ParameterError, match="1-D"):
        build_envelope(act, np.zeros((2, 2)), np.ones((2, 2)))
    assert build_envelope(act, L, U, "pair").n_cuts == 2


def test_envelope_values_convert_from_the_old_spelling():
    """Envelope.from_mode turns (mode, cuts) into Hull(cuts) or Pair(); check_envelope accepts a value or a
    mode name; values are frozen, compare by content, render as text, and a hull falls back to the pair."""
    assert Envelope.from_mode("hull", 4) == Hull(4) and Envelope.from_mode(EnvelopeMode.PAIR, 9) == Pair()
    assert check_envelope("hull", "f") == Hull() and check_envelope(Pair(), "f") == Pair()
    assert Hull().cuts == 8 and Pair().cuts == 1 and Hull(MAX_CUTS).cuts == MAX_CUTS
    assert str(Hull(4)) == "hull(4)" and str(Pair()) == "pair" and Hull(4).to_dict() == {"mode": "hull", "cuts": 4}
    assert Hull(4).fallbacks == (Hull(4), Pair()) and Pair().fallbacks == (Pair(),)
    with pytest.raises(AttributeError):
        Hull(4).cuts = 5
    with pytest.raises(ParameterError, match="'envelope' parameter of f"):
        check_envelope(8, "f")
    act = Activation(ActKind.GELU)
    L, U = np.array([-2.0, 0.5]), np.array([1.0, 3.0])
    old = build_envelope(act, L, U, mode="hull", cuts=3)
    new = build_envelope(act, L, U, Hull(3))
    assert np.array_equal(old.slope, new.slope) and np.array_equal(old.intercept, new.intercept)


@pytest.mark.parametrize("act", [Activation(ActKind.RELU), Activation(ActKind.LEAKY_RELU, alpha=0.1),
                                 Activation(ActKind.LEAKY_RELU, alpha=2.0)], ids=str)
def test_secant_shortcut_on_one_linear_piece_equals_the_search(act):
    """The hull's end slopes skip the candidate search on intervals inside one linear piece of a
    piecewise-linear activation: the answer (slope and stretch end) is bit-identical to the
    search's, on random, degenerate and kink-touching intervals, for both sides and mirrors."""
    from polylens.relax.lines import Oriented, _min_secant_from_left

    rng = np.random.default_rng(3)
    L = rng.normal(size=5000)
    U = L + rng.exponential(1.0, size=L.shape)
    U[:300] = L[:300]
    L[300:400] = 0.0
    U[400:500] = 0.0
    L[400:500] = -rng.random(100)
    L[500:520] = U[500:520] = 0.0
    L = np.minimum(L, U)
    for sigma in (1.0, -1.0):
        for rho in (1.0, -1.0):
            F = Oriented.of(act, sigma, rho)
            a, b = (L, U) if rho > 0 else (-U, -L)
            fast = _min_secant_from_left(F, a, b)
            search = _min_secant_from_left(F, a[None], b[None])  # 2-D rows take the search
            assert all(np.array_equal(x, y[0]) for x, y in zip(fast, search))
