"""Backward linear bound propagation (CROWN) and CROWN with optimised slopes (alpha-CROWN).

For a specification matrix C (rows are linear functions of one layer's pre-activations ``a_k``)
the backward pass writes ``C a_k`` as a linear function of the input plus a constant, replacing
every activation on the way by one of its two sound lines from the relax layer
(``lower_slope * a + lower_intercept <= f(a) <= upper_slope * a + upper_intercept`` on [L, U]):
where the running coefficient of a neuron is positive its lower line is used, where negative its
upper line. The input coefficients are then minimised over the box in closed form. This gives
sound bounds for every row of C given sound intermediate bounds [L, U]; intermediate bounds are
computed layer by layer with the same pass (spec ``[I; -I]``), intersected with interval bounds.

alpha-CROWN (:func:`alpha_crown`, ``BoundMethod.ALPHA_CROWN``) optimises the slopes of both lines
of every neuron whose slope range is not a single point (for relu: the lower line of unstable
neurons), per input and per specification row (per input only when the spec has many rows and the
activation needs a grid search for its intercepts, see ``_PER_ROW_LIMIT``), by projected gradient
ascent (Adam on torch tensors, the gradient written out: see :func:`_optimise`) inside
:func:`~polylens.relax.lines.slope_range`. The optimiser works on an approximate objective (float
intercepts on a sampled grid); soundness never depends on it: the bound reported is recomputed in
float64 by the rigorous backward pass with intercepts from
:func:`~polylens.relax.lines.tightest_intercept` for the slopes kept, and is the element-wise
maximum of that and plain CROWN's bound, so alpha-CROWN is never looser than CROWN.

Rounding. The backward pass multiplies matrices in float64; its result is made rigorous by the
argument in :func:`_backward`. Nothing here branches on the activation kind: the lines come from
``polylens.relax``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from polylens.bounds.common import (Bounds, BoundMethod, activation_image, as_boxes, interval_affine,
                                    round_down, slack)
from polylens.bounds.ibp import ibp
from polylens.errors import ParameterError
from polylens.nn.activations import Activation
from polylens.nn.network import Network
from polylens.relax.lines import Oriented, Side, pair_lines, slope_range, tightest_intercept
from polylens.tolerances import BOUND_UNDERFLOW_UNIT
from polylens.validation import check_enum, check_int, check_labels

Array = np.ndarray

#: Largest number of float64 entries of one (chunk, K, n) coefficient array in the backward pass:
#: inputs are processed in chunks so that memory stays near 64 MB per array whatever N is.
_CHUNK_ELEMENTS = 1 << 23

#: Points per neuron of the grid on which the optimiser evaluates intercepts (plus the declared
#: inflection points of the activation that fall inside [L, U]).
_GRID = 16

#: alpha-CROWN optimises one slope per (input, spec row, neuron) when K * (neurons) * grid is at
#: most this per input, else one slope per (input, neuron) shared by all spec rows.
_PER_ROW_LIMIT = 1 << 16

#: Largest number of entries of the optimiser's (chunk, groups, neurons, grid) tensors per chunk.
_OPT_CHUNK_ELEMENTS = 1 << 22

#: Torch threads for the optimiser (restored afterwards). Its tensors are small (about a million
#: float32 entries), so threads gain little, and OpenMP threads spinning on a busy machine can
#: make it ten times slower.
_OPT_THREADS = 1

#: Adam step size on the slope's position t in [0, 1] within its slope range, and its decay per step.
_ALPHA_LR = 0.1
_ALPHA_LR_DECAY = 0.95

#: Adam step size of the split multipliers (beta-CROWN; in units of the coefficient they add).
_BETA_LR = 0.05


# -- relaxations of one hidden layer ---------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Relaxation:
    """Lines of one hidden layer over a batch, for the backward pass.

    ``L``, ``U``: (N, n) intermediate bounds. Line arrays ``ls, li, us, ui`` have shape (N, G, n)
    with G = 1 (shared by every spec row) or G = K (one line per spec row):
    ``ls*a + li <= f(a) <= us*a + ui`` for a in [L, U]. ``coef_mag = max(|ls|, |us|) * max(|L|, |U|)``
    and ``icpt_mag = max(|li|, |ui|)`` feed the rounding slack; ``zlo, zhi``: (N, n) enclosure of
    f([L, U]), ``zmag = max(|zlo|, |zhi|)``.
    """

    act: Activation
    L: Array
    U: Array
    ls: Array
    li: Array
    us: Array
    ui: Array
    zlo: Array
    zhi: Array

    @property
    def zmag(self) -> Array:
        return np.maximum(np.abs(self.zlo), np.abs(self.zhi))

    @property
    def coef_mag(self) -> Array:
        amag = np.maximum(np.abs(self.L), np.abs(self.U))[:, None, :]
        return np.maximum(np.abs(self.ls), np.abs(self.us)) * amag

    @property
    def icpt_mag(self) -> Array:
        return np.maximum(np.abs(self.li), np.abs(self.ui))

    def rows(self, sl: "slice | Array") -> "_Relaxation":
        """The relaxation of some of its boxes: a slice or an index array of rows."""
        return _Relaxation(self.act, self.L[sl], self.U[sl], self.ls[sl], self.li[sl], self.us[sl],
                           self.ui[sl], self.zlo[sl], self.zhi[sl])


def relax_layer(act: Activation, L: Array, U: Array, layer: int) -> _Relaxation:
    """The default relaxation (lower and upper lines) of hidden layer ``layer``'s activation over its
    (N, n) pre-activation bounds ``L``, ``U``; lines (N, 1, n)."""
    if not (np.all(np.isfinite(L)) and np.all(np.isfinite(U))):
        raise ParameterError(f"Bound propagation overflowed at hidden layer {layer}: some pre-activation bounds "
                             "are infinite. Check the network's weights and the input boxes for huge values.")
    bad = int(np.count_nonzero(L > U))
    if bad:
        raise ParameterError(f"Hidden layer {layer} has {bad} bounds with lower > upper: the intermediate "
                             "bounds given are not sound bounds of this network over these boxes.")
    shape = L.shape
    ln = pair_lines(act, L.ravel(), U.ravel())

    def r(a):
        return np.asarray(a, dtype=np.float64).reshape(shape)[:, None, :]

    zlo, zhi = activation_image(act, L, U)
    return _Relaxation(act, L, U, r(ln.lower_slope), r(ln.lower_intercept), r(ln.upper_slope),
                       r(ln.upper_intercept), zlo, zhi)


def relax_layer_from(base: _Relaxation, L: Array, U: Array, layer: int) -> _Relaxation:
    """``relax_layer(base.act, L, U, layer)`` for intervals of ``base``'s shape, computing lines only
    where ``(L, U)`` differ from ``base``'s intervals: a neuron's default lines depend on its own
    interval alone, so every other entry is ``base``'s, bit for bit (branch and bound: a node's
    intervals are its root's but for the few neurons its splits narrowed)."""
    if base.L.shape != L.shape or not (np.all(np.isfinite(L)) and np.all(np.isfinite(U))) or np.any(L > U):
        return relax_layer(base.act, L, U, layer)
    changed = (L != base.L) | (U != base.U)
    if not changed.any():
        return base
    rows, cols = np.nonzero(changed)
    ln = pair_lines(base.act, L[rows, cols], U[rows, cols])
    out = []
    for have, new in ((base.ls, ln.lower_slope), (base.li, ln.lower_intercept), (base.us, ln.upper_slope),
                      (base.ui, ln.upper_intercept)):
        a = have.copy()
        a[rows, 0, cols] = new
        out.append(a)
    zlo, zhi = activation_image(base.act, L, U)
    return _Relaxation(base.act, L, U, *out, zlo, zhi)


def with_slopes(base: _Relaxation, ls: Array | None, us: Array | None) -> _Relaxation:
    """``base`` with new slopes (N, G, n) on either side; where a slope differs from the base's, its
    intercept comes from ``tightest_intercept``, elsewhere the base line is kept as it is. Sound for
    any slopes (branch and bound's proof trees replay stored ones through it)."""
    out = base
    for slopes, side, s_name, i_name in ((ls, Side.LOWER, "ls", "li"), (us, Side.UPPER, "us", "ui")):
        if slopes is None:
            continue
        changed = slopes != getattr(base, s_name)
        c = np.array(np.broadcast_to(getattr(base, i_name), slopes.shape))
        if changed.any():
            i, _, h = np.nonzero(changed)
            c[changed] = tightest_intercept(base.act, base.L[i, h], base.U[i, h], slopes[changed], side)
        out = replace(out, **{s_name: slopes, i_name: c})
    return out


# -- the rigorous backward pass --------------------------------------------------------------------

def _bmv(M: Array, v: Array) -> Array:
    """Row-wise dot products ``sum_h M[i, k, h] v[i, (k,) h]`` -> (N, K).

    ``M``: (N, K, n) or (1, K, n) shared by all inputs; ``v``: (N, n), (N, 1, n) or (N, K, n).
    """
    if v.ndim == 3 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim == 3:
        return np.einsum("nkh,nkh->nk", np.broadcast_to(M, v.shape), v)
    if M.shape[0] == 1 and v.shape[0] != 1:
        return v @ M[0].T
    return np.einsum("nkh,nh->nk", M, v)


def _backward(network: Network, k: int, relax: list[_Relaxation], xl: Array, xu: Array,
              C: Array | None, extra: "list[Array | None] | None" = None) -> Array:
    """Rigorous lower bound of ``C a_k`` over each box: returns (N, K).

    ``C``: (N, K, n_k) or None for ``[I; -I]`` (K = 2 n_k; the bounds of ``a_k`` and of ``-a_k``).
    ``k`` in 0 .. H, H meaning the logits. ``relax[j]`` holds the lines of hidden layer j < k.

    Why the float64 result is a bound. Let Lam_j be the *computed* coefficients of ``a_j``. Each
    step uses only real-arithmetic identities or inequalities valid for any coefficients:
    ``Lam_j a_j = (Lam_j W_j) z_{j-1} + Lam_j b_j`` and ``A z >= (A+ ls + A- us) a + (A+ li + A- ui)``.
    Rounding enters three ways, each bounded and subtracted at the end:

    1. ``A_j = fl(Lam_j W_j)`` differs from the real product by at most ``gamma(n_j) |Lam_j| |W_j|``
       entry-wise, which changes ``A_j z`` by at most ``gamma(n_j) |Lam_j| (|W_j| zmag)`` with
       ``zmag >= |z_{j-1}|`` from the intermediate bounds (``|x|`` for j = 0);
    2. ``Lam_{j-1} = fl(A+ ls + A- us)`` has one product per entry (the other term is an exact
       zero): error <= u |A| max(|ls|, |us|), times ``|a| <= max(|L|, |U|)``;
    3. the constant (biases, intercepts and the final ``A+ xl + A- xu``) is one float sum of at most
       m products, m below, off by at most ``gamma(m)`` times the sum of their magnitudes.

    All three are below ``gamma(m)`` times the magnitudes accumulated in ``mag`` (m >= every
    n_j).

    Split multipliers (beta-CROWN). ``extra[j]`` (N, K, n_j), when given, adds the coefficient d
    to ``a_j`` together with the constant ``-(d+ U_j + d- L_j)``: the term ``d+ (a - U) + d- (a - L)``
    is <= 0 wherever ``L_j <= a_j <= U_j``, so adding it to a row can only lower it, and the
    pass stays a lower bound for any d. That is how a branch-and-bound region's split conditions
    (``a <= t`` or ``a >= t``, held in the narrowed intervals) reach the input: the backward pass
    alone does not see them. Rounding: the coefficient used is ``fl(lam + d)``, whose difference
    from ``lam`` has the sign of d (rounding is monotone), so it is a valid multiplier; the
    constant was computed with d itself, off by at most ``u |fl(lam + d)|`` times ``|a|``. Both
    that and the constant's own rounding are covered by adding ``3 |d| max(|L|, |U|)`` to ``mag``
    (``u |lam|`` is already there) and the extra products to ``m``. Gradual underflow adds at most one underflow unit per product on top (Higham eq. 2.8);
    in the coefficients that unit is multiplied by the variable's magnitude, accumulated in
    ``under``. The result ``round_down(value, slack(m, mag) + 2 * unit * under)`` is therefore a
    rigorous lower bound.
    """
    layers = network.layers
    W, b = layers[k].W, layers[k].b
    xmag = np.maximum(np.abs(xl), np.abs(xu))
    m = 2 * (xl.shape[1] + sum(layers[j].out_features for j in range(k + 1))) + 4
    if extra is not None:
        m += 2 * sum(layers[j].out_features for j in range(k) if extra[j] is not None)
    under = np.zeros((xl.shape[0], 1))
    if C is None:
        A = np.concatenate([W, -W])[None]  # exact
        const = np.concatenate([b, -b])[None]
        mag = np.abs(const)
    else:
        const = C @ b
        absC = np.abs(C)
        mag = absC @ np.abs(b)
        A = C @ W
        zm = xmag if k == 0 else relax[k - 1].zmag
        mag = mag + _bmv(absC, zm @ np.abs(W).T)
        under = under + W.shape[0] * zm.sum(-1, keepdims=True)
    for j in range(k - 1, -1, -1):
        r = relax[j]
        Ap, An = np.maximum(A, 0.0), np.minimum(A, 0.0)
        lam = Ap * r.ls + An * r.us
        const = const + _bmv(Ap, r.li) + _bmv(An, r.ui)
        line_mag = r.icpt_mag + r.coef_mag
        mag = mag + _bmv(Ap, line_mag) - _bmv(An, line_mag)
        if extra is not None and extra[j] is not None:
            d = extra[j]
            lam = lam + d
            const = const - _bmv(np.maximum(d, 0.0), r.U) - _bmv(np.minimum(d, 0.0), r.L)
            mag = mag + 3.0 * _bmv(np.abs(d), np.maximum(np.abs(r.L), np.abs(r.U)))
            under = under + np.maximum(np.abs(r.L), np.abs(r.U)).sum(-1, keepdims=True)
        W, b = layers[j].W, layers[j].b
        const = const + lam @ b
        abslam = np.abs(lam)
        mag = mag + abslam @ np.abs(b)
        A = lam @ W
        zm = xmag if j == 0 else relax[j - 1].zmag
        mag = mag + _bmv(abslam, zm @ np.abs(W).T)
        amag = np.maximum(np.abs(r.L), np.abs(r.U))
        under = under + amag.sum(-1, keepdims=True) + W.shape[0] * zm.sum(-1, keepdims=True)
    Ap, An = np.maximum(A, 0.0), np.minimum(A, 0.0)
    value = _bmv(Ap, xl) + _bmv(An, xu) + const
    mag = mag + _bmv(Ap, xmag) - _bmv(An, xmag)
    return round_down(value, slack(m, mag) + (2.0 * BOUND_UNDERFLOW_UNIT) * under)


def _spec_rows(network: Network, k: int, C: Array | None) -> int:
    return 2 * network.layers[k].out_features if C is None else C.shape[1]


def backward_bounds(network: Network, k: int, relax: list[_Relaxation], xl: Array, xu: Array,
                    C: Array | None, extra: "list[Array | None] | None" = None) -> Array:
    """Rigorous lower bounds of the rows ``C`` (N, K, n_k) of affine layer ``k``'s output (hidden
    layer ``k``'s pre-activation; the logits when ``k`` is the number of hidden layers; ``C`` None: of
    every output and of its negation, so the upper bounds are the negated second half) over the boxes [xl, xu], by the backward pass
    over the relaxations of the hidden layers before ``k`` (from :func:`relax_layer`), in input
    chunks small enough to keep memory bounded; (N, K). ``extra``: split multipliers per hidden
    layer (N, K, n_j) or None (see :func:`_backward`). Branch and bound re-bounds its subproblems
    with it (:mod:`polylens.lenses.verify.bab`)."""
    N = xl.shape[0]
    K = _spec_rows(network, k, C)
    width = max(network.widths[: k + 1])
    step = max(1, _CHUNK_ELEMENTS // max(1, K * width))
    if step >= N:
        return _backward(network, k, relax, xl, xu, C, extra)
    out = np.empty((N, K))
    for s in range(0, N, step):
        sl = slice(s, s + step)
        out[sl] = _backward(network, k, [r.rows(sl) for r in relax], xl[sl], xu[sl], None if C is None else C[sl],
                            None if extra is None else [None if e is None else e[sl] for e in extra])
    return out


# -- layer by layer --------------------------------------------------------------------------------

def _layerwise(network: Network, xl: Array, xu: Array, intermediate: Bounds | None, alpha_steps: int,
               method: BoundMethod) -> tuple[Bounds, list[_Relaxation]]:
    """Bounds of every layer, each from the backward pass over the relaxations of the layers before
    it (optimised when ``alpha_steps`` > 0), intersected with interval bounds from the previous
    layer's bounds and with ``intermediate``. Returns the bounds and the hidden relaxations."""
    H = network.n_hidden_layers
    relax: list[_Relaxation] = []
    lowers, uppers = [], []
    lo_z, hi_z = xl, xu
    for k in range(H + 1):
        layer = network.layers[k]
        L, U = interval_affine(layer.W, layer.b, lo_z, hi_z)
        if k > 0:
            n = layer.out_features
            lb = backward_bounds(network, k, relax, xl, xu, None)
            if alpha_steps > 0:
                lb = np.maximum(lb, _alpha_spec(network, k, relax, xl, xu, None, alpha_steps))
            L, U = np.maximum(L, lb[:, :n]), np.minimum(U, -lb[:, n:])
        if intermediate is not None:
            L = np.maximum(L, intermediate.lower[k] if k < H else intermediate.logit_lower)
            U = np.minimum(U, intermediate.upper[k] if k < H else intermediate.logit_upper)
        if k == H:
            return Bounds(tuple(lowers), tuple(uppers), L, U, method), relax
        lowers.append(L)
        uppers.append(U)
        relax.append(relax_layer(network.activations[k], L, U, k))
        lo_z, hi_z = relax[-1].zlo, relax[-1].zhi
    raise AssertionError("unreachable")


def _check_intermediate(network: Network, intermediate: Bounds | None, N: int, where: str) -> None:
    if intermediate is None:
        return
    if not isinstance(intermediate, Bounds):
        raise ParameterError(f"The 'intermediate' parameter of {where} must be a Bounds or None. "
                             f"Got {type(intermediate).__name__} instead.")
    shapes = tuple(a.shape for a in intermediate.lower)
    want = tuple((N, n) for n in network.hidden_widths)
    if shapes != want or intermediate.logit_lower.shape != (N, network.n_classes):
        raise ParameterError(f"{where} got bounds of shapes {shapes} for layers of shapes {want}: "
                             "they must be for the same network and the same boxes.")


def crown(network: Network, xl: Array, xu: Array, *, intermediate: Bounds | None = None) -> Bounds:
    """Backward linear bounds (CROWN) of every hidden pre-activation and every logit.

    ``xl``, ``xu``: (N, d) or (d,). Hidden layers are bounded in order, each by the backward pass
    with spec ``[I; -I]`` over the relaxations of the layers before it, intersected with interval
    propagation from the previous layer's bounds (so every bound is at least as tight as
    :func:`~polylens.bounds.ibp`'s) and with ``intermediate`` when given (sound bounds from
    elsewhere, e.g. LP-tightened ones). Sound in float64 (see :func:`_backward`).

    >>> import numpy as np
    >>> from polylens.nn import Network
    >>> W = [np.array([[1.0], [1.0]]), np.array([[1.0, -1.0]])]
    >>> net = Network.from_arrays(W, [np.zeros(2), np.zeros(1)], "identity")
    >>> b = crown(net, np.array([-1.0]), np.array([1.0]))
    >>> float(abs(b.logit_lower[0, 0]).round(9)), float(abs(b.logit_upper[0, 0]).round(9))  # x - x = 0
    (0.0, 0.0)
    """
    xl, xu = as_boxes(network, xl, xu, "crown")
    _check_intermediate(network, intermediate, xl.shape[0], "crown")
    return _layerwise(network, xl, xu, intermediate, 0, BoundMethod.CROWN)[0]


def alpha_crown(network: Network, xl: Array, xu: Array, *, intermediate: Bounds | None = None,
                steps: int = 20) -> Bounds:
    """CROWN with optimised slopes for every layer's bounds (see the module docstring).

    Each layer's ``[I; -I]`` spec is optimised for ``steps`` Adam steps over the slopes of every
    earlier layer; the rigorous result is intersected with plain CROWN's, so it is never looser.
    Costs about ``steps`` backward passes per layer: prefer :func:`margin_lower_bound` with
    ``BoundMethod.ALPHA_CROWN`` when only the margins matter.
    """
    xl, xu = as_boxes(network, xl, xu, "alpha_crown")
    _check_intermediate(network, intermediate, xl.shape[0], "alpha_crown")
    steps = check_int(steps, "steps", "alpha_crown", 0, 10_000)
    base = _layerwise(network, xl, xu, intermediate, 0, BoundMethod.CROWN)[0]
    return _layerwise(network, xl, xu, base, steps, BoundMethod.ALPHA_CROWN)[0]


# -- margins ---------------------------------------------------------------------------------------

def _labels(network: Network, labels, N: int) -> Array:
    """One label per box; a single label is shared by all N boxes."""
    y = np.asarray(labels)
    if y.ndim == 0:
        y = np.full(N, y)
    return check_labels(y, N, network.n_classes, "margin_lower_bound", "labels", per="box")


def margin_spec(labels: Array, n_classes: int) -> Array:
    """The specification matrix C of shape (N, n_classes, n_classes) with rows ``e_y - e_k``:
    ``(C logits)[i, k] = logit_{y_i} - logit_k`` (row ``y_i`` is zero)."""
    N = labels.shape[0]
    C = np.broadcast_to(-np.eye(n_classes), (N, n_classes, n_classes)).copy()
    C[np.arange(N), :, labels] += 1.0
    return C


def margin_lower_bound(network: Network, xl: Array, xu: Array, labels, method: BoundMethod | str = BoundMethod.CROWN,
                       *, bounds: Bounds | None = None, alpha_steps: int = 20) -> Array:
    """Rigorous lower bounds of ``logit_y - logit_k`` over each box, for every class k.

    Returns (N, n_classes); column ``y_i`` of row i is ``+inf`` (the margin to itself is not a
    constraint), so ``margins.min(axis=1) > 0`` certifies box i.

    - ``IBP``: ``logit_lower[y] - logit_upper[k]`` from interval (or the given) bounds, rounded down.
    - ``CROWN``: the backward pass with the specification matrix ``C = e_y - e_k`` pushed through
      the whole network (:func:`margin_spec`), with intermediate bounds ``bounds`` (default:
      :func:`crown`). Much tighter than differences of logit bounds.
    - ``ALPHA_CROWN``: the same, with the slopes of the lines optimised per input and per spec row
      for ``alpha_steps`` steps; the element-wise maximum with CROWN's bound, so never looser.

    ``xl``, ``xu``: (N, d) or (d,); ``labels``: (N,) ints (or one int for all boxes).
    """
    method = check_enum(method, BoundMethod, "method", "margin_lower_bound")
    alpha_steps = check_int(alpha_steps, "alpha_steps", "margin_lower_bound", 0, 10_000)
    xl, xu = as_boxes(network, xl, xu, "margin_lower_bound")
    N, K = xl.shape[0], network.n_classes
    y = _labels(network, labels, N)
    _check_intermediate(network, bounds, N, "margin_lower_bound")
    rows = np.arange(N)
    if method is BoundMethod.IBP:
        b = bounds if bounds is not None else ibp(network, xl, xu)
        out = np.nextafter(b.logit_lower[rows, y][:, None] - b.logit_upper, -np.inf)
        out = np.where(np.isnan(out), -np.inf, out)
    else:
        b = bounds if bounds is not None else crown(network, xl, xu)
        relax = [relax_layer(act, L, U, l) for l, (act, L, U) in enumerate(zip(network.activations, b.lower, b.upper))]
        C = margin_spec(y, K)
        H = network.n_hidden_layers
        out = backward_bounds(network, H, relax, xl, xu, C)
        if method is BoundMethod.ALPHA_CROWN and alpha_steps > 0:
            out = np.maximum(out, _alpha_spec(network, H, relax, xl, xu, C, alpha_steps))
    out[rows, y] = np.inf
    return out


def spec_lower_bound(network: Network, xl: Array, xu: Array, C: Array, *, bounds: Bounds | None = None) -> Array:
    """Rigorous lower bounds of ``C[i] @ logits`` over box i, by CROWN with the spec pushed backward.

    ``C``: (N, K, n_classes), any rows (e.g. every pair ``e_c - e_k`` at once, which the LP classifier
    needs); ``bounds``: intermediate bounds for the N boxes (default :func:`crown`). Returns (N, K).
    Sound in float64 exactly as :func:`margin_lower_bound` (which is this with ``margin_spec``).
    """
    xl, xu = as_boxes(network, xl, xu, "spec_lower_bound")
    N = xl.shape[0]
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 3 or C.shape[0] != N or C.shape[2] != network.n_classes or not np.all(np.isfinite(C)):
        raise ParameterError(f"The 'C' parameter of spec_lower_bound must be a finite array of shape ({N}, K, "
                             f"{network.n_classes}). Got shape {C.shape} instead.")
    _check_intermediate(network, bounds, N, "spec_lower_bound")
    b = bounds if bounds is not None else crown(network, xl, xu)
    relax = [relax_layer(act, L, U, l) for l, (act, L, U) in enumerate(zip(network.activations, b.lower, b.upper))]
    return backward_bounds(network, network.n_hidden_layers, relax, xl, xu, C)


# -- alpha-CROWN: the optimiser --------------------------------------------------------------------

def _alpha_spec(network: Network, k: int, relax: list[_Relaxation], xl: Array, xu: Array, C: Array | None,
                steps: int) -> Array:
    """Rigorous lower bounds (N, K) of ``C a_k`` with slopes optimised for ``steps`` steps.

    The slopes start from the relaxations' own (CROWN's) and move inside ``slope_range``; for every
    (input, slope group) the iterate with the best approximate objective is kept, and the result is
    recomputed rigorously for those slopes by :func:`_backward`.
    """
    return optimised_bounds(network, k, relax, xl, xu, C, steps)[0]


@dataclass(frozen=True, eq=False)
class Multipliers:
    """What an optimised bound used: per hidden layer j before the bounded one, the relaxation with
    its optimised slopes (``relax[j]``) and the split multipliers ``d[j]`` (N, K, n_j) or None.
    Any values give a sound bound: :func:`backward_bounds` with them re-derives it rigorously."""

    relax: list
    d: list


def optimised_bounds(network: Network, k: int, relax: list[_Relaxation], xl: Array, xu: Array, C: Array | None,
                     steps: int, split_masks: "list[Array | None] | None" = None, *,
                     slopes: bool = True, init: "tuple[list, list] | None" = None) -> tuple[Array, Multipliers]:
    """Rigorous lower bounds (N, K) of ``C a_k`` with slopes (alpha-CROWN) and, where
    ``split_masks[j]`` (N, n_j) marks neurons whose interval carries a branch-and-bound split, split
    multipliers (beta-CROWN) optimised for ``steps`` Adam steps; with what they used.

    The multipliers start at zero and the slopes at CROWN's; for every (input, slope group) the
    iterate with the best approximate objective is kept, and the bound is recomputed rigorously
    for those values by :func:`_backward` (never looser than CROWN with the same intervals at the
    starting point, up to the optimiser keeping its best iterate, which includes the start).
    ``slopes`` False keeps CROWN's slopes and optimises the multipliers alone. ``init``: where to
    start (warm start; branch and bound passes a parent's values to its children): per layer a pair
    of slopes (lower, upper; each (N, groups, n) or None) and per layer multipliers (N, K, n) or
    None; CROWN's slopes and zero multipliers where None.
    """
    no_split = split_masks is None or not any(m is not None and m.any() for m in split_masks[:k])
    if k == 0 or steps == 0:
        return backward_bounds(network, k, relax, xl, xu, C), Multipliers(list(relax[:k]), [None] * k)
    N = xl.shape[0]
    K = _spec_rows(network, k, C)
    widths = [r.L.shape[1] for r in relax[:k]]

    # Slope ranges (N, n) per layer and side; a side is free where some range is non-degenerate.
    ranges, free = [], []
    for r in relax[:k]:
        per_side = []
        for side in (Side.LOWER, Side.UPPER):
            lo, hi = slope_range(r.act, r.L.ravel(), r.U.ravel(), side)
            lo = np.asarray(lo, dtype=np.float64).reshape(r.L.shape)
            hi = np.asarray(hi, dtype=np.float64).reshape(r.L.shape)
            per_side.append((lo, np.maximum(lo, hi)))
        ranges.append(per_side)
        free.append(tuple(slopes and bool(np.any(hi > lo)) for lo, hi in per_side))
    if not any(any(f) for f in free) and no_split:
        return backward_bounds(network, k, relax, xl, xu, C), Multipliers(list(relax[:k]), [None] * k)
    # Grid points per neuron of each layer's intercept search: none where every free side has a
    # single kink (relu), whose intercepts are exact; per-row slopes then cost no more entries than
    # the (N, K, n) coefficients the pass carries anyway.
    grid_pts = [0 if all(not free[j][i] or _single_kink(r.act, i) is not None for i in range(2))
                else _GRID + len(r.act.spec.inflections) for j, r in enumerate(relax[:k])]
    per_row = K * sum(w * g for w, g in zip(widths, grid_pts)) <= _PER_ROW_LIMIT
    groups = K if per_row else 1
    masks = [None] * k if no_split else [None if m is None or not m.any() else m for m in split_masks[:k]]

    # Best slopes per layer and side, (N, groups, n), starting from CROWN's; multipliers (N, K, n).
    best = [[np.array(np.broadcast_to(getattr(r, s), (N, groups, r.L.shape[1]))) if free[j][i] else None
             for i, s in enumerate(("ls", "us"))] for j, r in enumerate(relax[:k])]
    best_d = [None if m is None else np.zeros((N, K, m.shape[1])) for m in masks]
    per_input = groups * sum(w * (g + 1) for w, g in zip(widths, grid_pts)) + K * max(widths)
    step = max(1, _OPT_CHUNK_ELEMENTS // per_input)
    for s in range(0, N, step):
        rows = slice(s, s + step)
        start = None if init is None else (
            [[None if a is None else a[rows] for a in pair] for pair in init[0][:k]],
            [None if d is None else d[rows] for d in init[1][:k]])
        got, got_d = _optimise_chunk(network, k, [r.rows(rows) for r in relax[:k]],
                                     [[(lo[rows], hi[rows]) for lo, hi in rg] for rg in ranges], free,
                                     xl[rows], xu[rows], None if C is None else C[rows], groups, steps,
                                     [None if m is None else m[rows] for m in masks], start)
        for j in range(k):
            for i in range(2):
                if got[j][i] is not None:
                    best[j][i][rows] = got[j][i]
            if got_d[j] is not None:
                best_d[j][rows] = got_d[j]
    tuned = [with_slopes(r, best[j][0], best[j][1]) for j, r in enumerate(relax[:k])]
    return backward_bounds(network, k, tuned, xl, xu, C, best_d), Multipliers(tuned, best_d)


def _single_kink(act: Activation, side: int) -> tuple[float, float] | None:
    """(k, f(k)) where ``act`` is piecewise linear with one kink k at which sigma*f is convex
    (sigma = 1 for the lower side 0, -1 for the upper side 1): there the extreme of f(x) - s*x over an
    interval around k is at k for every slope s between the two pieces' slopes (the free range of
    that side), so the optimiser needs no grid search. None otherwise."""
    F = Oriented.of(act, 1.0 if side == 0 else -1.0)
    if F.piece_slopes is None or len(F.breaks) != 1 or not F.piece_slopes[1] > F.piece_slopes[0]:
        return None
    k = float(F.breaks[0])
    return k, float(act(np.array(k)))


def _optimise_chunk(network: Network, k: int, relax: list[_Relaxation], ranges, free, xl: Array, xu: Array,
                    C: Array | None, groups: int, steps: int, masks: list, init=None) -> tuple[list, list]:
    """:func:`_optimise` with torch limited to ``_OPT_THREADS`` threads (restored afterwards)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(_OPT_THREADS)
    try:
        with torch.no_grad():
            return _optimise(network, k, relax, ranges, free, xl, xu, C, groups, steps, masks, init)
    finally:
        torch.set_num_threads(threads)


def _optimise(network: Network, k: int, relax: list[_Relaxation], ranges, free, xl: Array, xu: Array,
              C: Array | None, groups: int, steps: int, masks: list, init=None) -> tuple[list, list]:
    """Projected Adam ascent on the slopes (and split multipliers) of one chunk of inputs; returns
    the best slopes (n_c, groups, n_j) per layer and free side (None for a fixed side) and the
    best multipliers (n_c, K, n_j) per layer (None where ``masks[j]`` is None).

    The objective is the backward pass of :func:`_backward` in float32 (torch tensors): going down
    from layer k, the coefficient A_j of layer j's output becomes ``lam_j = A+ s_l + A- s_u + d``
    on its pre-activation (``const += A+ c_l + A- c_u - d+ U - d- L + lam_j b_j``) and
    ``A_{j-1} = lam_j W_j``; at the input, ``A x_mid - |A| x_rad + const``. Multipliers d (free
    sign, only on the split neurons of ``masks[j]``) are beta-CROWN's.

    The gradient is written out rather than taken from autograd: it is the relaxation evaluated at
    the point where the bound is attained. With ``x* = x_mid - sign(A_in) x_rad`` (the minimising
    box corner), ``z_0 = W_0 x* + b_0`` is the objective's derivative in lam_0, and the derivative
    in lam_{j+1} is ``z_{j+1} = W_{j+1} h_j + b_{j+1}``, where h_j is the line that A_j's sign
    chose, evaluated at z_j. Per neuron, d/ds_l = A+ (z - x_c) and d/ds_u = A- (z - x_c) where the
    line's intercept is ``f(x_c) - s x_c`` (x_c: the kink of a relu-like side, else the grid point
    where the intercept search stopped; Danskin's theorem), and d/dd = z - U [d >= 0] - L [d <= 0].

    Only (input, neuron) pairs whose slope range has positive width have parameters (for relu, the
    unstable neurons), held packed (P, groups) with integer indices into the dense (n_c, groups, n)
    lines; multipliers are packed (P_d, K) on the split neurons. A slope s is held as its position
    t in [0, 1] within its range, so one step size suits every neuron. The tensors are small and
    the cost is memory traffic per element-wise pass, so the packing (Adam and the multipliers
    touch only the few free entries) and the hand-written gradient (one sweep of matrix products
    each way, a few passes per layer) are what make a step cheap. The objective is approximate
    (float32, grid intercepts); the bound reported is recomputed rigorously in float64 by the caller.
    """
    import torch

    dtype = torch.float32

    def T(a):
        return torch.tensor(np.asarray(a), dtype=dtype)

    def I(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64).reshape(-1))

    layers = network.layers
    W, b = layers[k].W, layers[k].b
    if C is None:
        A0 = T(np.concatenate([W, -W]))[None]
        c0 = T(np.concatenate([b, -b]))[None]
    else:
        A0, c0 = T(C @ W), T(C @ b)
    Ws = [T(layers[j].W) for j in range(k)]
    WTs = [w.T.contiguous() for w in Ws]
    bs = [T(layers[j].b) for j in range(k)]
    xmid, xrad = T(0.5 * (xl + xu))[:, None, :], T(0.5 * (xu - xl))[:, None, :]
    n_c = xl.shape[0]
    K = A0.shape[1]
    t01 = np.linspace(0.0, 1.0, _GRID)
    kg = np.arange(groups)

    # Per layer and side: the fixed lines (n_c, 1, n) and, where some pair is free, its packed
    # parameters: t (P, groups), range start and width (P, 1), the flat indices of (pair, group) in
    # a dense (n_c, groups, n) array and of the pair in (n_c, n), the dense base lines to write the
    # free slopes into, and the kink or the grid points with f there (P, 1, G).
    fixed, params = [], []
    for j, r in enumerate(relax):
        fixed.append(((T(r.ls), T(r.li)), (T(r.us), T(r.ui))))
        side_params = []
        n = r.L.shape[1]
        for i, s0 in enumerate((r.ls, r.us)):
            lo, hi = ranges[j][i]
            mask = hi > lo
            if not (free[j][i] and mask.any()):
                side_params.append(None)
                continue
            rr, cc = np.nonzero(mask)
            lo_p, width = lo[rr, cc][:, None], (hi - lo)[rr, cc][:, None]
            s_init = None if init is None else init[0][j][i]
            S = (s0 if s_init is None else np.broadcast_to(s_init, (n_c,) + s_init.shape[1:]))[rr, :, cc]
            t0 = np.broadcast_to(np.clip((S - lo_p) / width, 0.0, 1.0), (rr.size, groups))
            c_fix = r.li if i == 0 else r.ui
            q = dict(rows=rr, cols=cc, t=T(t0).contiguous(), lo=T(lo_p), width=T(width),
                     at=I((rr[:, None] * groups + kg) * n + cc[:, None]), at2=I(rr * n + cc),
                     base_s=T(np.broadcast_to(s0, (n_c, groups, n))).contiguous(),
                     base_c=T(np.broadcast_to(c_fix, (n_c, groups, n))).contiguous(), kink=_single_kink(r.act, i))
            q["const_c"] = q["kink"] is not None and q["kink"] == (0.0, 0.0) and not np.any(c_fix[rr, 0, cc])
            if q["kink"] is None:
                Lf, Uf = r.L[rr, cc][:, None], r.U[rr, cc][:, None]
                pts = [Lf + (Uf - Lf) * t01] + [np.clip(np.full(Lf.shape, v), Lf, Uf) for v in r.act.spec.inflections]
                xg = np.concatenate(pts, axis=1)
                q["xg"], q["fg"] = T(xg)[:, None], T(r.act(xg))[:, None]
            side_params.append(q)
        params.append(side_params)

    def line(j, i, lowest):
        """Slopes, intercepts (n_c, groups, n) of one side of layer j, and the abscissa x_c (P, groups)
        of each free line's intercept (d c / d s = -x_c; None for a fixed side or x_c = 0)."""
        p = params[j][i]
        if p is None:
            return fixed[j][i] + (None,)
        s = p["lo"] + p["width"] * p["t"]
        S = p["base_s"].clone()
        S.view(-1).index_copy_(0, p["at"], s.reshape(-1))
        if p["const_c"]:
            return S, p["base_c"], None  # relu: every lower line through the origin, intercept 0
        if p["kink"] is not None:
            # A single kink that this side's F bends upwards at: every slope of its range supports
            # there, exactly.
            kx, ky = p["kink"]
            c, xc = ky - s * kx, torch.full_like(s, kx)
        else:
            gap = p["fg"] - s[..., None] * p["xg"]
            at = (gap.argmin(-1) if lowest else gap.argmax(-1))[..., None]
            fg, xg = (p[name].expand(s.shape + p[name].shape[-1:]) for name in ("fg", "xg"))
            xc = xg.gather(-1, at)[..., 0]
            c = fg.gather(-1, at)[..., 0] - s * xc
        Cc = p["base_c"].clone()
        Cc.view(-1).index_copy_(0, p["at"], c.reshape(-1))
        return S, Cc, xc

    # Multipliers, packed per layer: values (P_d, K), flat indices into (n_c, K, n) and (n_c, K),
    # and the split neurons' intervals (P_d, 1).
    d_init = [None] * k if init is None else init[1]
    dvar = []
    for j, m in enumerate(masks):
        if m is None or not m.any():
            dvar.append(None)
            continue
        rd, cd = np.nonzero(m)
        n = m.shape[1]
        v0 = np.zeros((rd.size, K)) if d_init[j] is None else np.broadcast_to(d_init[j], (n_c, K, n))[rd, :, cd]
        dvar.append(dict(rows=rd, cols=cd, d=T(v0).contiguous(), at=I((rd[:, None] * K + np.arange(K)) * n + cd[:, None]),
                         at_c=I(rd[:, None] * K + np.arange(K)), L=T(relax[j].L[rd, cd])[:, None],
                         U=T(relax[j].U[rd, cd])[:, None]))

    def mm(M, Wt):
        """(a, b, n) @ (n, m) as one matrix product."""
        return (M.reshape(-1, M.shape[-1]) @ Wt).reshape(M.shape[:-1] + (Wt.shape[1],))

    def value_and_grads(want_grads: bool):
        A, const = A0, c0.expand(n_c, K).contiguous()
        saved = [None] * k
        for j in range(k - 1, -1, -1):
            ls, li, xl_ = line(j, 0, True)
            us, ui, xu_ = line(j, 1, False)
            Ap = A.clamp(min=0.0)
            An = A - Ap  # a zero A counts as positive
            const = const + (Ap * li).sum(-1) + (An * ui).sum(-1)
            lam = (Ap * ls + An * us).expand(n_c, K, -1).contiguous()
            dv = dvar[j]
            if dv is not None:
                d = dv["d"]
                dp = d.clamp(min=0.0)
                lam.view(-1).index_add_(0, dv["at"], d.reshape(-1))
                const.view(-1).index_add_(0, dv["at_c"], (-(dp * dv["U"] + (d - dp) * dv["L"])).reshape(-1))
            const = const + lam @ bs[j]
            saved[j] = (Ap, An, ls, li, us, ui, xl_, xu_)
            A = mm(lam, Ws[j])
        val = (A * xmid).sum(-1) - (A.abs() * xrad).sum(-1) + const
        if not want_grads:
            return val, None, None
        # The derivative sweep, upwards: z_j = d val / d lam_j, (n_c, K, n_j).
        z = mm(xmid - torch.sign(A) * xrad, WTs[0]) + bs[0]
        g_t, g_d = [[None, None] for _ in range(k)], [None] * k
        for j in range(k):
            Ap, An, ls, li, us, ui, xl_, xu_ = saved[j]
            for i, (Aside, xc) in enumerate(((Ap, xl_), (An, xu_))):
                p = params[j][i]
                if p is None:
                    continue
                Az = Aside * z
                if groups == 1:
                    g = Az.sum(1).reshape(-1)[p["at2"]][:, None]
                    if xc is not None:
                        g = g - Aside.expand_as(Az).sum(1).reshape(-1)[p["at2"]][:, None] * xc
                else:
                    g = Az.reshape(-1)[p["at"]].reshape(-1, groups)
                    if xc is not None:
                        g = g - Aside.expand_as(Az).reshape(-1)[p["at"]].reshape(-1, groups) * xc
                g_t[j][i] = g * p["width"]
            dv = dvar[j]
            if dv is not None:
                d = dv["d"]
                g_d[j] = z.reshape(-1)[dv["at"]].reshape(d.shape) - dv["U"] * (d >= 0).to(dtype) \
                    - dv["L"] * (d <= 0).to(dtype)
            if j + 1 < k:
                pos = (An == 0).to(dtype)  # 1 where A >= 0 (the lower line's side, zero included)
                lz, uz = ls * z + li, us * z + ui
                z = mm(uz + pos * (lz - uz), WTs[j + 1]) + bs[j + 1]
        return val, g_t, g_d

    slots = [(j, i) for j, sp in enumerate(params) for i, p in enumerate(sp) if p is not None]
    dslots = [j for j in range(k) if dvar[j] is not None]
    tensors = [params[j][i]["t"] for j, i in slots] + [dvar[j]["d"] for j in dslots]
    m1 = [torch.zeros_like(p) for p in tensors]
    m2 = [torch.zeros_like(p) for p in tensors]
    beta1, beta2, tiny = 0.9, 0.999, 1e-8
    best_score = torch.full((n_c, groups), -torch.inf, dtype=dtype)
    best = [p.clone() for p in tensors]
    row_of = [torch.from_numpy(params[j][i]["rows"]) for j, i in slots] + \
             [torch.from_numpy(dvar[j]["rows"]) for j in dslots]
    for it in range(steps + 1):
        val, g_t, g_d = value_and_grads(it < steps)
        score = val if groups > 1 else val.sum(-1, keepdim=True)
        better = (score > best_score).to(dtype)
        best_score = torch.maximum(score, best_score)
        for q, p in enumerate(tensors):
            take = better[row_of[q]]  # (P, groups): the input of each entry improved
            if q >= len(slots) and groups == 1:
                take = take.expand_as(p)
            best[q] = p * take + best[q] * (1.0 - take)
        if it == steps:
            break
        lr = _ALPHA_LR * _ALPHA_LR_DECAY ** it
        lr_d = _BETA_LR * _ALPHA_LR_DECAY ** it
        grads = [g_t[j][i] for j, i in slots] + [g_d[j] for j in dslots]
        for q, (p, g, a, v) in enumerate(zip(tensors, grads, m1, m2)):
            a.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step = (a / (1 - beta1 ** (it + 1))) / ((v / (1 - beta2 ** (it + 1))).sqrt() + tiny)
            if q < len(slots):
                p.add_(step, alpha=lr).clamp_(0.0, 1.0)
            else:
                p.add_(step, alpha=lr_d)

    out = [[None, None] for _ in range(k)]
    for j, r in enumerate(relax):
        for i, s0 in enumerate((r.ls, r.us)):
            if free[j][i]:
                out[j][i] = np.array(np.broadcast_to(s0, (n_c, groups, s0.shape[2])))
    for q, (j, i) in enumerate(slots):
        p = params[j][i]
        out[j][i][p["rows"], :, p["cols"]] = (p["lo"] + p["width"] * best[q]).numpy()
    out_d = [None] * k
    for q, j in enumerate(dslots):
        dv = dvar[j]
        full = np.zeros((n_c, K, masks[j].shape[1]))
        full[dv["rows"], :, dv["cols"]] = best[len(slots) + q].numpy()
        out_d[j] = full
    return out, out_d
