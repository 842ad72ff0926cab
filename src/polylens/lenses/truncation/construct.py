"""Networks built from geometry, with weights in closed form (TRUNCATION.md section 4).

* :func:`sls_network`: [CE24] Theorem 5.2. From an SLS certificate (order, points p_j, hyperplanes)
  of data in R^M with Q <= M classes, Q cone maps of width M (layer j: the cone lemma at p_j, its
  backward cone holding X_j, its forward cone the earlier p_i and the later classes), then the last
  layer W^(Q+1) = Y [p_1 ... p_Q]^+ with b = 0. The proof's last step needs the p_j linearly
  independent, a hypothesis stated only inside the proof: it is checked, and named when it fails.
* :func:`clustered_network`: [CE24] Prop. 4.1, Cor. 4.2. Classes in balls of radius delta around
  their means: the maps act on the span of the means (width Q), with Q(M + Q^2) weights,
  independent of the number of points; the cone angles are checked on the balls, not the points.
* :func:`simplex_network`: [Ewa25] Prop. 3.1, Cor. 3.2, Thm. 3.3. One class inside an n-simplex,
  the other outside: R^n -> R^(n+1) -> R^2 -> R^2. The first layer's lifted truncation map
  tau o iota(n, n+1) leaves the inside on an affine hyperplane and pushes the outside off it (the
  simplex's facet normals sum to zero), and a two-neuron ramp reads that off.

Each returns a :class:`Construction`: a normal polylens :class:`~polylens.nn.Network` (ReLU), its
squared loss against the one-hot labels on the training points, and its parameter count beside the
formula. Cumulative parameters are designed first (one cone per map) and turned into layers by
W_l = W^(l) (W^(l-1))^+ (exact where W^(l-1) is invertible, or the rows share its row space), b_l =
b^(l) - W_l b^(l-1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from polylens.errors import ParameterError
from polylens.lenses.truncation.cones import cone_lemma, round_cone_angle
from polylens.nn import Network

__all__ = ["Construction", "ConstructionError", "clustered_network", "one_hot", "simplex_network", "sls_network"]

Array = np.ndarray

#: p_j count as linearly dependent when the smallest singular value of [p_1 ... p_Q] is below this
#: times the largest (the last layer Y P^+ would amplify rounding by its inverse).
DEPENDENCE_TOL = 1e-8


class ConstructionError(ParameterError):
    """The data fails a hypothesis of the construction (one line naming it); exit status 2."""


@dataclass(frozen=True, eq=False)
class Construction:
    """A constructed network: ``method``, the ``network``, ``loss`` (mean squared error of the logits
    against the one-hot labels over the training points; zero up to float64), ``max_error`` (largest
    absolute logit error), ``n_params`` / ``n_weights`` and the paper's ``formula`` for them, with
    its value ``formula_value`` and what it counts (``counts``), and ``details`` (the points p_j,
    angles, the order)."""

    method: str
    network: Network
    loss: float
    max_error: float
    n_params: int
    n_weights: int
    formula: str
    formula_value: int
    counts: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"method": self.method, "architecture": self.network.architecture, "loss": self.loss,
                "max_error": self.max_error, "n_params": self.n_params, "n_weights": self.n_weights,
                "formula": self.formula, "formula_value": self.formula_value, "formula_counts": self.counts,
                "formula_matches": (self.n_weights if self.counts == "weights" else self.n_params) == self.formula_value,
                **self.details}


def one_hot(y: Array, K: int) -> Array:
    """The labels as one-hot rows e_{y} (N, K)."""
    out = np.zeros((len(y), K))
    out[np.arange(len(y)), np.asarray(y, dtype=np.int64)] = 1.0
    return out


def _finish(method: str, Wc: list[Array], bc: list[Array], x: Array, y: Array, K: int, formula: str,
            formula_value: int, counts: str, details: dict) -> Construction:
    """Layers from cumulative parameters (W^(l), b^(l)), l = 1..L, then the loss on (x, y)."""
    Ws, bs = [Wc[0]], [bc[0]]
    for l in range(1, len(Wc)):
        Wl = Wc[l] @ np.linalg.pinv(Wc[l - 1])
        Ws.append(Wl)
        bs.append(bc[l] - Wl @ bc[l - 1])
    net = Network.from_arrays(Ws, bs, "relu")
    err = net(x) - one_hot(y, K)
    n_weights = int(sum(W.size for W in Ws))
    return Construction(method, net, float(np.mean(err ** 2)), float(np.max(np.abs(err))), net.n_params, n_weights,
                        formula, int(formula_value), counts, details)


def _classes(y: Array) -> tuple[tuple[int, ...], int]:
    classes = tuple(int(c) for c in np.unique(y))
    if len(classes) < 2:
        raise ConstructionError("The data has fewer than two classes; there is nothing to separate.")
    return classes, max(classes) + 1


def _check_independent(P: Array, what: str) -> float:
    """The smallest over the largest singular value of the columns of P; ConstructionError naming the
    hypothesis of [CE24] Thm. 5.2's proof when they are (numerically) dependent."""
    M, Q = P.shape
    if Q > M:
        raise ConstructionError(f"The points p_j are linearly dependent: {Q} classes in R^{M} (Thm. 5.2 needs Q <= M "
                                "and, in its proof, p_1..p_Q linearly independent).")
    s = np.linalg.svd(P, compute_uv=False)
    ratio = float(s[-1] / s[0]) if s[0] > 0 else 0.0
    if ratio < DEPENDENCE_TOL:
        raise ConstructionError(f"The points p_j are linearly dependent ({what}; smallest/largest singular value of "
                                f"[p_1 ... p_Q] {ratio:.2g}): the last layer Y [p_1 ... p_Q]^+ cannot reach the labels "
                                "(the hypothesis hidden in the proof of CE24 Thm. 5.2).")
    return ratio


def _half_angle(neg: Array, pos: Array, p: Array, h: Array) -> float:
    """theta/2 for a cone at p with axis h holding ``pos`` forward and ``neg`` backward: halfway between
    the widest angle needed and pi/2."""
    need = max(float(round_cone_angle(pos - p, h).max(initial=0.0)), float(round_cone_angle(neg - p, -h).max(initial=0.0)))
    if not need < math.pi / 2:
        raise ConstructionError("A class is not strictly on one side of its cone's hyperplane; the certificate is broken.")
    return need + 0.5 * (math.pi / 2 - need)


def sls_network(x: Array, y: Array, cert) -> Construction:
    """[CE24] Theorem 5.2 from an SLS certificate ``cert`` (:class:`~.sls.SLSResult` with ``sls``
    True): Q maps of width M, then Q' = max label + 1 outputs with logits = one-hot labels."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    classes, K = _classes(y)
    if not cert.sls:
        raise ConstructionError(f"The data is not SLS in any order found: {cert.reason}")
    M = x.shape[1]
    P = np.stack([s.p for s in cert.steps], axis=1)  # (M, Q)
    ratio = _check_independent(P, f"{len(cert.steps)} classes in R^{M}")
    Wc, bc, angles = [], [], []
    order = [s.cls for s in cert.steps]
    for j, s in enumerate(cert.steps):
        neg = x[y == s.cls]
        pos = np.concatenate([x[np.isin(y, order[j + 1:])], P[:, :j].T], axis=0)
        h = s.w / np.linalg.norm(s.w)
        half = _half_angle(neg, pos, s.p, h)
        W, b = cone_lemma(s.p, h, 2 * half)
        Wc.append(W)
        bc.append(b)
        angles.append(math.degrees(2 * half))
    Y = np.zeros((K, len(order)))
    Y[order, np.arange(len(order))] = 1.0
    Wc.append(Y @ np.linalg.pinv(P))
    bc.append(np.zeros(K))
    Q = len(order)
    return _finish("sls", Wc, bc, x, y, K, "Q (M + 1)^2 + Q (K - Q)(M + 1): Q maps of width M and K outputs "
                   "(Q (M + 1)^2 when K = Q)", Q * (M + 1) ** 2 + Q * 0 + (K - Q) * (M + 1), "params",
                   {"order": order, "cone_angles_deg": angles, "p": P.T.tolist(), "p_independence": ratio,
                    "theorem": "CE24 Thm. 5.2"})


def _ball_angle(centre: Array, radius: float, p: Array, h: Array) -> float:
    """The widest angle from h of a point of the ball B(centre, radius) seen from p (pi if p is inside)."""
    v = centre - p
    d = float(np.linalg.norm(v))
    if d <= radius:
        return math.pi
    return float(round_cone_angle(v[None, :], h)[0]) + math.asin(radius / d)


def clustered_network(x: Array, y: Array, grid: int = 19) -> Construction:
    """[CE24] Prop. 4.1 / Cor. 4.2: classes in balls B(mu_j, delta). The maps act on V = span of the
    means (orthonormal basis U, width Q); map j is the cone lemma in V at p_j = m + t_j (mu_j - m)
    with axis towards the barycentre m, t_j chosen on a grid to need the narrowest cone that holds
    the ball of class j backward and the earlier p_i and later balls forward. Weights: Q M (first
    layer) + (Q - 1) Q^2 + Q Q (last layer) = Q (M + Q^2) when there are Q outputs."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    classes, K = _classes(y)
    Q, M = len(classes), x.shape[1]
    if Q > M:
        raise ConstructionError(f"The clustered construction needs Q <= M; the data has {Q} classes in R^{M}.")
    means = np.stack([x[y == c].mean(axis=0) for c in classes])  # (Q, M)
    delta = max(float(np.max(np.linalg.norm(x[y == c] - means[i], axis=1))) for i, c in enumerate(classes))
    U, s, _ = np.linalg.svd(means.T, full_matrices=False)  # U (M, Q)
    if s[-1] < DEPENDENCE_TOL * s[0]:
        raise ConstructionError("The class means are linearly dependent, so the points p_j (on the segments from their "
                                "barycentre) are too: the last layer cannot reach the labels (CE24 Thm. 5.2's proof).")
    mz = means @ U  # means in V coordinates (Q, Q)
    bar = mz.mean(axis=0)
    ps, Wc, bc, angles, ts = [], [], [], [], []
    for j in range(Q):
        r = float(np.linalg.norm(mz[j] - bar))
        h = (bar - mz[j]) / r
        best = None
        for t in (np.arange(1, grid + 1) / (grid + 1)):
            p = bar + t * (mz[j] - bar)
            back = _ball_angle(mz[j], delta, p, -h)
            fwd = [_ball_angle(mz[k], delta, p, h) for k in range(j + 1, Q)] + \
                  [float(round_cone_angle((q - p)[None, :], h)[0]) for q in ps]
            need = max([back] + fwd)
            if best is None or need < best[0]:
                best = (need, t, p)
        need, t, p = best
        if not need < math.pi / 2:
            raise ConstructionError(f"The clusters are too wide for CE24 Prop. 4.1: class {classes[j]}'s ball (delta = "
                                    f"{delta:.3g}, distance of its mean to the barycentre {r:.3g}) and the others do not "
                                    "fit in a cone pair at any point of its segment.")
        half = need + 0.5 * (math.pi / 2 - need)
        W, b = cone_lemma(p, h, 2 * half)
        Wc.append(W @ U.T)
        bc.append(b)
        ps.append(p)
        angles.append(math.degrees(2 * half))
        ts.append(float(t))
    Pz = np.stack(ps, axis=1)
    ratio = _check_independent(Pz, f"the p_j in the span of the means")
    Y = np.zeros((K, Q))
    Y[list(classes), np.arange(Q)] = 1.0
    Wc.append(Y @ np.linalg.inv(Pz) @ U.T)
    bc.append(np.zeros(K))
    return _finish("clustered", Wc, bc, x, y, K, "Q (M + Q^2) weights (Q = number of classes, M = input width)",
                   Q * (M + Q * Q) + (K - Q) * Q, "weights",
                   {"order": list(classes), "delta": delta, "t": ts, "cone_angles_deg": angles,
                    "p": (Pz.T @ U.T).tolist(), "p_independence": ratio, "theorem": "CE24 Prop. 4.1, Cor. 4.2"})


def _regular_simplex_normals(n: int) -> Array:
    """n + 1 unit vectors in R^n pointing at the vertices of a regular simplex centred at 0 (they sum to 0)."""
    E = np.eye(n + 1) - 1.0 / (n + 1)
    U, _, _ = np.linalg.svd(E)
    V = E @ U[:, :n]  # coordinates in the hyperplane sum = 0
    return V / np.linalg.norm(V, axis=1, keepdims=True)


def _rotation(n: int, rng) -> Array:
    if n == 2:
        a = rng.uniform(0, 2 * math.pi)
        return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def simplex_network(x: Array, y: Array, tries: int = 64, seed: int = 0) -> Construction:
    """[Ewa25] Thm. 3.3 on two classes, one inside a regular n-simplex (centred at that class's mean,
    orientation searched over ``tries`` seeded rotations) and the other outside. Layer 1 (n -> n + 1):
    z_k = nu_k.(x - c) + rho (nu_k the inward facet normals, inradius rho); since the nu_k sum to 0,
    g = sum_k relu(z_k) - (n + 1) rho is 0 inside and positive outside. Layer 2: relu(s g) and
    relu(s g - 1) with s = 1 / (smallest g outside); their difference is 0 inside and 1 outside."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    classes, K = _classes(y)
    if len(classes) != 2:
        raise ConstructionError(f"The simplex construction (Ewa25 Thm. 3.3) separates two classes; the data has {len(classes)}.")
    n = x.shape[1]
    rng = np.random.default_rng(seed)
    base = _regular_simplex_normals(n)
    best = None
    for inner in classes:
        xi, xo = x[y == inner], x[y != inner]
        c = xi.mean(axis=0)
        for _ in range(tries):
            N = base @ _rotation(n, rng).T  # inward normals nu_k are -vertex directions of the facet opposite
            need_in = float(np.max(-(xi - c) @ N.T))  # rho needed to hold every inner point
            need_out = np.max(-(xo - c) @ N.T, axis=1)  # each outer point is outside iff rho < this
            gap = float(need_out.min()) - need_in
            if best is None or gap / max(need_in, 1e-12) > best[0]:
                best = (gap / max(need_in, 1e-12), inner, c, N, need_in, float(need_out.min()))
    ratio, inner, c, N, need_in, min_out = best
    if not ratio > 1e-6:
        raise ConstructionError("No simplex found that holds one class and excludes the other (Ewa25 Thm. 3.3's "
                                f"hypothesis; best gap {ratio:.2g} of the inradius over {tries} orientations per class).")
    rho = 0.5 * (need_in + min_out)
    W1, b1 = N, rho - N @ c
    z = x @ W1.T + b1
    g = np.maximum(z, 0).sum(axis=1) - (n + 1) * rho
    outer = y != inner
    s = 1.0 / float(g[outer].min())
    u = np.ones(n + 1)
    W2 = np.stack([s * u, s * u])
    b2 = np.array([-s * (n + 1) * rho, -s * (n + 1) * rho - 1.0])
    other = [k for k in classes if k != inner][0]
    W3 = np.zeros((K, 2))
    b3 = np.zeros(K)
    W3[inner] = [-1.0, 1.0]
    b3[inner] = 1.0
    W3[other] = [1.0, -1.0]
    net = Network.from_arrays([W1, W2, W3], [b1, b2, b3], "relu")
    err = net(x) - one_hot(y, K)
    n_weights = int(W1.size + W2.size + W3.size)
    formula = "(n + 1)^2 + 2 (n + 2) + 3 K: R^n -> R^(n+1) -> R^2 -> R^K (two hidden layers)"
    return Construction("simplex", net, float(np.mean(err ** 2)), float(np.max(np.abs(err))), net.n_params, n_weights,
                        formula, (n + 1) ** 2 + 2 * (n + 2) + 3 * K, "params",
                        {"inner_class": int(inner), "centre": c.tolist(), "inradius": rho, "gap": ratio,
                         "theorem": "Ewa25 Thm. 3.3"})
