"""IDX files: the format of MNIST and Fashion-MNIST, read and written with numpy alone.

An IDX file is a 4-byte magic number, ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then the data in C order, big-endian. Files may be gzip-compressed (detected
from the gzip magic bytes, not from the name).

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "x-idx3-ubyte.gz")
>>> write_idx(path, np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
>>> read_idx(path).shape
(2, 3, 4)

:func:`read_idx` checks everything a broken download can get wrong (magic number, dtype code,
header length, data length to the byte) and raises :class:`~polylens.errors.DataError` with one
line naming the file and the problem. :func:`load_idx_dir` finds the standard MNIST file names in
a directory and returns a :class:`~polylens.data.Dataset`. :func:`download_mnist` fetches the
four MNIST archives into a cache directory and checks their SHA-256 sums; offline it fails in
seconds with a :class:`DataError`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import tempfile
import threading
import zlib
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from polylens.errors import DataError, ParameterError
from polylens.validation import check_enum, check_float

if TYPE_CHECKING:  # pragma: no cover
    from polylens.data import Dataset

__all__ = ["read_idx", "write_idx", "load_idx_dir", "download_mnist", "IdxSplit",
           "MNIST_FILES", "MNIST_MIRRORS", "default_cache_dir"]

#: IDX dtype code -> big-endian numpy dtype, as defined by the format.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE: dict[tuple[str, int], int] = {(dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()}
_SUPPORTED = "uint8, int8, int16, int32, float32, float64"
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if it starts with the gzip magic number."""
    if not path.exists():
        raise DataError(f"{str(path)}: no such file")
    if path.is_dir():
        raise DataError(f"{str(path)}: is a directory, expected an IDX file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{str(path)}: cannot read ({e.strerror or e})") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{str(path)}: corrupt or truncated gzip stream ({e})") from None


def _parse(buf: bytes, where: str) -> np.ndarray:
    if len(buf) < 4:
        raise DataError(f"{where}: too short for an IDX header ({len(buf)} bytes, need at least 4)")
    if buf[0] != 0 or buf[1] != 0:
        raise DataError(f"{where}: bad magic number 0x{buf[:4].hex()} (an IDX file starts with 0x0000)")
    code, ndim = buf[2], buf[3]
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise DataError(f"{where}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{where}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{where}: header declares {ndim} dimensions but the file ends after "
                        f"{len(buf)} bytes (header needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = _CODE_TO_DTYPE[code]
    expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
    got = len(buf) - header
    shape = "x".join(map(str, dims))
    if got < expected:
        raise DataError(f"{where}: truncated: dims {shape} of {dtype.name} need {expected} data bytes, "
                        f"found {got}")
    if got > expected:
        raise DataError(f"{where}: {got - expected} unexpected bytes after the data "
                        f"(dims {shape} of {dtype.name} need {expected}, found {got})")
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a native-endian, writable numpy array.

    Returns an array of shape ``dims`` (as declared in the header) and dtype uint8, int8, int16,
    int32, float32 or float64 following the IDX dtype code.

    Raises DataError, with one line naming the file and the problem, when the file is missing,
    not gzip-decodable, has a bad magic number or unknown dtype code, a header cut short, or
    data that is shorter or longer than the dimensions require.
    """
    p = Path(path)
    return _parse(_read_bytes(p), str(p))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    ``array`` must have 1 to 255 dimensions, each below 2**32, and dtype uint8, int8, int16, int32,
    float32 or float64 (IDX has no 64-bit integers: cast first). The file is written to a temporary
    name and renamed, so a crash never leaves a half-written file; gzip output is byte-reproducible
    (no timestamp).
    """
    a = np.asarray(array)
    code = _KIND_TO_CODE.get((a.dtype.kind, a.dtype.itemsize))
    if code is None:
        raise ParameterError(f"The 'array' parameter of write_idx must have dtype one of {_SUPPORTED}. "
                             f"Got {a.dtype} instead.")
    if not 1 <= a.ndim <= 255 or any(d >= 2**32 for d in a.shape):
        raise ParameterError(f"The 'array' parameter of write_idx must have 1 to 255 dimensions, each "
                             f"below 2**32. Got shape {a.shape} instead.")
    header = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(a, dtype=_CODE_TO_DTYPE[code]).tobytes()
    p = Path(path)
    if p.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    if not p.parent.is_dir():
        raise DataError(f"{p.parent}: no such directory (writing {p.name})")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class IdxSplit(str, Enum):
    """Which half of an MNIST-style IDX directory: its file-name prefix is ``prefix``."""

    TRAIN = "train"
    TEST = "test"

    @property
    def prefix(self) -> str:
        return "train" if self is IdxSplit.TRAIN else "t10k"


def _candidates(prefix: str, kind: str) -> list[str]:
    """File names tried, in order: the standard ones, then the dotted variant some mirrors use."""
    ndim = 3 if kind == "images" else 1
    names = []
    for sep in ("-", "."):
        base = f"{prefix}-{kind}{sep}idx{ndim}-ubyte"
        names += [base, base + ".gz"]
    return names


def _find(directory: Path, prefix: str, kind: str) -> Path:
    names = _candidates(prefix, kind)
    for n in names:
        if (directory / n).is_file():
            return directory / n
    raise DataError(f"{directory}: no {prefix} {kind} file (looked for {', '.join(names[:2])})")


def load_idx_dir(directory: str | os.PathLike, split: str = "train", name: str | None = None) -> Dataset:
    """Load one half of an MNIST-style IDX directory as a :class:`~polylens.data.Dataset`.

    Looks for ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]`` (split
    ``"train"``) or the ``t10k-...`` pair (split ``"test"``); the dotted variant
    ``train-images.idx3-ubyte`` is accepted too. Checks that images are uint8 (N, H, W), labels
    uint8 (N,), that the counts agree and that every label is in 0..9.

    ``name`` defaults to the directory's name (e.g. ``"fashion-mnist"``). Returns images uint8
    (N, H, W) and labels int64 (N,), in file order.
    """
    from polylens.data import Dataset

    which = check_enum(split, IdxSplit, "split", "load_idx_dir")
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: no such directory (expected a directory of MNIST-style IDX files)")
    img_path = _find(d, which.prefix, "images")
    lab_path = _find(d, which.prefix, "labels")
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{img_path}: expected uint8 images of shape (N, H, W), "
                        f"got {images.dtype} of shape {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{lab_path}: expected uint8 labels of shape (N,), "
                        f"got {labels.dtype} of shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{d}: {img_path.name} has {images.shape[0]} images but {lab_path.name} "
                        f"has {labels.shape[0]} labels")
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(f"{lab_path}: {bad.size} labels outside 0..9 (first at index {bad[0]}: "
                        f"{labels[bad[0]]})")
    return Dataset(images=images, labels=labels.astype(np.int64),
                   name=name if name is not None else (d.resolve().name or "idx"))


# ----------------------------------------------------------------------------------------------
# Optional download of MNIST

#: The four MNIST archives with their sizes in bytes and SHA-256 sums (the sums published with
#: TensorFlow Datasets and torchvision; identical on every mirror).
MNIST_FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte.gz": (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}

#: Mirrors tried in order (TensorFlow's, then torchvision's).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)

_NO_NETWORK = "no network: point --data-dir at an IDX directory"


class _Unreachable(DataError):
    """A mirror could not be reached (no network, refused, timed out); ``reason`` says which."""

    def __init__(self, reason: str):
        super().__init__(f"{_NO_NETWORK} ({reason})")
        self.reason = reason


def default_cache_dir() -> Path:
    """``$POLYLENS_CACHE/mnist`` if set, else ``$XDG_CACHE_HOME/polylens/mnist`` or ``~/.cache/polylens/mnist``."""
    if os.environ.get("POLYLENS_CACHE"):
        return Path(os.environ["POLYLENS_CACHE"]) / "mnist"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "polylens" / "mnist"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _resolve_error(host: str, port: int, timeout: float) -> str | None:
    """None if ``host`` resolves within ``timeout`` seconds, else why not. getaddrinfo ignores
    socket timeouts, so it runs in a daemon thread that is abandoned (and cannot delay interpreter
    exit) if it hangs."""
    outcome: list[str | None] = []

    def work() -> None:
        try:
            socket.getaddrinfo(host, port)
            outcome.append(None)
        except OSError as e:
            outcome.append(f"cannot resolve {host}: {e.strerror or e}")

    t = threading.Thread(target=work, name="polylens-resolve", daemon=True)
    t.start()
    t.join(timeout)
    return outcome[0] if outcome else f"cannot resolve {host} within {timeout:g} s"


def _fetch(url: str, dest: Path, size: int, sha: str, timeout: float) -> None:
    import urllib.error  # imported here: urllib.request costs ~30 ms, and only downloads need it
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    why = _resolve_error(parts.hostname, parts.port or 443, timeout) if parts.hostname else None
    if why is not None:
        raise _Unreachable(why)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, tmp.open("wb") as f:  # noqa: S310
            got = 0
            while chunk := r.read(1 << 16):
                got += len(chunk)
                if got > size:
                    raise DataError(f"{url}: larger than the expected {size} bytes")
                f.write(chunk)
    except DataError:
        tmp.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise _Unreachable(f"{url}: {reason}") from None
    digest = _sha256(tmp)
    if digest != sha:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{url}: SHA-256 mismatch (got {digest}, expected {sha})")
    os.replace(tmp, dest)


def download_mnist(cache_dir: str | os.PathLike | None = None, timeout: float = 10.0,
                   mirrors: tuple[str, ...] | None = None) -> Path:
    """Download the four MNIST archives into ``cache_dir`` (checked by SHA-256) and return it.

    Files already present with the right checksum are not fetched again. Each network step
    (name resolution, connect, each read) gives up after ``timeout`` seconds; every mirror in
    ``mirrors`` (default :data:`MNIST_MIRRORS`) is tried in turn. Offline this raises DataError
    ``"no network: point --data-dir at an IDX directory (...)"`` within about ``timeout`` seconds
    per mirror. The returned directory can be handed to :func:`load_idx_dir`.
    """
    timeout = check_float(timeout, "timeout", "download_mnist", lo=0.0, lo_open=True, hi=600.0)
    mirrors = MNIST_MIRRORS if mirrors is None else tuple(mirrors)
    if not mirrors:
        raise ParameterError("The 'mirrors' parameter of download_mnist must be a non-empty tuple of "
                             "URLs. Got () instead.")
    d = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{d}: cannot create cache directory ({e.strerror or e})") from None
    for fname, (size, sha) in MNIST_FILES.items():
        dest = d / fname
        if dest.is_file() and _sha256(dest) == sha:
            continue
        errors: list[DataError] = []
        for base in mirrors:
            try:
                _fetch(base.rstrip("/") + "/" + fname, dest, size, sha, timeout)
                break
            except DataError as e:
                errors.append(e)
        else:
            if all(isinstance(e, _Unreachable) for e in errors):
                reasons = "; ".join(e.reason for e in errors)  # type: ignore[attr-defined]
                raise DataError(f"{_NO_NETWORK} ({reasons})")
            raise DataError(f"{fname}: every mirror failed; first: {errors[0]}")
    return d
