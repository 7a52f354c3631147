"""Learning curves of molecule recipes on the full MOSES training set (issue 19); prints JSON.

Train a candidate (any `polyvae train molecules` settings) with frequent epochs, then measure
its weights now and then while it trains:

    python data/molecules/build.py molsets-0.3.1-py3-none-any.whl --full-train moses.smi.gz
    polyvae train molecules --data moses.smi.gz --set preset=small --set representation=smiles \\
        --set beta_max=0.3 --set steps_per_epoch=500 --set val_fraction=0.02 --out runs/smiles
    python benchmarks/molecules_recipe.py runs/smiles --curve benchmarks/molecules_recipe.jsonl

Each call appends one point to the curve file: molecules seen, training CPU-minutes (the epochs'
seconds times the threads), validation KL and active units from metrics.jsonl; and, from a copy
of the run's current best weights with a Gaussian mixture fitted to its training codes: raw
validity, FCD/Test, Filters and SNN/Test of `--samples` samples under the standard and the
fitted prior, greedy exact reconstruction of 1,000 MOSES test molecules, and what is wrong with
the invalid strings among 2,000 more samples of the fitted prior (SMILES syntax, kekulization,
valence). `--plot FILE` draws every candidate's curves from the curve file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from curves import curve_figure, draw_points, main, measured_weights, training_so_far
from molecules_validity_sources import invalid_kinds

from polyvae.plugins.molecules.metrics import bundled_smiles

RECIPE_KEYS = (
    "representation",
    "decoder_hidden",
    "decoder_layers",
    "beta_max",
    "kl_target",
    "augment",
)
SAMPLE_METRICS = ("validity", "FCD/Test", "Filters", "SNN/Test")
RECONSTRUCTED = 1000
CLASSIFIED = 2000  # fitted-prior samples whose invalid strings are sorted by what is wrong


def measure(run: Path, args: argparse.Namespace) -> dict:
    """One point of ``run``'s learning curve, from a copy of its current best weights."""
    point, history = training_so_far(run, RECIPE_KEYS, "molecules")
    point["val_active_units"] = history[-1]["val_active_units"]
    samples, seed = args.samples, args.seed
    with measured_weights(run, args) as model:
        test = bundled_smiles("test")
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(test), generator=generator)[:RECONSTRUCTED].tolist()
        subset = [test[i] for i in chosen]
        point |= model.domain.reconstruction_metrics(subset, model.reconstruct(subset))
        for prior in ("standard", "fitted"):
            results = model.evaluate(
                test, k=1, samples=samples, seed=seed, likelihood_items=1, prior=prior
            )
            point |= {f"{prior}: {name}": results[name] for name in SAMPLE_METRICS}
        codes = model.prior("fitted").sample(CLASSIFIED, torch.Generator().manual_seed(seed))
        decoded = model.decode(codes, temperature=1.0, seed=seed)
        point[f"fitted: invalid kinds of {CLASSIFIED}"] = invalid_kinds(decoded)
    return point


def plot(curve: Path, out: Path) -> None:
    panels = ("fitted: FCD/Test", "fitted: validity", "reconstruction_exact", "val_kl")
    points, figure, axes = curve_figure(curve, len(panels))
    draw_points(points, axes, panels)
    for axis in axes:
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=120)


if __name__ == "__main__":
    main(__doc__.splitlines()[0], "benchmarks/molecules_recipe.jsonl", 5000, measure, plot)
