"""Quality of the bundled text model against the issue's bars; prints JSON.

    python benchmarks/text_default.py --baseline runs/text-lm [--train-baseline] [--run text]

The run (default: the bundled one) is evaluated on the bundled test split: IWAE NLL (k=50) and
perplexity per token on all 2,125 test texts, KL, active units, mutual information,
reconstruction BLEU, and 1,000 samples at temperature 1.0 for uniqueness, novelty, distinct-n and
self-BLEU. The perplexity bar compares it with the same decoder trained as a plain language model:
z fixed at 0, no encoder, no KL, no word dropout (a language model does not need it), the same
data, seed, batches, optimiser and number of epochs. ``--train-baseline`` trains that model into
``--baseline`` first; its perplexity is exact, the VAE's an upper bound.
"""

from __future__ import annotations

import argparse
import math
import time
from importlib import resources
from unittest import mock

import torch
from bars import judge, print_report

import polyvae
from polyvae import trainer
from polyvae.run import build_vae
from polyvae.vae import VAE, Terms

BARS = {  # metric: (comparison, threshold)
    "kl": (">=", 3.0),
    "active_units": (">=", 5),
    "perplexity_ratio": ("<=", 1.15),
    "uniqueness": (">=", 0.95),
    "novelty": (">=", 0.80),
    "distinct_2": (">=", 0.5),
}


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
    test_file = resources.files("polyvae.data") / "text" / "test.txt.gz"
    test = [str(text) for text in model.domain.read(str(test_file), model.config)[0]]
    training, _ = model.data_splits()
    results = model.evaluate(
        test, k=50, samples=args.samples, seed=args.seed, training=training, likelihood_items=0
    )
    baseline = exact_perplexity(polyvae.load(args.baseline), test)
    results["perplexity_ratio"] = results["perplexity"] / baseline["perplexity"]
    bars = judge(results, BARS)
    examples = model.sample(10, temperature=1.0, seed=args.seed)
    print_report(
        {
            "run": str(model.run_dir),
            "samples": args.samples,
            "temperature": 1.0,
            "metrics": results,
            "language_model": baseline,
            "bars": bars,
            "examples": examples,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


if __name__ == "__main__":
    main()
