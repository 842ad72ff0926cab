"""Truncation maps and their identities (TRUNCATION.md section 1, with the lift of section 2).

A network x^(0) = x, x^(l) = sigma(W_l x^(l-1) + b_l) (l = 1..L-1), x^(L) = W_L x^(L-1) + b_L is
rewritten as L-1 maps of its input space onto itself followed by one affine map:

* the truncation map tau_{W,b}(x) = W^+ (sigma(W x + b) - b) ([CE24] Def. 3.1), :func:`tau`;
* cumulative parameters W^(1) = W_1, W^(l) = W_l W^(l-1), b^(l) = W_l b^(l-1) + b_l
  ([CE24] (3.4), (3.5)), :func:`cumulative`;
* the truncated trajectory x^(tau,0) = x, x^(tau,l) = tau_{W^(l),b^(l)}(x^(tau,l-1)), :func:`trajectory`;
* the cumulative form x^(l) = W^(l) x^(tau,l) + b^(l) and x^(L) = W^(L) x^(tau,L-1) + b^(L)
  ([CE24] Prop. 3.2), which holds when every product W^(l) (l <= L-1) is surjective,
  :func:`identities` (residuals, and the hypothesis that failed where one does).

The layer identity sigma(W x + b) = W tau_{W,b}(x) + b needs only W W^+ = 1, so all of this holds
for any element-wise sigma (GELU included); the cone picture (:mod:`.cones`) is ReLU only.
When d_0 < d_1 >= d_2 >= ... the first layer is lifted (section 2): the maps act on R^(d_1), on
iota(d_0, d_1) x, with W~_1 an invertible extension of W_1, and W~^(l) = W_l ... W_2 W~_1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polylens.lenses.truncation.lift import invertible_extension, iota, numerical_rank
from polylens.nn.activations import ActKind, Activation

__all__ = ["IDENTITY_TOL", "Cumulative", "IdentityRow", "Trajectory", "cumulative", "identities", "pinv", "tau",
           "trajectory"]

Array = np.ndarray

#: An identity holds when its largest absolute residual is at most IDENTITY_TOL * (1 + the largest
#: absolute value it compares). Surjective random networks give residuals near 1e-15 (a few ulps per
#: product); a failed hypothesis gives residuals of the order of the values themselves.
IDENTITY_TOL = 1e-9

RELU = Activation(ActKind.RELU)


def pinv(W: Array) -> Array:
    """The Moore-Penrose pseudo-inverse W^+ (numpy's SVD rule for the rank)."""
    return np.linalg.pinv(np.asarray(W, dtype=np.float64))


def tau(W: Array, b: Array, x: Array, act: Activation = RELU, W_pinv: Array | None = None) -> Array:
    """The truncation map tau_{W,b}(x) = W^+ (sigma(W x + b) - b) ([CE24] Def. 3.1), batched over the
    rows of ``x`` (N, n) (a single (n,) vector gives an (n,) result). Any W (the pseudo-inverse is
    taken); ``act`` is sigma (ReLU by default, any element-wise activation allowed)."""
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    single = x.ndim == 1
    X = x[None, :] if single else x
    P = pinv(W) if W_pinv is None else W_pinv
    out = (act(X @ W.T + b) - b) @ P.T
    return out[0] if single else out


@dataclass(frozen=True, eq=False)
class Cumulative:
    """Cumulative parameters of a network (TRUNCATION.md section 1): ``W[l-1]`` = W^(l) and
    ``b[l-1]`` = b^(l) for l = 1..L, their pseudo-inverses for l = 1..L-1, and whether the first
    layer was lifted (section 2): then W^(l) = W_l ... W_2 W~_1 acts on R^(d_1) and inputs enter as
    iota(d_0, d_1) x. ``space`` is the dimension the maps act on (d_0, or d_1 when lifted)."""

    W: tuple[Array, ...]
    b: tuple[Array, ...]
    pinvs: tuple[Array, ...]
    lifted: bool
    space: int
    lift_problem: str = ""
    extension: Array | None = None

    def embed(self, x: Array) -> Array:
        """Inputs (N, d_0) in the space the maps act on: x itself, or iota(d_0, d_1) x when lifted."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if not self.lifted:
            return x
        return x @ iota(x.shape[1], self.space).T


def _widens_first(network) -> bool:
    return network.n_hidden_layers >= 1 and network.widths[1] > network.widths[0]


def cumulative(network, lift: bool = True) -> Cumulative:
    """W^(l), b^(l) for l = 1..L ([CE24] (3.4), (3.5)). With ``lift`` and a first layer wider than the
    input (d_0 < d_1) whose W_1 is injective, the first layer is replaced by an invertible extension
    W~_1 ([Ewa25] Lemma 2.2) and the maps act on R^(d_1); ``lift_problem`` says why a wanted lift
    was impossible (W_1 not injective)."""
    layers = network.layers
    W1 = layers[0].W
    lifted, problem, ext = False, "", None
    if lift and _widens_first(network):
        Wt, ok = invertible_extension(W1)
        if ok:
            lifted, ext, W1 = True, Wt, Wt
        else:
            problem = (f"W_1 is not injective (rank {numerical_rank(layers[0].W)} < d_0 = {network.widths[0]}), "
                       "so the lift of section 2 does not apply")
    Ws, bs = [W1], [layers[0].b.copy()]
    for layer in layers[1:]:
        Ws.append(layer.W @ Ws[-1])
        bs.append(layer.W @ bs[-1] + layer.b)
    pinvs = tuple(pinv(W) for W in Ws[:-1])
    return Cumulative(tuple(Ws), tuple(bs), pinvs, lifted, int(W1.shape[1]), problem, ext)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """The truncated trajectory of a batch: ``points[l]`` = x^(tau,l) (N, space) for l = 0..L-1
    (``points[0]`` is the embedded input), with the cumulative parameters that made it."""

    points: tuple[Array, ...]
    params: Cumulative


def trajectory(network, x: Array, lift: bool = True, params: Cumulative | None = None) -> Trajectory:
    """x^(tau,0) = x (embedded by iota when lifted), x^(tau,l) = tau_{W^(l),b^(l)}(x^(tau,l-1)) for
    l = 1..L-1, each map with the activation of hidden layer l (TRUNCATION.md section 1)."""
    c = cumulative(network, lift) if params is None else params
    pts = [c.embed(x)]
    for l, act in enumerate(network.activations):
        pts.append(tau(c.W[l], c.b[l], pts[-1], act, c.pinvs[l]))
    return Trajectory(tuple(pts), c)


@dataclass(frozen=True)
class IdentityRow:
    """One identity: ``layer`` l (1..L-1: x^(l) = W^(l) x^(tau,l) + b^(l); L: the output identity),
    ``residual`` the largest absolute difference over the inputs, ``holds`` (residual within
    :data:`IDENTITY_TOL`), ``lifted`` (the width-increase rewriting was used), ``reason`` (the failed
    hypothesis when it does not hold; a note otherwise, or ""), ``projector`` the residual of the
    projector facts of [CE24] Lemma 3.3 at this layer (None for the output row)."""

    layer: int
    residual: float
    holds: bool
    lifted: bool
    reason: str
    projector: float | None = None
    scale: float = 0.0

    def to_dict(self) -> dict:
        return {"layer": self.layer, "residual": self.residual, "holds": self.holds, "lifted": self.lifted,
                "reason": self.reason, "projector_residual": self.projector}


def hypothesis_failures(network, params: Cumulative) -> list[tuple[int, str]]:
    """Every failed hypothesis of [CE24] Prop. 3.2 (with the lift of section 2), as (layer k, text),
    for k = 1..L-1, in layer order: a widening layer, a rank-deficient W_k, a non-surjective
    product W^(k)."""
    out = []
    widths = network.widths
    for k in range(1, network.n_hidden_layers + 1):
        d_prev, d_k = (params.space if (k == 1 and params.lifted) else widths[k - 1]), widths[k]
        Wk = params.W[0] if k == 1 else network.layers[k - 1].W
        if d_k > d_prev:
            text = f"layer {k} widens ({widths[k - 1]} -> {d_k}), so W_{k} cannot be surjective"
            if k == 1 and params.lift_problem:
                text += f"; {params.lift_problem}"
            elif k > 1:
                text += " (section 2 lifts only the first layer)"
            out.append((k, text))
            continue
        r = numerical_rank(Wk)
        if r < d_k:
            out.append((k, f"W_{k} is rank-deficient (rank {r} < {d_k})"))
            continue
        rp = numerical_rank(params.W[k - 1])
        if rp < d_k:
            out.append((k, f"the product W^({k}) = W_{k}...W_1 is not surjective (rank {rp} < {d_k})"))
    return out


def identities(network, x: Array, lift: bool = True) -> tuple[IdentityRow, ...]:
    """The cumulative identities of [CE24] Prop. 3.2 on the inputs ``x`` (N, d_0): one row per hidden
    layer l = 1..L-1 (x^(l) = W^(l) x^(tau,l) + b^(l)) and one for the output (x^(L) =
    W^(L) x^(tau,L-1) + b^(L)), each with its residual and, where it fails, the hypothesis that
    broke (the earliest failed one at or before that layer)."""
    fp = network.forward(x)
    tr = trajectory(network, fp.x, lift)
    c = tr.params
    fails = hypothesis_failures(network, c)
    L = len(network.layers)
    rows = []
    P_prev = np.eye(c.space)
    for l in range(1, L + 1):
        if l < L:
            target = fp.post[l - 1]
            approx = tr.points[l] @ c.W[l - 1].T + c.b[l - 1]
            Pl = c.pinvs[l - 1] @ c.W[l - 1]
            proj = float(max(np.max(np.abs(Pl @ P_prev - Pl), initial=0.0),
                             np.max(np.abs(c.W[l - 1] @ P_prev - c.W[l - 1]), initial=0.0)))
            P_prev = Pl
        else:
            target = fp.logits
            approx = tr.points[L - 1] @ c.W[L - 1].T + c.b[L - 1]
            proj = None
        residual = float(np.max(np.abs(target - approx), initial=0.0))
        scale = float(np.max(np.abs(target), initial=0.0))
        holds = bool(residual <= IDENTITY_TOL * (1.0 + scale))
        broken = [t for k, t in fails if k <= min(l, L - 1)]
        if not holds:
            reason = broken[0] if broken else (
                f"every hypothesis holds, but W^({min(l, L - 1)}) is ill-conditioned (condition number "
                f"{np.linalg.cond(c.W[min(l, L - 1) - 1]):.3g}): the residual is rounding")
        else:
            reason = f"holds on these inputs although {broken[0]}" if broken else ""
        rows.append(IdentityRow(l, residual, holds, c.lifted, reason, proj, scale))
    return tuple(rows)


def scale_invariance_residual(W: Array, b: Array, x: Array, c: float, act: Activation = RELU) -> float:
    """max |tau_{cW,cb}(x) - tau_{W,b}(x)| over the rows of x: zero (up to rounding) for ReLU and any
    c > 0 ([CE23] (2.66), positive homogeneity), not for GELU."""
    return float(np.max(np.abs(tau(c * np.asarray(W), c * np.asarray(b), x, act) - tau(W, b, x, act)), initial=0.0))
