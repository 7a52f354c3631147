"""What validating in bf16 instead of float32 changes, in digits and time; prints JSON.

    python benchmarks/validation_precision.py [--run molecules] [--items 5120] [--threads 1]

Scores the first ``--items`` bundled MOSES test molecules as training's validation does (the
VAE's forward pass with fixed noise, summed by ``LatentStatistics``, batches of 256) under
float32 and under bf16 autocast, and reports each one's ELBO, reconstruction, KL and seconds.
Training validates in bf16 under ``precision=auto`` on a CPU that computes it natively
(``polyvae.device.fast_autocast``). Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

import polyvae
from polyvae.device import cpu_computes_bf16
from polyvae.plugins.molecules.metrics import bundled_smiles
from polyvae.vae import LatentStatistics

BATCH = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="molecules", help="run directory or domain name")
    parser.add_argument("--items", type=int, default=5120)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = polyvae.load(args.run)
    items = bundled_smiles("test")[: args.items]
    encoded = model.codec.encode(items)
    results = {}
    for name, precision in (("float32", None), ("bf16", torch.bfloat16)):
        torch.manual_seed(0)
        statistics = LatentStatistics(model.vae.latent_dim)
        started = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=precision, enabled=bool(precision)):
            for start in range(0, len(items), BATCH):
                batch = {key: value[start : start + BATCH] for key, value in encoded.items()}
                statistics.add(model.vae(batch, None))
        seconds = time.perf_counter() - started
        scores = statistics.results()
        results[name] = {key: scores[key] for key in ("elbo", "recon", "kl")}
        results[name]["seconds"] = round(seconds, 2)
    report = {
        "benchmark": "validation_precision",
        "run": args.run,
        "items": len(items),
        "threads": args.threads,
        "results": results,
        "elbo_shift_nats": results["bf16"]["elbo"] - results["float32"]["elbo"],
        "speedup": results["float32"]["seconds"] / results["bf16"]["seconds"],
        "cpu_computes_bf16": cpu_computes_bf16(),
        "load_average": os.getloadavg(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
