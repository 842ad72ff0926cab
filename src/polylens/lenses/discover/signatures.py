"""Constraint signatures: which constraints hold the LP optimum of a digit's logit in place.

For each digit d and each of its test images x (by default only those the network classifies
correctly), the region is the L-infinity ball of radius ``eps`` around x intersected with [0, 1]^d,
and the polytope is the network's LP relaxation on it (:mod:`polylens.lp`). One LP per image:

* ``objective="logit"``: optimise ``logit_d``;
* ``objective="margin"``, ``sense="max"``: maximise ``logit_d - t`` subject to ``t >= logit_k`` for
  every k != d (an auxiliary column added with :meth:`Polytope.extend`), i.e. the largest worst-case
  margin the relaxation allows;
* ``objective="margin"``, ``sense="min"``: the smallest margin, ``min_k min (logit_d - logit_k)``:
  one LP per competitor k (re-solved by changing costs), keeping the k with the smallest optimum
  (the first such k on ties).

At the optimum we read off the *tight set*:

* every input pixel: at the lower bound of its box (the optimum wants **less** ink there, drawn red)
  or at the upper bound (wants **more** ink, drawn blue);
* every envelope cut ``(layer, neuron, side, index)`` of every hidden neuron: tight or not;
* every hidden pre-activation: at the lower or upper end of its interval [L, U].

Degeneracy rule (how the tight set is chosen, and why it is reproducible). An LP can have many
optimal points; we read the one HiGHS's simplex returns. The solver adapter runs the simplex
single-threaded with a fixed seed and presolve off, so the same polytope and cost give the same
point, bit for bit (two runs of :func:`signatures` are equal). Tightness reads that primal point
with :func:`polylens.lp.tight_cols` / :func:`polylens.lp.tight_rows` (slack within
``TIGHT_TOL * (1 + |bound|)``), not the basis. A pixel counts as "at lower" / "at upper" only
when its box has a width above twice that tolerance, i.e. when the LP could have moved it (with
``eps = 0`` every box is a point and no pixel is counted); the unfiltered position counts (a
zero-width box counts at both ends) are reported too, as ``pixel_lower_raw_count`` /
``pixel_upper_raw_count``. A pixel can also sit at a bound by accident of degeneracy (the optimum
does not care where it is). The ``binding`` frequencies separate the two: a pixel is *binding*
when it is at the bound and its reduced cost is nonzero (above ``BINDING_DUAL_TOL``); by
complementary slackness it then sits at that bound in *every* optimal point of the LP, not just
in the one the simplex chose.

Distinctiveness: each image's signature is the binary vector (pixels at lower, pixels at upper,
per (layer, neuron, side) "some cut of that side is tight"). It is classified by the nearest digit
mean (squared Euclidean distance; leave-one-out: the image's own digit mean is computed without
it; ties go to the smaller digit). The accuracy, overall and per digit, says how often a single
image's signature picks out its digit; the confusion matrix says where it does not.

Example
-------
>>> from polylens.nn.model import load_model, model_split
>>> m = load_model("seed"); s = model_split(m)
>>> r = signatures(m, s.x_test[:200], s.y_test[:200], eps=0.02, images=s.images_test[:200])
>>> r.pixel_lower_freq.shape, len(r.cut_tight_freq)
((10, 49), 2)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Sequence

import numpy as np

from polylens.errors import ParameterError, SolverError
from polylens.jsonio import fields_dict
from polylens.lenses.discover.toolkit import relax, with_max_column
from polylens.lp import LPSolver, Role, Sense, Solution, tight_cols, tight_rows
from polylens.nn.margins import margins
from polylens.nn.network import neuron_ids
from polylens.relax.envelopes import Envelope, Hull, check_envelope
from polylens.tolerances import BINDING_DUAL_TOL, TIGHT_TOL
from polylens.validation import (check_bool, check_classes, check_enum, check_float, check_inputs, check_int,
                                 check_labels, check_network)

Array = np.ndarray

__all__ = ["Objective", "SignatureResult", "nearest_mean", "signatures"]


class Objective(str, Enum):
    """What a signature LP optimises: the digit's logit, or its worst-case margin over the others."""

    LOGIT = "logit"
    MARGIN = "margin"


# ---------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True, eq=False)
class SignatureResult:
    """Constraint signatures of every digit (see the module docstring for the LP and the rules).

    Shapes: D = len(digits), N = images solved (all digits), d = input width, n_l = width of hidden
    layer l (the tuples below have one entry per hidden layer), K = cuts per side (``cuts`` for
    ``hull``, 1 for ``pair``), F = signature length = 2 d + 2 sum_l n_l, H x W = ``mean_image``'s shape.

    Per image: ``image_index`` (N,) row of x, ``image_digit`` (N,); ``pixel_state`` int8 (N, d):
    -1 at the lower bound of a box of positive width, +1 at the upper bound, 0 otherwise;
    ``pixel_binding`` bool (N, d): at that bound with a nonzero reduced cost (so at that bound in every
    optimum); ``cut_tight`` per layer bool (N, n_l, 2): some cut of that (neuron, side) is tight
    (side 0 lower, 1 upper); ``pre_state`` per layer int8 (N, n_l): -1 / +1 when the pre-activation
    sits at L / U; ``lp_input`` (N, d) the LP optimum's input; ``lp_value`` (N,) the solver's optimum;
    ``safe_bound`` (N,) a rigorous bound on the LP optimum (upper for max, lower for min);
    ``real_value`` (N,) the same objective evaluated by the real network at ``lp_input`` (for the
    margin objective with ``sense="max"``: logit_d - max_k logit_k; with ``"min"``: logit_d - logit_c);
    ``competitor`` (N,) that c for ``objective="margin", sense="min"``, else -1; ``signature`` bool
    (N, F) with ``signature_names`` (F,).

    Per digit: ``n_images`` (D,) images solved, ``n_failed`` (D,) images whose LP failed (left out;
    ``failed_index`` lists their rows of x); ``pixel_lower_freq`` / ``pixel_upper_freq`` (D, d) in [0, 1]
    (NaN for a digit without images); ``pixel_lower_binding_freq`` / ``pixel_upper_binding_freq``
    (D, d); ``pixel_lower_raw_count`` / ``pixel_upper_raw_count`` int (D, d), the unfiltered position
    counts; ``cut_tight_freq`` per layer (D, n_l, 2); ``cut_index_tight_freq`` per layer
    (D, n_l, 2, K) (cut r of that side tight; a cut an image's envelope lacks counts as not tight);
    ``pre_bound_freq`` per layer (D, n_l, 2); ``mean_image`` (D, H, W) in [0, 1] and
    ``mean_input`` (D, d), means over the digit's solved images.

    Distinctiveness: ``nearest_mean`` (N,) the leave-one-out nearest-mean digit (-1 where not
    evaluated: a digit with fewer than two images), ``distinct_accuracy`` (float),
    ``distinct_per_digit`` (D,), ``distinct_confusion`` int (D, D) (rows true digit, columns
    predicted, in ``digits`` order). ``seconds``: wall time of the run.
    """

    digits: tuple[int, ...]
    eps: float
    objective: str
    sense: str
    only_correct: bool
    mode: str
    cuts: int
    input_shape: tuple[int, ...]
    layer_widths: tuple[int, ...]
    n_images: Array
    n_failed: Array
    failed_index: Array
    image_index: Array
    image_digit: Array
    pixel_state: Array
    pixel_binding: Array
    cut_tight: tuple[Array, ...]
    pre_state: tuple[Array, ...]
    lp_input: Array
    lp_value: Array
    safe_bound: Array
    real_value: Array
    competitor: Array
    signature: Array
    signature_names: tuple[str, ...]
    pixel_lower_freq: Array
    pixel_upper_freq: Array
    pixel_lower_binding_freq: Array
    pixel_upper_binding_freq: Array
    pixel_lower_raw_count: Array
    pixel_upper_raw_count: Array
    cut_tight_freq: tuple[Array, ...]
    cut_index_tight_freq: tuple[Array, ...]
    pre_bound_freq: tuple[Array, ...]
    mean_image: Array
    mean_input: Array
    nearest_mean: Array
    distinct_accuracy: float
    distinct_per_digit: Array
    distinct_confusion: Array
    seconds: float

    def pixel_map(self, digit: int) -> Array:
        """Signed map for display, shape ``input_shape``: upper frequency minus lower frequency of
        ``digit`` (+1: every image wants more ink there, blue; -1: less ink, red)."""
        i = self.digits.index(int(digit))
        return (self.pixel_upper_freq[i] - self.pixel_lower_freq[i]).reshape(self.input_shape)

    def to_dict(self) -> dict:
        """JSON-ready data: arrays as nested lists, NaN as None, per-layer tuples as lists."""
        return fields_dict(self)

    def _repr_html_(self) -> str:
        from polylens.report.notebook import to_html

        return to_html(self)


# ---------------------------------------------------------------------------------------------
# The analysis


def nearest_mean(S: Array, labels: Array, digits: tuple[int, ...]) -> Array:
    """Leave-one-out nearest-mean classification of the rows of S (N, F) among ``digits``.

    Returns the predicted digit per row, -1 where the row's digit has fewer than two rows."""
    N = len(S)
    D = len(digits)
    if N == 0:
        return np.zeros(0, np.int64)
    lookup = np.full(int(max(max(digits), labels.max())) + 1, -1, np.int64)
    lookup[list(digits)] = np.arange(D)
    col = lookup[labels]  # column of each row's digit in ``digits`` order
    onehot = np.zeros((N, D))
    onehot[np.arange(N), col] = 1.0
    counts = onehot.sum(axis=0)
    sums = onehot.T @ S  # (D, F)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    sq = np.einsum("ij,ij->i", S, S)
    dist = sq[:, None] - 2.0 * S @ np.nan_to_num(means).T + np.einsum("ij,ij->i", np.nan_to_num(means),
                                                                      np.nan_to_num(means))[None, :]
    dist[:, counts == 0] = np.inf
    own_n = counts[col]
    ok = own_n >= 2
    loo = (sums[col] - S) / np.maximum(own_n - 1, 1)[:, None]
    dist[np.arange(N), col] = np.einsum("ij,ij->i", S - loo, S - loo)
    pred = np.array(digits)[np.argmin(dist, axis=1)]
    return np.where(ok, pred, -1)


def signatures(network: Any, x: Any, y: Any, *, eps: float = 0.02, digits: Sequence[int] | None = None,
               objective: Objective | str = Objective.LOGIT, sense: Sense | str = Sense.MAX,
               only_correct: bool = True, envelope: Envelope = Hull(), max_per_digit: int | None = None,
               images: Any = None) -> SignatureResult:
    """Constraint signatures of each digit over its images' eps-balls (see the module docstring).

    ``network``: a Network or a Model. ``x`` (N, d) in [0, 1] with labels ``y`` (N,). ``digits``: the
    classes to analyse (default all). ``only_correct``: only images the network classifies correctly.
    ``envelope``: the LP's relaxation (``Hull(cuts)`` or ``Pair()``).
    ``max_per_digit``: the first that many images of each digit (in the order of x). ``images``:
    optional (N, H, W) originals aligned with x (e.g. ``split.images_test``), averaged per digit into
    ``mean_image`` for overlays (default: the inputs reshaped to the network's ``input_shape``).
    Uint8 images are scaled by 1/255.
    """
    where = "signatures"
    t0 = time.perf_counter()
    net, _ = check_network(network, where)
    x = check_inputs(x, net.input_dim, where)
    y = check_labels(y, len(x), net.n_classes, where)
    eps = check_float(eps, "eps", where, 0.0, 1.0)
    digits = check_classes(digits, net.n_classes, "digits", where)
    objective = check_enum(objective, Objective, "objective", where)
    sense = check_enum(sense, Sense, "sense", where)
    envelope = check_envelope(envelope, where)
    if objective is Objective.MARGIN and net.n_classes < 2:
        raise ParameterError(f"The margin objective of {where} needs a network with at least two classes.")
    only_correct = check_bool(only_correct, "only_correct", where)
    if max_per_digit is not None:
        max_per_digit = check_int(max_per_digit, "max_per_digit", where, 1)
    if images is not None:
        images = np.asarray(images)
        if images.ndim < 2 or images.shape[0] != len(x):
            raise ParameterError(f"The 'images' parameter of {where} must hold one image per row of x ({len(x)}). "
                                 f"Got shape {images.shape} instead.")
        images = images.astype(np.float64) / (255.0 if images.dtype == np.uint8 else 1.0)
        img_shape = images.shape[1:]
    else:
        img_shape = tuple(net.input_shape)

    # Which images: per digit, in the order of x.
    keep = np.isin(y, digits)
    if only_correct:
        keep &= net.predict(x) == y
    chosen = []
    for dg in digits:
        rows = np.flatnonzero(keep & (y == dg))
        chosen.append(rows if max_per_digit is None else rows[:max_per_digit])
    sel = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    labels = y[sel]
    N, d = len(sel), net.input_dim
    widths = tuple(net.hidden_widths)
    K = envelope.cuts

    rel = relax(net, x[sel], eps, envelope)
    movable = (rel.xu - rel.xl) > 2.0 * TIGHT_TOL * (1.0 + np.maximum(np.abs(rel.xl), np.abs(rel.xu)))

    ok = np.zeros(N, bool)
    pixel_state = np.zeros((N, d), np.int8)
    pixel_binding = np.zeros((N, d), bool)
    raw_lo = np.zeros((N, d), bool)
    raw_hi = np.zeros((N, d), bool)
    cut_tight = [np.zeros((N, w, 2), bool) for w in widths]
    cut_idx = [np.zeros((N, w, 2, K), bool) for w in widths]
    pre_state = [np.zeros((N, w), np.int8) for w in widths]
    lp_input = np.full((N, d), np.nan)
    lp_value = np.full(N, np.nan)
    safe = np.full(N, np.nan)
    competitor = np.full(N, -1, np.int64)

    C = net.n_classes
    for i in range(N):
        poly = rel.polys[i]
        dg = int(labels[i])
        logit = poly.handle(Role.LOGIT)
        if objective is Objective.MARGIN and sense is Sense.MAX:
            ext = with_max_column(poly, dg)
            poly, t = ext.polytope, ext.cols
        try:
            solver = LPSolver(poly)
            if objective is Objective.LOGIT:
                sol = solver.solve(poly.cost({logit: np.eye(C)[dg]}), sense)
            elif sense is Sense.MAX:
                sol = solver.solve(poly.cost({logit: np.eye(C)[dg], t: -1.0}), Sense.MAX)
            else:
                best: Solution | None = None
                for k in range(C):
                    if k == dg:
                        continue
                    s = solver.solve(poly.margin_cost(dg, k), Sense.MIN)
                    if best is None or s.objective < best.objective:
                        best, competitor[i] = s, k
                sol = best
        except SolverError:
            continue
        if not sol.optimal:
            continue
        ok[i] = True
        at_lo, at_hi = tight_cols(poly, sol)
        px = poly.inputs
        lo_i, hi_i = at_lo[px] & movable[i], at_hi[px] & movable[i]
        raw_lo[i], raw_hi[i] = at_lo[px], at_hi[px]
        pixel_state[i] = np.where(lo_i, -1, np.where(hi_i, 1, 0))
        rc = np.abs(sol.col_dual[px]) > BINDING_DUAL_TOL
        pixel_binding[i] = (lo_i | hi_i) & rc
        r_lo, r_hi = tight_rows(poly, sol)
        tight = r_lo | r_hi
        for l in range(1, len(widths) + 1):
            rows = poly.cut_rows(l)
            t = tight[rows]
            nrn, side, idx = poly.row_neuron[rows], poly.row_side[rows], poly.row_index[rows]
            np.logical_or.at(cut_tight[l - 1][i], (nrn, side), t)
            keep_k = idx < K
            cut_idx[l - 1][i][nrn[keep_k], side[keep_k], idx[keep_k]] = t[keep_k]
            pre = poly.block(Role.PRE, l)
            pre_state[l - 1][i] = np.where(at_lo[pre], -1, np.where(at_hi[pre], 1, 0))
        lp_input[i] = np.clip(sol.x[px], rel.xl[i], rel.xu[i])
        lp_value[i] = sol.objective
        safe[i] = sol.safe_bound

    # Real network at the LP optima.
    real = np.full(N, np.nan)
    if ok.any():
        lg = net(lp_input[ok])
        lab = labels[ok]
        if objective is Objective.LOGIT:
            real[ok] = lg[np.arange(len(lab)), lab]
        elif sense is Sense.MAX:
            real[ok] = margins(lg, lab)[0]
        else:
            real[ok] = lg[np.arange(len(lab)), lab] - lg[np.arange(len(lab)), competitor[ok]]

    failed = sel[~ok]
    sel_ok, lab_ok = sel[ok], labels[ok]
    D = len(digits)
    n_images = np.array([int(np.sum(lab_ok == dg)) for dg in digits], np.int64)
    n_failed = np.array([int(np.sum(labels[~ok] == dg)) for dg in digits], np.int64)

    def per_digit(a: Array, reduce=np.mean) -> Array:
        out = np.full((D,) + a.shape[1:], np.nan)
        for j, dg in enumerate(digits):
            m = lab_ok == dg
            if m.any():
                out[j] = reduce(a[m], axis=0)
        return out

    ps = pixel_state[ok]
    pb = pixel_binding[ok]
    names = ([f"x[{j}].lower" for j in range(d)] + [f"x[{j}].upper" for j in range(d)]
             + [f"{n}.{s}" for n in neuron_ids(net) for s in ("lower", "upper")])
    S = np.concatenate([ps == -1, ps == 1] + [c[ok].reshape(int(ok.sum()), -1) for c in cut_tight], axis=1)
    nm = nearest_mean(S.astype(np.float64), lab_ok, digits)
    ev = nm >= 0
    conf = np.zeros((D, D), np.int64)
    lookup = np.full(net.n_classes, -1, np.int64)
    lookup[list(digits)] = np.arange(D)
    np.add.at(conf, (lookup[lab_ok[ev]], lookup[nm[ev]]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.diag(conf) / conf.sum(axis=1)
    acc = float(np.trace(conf) / conf.sum()) if conf.sum() else math.nan

    src = images[sel_ok] if images is not None else x[sel_ok].reshape((-1,) + img_shape)
    mean_image = per_digit(src) if len(src) else np.full((D,) + img_shape, np.nan)

    return SignatureResult(
        digits=digits, eps=eps, objective=objective.value, sense=sense.value, only_correct=only_correct,
        mode=envelope.mode.value, cuts=envelope.cuts, input_shape=tuple(net.input_shape), layer_widths=widths,
        n_images=n_images, n_failed=n_failed, failed_index=failed, image_index=sel_ok, image_digit=lab_ok,
        pixel_state=ps, pixel_binding=pb, cut_tight=tuple(c[ok] for c in cut_tight),
        pre_state=tuple(p[ok] for p in pre_state), lp_input=lp_input[ok], lp_value=lp_value[ok],
        safe_bound=safe[ok], real_value=real[ok], competitor=competitor[ok], signature=S,
        signature_names=tuple(names),
        pixel_lower_freq=per_digit((ps == -1).astype(float)), pixel_upper_freq=per_digit((ps == 1).astype(float)),
        pixel_lower_binding_freq=per_digit(((ps == -1) & pb).astype(float)),
        pixel_upper_binding_freq=per_digit(((ps == 1) & pb).astype(float)),
        pixel_lower_raw_count=np.nan_to_num(per_digit(raw_lo[ok].astype(float), np.sum)).astype(np.int64),
        pixel_upper_raw_count=np.nan_to_num(per_digit(raw_hi[ok].astype(float), np.sum)).astype(np.int64),
        cut_tight_freq=tuple(per_digit(c[ok].astype(float)) for c in cut_tight),
        cut_index_tight_freq=tuple(per_digit(c[ok].astype(float)) for c in cut_idx),
        pre_bound_freq=tuple(per_digit(np.stack([p[ok] == -1, p[ok] == 1], axis=-1).astype(float)) for p in pre_state),
        mean_image=mean_image, mean_input=per_digit(x[sel_ok]) if len(sel_ok) else np.full((D, d), np.nan),
        nearest_mean=nm, distinct_accuracy=acc, distinct_per_digit=per, distinct_confusion=conf,
        seconds=time.perf_counter() - t0,
    )
