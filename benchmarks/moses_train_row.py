"""The MOSES "Train" row on polyvae's bundled data, printed as JSON.

The bundled training sample is scored as if it were generated, against the bundled test-set
statistics, and set beside the row the MOSES authors publish for their whole training set. Not run
in CI: on two CPU cores the full 250,000 molecules take about an hour and a half (ChemNet and the
similarity matrices dominate; --device cuda is much faster).

    python benchmarks/moses_train_row.py [--size N] [--n-jobs J] [--device cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from polyvae.plugins.molecules.metrics import (
    bundled_smiles,
    default_n_jobs,
    load_reference_stats,
    moses_metrics,
)

# MOSES's published Train row (github.com/molecularsets/moses README and
# data/samples/train_metrics.csv): all 1,584,663 training molecules against the test set.
# Its property columns are left out: they were computed as a squared Fréchet distance of 1-D
# Gaussians (e.g. logP 7.6e-6), not the Wasserstein distance MOSES and polyvae now report.
PUBLISHED_TRAIN_ROW = {
    "validity": 1.0,
    "unique@1k": 1.0,
    "unique@10k": 1.0,
    "FCD/Test": 0.008,
    "SNN/Test": 0.6419,
    "Frag/Test": 1.0,
    "Scaf/Test": 0.9907,
    "IntDiv1": 0.8567,
    "IntDiv2": 0.8508,
    "Filters": 1.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=None, help="score the first N (default: all)")
    parser.add_argument("--n-jobs", type=int, default=default_n_jobs(), help="processes")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args()

    train = bundled_smiles("train")
    generated = train[: args.size] if args.size else train
    started = time.perf_counter()
    metrics = moses_metrics(
        generated, train, load_reference_stats(), n_jobs=args.n_jobs, device=args.device
    )
    report = {
        "benchmark": "moses_train_row",
        "generated": len(generated),
        "train": len(train),
        "metrics": metrics,
        "published_train_row": PUBLISHED_TRAIN_ROW,
        "seconds": round(time.perf_counter() - started, 1),
        "n_jobs": args.n_jobs,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as file:
            file.write(text + "\n")
    print(f"done in {report['seconds']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
