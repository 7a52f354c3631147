"""Quality of the bundled molecules model against the issue's bars; prints JSON.

    python benchmarks/molecules_default.py [--samples 10000] [--run molecules]

10,000 samples at temperature 1.0; MOSES metrics against the bundled MOSES test set (its shipped
statistics); novelty against the run's training data, which the codec remembers as hashes (the
same "novel" flag `polyvae sample` writes); likelihood on 1,000 random test molecules.
`polyvae evaluate molecules --data data/molecules/test.smi.gz -n 10000` gives the same metrics,
reading and canonicalising the files instead.
"""

from __future__ import annotations

import argparse
import time

import torch
from bars import judge, print_report

import polyvae
from polyvae.plugins.molecules import chemistry
from polyvae.plugins.molecules.metrics import bundled_smiles

BARS = {  # metric: (comparison, threshold)
    "validity": (">=", 0.95),
    "unique@10k": (">=", 0.99),
    "novelty": (">=", 0.90),
    "FCD/Test": ("<=", 1.0),
    "IntDiv1": (">=", 0.84),
    "Filters": (">=", 0.95),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="molecules", help="run directory or domain name")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (more than free cores is slower)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    model = polyvae.load(args.run)
    reference = bundled_smiles("test")
    results = model.evaluate(reference, k=50, samples=args.samples, temperature=1.0, seed=args.seed)
    generated = model.sample(args.samples, temperature=1.0, seed=args.seed)
    unique_valid = sorted({smiles for smiles in generated if chemistry.parse(smiles) is not None})
    results["novelty"] = float(model.codec.novel(unique_valid).mean())
    bars = judge(results, BARS)
    print_report(
        {
            "run": str(model.run_dir),
            "samples": args.samples,
            "temperature": 1.0,
            "metrics": results,
            "bars": bars,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


if __name__ == "__main__":
    main()
