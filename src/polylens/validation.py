"""Parameter checks at the boundary, with one message template.

    The 'eps' parameter of certify must be a float in [0, 1]. Got -0.1 instead.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, TypeVar

from polylens.errors import ParameterError

E = TypeVar("E", bound=Enum)


def _fail(name: str, where: str, must: str, got: Any) -> ParameterError:
    return ParameterError(f"The '{name}' parameter of {where} must be {must}. Got {got!r} instead.")


def check_float(value: Any, name: str, where: str, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """Return ``value`` as a finite float inside the given interval, or raise ParameterError."""
    lb = "(" if lo_open else "["
    rb = ")" if hi_open else "]"
    must = f"a float in {lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise _fail(name, where, must, value) from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise _fail(name, where, must, value)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise _fail(name, where, must, value)
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise _fail(name, where, must, value)
    return v


def check_int(value: Any, name: str, where: str, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as an int inside [lo, hi], or raise ParameterError."""
    must = f"an int in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
    if isinstance(value, bool):
        raise _fail(name, where, must, value)
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise _fail(name, where, must, value) from None
    if v != value and not (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        raise _fail(name, where, must, value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _fail(name, where, must, value)
    return v


def check_enum(value: Any, enum: type[E], name: str, where: str) -> E:
    """Return the member of ``enum`` named or valued ``value``, or raise ParameterError."""
    if isinstance(value, enum):
        return value
    for member in enum:
        if value == member.value or (isinstance(value, str) and value.lower() == member.name.lower()):
            return member
    options = ", ".join(repr(m.value) for m in enum)
    raise _fail(name, where, f"one of {options}", value)
