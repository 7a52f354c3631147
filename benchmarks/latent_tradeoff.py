"""How much the latent holds against what it costs: three KL targets per domain (issue 18).

    python benchmarks/latent_tradeoff.py [--domains molecules text images] [--minutes 5]
        [--out benchmarks/latent_tradeoff] [--threads 2]

For each built-in domain and each of its KL targets, trains the domain's small preset on its
bundled data with `kl_target` for the same wall-clock budget (so the rows cost the same), lets
training fit its Gaussian-mixture prior, and evaluates on the run's validation split: the
validation KL against the target, reconstruction, and sample quality under the standard and the
fitted prior (molecules: validity, FCD/Test, Filters; texts: perplexity and word validity;
images: IWAE NLL in bits per dimension, and reconstruction error). Writes OUT.json and OUT.png
(the table) and prints the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

import polyvae

DATA = Path(__file__).resolve().parent.parent / "data"
# domain: bundled training data, config beyond the small preset, KL targets (nats per item),
# and the metrics each row shows (under both priors for sample metrics).
DOMAINS: dict[str, dict[str, Any]] = {
    "molecules": {
        "data": DATA / "molecules" / "train.smi.gz",
        "config": {"representation": "smiles"},
        "targets": (5.0, 15.0, 30.0),
        "reconstruction": ("reconstruction_exact",),
        "likelihood": ("iwae_nll",),
        "samples": ("validity", "FCD/Test", "Filters"),
    },
    "text": {
        "data": DATA / "text" / "train.txt.gz",
        "config": {},
        "targets": (5.0, 15.0, 25.0),
        "reconstruction": ("reconstruction_exact", "reconstruction_chrf"),
        "likelihood": ("perplexity",),
        "samples": ("word_validity", "uniqueness"),
    },
    "images": {
        "data": DATA / "images" / "train-images-idx3-ubyte.gz",
        "config": {},
        "targets": (10.0, 30.0, 60.0),
        "reconstruction": ("reconstruction_mse", "reconstruction_psnr"),
        "likelihood": ("bits_per_dim",),
        "samples": (),
    },
}
BAR_TOLERANCE = 0.15  # each validation KL should end within 15% of its target


def run_row(domain: str, target: float, minutes: float, threads: int, folder: Path) -> dict:
    spec = DOMAINS[domain]
    out = folder / f"{domain}-kl{target:g}"
    config = {
        "preset": "small",
        "kl_target": target,
        "time_limit": minutes,
        "epochs": 1000,  # the time limit ends training
        "patience": 0,
        "threads": threads,
    } | spec["config"]
    started = time.perf_counter()
    polyvae.train(domain, spec["data"], config, out=out, progress=False, log=lambda line: None)
    trained = time.perf_counter() - started
    model = polyvae.load(out)
    training, validation = model.data_splits()
    samples = 2000 if spec["samples"] else 0
    results = model.evaluate(
        validation, k=10, samples=samples, training=training, likelihood_items=500
    )
    last = [json.loads(line) for line in (out / "metrics.jsonl").open()][-1]
    row = {
        "domain": domain,
        "kl_target": target,
        "val_kl": last["val_kl"],
        "within_15_percent": abs(last["val_kl"] - target) <= BAR_TOLERANCE * target,
        "epochs": last["epoch"],
        "steps": last["step"],
        "train_seconds": round(trained, 1),
        "prior_held_out_log_likelihood": results.get("fitted_prior_log_likelihood"),
        "standard_held_out_log_likelihood": results.get("standard_prior_log_likelihood"),
    }
    for key in (*spec["reconstruction"], *spec["likelihood"]):
        row[key] = results.get(key)
    for key in spec["samples"]:
        row[f"fitted: {key}"] = results.get(key)
        row[f"standard: {key}"] = results.get(f"standard_prior/{key}")
    return row


def draw_table(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(key)) for key in columns] for row in rows]
    size = (min(2.0 + 1.3 * len(columns), 40), 0.6 + 0.35 * len(rows))
    figure, axes = plt.subplots(figsize=size)
    axes.axis("off")
    table = axes.table(cellText=cells, colLabels=columns, loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    figure.tight_layout()
    figure.savefig(path, dpi=150)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=list(DOMAINS))
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/latent_tradeoff"))
    parser.add_argument("--runs", type=Path, default=Path("runs/latent_tradeoff"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [
        run_row(domain, target, args.minutes, args.threads, args.runs)
        for domain in args.domains
        for target in DOMAINS[domain]["targets"]
    ]
    report = {"minutes_per_row": args.minutes, "threads": args.threads, "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    draw_table(rows, args.out.with_suffix(".png"))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
