"""Learning curves of text recipes on the bundled WordNet sentences (issue 20); prints JSON.

Train a candidate (any `polyvae train text` settings) with short epochs, then measure its
weights now and then while it trains:

    polyvae train text --data data/text/train.txt.gz --set tokenizer=word --set vocab_size=16000 \\
        --set kl_target=40 --set word_dropout=0.3 --set steps_per_epoch=300 --out runs/t
    python benchmarks/text_recipe.py runs/t --curve benchmarks/text_recipe.jsonl

Each call appends one point to the curve file: texts seen, training CPU-minutes (the epochs'
seconds times the threads), validation KL from metrics.jsonl; and, from a copy of the run's
current best weights with a Gaussian mixture fitted to its training codes, on the bundled test
split: the IWAE perplexity per token (k=`--k`), greedy reconstruction (exact share, BLEU, chrF)
of every test text, and word validity, uniqueness, novelty and distinct-2 of `--samples`
samples under the standard and the fitted prior; a few reconstructions and samples to read.
`--plot FILE` draws every candidate's curves from the curve file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from curves import curve_figure, draw_points, main, measured_weights, training_so_far
from text_default import TONGUE_TWISTER, test_texts

RECIPE_KEYS = (
    "tokenizer",
    "vocab_size",
    "latent_dim",
    "decoder_hidden",
    "beta_max",
    "kl_target",
    "free_bits",
    "word_dropout",
    "dropout",
    "bag_of_words",
    "tie_embeddings",
)
SAMPLE_METRICS = ("word_validity", "uniqueness", "novelty", "distinct_2")
SHOWN = 5  # reconstructions and samples kept in each point, to read


def measure(run: Path, args: argparse.Namespace) -> dict:
    """One point of ``run``'s learning curve, from a copy of its current best weights."""
    point, history = training_so_far(run, RECIPE_KEYS, "texts")
    point["val_elbo"] = history[-1]["val_elbo"]
    # Per epoch: the reconstruction term on training batches and on the validation split.
    point["history"] = [
        {"step": record["step"], "recon": record["recon"], "val_recon": record["val_recon"]}
        for record in history
    ]
    samples, k, seed = args.samples, args.k, args.seed
    with measured_weights(run, args) as model:
        training, _ = model.data_splits()
        test = test_texts(model)
        results = model.evaluate(
            test, k=k, samples=samples, seed=seed, training=training, likelihood_items=0
        )
        point |= {
            name: results[name]
            for name in ("perplexity", "kl", "active_units", "reconstruction_exact")
        }
        point |= {name: results[name] for name in ("reconstruction_bleu", "reconstruction_chrf")}
        for prior in ("standard", "fitted"):
            prefix = "" if prior == "fitted" else "standard_prior/"
            point |= {f"{prior}: {name}": results[prefix + name] for name in SAMPLE_METRICS}
        shown = [*test[:SHOWN], TONGUE_TWISTER]
        point["reconstructions"] = dict(zip(shown, model.reconstruct(shown), strict=True))
        point["samples"] = model.sample(SHOWN, seed=seed)
    return point


def plot(curve: Path, out: Path) -> None:
    panels = ("reconstruction_bleu", "reconstruction_exact", "fitted: word_validity", "perplexity")
    points, figure, axes = curve_figure(curve, len(panels) + 1)
    for mine in draw_points(points, axes, panels).values():
        # The latest point's history: reconstruction nats on training and validation batches.
        history = mine[-1].get("history", [])
        line = axes[-1].plot([h["step"] for h in history], [h["val_recon"] for h in history])
        axes[-1].plot(
            [h["step"] for h in history],
            [h["recon"] for h in history],
            "--",
            color=line[0].get_color(),
        )
    axes[3].set_yscale("log")
    axes[-1].set_title("reconstruction nats: validation (-), training (--)", fontsize=10)
    axes[-1].set_xlabel("steps")
    for axis in axes:
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out, dpi=120)


def importance_samples(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", type=int, default=10, help="importance samples of the IWAE bound")


if __name__ == "__main__":
    main(
        __doc__.splitlines()[0],
        "benchmarks/text_recipe.jsonl",
        1000,
        measure,
        plot,
        add_arguments=importance_samples,
    )
