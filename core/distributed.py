"""Distributed data-parallel training through ``torchrun`` (``torch.distributed.run``).

``torchrun`` starts one process per device and tells each its place through environment
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). When
``WORLD_SIZE`` is above 1, :func:`session` joins the process group (NCCL for CUDA tensors, Gloo
for CPU tensors) and leaves it again at the end; the trainer wraps the model in
``DistributedDataParallel``, takes its rank's share of every epoch and lets rank 0 alone write
the run directory and show progress. Every helper here is a no-op in a single process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from polyvae.device import resolve_device
from polyvae.errors import UserError

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# How long a rank waits for the others (e.g. while rank 0 alone fits the codec) before failing.
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Context:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- collectives: all no-ops in a single process -------------------------------------------

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any, src: int = 0) -> Any:
        """``value`` of rank ``src`` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=src)
        return holder[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def gather_to_main(self, value: Any) -> list[Any] | None:
        """Every rank's ``value``, in rank order, on rank 0; None on the other ranks."""
        if not self.enabled:
            return [value]
        values: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, values, dst=0)
        return values

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


SINGLE = Context()


def environment() -> Context:
    """The place ``torchrun`` gave this process, or a single process when not launched by it."""
    if int(_env_int("WORLD_SIZE", 1)) <= 1:
        return SINGLE
    missing = [
        name for name in (*ENVIRONMENT, "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)
    ]
    if missing:
        raise UserError(
            f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but {', '.join(missing)} is not set: "
            "start distributed training with torchrun or 'polyvae train ... --nproc N'"
        )
    return Context(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def is_main_process() -> bool:
    """False only in a torchrun worker of rank above 0 (used to print results once)."""
    return _env_int("RANK", 0) == 0


@contextlib.contextmanager
def session() -> Iterator[Context]:
    """Join torchrun's process group for the block (when there is one) and leave it after."""
    place = environment()
    if not place.enabled:
        yield place
        return
    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed; train in one process")
    if dist.is_initialized():  # the caller manages the group (e.g. a notebook or another tool)
        yield Context(dist.get_rank(), dist.get_world_size(), place.local_rank, _backend_name())
        return
    backend = "gloo"
    if torch.cuda.is_available() and dist.is_nccl_available():
        torch.cuda.set_device(place.local_rank % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"  # each collective picks by its tensors' device
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    try:
        yield Context(place.rank, place.world_size, place.local_rank, backend)
    finally:
        dist.destroy_process_group()


def worker_device(name: str, place: Context) -> str:
    """The device setting ``name`` (auto, cpu, cuda:N, ...) resolved for this rank."""
    return str(training_device(resolve_device(name), place))


def share(count: int, place: Context) -> range:
    """This rank's contiguous share of ``range(count)``; the shares differ in size by one at
    most and, in rank order, cover it."""
    return range(
        count * place.rank // place.world_size, count * (place.rank + 1) // place.world_size
    )


def derived_seeds(seed: int, index: int) -> tuple[int, int]:
    """Two independent seeds for part ``index`` of the stream seeded with ``seed``, from
    (``seed``, ``index``) alone, so that any process can draw any part."""
    latent, noise = np.random.SeedSequence([seed % 2**64, index]).generate_state(2, np.uint64)
    return int(latent) >> 1, int(noise) >> 1


def training_device(device: torch.device, place: Context) -> torch.device:
    """Each rank's device: its own GPU (``cuda:LOCAL_RANK``, whatever ``cuda:N`` was asked for)
    when working on CUDA."""
    if not place.enabled:
        return device
    if device.type == "mps":
        raise UserError("several processes run on CUDA or the CPU, not MPS")
    if device.type == "cuda":
        return torch.device("cuda", place.local_rank % torch.cuda.device_count())
    return device


def share_folder(place: Context, folder: Path, into: Path) -> Path:
    """Rank 0's copy of ``folder`` on every rank: the files travel through the process group, so
    nodes need no shared file system. Other ranks get them under ``into``."""
    if not place.enabled:
        return folder
    files = None
    if place.is_main:
        files = {
            str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
    files = place.broadcast(files)
    if place.is_main:
        return folder
    for name, data in files.items():
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return into


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``polyvae ARGV`` in ``nproc`` processes on this machine through torchrun; the exit
    status of the group. Multi-node runs call ``torchrun`` themselves (see docs)."""
    if "WORLD_SIZE" in os.environ and _env_int("WORLD_SIZE", 1) > 1:
        raise UserError("--nproc given inside a torchrun worker; drop --nproc or torchrun")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command.append(f"--nproc-per-node={nproc}")
    script = Path(sys.executable).with_name("polyvae")
    if script.is_file():
        # The installed command, as the user ran it: `python -m` would put the working directory
        # first on sys.path, where a source checkout's stale *.egg-info can hide plugins.
        command += ["--no-python", str(script), *argv]
    else:
        command += ["-m", "polyvae.cli", *argv]
    process = subprocess.Popen(command)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached torchrun too: it stops the workers, which checkpoint first.
            continue


def _backend_name() -> str | None:
    try:
        return str(dist.get_backend())
    except RuntimeError:
        return None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None
