"""Where invalid molecules come from: the decoder or the prior; prints JSON.

    python benchmarks/molecules_validity_sources.py [--run molecules] [-n 2000]

The raw validity of SMILES decoded from four kinds of latent point, each for ``n`` points:
one posterior sample z ~ q(z|x) of each of ``n`` random training molecules (the codes the
decoder was trained on), decoded greedily and at temperature 1; and ``n`` draws of the run's
fitted prior and of N(0, I), decoded at temperature 1 (what `polyvae sample` does) and greedily.
Validity from training codes at temperature 1 is the decoder's own ceiling: what any prior that
matched the codes exactly would reach. The gap from there to the fitted prior's is the prior's
share of the invalid samples.

Then whether a better-fitted prior could close that gap: priors of each kind polyvae fits (a
single full-covariance Gaussian, the 20-component mixture, the masked autoregressive flow), each
fitted to one posterior sample of ``--fit-codes`` random training molecules, with the held-out
log-likelihood of the codes under it and under N(0, I) (nats per molecule, higher is closer to
the codes) and the raw validity of ``n`` molecules sampled from it at temperature 1.

Last, what is wrong with the invalid strings the run's default prior gives at temperature 1
(what `polyvae sample` writes): SMILES syntax (RDKit cannot parse them: an open ring bond,
unbalanced parentheses), kekulization (an aromatic ring with no alternating bonds) or valence.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
import torch
from rdkit import Chem, RDLogger

import polyvae
from polyvae.plugins.molecules.metrics import fraction_valid
from polyvae.priors import fit_prior

# (kind, components) of the priors refitted: a single Gaussian, the default mixture, the flow.
FITS = (("gmm", 1), ("gmm", 20), ("flow", 1))


def invalid_kinds(smiles: list[str]) -> dict[str, int]:
    """How many of ``smiles`` fail, by RDKit's first complaint."""
    kinds: Counter[str] = Counter()
    RDLogger.DisableLog("rdApp.*")
    for item in smiles:
        molecule = Chem.MolFromSmiles(item, sanitize=False)
        if molecule is None:
            kinds["syntax"] += 1
            continue
        problems = Chem.DetectChemistryProblems(molecule)
        if problems:
            kind = problems[0].GetType()
            kinds[
                "kekulization" if "Kekulize" in kind else "valence" if "Valence" in kind else kind
            ] += 1
    return dict(kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="molecules", help="a run (default: the bundled model)")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-codes", type=int, default=60_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
    default_prior = model.prior().sample(args.n, torch.Generator().manual_seed(args.seed))
    invalid = invalid_kinds(model.decode(default_prior, temperature=1.0, seed=args.seed))
    picks = rng.choice(len(training), args.fit_codes, replace=False)
    codes = model.encode([training[i] for i in sorted(picks)], sample=True, seed=args.seed)
    fits = []
    for kind, components in FITS:
        prior, record = fit_prior(codes, kind, components, args.seed)
        z = prior.sample(args.n, torch.Generator().manual_seed(args.seed))
        fits.append(
            {
                "kind": kind,
                "components": components if kind == "gmm" else None,
                "held_out_log_likelihood": round(record["held_out_log_likelihood"], 2),
                "N(0, I) held_out_log_likelihood": round(
                    record["standard_normal_held_out_log_likelihood"], 2
                ),
                "validity, temperature 1": fraction_valid(
                    model.decode(z, temperature=1.0, seed=args.seed), n_jobs=1
                ),
            }
        )
    print(
        json.dumps(
            {
                "run": args.run,
                "n": args.n,
                "validity": results,
                "fit_codes": args.fit_codes,
                "refitted_priors": fits,
                "invalid_kinds": invalid,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
