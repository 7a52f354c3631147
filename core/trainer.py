"""Training: one loop for every domain, with exact resume and safe interruption."""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import signal
import statistics
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from polyvae.cache import load_read, read_key, store_read
from polyvae.config import schema_for
from polyvae.device import autocast, fast_autocast, resolve_device
from polyvae.distributed import SINGLE, Context, session, share_folder, training_device
from polyvae.domain import Batch, Domain, ReadReport, require_property
from polyvae.errors import RunError, UserError
from polyvae.files import (
    atomic_write_text,
    fingerprint_batch,
    flatten_state,
    load_tensors,
    read_json,
    save_tensors,
    unflatten_state,
)
from polyvae.registry import get_domain
from polyvae.run import (
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    LoadedRun,
    PropertyScaler,
    RunDir,
    build_vae,
    load_weights,
    open_run,
    versions_record,
)
from polyvae.schedules import beta_at, lr_factor
from polyvae.vae import active_units, kl_penalty, mutual_information

# Keys that may change when a run is resumed: how long and where it runs, not what it learns.
RESUMABLE_KEYS = {"epochs", "max_steps", "time_limit", "device", "threads"}
# Stop when this many optimizer steps in a row produce a non-finite loss.
MAX_BAD_STEPS = 20
# A step whose loss or gradient norm rises above its median over the last SPIKE_WINDOW steps by
# more than SPIKE_FACTOR times that median's size is logged as a spike (the loss can be negative,
# so not "a multiple of the median"); at most one line of each kind every QUIET_STEPS steps.
SPIKE_WINDOW = 50
SPIKE_FACTOR = 10.0
QUIET_STEPS = 100
# Epoch sums that add up over ranks (``beta`` is the same number on every rank).
RANK_SUMS = ("loss", "recon", "kl", "property_loss", "grad_norm", "items")


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # complete | early_stopped | interrupted | diverged
    epochs: int
    steps: int
    best_val_elbo: float | None


@dataclass
class TrainState:
    """Everything besides weights, optimizer and RNG that resume needs."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    step_in_epoch: int = 0  # batches of the current epoch already used
    best_score: float = -math.inf
    best_epoch: int = 0
    best_in_warmup: bool = False
    epochs_without_improvement: int = 0
    bad_steps: int = 0
    seconds: float = 0.0
    epoch_sums: dict[str, float] = field(default_factory=dict)


class Callback:
    """Hooks into the loop; ``trainer.request_stop()`` ends it cleanly with a checkpoint. Every
    rank calls them; ``trainer.place.is_main`` is true on the one that writes files."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first step; ``trainer.state`` is the resumed one when resuming."""

    def on_step_end(self, trainer: Trainer, logs: Mapping[str, float]) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, record: Mapping[str, Any]) -> None:
        pass

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last step, however training ended (also on an error or a second Ctrl-C);
        ``trainer.meta["status"]`` says how."""


def train(
    domain: str | Domain,
    data: str | Path | Sequence[Any] | None = None,
    config: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train a VAE on ``data`` and write a run directory; or continue the run at ``resume``.

    ``config`` holds engine and domain keys (``polyvae.config``); on resume only ``epochs`` and
    ``max_steps`` may change, to extend a run.

    Launched by ``torchrun`` (``WORLD_SIZE`` above 1), every process calls this: they train one
    model data-parallel, and rank 0 alone writes the run directory, logs and shows progress.
    """
    domain = get_domain(domain) if isinstance(domain, str) else domain
    with session() as place:
        if not place.is_main:
            log, progress = _silent, False
        if resume is not None:
            trainer = Trainer.resume(domain, Path(resume), data, config or {}, log, place)
        else:
            trainer = Trainer.fresh(domain, data, config or {}, out, log, place)
        trainer.progress = progress
        trainer.callbacks = list(callbacks)
        return trainer.fit()


def _silent(message: str) -> None:
    pass


class Trainer:
    def __init__(
        self,
        domain: Domain,
        run: RunDir,
        config: dict[str, Any],
        meta: dict[str, Any],
        items: list[Any],
        codec: Any,
        condition: PropertyScaler | None,
        predict: PropertyScaler | None,
        log: Callable[[str], None],
        place: Context = SINGLE,
    ) -> None:
        self.domain, self.run, self.config, self.meta, self.log = domain, run, config, meta, log
        self.progress = True
        self.callbacks: list[Callback] = []
        self.stop_requested = False
        # Under torchrun each rank trains on its share of every epoch; rank 0 alone writes files.
        self.place = place
        self.rank, self.world_size = place.rank, place.world_size
        self.device = training_device(resolve_device(config["device"]), place)
        if config["threads"]:
            # More threads than free cores makes CPU training many times slower, not faster.
            torch.set_num_threads(config["threads"])

        encoded = codec.encode(items)
        fingerprint = fingerprint_batch(encoded)
        self.items, self.codec = items, codec
        # Codecs that augment (e.g. random SMILES) re-encode the training items every epoch.
        self.augmenting = bool(getattr(codec, "augment", False)) and callable(
            getattr(codec, "encode_augmented", None)
        )
        self.condition_values = self.predict_values = None
        if condition:
            self.condition_values = condition.normalise(domain.properties(items, condition.names))
        if predict:
            self.predict_values = predict.normalise(domain.properties(items, predict.names))
        if meta["data"].setdefault("fingerprint", fingerprint) != fingerprint:
            raise RunError(
                f"the data differs from the data {run.path} was trained on; resume with the same "
                "file, or start a new run"
            )
        if len(set(place.gather(fingerprint))) > 1:
            raise RunError(
                "the training processes read different data; every node needs the same --data"
            )
        self.train_index, self.val_index = split_indices(
            len(items), config["val_fraction"], config["seed"]
        )
        self.data = {name: tensor.to(self.device) for name, tensor in encoded.items()}
        self.sizes = self._item_sizes(encoded)
        torch.manual_seed(config["seed"])
        self.vae = build_vae(domain, config, codec, condition, predict).to(self.device)
        network: torch.nn.Module = self.vae
        if place.enabled:
            # Same initial weights on every rank (same seed), then each its own sampling noise.
            if self.rank:
                torch.manual_seed(_rank_seed(config["seed"], self.rank))
            network = DistributedDataParallel(
                self.vae, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.forward = torch.compile(network) if config["compile"] else network
        # The fused update reads and writes each parameter's state once: on one CPU core it takes
        # 1.6 ms for the text preset's 2.6M parameters against 6.0 ms, and 2.2 against 12-16 ms
        # while a second process contends for the shared cache.
        self.optimizer = torch.optim.AdamW(
            self.vae.parameters(),
            lr=config["lr"],
            weight_decay=config["weight_decay"],
            fused=self.device.type in ("cpu", "cuda"),
        )
        self.steps_per_epoch = self._batches_per_epoch()
        total = self.steps_per_epoch * config["epochs"]
        self.total_steps = min(total, config["max_steps"]) if config["max_steps"] else total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(
                step, self.total_steps, config["lr_warmup_steps"], config["lr_min_ratio"]
            ),
        )
        self.state = TrainState()
        # Sums of posterior means over the epoch so far, for the live active-units count.
        self.mu_sum = torch.zeros(config["latent_dim"], dtype=torch.float64, device=self.device)
        self.mu_sq_sum = torch.zeros_like(self.mu_sum)
        # Recent steps' loss and gradient norm, to log spikes (logging only: not checkpointed).
        self.recent: dict[str, deque[float]] = {
            name: deque(maxlen=SPIKE_WINDOW) for name in ("loss", "grad_norm")
        }
        self.last_logged: dict[str, int] = {}

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def fresh(
        cls,
        domain: Domain,
        data: str | Path | Sequence[Any] | None,
        overrides: Mapping[str, Any],
        out: str | Path | None,
        log: Callable[[str], None],
        place: Context = SINGLE,
    ) -> Trainer:
        if data is None:
            raise UserError("no training data: pass --data PATH")
        config = domain.resolve_config(overrides)
        training_device(resolve_device(config["device"]), place)  # refused before any work
        # Rank 0 names the folder (the default holds the time) and checks that it is free.
        run = RunDir(place.broadcast(str(out or default_run_dir(domain.name))))
        taken = run.exists() or (run.path.is_dir() and any(run.path.iterdir()))
        if place.broadcast(taken):
            raise UserError(
                f"{run.path} already holds files; resume it with --resume or pick --out"
            )
        _check_property_names(domain, config)
        items, report = read_items(domain, data, config)
        seed_everything(config["seed"])
        items, condition, predict = _properties(domain, items, config, report, log)
        with removed_on_failure(run, place):
            if place.is_main:
                run.path.mkdir(parents=True, exist_ok=True)
                if report.skipped:
                    atomic_write_text(run.read_report_path, "\n".join(report.log_lines()) + "\n")
                    log(f"{report.summary()} (details in {run.read_report_path})")
                else:
                    log(report.summary())
                codec = domain.fit_codec(items, config)
                run.codec_dir.mkdir(exist_ok=True)
                codec.save(run.codec_dir)
            with tempfile.TemporaryDirectory(prefix="polyvae-codec-") as scratch:
                # The other ranks load rank 0's codec, sent over the process group.
                shared = share_folder(place, run.codec_dir, Path(scratch))
                if not place.is_main:
                    codec = domain.load_codec(shared, config)
            meta = {
                "format": RUN_FORMAT,
                "format_version": RUN_FORMAT_VERSION,
                "domain": domain.name,
                "versions": versions_record(domain),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "config": config,
                "data": {
                    "source": _source_name(data),
                    "items": len(items),
                    "read": report.to_dict(),
                },
                "condition": condition.to_dict() if condition else None,
                "predict": predict.to_dict() if predict else None,
                "status": "training",
                "summary": {},
            }
            trainer = cls(domain, run, config, meta, items, codec, condition, predict, log, place)
            meta["data"].update(train=len(trainer.train_index), val=len(trainer.val_index))
            trainer._write_meta()
        return trainer

    @classmethod
    def resume(
        cls,
        domain: Domain,
        path: Path,
        data: str | Path | Sequence[Any] | None,
        overrides: Mapping[str, Any],
        log: Callable[[str], None],
        place: Context = SINGLE,
    ) -> Trainer:
        # Every rank reads the run: resuming on several nodes needs a shared file system.
        loaded = open_run(path, domain)
        changed = set(overrides) - RESUMABLE_KEYS
        if changed:
            raise UserError(
                f"cannot change {', '.join(sorted(changed))} when resuming; only "
                f"{', '.join(sorted(RESUMABLE_KEYS))}"
            )
        if place.is_main:
            loaded.run.refuse_if_locked()  # a training still running: change nothing of it
            loaded.run.recover_checkpoint()
        place.barrier()
        if not (loaded.run.checkpoint_dir / "state.json").is_file():
            raise RunError(f"{path} has no checkpoint to resume from")
        schema = schema_for(domain.options)
        config = dict(loaded.config)
        if "length_buckets" not in loaded.meta["config"]:
            config["length_buckets"] = 0  # runs from before bucketing resume as they began
        config.update({key: schema[key].coerce(value) for key, value in overrides.items()})
        source = data if data is not None else loaded.meta["data"]["source"]
        if source == IN_MEMORY:
            raise UserError(f"{path} was trained on in-memory items: pass them again to resume")
        items, _ = read_items(domain, source, config)
        items, _, _ = _properties(domain, items, config, None, log)
        meta = loaded.meta | {"config": config}
        trainer = cls(
            domain,
            loaded.run,
            config,
            meta,
            items,
            loaded.codec,
            loaded.condition,
            loaded.predict,
            log,
            place,
        )
        trainer._load_checkpoint()
        if place.is_main:
            loaded.run.truncate_metrics(trainer.state.epoch)
        log(f"resuming {path} at epoch {trainer.state.epoch + 1}, step {trainer.state.step}")
        return trainer

    # --- the loop ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stop_requested = True

    def fit(self) -> TrainResult:
        for callback in self.callbacks:
            callback.on_train_begin(self)
        try:
            return self._fit()
        finally:
            for callback in self.callbacks:
                callback.on_train_end(self)

    def _fit(self) -> TrainResult:
        config = self.config
        status = "complete"
        self.started = time.monotonic()
        lock = self.run.lock() if self.place.is_main else contextlib.nullcontext()
        with lock, self._stop_on_signals():
            self.meta["status"] = "training"
            self._write_meta()
            while self.state.epoch < config["epochs"] and not self._out_of_steps():
                status = self._train_epoch()
                if status != "epoch_done":
                    break
                record = self._end_epoch()
                for callback in self.callbacks:
                    callback.on_epoch_end(self, record)
                if self._should_stop_early():
                    status = "early_stopped"
                    self.log(
                        f"stopping early: no better validation ELBO for {config['patience']} epochs"
                    )
                    break
                if self._stop_agreed():
                    status = "interrupted"
                    break
                status = "complete"
            if status == "interrupted":
                self._save_checkpoint()
                self.log(
                    f"interrupted at epoch {self.state.epoch + 1}, step {self.state.step}; "
                    f"checkpoint saved. Continue with: polyvae train {self.domain.name} "
                    f"--resume {self.run.path}"
                )
            unsaved = not self.run.weights_path.exists()
            if self.place.is_main and unsaved and self._weights_finite():
                save_tensors(self.run.weights_path, self.vae.state_dict())
            self.meta["status"] = status
            if self.place.enabled:
                self.meta["distributed"] = self._distributed_record()
            self._write_meta()
        best = self.state.best_score if math.isfinite(self.state.best_score) else None
        return TrainResult(self.run.path, status, self.state.epoch, self.state.step, best)

    def _weights_finite(self) -> bool:
        checks = [torch.isfinite(parameter).all() for parameter in self.vae.parameters()]
        return bool(torch.stack(checks).all())  # one device sync a step, not one a tensor

    def _train_epoch(self) -> str:
        """Run the rest of the current epoch; 'epoch_done', 'interrupted' or 'diverged'."""
        config, state = self.config, self.state
        batches = self._epoch_batches(state.epoch)
        if self.augmenting:
            self._augment_epoch(state.epoch)
        self.vae.train()
        bar = tqdm(
            total=len(batches),
            initial=state.step_in_epoch,
            desc=f"epoch {state.epoch + 1}/{config['epochs']}",
            disable=not self.progress or self.rank != 0,
            leave=False,
            dynamic_ncols=True,
        )
        started = time.perf_counter()
        with bar:
            for index in batches[state.step_in_epoch :]:
                if self._out_of_steps():
                    break
                logs = self._train_step(index)
                state.step_in_epoch += 1
                if logs is None:
                    state.bad_steps += 1
                    self._log_rarely(
                        "skipped", f"step {state.step}: non-finite loss or gradient; step skipped"
                    )
                    if state.bad_steps >= MAX_BAD_STEPS:
                        self.log(
                            f"stopping: {MAX_BAD_STEPS} steps in a row gave a non-finite loss "
                            "(lower lr or raise grad_clip); the last good checkpoint is kept"
                        )
                        return "diverged"
                    continue
                state.bad_steps = 0
                self._log_spikes(logs)
                bar.update(1)
                bar.set_postfix(self._running_postfix(), refresh=False)
                for callback in self.callbacks:
                    callback.on_step_end(self, logs)
                if not self._weights_finite():
                    # A finite loss can still step into NaN weights; training on would save
                    # them over the last good checkpoint (and, in warm-up, the best weights).
                    self.log(
                        f"stopping: the weights became non-finite at step {state.step}; the "
                        "last good checkpoint is kept (lower lr or raise grad_clip)"
                    )
                    return "diverged"
                if self._stop_agreed():
                    state.seconds += time.perf_counter() - started
                    return "interrupted"
        state.seconds += time.perf_counter() - started
        return "epoch_done"

    def _train_step(self, index: torch.Tensor) -> dict[str, float] | None:
        config, state = self.config, self.state
        batch = (
            take(self.epoch_data, self.epoch_row[index])
            if self.augmenting
            else take(self.data, index)
        )
        condition = (
            self.condition_values[index].to(self.device)
            if self.condition_values is not None
            else None
        )
        beta = beta_at(state.step, self.total_steps, config)
        with fast_autocast(self.device, config["precision"]):
            terms = self.forward(batch, condition)
        recon = -terms["log_px"].mean()
        kl = terms["kl_per_dim"].sum(-1).mean()
        loss = recon + beta * kl_penalty(terms["kl_per_dim"], config["free_bits"])
        property_loss = torch.zeros(())
        if self.predict_values is not None:
            target = self.predict_values[index].to(self.device)
            property_loss = torch.nn.functional.mse_loss(terms["property_pred"], target)
            loss = loss + config["property_weight"] * property_loss
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        # Ranks skip a step together: a backward pass on some ranks only would hang DDP.
        if self.place.any(not bool(torch.isfinite(loss)), self.device):
            self._skip_scheduler_step()
            return None
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.vae.parameters(), config["grad_clip"] if config["grad_clip"] > 0 else math.inf
        )
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._skip_scheduler_step()
            return None
        self.optimizer.step()
        self.scheduler.step()
        mu = terms["mu"].detach().double()
        items = len(index)
        sums = state.epoch_sums
        for name, value in (
            ("loss", loss.item()),
            ("recon", recon.item()),
            ("kl", kl.item()),
            ("property_loss", property_loss.item()),
            ("grad_norm", float(grad_norm)),
        ):
            sums[name] = sums.get(name, 0.0) + value * items
        sums["items"] = sums.get("items", 0.0) + items
        sums["beta"] = beta
        self.mu_sum += mu.sum(0)
        self.mu_sq_sum += mu.pow(2).sum(0)
        return {
            "loss": loss.item(),
            "recon": recon.item(),
            "kl": kl.item(),
            "beta": beta,
            "grad_norm": float(grad_norm),
        }

    def _skip_scheduler_step(self) -> None:
        """Keep the schedule in step past a skipped step, without PyTorch's warning about a
        scheduler step before any optimizer step (a skipped first step is just that)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
            self.scheduler.step()

    def _log_spikes(self, logs: Mapping[str, float]) -> None:
        """Log a loss or gradient-norm spike against the recent steps (see SPIKE_FACTOR)."""
        for name in ("loss", "grad_norm"):
            value, recent = logs[name], self.recent[name]
            if len(recent) >= SPIKE_WINDOW // 5:
                median = statistics.median(recent)
                if value - median > SPIKE_FACTOR * max(abs(median), 1e-12):
                    self._log_rarely(
                        name,
                        f"{name.replace('_', ' ')} spike at step {self.state.step}: {value:.4g}, "
                        f"against a median of {median:.4g} over the last {len(recent)} steps",
                    )
            recent.append(value)

    def _log_rarely(self, kind: str, message: str) -> None:
        """Log ``message`` unless one of the same kind was logged in the last QUIET_STEPS steps."""
        last = self.last_logged.get(kind)
        if last is None or self.state.step - last >= QUIET_STEPS:
            self.last_logged[kind] = self.state.step
            self.log(message)

    def _augment_epoch(self, epoch: int) -> None:
        """This epoch's encoding of the training items, from a seed fixed by (seed, epoch) so
        that a resumed run sees the same variants."""
        train_items = [self.items[i] for i in self.train_index.tolist()]
        seed = self.config["seed"] * 1_000_003 + epoch
        encoded = self.codec.encode_augmented(train_items, seed)
        self.epoch_data = {name: tensor.to(self.device) for name, tensor in encoded.items()}
        self.epoch_row = torch.full((len(self.items),), -1, dtype=torch.long)
        self.epoch_row[self.train_index] = torch.arange(len(self.train_index))

    def _running_postfix(self) -> dict[str, str]:
        sums = self.state.epoch_sums
        items = max(sums.get("items", 0.0), 1.0)
        return {
            "loss": f"{sums.get('loss', 0.0) / items:.3f}",
            "recon": f"{sums.get('recon', 0.0) / items:.3f}",
            "kl": f"{sums.get('kl', 0.0) / items:.2f}",
            "beta": f"{sums.get('beta', 0.0):.3f}",
            "au": str(self._train_active_units()),
        }

    def _train_active_units(self) -> int:
        items = self.state.epoch_sums.get("items", 0.0)
        if items < 2:
            return 0
        variance = self.mu_sq_sum / items - (self.mu_sum / items).pow(2)
        return int((variance > 0.01).sum())

    def _end_epoch(self) -> dict[str, Any]:
        state = self.state
        if self.place.enabled:
            # The epoch's numbers over all ranks' items.
            state.epoch_sums, mu_sum, mu_sq_sum = self._rank_totals()
            self.mu_sum.copy_(mu_sum)
            self.mu_sq_sum.copy_(mu_sq_sum)
        sums = state.epoch_sums
        items = max(sums.get("items", 0.0), 1.0)
        record: dict[str, Any] = {
            "epoch": state.epoch + 1,
            "step": state.step,
            "loss": sums.get("loss", math.nan) / items,
            "recon": sums.get("recon", math.nan) / items,
            "kl": sums.get("kl", math.nan) / items,
            "beta": sums.get("beta", math.nan),
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": sums.get("grad_norm", math.nan) / items,
            "active_units": self._train_active_units(),
        }
        if self.predict_values is not None:
            record["property_loss"] = sums.get("property_loss", math.nan) / items
        record.update({f"val_{key}": value for key, value in self.validate().items()})
        record["items_per_second"] = sums.get("items", 0.0) / max(state.seconds, 1e-9)
        record["seconds"] = state.seconds
        state.epoch += 1
        state.step_in_epoch = 0
        state.epoch_sums = {}
        state.seconds = 0.0
        self.mu_sum.zero_()
        self.mu_sq_sum.zero_()
        score = record.get("val_elbo", -record["loss"])
        # While beta still rises the ELBO falls as the latent comes into use, so during warm-up
        # the latest weights are kept and model selection and early stopping wait.
        warming = self._beta_warming_up()
        improved = warming or state.best_in_warmup or score > state.best_score
        if improved:
            state.best_score, state.best_epoch = score, state.epoch
            state.best_in_warmup = warming
            state.epochs_without_improvement = 0
            if self.rank == 0:
                save_tensors(self.run.weights_path, self.vae.state_dict())
            # Var_x E_q[z_d] of the best weights: which dimensions carry information.
            self.meta["latent_variance"] = getattr(self, "latent_variance", None)
        else:
            state.epochs_without_improvement += 1
        if self.rank == 0:
            self.run.append_metrics(record)
        self._save_checkpoint()
        self.meta["summary"] = {
            "epochs": state.epoch,
            "steps": state.step,
            "best_epoch": state.best_epoch,
            "best_val_elbo": state.best_score,
            "last": {key: value for key, value in record.items() if key != "epoch"},
        }
        self._write_meta()
        if self.progress and self.rank == 0:
            self.log(_format_record(record))
        return record

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """True ELBO (beta 1, no free bits), KL, active units and MI on the validation items,
        with fixed noise so epochs compare fairly and training's RNG stream is untouched."""
        if len(self.val_index) == 0:
            return {}
        if self.place.enabled:
            return self._validate_shared()
        self.vae.eval()
        sums = {"elbo": 0.0, "recon": 0.0, "kl": 0.0}
        mus, logvars = [], []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config["seed"])
            for terms in self._validation_terms(self.val_index):
                kl = terms["kl_per_dim"].sum(-1)
                sums["elbo"] += float((terms["log_px"] - kl).sum())
                sums["recon"] += float(-terms["log_px"].sum())
                sums["kl"] += float(kl.sum())
                mus.append(terms["mu"])
                logvars.append(terms["logvar"])
            mu, logvar = torch.cat(mus), torch.cat(logvars)
            results = {key: value / len(self.val_index) for key, value in sums.items()}
            results["active_units"] = active_units(mu)
            self.latent_variance = mu.float().var(dim=0).tolist() if len(mu) > 1 else None
            results["mutual_info"] = mutual_information(mu[:2000], logvar[:2000])
        self.vae.train()
        return results

    def _validation_terms(self, indices: torch.Tensor) -> Iterator[dict[str, torch.Tensor]]:
        """The model's terms on ``indices`` of the data, a batch at a time."""
        for index in indices.split(self.config["batch_size"]):
            condition = (
                self.condition_values[index].to(self.device)
                if self.condition_values is not None
                else None
            )
            with autocast(self.device, self.config["precision"]):
                terms = self.vae(take(self.data, index), condition)
            yield terms

    @torch.no_grad()
    def _validate_shared(self) -> dict[str, float]:
        """:meth:`validate` with each rank scoring its share of the validation items; the sums
        are added over ranks and rank 0's results are everyone's, so that model selection and
        early stopping agree."""
        self.vae.eval()
        shard = self.val_index[self.rank :: self.world_size]
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # elbo, recon, kl
        mu_sum = torch.zeros(self.config["latent_dim"], dtype=torch.float64, device=self.device)
        mu_sq_sum = torch.zeros_like(mu_sum)
        mi_rows = -(-2000 // self.world_size)  # this rank's part of the 2,000 items MI uses
        mus, logvars = [], []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(_rank_seed(self.config["seed"], self.rank))
            for terms in self._validation_terms(shard):
                kl = terms["kl_per_dim"].double().sum(-1)
                log_px = terms["log_px"].double()
                totals += torch.stack([(log_px - kl).sum(), -log_px.sum(), kl.sum()])
                mu = terms["mu"].double()
                mu_sum += mu.sum(0)
                mu_sq_sum += mu.pow(2).sum(0)
                if sum(len(part) for part in mus) < mi_rows:
                    mus.append(terms["mu"].float().cpu())
                    logvars.append(terms["logvar"].float().cpu())
            for tensor in (totals, mu_sum, mu_sq_sum):
                self.place.sum_(tensor)
            count = len(self.val_index)
            results = dict(zip(("elbo", "recon", "kl"), (totals / count).tolist(), strict=True))
            # Var_x E_q[z_d] (unbiased, as torch.var) from the sums over all validation items.
            variance = (mu_sq_sum - mu_sum.pow(2) / count) / max(count - 1, 1)
            results["active_units"] = int((variance > 0.01).sum()) if count > 1 else 0
            self.latent_variance = variance.tolist() if count > 1 else None
            parts = self.place.gather(
                (torch.cat(mus)[:mi_rows], torch.cat(logvars)[:mi_rows]) if mus else None
            )
            parts = [part for part in parts if part is not None]
            results["mutual_info"] = mutual_information(
                torch.cat([mu for mu, _ in parts]), torch.cat([logvar for _, logvar in parts])
            )
        self.vae.train()
        results, self.latent_variance = self.place.broadcast((results, self.latent_variance))
        return results

    def _rank_totals(self) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        """The epoch's running sums added over all ranks (a copy; the ranks' own stay)."""
        sums = dict(self.state.epoch_sums)
        keys = [key for key in RANK_SUMS if key in sums]
        if keys:  # the same keys on every rank: the ranks skip steps together
            values = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.device)
            self.place.sum_(values)
            sums.update(zip(keys, values.tolist(), strict=True))
        mu_sum = self.place.sum_(self.mu_sum.clone())
        mu_sq_sum = self.place.sum_(self.mu_sq_sum.clone())
        return sums, mu_sum, mu_sq_sum

    def _stop_agreed(self) -> bool:
        """Whether any rank was asked to stop (a signal, a callback); then all stop together."""
        self.stop_requested = self.place.any(self.stop_requested, self.device)
        return self.stop_requested

    def _distributed_record(self) -> dict[str, Any]:
        """How the run was spread, with a hash of each rank's final weights: DDP keeps them
        equal, and a mismatch is reported rather than silently saving rank 0's."""
        hashes = self.place.gather(fingerprint_batch(self.vae.state_dict()))
        if len(set(hashes)) > 1:
            self.log("warning: the ranks' weights differ at the end of training; rank 0's are kept")
        return {
            "world_size": self.world_size,
            "backend": self.place.backend,
            "batch_size_per_process": self.config["batch_size"],
            "weights_sha256_per_rank": hashes,
        }

    # --- checkpoints ---------------------------------------------------------------------------

    def _save_checkpoint(self) -> None:
        """Rank 0 writes the checkpoint, with the running sums and every rank's RNG state
        gathered from the others (all ranks call this)."""
        rng_tensors = {"rng.torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng_tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        epoch_sums, mu_sum, mu_sq_sum = self.state.epoch_sums, self.mu_sum, self.mu_sq_sum
        if self.place.enabled:
            ranks = self.place.gather(rng_tensors)
            for rank, states in enumerate(ranks[1:], start=1):
                rng_tensors.update(
                    {f"{name}.rank{rank}": tensor for name, tensor in states.items()}
                )
            epoch_sums, mu_sum, mu_sq_sum = self._rank_totals()
        if not self.place.is_main:
            return
        optimizer_skeleton, optimizer_tensors = flatten_state(self.optimizer.state_dict(), "opt")
        scheduler_skeleton, scheduler_tensors = flatten_state(self.scheduler.state_dict(), "sched")
        numpy_state = np.random.get_state()
        state_json = {
            "train": self.state.__dict__ | {"epoch_sums": epoch_sums},
            "world_size": self.world_size,
            "optimizer": optimizer_skeleton,
            "scheduler": scheduler_skeleton,
            "rng": {
                "python": _python_rng_to_json(random.getstate()),
                "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            },
        }
        extra_tensors = {"epoch.mu_sum": mu_sum, "epoch.mu_sq_sum": mu_sq_sum}

        def write(folder: Path) -> None:
            save_tensors(folder / "model.safetensors", self.vae.state_dict())
            save_tensors(
                folder / "optimizer.safetensors",
                optimizer_tensors | scheduler_tensors | rng_tensors | extra_tensors,
            )
            atomic_write_text(folder / "state.json", _json_dumps(state_json))

        self.run.replace_checkpoint(write)

    def _load_checkpoint(self) -> None:
        folder = self.run.checkpoint_dir
        load_weights(self.vae, folder / "model.safetensors")
        tensors = load_tensors(folder / "optimizer.safetensors")
        saved = read_json(folder / "state.json")
        self.optimizer.load_state_dict(unflatten_state(saved["optimizer"], tensors))
        self.scheduler.load_state_dict(unflatten_state(saved["scheduler"], tensors))
        self.state = TrainState(**saved["train"])
        saved_world = saved.get("world_size", 1)
        if saved_world != self.world_size and self.state.step_in_epoch:
            raise UserError(
                f"{self.run.path} was checkpointed in the middle of an epoch by {saved_world} "
                f"processes; resume it with {saved_world} (--nproc {saved_world})"
            )
        suffix = f".rank{self.rank}" if self.rank else ""
        if f"rng.torch{suffix}" in tensors:
            torch.set_rng_state(tensors[f"rng.torch{suffix}"])
        else:  # a rank the checkpoint did not have: a fresh stream of its own
            torch.manual_seed(_rank_seed(self.config["seed"], self.rank) + self.state.step)
        if self.device.type == "cuda" and f"rng.cuda{suffix}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], self.device)
        random.setstate(_python_rng_from_json(saved["rng"]["python"]))
        kind, keys, *rest = saved["rng"]["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
        if self.place.is_main:  # the checkpoint holds the sums over all ranks
            self.mu_sum.copy_(tensors["epoch.mu_sum"])
            self.mu_sq_sum.copy_(tensors["epoch.mu_sq_sum"])
        else:
            self.state.epoch_sums = {}

    # --- helpers -------------------------------------------------------------------------------

    def _batches_per_epoch(self) -> int:
        return len(self._epoch_batches(0))

    def _epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches of an epoch: a shuffled order fixed by (seed, epoch), so a resumed
        run sees exactly the batches the interrupted one would have."""
        sampler = DistributedSampler(
            range(len(self.train_index)),
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=self.config["seed"],
        )
        sampler.set_epoch(epoch)
        order = self.train_index[torch.tensor(list(sampler), dtype=torch.long)]
        size = self.config["batch_size"]
        batches = list(order.split(size))
        if len(batches) > 1 and len(batches[-1]) < size:
            batches.pop()  # a tiny last batch only adds noise
        if self.sizes is not None:
            batches = self._bucketed(batches, epoch)
        return batches

    def _item_sizes(self, encoded: Batch) -> torch.Tensor | None:
        """Each item's length (the domain's ``unit_counts``) when batches are to be bucketed and
        the lengths differ; None otherwise."""
        if not self.config["length_buckets"]:
            return None
        try:
            sizes = torch.as_tensor(self.domain.unit_counts(encoded)).reshape(-1).cpu()
        except NotImplementedError:  # a domain without units: nothing to bucket by
            return None
        if len(sizes) != len(self.items) or len(sizes) == 0 or bool((sizes == sizes[0]).all()):
            return None
        return sizes

    def _bucketed(self, batches: list[torch.Tensor], epoch: int) -> list[torch.Tensor]:
        """The same items in batches of similar length: each window of ``length_buckets``
        shuffled batches is sorted by length and cut again, then all batches are shuffled.
        Padding, and with it most of a sequence model's wasted work, shrinks; the order is
        fixed by (seed, epoch, rank), so resume and the other ranks stay exact."""
        size, window = self.config["batch_size"], self.config["length_buckets"]
        generator = torch.Generator().manual_seed(
            _rank_seed(self.config["seed"], self.rank) * 1_000_003 + epoch
        )
        regrouped: list[torch.Tensor] = []
        for start in range(0, len(batches), window):
            items = torch.cat(batches[start : start + window])
            ordered = items[torch.argsort(self.sizes[items], stable=True)]
            regrouped += list(ordered.split(size))
        return [regrouped[i] for i in torch.randperm(len(regrouped), generator=generator)]

    def _beta_warming_up(self) -> bool:
        schedule = self.config["beta_schedule"]
        warmup = self.config["beta_warmup_steps"]
        return schedule in ("linear", "logistic") and self.state.step < warmup

    def _out_of_steps(self) -> bool:
        """Past max_steps or the time limit: the current epoch ends early and the run ends."""
        if self.config["max_steps"] and self.state.step >= self.config["max_steps"]:
            return True
        limit = self.config["time_limit"] * 60
        if not limit:
            return False
        # Every rank ends at the same step, or DDP would wait for the ones still training.
        return self.place.any(time.monotonic() - self.started > limit, self.device)

    def _should_stop_early(self) -> bool:
        patience = self.config["patience"]
        return bool(patience) and self.state.epochs_without_improvement >= patience

    def _write_meta(self) -> None:
        if self.rank == 0:
            self.run.write_meta(self.meta)

    @contextmanager
    def _stop_on_signals(self):
        """First Ctrl-C or SIGTERM: finish the step, checkpoint, exit. A second: stop now."""

        def handler(signum: int, frame: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            self.log("stopping after this step; saving a checkpoint (press Ctrl-C again to abort)")

        try:
            previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signals alone
            previous = {}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


# --- module helpers -----------------------------------------------------------------------------


IN_MEMORY = "<in-memory items>"


def read_items(
    domain: Domain, data: str | Path | Sequence[Any], config: Mapping[str, Any]
) -> tuple[list[Any], ReadReport]:
    """Items from a path (read by the domain) or an in-memory sequence of items."""
    if isinstance(data, (str, Path)):
        key = read_key(domain, Path(data), config)
        cached = load_read(key, str(data)) if key else None
        if cached:
            items, report = cached
        else:
            try:
                items, report = domain.read(data, config)
            except FileNotFoundError as error:
                raise UserError(f"data not found: {error.filename or data}") from None
            if key:
                store_read(key, items, report)
    else:
        items = list(data)
        report = ReadReport(IN_MEMORY, kept=len(items))
    if config["max_items"]:
        items = items[: config["max_items"]]
        report.kept = len(items)
    if len(items) < 2:
        raise UserError(
            f"{report.source}: need at least 2 usable items to train, found {len(items)}"
        )
    return items, report


def _source_name(data: str | Path | Sequence[Any]) -> str:
    """How run.json names the data: an absolute path (or glob), or as given a source named
    ``scheme:name`` that is no file (``torchvision:FashionMNIST``)."""
    if not isinstance(data, (str, Path)):
        return IN_MEMORY
    scheme, colon, _ = str(data).partition(":")
    if colon and len(scheme) > 1 and scheme.isidentifier() and not Path(data).exists():
        return str(data)
    return str(Path(data).resolve())


def read_run_data(loaded: LoadedRun) -> tuple[list[Any], list[Any]]:
    """A run's training and validation items, read from its source exactly as training did."""
    source = loaded.meta["data"]["source"]
    if source == IN_MEMORY:
        raise UserError(f"{loaded.run.path} was trained on in-memory items: pass --data")
    bundled = Path(str(resources.files("polyvae.data"))) / source
    if not Path(source).is_absolute() and bundled.exists():
        # Bundled runs name their data relative to the installed polyvae.data package.
        source = bundled
    items, _ = read_items(loaded.domain, source, loaded.config)
    items, _, _ = _properties(loaded.domain, items, loaded.config, None, lambda message: None)
    train_index, val_index = split_indices(
        len(items), loaded.config["val_fraction"], loaded.config["seed"]
    )
    return [items[i] for i in train_index.tolist()], [items[i] for i in val_index.tolist()]


def _check_property_names(domain: Domain, config: Mapping[str, Any]) -> None:
    for key in ("condition", "predict"):
        for name in config[key]:
            require_property(domain, name, f"config key '{key}'")


def _properties(domain, items, config, report, log):
    """Drop items whose conditioning or predicted properties cannot be computed (counted), and
    fit the scalers on the rest."""
    names = list(dict.fromkeys([*config["condition"], *config["predict"]]))
    if not names:
        return items, None, None
    values = np.asarray(domain.properties(items, names), dtype=np.float64)
    keep = np.isfinite(values).all(axis=1)
    if not keep.all():
        dropped = int((~keep).sum())
        if report is not None:
            for position in np.flatnonzero(~keep):
                report.skip(f"item {position + 1}", f"properties {', '.join(names)} not computable")
        log(f"dropped {dropped:,} items whose properties could not be computed")
        items = [item for item, ok in zip(items, keep, strict=False) if ok]
        values = values[keep]
    if report is not None:
        report.kept = len(items)
    columns = {name: values[:, position] for position, name in enumerate(names)}

    def scaler(selected):
        if not selected:
            return None
        return PropertyScaler.fit(selected, np.stack([columns[n] for n in selected], axis=1))

    return items, scaler(config["condition"]), scaler(config["predict"])


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded train/validation split of ``count`` items."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(count, generator=generator)
    val_count = min(count - 1, max(1, round(count * val_fraction))) if val_fraction > 0 else 0
    return order[val_count:].sort().values, order[:val_count].sort().values


def take(data: Batch, index: torch.Tensor) -> Batch:
    index = index.to(next(iter(data.values())).device)
    return {name: tensor[index] for name, tensor in data.items()}


def _rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s sampling noise (rank 0 keeps the run's own)."""
    return seed + 1_000_003 * rank


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_run_dir(domain_name: str) -> Path:
    return Path("runs") / f"{domain_name}-{datetime.now():%Y%m%d-%H%M%S}"


@contextmanager
def removed_on_failure(run: RunDir, place: Context) -> Iterator[None]:
    """A start that fails takes back what it wrote: the run folder it made, or the contents of
    the empty folder it was given. A retry then finds the place as it was."""
    created = not run.path.exists()
    try:
        yield
    except BaseException:
        if place.is_main:
            if created:
                shutil.rmtree(run.path, ignore_errors=True)
            else:
                for child in run.path.iterdir():
                    if child.is_dir():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        raise


def _format_record(record: Mapping[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}"]
    for key in (
        "loss",
        "recon",
        "kl",
        "beta",
        "active_units",
        "val_elbo",
        "val_kl",
        "val_active_units",
    ):
        if key in record:
            value = record[key]
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " | ".join(parts)


def _python_rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_rng_from_json(data: list) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)


def _json_dumps(data: Any) -> str:
    return json.dumps(data, allow_nan=True) + "\n"
