"""The bundled molecules model against the issue's bars (issue 19); prints JSON.

    python benchmarks/molecules_default.py [--run molecules] [--samples 30000] [--budget 10000]

Samples at temperature 1 from the run's default prior (the fitted one when it has one), MOSES
metrics against the bundled MOSES test set (its shipped statistics), raw validity (nothing
filtered), novelty against the run's training data (hashes the codec keeps); likelihood, KL and
greedy exact reconstruction on 1,000 random test molecules; the sample metrics under the other
prior too (prefixed). Then the chemist's checks: paracetamol and aspirin reconstructed, the
analogues of paracetamol (n=100, the `neighbours` command's default radius and temperature),
and penalized logP optimised by the cross-entropy method with a budget of decoded molecules.
"""

from __future__ import annotations

import argparse
import time

import torch
from bars import judge, print_report
from molecules_analogues import DRUGS, analogues

import polyvae
from polyvae.plugins.molecules import chemistry
from polyvae.plugins.molecules.commands import ANALOGUE_RADIUS, ANALOGUE_TEMPERATURE
from polyvae.plugins.molecules.metrics import (
    bundled_smiles,
    passes_filters,
)

BARS = {  # metric: (comparison, threshold)
    "validity": (">=", 0.95),
    "unique@10k": (">=", 0.99),
    "novelty": (">=", 0.80),
    "FCD/Test": ("<=", 1.0),
    "Filters": (">=", 0.95),
    "SNN/Test": (">=", 0.50),
    "Scaf/Test": (">=", 0.80),
    "IntDiv1": ("between", (0.84, 0.87)),
    "reconstruction_exact": (">=", 0.60),
    "kl": (">=", 20.0),
    "neighbours_distinct_valid": (">=", 20),
    "neighbours_median_tanimoto": (">=", 0.40),
}
MOONSHOT = {"FCD/Test": ("<=", 0.5)}  # MOSES VAE 0.099, JT-VAE 0.395, LatentGAN 0.297
PARACETAMOL, ASPIRIN = DRUGS["paracetamol"], DRUGS["aspirin"]
# Published top-3 penalized logP with Bayesian optimisation in the latent space (JT-VAE paper).
PUBLISHED_PENALIZED_LOGP = {
    "JT-VAE": [5.30, 4.93, 4.49],
    "SD-VAE": [4.04],
    "GrammarVAE": [2.94],
    "CVAE": [1.98],
}


def chemist_checks(model: polyvae.Model, budget: int, seed: int) -> dict:
    # As `polyvae reconstruct molecules` does: the domain's default refinement of the code.
    rebuilt = model.reconstruct([PARACETAMOL, ASPIRIN], refine=model.domain.refine_steps)
    same = [
        chemistry.canonical_smiles(new) == chemistry.canonical_smiles(old)
        for old, new in zip([PARACETAMOL, ASPIRIN], rebuilt, strict=True)
    ]
    count, median, _ = analogues(model, PARACETAMOL, ANALOGUE_RADIUS, ANALOGUE_TEMPERATURE, seed)
    # The cross-entropy method decodes max(2n, 64) molecules in each of steps // 10 rounds.
    kept = 100
    steps = 10 * max(1, budget // (2 * kept))
    started = time.perf_counter()
    ranked = model.optimize(
        lambda items: chemistry.properties(items, ["penalized_logp"])[:, 0],
        n=kept,
        steps=steps,
        seed=seed,
    )
    return {
        "reconstructed": dict(zip(["paracetamol", "aspirin"], rebuilt, strict=True)),
        "paracetamol_and_aspirin_unchanged": all(same),
        "neighbours_distinct_valid": count,
        "neighbours_median_tanimoto": median,
        "optimisation": {
            "objective": "penalized_logp",
            "decoded": 2 * kept * (steps // 10),
            "top3": [[smiles, round(score, 3)] for smiles, score in ranked[:3]],
            "top10_passing_filters": sum(passes_filters(smiles) for smiles, _ in ranked[:10]),
            "published_top3": PUBLISHED_PENALIZED_LOGP,
            "seconds": round(time.perf_counter() - started, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="molecules", help="run directory or domain name")
    parser.add_argument("--samples", type=int, default=30_000)
    parser.add_argument("--budget", type=int, default=10_000, help="molecules optimize decodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (more than free cores is slower)"
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
    checks = chemist_checks(model, args.budget, args.seed)
    results |= {
        key: checks[key] for key in ("neighbours_distinct_valid", "neighbours_median_tanimoto")
    }
    print_report(
        {
            "run": str(model.run_dir),
            "prior": model.prior().kind,
            "samples": args.samples,
            "temperature": 1.0,
            "metrics": results,
            "checks": checks,
            "bars": judge(results, BARS),
            "moonshot": judge(results, MOONSHOT),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


if __name__ == "__main__":
    main()
