"""How much the sampled-distribution bars move with the sampling seed; prints JSON lines.

    python benchmarks/molecules_seed_spread.py [--run molecules] [--seeds 1 2] [--samples 30000]

For each seed: raw validity, FCD/Test and Scaf/Test of ``samples`` molecules sampled at
temperature 1 from the run's default prior, as benchmarks/molecules_default.py measures them
at seed 0. A bar met by less than this spread is met by the seed, not by the model.
"""

from __future__ import annotations

import argparse
import json

import torch

import polyvae
from polyvae.plugins.molecules import chemistry
from polyvae.plugins.molecules import metrics as moses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="molecules", help="run directory or domain name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--samples", type=int, default=30_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reference = moses.load_reference_stats()
    model = polyvae.load(args.run)
    for seed in args.seeds:
        generated = model.sample(args.samples, temperature=1.0, seed=seed)
        valid = [smiles for smiles in generated if chemistry.parse(smiles) is not None]
        row = {
            "run": str(model.run_dir),
            "seed": seed,
            "samples": args.samples,
            "validity": round(len(valid) / len(generated), 4),
            "FCD/Test": round(moses.fcd(valid, reference), 3),
            "Scaf/Test": round(moses.scaffold_similarity(valid, reference), 3),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
