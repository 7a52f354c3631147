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
fitted prior, and greedy exact reconstruction of 1,000 MOSES test molecules. `--plot FILE` draws
every candidate's curves from the curve file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

import polyvae
from polyvae.plugins.molecules.metrics import bundled_smiles
from polyvae.priors import fit_model_prior

SAMPLE_METRICS = ("validity", "FCD/Test", "Filters", "SNN/Test")
RECONSTRUCTED = 1000


def measure(run: Path, samples: int, seed: int) -> dict:
    """One point of ``run``'s learning curve, from a copy of its current best weights."""
    history = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    meta = json.loads((run / "run.json").read_text())
    config = meta["config"]
    last = history[-1]
    point = {
        "run": run.name,
        "recipe": {
            key: config[key]
            for key in ("representation", "decoder_hidden", "beta_max", "kl_target", "augment")
            if key in config
        },
        "epoch": last["epoch"],
        "molecules_seen": last["step"] * config["batch_size"],
        "cpu_minutes": sum(record["seconds"] for record in history)
        * max(config["threads"], 1)
        / 60,
        "val_kl": last["val_kl"],
        "val_active_units": last["val_active_units"],
    }
    with tempfile.TemporaryDirectory(prefix="polyvae-curve-") as scratch:
        copy = Path(scratch) / run.name
        copy.mkdir()
        for name in ("run.json", "model.safetensors"):
            shutil.copy2(run / name, copy / name)
        shutil.copytree(run / "codec", copy / "codec")
        model = polyvae.load(copy)
        training, _ = model.data_splits()
        fit_model_prior(model, training, seed=seed)
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
    return point


def plot(curve: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [json.loads(line) for line in curve.open()]
    panels = ("fitted: FCD/Test", "fitted: validity", "reconstruction_exact", "val_kl")
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for run in dict.fromkeys(point["run"] for point in points):
        mine = [point for point in points if point["run"] == run]
        for axis, key in zip(axes, panels, strict=True):
            axis.plot([p["cpu_minutes"] for p in mine], [p.get(key) for p in mine], "o-", label=run)
            axis.set_title(key, fontsize=10)
            axis.set_xlabel("training CPU-minutes")
            axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", help="a molecules run directory to measure")
    parser.add_argument("--curve", type=Path, default=Path("benchmarks/molecules_recipe.jsonl"))
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", type=Path, help="draw the curve file's curves to this PNG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.run is not None:
        started = time.perf_counter()
        point = measure(args.run, args.samples, args.seed)
        point["measure_seconds"] = round(time.perf_counter() - started, 1)
        with args.curve.open("a") as handle:
            handle.write(json.dumps(point) + "\n")
        print(json.dumps(point, indent=2))
    if args.plot is not None:
        plot(args.curve, args.plot)


if __name__ == "__main__":
    main()
