"""Small drugs against the MOSES distribution: what fine-tuning on a small-molecule supplement buys
and costs; prints JSON.

    python benchmarks/molecules_small_drugs.py RUN [RUN ...] [--samples 10000] [--threads 2]

MOSES keeps molecules of 250-350 Da, so the bundled model cannot write paracetamol (151 Da) or
aspirin (180 Da). data/molecules/supplement.py builds a mix of MOSES and small NCI compounds (never
those two) to fine-tune on. For each run (a directory, or a domain name for its bundled model):
the two drugs reconstructed as `polyvae reconstruct` does (the domain's refinement) and from the
encoder's code alone; paracetamol's analogues at the `neighbours` defaults (n=100); and, on
``samples`` molecules sampled at temperature 1 from the default prior (the items it was fitted to
are named), raw validity, FCD/Test, SNN/Test, Filters and the share of valid samples under
250 Da (none in MOSES).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from molecules_analogues import DRUGS, analogues, weight

import polyvae
from polyvae.plugins.molecules import chemistry
from polyvae.plugins.molecules import metrics as moses
from polyvae.plugins.molecules.commands import ANALOGUE_RADIUS, ANALOGUE_TEMPERATURE

CHECKED = {name: DRUGS[name] for name in ("paracetamol", "aspirin")}
MOSES_LIGHTEST = 250.0


def measure(run: str, samples: int) -> dict:
    model = polyvae.load(run)
    results: dict = {"run": str(model.run_dir), "init": model.meta.get("init", {}).get("run")}
    # `polyvae fit-prior RUN --data FILE` records FILE: the items whose codes samples follow.
    fit = (model.fitted_prior_record or {}).get("fit", {})
    results["prior_fitted_to"] = fit.get("data", "training items")
    for label, steps in (("reconstructed", model.domain.refine_steps), ("from_encoder", 0)):
        rebuilt = model.reconstruct(list(CHECKED.values()), refine=steps)
        results[label] = dict(zip(CHECKED, rebuilt, strict=True))
    results["unchanged"] = all(
        chemistry.canonical_smiles(rebuilt) == chemistry.canonical_smiles(CHECKED[name])
        for name, rebuilt in results["reconstructed"].items()
    )
    count, median, median_weight = analogues(
        model, CHECKED["paracetamol"], ANALOGUE_RADIUS, ANALOGUE_TEMPERATURE, seed=0
    )
    results["paracetamol_analogues"] = {
        "distinct_valid": count,
        "median_tanimoto": round(median, 3),
        "median_weight": round(median_weight, 1),
    }
    generated = model.sample(samples, temperature=1.0, seed=0)
    valid = [smiles for smiles in generated if chemistry.parse(smiles) is not None]
    weights = [weight(smiles) for smiles in valid]
    reference = moses.load_reference_stats()
    results["samples"] = {
        "n": samples,
        "validity": len(valid) / len(generated),
        "FCD/Test": round(moses.fcd(valid, reference), 3),
        "SNN/Test": round(moses.snn(valid, reference), 3),
        "Filters": round(sum(map(moses.passes_filters, valid)) / len(valid), 3),
        "under_250_Da": round(sum(mw < MOSES_LIGHTEST for mw in weights) / len(valid), 3),
        "median_weight": round(statistics.median(weights), 1),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories or domain names")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps([measure(run, args.samples) for run in args.runs], indent=2))


if __name__ == "__main__":
    main()
