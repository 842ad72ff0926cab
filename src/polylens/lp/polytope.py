"""The polytope: a network restricted to an input box, as a linear program with named parts.

Variables, in this order (every block a contiguous slice):

    x[i]         inputs, bounded by the input box                         (d,)
    a{l}[j]      pre-activations of hidden layer l = 1..L-1, bounded by [L, U]
    z{l}[j]      post-activations, bounded by a rigorous enclosure of f([L, U])
    logit[k]     outputs, bounded by rigorous interval arithmetic on the last z box
                 (:func:`polylens.bounds.common.interval_affine`)
    name[k]      columns an analysis adds with :meth:`Polytope.extend` (auxiliary or integer)

Rows:

    affine  l, j        a_l[j] - W_l[j, :] z_{l-1} = b_l[j]     (z_0 = x; l = L gives logit[j])
    cut     l, j, s, r  z_l[j] - slope * a_l[j] >= intercept    (s = lower)   or  <= intercept (s = upper)
    name[k]             rows an analysis adds with :meth:`Polytope.extend`

Every row and column has a structured key (kind, layer, neuron, side, index) kept as parallel integer
arrays; :meth:`Polytope.row_name` renders one as text (``L2.n1.upper.3``), nothing ever parses a
name back. Blocks are named by :class:`Handle` values (``poly.handle(Role.LOGIT)``, or the handles
``extend`` returns), and costs are built from handles (``poly.cost({logit: e_k, t: -1.0})``), never
by column arithmetic. The matrix is assembled from whole blocks with numpy and scipy.sparse (no
Python loop over entries).

The polytope is sound: for every x in the box, the true network's intermediates (a, z, logits)
satisfy every row and bound, provided the pre-activation bounds given are sound and the envelopes are
sound on them (both proved elsewhere: ``polylens.bounds``, ``polylens.relax``). With an
:class:`~polylens.lp.pattern.ActivationPattern`, the polytope describes the inputs of the box whose
fixed neurons are on the given pieces, and is exact in every fixed neuron.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from polylens.bounds.common import interval_affine
from polylens.errors import InfeasibleError, ParameterError
from polylens.lp.matrix import LPMatrix
from polylens.lp.pattern import OFF, ON, ActivationPattern
from polylens.nn.activations import Activation, Family
from polylens.nn.network import Network, NeuronId
from polylens.relax.envelopes import Cuts, Envelope, Hull, build_envelope, check_envelope
from polylens.tolerances import TINY_RANGE

Array = np.ndarray

__all__ = ["BlockKind", "Extension", "Handle", "Polytope", "Role", "RowKind", "Rows", "build_polytope",
           "build_polytopes", "split_envelope"]


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


class BlockKind(str, Enum):
    """Whether a :class:`Handle` names columns or rows."""

    COLUMNS = "columns"
    ROWS = "rows"


_ROLE_TEXT = {Role.INPUT: "x", Role.PRE: "a", Role.POST: "z", Role.LOGIT: "logit"}
_SIDE_TEXT = ("lower", "upper")


@dataclass(frozen=True)
class Handle:
    """A named, contiguous block of a polytope's columns or rows: ``[start, stop)``.

    A handle stays valid in every polytope extended from the one that made it (extensions only
    append). ``poly.handle(Role.PRE, 1)`` names a built-in block, :meth:`Polytope.extend` returns the
    handles of what it adds.
    """

    name: str
    kind: BlockKind
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    def take(self, v: Array) -> Array:
        """The entries of ``v`` (n,) or (..., n) that belong to this block (a view)."""
        return np.asarray(v)[..., self.start:self.stop]


@dataclass(frozen=True, eq=False)
class Rows:
    """k rows ``lo <= sum_h coefficients[h] @ v[h] <= hi`` to add with :meth:`Polytope.extend`.

    ``coefficients`` maps a column :class:`Handle` (or the name of the columns added by the same
    ``extend`` call) to a dense or sparse matrix of shape (k, size of that block). ``lo``, ``hi``:
    (k,) with -inf / +inf for an open side. ``keys``: (k,) ints shown in the row names
    (``name[key]``; default 0 .. k-1).
    """

    name: str
    coefficients: Mapping[Any, Any]
    lo: Any
    hi: Any
    keys: Any = None


@dataclass(frozen=True, eq=False)
class Extension:
    """What :meth:`Polytope.extend` returns: the new polytope, the handle of its new columns (None when
    none were added) and the handles of its new row groups, in the order given."""

    polytope: "Polytope"
    cols: Handle | None
    rows: tuple[Handle, ...]


@dataclass(frozen=True, eq=False)
class Polytope(LPMatrix):
    """An LP relaxation of ``network`` over the box [xl, xu] (see the module docstring).

    Shapes: n = number of columns, m = number of rows.
    ``A`` (m, n) csc; ``row_lo``/``row_hi`` (m,), ``col_lo``/``col_hi`` (n,), all finite except the
    open side of cut and extra rows (+-inf). Column keys: ``col_role``, ``col_layer``, ``col_index``
    (n,). Row keys: ``row_kind``, ``row_layer``, ``row_neuron``, ``row_side`` (-1 for affine and
    extra rows), ``row_index`` (cut number within its neuron and side; 0 for affine rows). For
    columns and rows an analysis added, ``col_layer`` / ``row_layer`` is the position of their
    handle in ``extra_cols`` / ``extra_rows`` and ``col_index`` / ``row_index`` their key.
    ``envelopes``: the :class:`~polylens.relax.envelopes.Cuts` of every hidden layer.
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
    envelopes: tuple[Cuts, ...]
    blocks: tuple[tuple[int, int, int, int], ...]
    """(role, layer, start, stop) for every built-in variable block, in column order."""
    integer: Array | None = None
    """Boolean (n,) marking integer columns (added by ``extend(integer=True)``, e.g. the exact MILP)."""
    extra_cols: tuple[Handle, ...] = ()
    extra_rows: tuple[Handle, ...] = ()

    # -- extensions ---------------------------------------------------------------------------

    def extend(self, name: str | None = None, *, col_lo: Any = (), col_hi: Any = (), integer: bool = False,
               keys: Any = None, rows: Sequence[Rows] = ()) -> Extension:
        """A new polytope with e extra columns ``name[key]`` (role EXTRA; finite bounds, integer when
        ``integer``) and extra row groups over all columns, old and new.

        ``col_lo``, ``col_hi``: (e,); ``keys``: (e,) ints shown in the column names (default 0 .. e-1).
        ``rows``: :class:`Rows` groups, whose coefficients name blocks by handle (or by ``name`` for
        the new columns). Returns an :class:`Extension` with the new polytope and the handles.

        >>> # t >= logit_k for k in others, with t's handle for the cost:
        >>> # ext = poly.extend("t", col_lo=[lo], col_hi=[hi], rows=[Rows("t>=logit", {"t": ones, logit: -E}, 0, inf)])
        >>> # cost = ext.polytope.cost({logit: e_c, ext.cols: -1.0})
        """
        col_lo = np.asarray(col_lo, dtype=np.float64).ravel()
        col_hi = np.asarray(col_hi, dtype=np.float64).ravel()
        e = col_lo.shape[0]
        if col_hi.shape != (e,):
            raise ParameterError(f"The 'col_hi' parameter of extend must have the length of col_lo ({e}). "
                                 f"Got {col_hi.shape[0]} instead.")
        if not (np.all(np.isfinite(col_lo)) and np.all(np.isfinite(col_hi))) or np.any(col_lo > col_hi):
            raise ParameterError("The 'col_lo' and 'col_hi' parameters of extend must be finite with lower <= upper "
                                 "(the safe dual bound relies on every column being bounded). Got other bounds instead.")
        if e and not name:
            raise ParameterError("The 'name' parameter of extend must name the columns it adds. Got none instead.")
        col_keys = np.arange(e, dtype=np.int32) if keys is None else np.asarray(keys, dtype=np.int32).ravel()
        if col_keys.shape != (e,):
            raise ParameterError(f"The 'keys' parameter of extend must have one key per column ({e}). "
                                 f"Got {col_keys.shape[0]} instead.")
        n0 = self.n_cols
        n = n0 + e
        cols = Handle(name, BlockKind.COLUMNS, n0, n) if e else None

        mats, lo_all, hi_all, kinds_layer, idx, row_handles = [], [], [], [], [], []
        m0 = self.n_rows
        for g in rows:
            coefs = {key: sp.coo_matrix(M) for key, M in g.coefficients.items()}
            lo = np.asarray(g.lo, dtype=np.float64).ravel()
            hi = np.asarray(g.hi, dtype=np.float64).ravel()
            k = next(iter(coefs.values())).shape[0] if coefs else max(lo.size, hi.size)
            if lo.size not in (1, k) or hi.size not in (1, k):
                raise ParameterError(f"The bounds of rows {g.name!r} must be scalars or have one entry per row ({k}). "
                                     f"Got {lo.size} and {hi.size} entries instead.")
            lo, hi = np.broadcast_to(lo, (k,)).copy(), np.broadcast_to(hi, (k,)).copy()
            r, c, v = [], [], []
            for key, M in coefs.items():
                h = cols if isinstance(key, str) and cols is not None and key == name else key
                if not isinstance(h, Handle) or h.kind is not BlockKind.COLUMNS or h.stop > n:
                    raise ParameterError(f"The coefficients of rows {g.name!r} must be keyed by column handles of this "
                                         f"polytope (or {name!r} for the new columns). Got {key!r} instead.")
                if M.shape != (k, h.size):
                    raise ParameterError(f"The coefficients of rows {g.name!r} on {h.name!r} must have shape "
                                         f"({k}, {h.size}). Got shape {M.shape} instead.")
                r.append(M.row)
                c.append(M.col + h.start)
                v.append(M.data)
            R = sp.csr_matrix((np.concatenate(v) if v else np.zeros(0),
                               (np.concatenate(r) if r else np.zeros(0, int), np.concatenate(c) if c else np.zeros(0, int))),
                              shape=(k, n))
            row_keys = np.arange(k, dtype=np.int32) if g.keys is None else np.asarray(g.keys, dtype=np.int32).ravel()
            if row_keys.shape != (k,):
                raise ParameterError(f"The keys of rows {g.name!r} must be one per row ({k}). Got {row_keys.shape[0]} instead.")
            start = m0 + sum(x.shape[0] for x in mats)
            row_handles.append(Handle(g.name, BlockKind.ROWS, start, start + k))
            mats.append(R)
            lo_all.append(lo)
            hi_all.append(hi)
            kinds_layer.append(np.full(k, len(self.extra_rows) + len(row_handles) - 1, np.int32))
            idx.append(row_keys)
        k_all = sum(x.shape[0] for x in mats)
        R = sp.vstack(mats) if mats else sp.csr_matrix((0, n))
        A = sp.vstack([sp.hstack([self.A, sp.csc_matrix((self.n_rows, e))]), R]).tocsc()
        old_int = np.zeros(n0, bool) if self.integer is None else self.integer
        new_int = np.full(e, bool(integer))
        integer_mask = None if self.integer is None and not integer else np.concatenate([old_int, new_int])
        cat = np.concatenate
        zi = np.zeros(0, np.int32)
        poly = Polytope(
            self.network, A, cat([self.row_lo, *lo_all]), cat([self.row_hi, *hi_all]), cat([self.col_lo, col_lo]),
            cat([self.col_hi, col_hi]), cat([self.col_role, np.full(e, int(Role.EXTRA), np.int8)]),
            cat([self.col_layer, np.full(e, len(self.extra_cols), np.int32)]), cat([self.col_index, col_keys]),
            cat([self.row_kind, np.full(k_all, int(RowKind.EXTRA), np.int8)]), cat([self.row_layer, zi, *kinds_layer]),
            cat([self.row_neuron, np.zeros(k_all, np.int32)]), cat([self.row_side, np.full(k_all, -1, np.int8)]),
            cat([self.row_index, zi, *idx]), self.envelopes, self.blocks, integer_mask,
            self.extra_cols + ((cols,) if cols is not None else ()), self.extra_rows + tuple(row_handles))
        return Extension(poly, cols, tuple(row_handles))

    def with_l1_distance(self, x0: Array, name: str = "u") -> Extension:
        """This polytope plus columns ``u`` (d,) with rows ``u_i - x_i >= -x0_i`` and ``u_i + x_i >= x0_i``,
        so that ``sum(u) >= ||x - x0||_1``, with equality at any minimum of a cost with positive weight
        on u. u's upper bounds, ``max(xu - x0, x0 - xl)`` rounded up over the input box [xl, xu],
        contain ``|x_i - x0_i|`` for every input of the polytope. ``ext.cols`` is u's handle."""
        x = self.handle(Role.INPUT)
        x0 = np.asarray(x0, dtype=np.float64).ravel()
        if x0.shape != (x.size,):
            raise ParameterError(f"The 'x0' parameter of with_l1_distance must have shape ({x.size},). "
                                 f"Got shape {x0.shape} instead.")
        xl, xu = self.col_lo[x.slice], self.col_hi[x.slice]
        hi = np.nextafter(np.maximum(np.maximum(xu - x0, x0 - xl), 0.0), np.inf)
        eye = sp.identity(x.size, format="coo")
        inf = np.full(x.size, np.inf)
        return self.extend(name, col_lo=np.zeros(x.size), col_hi=hi,
                           rows=[Rows(f"{name}>=x-x0", {name: eye, x: -eye}, -x0, inf),
                                 Rows(f"{name}>=x0-x", {name: eye, x: eye}, x0, inf)])

    # -- derived, cached ----------------------------------------------------------------------

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
        """Column slice of one built-in block: ``block(Role.INPUT)``, ``block(Role.PRE, 1)``, ``block(Role.LOGIT)``."""
        return self.handle(role, layer).slice

    def handle(self, role: Role, layer: int = 0) -> Handle:
        """The handle of one built-in column block: ``x``, ``a{l}``, ``z{l}`` or ``logit``."""
        for r, l, start, stop in self.blocks:
            if r == role and (role in (Role.INPUT, Role.LOGIT) or l == layer):
                text = _ROLE_TEXT[Role(r)] + ("" if role in (Role.INPUT, Role.LOGIT) else str(l))
                return Handle(text, BlockKind.COLUMNS, start, stop)
        raise ParameterError(f"The polytope has no block {_ROLE_TEXT.get(Role(role), 'extra')}{layer or ''}; "
                             "columns an analysis added are named by the handles extend returned.")

    @property
    def inputs(self) -> slice:
        return self.block(Role.INPUT)

    @property
    def logits(self) -> slice:
        return self.block(Role.LOGIT)

    def cost(self, terms: Mapping[Handle, Any]) -> Array:
        """A full cost vector (n,): for each column handle, its coefficients (a scalar or one per column
        of the block), zero elsewhere. ``poly.cost({poly.handle(Role.LOGIT): e_k, t: -1.0})``."""
        c = np.zeros(self.n_cols)
        for h, coefficients in terms.items():
            if not isinstance(h, Handle) or h.kind is not BlockKind.COLUMNS or h.stop > self.n_cols:
                raise ParameterError(f"The 'terms' parameter of cost must be keyed by column handles of this "
                                     f"polytope. Got {h!r} instead.")
            c[h.slice] += coefficients
        return c

    def margin_cost(self, label: int, other: int) -> Array:
        """Cost of ``logit[label] - logit[other]``."""
        c = np.zeros(self.network.n_classes)
        c[label] += 1.0
        c[other] -= 1.0
        return self.cost({self.handle(Role.LOGIT): c})

    # -- names --------------------------------------------------------------------------------

    def col_name(self, j: int) -> str:
        role = Role(int(self.col_role[j]))
        layer, index = int(self.col_layer[j]), int(self.col_index[j])
        if role is Role.EXTRA:
            return f"{self.extra_cols[layer].name}[{index}]"
        if role in (Role.INPUT, Role.LOGIT):
            return f"{_ROLE_TEXT[role]}[{index}]"
        return f"{_ROLE_TEXT[role]}{layer}[{index}]"

    def row_name(self, i: int) -> str:
        layer, j = int(self.row_layer[i]), int(self.row_neuron[i])
        if self.row_kind[i] == RowKind.EXTRA:
            return f"{self.extra_rows[layer].name}[{int(self.row_index[i])}]"
        if self.row_kind[i] == RowKind.AFFINE:
            last = layer == len(self.network.layers)
            return f"affine.out.{j}" if last else f"affine.{NeuronId(layer, j)}"
        return f"{NeuronId(layer, j)}.{_SIDE_TEXT[int(self.row_side[i])]}.{int(self.row_index[i])}"

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
        """The column vector the true network produces from input x (d,): inputs, a, z, logits (the
        built-in columns; a polytope with extra columns needs their values appended)."""
        fp = self.network.forward(np.asarray(x, dtype=np.float64)[None, :])
        parts = [fp.x[0]]
        for a, z in zip(fp.pre, fp.post):
            parts += [a[0], z[0]]
        parts.append(fp.logits[0])
        return np.concatenate(parts)


# ---------------------------------------------------------------------------------------------
# Fixed activation patterns


def _narrowed(network: Network, pre_bounds: Sequence[tuple[Array, Array]], pattern: ActivationPattern
              ) -> list[tuple[Array, Array]]:
    """Pre-activation intervals cut at 0 on the side each fixed neuron's piece excludes (ON: a >= 0,
    OFF: a <= 0). InfeasibleError when a fixed piece lies outside its neuron's interval."""
    pattern.check(network.hidden_widths, "build_polytope")
    out, empty = [], []
    for l, ((L, U), act, state) in enumerate(zip(pre_bounds, network.activations, pattern.states), start=1):
        L, U = np.asarray(L, np.float64), np.asarray(U, np.float64)
        if state.any() and act.spec.family is not Family.PIECEWISE_LINEAR:
            raise ParameterError(f"The 'pattern' parameter of build_polytope may only fix neurons of piecewise-linear "
                                 f"activations (relu, leaky_relu). Got fixed neurons in layer {l}, which is {act} instead.")
        L2 = np.where(state == ON, np.maximum(L, 0.0), L)
        U2 = np.where(state == OFF, np.minimum(U, 0.0), U)
        empty += [str(NeuronId(l, int(j))) for j in np.flatnonzero(L2 > U2)]
        out.append((L2, U2))
    if empty:
        raise InfeasibleError(f"The fixed pattern is empty on this box: {len(empty)} neurons cannot take their fixed "
                              f"piece within their pre-activation bounds ({', '.join(empty[:5])}"
                              f"{', ...' if len(empty) > 5 else ''}).")
    return out


def _exact_pieces(cuts: Cuts, act: Activation, state: Array) -> Cuts:
    """``cuts`` with every fixed neuron's cuts replaced by the line of its piece, as a lower and an
    upper cut (an equality): ON ``z = f'(+1) a + f(0)``, OFF ``z = f'(-1) a + f(0)``. Exact for the
    piecewise-linear family, whose two pieces meet at 0 (the real network is that line there)."""
    fixed = np.flatnonzero(state != 0)
    if fixed.size == 0:
        return cuts
    keep = state[cuts.neuron] == 0
    slope = np.where(state[fixed] == ON, float(act.derivative(np.array(1.0))), float(act.derivative(np.array(-1.0))))
    c0 = float(act(np.array(0.0)))
    neuron = np.concatenate([cuts.neuron[keep], np.repeat(fixed, 2)])
    side = np.concatenate([cuts.side[keep], np.tile(np.array([0, 1], np.int8), fixed.size)])
    index = np.concatenate([cuts.index[keep], np.zeros(2 * fixed.size, np.int64)])
    slopes = np.concatenate([cuts.slope[keep], np.repeat(slope, 2)])
    icpt = np.concatenate([cuts.intercept[keep], np.full(2 * fixed.size, c0)])
    order = np.lexsort((index, side, neuron))
    return Cuts(neuron[order].astype(np.int64), side[order].astype(np.int8), index[order].astype(np.int64),
                slopes[order], icpt[order], cuts.lower, cuts.upper, cuts.zlo, cuts.zhi)


# ---------------------------------------------------------------------------------------------
# Assembly


def build_polytope(network: Network, xl: Array, xu: Array, pre_bounds: Sequence[tuple[Array, Array]],
                   envelope: Envelope = Hull(), *, envelopes: Sequence[Cuts] | None = None,
                   pattern: ActivationPattern | None = None) -> Polytope:
    """Assemble the LP relaxation of ``network`` on the box [xl, xu].

    ``pre_bounds[l-1] = (L, U)``, arrays of shape (n_l,), must be sound bounds of hidden layer l's
    pre-activations over the box (from ``polylens.bounds``). ``envelope`` chooses the relaxation
    (``Hull(cuts)`` or ``Pair()``); prebuilt cuts per layer may be passed as ``envelopes`` instead.
    ``pattern`` fixes neurons of piecewise-linear layers to a piece (see :mod:`polylens.lp.pattern`):
    their pre-activation intervals are cut at 0 and their envelopes replaced by the exact line of the
    piece; neurons left FREE are relaxed as usual. InfeasibleError when the pattern is empty on the box.
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
    envelope = check_envelope(envelope, "build_polytope")

    exact = [np.zeros(w, bool) for w in hidden]
    if pattern is not None:
        if envelopes is not None:
            raise ParameterError("The 'pattern' parameter of build_polytope needs the envelopes built here; give "
                                 "either prebuilt 'envelopes' or a 'pattern'. Got both instead.")
        pre_bounds = _narrowed(network, pre_bounds, pattern)
        exact = [s != 0 for s in pattern.states]
        envelopes = tuple(_exact_pieces(build_envelope(act, L, U, envelope), act, s)
                          for act, (L, U), s in zip(network.activations, pre_bounds, pattern.states))
    if envelopes is None:
        envelopes = tuple(
            build_envelope(act, np.asarray(L, float), np.asarray(U, float), envelope)
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
    # The rigorous interval arithmetic of polylens.bounds (the one rounding model): W z + b over the box.
    ylo, yhi = (v[0] for v in interval_affine(last.W, last.b, zlo[None, :], zhi[None, :]))
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
            # (sound: the polytope only grows, by less than TINY_RANGE in that coordinate). A neuron fixed
            # by a pattern keeps its equality: it has no slack, and it is what makes the piece exact.
            zw = np.asarray(env.zhi, float) - np.asarray(env.zlo, float)
            tiny = (zw < TINY_RANGE * (1.0 + np.abs(np.asarray(env.zhi, float)))) & ~exact[l - 1]
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


def split_envelope(env: Cuts, n_images: int) -> list[Cuts]:
    """Split the cuts built for ``n_images`` stacked copies of a layer (neurons i*n .. (i+1)*n - 1
    belong to image i) into one Cuts value per image. Cuts are sorted by neuron, so each image's cuts
    are one contiguous run."""
    n = env.n_neurons // n_images
    cuts = np.searchsorted(env.neuron, np.arange(n_images + 1) * n)
    out = []
    for i in range(n_images):
        r = slice(cuts[i], cuts[i + 1])
        s = slice(i * n, (i + 1) * n)
        out.append(Cuts(env.neuron[r] - i * n, env.side[r], env.index[r], env.slope[r], env.intercept[r],
                        env.lower[s], env.upper[s], env.zlo[s], env.zhi[s]))
    return out


def build_polytopes(network: Network, xl: Array, xu: Array, lower: Sequence[Array], upper: Sequence[Array],
                    envelope: Envelope = Hull()) -> list[Polytope]:
    """One polytope per row of the boxes xl, xu (N, d), with pre-activation bounds ``lower[l]``,
    ``upper[l]`` of shape (N, n_l) per hidden layer (e.g. ``Bounds.lower``). The envelopes of all N
    images are built in one vectorised call per layer, which is what makes many small polytopes cheap."""
    xl, xu = np.atleast_2d(xl), np.atleast_2d(xu)
    N = xl.shape[0]
    if N == 0:
        return []
    envelope = check_envelope(envelope, "build_polytopes")
    per_layer = [split_envelope(build_envelope(act, np.asarray(Lb, float).ravel(), np.asarray(Ub, float).ravel(),
                                               envelope), N)
                 for act, Lb, Ub in zip(network.activations, lower, upper)]
    return [build_polytope(network, xl[i], xu[i], [(e[i].lower, e[i].upper) for e in per_layer],
                           envelopes=[e[i] for e in per_layer]) for i in range(N)]
