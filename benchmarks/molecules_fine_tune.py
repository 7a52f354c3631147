"""Fine-tuning the bundled molecules model on a focused set (`train --init`); prints JSON.

    python benchmarks/molecules_fine_tune.py [--smarts 'S(=O)(=O)N'] [--epochs 10] [--out DIR]

The focused set: the MOSES test molecules (never seen by the bundled model) that hold the
`--smarts` substructure, shuffled and split into molecules to fine-tune on and held-out ones.
Before and after fine-tuning, `--samples` samples at temperature 1 from each model's default
prior: the share of valid samples that hold the substructure, and the MOSES suite against the
held-out focused molecules (FCD/Test, SNN/Test, ...; novelty against the fine-tuning molecules).
A fine-tune that works moves the samples towards the focused set (a larger share, a smaller
FCD to it) while they stay valid, distinct and new. The fine-tuned model is measured under its
fitted prior (its default) and under N(0, I) (``after_standard_prior``): which samples better
when few codes were fitted (``--molecules 400``).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from bars import print_report
from rdkit import Chem

import polyvae
from polyvae.plugins.molecules import chemistry
from polyvae.plugins.molecules.metrics import bundled_smiles

REPORTED = ("validity", "unique@1k", "novelty", "FCD/Test", "SNN/Test", "Filters", "IntDiv1")


def holding(smiles: list[str], pattern: Chem.Mol) -> list[str]:
    """The valid molecules among ``smiles`` that hold ``pattern``."""
    molecules = ((text, chemistry.parse(text)) for text in smiles)
    return [text for text, mol in molecules if mol is not None and mol.HasSubstructMatch(pattern)]


def measure(
    model: polyvae.Model,
    pattern: Chem.Mol,
    held_out: list,
    seen: list,
    args,
    prior: str | None = None,
) -> dict:
    samples = model.sample(args.samples, temperature=1.0, seed=args.seed, prior=prior)
    valid = [text for text in samples if chemistry.parse(text) is not None]
    metrics = model.domain.metrics(samples, held_out, seen)
    return {
        "substructure_share": len(holding(valid, pattern)) / max(1, len(valid)),
        **{name: metrics[name] for name in REPORTED},
        "examples": valid[:8],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smarts", default="S(=O)(=O)N", help="what the focused set holds")
    parser.add_argument("--molecules", type=int, default=2000, help="molecules to fine-tune on")
    parser.add_argument("--held-out", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="keep the fine-tuned run here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pattern = Chem.MolFromSmarts(args.smarts)

    started = time.perf_counter()
    focused = holding(bundled_smiles("test"), pattern)
    random.Random(args.seed).shuffle(focused)
    tune, held_out = focused[: args.molecules], focused[args.molecules :][: args.held_out]
    base = polyvae.load("molecules")
    before = measure(base, pattern, held_out, tune, args)
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "focused.smi"
        data.write_text("\n".join(tune) + "\n")
        out = args.out or Path(scratch) / "run"
        config = {"epochs": args.epochs, "lr": args.lr, "seed": args.seed}
        config["threads"] = args.threads
        tuning = time.perf_counter()
        result = polyvae.train(
            "molecules", data=data, config=config, out=out, init="molecules", progress=False
        )
        tuning_seconds = time.perf_counter() - tuning
        tuned = polyvae.load(out)
        after = measure(tuned, pattern, held_out, tune, args)
        after_standard = measure(tuned, pattern, held_out, tune, args, prior="standard")
        prior_fit = json.loads((out / "prior" / "prior.json").read_text())["fit"]
    print_report(
        {
            "smarts": args.smarts,
            "focused_in_moses_test": len(focused),
            "fine_tuned_on": len(tune),
            "held_out": len(held_out),
            "epochs": result.epochs,
            "steps": result.steps,
            "lr": args.lr,
            "fine_tune_seconds": round(tuning_seconds, 1),
            "samples": args.samples,
            "before": before,
            "after": after,
            "after_standard_prior": after_standard,
            "prior_fit": prior_fit,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


if __name__ == "__main__":
    main()
