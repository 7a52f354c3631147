"""Analogues by radius and decoding temperature (the defaults of `polyvae molecules neighbours`);
prints JSON.

    python benchmarks/molecules_analogues.py [--run molecules] [--repeats 3] [--test-molecules 10]

For each seed and each (radius, temperature), ``repeats`` calls of ``Model.neighbours`` with
n=100 and different random seeds: the distinct valid molecules other than the seed, the median
Morgan Tanimoto (radius 2, 1024 bits) of those to the seed and their median molecular weight:
the mean count and the median of the medians over the repeats. Seeds: five drugs, and
``test-molecules`` random molecules of the bundled MOSES test set (one call each, summarised the
same way), the kind of molecule the model was trained on. MOSES keeps molecules of 250 to 350
Da, so paracetamol (151 Da) and aspirin (180 Da) lie outside what it has seen. A chemist asking
for analogues wants them close (a high median) and not too few.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics

import torch
from rdkit import Chem
from rdkit.Chem import Descriptors

import polyvae
from polyvae.plugins.molecules import chemistry
from polyvae.plugins.molecules.metrics import analogues_by_similarity, bundled_smiles

DRUGS = {
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "ibuprofen": "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "celecoxib": "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1",
    "benzocaine furamide": "CCOC(=O)c1ccc(NC(=O)c2ccco2)cc1",
}
RADII = (0.0, 0.05, 0.1, 0.2, 0.5)
TEMPERATURES = (0.0, 0.5, 1.0)


def weight(smiles: str) -> float:
    return Descriptors.MolWt(Chem.MolFromSmiles(smiles))


def analogues(model: polyvae.Model, seed_smiles: str, radius: float, temperature: float, seed: int):
    """How many distinct valid analogues, their median Tanimoto to the seed and median weight."""
    decoded = model.neighbours(
        seed_smiles, n=100, radius=radius, temperature=temperature, seed=seed
    )
    # Decoded molecules come as canonical SMILES: the seed's own is not an analogue.
    own = chemistry.canonical_smiles(seed_smiles)
    ranked = [pair for pair in analogues_by_similarity(seed_smiles, decoded) if pair[0] != own]
    if not ranked:
        return 0, 0.0, 0.0
    return (
        len(ranked),
        statistics.median(value for _, value in ranked),
        statistics.median(weight(smiles) for smiles, _ in ranked),
    )


def summary(results: list[tuple[int, float, float]]) -> dict:
    return {
        "distinct_valid": round(statistics.mean(count for count, _, _ in results), 1),
        "median_tanimoto": round(statistics.median(median for _, median, _ in results), 3),
        "median_weight": round(statistics.median(mw for _, _, mw in results), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="molecules", help="a run (default: the bundled model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--test-molecules", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = polyvae.load(args.run)
    test_seeds = random.Random(0).sample(bundled_smiles("test"), args.test_molecules)
    rows = []
    for radius in RADII:
        for temperature in TEMPERATURES:
            row: dict = {"radius": radius, "temperature": temperature}
            for name, smiles in DRUGS.items():
                row[name] = summary(
                    [
                        analogues(model, smiles, radius, temperature, seed)
                        for seed in range(args.repeats)
                    ]
                )
            row["MOSES test molecules"] = summary(
                [analogues(model, smiles, radius, temperature, 0) for smiles in test_seeds]
            )
            rows.append(row)
    print(
        json.dumps(
            {
                "run": args.run,
                "n": 100,
                "repeats": args.repeats,
                "seed_weights": {name: round(weight(smiles), 1) for name, smiles in DRUGS.items()},
                "test_molecules": test_seeds,
                "rows": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
