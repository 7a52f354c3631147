"""Rebuild the bundled Fashion-MNIST sample from the full IDX files.

Takes a class-balanced random sample of Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): by default
1,800 images of each of the 10 classes from the 60,000 training images and 200 of each from the
10,000 test images, drawn with ``numpy.random.default_rng(seed)`` and kept in their original
order. Writes ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` beside this file, in the original
IDX format, gzipped without a time stamp (so a rebuild is byte-identical), and ``manifest.json``
with the sources' and outputs' SHA-256.

    apt-get install dataset-fashion-mnist      # Debian: /usr/share/datasets/fashion-mnist
    python data/images/build.py                # --help for the options
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
from pathlib import Path

import numpy as np

from polyvae.files import atomic_write_bytes, atomic_write_text

HERE = Path(__file__).resolve().parent
SOURCE = Path("/usr/share/datasets/fashion-mnist")
SPLITS = {"train": "train", "t10k": "test"}


def read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in IDX format, gzipped with no time stamp."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return buffer.getvalue()


def balanced_sample(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    chosen = [
        rng.choice(np.flatnonzero(labels == label), per_class, replace=False)
        for label in np.unique(labels)
    ]
    return np.sort(np.concatenate(chosen))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder of the IDX .gz files")
    parser.add_argument("--train-per-class", type=int, default=1800)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    manifest: dict[str, object] = {
        "source": "Fashion-MNIST (Zalando SE, MIT licence), Debian dataset-fashion-mnist",
        "seed": args.seed,
        "sources": {},
        "files": {},
    }
    for prefix, split in SPLITS.items():
        per_class = args.train_per_class if split == "train" else args.test_per_class
        sources = {
            kind: args.source / f"{prefix}-{kind}-idx{1 if kind == 'labels' else 3}-ubyte.gz"
            for kind in ("images", "labels")
        }
        for path in sources.values():
            if not path.is_file():
                raise SystemExit(f"missing {path}: apt-get install dataset-fashion-mnist")
            manifest["sources"][path.name] = sha256(path.read_bytes())
        images, labels = read_idx(sources["images"]), read_idx(sources["labels"])
        keep = balanced_sample(labels, per_class, rng)
        for kind, array in (("images", images[keep]), ("labels", labels[keep])):
            data = idx_bytes(array)
            name = sources[kind].name
            atomic_write_bytes(HERE / name, data)
            manifest["files"][name] = {"sha256": sha256(data), "shape": list(array.shape)}
        print(f"{split}: {len(keep):,} images ({per_class} a class)")
    atomic_write_text(HERE / "manifest.json", json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
