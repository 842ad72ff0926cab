"""Parameter checks at the boundary, with one message template.

    The 'eps' parameter of certify must be a float in [0, 1]. Got -0.1 instead.

Scalars (:func:`check_float`, :func:`check_int`, :func:`check_bool`, :func:`check_enum`), the
network argument of an analysis (:func:`check_network`), inputs (:func:`check_inputs` for a batch
(N, d), :func:`check_input` for one (d,) vector), labels (:func:`check_labels`) and classes
(:func:`check_class`, :func:`check_classes`). Every check returns the value in its canonical form
(float64 arrays, int64 labels, tuples of ints) or raises :class:`~polylens.errors.ParameterError`
with that template, naming the parameter and the function it was given to.

>>> import numpy as np
>>> check_inputs([[0.5, 1.0]], 2, "certify").shape
(1, 2)
>>> check_labels([3, 1], 2, 10, "certify").tolist()
[3, 1]
>>> try:
...     check_float(-0.1, "eps", "certify", 0.0, 1.0)
... except Exception as e:
...     print(e)
The 'eps' parameter of certify must be a float in [0.0, 1.0]. Got -0.1 instead.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from polylens.errors import ParameterError

if TYPE_CHECKING:  # pragma: no cover
    from polylens.nn.model import Model
    from polylens.nn.network import Network

E = TypeVar("E", bound=Enum)
Array = np.ndarray

__all__ = ["Described", "check_bool", "check_class", "check_classes", "check_enum", "check_float", "check_input", "check_inputs",
           "check_int", "check_labels", "check_network", "fail"]


class Described(str):
    """Text describing what was given (``shape (3, 4)``), shown as it is in a message rather than quoted."""

    def __repr__(self) -> str:
        return str(self)


def fail(name: str, where: str, must: str, got: Any) -> ParameterError:
    """The one message: ``The '{name}' parameter of {where} must be {must}. Got {got!r} instead.``

    ``got`` is shown with ``repr``: the value itself, or a :class:`Described` text such as
    ``Described("shape (3, 4)")``."""
    return ParameterError(f"The '{name}' parameter of {where} must be {must}. Got {got!r} instead.")


# -- scalars ------------------------------------------------------------------------------------

def check_float(value: Any, name: str, where: str, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """Return ``value`` as a finite float inside the given interval, or raise ParameterError."""
    lb = "(" if lo_open else "["
    rb = ")" if hi_open else "]"
    must = f"a float in {lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise fail(name, where, must, value) from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise fail(name, where, must, value)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise fail(name, where, must, value)
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise fail(name, where, must, value)
    return v


def check_int(value: Any, name: str, where: str, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as an int inside [lo, hi], or raise ParameterError."""
    must = f"an int in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
    if isinstance(value, bool):
        raise fail(name, where, must, value)
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise fail(name, where, must, value) from None
    if v != value and not (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        raise fail(name, where, must, value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise fail(name, where, must, value)
    return v


def check_bool(value: Any, name: str, where: str) -> bool:
    """Return ``value`` if it is a bool (numpy's included), or raise ParameterError: a truthy string
    such as ``"no"`` must never be read as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise fail(name, where, "a bool", value)
    return bool(value)


def check_enum(value: Any, enum: type[E], name: str, where: str) -> E:
    """Return the member of ``enum`` named or valued ``value``, or raise ParameterError."""
    if isinstance(value, enum):
        return value
    for member in enum:
        if value == member.value or (isinstance(value, str) and value.lower() == member.name.lower()):
            return member
    options = ", ".join(repr(m.value) for m in enum)
    raise fail(name, where, f"one of {options}", value)


# -- the network of an analysis ---------------------------------------------------------------------

def check_network(obj: Any, where: str, name: str = "network") -> "tuple[Network, Model | None]":
    """The network of a :class:`~polylens.nn.model.Model` (and the model) or a bare
    :class:`~polylens.nn.network.Network` (and None); ParameterError for anything else."""
    from polylens.nn.model import Model
    from polylens.nn.network import Network

    if isinstance(obj, Model):
        return obj.network, obj
    if isinstance(obj, Network):
        return obj, None
    raise fail(name, where, "a Network or a Model", Described(f"type {type(obj).__name__}"))


# -- inputs and labels --------------------------------------------------------------------------------

def _first_bad(x: Array, bad: Array) -> str:
    return Described(f"a value of {float(x[bad].flat[0])!r}")


def check_inputs(x: Any, width: int, where: str, name: str = "x", *, unit_box: bool = True,
                 min_rows: int = 0) -> Array:
    """``x`` as a float64 array of shape (N, width) with N >= ``min_rows``; a (width,) vector becomes N = 1.

    Every value must be finite, and in [0, 1] when ``unit_box`` (the input space of the bundled
    models, and the box every region is clipped to).
    """
    arr = np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) or x.dtype != np.float64 else x
    if arr.ndim == 1:
        arr = arr[None, :]
    rows = f"(N, {width})" if min_rows <= 0 else f"(N, {width}) with N >= {min_rows}"
    if arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] < min_rows:
        raise fail(name, where, f"an array of shape {rows}", Described(f"shape {np.shape(x)}"))
    _check_values(arr, name, where, unit_box)
    return arr


def check_input(x: Any, width: int, where: str, name: str = "x", *, unit_box: bool = True) -> Array:
    """``x`` as one float64 input of shape (width,): finite, and in [0, 1] when ``unit_box``."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape != (width,):
        raise fail(name, where, f"an array of shape ({width},)", Described(f"shape {arr.shape}"))
    _check_values(arr, name, where, unit_box)
    return arr


def _check_values(arr: Array, name: str, where: str, unit_box: bool) -> None:
    finite = np.isfinite(arr)
    if not finite.all():
        raise fail(name, where, "finite" + (", with every value in [0, 1]" if unit_box else ""),
                   _first_bad(arr, ~finite))
    if unit_box:
        out = (arr < 0.0) | (arr > 1.0)
        if out.any():
            raise fail(name, where, "an array with every value in [0, 1]", _first_bad(arr, out))


def check_labels(y: Any, n: int, n_classes: int, where: str, name: str = "y", *, per: str = "image") -> Array:
    """``y`` as int64 labels of shape (n,), each in [0, n_classes - 1].

    Integer dtypes are accepted, and floats holding integers (1.0); booleans and fractions are not.
    ``per`` names what each label belongs to in the message ("image", "box").
    """
    arr = np.asarray(y)
    integral = arr.dtype != np.bool_ and (np.issubdtype(arr.dtype, np.integer) or (
        np.issubdtype(arr.dtype, np.floating) and bool(np.all(np.isfinite(arr)))
        and bool(np.all(np.mod(arr, 1) == 0))))
    if arr.shape != (n,) or not integral:
        raise fail(name, where, f"one integer label per {per} ({n})", Described(f"shape {arr.shape}, dtype {arr.dtype}"))
    out = arr.astype(np.int64)
    bad = (out < 0) | (out >= n_classes)
    if bad.any():
        raise fail(name, where, f"labels in [0, {n_classes - 1}]", int(out[bad][0]))
    return out


def check_class(value: Any, n_classes: int, name: str, where: str) -> int:
    """One class index in [0, n_classes - 1]."""
    return check_int(value, name, where, 0, n_classes - 1)


def check_classes(values: Any, n_classes: int, name: str, where: str) -> tuple[int, ...]:
    """Distinct classes in the order given, non-empty; None means every class, an int one class."""
    if values is None:
        return tuple(range(n_classes))
    if isinstance(values, (int, np.integer)):
        values = [values]
    out = tuple(check_class(v, n_classes, name, where) for v in values)
    if not out or len(set(out)) != len(out):
        raise fail(name, where, "a non-empty list of distinct classes", list(out))
    return out
