"""How many nats z must carry to rebuild each test text exactly; prints JSON.

    python benchmarks/text_information.py --baseline runs/text-lm [--rates 40 60 80]

The plain language model of `text_default.py --train-baseline` scores every text of the bundled
test split: its negative log-likelihood in nats is what a latent code would have to add for the
decoder to write the text with certainty. Printed: the mean and median of that information,
the share of texts that need at most each rate (a KL target), and the share that also hold no
unknown word (a word-level vocabulary cannot write those back at all) — a ceiling on greedy
exact reconstruction at that rate for a code that wasted nothing.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from text_default import test_texts

import polyvae
from polyvae.plugins.sequence import UNK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="run directory of the language model")
    parser.add_argument("--rates", type=float, nargs="+", default=[40.0, 60.0, 80.0])
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
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
