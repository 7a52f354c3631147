"""Quality of the bundled images model (Fashion-MNIST); prints JSON and writes a sample grid.

    python benchmarks/images_default.py [--run images] [-k 1000] [--items 500] \
        [--grid benchmarks/images_default_samples.png]

The run (default: the bundled one) is evaluated on the bundled Fashion-MNIST test images: the
IWAE NLL with k importance samples on a seeded subset of ``--items`` of them, in nats per image
and bits per dimension, with the ELBO, KL, active units, mutual information and reconstruction
error; and on all 2,000 the ELBO (k=1). Training time is the sum of the run's epoch times
(validation excluded) from its metrics.jsonl. FID/KID are added when Inception-v3's weights are
on disk (see docs/images.md). 64 samples (seed 0, mean images) are written to ``--grid``.
"""

from __future__ import annotations

import argparse
import math
import time
from importlib import resources
from pathlib import Path

import torch
from bars import print_report

import polyvae
from polyvae.plugins.images.metrics import fid_kid, inception_weights_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="images", help="run directory or domain name")
    parser.add_argument("-k", type=int, default=1000, help="importance samples of the IWAE bound")
    parser.add_argument("--items", type=int, default=500, help="test images for the IWAE bound")
    parser.add_argument("--samples", type=int, default=1000, help="samples for FID/KID")
    parser.add_argument("--grid", type=Path, default=Path(__file__).with_name(
        "images_default_samples.png"))  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    model = polyvae.load(args.run)
    test_file = resources.files("polyvae.data") / "images" / "t10k-images-idx3-ubyte.gz"
    test, _ = model.domain.read(str(test_file), model.config)
    results = model.evaluate(test, k=args.k, samples=0, seed=args.seed, likelihood_items=args.items)
    everything = model.likelihood(test, k=1, seed=args.seed)
    if inception_weights_path() is not None:
        generated = model.sample(args.samples, seed=args.seed)
        results.update(fid_kid(generated, test))
    epochs = model.loaded.run.read_metrics()
    dims = model.codec.dimensions
    model.domain.write(model.sample(64, seed=args.seed), args.grid)
    print_report(
        {
            "run": str(model.run_dir),
            "test_images": len(test),
            "iwae_k": args.k,
            "iwae_items": min(args.items, len(test)) if args.items else len(test),
            "test_nll_nats": results["iwae_nll"],
            "test_bits_per_dim": results["bits_per_dim"],
            "active_units": results["active_units"],
            "latent_dim": model.latent_dim,
            "training_seconds": round(sum(epoch["seconds"] for epoch in epochs), 1),
            "training_epochs": len(epochs),
            "training_steps": epochs[-1]["step"] if epochs else 0,
            "metrics": results,
            "all_test_images_k1": {
                "elbo": everything["elbo"],
                "bits_per_dim_upper_bound": -everything["elbo"] / dims / math.log(2),
                "active_units": everything["active_units"],
            },
            "fid": "computed" if "fid" in results else "not computed: no Inception-v3 weights",
            "grid": str(args.grid),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


if __name__ == "__main__":
    main()
