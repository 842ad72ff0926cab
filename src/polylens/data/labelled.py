"""The labelled inputs a lens runs on: :class:`Data`.

Every lens takes ``(model, data, options)``; ``data`` is a :class:`Data`: inputs ``x`` (N, d) in
[0, 1] as the network reads them, labels ``y`` (N,), optionally the original images for display,
and a name saying where they came from. It comes from a model's test split
(:meth:`Data.of_model`) or from an ``.npz`` file with ``x`` and ``y`` (:meth:`Data.from_npz`, what
``--data F.npz`` reads, never unpickling).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polylens.errors import DataError, ParameterError

__all__ = ["Data", "read_xy_npz"]

Array = np.ndarray


def _frozen(a: Any, dtype) -> Array:
    out = np.array(a, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Data:
    """Labelled inputs. ``x`` float64 (N, d) in [0, 1]; ``y`` int64 (N,); ``images`` (N, H, W) originals
    for display, or None; ``name`` where they came from. Arrays are read-only copies."""

    x: Array
    y: Array
    images: Array | None = None
    name: str = "memory"

    def __post_init__(self):
        x = _frozen(self.x, np.float64)
        if x.ndim == 1:
            x = _frozen(x[None, :], np.float64)
        y = _frozen(np.asarray(self.y).ravel(), np.int64)
        if x.ndim != 2 or y.shape != (x.shape[0],):
            raise ParameterError(f"Data needs x of shape (N, d) and y of shape (N,). Got x {x.shape} and y {y.shape} instead.")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        if self.images is not None:
            im = np.asarray(self.images)
            if len(im) != len(x):
                raise ParameterError(f"Data has {len(x)} inputs but {len(im)} images.")
            im = im.copy()
            im.setflags(write=False)
            object.__setattr__(self, "images", im)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def head(self, n: int | None) -> "Data":
        """The first ``n`` rows (all of them for None)."""
        if n is None or n >= len(self):
            return self
        return Data(self.x[:n], self.y[:n], None if self.images is None else self.images[:n], self.name)

    @classmethod
    def of_model(cls, model: Any) -> "Data":
        """The test split named by a model's card (ModelError when it names no dataset polylens has)."""
        from polylens.nn.model import model_split

        s = model_split(model)
        return cls(s.x_test, s.y_test, s.images_test, f"{s.name} test split")

    @classmethod
    def from_npz(cls, path: str | Path, width: int, n_classes: int) -> "Data":
        """Read ``x`` (N, width) (or (N, H, W) with H*W = width) in [0, 1] and integer labels ``y``
        (N,) in [0, n_classes) from an ``.npz`` file, never unpickling. DataError for an unreadable
        file, ParameterError for shapes or values the network cannot take."""
        path = Path(path)
        x, y = read_xy_npz(path)
        if x.ndim != 2 or x.shape[1] != width:
            raise ParameterError(f"The data's x must have shape (N, {width}) for this model. Got {x.shape} instead.")
        if not np.issubdtype(x.dtype, np.number) or not np.issubdtype(y.dtype, np.integer) and not (
                np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
            raise ParameterError("The data's x must be numeric and y integer labels.")
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)) or x.min(initial=0) < 0 or x.max(initial=0) > 1:
            raise ParameterError(f"Every image value must lie in [0, 1]; {path} has values in [{x.min():g}, {x.max():g}].")
        y = y.astype(np.int64).ravel()
        if y.shape != (len(x),):
            raise ParameterError(f"The data has {len(x)} images but {y.shape[0]} labels.")
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            bad = int(y[(y < 0) | (y >= n_classes)][0])
            raise ParameterError(f"The 'label' values must be ints in [0, {n_classes - 1}]. Got {bad} instead.")
        return cls(x, y, None, str(path.resolve()))


def read_xy_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The arrays ``x`` (flattened to (N, d) where it is (N, H, W)) and ``y`` of an ``.npz`` file, as
    stored, never unpickling; DataError with one line for a missing or unreadable file or a missing
    array. Callers check shapes and values for their use."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"No data file at {path}.")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise DataError(f"{path} lacks the array(s) {', '.join(missing)}; it needs x (N x d) and y (N labels).")
            x, y = np.asarray(f["x"]), np.asarray(f["y"])
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path} is not a readable .npz file ({text}).") from None
    return (x.reshape(len(x), -1) if x.ndim == 3 else x), y
