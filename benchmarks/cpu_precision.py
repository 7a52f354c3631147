"""The precisions of this CPU against each other, on the MOSES VAE; prints JSON.

    python benchmarks/cpu_precision.py [--batch 512] [--steps 3] [--threads 1] \
        [--run RUN --samples 10000 --nll-molecules 2000]

- speed, on a fresh `moses` preset model: training molecules/s (forward, backward and Adam on
  one batch of real molecules) in float32 and under bf16 autocast, and the seconds for 40
  generation steps of a batch in float32, bf16 and with int8 products (what ``precision=auto``
  decodes with where the CPU has VNNI);
- quality, with ``--run`` (a trained run): for each generation arithmetic, the teacher-forced
  NLL of the first ``--nll-molecules`` bundled test molecules that the run's vocabulary holds,
  at their posterior means, and the MOSES metrics of ``--samples`` molecules sampled with one
  seed, with their sampling rate. float32 is the reference the others must match.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "molecules"
DECODE_STEPS = 40  # about a molecule's length in tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run", help="a trained molecules run, for the quality comparison")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--nll-molecules", type=int, default=2000)
    args = parser.parse_args()

    import torch

    from polyvae.device import cpu_computes_bf16, cpu_computes_int8

    torch.set_num_threads(args.threads)
    record = {
        "cpu_computes_bf16": cpu_computes_bf16(),
        "cpu_computes_int8": cpu_computes_int8(),
        "batch": args.batch,
        "threads": args.threads,
        "decode_steps": DECODE_STEPS,
        "speed": speed(args),
    }
    if args.run:
        record["quality"] = quality(args)
    print(json.dumps(record, indent=2))


def arithmetics() -> dict:
    """Generation arithmetic by the ``precision`` value that selects it on a CPU with VNNI."""
    import torch

    from polyvae.device import int8_products

    return {
        "fp32": contextlib.nullcontext,
        "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        "auto (int8 products)": int8_products,
    }


def speed(args: argparse.Namespace) -> dict:
    import torch

    from polyvae.registry import get_domain
    from polyvae.run import build_vae

    torch.manual_seed(0)
    domain = get_domain("molecules")
    config = domain.resolve_config({"preset": "moses"})
    with gzip.open(DATA / "train.smi.gz", "rt") as lines:
        smiles = [next(lines).split()[0] for _ in range(max(args.batch, 3000))]
    codec = domain.fit_codec(smiles, config)
    vae = build_vae(domain, config, codec, None, None)
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-4)
    batch = codec.encode(smiles[: args.batch])

    def train_step(context) -> None:
        with context():
            terms = vae(batch, None)
        loss = -(terms.log_px - terms.kl_per_dim.sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def decode(context) -> float:
        z = torch.randn(args.batch, config["latent_dim"])
        token = torch.ones(args.batch, dtype=torch.long)
        with torch.inference_mode(), context():
            started = time.perf_counter()
            steps = vae.decoder.token_steps(z)
            for _ in range(DECODE_STEPS):
                steps.next(token)
            return time.perf_counter() - started

    results = {}
    for name, context in arithmetics().items():
        results[name] = {}
        if name != "auto (int8 products)":  # training never uses int8
            train_step(context)  # warm-up: oneDNN picks its kernels on first use
            started = time.perf_counter()
            for _ in range(args.steps):
                train_step(context)
            training = args.steps * args.batch / (time.perf_counter() - started)
            results[name]["train_molecules_per_second"] = round(training, 1)
        decode(context)
        results[name]["decode_seconds"] = round(decode(context), 3)
    fp32 = results["fp32"]
    for result in results.values():
        result["decode_speedup_over_fp32"] = round(
            fp32["decode_seconds"] / result["decode_seconds"], 2
        )
        if "train_molecules_per_second" in result:
            result["train_speedup_over_fp32"] = round(
                result["train_molecules_per_second"] / fp32["train_molecules_per_second"], 2
            )
    return results


def encodable(codec, molecule: str) -> bool:
    """Whether the run's vocabulary holds every token of the molecule."""
    from polyvae.errors import UserError

    try:
        codec.encode([molecule])
    except UserError:
        return False
    return True


def quality(args: argparse.Namespace) -> dict:
    import torch

    import polyvae
    from polyvae.device import fast_decoding
    from polyvae.plugins.sequence import PAD

    model = polyvae.load(args.run, device="cpu")
    with gzip.open(DATA / "test.smi.gz", "rt") as lines:
        test = [line.split()[0] for line in lines if line.strip()]
    with gzip.open(DATA / "train.smi.gz", "rt") as lines:
        training = [line.split()[0] for line in lines if line.strip()]
    molecules = [molecule for molecule in test if encodable(model.codec, molecule)]
    molecules = molecules[: args.nll_molecules]
    batch = model.codec.encode(molecules)
    z = model.vae.decoder_input(torch.as_tensor(model.encode(molecules)), None)
    tokens = batch["tokens"][:, : int(batch["lengths"].max())]

    def nll() -> float:
        """Mean over molecules of -sum log p(token | earlier tokens, z), through generation's
        own steps in the arithmetic the model samples with."""
        total = 0.0
        with torch.inference_mode(), fast_decoding(model.device, model.precision):
            steps = model.vae.decoder.token_steps(z)
            for position in range(tokens.shape[1] - 1):
                log_probs = steps.next(tokens[:, position]).float().log_softmax(dim=-1)
                target = tokens[:, position + 1]
                picked = log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
                total -= float(picked.masked_fill(target == PAD, 0.0).sum())
        return total / len(molecules)

    # Each precision value, as `polyvae sample --precision` sets it; keys as in the speed part.
    precisions = {"fp32": "fp32", "bf16": "bf16", "auto (int8 products)": "auto"}
    results = {}
    for name, precision in precisions.items():
        model.precision = precision
        model.sample(64, seed=1)  # warm-up
        started = time.perf_counter()
        samples = model.sample(args.samples, seed=0)
        seconds = time.perf_counter() - started
        metrics = model.domain.metrics(samples, test, training)
        results[name] = {
            "teacher_forced_nll": round(nll(), 4),
            "sample_molecules_per_second": round(args.samples / seconds, 1),
            "metrics": {key: round(value, 4) for key, value in metrics.items()},
        }
    return {
        "run": str(args.run),
        "samples": args.samples,
        "nll_molecules": len(molecules),
        "results": results,
    }


if __name__ == "__main__":
    main()
