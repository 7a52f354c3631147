"""Where invalid molecules come from: the decoder or the prior; prints JSON.

    python benchmarks/molecules_validity_sources.py [--run molecules] [-n 2000]

The raw validity of SMILES decoded from four kinds of latent point, each for ``n`` points:
one posterior sample z ~ q(z|x) of each of ``n`` random training molecules (the codes the
decoder was trained on), decoded greedily and at temperature 1; and ``n`` draws of the run's
fitted prior and of N(0, I), decoded at temperature 1 (what `polyvae sample` does) and greedily.
Validity from training codes at temperature 1 is the decoder's own ceiling: what any prior that
matched the codes exactly would reach. The gap from there to the fitted prior's is the prior's
share of the invalid samples.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import polyvae
from polyvae.plugins.molecules.metrics import fraction_valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="molecules", help="a run (default: the bundled model)")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = polyvae.load(args.run)
    training, _ = model.data_splits()
    rng = np.random.default_rng(args.seed)
    chosen = [training[i] for i in rng.choice(len(training), args.n, replace=False)]
    sources = {
        "training codes": torch.as_tensor(model.encode(chosen, sample=True, seed=args.seed)),
        "fitted prior": model.prior("fitted").sample(
            args.n, torch.Generator().manual_seed(args.seed)
        ),
        "N(0, I)": model.prior("standard").sample(args.n, torch.Generator().manual_seed(args.seed)),
    }
    results = {
        f"{name}, {label}": fraction_valid(
            model.decode(z, temperature=temperature, seed=args.seed), n_jobs=1
        )
        for name, z in sources.items()
        for label, temperature in (("temperature 1", 1.0), ("greedy", 0.0))
    }
    print(json.dumps({"run": args.run, "n": args.n, "validity": results}, indent=2))


if __name__ == "__main__":
    main()
