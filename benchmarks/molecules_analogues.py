"""Analogues by radius and decoding temperature (the defaults of `polyvae molecules neighbours`);
prints JSON.

    python benchmarks/molecules_analogues.py [--run molecules] [--repeats 3]

For each seed drug and each (radius, temperature), ``repeats`` calls of ``Model.neighbours`` with
n=100 and different random seeds: the distinct valid molecules other than the seed, and the
median Morgan Tanimoto (radius 2, 1024 bits) of those to the seed, each averaged over the
repeats. A chemist asking for analogues wants them close (a high median) and not too few.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

import polyvae
from polyvae.plugins.molecules import chemistry
from polyvae.plugins.molecules.metrics import analogues_by_similarity

SEEDS = {
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "ibuprofen": "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "celecoxib": "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1",
    "benzocaine furamide": "CCOC(=O)c1ccc(NC(=O)c2ccco2)cc1",
}
RADII = (0.0, 0.05, 0.1, 0.15, 0.2, 0.5)
TEMPERATURES = (0.0, 1.0)


def analogues(model: polyvae.Model, seed_smiles: str, radius: float, temperature: float, seed: int):
    decoded = model.neighbours(
        seed_smiles, n=100, radius=radius, temperature=temperature, seed=seed
    )
    # Decoded molecules come as canonical SMILES: the seed's own is not an analogue.
    own = chemistry.canonical_smiles(seed_smiles)
    similarities = [
        value for smiles, value in analogues_by_similarity(seed_smiles, decoded) if smiles != own
    ]
    return len(similarities), statistics.median(similarities) if similarities else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="molecules", help="a run (default: the bundled model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = polyvae.load(args.run)
    rows = []
    for radius in RADII:
        for temperature in TEMPERATURES:
            row = {"radius": radius, "temperature": temperature}
            for name, smiles in SEEDS.items():
                results = [
                    analogues(model, smiles, radius, temperature, seed)
                    for seed in range(args.repeats)
                ]
                row[name] = {
                    "distinct_valid": statistics.mean(count for count, _ in results),
                    "median_tanimoto": round(statistics.mean(median for _, median in results), 3),
                }
            rows.append(row)
    print(json.dumps({"run": args.run, "n": 100, "repeats": args.repeats, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
