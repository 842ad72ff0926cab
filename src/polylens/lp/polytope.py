"""The polytope: a network restricted to an input box, as a linear program with named parts.

Variables, in this order (every block a contiguous slice):

    x[i]         inputs, bounded by the input box                         (d,)
    a{l}[j]      pre-activations of hidden layer l = 1..L-1, bounded by [L, U]
    z{l}[j]      post-activations, bounded by a rigorous enclosure of f([L, U])
    logit[k]     outputs, bounded by interval arithmetic on the last z box

Rows:

    affine  l, j        a_l[j] - W_l[j, :] z_{l-1} = b_l[j]     (z_0 = x; l = L gives logit[j])
    cut     l, j, s, r  z_l[j] - slope * a_l[j] >= intercept    (s = lower)   or  <= intercept (s = upper)

Every row and column has a structured key (kind, layer, neuron, side, index) kept as parallel integer
arrays; :meth:`Polytope.row_name` renders one as text (``L2.n1.upper.3``), nothing ever parses a
name back. The matrix is assembled from whole blocks with numpy and scipy.sparse (no Python loop
over entries).

The polytope is sound: for every x in the box, the true network's intermediates (a, z, logits)
satisfy every row and bound, provided the pre-activation bounds given are sound and the envelopes are
sound on them (both proved elsewhere: ``polylens.bounds``, ``polylens.relax``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from enum import IntEnum
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from polylens.errors import ParameterError
from polylens.nn.network import Network
from polylens.relax.envelopes import Envelope, EnvelopeMode, build_envelope
from polylens.tolerances import BOUND_REL_SLACK, EPS64, TINY_RANGE

Array = np.ndarray


class Role(IntEnum):
    """What a column stands for."""

    INPUT = 0
    PRE = 1
    POST = 2
    LOGIT = 3
    EXTRA = 4  # columns an analysis adds (see Polytope.extend)


class RowKind(IntEnum):
    AFFINE = 0
    CUT = 1
    EXTRA = 2  # rows an analysis adds (see Polytope.extend)


_ROLE_TEXT = {Role.INPUT: "x", Role.PRE: "a", Role.POST: "z", Role.LOGIT: "logit", Role.EXTRA: "extra"}
_SIDE_TEXT = ("lower", "upper")


@dataclass(frozen=True, eq=False)
class Polytope:
    """An LP relaxation of ``network`` over the box [xl, xu] (see the module docstring).

    Shapes: n = number of columns, m = number of rows.
    ``A`` (m, n) csc; ``row_lo``/``row_hi`` (m,), ``col_lo``/``col_hi`` (n,), all finite except the
    open side of cut rows (+-inf). Column keys: ``col_role``, ``col_layer``, ``col_index`` (n,).
    Row keys: ``row_kind``, ``row_layer``, ``row_neuron``, ``row_side`` (-1 for affine rows),
    ``row_index`` (cut number within its neuron and side; 0 for affine rows).
    """

    network: Network
    A: sp.csc_matrix
    row_lo: Array
    row_hi: Array
    col_lo: Array
    col_hi: Array
    col_role: Array
    col_layer: Array
    col_index: Array
    row_kind: Array
    row_layer: Array
    row_neuron: Array
    row_side: Array
    row_index: Array
    envelopes: tuple[Envelope, ...]
    blocks: tuple[tuple[int, int, int, int], ...]
    """(role, layer, start, stop) for every variable block, in column order."""
    integer: Array | None = None
    """Boolean (n,) marking integer columns (only the exact MILP of :mod:`polylens.lp.exact` has any)."""
    extra_col_names: tuple[str, ...] = ()
    extra_row_names: tuple[str, ...] = ()

    def extend(self, *, col_lo: Array = (), col_hi: Array = (), col_names: Sequence[str] = (),
               rows: sp.spmatrix | Array | None = None, row_lo: Array = (), row_hi: Array = (),
               row_names: Sequence[str] = ()) -> "Polytope":
        """A new polytope with extra columns (role EXTRA, finite bounds required) and extra rows
        (kind EXTRA) over all columns, old and new: ``rows`` has shape (k, n + e).

        Analyses use it for auxiliary variables, e.g. ``u >= |x - x0|`` for an L1 penalty or ``t >= logit_k``
        for a max-margin objective. Names are kept and rendered by col_name/row_name.

        >>> # u_i >= x_i - x0_i and u_i >= x0_i - x_i for every pixel:
        >>> # poly.extend(col_lo=zeros, col_hi=ones, col_names=[f"u[{i}]" ...], rows=..., row_lo=..., row_hi=...)
        """
        col_lo = np.asarray(col_lo, dtype=np.float64).ravel()
        col_hi = np.asarray(col_hi, dtype=np.float64).ravel()
        e = col_lo.shape[0]
        if col_hi.shape != (e,) or len(col_names) != e:
            raise ParameterError(f"extend needs col_lo, col_hi and col_names of one length; got {e}, {col_hi.shape[0]}, {len(col_names)}.")
        if not (np.all(np.isfinite(col_lo)) and np.all(np.isfinite(col_hi))) or np.any(col_lo > col_hi):
            raise ParameterError("Extra columns need finite bounds with lower <= upper (the safe dual bound relies on it).")
        n = self.n_cols + e
        R = sp.csr_matrix((0, n)) if rows is None else sp.csr_matrix(rows)
        k = R.shape[0]
        row_lo = np.asarray(row_lo, dtype=np.float64).ravel()
        row_hi = np.asarray(row_hi, dtype=np.float64).ravel()
        if R.shape[1] != n or row_lo.shape != (k,) or row_hi.shape != (k,) or len(row_names) != k:
            raise ParameterError(f"extend needs rows of shape (k, {n}) with k row bounds and names; got {R.shape}, "
                                 f"{row_lo.shape[0]}, {row_hi.shape[0]}, {len(row_names)}.")
        A = sp.vstack([sp.hstack([self.A, sp.csc_matrix((self.n_rows, e))]), R]).tocsc()
        integer = None if self.integer is None else np.concatenate([self.integer, np.zeros(e, bool)])
        cat = np.concatenate
        return Polytope(
            self.network, A, cat([self.row_lo, row_lo]), cat([self.row_hi, row_hi]), cat([self.col_lo, col_lo]),
            cat([self.col_hi, col_hi]), cat([self.col_role, np.full(e, int(Role.EXTRA), np.int8)]),
            cat([self.col_layer, np.zeros(e, np.int32)]),
            cat([self.col_index, np.arange(len(self.extra_col_names), len(self.extra_col_names) + e, dtype=np.int32)]),
            cat([self.row_kind, np.full(k, int(RowKind.EXTRA), np.int8)]), cat([self.row_layer, np.zeros(k, np.int32)]),
            cat([self.row_neuron, np.zeros(k, np.int32)]), cat([self.row_side, np.full(k, -1, np.int8)]),
            cat([self.row_index, np.arange(len(self.extra_row_names), len(self.extra_row_names) + k, dtype=np.int32)]),
            self.envelopes, self.blocks + ((int(Role.EXTRA), 0, self.n_cols, n),) if e else self.blocks,
            integer, self.extra_col_names + tuple(col_names), self.extra_row_names + tuple(row_names))

    # -- derived, cached ----------------------------------------------------------------------

    @cached_property
    def At(self) -> sp.csr_matrix:
        """A transposed (n, m), for dual computations."""
        return self.A.T.tocsr()

    @cached_property
    def abs_At(self) -> sp.csr_matrix:
        return abs(self.At)

    @cached_property
    def max_col_nnz(self) -> int:
        return int(np.diff(self.A.indptr).max(initial=0))

    @cached_property
    def col_mag(self) -> Array:
        """max(|col_lo|, |col_hi|) per column (finite: every column bound is)."""
        return np.maximum(np.abs(self.col_lo), np.abs(self.col_hi))

    # -- variable blocks ----------------------------------------------------------------------

    @property
    def n_cols(self) -> int:
        return self.A.shape[1]

    @property
    def n_rows(self) -> int:
        return self.A.shape[0]

    def block(self, role: Role, layer: int = 0) -> slice:
        """Column slice of one block: ``block(Role.INPUT)``, ``block(Role.PRE, 1)``, ``block(Role.LOGIT)``."""
        for r, l, start, stop in self.blocks:
            if r == role and (role in (Role.INPUT, Role.LOGIT, Role.EXTRA) or l == layer):
                return slice(start, stop)
        raise ParameterError(f"The polytope has no block {_ROLE_TEXT[Role(role)]}{layer or ''}.")

    @property
    def inputs(self) -> slice:
        return self.block(Role.INPUT)

    @property
    def logits(self) -> slice:
        return self.block(Role.LOGIT)

    def cost(self, role: Role, coefficients: Array, layer: int = 0) -> Array:
        """A full cost vector that is ``coefficients`` on one block and zero elsewhere."""
        c = np.zeros(self.n_cols)
        c[self.block(role, layer)] = coefficients
        return c

    def margin_cost(self, label: int, other: int) -> Array:
        """Cost of ``logit[label] - logit[other]``."""
        c = np.zeros(self.network.n_classes)
        c[label] += 1.0
        c[other] -= 1.0
        return self.cost(Role.LOGIT, c)

    # -- names --------------------------------------------------------------------------------

    def col_name(self, j: int) -> str:
        if self.col_role[j] == Role.EXTRA:
            return self.extra_col_names[int(self.col_index[j])]
        role = Role(int(self.col_role[j]))
        layer = int(self.col_layer[j])
        if role in (Role.INPUT, Role.LOGIT):
            return f"{_ROLE_TEXT[role]}[{int(self.col_index[j])}]"
        return f"{_ROLE_TEXT[role]}{layer}[{int(self.col_index[j])}]"

    def row_name(self, i: int) -> str:
        layer, j = int(self.row_layer[i]), int(self.row_neuron[i])
        if self.row_kind[i] == RowKind.EXTRA:
            return self.extra_row_names[int(self.row_index[i])]
        if self.row_kind[i] == RowKind.AFFINE:
            last = layer == len(self.network.layers)
            return f"affine.out.{j}" if last else f"affine.L{layer}.n{j}"
        return f"L{layer}.n{j}.{_SIDE_TEXT[int(self.row_side[i])]}.{int(self.row_index[i])}"

    def col_names(self) -> list[str]:
        return [self.col_name(j) for j in range(self.n_cols)]

    def row_names(self) -> list[str]:
        return [self.row_name(i) for i in range(self.n_rows)]

    def cut_rows(self, layer: int) -> Array:
        """Indices of the cut rows of hidden layer ``layer`` (1-based)."""
        return np.flatnonzero((self.row_kind == RowKind.CUT) & (self.row_layer == layer))

    def check_point(self, v: Array, tol: float = 1e-9) -> float:
        """Largest violation of any row or bound by the column vector ``v`` (0 when feasible)."""
        act = self.A @ v
        viol = np.concatenate([self.row_lo - act, act - self.row_hi, self.col_lo - v, v - self.col_hi])
        viol = viol[np.isfinite(viol)]
        return float(max(0.0, viol.max(initial=0.0)))

    def point_from_input(self, x: Array) -> Array:
        """The column vector the true network produces from input x (d,): inputs, a, z, logits."""
        fp = self.network.forward(np.asarray(x, dtype=np.float64)[None, :])
        parts = [fp.x[0]]
        for a, z in zip(fp.pre, fp.post):
            parts += [a[0], z[0]]
        parts.append(fp.logits[0])
        return np.concatenate(parts)


def _interval_affine(W: Array, b: Array, lo: Array, hi: Array) -> tuple[Array, Array]:
    """Rigorous enclosure of W @ [lo, hi] + b, widened outward for float64 rounding."""
    c, r = (hi + lo) / 2.0, (hi - lo) / 2.0
    mid = W @ c + b
    rad = np.abs(W) @ r
    n = W.shape[1] + 2
    slack = (n + 2) * EPS64 * (np.abs(W) @ np.maximum(np.abs(lo), np.abs(hi)) + np.abs(b)) + BOUND_REL_SLACK * np.abs(mid)
    return mid - rad - slack, mid + rad + slack


def build_polytope(network: Network, xl: Array, xu: Array, pre_bounds: Sequence[tuple[Array, Array]],
                   mode: EnvelopeMode | str = EnvelopeMode.HULL, cuts: int = 8,
                   envelopes: Sequence[Envelope] | None = None) -> Polytope:
    """Assemble the LP relaxation of ``network`` on the box [xl, xu].

    ``pre_bounds[l-1] = (L, U)``, arrays of shape (n_l,), must be sound bounds of hidden layer l's
    pre-activations over the box (from ``polylens.bounds``). ``mode``/``cuts`` choose the envelope
    (``hull`` with ``cuts`` cuts per side, or ``pair``); prebuilt ``envelopes`` may be passed instead.
    """
    xl = np.asarray(xl, dtype=np.float64).ravel()
    xu = np.asarray(xu, dtype=np.float64).ravel()
    d = network.input_dim
    if xl.shape != (d,) or xu.shape != (d,):
        raise ParameterError(f"The input box must have width {d}; got {xl.shape} and {xu.shape}.")
    if np.any(xl > xu):
        raise ParameterError("The input box has a lower bound above its upper bound.")
    hidden = network.hidden_widths
    if len(pre_bounds) != len(hidden):
        raise ParameterError(f"Need pre-activation bounds for {len(hidden)} hidden layers; got {len(pre_bounds)}.")
    mode = EnvelopeMode(mode)

    if envelopes is None:
        envelopes = tuple(
            build_envelope(act, np.asarray(L, float), np.asarray(U, float), mode=mode, cuts=cuts)
            for act, (L, U) in zip(network.activations, pre_bounds))
    envelopes = tuple(envelopes)

    # Column layout.
    blocks, col_lo, col_hi, roles, layers, idx = [], [], [], [], [], []
    start = 0

    def add_block(role: Role, layer: int, lo: Array, hi: Array):
        nonlocal start
        n = lo.shape[0]
        blocks.append((int(role), layer, start, start + n))
        col_lo.append(lo)
        col_hi.append(hi)
        roles.append(np.full(n, int(role), np.int8))
        layers.append(np.full(n, layer, np.int32))
        idx.append(np.arange(n, dtype=np.int32))
        start += n

    add_block(Role.INPUT, 0, xl, xu)
    for l, env in enumerate(envelopes, start=1):
        L, U = np.asarray(env.lower, float), np.asarray(env.upper, float)
        add_block(Role.PRE, l, L, U)
        add_block(Role.POST, l, np.asarray(env.zlo, float), np.asarray(env.zhi, float))
    last = network.layers[-1]
    zlo, zhi = (col_lo[-1], col_hi[-1]) if envelopes else (xl, xu)
    ylo, yhi = _interval_affine(last.W, last.b, zlo, zhi)
    add_block(Role.LOGIT, 0, ylo, yhi)

    # Rows: affine equalities, then cuts, built as COO triplets block by block.
    rows, cols, vals = [], [], []
    row_lo, row_hi = [], []
    rk, rl, rn, rs, ri = [], [], [], [], []
    nrow = 0
    prev = blocks[0]  # the block feeding the next affine map
    out_blocks = [b for b in blocks if b[0] in (Role.PRE, Role.LOGIT)]
    for l, (layer, ob) in enumerate(zip(network.layers, out_blocks), start=1):
        n_out, n_in = layer.W.shape
        r = np.arange(n_out)
        # + a[j]
        rows.append(nrow + r); cols.append(ob[2] + r); vals.append(np.ones(n_out))
        # - W[j, i] z_prev[i]
        nz = np.nonzero(layer.W)
        rows.append(nrow + nz[0]); cols.append(prev[2] + nz[1]); vals.append(-layer.W[nz])
        row_lo.append(layer.b.copy()); row_hi.append(layer.b.copy())
        rk.append(np.full(n_out, RowKind.AFFINE, np.int8)); rl.append(np.full(n_out, l, np.int32))
        rn.append(r.astype(np.int32)); rs.append(np.full(n_out, -1, np.int8)); ri.append(np.zeros(n_out, np.int32))
        nrow += n_out
        if l <= len(envelopes):
            env = envelopes[l - 1]
            pre_b = [b for b in blocks if b[0] == Role.PRE and b[1] == l][0]
            post_b = [b for b in blocks if b[0] == Role.POST and b[1] == l][0]
            # A neuron whose output range is narrower than the solver's feasibility tolerance carries cuts
            # whose slack is of the same order as that tolerance; HiGHS can then declare a feasible
            # polytope infeasible. Its column bounds [zlo, zhi] already enclose f, so its cuts are dropped
            # (sound: the polytope only grows, by less than TINY_RANGE in that coordinate).
            zw = np.asarray(env.zhi, float) - np.asarray(env.zlo, float)
            tiny = zw < TINY_RANGE * (1.0 + np.abs(np.asarray(env.zhi, float)))
            keep = ~tiny[np.asarray(env.neuron)]
            neuron = np.asarray(env.neuron)[keep]
            m = neuron.shape[0]
            rr = nrow + np.arange(m)
            rows += [rr, rr]
            cols += [post_b[2] + neuron, pre_b[2] + neuron]
            vals += [np.ones(m), -np.asarray(env.slope, float)[keep]]
            lower = np.asarray(env.side)[keep] == 0
            icpt = np.asarray(env.intercept, float)[keep]
            row_lo.append(np.where(lower, icpt, -np.inf)); row_hi.append(np.where(lower, np.inf, icpt))
            rk.append(np.full(m, RowKind.CUT, np.int8)); rl.append(np.full(m, l, np.int32))
            rn.append(neuron.astype(np.int32)); rs.append(np.asarray(env.side, np.int8)[keep])
            ri.append(np.asarray(env.index, np.int32)[keep])
            nrow += m
            prev = post_b
    A = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(nrow, start)).tocsc()
    A.sum_duplicates()
    cat = np.concatenate
    return Polytope(network, A, cat(row_lo), cat(row_hi), cat(col_lo), cat(col_hi), cat(roles), cat(layers),
                    cat(idx), cat(rk), cat(rl), cat(rn), cat(rs), cat(ri), envelopes, tuple(blocks))


def split_envelope(env: Envelope, n_images: int) -> list[Envelope]:
    """Split an envelope built for ``n_images`` stacked copies of a layer (neurons i*n .. (i+1)*n - 1
    belong to image i) into one envelope per image. Cuts are sorted by neuron, so each image's cuts
    are one contiguous run."""
    n = env.n_neurons // n_images
    cuts = np.searchsorted(env.neuron, np.arange(n_images + 1) * n)
    out = []
    for i in range(n_images):
        r = slice(cuts[i], cuts[i + 1])
        s = slice(i * n, (i + 1) * n)
        out.append(Envelope(env.neuron[r] - i * n, env.side[r], env.index[r], env.slope[r], env.intercept[r],
                            env.lower[s], env.upper[s], env.zlo[s], env.zhi[s]))
    return out


def build_polytopes(network: Network, xl: Array, xu: Array, lower: Sequence[Array], upper: Sequence[Array],
                    mode: EnvelopeMode | str = EnvelopeMode.HULL, cuts: int = 8) -> list[Polytope]:
    """One polytope per row of the boxes xl, xu (N, d), with pre-activation bounds ``lower[l]``,
    ``upper[l]`` of shape (N, n_l) per hidden layer (e.g. ``Bounds.lower``). The envelopes of all N
    images are built in one vectorised call per layer, which is what makes many small polytopes cheap."""
    xl, xu = np.atleast_2d(xl), np.atleast_2d(xu)
    N = xl.shape[0]
    if N == 0:
        return []
    mode = EnvelopeMode(mode)
    per_layer = [split_envelope(build_envelope(act, np.asarray(Lb, float).ravel(), np.asarray(Ub, float).ravel(),
                                               mode=mode, cuts=cuts), N)
                 for act, Lb, Ub in zip(network.activations, lower, upper)]
    return [build_polytope(network, xl[i], xu[i], [(e[i].lower, e[i].upper) for e in per_layer],
                           envelopes=[e[i] for e in per_layer]) for i in range(N)]
