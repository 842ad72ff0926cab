"""VNN-LIB 1.0 properties: read, write, and counterexample files in the competition's format.

The route: a reader of our own. The PyPI package ``vnnlib`` (1.0.2) reads only VNN-LIB 2.0, while
the VNN-COMP 2021/2022 benchmarks are written in 1.0, a small SMT-LIB fragment:

    (declare-const X_0 Real) ... (declare-const Y_9 Real)
    (assert (<= X_0 0.03)) (assert (>= X_0 0.0)) ...
    (assert (or (and (>= Y_0 Y_8)) (and (>= Y_1 Y_8 )) ...))

A property asserts the *unsafe* set: the verifier answers ``sat`` when some input satisfies every
assertion (with the counterexample) and ``unsat`` when none does. Every assertion is a boolean
formula over linear comparisons (``<=``, ``>=``, ``<``, ``>``; terms built with ``+``, ``-``, ``*`` by
a constant, numbers and the declared variables) joined by ``and``/``or``; the assertions together
are their conjunction, put in disjunctive normal form here. Each DNF term must bound every input
by constants (comparisons of one input with a number) and constrain the outputs linearly; terms
with the same input box are gathered into one :class:`~polylens.lenses.verify.bab.Spec` whose
disjuncts are their output conjunctions. Comparisons mixing inputs and outputs are refused with a
clear error. Files may be gzipped.
"""

from __future__ import annotations

import gzip
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from polylens.errors import DataError, ParameterError
from polylens.lenses.verify.bab import Spec

Array = np.ndarray

__all__ = ["Property", "format_counterexample", "parse_counterexample", "parse_vnnlib", "read_text", "read_vnnlib",
           "write_vnnlib"]

_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def read_text(path: str | Path) -> str:
    """A text file's content, gunzipped when it is gzipped (by its magic bytes)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DataError(f"Cannot read {str(p)!r}: {e.strerror or e}.") from None
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def _sexprs(text: str) -> list:
    text = re.sub(r";[^\n]*", " ", text)
    stack: list[list] = [[]]
    for tok in _TOKEN.findall(text):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise ParameterError("The VNN-LIB text has a ')' without its '('.")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise ParameterError("The VNN-LIB text ends inside an unclosed '('.")
    return stack[0]


@dataclass(frozen=True, eq=False)
class Property:
    """A VNN-LIB property: ``n_inputs``, ``n_outputs``, and its cases: per distinct input box,
    ``(lo (n_inputs,), hi (n_inputs,), spec)`` where ``spec``'s disjuncts are the output conditions
    of the unsafe set on that box. ``sat`` when any case has a point satisfying any disjunct."""

    n_inputs: int
    n_outputs: int
    cases: tuple[tuple[Array, Array, Spec], ...]

    def equals(self, other: "Property", tol: float = 0.0) -> bool:
        """Same inputs, outputs, boxes and output rows (rows compared as sets per disjunct)."""
        if (self.n_inputs, self.n_outputs, len(self.cases)) != (other.n_inputs, other.n_outputs, len(other.cases)):
            return False
        for (a_lo, a_hi, a), (b_lo, b_hi, b) in zip(self.cases, other.cases):
            if not (np.allclose(a_lo, b_lo, atol=tol, rtol=0) and np.allclose(a_hi, b_hi, atol=tol, rtol=0)):
                return False
            if a.n_groups != b.n_groups or a.strict != b.strict:
                return False
            for g in range(a.n_groups):
                ra = sorted(map(tuple, np.c_[a.H[a.group == g], a.h0[a.group == g]].tolist()))
                rb = sorted(map(tuple, np.c_[b.H[b.group == g], b.h0[b.group == g]].tolist()))
                if len(ra) != len(rb) or not np.allclose(ra, rb, atol=tol, rtol=0):
                    return False
        return True


def _linear(e, names: dict[str, tuple[str, int]]) -> tuple[dict[tuple[str, int], float], float]:
    """A term as (coefficients by variable, constant)."""
    if isinstance(e, str):
        if e in names:
            return {names[e]: 1.0}, 0.0
        try:
            return {}, float(e)
        except ValueError:
            raise ParameterError(f"The VNN-LIB term {e!r} is neither a declared variable nor a number.") from None
    if not e or not isinstance(e[0], str):
        raise ParameterError(f"The VNN-LIB term {_show(e)} is not a linear term.")
    op, args = e[0], [_linear(a, names) for a in e[1:]]
    if op == "+" and args:
        return _sum(args, [1.0] * len(args))
    if op == "-" and len(args) == 1:
        return _sum(args, [-1.0])
    if op == "-" and len(args) >= 2:
        return _sum(args, [1.0] + [-1.0] * (len(args) - 1))
    if op == "*" and len(args) == 2:
        (ca, a0), (cb, b0) = args
        if not ca:
            return {k: a0 * v for k, v in cb.items()}, a0 * b0
        if not cb:
            return {k: b0 * v for k, v in ca.items()}, a0 * b0
        raise ParameterError(f"The VNN-LIB term {_show(e)} multiplies two variables: not linear.")
    raise ParameterError(f"The VNN-LIB term {_show(e)} uses an operator polylens does not read ({op!r}).")


def _sum(args, signs):
    out: dict = {}
    c = 0.0
    for (coef, const), s in zip(args, signs):
        for k, v in coef.items():
            out[k] = out.get(k, 0.0) + s * v
        c += s * const
    return out, c


def _show(e) -> str:
    return e if isinstance(e, str) else "(" + " ".join(_show(a) for a in e) + ")"


_COMPARE = {"<=": (1.0, False), "<": (1.0, True), ">=": (-1.0, False), ">": (-1.0, True)}


def _dnf(f, names) -> list[list[tuple[dict, float, bool]]]:
    """A formula as a list of terms, each a list of atoms ``sum coef * v + const <= 0`` (``< 0`` when
    strict)."""
    if isinstance(f, str) or not f:
        raise ParameterError(f"The VNN-LIB formula {_show(f)} is not a comparison, 'and' or 'or'.")
    op = f[0]
    if op in _COMPARE:
        if len(f) != 3:
            raise ParameterError(f"The VNN-LIB comparison {_show(f)} must have two sides.")
        sign, strict = _COMPARE[op]
        (ca, a0), (cb, b0) = _linear(f[1], names), _linear(f[2], names)
        coef, const = _sum([(ca, a0), (cb, b0)], [sign, -sign])
        return [[(coef, const, strict)]]
    if op == "and":
        terms = [[]]
        for g in f[1:]:
            terms = [t + u for t in terms for u in _dnf(g, names)]
        return terms
    if op == "or":
        return [t for g in f[1:] for t in _dnf(g, names)]
    raise ParameterError(f"The VNN-LIB formula {_show(f)} uses {op!r}; polylens reads <=, >=, <, >, and, or.")


def parse_vnnlib(text: str) -> Property:
    """Parse VNN-LIB 1.0 text (see the module docstring)."""
    names: dict[str, tuple[str, int]] = {}
    asserts = []
    for e in _sexprs(text):
        if not isinstance(e, list) or not e:
            raise ParameterError(f"The VNN-LIB text has a stray {_show(e)} at the top level.")
        if e[0] == "declare-const":
            if len(e) != 3 or e[2] != "Real":
                raise ParameterError(f"The VNN-LIB declaration {_show(e)} must read (declare-const NAME Real).")
            m = re.fullmatch(r"([XY])_(\d+)", e[1])
            if not m:
                raise ParameterError(f"The VNN-LIB variable {e[1]!r} must be named X_i (inputs) or Y_i (outputs).")
            names[e[1]] = (m.group(1), int(m.group(2)))
        elif e[0] == "assert":
            if len(e) != 2:
                raise ParameterError(f"The VNN-LIB assertion {_show(e)} must hold one formula.")
            asserts.append(e[1])
        else:
            raise ParameterError(f"The VNN-LIB text has {e[0]!r}; polylens reads declare-const and assert.")
    xs = sorted(i for k, i in names.values() if k == "X")
    ys = sorted(i for k, i in names.values() if k == "Y")
    if not xs or not ys or xs != list(range(len(xs))) or ys != list(range(len(ys))):
        raise ParameterError("The VNN-LIB text must declare X_0 .. X_{n-1} and Y_0 .. Y_{m-1}.")
    n_in, n_out = len(xs), len(ys)
    terms = [[]]
    for a in asserts:
        terms = [t + u for t in terms for u in _dnf(a, names)]
    cases: dict[tuple, tuple[Array, Array, list]] = {}
    order = []
    strict_all = True
    for t in terms:
        lo, hi = np.full(n_in, -np.inf), np.full(n_in, np.inf)
        rows = []
        for coef, const, strict in t:
            kinds = {k for k, _ in coef if coef[(k, _)] != 0.0}
            if kinds == {"X"}:
                nz = [(i, v) for (k, i), v in coef.items() if v != 0.0]
                if len(nz) != 1:
                    raise ParameterError("The VNN-LIB property constrains a combination of inputs; polylens reads "
                                         "input boxes only (one input compared with a number).")
                i, v = nz[0]
                bound = -const / v
                if v > 0:
                    hi[i] = min(hi[i], bound)
                else:
                    lo[i] = max(lo[i], bound)
            elif kinds == {"Y"}:
                h = np.zeros(n_out)
                for (k, i), v in coef.items():
                    h[i] += v
                rows.append((h, const))
                strict_all = strict_all and strict
            elif not kinds:
                if (const > 0) or (strict and const >= 0):
                    rows = None  # a false constant condition: the term is empty
                    break
            else:
                raise ParameterError("The VNN-LIB property compares inputs with outputs; polylens reads input "
                                     "boxes and output conditions apart.")
        if rows is None or np.any(lo > hi):
            continue
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ParameterError("The VNN-LIB property leaves some input unbounded; every X_i needs a lower and an "
                                 "upper bound.")
        key = (lo.tobytes(), hi.tobytes())
        if key not in cases:
            cases[key] = (lo, hi, [])
            order.append(key)
        cases[key][2].append(rows)
    out = []
    for key in order:
        lo, hi, disj = cases[key]
        H, h0, group = [], [], []
        for g, rows in enumerate(disj):
            if not rows:  # no output condition: every point of the box is unsafe
                rows = [(np.zeros(n_out), -1.0)]
            for h, c in rows:
                H.append(h)
                h0.append(c)
                group.append(g)
        out.append((lo, hi, Spec(np.array(H), np.array(h0), np.array(group), strict=strict_all)))
    return Property(n_in, n_out, tuple(out))


def read_vnnlib(path: str | Path) -> Property:
    """:func:`parse_vnnlib` of a file (gzipped or not)."""
    return parse_vnnlib(read_text(path))


def _num(v: float) -> str:
    return repr(float(v)) if math.isfinite(v) else ("1e308" if v > 0 else "-1e308")


def _lin_text(h: Array, prefix: str = "Y") -> str:
    terms = [(f"{prefix}_{i}" if v == 1.0 else f"(* {_num(v)} {prefix}_{i})") for i, v in enumerate(h) if v != 0.0]
    if not terms:
        return "0.0"
    return terms[0] if len(terms) == 1 else "(+ " + " ".join(terms) + ")"


def write_vnnlib(prop: Property) -> str:
    """VNN-LIB 1.0 text of ``prop`` (read back by :func:`parse_vnnlib` as an equal property). Each
    output row is written as ``(<= h.Y (- c))``; several cases become one disjunction over
    (input box and output conditions)."""
    lines = [f"(declare-const X_{i} Real)" for i in range(prop.n_inputs)]
    lines += [f"(declare-const Y_{i} Real)" for i in range(prop.n_outputs)]
    op = "<"
    cmp_ = lambda h, c: f"({op if prop.cases and prop.cases[0][2].strict else '<='} {_lin_text(h)} {_num(-c)})"

    def disj(spec: Spec) -> str:
        parts = []
        for g in range(spec.n_groups):
            r = np.flatnonzero(spec.group == g)
            parts.append("(and " + " ".join(cmp_(spec.H[i], spec.h0[i]) for i in r) + ")")
        return "(or\n    " + "\n    ".join(parts) + "\n)"

    if len(prop.cases) == 1:
        lo, hi, spec = prop.cases[0]
        for i in range(prop.n_inputs):
            lines.append(f"(assert (<= X_{i} {_num(hi[i])}))")
            lines.append(f"(assert (>= X_{i} {_num(lo[i])}))")
        lines.append(f"(assert {disj(spec)})")
    else:
        cases = []
        for lo, hi, spec in prop.cases:
            box = " ".join(f"(<= X_{i} {_num(hi[i])}) (>= X_{i} {_num(lo[i])})" for i in range(prop.n_inputs))
            cases.append(f"(and {box} {disj(spec)})")
        lines.append("(assert (or " + " ".join(cases) + "))")
    return "\n".join(lines) + "\n"


def format_counterexample(x: Sequence[float], y: Sequence[float]) -> str:
    """The competition's counterexample text: ``((X_0 v)\\n (X_1 v) ... (Y_0 v) ...)`` (values as
    Python reprs, which read back exactly)."""
    items = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x)] + [f"(Y_{i} {float(v)!r})" for i, v in enumerate(y)]
    return "(" + "\n ".join(items) + ")\n"


def parse_counterexample(text: str) -> tuple[Array, Array]:
    """(x, y) from a counterexample text (the lines after ``sat`` in a result file)."""
    e = _sexprs(text)
    if len(e) != 1 or not isinstance(e[0], list):
        raise ParameterError("A counterexample must be one list of (NAME value) pairs.")
    xs, ys = {}, {}
    for pair in e[0]:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ParameterError(f"A counterexample entry must read (NAME value); got {_show(pair)}.")
        m = re.fullmatch(r"([XY])_(\d+)", pair[0])
        if not m:
            raise ParameterError(f"A counterexample names {pair[0]!r}; expected X_i or Y_i.")
        (xs if m.group(1) == "X" else ys)[int(m.group(2))] = float(pair[1])
    return (np.array([xs[i] for i in range(len(xs))]), np.array([ys[i] for i in range(len(ys))]))
