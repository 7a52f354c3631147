"""Sample quality per decoding strategy of a text run (issue 20); prints JSON.

    python benchmarks/text_strategies.py [RUN] [--samples 1000]

For each strategy (`polyvae sample text --strategy ... --temperature ... --top-p ...`), the
same latent points (`--seed`) from the run's default prior are decoded and scored against the
run's training texts: word validity, uniqueness, novelty, distinct-1/2 and self-BLEU, with three
samples to read. The table in docs/text.md comes from this script.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import polyvae

STRATEGIES = {  # name: generate options
    "sample T=1.0": {"temperature": 1.0},
    "sample T=0.8": {"temperature": 0.8},
    "sample T=0.6": {"temperature": 0.6},
    "nucleus p=0.9": {"temperature": 1.0, "top_p": 0.9},
    "top-k 40": {"temperature": 1.0, "top_k": 40},
    "greedy": {"strategy": "greedy"},
    "beam 4": {"strategy": "beam", "beam_size": 4},
}
METRICS = ("word_validity", "uniqueness", "novelty", "distinct_1", "distinct_2", "self_bleu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="text", help="run directory or domain name")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = polyvae.load(args.run)
    training = [str(text) for text in model.data_splits()[0]]
    table = {}
    for name, options in STRATEGIES.items():
        started = time.perf_counter()
        options = dict(options)
        temperature = options.pop("temperature", 1.0)
        texts = model.sample(args.samples, temperature=temperature, seed=args.seed, **options)
        metrics = model.domain.metrics(texts, [], training)
        table[name] = {metric: metrics[metric] for metric in METRICS} | {
            "seconds": round(time.perf_counter() - started, 1),
            "examples": texts[:3],
        }
    print(
        json.dumps(
            {"run": str(model.run_dir), "samples": args.samples, "strategies": table}, indent=2
        )
    )


if __name__ == "__main__":
    main()
