"""How many mixture components the codes of a small run can support; prints JSON.

    python benchmarks/prior_components.py [--threads 2]

A fine-tune on a few thousand molecules fits its prior to that many codes. This takes the codes
(one posterior sample each, as training fits them) of 354, 1,764 and 8,000 random MOSES test
sulfonamides under the bundled molecules model and fits them with ``fit_prior`` (10% of the codes
held out), which tries mixtures of 20 (the default), 10, 5, 2 and 1 full-covariance components and
keeps the best: the held-out log-likelihood of each in nats per code, beside N(0, I)'s on the same
codes.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import polyvae
from polyvae.plugins.molecules.metrics import bundled_smiles
from polyvae.priors import fit_prior

CODES = (354, 1764, 8000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = polyvae.load("molecules")
    sulfonamides = [smiles for smiles in bundled_smiles("test") if "S(=O)(=O)N" in smiles]
    order = np.random.default_rng(0).permutation(len(sulfonamides))
    rows = []
    for count in CODES:
        chosen = [sulfonamides[position] for position in order[:count]]
        codes = model.encode(chosen, sample=True, seed=0)
        _, record = fit_prior(codes, "gmm", components=20, seed=0)
        by_components = record["held_out_log_likelihood_by_components"]
        rows.append(
            {
                "codes": count,
                "held_out_log_likelihood_by_components": {
                    components: round(figure, 1) for components, figure in by_components.items()
                },
                "kept": record["components"],
                "standard_normal": round(record["standard_normal_held_out_log_likelihood"], 1),
            }
        )
    print(json.dumps({"latent_dim": model.latent_dim, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
