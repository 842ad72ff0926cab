"""Cones of truncation maps (TRUNCATION.md section 3: [Ewa25] Lemma 2.1, [CE24] Lemma 3.4).

For W: R^n -> R^m surjective and b in R^m the map tau_{W,b} has base point p = -W^+ b and edges
v_i = W^+ e_i (so W v_i = e_i). Every x is p + x~ + sum_i a_i v_i with x~ in ker W and cone
coordinates a = W x + b, exactly the pre-activations, and tau_{W,b}(x) = W^+ W p + sum_{a_i > 0}
a_i v_i: the map fixes (up to the projection W^+ W) the forward cone S_+ = {a >= 0}, collapses
the backward cone S_- = {a <= 0} to p, and truncates the rest onto faces. This picture is ReLU
only; for another activation the cone coordinates and the sign pattern are still computed, but
the map neither fixes nor collapses.

:func:`cone_lemma` builds, for a point p, a unit direction h and an angle theta, the parameters
(W, b) of [CE24] Lemma 3.4 whose map fixes p + C_theta[h] and collapses p + C_theta[-h] to p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from polylens.errors import ParameterError
from polylens.lenses.truncation.maps import Cumulative, pinv, trajectory
from polylens.nn.activations import ActKind

__all__ = ["COLLAPSED", "FIXED", "STATUS_NAMES", "TRUNCATED", "LayerCone", "cone_lemma", "cone_of", "layer_cones",
           "round_cone_angle", "theta_n"]

Array = np.ndarray

FIXED, TRUNCATED, COLLAPSED = 0, 1, 2
STATUS_NAMES = ("fixed", "truncated", "collapsed")


def theta_n(n: int) -> float:
    """theta_n = 2 arccos(sqrt((n-1)/n)), the widest round cone around (1, ..., 1) inside the positive
    orthant of R^n (TRUNCATION.md section 3; theta_2 = 90 degrees, theta_784 = 4.09 degrees)."""
    if n < 1:
        raise ParameterError(f"theta_n needs n >= 1. Got {n!r} instead.")
    return 2.0 * math.acos(math.sqrt((n - 1) / n))


def round_cone_angle(v: Array, h: Array) -> Array:
    """The angle (radians) between each row of ``v`` and the direction ``h``; a point x is in the round
    cone C_theta[h] when this angle is at most theta / 2."""
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    h = np.asarray(h, dtype=np.float64)
    nv = np.linalg.norm(v, axis=1)
    cos = (v @ h) / np.maximum(nv * np.linalg.norm(h), np.finfo(np.float64).tiny)
    return np.where(nv > 0, np.arccos(np.clip(cos, -1.0, 1.0)), 0.0)


def _householder(a: Array, b: Array) -> Array:
    """An orthogonal matrix R with R a = b for unit vectors a, b (a reflection; the identity if a = b)."""
    w = a - b
    nw = np.linalg.norm(w)
    if nw < 1e-15:
        return np.eye(len(a))
    w = w / nw
    return np.eye(len(a)) - 2.0 * np.outer(w, w)


def cone_lemma(p: Array, h: Array, theta: float, m: int | None = None) -> tuple[Array, Array]:
    """(W, b) of [CE24] Lemma 3.4 (TRUNCATION.md section 3): W = I(n, m) W_theta R, b = -W p, with R
    orthogonal and R h = u_n / |u_n| (u_n = (1, ..., 1)), W_theta = R~ diag(1, lambda, ..., lambda) R~^T
    = lambda I + (1 - lambda) u u^T / |u|^2 (R~ e_1 = u_n / |u_n|), lambda = tan(theta_n/2) / tan(theta/2)
    if theta > theta_n else 1, and I(n, m) the first m coordinates (m <= n, default n). Then W maps
    the round cone C_theta[h] into the positive orthant, so tau_{W,b} fixes p + C_theta[h] up to W^+ W
    and collapses p + C_theta[-h] to p (up to W^+ W). ``theta`` in (0, pi)."""
    p = np.asarray(p, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    n = p.shape[0]
    m = n if m is None else int(m)
    if not (0.0 < theta < math.pi):
        raise ParameterError(f"The 'theta' parameter of cone_lemma must be an angle in (0, pi). Got {theta!r} instead.")
    if h.shape != (n,) or not np.linalg.norm(h) > 0:
        raise ParameterError("cone_lemma needs a nonzero direction h of the same dimension as p.")
    if not 1 <= m <= n:
        raise ParameterError(f"cone_lemma needs 1 <= m <= n = {n}. Got m = {m} instead.")
    u = np.ones(n) / math.sqrt(n)
    R = _householder(h / np.linalg.norm(h), u)
    th = theta_n(n)
    lam = math.tan(th / 2) / math.tan(theta / 2) if theta > th else 1.0
    W_theta = lam * np.eye(n) + (1.0 - lam) * np.outer(u, u)
    W = (W_theta @ R)[:m]
    return W, -W @ p


@dataclass(frozen=True, eq=False)
class LayerCone:
    """The cone of map l (1-based) of a network's truncated form: ``base`` p = -W^(l)+ b^(l) (space,),
    ``edges`` v_i = W^(l)+ e_i as columns (space, d_l), ``coords`` the cone coordinates of the map's
    inputs x^(tau,l-1) (N, d_l) (= the pre-activations of layer l where the identities hold),
    ``status`` per input (FIXED: every a_i >= 0, COLLAPSED: every a_i <= 0, TRUNCATED: mixed signs),
    and ``relu`` (whether the fixed / collapsed picture applies: the layer's activation is ReLU)."""

    layer: int
    base: Array
    edges: Array
    coords: Array
    status: Array
    relu: bool

    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.status == k)) for k, name in enumerate(STATUS_NAMES)}


def cone_of(W: Array, b: Array, W_pinv: Array | None = None) -> tuple[Array, Array]:
    """(p, V): the base point p = -W^+ b and the edges v_i = W^+ e_i (the columns of V = W^+)."""
    P = pinv(W) if W_pinv is None else W_pinv
    return -P @ np.asarray(b, dtype=np.float64), P


def status_of(coords: Array) -> Array:
    """FIXED / TRUNCATED / COLLAPSED for each row of cone coordinates."""
    pos = np.all(coords >= 0, axis=1)
    neg = np.all(coords <= 0, axis=1)
    return np.where(pos, FIXED, np.where(neg, COLLAPSED, TRUNCATED)).astype(np.int8)


def layer_cones(network, x: Array, lift: bool = True, params: Cumulative | None = None) -> tuple[LayerCone, ...]:
    """The cone of every map l = 1..L-1 of ``network`` on the inputs ``x``, with the cone coordinates of
    x^(tau,l-1) and which inputs map l fixes, truncates or collapses (TRUNCATION.md section 3)."""
    tr = trajectory(network, x, lift, params)
    c = tr.params
    out = []
    for l, act in enumerate(network.activations, start=1):
        p, V = cone_of(c.W[l - 1], c.b[l - 1], c.pinvs[l - 1])
        a = tr.points[l - 1] @ c.W[l - 1].T + c.b[l - 1]
        out.append(LayerCone(l, p, V, a, status_of(a), act.kind is ActKind.RELU))
    return tuple(out)
