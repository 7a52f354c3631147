"""What storing a run's weights narrower costs in quality (`data/bundle_run.py --store`); prints
JSON.

    python benchmarks/weight_storage.py [--run text] [-n 600] [--samples 2000]

Evaluates the run as stored, then with its weights put through each storage of bundle_run.py
(float16; int8 rows with float16 for the rest) and widened back as loading does, on the first
``n`` items of the domain's bundled test split: ELBO, IWAE NLL (k=5), greedy reconstruction, and
for molecules the raw validity and FCD of ``samples`` samples. The same seed throughout, so the
only difference between rows is the rounding of the weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from text_default import test_texts

import polyvae
from polyvae.run import dequantized_rows, narrowed_weights

KEPT = (
    "elbo",
    "iwae_nll",
    "reconstruction_exact",
    "reconstruction_bleu",
    "validity",
    "FCD/Test",
)


def test_items(model: polyvae.Model, count: int) -> list:
    if model.domain.name == "molecules":
        from polyvae.plugins.molecules.metrics import bundled_smiles

        return bundled_smiles("test")[:count]
    return test_texts(model)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="text", help="a run (default: the bundled text model)")
    parser.add_argument("-n", type=int, default=600)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = polyvae.load(args.run)
    items = test_items(model, args.n)
    samples = args.samples if model.domain.name == "molecules" else 0
    stored = {name: tensor.clone() for name, tensor in model.vae.state_dict().items()}
    # load_state_dict widens float16 as loading a run does.
    storages = {"as stored": stored} | {
        storage: dequantized_rows(narrowed_weights(stored, storage), Path(args.run))
        for storage in ("float16", "int8")
    }
    rows = {}
    for storage, weights in storages.items():
        model.vae.load_state_dict(weights)
        results = model.evaluate(items, k=5, samples=samples, seed=0, likelihood_items=args.n)
        rows[storage] = {key: round(results[key], 4) for key in KEPT if key in results}
    print(
        json.dumps({"run": args.run, "items": args.n, "samples": samples, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
