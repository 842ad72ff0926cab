"""One conversion of polylens values into JSON types, shared by the CLI, the report, the explorer and
the analyses' ``to_dict`` methods.

>>> import numpy as np
>>> jsonable({"a": np.array([1.0, np.inf]), "b": (np.int64(2), None)})
{'a': [1.0, None], 'b': [2, None]}
"""

from __future__ import annotations

import dataclasses
import math
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays, tuples, enums, paths, result objects (anything with
    ``to_dict``) and dataclasses turned into JSON types; NaN and infinities become None (JSON has no
    NaN). TypeError for anything else."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Enum):
        return jsonable(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    raise TypeError(f"cannot turn {type(obj).__name__} into JSON")


def fields_dict(obj: Any, skip: tuple[str, ...] = ()) -> dict:
    """A frozen result's fields as JSON types (:func:`jsonable` of each), in field order, without ``skip``:
    the ``to_dict`` of results whose JSON is exactly their fields."""
    return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in skip}
