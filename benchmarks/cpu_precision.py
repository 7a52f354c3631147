"""float32 against bf16 autocast on this CPU: a training step and decoding of the MOSES VAE.

    python benchmarks/cpu_precision.py [--batch 512] [--steps 3] [--threads 1]

Prints JSON: training molecules/s (forward, backward and Adam on one batch of real molecules)
and seconds for 40 decoding steps of a batch, in each precision, and whether this CPU computes
bf16 natively (what ``precision=auto`` checks before using it).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "molecules" / "train.smi.gz"
DECODE_STEPS = 40  # about a molecule's length in tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from polyvae.device import cpu_computes_bf16
    from polyvae.registry import get_domain
    from polyvae.run import build_vae

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    domain = get_domain("molecules")
    config = domain.resolve_config({"preset": "moses"})
    with gzip.open(DATA, "rt") as lines:
        smiles = [next(lines).split()[0] for _ in range(max(args.batch, 3000))]
    codec = domain.fit_codec(smiles, config)
    vae = build_vae(domain, config, codec, None, None)
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-4)
    batch = codec.encode(smiles[: args.batch])
    precisions = {
        "fp32": contextlib.nullcontext,
        "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    }

    def train_step(context) -> None:
        with context():
            terms = vae(batch, None)
        loss = -(terms["log_px"] - terms["kl_per_dim"].sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def decode(context) -> float:
        decoder = vae.decoder
        z = torch.randn(args.batch, config["latent_dim"])
        token = torch.ones(args.batch, 1, dtype=torch.long)
        with torch.inference_mode(), context():
            hidden = decoder._start(z)
            started = time.perf_counter()
            for _ in range(DECODE_STEPS):
                _, hidden = decoder._step(token, z, hidden)
            return time.perf_counter() - started

    results = {}
    for name, context in precisions.items():
        train_step(context)  # warm-up: oneDNN picks its kernels on first use
        started = time.perf_counter()
        for _ in range(args.steps):
            train_step(context)
        training = args.steps * args.batch / (time.perf_counter() - started)
        decode(context)
        results[name] = {
            "train_molecules_per_second": round(training, 1),
            "decode_seconds": round(decode(context), 3),
        }
    print(
        json.dumps(
            {
                "cpu_computes_bf16": cpu_computes_bf16(),
                "batch": args.batch,
                "threads": args.threads,
                "decode_steps": DECODE_STEPS,
                "results": results,
                "speedup_bf16": {
                    "training": round(
                        results["bf16"]["train_molecules_per_second"]
                        / results["fp32"]["train_molecules_per_second"],
                        2,
                    ),
                    "decoding": round(
                        results["fp32"]["decode_seconds"] / results["bf16"]["decode_seconds"], 2
                    ),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
