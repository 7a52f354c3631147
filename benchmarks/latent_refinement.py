"""Refined codes (``refine``: gradient steps from the encoder's mean towards the most probable
code of an item) on the bundled molecules model; prints JSON.

    python benchmarks/latent_refinement.py [--run molecules] [--items 1000] [--threads 2]

- Reconstruction: greedy exact reconstruction of the 1,000 test molecules that ``evaluate``
  reconstructs (the same seeded subset), after 0, 5, 10, 25 and 50 steps, with the seconds a
  molecule each took.
- Interpolation: for 20 pairs of test molecules, how often the path's ends decode back to the
  pair, the valid share of the path and its distinct molecules, unrefined and refined.
- Analogues: ``neighbours`` decodes around the encoder's mean; this compares that with the same
  noise around the refined code, for 10 test molecules at the default radius.
- Paracetamol and aspirin: how probable the decoder finds them at their best code (200 steps),
  token by token, to tell whether a better code could bring them back.
- Texts: greedy reconstruction of 100 validation sentences of the bundled text model's run
  (BLEU, chrF, exact), unrefined and refined.
- Images: for 200 validation images of the bundled images model's run, unrefined and refined,
  the reconstruction error (per-pixel squared and absolute error, PSNR) and the log-likelihood
  the model was trained on, log p(x | z) at the code.

``--parts`` runs some of these only (their keys, comma-separated).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import time

import torch
from molecules_analogues import DRUGS

import polyvae
from polyvae.plugins.molecules import chemistry
from polyvae.plugins.molecules.commands import ANALOGUE_RADIUS
from polyvae.plugins.molecules.metrics import analogues_by_similarity, bundled_smiles

STEPS = (0, 5, 10, 25, 50)
REFINED = 25  # the CLI's default for reconstruct and interpolate
CHECKED = {name: DRUGS[name] for name in ("paracetamol", "aspirin")}


def reconstruction(model: polyvae.Model, molecules: list[str]) -> list[dict]:
    rows = []
    for steps in STEPS:
        started = time.perf_counter()
        rebuilt = model.reconstruct(molecules, refine=steps)
        rows.append(
            {
                "steps": steps,
                "exact": round(
                    model.domain.reconstruction_metrics(molecules, rebuilt)["reconstruction_exact"],
                    4,
                ),
                "seconds_per_molecule": round((time.perf_counter() - started) / len(molecules), 4),
            }
        )
    return rows


def interpolation(model: polyvae.Model, pairs: list[tuple[str, str]]) -> list[dict]:
    rows = []
    for steps in (0, REFINED):
        ends = valid = distinct = 0
        for start, end in pairs:
            path = model.interpolate(start, end, steps=8, refine=steps)
            ends += (path[0] == chemistry.canonical_smiles(start)) + (
                path[-1] == chemistry.canonical_smiles(end)
            )
            good = [item for item in path if model.domain.is_valid(item)]
            valid += len(good)
            distinct += len(set(good))
        rows.append(
            {
                "steps": steps,
                "ends_exact": round(ends / (2 * len(pairs)), 3),
                "valid": round(valid / (8 * len(pairs)), 3),
                "distinct_per_path": round(distinct / len(pairs), 2),
            }
        )
    return rows


def analogues(model: polyvae.Model, seeds: list[str]) -> list[dict]:
    """As ``neighbours`` (n=100, default radius, greedy, fitted prior's spread), with the centre
    unrefined and refined."""
    spread = model.prior(None).spread()
    rows = []
    for steps in (0, REFINED):
        counts, medians, seed_back = [], [], []
        for index, smiles in enumerate(seeds):
            centre = model.posterior([smiles], refine=steps)[0]
            noise = spread * torch.randn(100, model.latent_dim, generator=model.generator(index))
            decoded = model.decode(centre + ANALOGUE_RADIUS * noise)
            own = chemistry.canonical_smiles(smiles)
            ranked = [pair for pair in analogues_by_similarity(smiles, decoded) if pair[0] != own]
            counts.append(len(ranked))
            medians.append(statistics.median(value for _, value in ranked) if ranked else 0.0)
            seed_back.append(sum(item == own for item in decoded))
        rows.append(
            {
                "steps": steps,
                "distinct_valid": statistics.mean(counts),
                "median_tanimoto": round(statistics.median(medians), 3),
                "decoded_as_the_seed_of_100": statistics.mean(seed_back),
            }
        )
    return rows


def token_costs(model: polyvae.Model, smiles: str) -> dict:
    """-log p of each token of ``smiles`` (its last is <eos>) at the code refined 200 steps, and
    what greedy decoding writes from there."""
    _, batch = model.encodable([smiles])
    code = model.posterior([smiles], refine=200)[0]
    tokens = batch["tokens"][0, : int(batch["lengths"][0])]
    steps = model.vae.decoder.token_steps(code)
    costs = []
    with torch.no_grad():
        for previous, target in itertools.pairwise(tokens):
            log_probs = steps.next(previous.view(1)).float().log_softmax(-1)
            costs.append(-float(log_probs[0, target]))
    return {
        "greedy_from_best_code": model.decode(code)[0],
        "nats_total": round(sum(costs), 2),
        "nats_on_eos": round(costs[-1], 2),
    }


def text_reconstruction() -> list[dict]:
    model = polyvae.load("text")
    sentences = model.data_splits()[1][:100]
    rows = []
    for steps in (0, REFINED):
        started = time.perf_counter()
        rebuilt = model.reconstruct(sentences, refine=steps)
        metrics = model.domain.reconstruction_metrics(sentences, rebuilt)
        rows.append(
            {"steps": steps}
            | {name: round(value, 3) for name, value in metrics.items()}
            | {"seconds_per_sentence": round((time.perf_counter() - started) / len(sentences), 3)}
        )
    return rows


def image_reconstruction() -> list[dict]:
    model = polyvae.load("images")
    images = model.data_splits()[1][:200]
    _, batch = model.encodable(images)
    rows = []
    for steps in (0, 5, REFINED):
        started = time.perf_counter()
        codes = model.posterior(images, refine=steps)[0]
        rebuilt = model.decode(codes)
        seconds = time.perf_counter() - started
        with torch.no_grad():
            log_px = model.vae.decoder.log_prob(batch, model.vae.decoder_input(codes, None))
        metrics = model.domain.reconstruction_metrics(images, rebuilt)
        rows.append(
            {"steps": steps}
            | {name: round(value, 4) for name, value in metrics.items()}
            | {
                "log_px_nats": round(float(log_px.mean()), 1),
                "seconds_per_image": round(seconds / len(images), 4),
            }
        )
    return rows


PARTS = ("reconstruction", "interpolation", "analogues", "drugs", "text", "images")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="molecules", help="a run (default: the bundled model)")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args()
    parts = args.parts.split(",")
    torch.set_num_threads(args.threads)
    model = polyvae.load(args.run)
    test = bundled_smiles("test")
    # evaluate's subset: a seeded permutation of the test molecules.
    chosen = torch.randperm(len(test), generator=model.generator(0))[: args.items].tolist()
    molecules = [test[position] for position in chosen]
    others = random.Random(0).sample(test, 50)
    pairs = list(zip(others[:20], others[20:40], strict=True))
    measures = {
        "reconstruction": lambda: reconstruction(model, molecules),
        "interpolation": lambda: interpolation(model, pairs),
        "analogues": lambda: analogues(model, others[40:50]),
        "drugs": lambda: {name: token_costs(model, smiles) for name, smiles in CHECKED.items()},
        "text": text_reconstruction,
        "images": image_reconstruction,
    }
    result = {"run": args.run, "threads": args.threads}
    result |= {part: measures[part]() for part in PARTS if part in parts}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
