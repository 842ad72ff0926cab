"""Tests of polylens.bounds: soundness against dense sampling and exact arithmetic, the tightness
ladder IBP <= CROWN <= alpha-CROWN, exactness where the network is linear or the box a point,
batching, and the checks at the boundary."""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polylens.bounds import (BoundMethod, Bounds, alpha_crown, compute_bounds, crown, ibp, input_box,
                             margin_lower_bound, margin_spec)
from polylens.errors import ParameterError
from polylens.nn import REGISTRY, Activation, ActKind, Network

crown_module = sys.modules["polylens.bounds.crown"]

KINDS = sorted(REGISTRY, key=lambda k: k.value)
METHODS = list(BoundMethod)


def act_of(kind: ActKind) -> Activation:
    return Activation(kind, 0.1)  # alpha only matters for leaky_relu; other kinds ignore it


def random_net(rng, widths, act, scale=1.0) -> Network:
    Ws = [rng.normal(size=(o, i)) * scale / np.sqrt(i) for i, o in zip(widths, widths[1:])]
    bs = [rng.normal(size=o) * 0.3 for o in widths[1:]]
    return Network.from_arrays(Ws, bs, act)


def all_bounds(net, xl, xu, alpha_steps=5) -> dict[BoundMethod, Bounds]:
    return {BoundMethod.IBP: ibp(net, xl, xu), BoundMethod.CROWN: crown(net, xl, xu),
            BoundMethod.ALPHA_CROWN: alpha_crown(net, xl, xu, steps=alpha_steps)}


def samples(rng, xl, xu, n):
    """(N, n, d) points of each box: random interior points, random corners and the centre."""
    N, d = xl.shape
    u = rng.uniform(size=(N, n, d))
    u[:, : n // 4] = rng.integers(0, 2, size=(N, n // 4, d))  # vertices, where linear bounds are tight
    u[:, -1] = 0.5
    return xl[:, None] + (xu - xl)[:, None] * u


def float_slack(v):
    """The sampled values come from the float64 forward pass, the bounds hold for the exact network;
    the two differ by a few ulps of the magnitudes involved."""
    return 1e-12 * (1.0 + np.abs(v))


def assert_contains(lo, hi, v, what):
    tol = float_slack(v)
    assert np.all(lo <= v + tol), f"{what}: a sampled value is below its lower bound by {np.max(lo - v):.3g}"
    assert np.all(v <= hi + tol), f"{what}: a sampled value is above its upper bound by {np.max(v - hi):.3g}"


def check_soundness(net, xl, xu, labels, pts, bounds_by_method, margins_by_method):
    N, S, d = pts.shape
    fp = net.forward(pts.reshape(N * S, d))
    for method, b in bounds_by_method.items():
        for l, a in enumerate(fp.pre):
            a = a.reshape(N, S, -1)
            assert_contains(b.lower[l][:, None], b.upper[l][:, None], a, f"{method.value} layer {l}")
        z = fp.logits.reshape(N, S, -1)
        assert_contains(b.logit_lower[:, None], b.logit_upper[:, None], z, f"{method.value} logits")
    z = fp.logits.reshape(N, S, -1)
    margin = z[np.arange(N), :, labels][:, :, None] - z  # (N, S, n_classes)
    for method, m in margins_by_method.items():
        assert np.all(m[np.arange(N), labels] == np.inf)
        mm = np.where(m == np.inf, -np.inf, m)[:, None]
        assert np.all(mm <= margin + float_slack(margin)), f"{method.value}: a sampled margin is below its lower bound"


# -- soundness -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_every_sampled_point_lies_in_every_methods_bounds(kind):
    """For random networks of every registered activation and random boxes (small and large), every
    sampled point's pre-activations, logits and margins respect every method's bounds."""
    rng = np.random.default_rng(7)
    net = random_net(rng, (4, 6, 5, 3), act_of(kind), scale=1.5)
    x = rng.uniform(size=(6, 4))
    eps = np.array([0.0, 0.01, 0.05, 0.2, 0.5, 2.0])[:, None]
    xl, xu = x - eps, x + eps
    labels = rng.integers(0, 3, size=6)
    bounds = all_bounds(net, xl, xu)
    margins = {m: margin_lower_bound(net, xl, xu, labels, m, alpha_steps=5) for m in METHODS}
    check_soundness(net, xl, xu, labels, samples(rng, xl, xu, 600), bounds, margins)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**31 - 1),
       centre=st.floats(-3.0, 3.0), radius=st.floats(0.0, 3.0), scale=st.floats(0.1, 4.0))
def test_hypothesis_bounds_contain_sampled_points(kind, seed, centre, radius, scale):
    """Hypothesis draws the activation, the network, and boxes as centre and radius (never filtered):
    sampled pre-activations, logits and margins stay inside CROWN's and IBP's bounds and above the
    margin bounds of every method."""
    rng = np.random.default_rng(seed)
    net = random_net(rng, (3, 5, 4, 3), act_of(kind), scale=scale)
    x = centre + rng.normal(size=(2, 3))
    r = radius * rng.uniform(size=(2, 3))
    xl, xu = x - r, x + r
    labels = rng.integers(0, 3, size=2)
    bounds = {BoundMethod.IBP: ibp(net, xl, xu), BoundMethod.CROWN: crown(net, xl, xu)}
    margins = {m: margin_lower_bound(net, xl, xu, labels, m, bounds=bounds.get(m, bounds[BoundMethod.CROWN]),
                                     alpha_steps=3) for m in METHODS}
    check_soundness(net, xl, xu, labels, samples(rng, xl, xu, 200), bounds, margins)


def exact_relu_forward(net: Network, x) -> tuple[list[list[Fraction]], list[Fraction]]:
    """Pre-activations and logits of a relu network at one point, in exact rational arithmetic."""
    z = [Fraction(float(v)) for v in x]
    pres = []
    for i, layer in enumerate(net.layers):
        a = [sum((Fraction(float(w)) * zj for w, zj in zip(row, z)), Fraction(float(b)))
             for row, b in zip(layer.W, layer.b)]
        if i == len(net.layers) - 1:
            return pres, a
        pres.append(a)
        z = [max(v, Fraction(0)) for v in a]
    raise AssertionError


def test_bounds_hold_for_the_exact_network_under_cancellation():
    """Weights of wildly different magnitudes make the float64 forward pass lose every digit (1e16 + 1
    - 1e16 evaluates to 0); the bounds still contain the exact rational pre-activations, logits and
    margins, with no tolerance at all."""
    W1 = np.array([[1e16, 1.0, -1e16], [1e-8, -1.0, 3.0], [2.0, 1e12, -1e12]])
    W2 = np.array([[1.0, 1e-16, -1.0], [-1e8, 1.0, 1e8]])
    net = Network.from_arrays([W1, W2], [np.array([0.0, 1e-17, 0.1]), np.array([1.0, -1.0])], "relu")
    x = np.array([[1.0, 1.0, 1.0], [0.3, 0.7, 0.3]])
    assert net.forward(x[:1]).pre[0][0, 0] == 0.0  # float64 says 0; the exact value is 1
    for eps in (0.0, 1e-9, 1e-3):
        xl, xu = x - eps, x + eps
        labels = np.array([0, 1])
        rng = np.random.default_rng(1)
        pts = samples(rng, xl, xu, 12)
        for method in METHODS:
            b = compute_bounds(net, xl, xu, method)
            m = margin_lower_bound(net, xl, xu, labels, method, alpha_steps=3)
            for i in range(2):
                for p in pts[i]:
                    pres, logits = exact_relu_forward(net, p)
                    for l, a in enumerate(pres):
                        assert all(Fraction(float(lo)) <= v <= Fraction(float(hi))
                                   for lo, hi, v in zip(b.lower[l][i], b.upper[l][i], a)), (method, eps, l)
                    assert all(Fraction(float(lo)) <= v <= Fraction(float(hi))
                               for lo, hi, v in zip(b.logit_lower[i], b.logit_upper[i], logits)), (method, eps)
                    for k in range(2):
                        if k != labels[i]:
                            assert Fraction(float(m[i, k])) <= logits[labels[i]] - logits[k], (method, eps)


def test_input_box_contains_the_exact_ball_and_is_clipped():
    """input_box rounds x - eps down and x + eps up (the exact ball is inside), clips to [lo, hi],
    keeps the shape of x, and is the point itself for eps = 0."""
    x = np.concatenate([[0.1, 0.7, 0.3, 1.0, 0.0], np.random.default_rng(0).uniform(size=195)])[None]
    for eps in (0.1, 0.02, 3e-17):
        xl, xu = input_box(x, eps)
        for v, lo, hi in zip(x[0], xl[0], xu[0]):
            assert Fraction(float(lo)) <= max(Fraction(float(v)) - Fraction(eps), Fraction(0))
            assert Fraction(float(hi)) >= min(Fraction(float(v)) + Fraction(eps), Fraction(1))
        assert xl[0, 4] == 0.0 and xu[0, 3] == 1.0
        assert np.all(xl >= np.nextafter(x - eps, -1)) and np.all(xu <= np.nextafter(x + eps, 2))  # one ulp at most
    l1, u1 = input_box(x[0], 0.0)
    assert l1.shape == (200,) and np.array_equal(l1, x[0]) and np.array_equal(u1, x[0])
    with pytest.raises(ParameterError, match="'eps' parameter of input_box"):
        input_box(x, -0.1)
    with pytest.raises(ParameterError, match=r"in \[0.0, 1.0\]"):
        input_box(x + 1.0, 0.1)


# -- tightness ladder --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [ActKind.RELU, ActKind.GELU, ActKind.SIGMOID], ids=lambda k: k.value)
def test_tightness_ladder(kind):
    """Per neuron, CROWN's bounds are inside IBP's (it intersects with interval propagation from
    tighter boxes) and alpha-CROWN's inside CROWN's; per margin, alpha-CROWN >= CROWN exactly, and
    CROWN's margins beat IBP's on aggregate (per element it is not a theorem)."""
    rng = np.random.default_rng(3)
    net = random_net(rng, (8, 12, 12, 5), act_of(kind), scale=1.5)
    x = rng.uniform(size=(10, 8))
    xl, xu = input_box(x, 0.08)
    b = all_bounds(net, xl, xu, alpha_steps=10)
    ib, cr, al = b[BoundMethod.IBP], b[BoundMethod.CROWN], b[BoundMethod.ALPHA_CROWN]
    for l in range(net.n_hidden_layers + 1):
        lo = [bb.lower[l] if l < net.n_hidden_layers else bb.logit_lower for bb in (ib, cr, al)]
        hi = [bb.upper[l] if l < net.n_hidden_layers else bb.logit_upper for bb in (ib, cr, al)]
        assert np.all(lo[1] >= lo[0] - float_slack(lo[0])) and np.all(hi[1] <= hi[0] + float_slack(hi[0]))
        assert np.all(lo[2] >= lo[1]) and np.all(hi[2] <= hi[1])
    assert np.mean(cr.logit_upper - cr.logit_lower) < np.mean(ib.logit_upper - ib.logit_lower)
    labels = net.predict(x)
    m = {meth: margin_lower_bound(net, xl, xu, labels, meth, alpha_steps=10) for meth in METHODS}
    fin = np.isfinite(m[BoundMethod.IBP])
    assert np.all(m[BoundMethod.ALPHA_CROWN] >= m[BoundMethod.CROWN])
    assert m[BoundMethod.CROWN][fin].mean() > m[BoundMethod.IBP][fin].mean()


def test_alpha_crown_improves_relu_margins_and_never_loses():
    """On a relu network with many unstable neurons, optimised slopes give strictly better margin
    bounds for some (input, class) and never worse ones (the best iterate is kept and the result is
    maxed with CROWN's), also when CROWN's own intermediate bounds are passed in."""
    rng = np.random.default_rng(11)
    net = random_net(rng, (10, 20, 20, 4), Activation(ActKind.RELU))
    x = rng.uniform(size=(12, 10))
    xl, xu = input_box(x, 0.1)
    b = crown(net, xl, xu)
    assert b.unstable(0).mean() > 0.1
    labels = net.predict(x)
    m_c = margin_lower_bound(net, xl, xu, labels, BoundMethod.CROWN, bounds=b)
    m_a = margin_lower_bound(net, xl, xu, labels, BoundMethod.ALPHA_CROWN, bounds=b, alpha_steps=20)
    assert np.all(m_a >= m_c)
    fin = np.isfinite(m_c)
    gain = m_a[fin] - m_c[fin]
    assert np.any(gain > 1e-6) and gain.mean() > 0


@pytest.mark.parametrize("kind", [ActKind.RELU, ActKind.GELU], ids=lambda k: k.value)
def test_alpha_crown_soundness_does_not_depend_on_the_optimiser(monkeypatch, kind):
    """Replace the optimiser by one returning random slopes, some far outside any useful range: the
    reported margins are still below every sampled margin (intercepts are recomputed rigorously for
    whatever slopes come back) and still at least CROWN's."""
    rng = np.random.default_rng(12)
    net = random_net(rng, (5, 8, 8, 3), act_of(kind), scale=1.5)
    x = rng.uniform(size=(4, 5))
    xl, xu = input_box(x, 0.2)
    labels = net.predict(x)

    def garbage(network, k, relax, ranges, free, xl, xu, C, groups, steps, masks, init=None):
        slopes = [[None if not free[j][i] else rng.normal(scale=3.0, size=(xl.shape[0], groups, r.L.shape[1]))
                   for i in range(2)] for j, r in enumerate(relax)]
        return slopes, [None for _ in masks]

    m_c = margin_lower_bound(net, xl, xu, labels, BoundMethod.CROWN)
    monkeypatch.setattr(crown_module, "_optimise", garbage)
    m_a = margin_lower_bound(net, xl, xu, labels, BoundMethod.ALPHA_CROWN, alpha_steps=3)
    assert np.all(m_a >= m_c)
    check_soundness(net, xl, xu, labels, samples(rng, xl, xu, 2000), {}, {BoundMethod.ALPHA_CROWN: m_a})
    b = alpha_crown(net, xl, xu, steps=2)
    check_soundness(net, xl, xu, labels, samples(rng, xl, xu, 500), {BoundMethod.ALPHA_CROWN: b}, {})


def test_margin_spec_is_tighter_than_logit_differences():
    """Pushing C = e_y - e_k backward is at least as tight as subtracting CROWN's logit bounds on
    average, and strictly tighter for some pair (the dependency between logits is kept)."""
    rng = np.random.default_rng(5)
    net = random_net(rng, (6, 10, 10, 4), Activation(ActKind.GELU), scale=1.5)
    x = rng.uniform(size=(8, 6))
    xl, xu = input_box(x, 0.1)
    b = crown(net, xl, xu)
    labels = net.predict(x)
    spec = margin_lower_bound(net, xl, xu, labels, BoundMethod.CROWN, bounds=b)
    diff = margin_lower_bound(net, xl, xu, labels, BoundMethod.IBP, bounds=b)
    fin = np.isfinite(spec)
    assert spec[fin].mean() > diff[fin].mean() and np.any(spec[fin] > diff[fin] + 1e-6)


# -- exactness ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_zero_radius_gives_the_forward_pass(kind):
    """With eps = 0 every method's bounds equal the forward pass up to the rounding and envelope
    slack (about 1e-9 per neuron)."""
    rng = np.random.default_rng(2)
    net = random_net(rng, (5, 7, 6, 4), act_of(kind))
    x = rng.uniform(size=(3, 5))
    fp = net.forward(x)
    labels = np.array([0, 1, 3])
    margin = fp.logits[np.arange(3), labels][:, None] - fp.logits
    for method, b in all_bounds(net, x, x).items():
        for lo, hi, v in [*zip(b.lower, b.upper, fp.pre), (b.logit_lower, b.logit_upper, fp.logits)]:
            assert np.all(lo <= v + float_slack(v)) and np.all(v <= hi + float_slack(v))
            assert np.all(hi - lo <= 1e-7 * (1 + np.abs(v))), method
        m = margin_lower_bound(net, x, x, labels, method, alpha_steps=2)
        off = m != np.inf
        assert np.all(np.abs(m[off] - margin[off]) <= 1e-7 * (1 + np.abs(margin[off]))), method


def test_linear_network_gives_exact_crown_bounds():
    """With identity activations the network is affine, and CROWN's bounds are the exact extremes of
    the composed affine map over the box (up to rounding), where IBP loses the dependency."""
    rng = np.random.default_rng(4)
    net = random_net(rng, (6, 8, 8, 3), Activation(ActKind.IDENTITY))
    x = rng.uniform(size=(5, 6))
    xl, xu = input_box(x, 0.2)
    cr, ib = crown(net, xl, xu), ibp(net, xl, xu)
    Wt, bt = np.eye(6), np.zeros(6)
    for l, layer in enumerate(net.layers):
        Wt, bt = layer.W @ Wt, layer.W @ bt + layer.b
        lo = np.maximum(Wt, 0) @ xl.T + np.minimum(Wt, 0) @ xu.T + bt[:, None]
        hi = np.maximum(Wt, 0) @ xu.T + np.minimum(Wt, 0) @ xl.T + bt[:, None]
        got_lo = cr.lower[l] if l < 2 else cr.logit_lower
        got_hi = cr.upper[l] if l < 2 else cr.logit_upper
        np.testing.assert_allclose(got_lo, lo.T, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got_hi, hi.T, rtol=1e-12, atol=1e-12)
    assert np.mean(ib.logit_upper - ib.logit_lower) > 1.2 * np.mean(cr.logit_upper - cr.logit_lower)
    labels = np.zeros(5, dtype=int)
    m = margin_lower_bound(net, xl, xu, labels, BoundMethod.CROWN, bounds=cr)
    Cw = Wt[0] - Wt  # exact margin extremes of logit_0 - logit_k
    exact = (np.maximum(Cw, 0) @ xl.T + np.minimum(Cw, 0) @ xu.T + (bt[0] - bt)[:, None]).T
    np.testing.assert_allclose(m[:, 1:], exact[:, 1:], rtol=1e-12, atol=1e-12)


# -- batching, API, errors ----------------------------------------------------------------------------

def test_batched_bounds_equal_one_box_at_a_time_and_chunking_changes_nothing(monkeypatch):
    """Bounds of N boxes at once equal those of each box alone, and forcing the backward pass and the
    optimiser into many small chunks gives the same arrays. (Up to 1e-7 relative: BLAS picks other
    kernels for other batch sizes, an ulp of difference in L or U can move the relax layer's choice
    of slope, and with it the bounds of later layers, by about the envelope slack.)"""
    rng = np.random.default_rng(9)
    net = random_net(rng, (5, 9, 7, 4), Activation(ActKind.SILU))
    x = rng.uniform(size=(7, 5))
    xl, xu = input_box(x, 0.1)
    labels = rng.integers(0, 4, size=7)
    whole = crown(net, xl, xu)
    m_whole = margin_lower_bound(net, xl, xu, labels, BoundMethod.ALPHA_CROWN, alpha_steps=4)
    for i in (0, 4):
        one = crown(net, xl[i], xu[i])
        np.testing.assert_allclose(one.logit_lower[0], whole.logit_lower[i], rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(one.lower[1][0], whole.lower[1][i], rtol=1e-7, atol=1e-7)
    monkeypatch.setattr(crown_module, "_CHUNK_ELEMENTS", 40)
    monkeypatch.setattr(crown_module, "_OPT_CHUNK_ELEMENTS", 500)
    chunked = crown(net, xl, xu)
    for a, b in zip(whole.lower + whole.upper, chunked.lower + chunked.upper):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-7)
    m_chunked = margin_lower_bound(net, xl, xu, labels, BoundMethod.ALPHA_CROWN, alpha_steps=4)
    np.testing.assert_allclose(m_chunked, m_whole, rtol=1e-7, atol=1e-7)


def test_bounds_value_layer_intersect_and_dispatch():
    """Bounds.layer returns one input's (L, U); intersect is the element-wise tighter pair and keeps the
    stronger method; compute_bounds dispatches on the method name; margins put +inf in column y."""
    rng = np.random.default_rng(8)
    net = random_net(rng, (3, 4, 2), Activation(ActKind.TANH))
    xl, xu = input_box(rng.uniform(size=(2, 3)), 0.3)
    ib = compute_bounds(net, xl, xu, "ibp")
    cr = compute_bounds(net, xl, xu, BoundMethod.CROWN)
    assert ib.method is BoundMethod.IBP and cr.method is BoundMethod.CROWN
    assert compute_bounds(net, xl, xu, "alpha-crown").method is BoundMethod.ALPHA_CROWN
    L, U = cr.layer(1, 0)
    assert L.shape == (4,) and np.array_equal(L, cr.lower[0][1]) and np.array_equal(U, cr.upper[0][1])
    both = ib.intersect(cr)
    assert both.method is BoundMethod.CROWN
    assert np.array_equal(both.lower[0], np.maximum(ib.lower[0], cr.lower[0]))
    assert np.array_equal(both.logit_upper, np.minimum(ib.logit_upper, cr.logit_upper))
    m = margin_lower_bound(net, xl, xu, [1, 0])
    assert m.shape == (2, 2) and m[0, 1] == np.inf and m[1, 0] == np.inf and np.isfinite(m[0, 0])
    C = margin_spec(np.array([1, 0]), 2)
    assert np.array_equal(C[0], [[-1.0, 1.0], [0.0, 0.0]])  # label 1: row k is e_1 - e_k
    with pytest.raises(ParameterError, match="'l' parameter of Bounds.layer"):
        cr.layer(0, 1)


def test_errors_name_the_problem():
    """Wrong shapes, inverted boxes, bad labels, unknown methods and mismatched intermediate bounds
    raise ParameterError with a message saying what is wrong."""
    rng = np.random.default_rng(0)
    net = random_net(rng, (3, 4, 2), Activation(ActKind.RELU))
    xl, xu = np.zeros((2, 3)), np.ones((2, 3))
    with pytest.raises(ParameterError, match=r"\(N, 3\)"):
        ibp(net, np.zeros((2, 4)), np.ones((2, 4)))
    with pytest.raises(ParameterError, match="xl <= xu"):
        crown(net, xu, xl)
    with pytest.raises(ParameterError, match="'labels' parameter"):
        margin_lower_bound(net, xl, xu, [0, 2])
    with pytest.raises(ParameterError, match="one integer label per box"):
        margin_lower_bound(net, xl, xu, [0])
    with pytest.raises(ParameterError, match="'method' parameter of margin_lower_bound"):
        margin_lower_bound(net, xl, xu, [0, 1], "lp")
    with pytest.raises(ParameterError, match="same network"):
        crown(net, xl[:1], xu[:1], intermediate=ibp(net, xl, xu))


@pytest.mark.parametrize("kind", [ActKind.RELU, ActKind.LEAKY_RELU, ActKind.GELU, ActKind.SIGMOID],
                         ids=lambda k: k.value)
def test_relaxation_from_a_reference_equals_a_fresh_one(kind):
    """Branch and bound reuses its roots' lines where a node's intervals are unchanged: the result
    is bit-identical to relaxing the node's intervals from scratch (also when nothing changed, and
    when a split collapses an interval to one side of 0)."""
    from polylens.bounds.crown import relax_layer, relax_layer_from

    rng = np.random.default_rng(31)
    act = Activation(kind, alpha=0.1) if kind is ActKind.LEAKY_RELU else Activation(kind)
    L0 = rng.normal(size=(6, 40)) - 0.5
    U0 = L0 + rng.exponential(1.5, size=L0.shape)
    base = relax_layer(act, L0, U0, 0)
    L, U = L0.copy(), U0.copy()
    pick = rng.random(L.shape) < 0.1
    L[pick & (rng.random(L.shape) < 0.5)] = 0.0
    U[pick & (L < 0)] = np.minimum(U[pick & (L < 0)], 0.0)
    L, U = np.minimum(L, U), np.maximum(L, U)
    for l_, u_ in ((L0, U0), (L, U)):
        fresh, reused = relax_layer(act, l_, u_, 0), relax_layer_from(base, l_, u_, 0)
        for name in ("L", "U", "ls", "li", "us", "ui", "zlo", "zhi"):
            assert np.array_equal(getattr(fresh, name), getattr(reused, name)), name
    assert not np.array_equal(relax_layer(act, L, U, 0).ls, base.ls)
