"""How many nats z must carry to rebuild each test text exactly; prints JSON.

    python benchmarks/text_information.py --baseline runs/text-lm [--rates 40 60 80] [--run text]

The plain language model of `text_default.py --train-baseline` scores every text of the bundled
test split: its negative log-likelihood in nats is what a latent code would have to add for the
decoder to write the text with certainty. Printed: the mean and median of that information,
the share of texts that need at most each rate (a KL target), and the share that also hold no
unknown word (a word-level vocabulary cannot write those back at all) — a ceiling on greedy
exact reconstruction at that rate for a code that wasted nothing.

With ``--run`` (a VAE of the same tokenizer; ``text`` for the bundled one), where its greedy
reconstructions fail: the share of test texts its tokenizer writes back unchanged, and the
test texts grouped by how often their rarest token occurs in the run's training split, with
each group's share and exact reconstruction.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from text_default import test_texts

import polyvae
from polyvae.plugins.sequence import UNK

RARITY_GROUPS = ((1, 4), (5, 19), (20, None))  # training occurrences of the rarest token


def by_rarest_token(model: polyvae.Model, texts: list[str]) -> dict:
    """Greedy exact reconstruction of ``texts`` by ``model``, grouped by their rarest token's
    count in its training split (an unknown word is a group of its own)."""
    training = model.codec.encode([str(text) for text in model.data_splits()[0]])
    counts = torch.bincount(
        training["tokens"].flatten(), minlength=int(training["tokens"].max()) + 1
    )
    batch = model.codec.encode(texts)
    rarest = []
    for tokens, length in zip(batch["tokens"], batch["lengths"], strict=True):
        inner = tokens[1 : int(length) - 1]  # the text's own tokens: no <bos>, no <eos>
        rarest.append(-1 if bool((inner == UNK).any()) else int(counts[inner].min()))
    exact = np.array(texts) == np.array(model.reconstruct(texts))
    rarest_count = np.array(rarest)
    groups = {"unknown word": rarest_count == -1}
    for low, high in RARITY_GROUPS:
        name = f"{low}+" if high is None else f"{low}-{high}"
        groups[name] = (rarest_count >= low) & (high is None or rarest_count <= high)
    round_trip = model.codec.decode(batch)
    return {
        "run": str(model.run_dir),
        "tokenizer_round_trip": float(np.mean(np.array(texts) == np.array(round_trip))),
        "reconstruction_exact": float(np.mean(exact)),
        "by_rarest_token": {
            name: {
                "share": float(np.mean(member)),
                "reconstruction_exact": float(exact[member].mean()) if member.any() else None,
            }
            for name, member in groups.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="run directory of the language model")
    parser.add_argument("--rates", type=float, nargs="+", default=[40.0, 60.0, 80.0])
    parser.add_argument("--run", help="a VAE whose reconstructions to break down by word rarity")
    args = parser.parse_args()
    model = polyvae.load(args.baseline)
    model.vae.eval()
    texts = test_texts(model)
    batch = model.codec.encode(texts)
    information = []
    with torch.no_grad():
        for index in torch.arange(len(texts)).split(256):
            part = {name: tensor[index] for name, tensor in batch.items()}
            zeros = torch.zeros(len(index), model.latent_dim)
            information += (-model.vae.decoder.log_prob(part, zeros)).tolist()
    nats = np.array(information)
    known = ~(batch["tokens"] == UNK).any(dim=1).numpy()
    breakdown = {} if args.run is None else by_rarest_token(polyvae.load(args.run), texts)
    print(
        json.dumps(
            {
                "baseline": args.baseline,
                "texts": len(texts),
                "mean_nats": float(nats.mean()),
                "median_nats": float(np.median(nats)),
                "without_unknown_words": float(known.mean()),
                "share_within": {str(rate): float((nats <= rate).mean()) for rate in args.rates},
                "share_within_and_known": {
                    str(rate): float(((nats <= rate) & known).mean()) for rate in args.rates
                },
            }
            | breakdown,
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
