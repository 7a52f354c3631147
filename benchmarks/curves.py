"""What the recipe benchmarks (molecules_recipe.py, text_recipe.py) share: a run's training
history, a copy of its current best (or latest) weights with a fitted prior, and the command line
that appends one point to a curve file or plots it."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

import polyvae
from polyvae.priors import fit_model_prior


def training_so_far(
    run: Path, recipe_keys: tuple[str, ...], items: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The curve point's first fields, from metrics.jsonl and run.json (the recipe, the epoch,
    the epoch whose weights are the best so far, the ``items`` seen, training CPU-minutes: the
    epochs' seconds times the threads, and the validation KL), and the per-epoch records."""
    history = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    saved = json.loads((run / "run.json").read_text())
    config = saved["config"]
    last = history[-1]
    point = {
        "run": run.name,
        "recipe": {key: config[key] for key in recipe_keys if key in config},
        "epoch": last["epoch"],
        "best_epoch": saved["summary"].get("best_epoch"),
        f"{items}_seen": last["step"] * config["batch_size"],
        "cpu_minutes": sum(record["seconds"] for record in history)
        * max(config["threads"], 1)
        / 60,
        "val_kl": last["val_kl"],
    }
    return point, history


def curve_figure(curve: Path, panels: int) -> tuple[list[dict[str, Any]], Any, Any]:
    """The curve file's points, and a figure with ``panels`` axes side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [json.loads(line) for line in curve.open()]
    figure, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.4))
    return points, figure, axes


def draw_points(
    points: list[dict[str, Any]], axes: Any, panels: tuple[str, ...]
) -> dict[str, list[dict[str, Any]]]:
    """Each run's values of each panel's key against training CPU-minutes, one axis a panel;
    returns each run's points, in order. Points measured on a run's latest weights make a
    series of their own."""

    def series(point: dict[str, Any]) -> str:
        return point["run"] + (" (latest weights)" if point.get("weights") == "latest" else "")

    runs = {
        name: [point for point in points if series(point) == name]
        for name in dict.fromkeys(series(point) for point in points)
    }
    for run, mine in runs.items():
        for axis, key in zip(axes, panels, strict=False):
            axis.plot([p["cpu_minutes"] for p in mine], [p.get(key) for p in mine], "o-", label=run)
            axis.set_title(key, fontsize=10)
            axis.set_xlabel("training CPU-minutes")
    return runs


@contextmanager
def measured_weights(run: Path, args: argparse.Namespace) -> Iterator[polyvae.Model]:
    """The run's current best weights (``--weights latest``: its last checkpoint's), loaded from
    a copy (training may go on writing the run), with a Gaussian mixture fitted to its training
    codes."""
    weights = run / "checkpoint" if args.weights == "latest" else run
    with tempfile.TemporaryDirectory(prefix="polyvae-curve-") as scratch:
        copy = Path(scratch) / run.name
        copy.mkdir()
        shutil.copy2(run / "run.json", copy / "run.json")
        shutil.copy2(weights / "model.safetensors", copy / "model.safetensors")
        shutil.copytree(run / "codec", copy / "codec")
        model = polyvae.load(copy)
        training, _ = model.data_splits()
        fit_model_prior(model, training, seed=args.seed)
        yield model


def main(
    description: str,
    default_curve: str,
    default_samples: int,
    measure: Callable[[Path, argparse.Namespace], dict[str, Any]],
    plot: Callable[[Path, Path], None],
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
) -> None:
    """``RUN``: measure it and append the point to ``--curve``; ``--plot FILE``: draw the curve
    file's curves."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run", type=Path, nargs="?", help="a run directory to measure")
    parser.add_argument("--curve", type=Path, default=Path(default_curve))
    parser.add_argument("--samples", type=int, default=default_samples)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--weights",
        choices=("best", "latest"),
        default="best",
        help="measure the best validation weights so far, or the last checkpoint's",
    )
    parser.add_argument("--plot", type=Path, help="draw the curve file's curves to this PNG")
    add_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.run is not None:
        started = time.perf_counter()
        point = measure(args.run, args) | {"weights": args.weights}
        point["measure_seconds"] = round(time.perf_counter() - started, 1)
        with args.curve.open("a") as handle:
            handle.write(json.dumps(point) + "\n")
        print(json.dumps(point, indent=2))
    if args.plot is not None:
        plot(args.curve, args.plot)
