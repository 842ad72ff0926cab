"""What each hidden neuron learned: weight maps, LP-certified extreme inputs, top images, class profiles.

For every hidden neuron (layer l, 1-based; neuron j, 0-based) :func:`neuron_report` gives

* its **map** on the input grid: for layer 1 the weight row ``W_1[j]`` reshaped to the input
  shape; for deeper layers an *effective* map, the gradient of its pre-activation ``a_l[j]`` with
  respect to the input at the mean image (``map_kind`` says which);
* the input of [0, 1]^d that **maximises** its post-activation ``z_l[j]`` and the one that
  **minimises** it, optionally with an L1 pull towards the mean image m:

      maximise  z_l[j](x) - penalty * ||x - m||_1        minimise  z_l[j](x) + penalty * ||x - m||_1

  The LP relaxation of the network over the whole box (:mod:`polylens.lp`, with
  ``u >= |x - m|`` added by :meth:`~polylens.lp.polytope.Polytope.with_l1_distance` for the penalty) gives a
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

import time
from dataclasses import dataclass, field

import numpy as np

from polylens.arrays import frozen
from polylens.bounds import BoundMethod, compute_bounds
from polylens.errors import ParameterError
from polylens.lp.highs import LPSolver, Sense
from polylens.lp.polytope import Role, build_polytope
from polylens.lp.tighten import lp_tightened_bounds
from polylens.nn.linearise import neuron_values_and_gradients
from polylens.nn.model import Model
from polylens.nn.network import Network, NeuronId
from polylens.nn.search import AdaptiveSteps, L1Priced, box_search
from polylens.relax.envelopes import Envelope, Hull, check_envelope
from polylens.validation import (check_bool, check_enum, check_float, check_inputs, check_int, check_labels,
                                 check_network)

Array = np.ndarray

__all__ = ["Extremum", "NeuronProfile", "NeuronReport", "neuron_report"]

#: The refinement's step schedule: the first step moves the largest pixel by 0.25; a step grows by 1.5
#: after an accepted move (up to 1) and halves after a rejected one.
REFINE_STEPS = AdaptiveSteps(first=0.25, grow=1.5, shrink=0.5, largest=1.0, smallest=1e-14)


# ---------------------------------------------------------------------------------------------
# The refinement on the real network


@dataclass(frozen=True, eq=False)
class _NeuronObjective:
    """sign * z(x) per row, for the neuron (layer[r], neuron[r]) (the L1 pull is :class:`L1Priced`)."""

    network: Network
    layer: Array
    neuron: Array
    sign: Array

    def value_and_gradient(self, P: Array) -> tuple[Array, Array]:
        v, g = neuron_values_and_gradients(self.network, P, self.layer, self.neuron)
        return self.sign * v, self.sign[:, None] * g

    def value(self, P: Array) -> Array:
        return self.value_and_gradient(P)[0]


def _refine(network: Network, starts: Array, layer: Array, neuron: Array, sign: Array, mean: Array,
            penalty: float, steps: int) -> tuple[Array, Array]:
    """Ascent of F(x) = sign * z(x) - penalty * ||x - mean||_1 over [0, 1]^d, one row per start, with
    :data:`REFINE_STEPS`. Returns the best point of each row and its F (never worse than the start)."""
    objective = L1Priced(_NeuronObjective(network, layer, neuron, sign), mean, penalty)
    r = box_search(objective, starts, 0.0, 1.0, steps=steps, schedule=REFINE_STEPS)
    return r.x, r.value


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
    def neuron_id(self) -> NeuronId:
        return NeuronId(self.layer, self.j)

    @property
    def key(self) -> str:
        return str(self.neuron_id)

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

    def neuron(self, layer: int | NeuronId, j: int | None = None) -> NeuronProfile:
        """The profile of neuron ``j`` (0-based) of hidden layer ``layer`` (1-based), or of a NeuronId."""
        want = layer if isinstance(layer, NeuronId) else NeuronId(layer, j)
        for p in self.neurons:
            if p.neuron_id == want:
                return p
        raise ParameterError(f"The 'neuron' parameter of NeuronReport.neuron must be a neuron of the report. "
                             f"Got {str(want)!r} instead.")

    def to_dict(self) -> dict:
        return {"neurons": [p.to_dict() for p in self.neurons], "mean_image": self.mean_image.tolist(),
                "input_shape": list(self.input_shape), "penalty": self.penalty, "mode": self.mode,
                "cuts": self.cuts, "bound_method": self.bound_method, "tightened": self.tightened,
                "n_images": self.n_images, "lp_solves": self.lp_solves, "seconds": dict(self.seconds)}

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


# ---------------------------------------------------------------------------------------------
# The analysis


def neuron_report(model_or_network: Model | Network, x: Array, y: Array, images: Array | None = None, *,
                  penalty: float = 0.0, top: int = 8, envelope: Envelope = Hull(),
                  bound_method: BoundMethod | str = "crown", tighten: bool = False, steps: int = 200,
                  bins: int = 20, restarts: int = 2, seed: int = 0, time_limit: float | None = None) -> NeuronReport:
    """Profile every hidden neuron (see the module docstring).

    x (N, d) images in [0, 1]; y (N,) labels; images (N, ...) optional originals for display
    (e.g. the 28x28 uint8 digits). ``penalty`` >= 0: weight of the L1 pull towards the mean of x.
    ``top``: how many most/least activating images, and how many best test images seed the
    refinement. ``envelope``: the LP's relaxation; ``bound_method``: pre-activation bounds over
    the box ('ibp', 'crown', 'alpha-crown'), tightened by per-neuron LPs if ``tighten``.
    ``steps``: refinement iterations; ``restarts``: extra uniformly random starts per neuron and
    sense (drawn with ``seed``). ``bins``: histogram bins. ``time_limit``: per LP solve (s).
    """
    t0 = time.perf_counter()
    network, model = check_network(model_or_network, "neuron_report", "model_or_network")
    x = check_inputs(x, network.input_dim, "neuron_report", min_rows=1)
    y = check_labels(y, len(x), network.n_classes, "neuron_report")
    if images is not None:
        images = np.asarray(images)
        if len(images) != len(x):
            raise ParameterError(f"The 'images' parameter of neuron_report must have one image per row of x "
                                 f"({len(x)}). Got {len(images)} instead.")
    penalty = check_float(penalty, "penalty", "neuron_report", 0.0)
    top = check_int(top, "top", "neuron_report", 1, len(x))
    envelope = check_envelope(envelope, "neuron_report")
    steps = check_int(steps, "steps", "neuron_report", 0)
    bins = check_int(bins, "bins", "neuron_report", 1)
    restarts = check_int(restarts, "restarts", "neuron_report", 0)
    rng = np.random.default_rng(check_int(seed, "seed", "neuron_report", 0))
    method = check_enum(bound_method, BoundMethod, "bound_method", "neuron_report")
    tighten = check_bool(tighten, "tighten", "neuron_report")
    if network.n_hidden_layers == 0:
        raise ParameterError("neuron_report needs a network with at least one hidden layer.")
    d, N, C = network.input_dim, len(x), network.n_classes
    mean = x.mean(axis=0)

    # -- the polytope over the whole box -------------------------------------------------------
    xl, xu = np.zeros(d), np.ones(d)
    b = compute_bounds(network, xl[None, :], xu[None, :], method)
    pre_bounds = [(lo[0].copy(), hi[0].copy()) for lo, hi in zip(b.lower, b.upper)]
    if tighten:
        pre_bounds = lp_tightened_bounds(network, xl, xu, pre_bounds, envelope=envelope, time_limit=time_limit)
    t_bounds = time.perf_counter()
    poly = build_polytope(network, xl, xu, pre_bounds, envelope)
    u = None
    if penalty > 0:
        # u >= |x - m| (Polytope.with_l1_distance): every real input x with u = |x - m| satisfies it, so
        # the LP stays a relaxation of the penalised problem.
        ext = poly.with_l1_distance(mean)
        poly, u = ext.polytope, ext.cols
    solver = LPSolver(poly, time_limit=time_limit)
    units = [(l, j) for l, w in enumerate(network.hidden_widths, start=1) for j in range(w)]
    lp = {}  # (l, j, sense) -> (safe_bound, objective, x)
    for l, j in units:
        post = poly.handle(Role.POST, l)
        for sense in (Sense.MAX, Sense.MIN):
            terms = {post: np.eye(network.hidden_widths[l - 1])[j]}
            if u is not None:
                terms[u] = -penalty if sense is Sense.MAX else penalty
            sol = solver.solve(poly.cost(terms), sense)
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
            ext.append(Extremum(sense.value, frozen(xb), val, obj, float(safe), float(lp_obj), frozen(lp_x), lp_val,
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
        name = model.neuron_name(l, j) if model is not None else str(NeuronId(l, j))
        ints = lambda a: frozen(a, np.int64)
        profiles.append(NeuronProfile(
            l, j, name, frozen(np.reshape(wmap, network.input_shape)), kind, float(network.layers[l - 1].b[j]),
            (float(pre_bounds[l - 1][0][j]), float(pre_bounds[l - 1][1][j])), ext[0], ext[1],
            ints(top_i), frozen(z[top_i]), ints(bot_i), frozen(z[bot_i]),
            None if images is None else images[top_i].copy(), None if images is None else images[bot_i].copy(),
            frozen(edges), ints(counts), frozen(cmean), frozen(cstd), ints(n_c)))
    t_end = time.perf_counter()
    seconds = {"bounds": t_bounds - t0, "lp": t_lp - t_bounds, "refine": t_refine - t_lp, "total": t_end - t0}
    return NeuronReport(tuple(profiles), frozen(mean), tuple(network.input_shape), penalty, envelope.mode.value,
                        envelope.cuts,
                        method.value, tighten, N, solver.n_solves, seconds)
