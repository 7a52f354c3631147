"""Exact-resume state: weights, optimizer, scheduler, every rank's RNG streams and the loop's
counters, written as safetensors + JSON into the run's ``checkpoint/`` folder and swapped in whole
(``RunDir.replace_checkpoint``), so an interrupted write never leaves a half checkpoint."""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyvae.files import (
    atomic_write_text,
    flatten_state,
    load_tensors,
    read_json,
    save_tensors,
    unflatten_state,
)
from polyvae.run import RunDir, load_weights


@dataclass
class TrainState:
    """Everything besides weights, optimizer and RNG that resume needs."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    step_in_epoch: int = 0  # batches of the current epoch already used
    best_score: float = -math.inf  # of the selection metric, higher is better
    # What best_score measures: "elbo", or "reconstruction" under kl_target (see
    # Trainer._selection_score); checkpoints from before it was recorded compared ELBOs.
    selected_by: str = "elbo"
    best_val_elbo: float | None = None  # the best epoch's validation ELBO, whatever selected it
    best_epoch: int = 0
    best_in_warmup: bool = False
    epochs_without_improvement: int = 0
    bad_steps: int = 0
    seconds: float = 0.0
    kl_integral: float | None = None  # the KL-target controller's log-beta integral term
    beta: float | None = None  # the controller's beta for the next step
    epoch_sums: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checkpoints written before best_val_elbo was kept compared ELBOs: best_score is it.
        if self.best_val_elbo is None and self.selected_by == "elbo":
            self.best_val_elbo = self.best_score if math.isfinite(self.best_score) else None


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read besides the weights and optimizer it restored."""

    state: TrainState
    world_size: int
    tensors: dict[str, torch.Tensor]
    rng: dict[str, Any]


def rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's torch RNG states, named as the checkpoint stores rank 0's."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    return tensors


def save_checkpoint(
    run: RunDir,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
    world_size: int,
    tensors: dict[str, torch.Tensor],
) -> None:
    """Write the checkpoint; ``tensors`` holds every rank's RNG states (rank r's with the suffix
    ``.rank{r}``) and the epoch's running sums. Called by the rank that writes files."""
    optimizer_skeleton, optimizer_tensors = flatten_state(optimizer.state_dict(), "opt")
    scheduler_skeleton, scheduler_tensors = flatten_state(scheduler.state_dict(), "sched")
    numpy_state = np.random.get_state()
    state_json = {
        "train": asdict(state),
        "world_size": world_size,
        "optimizer": optimizer_skeleton,
        "scheduler": scheduler_skeleton,
        "rng": {
            "python": _python_rng_to_json(random.getstate()),
            # numpy's stubs give get_state() the non-legacy dict; it returns the legacy tuple.
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],  # type: ignore[index]
        },
    }

    def write(folder: Path) -> None:
        save_tensors(folder / "model.safetensors", model.state_dict())
        save_tensors(
            folder / "optimizer.safetensors", optimizer_tensors | scheduler_tensors | tensors
        )
        atomic_write_text(folder / "state.json", json.dumps(state_json, allow_nan=True) + "\n")

    run.replace_checkpoint(write)


def load_checkpoint(
    run: RunDir,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> Checkpoint:
    """Restore weights, optimizer and scheduler from the run's checkpoint; the rest is returned."""
    folder = run.checkpoint_dir
    load_weights(model, folder / "model.safetensors")
    tensors = load_tensors(folder / "optimizer.safetensors")
    saved = read_json(folder / "state.json")
    optimizer.load_state_dict(unflatten_state(saved["optimizer"], tensors))
    scheduler.load_state_dict(unflatten_state(saved["scheduler"], tensors))
    return Checkpoint(
        TrainState(**saved["train"]), saved.get("world_size", 1), tensors, saved["rng"]
    )


def restore_rng(checkpoint: Checkpoint, rank: int, device: torch.device, fresh_seed: int) -> None:
    """Put back rank ``rank``'s RNG streams; a rank the checkpoint did not have (more processes
    than before) gets a fresh stream seeded from ``fresh_seed``."""
    suffix = f".rank{rank}" if rank else ""
    tensors = checkpoint.tensors
    if f"rng.torch{suffix}" in tensors:
        torch.set_rng_state(tensors[f"rng.torch{suffix}"])
    else:
        torch.manual_seed(fresh_seed)
    if device.type == "cuda" and f"rng.cuda{suffix}" in tensors:
        torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], device)
    random.setstate(_python_rng_from_json(checkpoint.rng["python"]))
    kind, keys, *rest = checkpoint.rng["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))


def _python_rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_json(data: list) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)
