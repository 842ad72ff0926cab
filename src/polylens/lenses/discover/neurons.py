"""What each hidden neuron learned: weight maps, LP-certified extreme inputs, top images, class profiles.

For every hidden neuron (layer l, 1-based; neuron j, 0-based) :func:`neuron_report` gives

* its **map** on the input grid: for layer 1 the weight row ``W_1[j]`` reshaped to the input
  shape; for deeper layers an *effective* map, the gradient of its pre-activation ``a_l[j]`` with
  respect to the input at the mean image (``map_kind`` says which);
* the input of [0, 1]^d that **maximises** its post-activation ``z_l[j]`` and the one that
  **minimises** it, optionally with an L1 pull towards the mean image m:

      maximise  z_l[j](x) - penalty * ||x - m||_1        minimise  z_l[j](x) + penalty * ||x - m||_1

  The LP relaxation of the network over the whole box (:mod:`polylens.lp`, with
  ``u >= |x - m|`` added by :meth:`~polylens.lp.polytope.Polytope.extend` for the penalty) gives a
  **rigorous** bound on the optimum (``safe_bound``: an upper bound for the maximum, a lower bound
  for the minimum, from the dual, in floating point). Its optimal x is then refined on the real
  network by projected gradient ascent in the box, started from the LP point, the mean image,
  the ``top`` best test images and ``restarts`` random points, keeping the best point ever
  evaluated. Hence, with the objective
  evaluated on the real (float64) network,

      max over test images  <=  objective(maximiser)  <=  safe_bound                 (penalty = 0:
      min over test images  >=  objective(minimiser)  >=  safe_bound                  z itself)

  the left inequalities by construction (the best test image is a start and only improvements are
  kept), the right ones because the LP is a sound relaxation. ``Extremum.gap`` measures how far
  the refined point may still be from the true optimum;
* the ``top`` most and least activating test images (indices and values) and, per class, a
  histogram of the activation on shared bin edges, with its mean and standard deviation.

Non-monotone activations need no special case: the minimum of a GELU neuron is f(argmin) when the
argmin lies inside its pre-activation range over the box, and both the LP and the refinement
find it.

>>> from polylens.nn.model import load_model, model_split
>>> m = load_model("seed"); s = model_split(m)
>>> r = neuron_report(m, s.x_test[:200], s.y_test[:200], top=4, steps=50)
>>> p = r.neuron(1, 0)
>>> bool(p.maximiser.best_test_objective <= p.maximiser.objective <= p.maximiser.safe_bound)
True
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from polylens.lenses.discover.naming import resolve
from polylens.bounds import BoundMethod, compute_bounds
from polylens.errors import ParameterError
from polylens.lp.highs import LPSolver, Sense
from polylens.lp.polytope import Role, build_polytope
from polylens.lp.tighten import lp_tightened_bounds
from polylens.nn.model import Model
from polylens.nn.network import Network
from polylens.relax.envelopes import EnvelopeMode
from polylens.validation import check_enum, check_float, check_int

Array = np.ndarray

__all__ = ["Extremum", "NeuronProfile", "NeuronReport", "neuron_report", "neuron_values_and_gradients"]

#: First step of the refinement, as the largest move of any pixel; it grows by 1.5 after an accepted
#: step (up to 1) and halves after a rejected one.
_FIRST_STEP = 0.25


def _ro(a) -> Array:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


def _ro_int(a) -> Array:
    a = np.array(a, dtype=np.int64, copy=True)
    a.setflags(write=False)
    return a


# ---------------------------------------------------------------------------------------------
# Values and gradients of single neurons on the real network


def neuron_values_and_gradients(network: Network, X: Array, layer: Array, neuron: Array, *,
                                pre: bool = False) -> tuple[Array, Array]:
    """For each row r: the value of z_{layer[r]}[neuron[r]] (or the pre-activation a, if ``pre``)
    at X[r] and its gradient with respect to the input, by exact backpropagation.

    X (R, d); layer (R,) 1-based hidden layers; neuron (R,). Returns values (R,) and gradients (R, d).
    """
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    layer = np.asarray(layer, dtype=np.int64)
    neuron = np.asarray(neuron, dtype=np.int64)
    fp = network.forward(X)
    R = len(X)
    vals = np.empty(R)
    grads = np.empty((R, network.input_dim))
    for l in np.unique(layer):
        rows = np.flatnonzero(layer == l)
        a = fp.pre[l - 1][rows]
        j = neuron[rows]
        idx = np.arange(len(rows))
        act = network.activations[l - 1]
        if pre:
            vals[rows] = a[idx, j]
            g = np.zeros_like(a)
            g[idx, j] = 1.0
        else:
            vals[rows] = fp.post[l - 1][rows][idx, j]
            g = np.zeros_like(a)
            g[idx, j] = act.derivative(a[idx, j])
        for m in range(l, 1, -1):  # back through W_m, then the activation of layer m-1
            g = g @ network.layers[m - 1].W
            g = g * network.activations[m - 2].derivative(fp.pre[m - 2][rows])
        grads[rows] = g @ network.layers[0].W
    return vals, grads


def _refine(network: Network, starts: Array, layer: Array, neuron: Array, sign: Array, mean: Array,
            penalty: float, steps: int) -> tuple[Array, Array]:
    """Projected gradient ascent of F(x) = sign * z(x) - penalty * ||x - mean||_1 over [0, 1]^d,
    one row per start, with a per-row step that grows after success and halves after failure.
    Returns the best point of each row and its F (never worse than the start)."""
    X = np.clip(starts, 0.0, 1.0)

    def F_and_G(P: Array) -> tuple[Array, Array]:
        v, g = neuron_values_and_gradients(network, P, layer, neuron)
        F = sign * v - penalty * np.abs(P - mean).sum(axis=1)
        G = sign[:, None] * g - penalty * np.sign(P - mean)
        return F, G

    F, G = F_and_G(X)
    step = np.full(len(X), _FIRST_STEP)
    for _ in range(steps):
        scale = np.abs(G).max(axis=1)
        move = np.where(scale[:, None] > 0, G / np.where(scale > 0, scale, 1.0)[:, None], 0.0)
        P = np.clip(X + step[:, None] * move, 0.0, 1.0)
        FP, GP = F_and_G(P)
        ok = FP > F
        X = np.where(ok[:, None], P, X)
        F = np.where(ok, FP, F)
        G = np.where(ok[:, None], GP, G)
        step = np.where(ok, np.minimum(step * 1.5, 1.0), step * 0.5)
        if np.all(step < 1e-14):
            break
    return X, F


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class Extremum:
    """The input of [0, 1]^d that maximises (``sense`` "max") or minimises ("min") one neuron's
    post-activation, with the L1 penalty towards the mean image (see the module docstring).

    ``x`` (d,): the refined input; ``value``: its real post-activation z; ``objective``: its real
    penalised objective (z - penalty*||x-m||_1 for max, z + penalty*||x-m||_1 for min; = value when
    penalty is 0). ``safe_bound``: rigorous bound on the optimum over the whole box (upper for max,
    lower for min). ``lp_objective``: the LP's own optimum; ``lp_x`` (d,) its input part, with real
    ``lp_value`` and ``lp_x_objective``. ``best_test_index``/``best_test_value``/
    ``best_test_objective``: the test image with the best objective. ``start``: which start the
    refined point came from ("lp", "mean", "test:<index>" or "random:<k>").

    Guarantee (max; reversed for min): best_test_objective <= objective <= safe_bound.
    """

    sense: str
    x: Array
    value: float
    objective: float
    safe_bound: float
    lp_objective: float
    lp_x: Array
    lp_value: float
    lp_x_objective: float
    best_test_index: int
    best_test_value: float
    best_test_objective: float
    start: str

    @property
    def gap(self) -> float:
        """|safe_bound - objective|: how much better than the refined point the true optimum may be."""
        return abs(self.safe_bound - self.objective)

    def to_dict(self) -> dict:
        """JSON-ready; a non-finite safe bound (an LP stopped by its time limit without a dual) is None."""
        safe = self.safe_bound if np.isfinite(self.safe_bound) else None
        return {"sense": self.sense, "x": self.x.tolist(), "value": self.value, "objective": self.objective,
                "safe_bound": safe, "gap": self.gap if safe is not None else None, "lp_objective": self.lp_objective,
                "lp_x": self.lp_x.tolist(), "lp_value": self.lp_value, "lp_x_objective": self.lp_x_objective,
                "best_test_index": self.best_test_index, "best_test_value": self.best_test_value,
                "best_test_objective": self.best_test_objective, "start": self.start}


@dataclass(frozen=True, eq=False)
class NeuronProfile:
    """Everything :func:`neuron_report` found about hidden neuron ``j`` of layer ``layer``.

    ``map`` (input_shape): weight row (layer 1) or input gradient of a_l[j] at the mean image;
    ``map_kind`` says which in words. ``bias``: b_l[j]. ``pre_bounds``: (L, U) of a_l[j] over the
    box [0, 1]^d (the bounds the LP was built on). ``maximiser``/``minimiser``: :class:`Extremum`.
    ``top_indices``/``top_values`` (k,): the test images with the largest z, largest first;
    ``bottom_indices``/``bottom_values`` (k,): the smallest, smallest first; ``top_images`` /
    ``bottom_images`` (k, ...): those images from the ``images`` argument, or None.
    ``bin_edges`` (B+1,) shared by every class; ``class_counts`` (C, B) histogram of z per class;
    ``class_mean``, ``class_std`` (C,) (NaN for a class with no image); ``class_n`` (C,).
    """

    layer: int
    j: int
    name: str
    map: Array
    map_kind: str
    bias: float
    pre_bounds: tuple[float, float]
    maximiser: Extremum
    minimiser: Extremum
    top_indices: Array
    top_values: Array
    bottom_indices: Array
    bottom_values: Array
    top_images: Array | None
    bottom_images: Array | None
    bin_edges: Array
    class_counts: Array
    class_mean: Array
    class_std: Array
    class_n: Array

    @property
    def key(self) -> str:
        return f"L{self.layer}.n{self.j}"

    def to_dict(self) -> dict:
        nan = lambda a: [None if not np.isfinite(v) else float(v) for v in a]
        return {"key": self.key, "layer": self.layer, "j": self.j, "name": self.name, "map": self.map.tolist(),
                "map_kind": self.map_kind, "bias": self.bias, "pre_bounds": list(self.pre_bounds),
                "maximiser": self.maximiser.to_dict(), "minimiser": self.minimiser.to_dict(),
                "top_indices": self.top_indices.tolist(), "top_values": self.top_values.tolist(),
                "bottom_indices": self.bottom_indices.tolist(), "bottom_values": self.bottom_values.tolist(),
                "bin_edges": self.bin_edges.tolist(), "class_counts": self.class_counts.tolist(),
                "class_mean": nan(self.class_mean), "class_std": nan(self.class_std),
                "class_n": self.class_n.tolist()}


@dataclass(frozen=True, eq=False)
class NeuronReport:
    """Profiles of every hidden neuron (in ``neuron_keys`` order) and the settings that made them.

    ``mean_image`` (d,): the mean of the images the penalty pulls towards; ``input_shape``;
    ``penalty``, ``mode``, ``cuts``, ``bound_method``, ``tightened``: how the LP was built;
    ``n_images``; ``lp_solves``; ``seconds``: wall time of "bounds", "lp", "refine", "total".
    """

    neurons: tuple[NeuronProfile, ...]
    mean_image: Array
    input_shape: tuple[int, ...]
    penalty: float
    mode: str
    cuts: int
    bound_method: str
    tightened: bool
    n_images: int
    lp_solves: int
    seconds: dict = field(default_factory=dict)

    def neuron(self, layer: int, j: int) -> NeuronProfile:
        """The profile of neuron ``j`` (0-based) of hidden layer ``layer`` (1-based)."""
        for p in self.neurons:
            if p.layer == layer and p.j == j:
                return p
        raise ParameterError(f"The report has no neuron (layer {layer}, neuron {j}).")

    def to_dict(self) -> dict:
        return {"neurons": [p.to_dict() for p in self.neurons], "mean_image": self.mean_image.tolist(),
                "input_shape": list(self.input_shape), "penalty": self.penalty, "mode": self.mode,
                "cuts": self.cuts, "bound_method": self.bound_method, "tightened": self.tightened,
                "n_images": self.n_images, "lp_solves": self.lp_solves, "seconds": dict(self.seconds)}

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{p.key}</td><td>{html.escape(p.name)}</td>"
            f"<td>{p.maximiser.best_test_objective:+.4f}</td><td>{p.maximiser.objective:+.4f}</td>"
            f"<td>{p.maximiser.safe_bound:+.4f}</td><td>{p.minimiser.best_test_objective:+.4f}</td>"
            f"<td>{p.minimiser.objective:+.4f}</td><td>{p.minimiser.safe_bound:+.4f}</td>"
            f"<td>{', '.join(str(i) for i in p.top_indices[:4])}</td></tr>" for p in self.neurons)
        head = ("<tr><th>neuron</th><th>name</th><th>best test max</th><th>maximiser</th><th>LP upper bound</th>"
                "<th>best test min</th><th>minimiser</th><th>LP lower bound</th><th>top images</th></tr>")
        return (f"<p>neuron report: {self.n_images} images, penalty {self.penalty:g}, LP {self.mode} "
                f"({self.cuts} cuts), bounds {self.bound_method}{' + LP-tightened' if self.tightened else ''}</p>"
                f"<table><thead>{head}</thead><tbody>{rows}</tbody></table>")


# ---------------------------------------------------------------------------------------------
# The analysis


def _check_data(network: Network, x, y, images) -> tuple[Array, Array, Array | None]:
    x = np.asarray(x, dtype=np.float64)
    d = network.input_dim
    if x.ndim != 2 or x.shape[1] != d or len(x) == 0:
        raise ParameterError(f"The 'x' parameter of neuron_report must be an array of shape (N, {d}). "
                             f"Got shape {x.shape} instead.")
    if not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0:
        raise ParameterError("The 'x' parameter of neuron_report must hold images with every value in [0, 1] "
                             "(the box the LP searches).")
    y = np.asarray(y)
    C = network.n_classes
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= C:
        raise ParameterError(f"The 'y' parameter of neuron_report must hold one integer label in 0..{C - 1} per "
                             f"image ({len(x)}). Got shape {y.shape}, dtype {y.dtype} instead.")
    if images is not None:
        images = np.asarray(images)
        if len(images) != len(x):
            raise ParameterError(f"The 'images' parameter of neuron_report must have one image per row of x "
                                 f"({len(x)}). Got {len(images)} instead.")
    return x, y.astype(np.int64), images


def neuron_report(model_or_network: Model | Network, x: Array, y: Array, images: Array | None = None, *,
                  penalty: float = 0.0, top: int = 8, mode: EnvelopeMode | str = "hull", cuts: int = 8,
                  bound_method: BoundMethod | str = "crown", tighten: bool = False, steps: int = 200,
                  bins: int = 20, restarts: int = 2, seed: int = 0, time_limit: float | None = None) -> NeuronReport:
    """Profile every hidden neuron (see the module docstring).

    x (N, d) images in [0, 1]; y (N,) labels; images (N, ...) optional originals for display
    (e.g. the 28x28 uint8 digits). ``penalty`` >= 0: weight of the L1 pull towards the mean of x.
    ``top``: how many most/least activating images, and how many best test images seed the
    refinement. ``mode``/``cuts``: the LP envelope; ``bound_method``: pre-activation bounds over
    the box ('ibp', 'crown', 'alpha-crown'), tightened by per-neuron LPs if ``tighten``.
    ``steps``: refinement iterations; ``restarts``: extra uniformly random starts per neuron and
    sense (drawn with ``seed``). ``bins``: histogram bins. ``time_limit``: per LP solve (s).
    """
    t0 = time.perf_counter()
    network, model = resolve(model_or_network)
    x, y, images = _check_data(network, x, y, images)
    penalty = check_float(penalty, "penalty", "neuron_report", 0.0)
    top = check_int(top, "top", "neuron_report", 1, len(x))
    cuts = check_int(cuts, "cuts", "neuron_report", 1)
    steps = check_int(steps, "steps", "neuron_report", 0)
    bins = check_int(bins, "bins", "neuron_report", 1)
    restarts = check_int(restarts, "restarts", "neuron_report", 0)
    rng = np.random.default_rng(check_int(seed, "seed", "neuron_report", 0))
    mode = check_enum(mode, EnvelopeMode, "mode", "neuron_report")
    method = check_enum(bound_method, BoundMethod, "bound_method", "neuron_report")
    if not isinstance(tighten, bool):
        raise ParameterError(f"The 'tighten' parameter of neuron_report must be a bool. Got {tighten!r} instead.")
    if network.n_hidden_layers == 0:
        raise ParameterError("neuron_report needs a network with at least one hidden layer.")
    d, N, C = network.input_dim, len(x), network.n_classes
    mean = x.mean(axis=0)

    # -- the polytope over the whole box -------------------------------------------------------
    xl, xu = np.zeros(d), np.ones(d)
    b = compute_bounds(network, xl[None, :], xu[None, :], method)
    pre_bounds = [(lo[0].copy(), hi[0].copy()) for lo, hi in zip(b.lower, b.upper)]
    if tighten:
        pre_bounds = lp_tightened_bounds(network, xl, xu, pre_bounds, mode=mode, cuts=cuts, time_limit=time_limit)
    t_bounds = time.perf_counter()
    poly = build_polytope(network, xl, xu, pre_bounds, mode=mode, cuts=cuts)
    n0 = poly.n_cols
    u_cols = slice(n0, n0 + d)
    if penalty > 0:
        # u_i in [0, 1] with u_i - x_i >= -m_i and u_i + x_i >= m_i, i.e. u_i >= |x_i - m_i|: every real
        # input x with u = |x - m| satisfies them, so the LP stays a relaxation of the penalised problem.
        i = np.arange(d)
        xcol = poly.inputs.start + i
        r = np.concatenate([i, i, d + i, d + i])
        c = np.concatenate([xcol, n0 + i, xcol, n0 + i])
        v = np.concatenate([-np.ones(d), np.ones(d), np.ones(d), np.ones(d)])
        rows = sp.coo_matrix((v, (r, c)), shape=(2 * d, n0 + d)).tocsr()
        poly = poly.extend(col_lo=np.zeros(d), col_hi=np.ones(d), col_names=[f"u[{i}]" for i in range(d)],
                           rows=rows, row_lo=np.concatenate([-mean, mean]), row_hi=np.full(2 * d, np.inf),
                           row_names=[f"l1.neg[{i}]" for i in range(d)] + [f"l1.pos[{i}]" for i in range(d)])
    solver = LPSolver(poly, time_limit=time_limit)
    units = [(l, j) for l, w in enumerate(network.hidden_widths, start=1) for j in range(w)]
    lp = {}  # (l, j, sense) -> (safe_bound, objective, x)
    for l, j in units:
        for sense in (Sense.MAX, Sense.MIN):
            c = poly.cost(Role.POST, np.eye(network.hidden_widths[l - 1])[j], layer=l)
            if penalty > 0:
                c[u_cols] = -penalty if sense is Sense.MAX else penalty
            sol = solver.solve(c, sense)
            lp[l, j, sense] = (sol.safe_bound, sol.objective, sol.x[poly.inputs].copy())
    t_lp = time.perf_counter()

    # -- refinement on the real network ----------------------------------------------------------
    fp = network.forward(x)
    dist = np.abs(x - mean).sum(axis=1)  # (N,)
    starts, s_layer, s_neuron, s_sign, s_unit, s_label = [], [], [], [], [], []
    for u, (l, j) in enumerate(units):
        z = fp.post[l - 1][:, j]
        for si, sense in enumerate((Sense.MAX, Sense.MIN)):
            sign = 1.0 if sense is Sense.MAX else -1.0
            F = sign * z - penalty * dist
            best = np.argsort(-F, kind="stable")[:top]
            cand = [lp[l, j, sense][2], mean] + [x[i] for i in best] + list(rng.random((restarts, d)))
            labels = ["lp", "mean"] + [f"test:{int(i)}" for i in best] + [f"random:{k}" for k in range(restarts)]
            starts += cand
            s_label += labels
            s_layer += [l] * len(cand)
            s_neuron += [j] * len(cand)
            s_sign += [sign] * len(cand)
            s_unit += [2 * u + si] * len(cand)
    starts = np.array(starts)
    s_layer, s_neuron, s_sign, s_unit = map(np.asarray, (s_layer, s_neuron, s_sign, s_unit))
    Xr, Fr = _refine(network, starts, s_layer, s_neuron, s_sign, mean, penalty, steps)
    t_refine = time.perf_counter()

    # -- assemble -------------------------------------------------------------------------------
    profiles = []
    for u, (l, j) in enumerate(units):
        z = fp.post[l - 1][:, j]
        ext = []
        for si, sense in enumerate((Sense.MAX, Sense.MIN)):
            sign = 1.0 if sense is Sense.MAX else -1.0
            rows = np.flatnonzero(s_unit == 2 * u + si)
            r = rows[int(np.argmax(Fr[rows]))]  # first best: LP start wins ties
            xb = Xr[r]
            val = float(neuron_values_and_gradients(network, xb[None], [l], [j])[0][0])
            obj = val - sign * penalty * float(np.abs(xb - mean).sum())
            safe, lp_obj, lp_x = lp[l, j, sense]
            lp_x = np.clip(lp_x, 0.0, 1.0)
            lp_val = float(neuron_values_and_gradients(network, lp_x[None], [l], [j])[0][0])
            F_test = sign * z - penalty * dist
            bt = int(np.argmax(F_test))
            ext.append(Extremum(sense.value, _ro(xb), val, obj, float(safe), float(lp_obj), _ro(lp_x), lp_val,
                                lp_val - sign * penalty * float(np.abs(lp_x - mean).sum()), bt, float(z[bt]),
                                float(sign * F_test[bt]), s_label[r]))
        order = np.argsort(-z, kind="stable")
        top_i, bot_i = order[:top], order[::-1][:top]
        lo, hi = float(z.min()), float(z.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        idx = np.clip(np.searchsorted(edges, z, side="right") - 1, 0, bins - 1)
        counts = np.zeros((C, bins), dtype=np.int64)
        np.add.at(counts, (y, idx), 1)
        n_c = np.bincount(y, minlength=C)
        with np.errstate(invalid="ignore", divide="ignore"):
            s1 = np.bincount(y, weights=z, minlength=C)
            s2 = np.bincount(y, weights=z * z, minlength=C)
            cmean = np.where(n_c > 0, s1 / np.maximum(n_c, 1), np.nan)
            cstd = np.where(n_c > 0, np.sqrt(np.maximum(s2 / np.maximum(n_c, 1) - cmean ** 2, 0.0)), np.nan)
        if l == 1:
            wmap, kind = network.layers[0].W[j], "weights"
        else:
            wmap = neuron_values_and_gradients(network, mean[None], [l], [j], pre=True)[1][0]
            kind = f"gradient of a{l}[{j}] at the mean input"
        name = model.neuron_name(l, j) if model is not None else f"L{l}.n{j}"
        profiles.append(NeuronProfile(
            l, j, name, _ro(np.reshape(wmap, network.input_shape)), kind, float(network.layers[l - 1].b[j]),
            (float(pre_bounds[l - 1][0][j]), float(pre_bounds[l - 1][1][j])), ext[0], ext[1],
            _ro_int(top_i), _ro(z[top_i]), _ro_int(bot_i), _ro(z[bot_i]),
            None if images is None else images[top_i].copy(), None if images is None else images[bot_i].copy(),
            _ro(edges), _ro_int(counts), _ro(cmean), _ro(cstd), _ro_int(n_c)))
    t_end = time.perf_counter()
    seconds = {"bounds": t_bounds - t0, "lp": t_lp - t_bounds, "refine": t_refine - t_lp, "total": t_end - t0}
    return NeuronReport(tuple(profiles), _ro(mean), tuple(network.input_shape), penalty, mode.value, cuts,
                        method.value, tighten, N, solver.n_solves, seconds)
