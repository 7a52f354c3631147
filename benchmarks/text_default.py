"""Quality of the bundled text model against issue 20's bars; prints JSON.

    python benchmarks/text_default.py --baseline runs/text-lm [--train-baseline] [--run text]

The run (default: the bundled one) is evaluated on the bundled test split with its default prior
and decoding: IWAE NLL (k=50) and perplexity per token, KL, active units and greedy
reconstruction (exact share, BLEU, chrF) of all 2,125 test texts; 1,000 samples for word
validity, uniqueness, novelty and distinct-n; 20 interpolations between seeded pairs of test
texts in 8 greedy steps (distinct texts per path, and their word validity); and whether "she
sells sea shells by the shore" reconstructs to itself. The perplexity bar compares it with the
same decoder trained as a plain language model: z fixed at 0, no encoder, no KL, no word dropout
(a language model does not need it), the same data, seed, batches, optimiser and number of
epochs. ``--train-baseline`` trains that model into ``--baseline`` first; its perplexity is
exact, the VAE's an upper bound.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from importlib import resources
from unittest import mock

import torch
from bars import judge, print_report

import polyvae
from polyvae import trainer
from polyvae.plugins.text.metrics import word_validity
from polyvae.run import build_vae
from polyvae.vae import VAE, Terms

BARS = {  # metric: (comparison, threshold)
    "word_validity": (">=", 0.98),
    "uniqueness": (">=", 0.95),
    "novelty": (">=", 0.80),
    "distinct_2": (">=", 0.5),
    "perplexity_ratio": ("<=", 1.10),
    "reconstruction_exact": (">=", 0.30),
    "reconstruction_bleu": (">=", 50.0),
    "kl": (">=", 15.0),
    "interpolation_distinct": (">=", 5.0),
    "interpolation_word_validity_min": (">=", 0.95),
    "tongue_twister": (">=", 1.0),
    "training_hours": ("<=", 2.0),
}
TONGUE_TWISTER = "she sells sea shells by the shore"
PAIRS, STEPS = 20, 8


class PlainLanguageModel(VAE):
    """The decoder alone, with z fixed at 0: its "ELBO" is the exact log-likelihood."""

    def forward(self, batch, condition=None):
        rows = next(iter(batch.values())).shape[0]
        zeros = torch.zeros(rows, self.latent_dim, device=self.posterior.weight.device)
        log_px = self.decoder.log_prob(batch, zeros).float()
        return Terms(log_px, zeros, zeros, zeros)


def build_language_model(*args, **kwargs) -> PlainLanguageModel:
    vae = build_vae(*args, **kwargs)
    return PlainLanguageModel(vae.encoder, vae.decoder, vae.latent_dim)


def train_baseline(model: polyvae.Model, out: str) -> None:
    config = {
        key: value
        for key, value in model.config.items()
        if key not in ("preset", "device", "compile")
    }
    config.update(word_dropout=0.0, free_bits=0.0)
    with mock.patch.object(trainer, "build_vae", build_language_model):
        trainer.train("text", model.loaded.meta["data"]["source"], config, out=out)


@torch.no_grad()
def exact_perplexity(model: polyvae.Model, texts: list[str]) -> dict[str, float]:
    """Per-token NLL of the language model (z = 0) on ``texts``; exact, no bound."""
    model.vae.eval()
    batch = model.codec.encode(texts)
    nll = 0.0
    for index in torch.arange(len(texts)).split(256):
        part = {name: tensor[index] for name, tensor in batch.items()}
        zeros = torch.zeros(len(index), model.latent_dim)
        nll -= float(model.vae.decoder.log_prob(part, zeros).sum())
    per_token = nll / float(model.domain.unit_counts(batch).sum())
    return {"nll": nll / len(texts), "nll_per_token": per_token, "perplexity": math.exp(per_token)}


def test_texts(model: polyvae.Model) -> list[str]:
    """The bundled test split, read as ``model``'s domain reads texts."""
    source = resources.files("polyvae.data") / "text" / "test.txt.gz"
    return [str(text) for text in model.domain.read(str(source), model.config)[0]]


def interpolations(model: polyvae.Model, test: list[str], training: list[str], seed: int):
    """Greedy paths between ``PAIRS`` seeded pairs of test texts: the mean number of distinct
    texts per path, the lowest word validity of a path, and the first path to read."""
    rng = random.Random(seed)
    paths = [model.interpolate(*rng.sample(test, 2), steps=STEPS) for _ in range(PAIRS)]
    validity = [word_validity(path, training) for path in paths]
    return {
        "interpolation_distinct": sum(len(set(path)) for path in paths) / len(paths),
        "interpolation_word_validity_mean": sum(validity) / len(validity),
        "interpolation_word_validity_min": min(validity),
    }, paths[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="text", help="run directory or domain name")
    parser.add_argument("--baseline", required=True, help="run directory of the language model")
    parser.add_argument("--train-baseline", action="store_true", help="train it first")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (more than free cores is slower)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    model = polyvae.load(args.run)
    if args.train_baseline:
        train_baseline(model, args.baseline)
    test = test_texts(model)
    training = [str(text) for text in model.data_splits()[0]]
    results = model.evaluate(
        test, k=50, samples=args.samples, seed=args.seed, training=training, likelihood_items=0
    )
    baseline = exact_perplexity(polyvae.load(args.baseline), test)
    results["perplexity_ratio"] = results["perplexity"] / baseline["perplexity"]
    paths, first_path = interpolations(model, test, training, args.seed)
    results |= paths
    twister = model.reconstruct([TONGUE_TWISTER])[0]
    results["tongue_twister"] = float(twister == TONGUE_TWISTER)
    history = [json.loads(line) for line in (model.run_dir / "metrics.jsonl").open()]
    threads = max(model.config["threads"], 1)
    results["training_hours"] = sum(record["seconds"] for record in history) / 3600
    shown = test[:10]
    print_report(
        {
            "run": str(model.run_dir),
            "samples": args.samples,
            "temperature": 1.0,
            "training_threads": threads,
            "metrics": results,
            "language_model": baseline,
            "bars": judge(results, BARS),
            "samples_shown": model.sample(10, temperature=1.0, seed=args.seed),
            "reconstructions": dict(zip(shown, model.reconstruct(shown), strict=True)),
            "tongue_twister": twister,
            "interpolation": first_path,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


if __name__ == "__main__":
    main()
