"""Run by ``torchrun --nproc-per-node 2`` in tests/test_distributed.py: in one process group,
train straight through into OUT/a, train into OUT/b with rank 1 alone asking to stop at step 7
(mid-epoch), then resume OUT/b. The test compares the two run directories."""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist
from polyvae_gaussmix import GaussMixDomain, mixture

import polyvae
from polyvae.callbacks import Callback

CONFIG = {
    "batch_size": 32,
    "latent_dim": 4,
    "beta_warmup_steps": 50,
    "lr_warmup_steps": 10,
    "epochs": 3,
    "free_bits": 0.05,
    "threads": 1,
}
STOP_STEP = 7


class StopOnRankOne(Callback):
    def on_step_end(self, trainer, logs) -> None:
        if trainer.rank == 1 and trainer.state.step == STOP_STEP:
            trainer.request_stop()


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")  # the caller's group: train() joins it and leaves it open
    domain, data = GaussMixDomain(), list(mixture(400, seed=1))
    common = {"progress": False, "log": lambda message: None}
    polyvae.train(domain, data=data, config=CONFIG, out=out / "a", **common)
    stopped = polyvae.train(
        domain, data=data, config=CONFIG, out=out / "b", callbacks=[StopOnRankOne()], **common
    )
    assert stopped.status == "interrupted" and stopped.steps == STOP_STEP, stopped
    polyvae.train(domain, data=data, resume=out / "b", **common)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
