"""Rebuild the bundled MOSES data in this folder from the molsets 0.3.1 wheel.

MOSES (Polykovskiy et al. 2020) is MIT licensed; its datasets ship inside the wheel. polyvae does
not depend on that package: this script extracts what polyvae bundles, once.

    pip download --no-deps molsets==0.3.1 -d /tmp/molsets
    python data/molecules/build.py /tmp/molsets/molsets-0.3.1-py3-none-any.whl

It writes, next to itself (or to --out):

    train.smi.gz         a seeded random sample of MOSES train (default 250,000 SMILES), one per
                         line, in random order so that any prefix is a random sample too
    test.smi.gz          the MOSES test set, all 176,074 SMILES, in the wheel's order
    mcf.csv              MOSES's medicinal-chemistry filter SMARTS, unchanged
    test_stats.npz       reference statistics of test.smi.gz: ChemNet mean and covariance,
    test_counts.json.gz  packed Morgan fingerprints, properties; BRICS fragment and scaffold counts
    manifest.json        the wheel's SHA-256, the sampling seed, tool versions and file hashes

With --full-train FILE it writes only FILE: the whole MOSES training set (1,584,663 SMILES) in
the seeded random order (its first 250,000 are train.smi.gz). The bundled default is trained on
it, and it ships as moses_train.smi.gz so that the bundled run's data can be read again.

    python data/molecules/build.py /tmp/molsets/molsets-0.3.1-py3-none-any.whl \
        --full-train moses_train.smi.gz

The SMILES files are byte-for-byte reproducible; the statistics depend on the RDKit and
fcd_torch versions (recorded in the manifest). They took 50 minutes on a (shared) two-core
machine, most of it ChemNet; --device cuda is much faster.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

WHEEL_NAME = "molsets-0.3.1-py3-none-any.whl"
WHEEL_SHA256 = "7f4450e3ebecebe79c3a2a55950c93daddee071120daf64a163d03481e811d34"
WHEEL_URL = "https://pypi.org/project/molsets/0.3.1/"
TRAIN_MEMBER = "moses/dataset/data/train.csv.gz"
TEST_MEMBER = "moses/dataset/data/test.csv.gz"
MCF_MEMBER = "moses/metrics/mcf.csv"
LICENCE = "MIT; Copyright 2018 Insilico Medicine, Inc"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_smiles_csv(wheel: zipfile.ZipFile, member: str) -> list[str]:
    """The SMILES column of a gzipped one-column CSV inside the wheel."""
    lines = gzip.decompress(wheel.read(member)).decode().splitlines()
    if lines[0] != "SMILES":
        sys.exit(f"{member}: expected a 'SMILES' header, found {lines[0]!r}")
    return lines[1:]


def write_smiles(path: Path, smiles: list[str]) -> bytes:
    # mtime=0 keeps the gzip header, and so the file, identical from one build to the next.
    data = gzip.compress(("\n".join(smiles) + "\n").encode(), compresslevel=9, mtime=0)
    path.write_bytes(data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("wheel", type=Path, help=f"path to {WHEEL_NAME}")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent, help="output folder (default: here)"
    )
    parser.add_argument("--train-size", type=int, default=250_000, help="training sample size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training sample")
    parser.add_argument("--n-jobs", type=int, default=None, help="processes for RDKit work")
    parser.add_argument("--device", default="cpu", help="torch device for ChemNet")
    parser.add_argument(
        "--full-train",
        type=Path,
        metavar="FILE",
        help="write only the whole training set, shuffled with --seed, to FILE and stop",
    )
    args = parser.parse_args()

    data = args.wheel.read_bytes()
    if sha256(data) != WHEEL_SHA256:
        sys.exit(f"{args.wheel}: SHA-256 differs from molsets 0.3.1's ({WHEEL_SHA256})")
    with zipfile.ZipFile(args.wheel) as wheel:
        train = read_smiles_csv(wheel, TRAIN_MEMBER)
        if args.full_train:
            # The file is not in random order: shuffle so that any prefix is a random sample.
            order = np.random.default_rng(args.seed).permutation(len(train))
            write_smiles(args.full_train, [train[i] for i in order])
            print(f"{args.full_train}: all {len(train)} training SMILES", file=sys.stderr)
            return
        test = read_smiles_csv(wheel, TEST_MEMBER)
        files: dict[str, bytes] = {"mcf.csv": wheel.read(MCF_MEMBER)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mcf.csv").write_bytes(files["mcf.csv"])

    chosen = np.random.default_rng(args.seed).permutation(len(train))[: args.train_size]
    files["train.smi.gz"] = write_smiles(args.out / "train.smi.gz", [train[i] for i in chosen])
    files["test.smi.gz"] = write_smiles(args.out / "test.smi.gz", test)
    print(f"train sample: {len(chosen)} of {len(train)}; test: {len(test)}", file=sys.stderr)

    from polyvae.plugins.molecules.metrics import compute_reference_stats

    started = time.perf_counter()
    compute_reference_stats(test, n_jobs=args.n_jobs, device=args.device).save(args.out, "test")
    for name in ("test_stats.npz", "test_counts.json.gz"):
        files[name] = (args.out / name).read_bytes()
    print(f"reference statistics: {time.perf_counter() - started:.0f} s", file=sys.stderr)

    manifest = {
        "source": {
            "name": "MOSES (Molecular Sets), Polykovskiy et al. 2020, Front. Pharmacol. 11:565644",
            "wheel": WHEEL_NAME,
            "wheel_sha256": WHEEL_SHA256,
            "url": WHEEL_URL,
            "licence": LICENCE,
        },
        "train": {"member": TRAIN_MEMBER, "of": len(train), "size": len(chosen), "seed": args.seed},
        "test": {"member": TEST_MEMBER, "size": len(test)},
        "tools": {
            name: metadata.version(name) for name in ("rdkit", "fcd_torch", "torch", "numpy")
        },
        "files": {name: sha256(content) for name, content in sorted(files.items())},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
