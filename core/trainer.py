"""Training: the step and epoch loop, model selection and the cross-rank stop agreement, for
every domain, with exact resume and safe interruption.

The data (``polyvae.dataset``), the checkpoint (``polyvae.checkpoint``), the loss and latent
statistics (``polyvae.vae``) and what is shown while training (``polyvae.callbacks``) live in
modules of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from polyvae.callbacks import Callback, EpochLine, ProgressBar, StepMonitor
from polyvae.checkpoint import (
    TrainState,
    load_checkpoint,
    restore_rng,
    rng_tensors,
    save_checkpoint,
)
from polyvae.config import EngineConfig, schema_for
from polyvae.dataset import (
    IN_MEMORY,
    TrainingData,
    check_property_names,
    encodable_items,
    fit_properties,
    rank_seed,
    seed_everything,
    source_name,
    training_items,
)
from polyvae.device import fast_autocast, resolve_device
from polyvae.distributed import SINGLE, Context, session, share_folder, training_device
from polyvae.domain import Batch, Domain
from polyvae.errors import RunError, UserError
from polyvae.files import atomic_write_text, fingerprint_batch, save_tensors
from polyvae.model import Model
from polyvae.priors import describe_fit, fit_model_prior
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
    resolve_run_path,
    versions_record,
)
from polyvae.schedules import beta_at, controlled_beta, initial_kl_integral, lr_factor
from polyvae.vae import MI_ITEMS, LatentStatistics, Terms, training_loss

# Keys that may change when a run is resumed: how long and where it runs, not what it learns.
RESUMABLE_KEYS = {
    "epochs",
    "max_steps",
    "time_limit",
    "device",
    "threads",
    "fit_prior",
    "prior_components",
}
# A fine-tune (``--init RUN``) carries over RUN's config but these keys: the plan and the machine
# of RUN's own training. They come from the domain's defaults or the user's --set.
FINE_TUNE_FRESH_KEYS = {
    "preset",
    "epochs",
    "steps_per_epoch",
    "max_steps",
    "time_limit",
    "max_items",
    "device",
    "threads",
    "compile",
}
# Keys a fine-tune cannot change: the preset would set network sizes the weights do not have, and
# the properties' scalers are RUN's, so the model's property inputs keep their meaning.
FINE_TUNE_FIXED_KEYS = ("preset", "condition", "predict")
# Fewer training items than this get no fitted prior: a density on a handful of codes overfits.
MIN_PRIOR_ITEMS = 50
# Stop when this many optimizer steps in a row produce a non-finite loss.
MAX_BAD_STEPS = 20
# Epoch sums that add up over ranks (``beta`` is the same number on every rank).
RANK_SUMS = ("loss", "recon", "kl", "property_loss", "auxiliary_loss", "grad_norm", "items")


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # complete | early_stopped | interrupted | diverged
    epochs: int
    steps: int
    best_val_elbo: float | None
    best_epoch: int = 0
    # The run ended in the KL warm-up, whose epochs are kept as they come, not compared.
    best_in_warmup: bool = False
    selected_by: str = "elbo"  # or "reconstruction", under kl_target
    best_val_recon: float | None = None

    def best_line(self) -> str:
        """How the kept weights were chosen, for the line ``polyvae train`` ends with."""
        if self.best_val_elbo is None:
            return "best validation ELBO n/a"
        if self.selected_by == "reconstruction":
            best = (
                f"best validation reconstruction {self.best_val_recon:.4f} nats (epoch "
                f"{self.best_epoch}, chosen by reconstruction under kl_target; ELBO "
                f"{self.best_val_elbo:.4f}"
            )
        else:
            best = f"best validation ELBO {self.best_val_elbo:.4f} (epoch {self.best_epoch}"
        if self.best_in_warmup:
            return f"{best}, in the KL warm-up: the latest epoch, not compared with earlier ones)"
        return f"{best})"


def train(
    domain: str | Domain,
    data: str | Path | Sequence[Any] | None = None,
    config: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    log: Callable[[str], None] = print,
    init: str | Path | None = None,
) -> TrainResult:
    """Train a VAE on ``data`` and write a run directory; or continue the run at ``resume``; or,
    with ``init`` (a run directory, or a domain name for its bundled model), fine-tune that run
    on ``data`` into a new run directory.

    ``config`` holds engine and domain keys (``polyvae.config``); on resume only the keys in
    ``RESUMABLE_KEYS`` may change, to extend a run or move it.

    Launched by ``torchrun`` (``WORLD_SIZE`` above 1), every process calls this: they train one
    model data-parallel, and rank 0 alone writes the run directory, logs and shows progress.
    """
    domain = get_domain(domain) if isinstance(domain, str) else domain
    with session() as place:
        if not place.is_main:
            log, progress = _silent, False
        if resume is not None:
            if init is not None:
                raise UserError("--init starts a new run; a resumed run keeps its own start")
            trainer = Trainer.resume(domain, Path(resume), data, config or {}, log, place)
        else:
            trainer = Trainer.fresh(domain, data, config or {}, out, log, place, init)
        shown: list[Callback] = [ProgressBar(), EpochLine(log)] if progress else []
        trainer.callbacks = [*shown, StepMonitor(log), *callbacks]
        result = trainer.fit()
        if place.is_main and result.status in ("complete", "early_stopped"):
            trainer.fit_prior()
        return result


def _silent(message: str) -> None:
    pass


def use_threads(threads: int) -> None:
    """Set torch's process-wide thread count when the config names one (0: torch's default).
    More threads than free cores makes CPU training many times slower, not faster."""
    if threads:
        torch.set_num_threads(threads)


@dataclass
class FineTuneStart:
    """Where a fine-tune (``train --init RUN``) starts: RUN, the new run's config, RUN's weights
    (checked against the network that config builds) and what run.json records of RUN."""

    source: LoadedRun
    config: dict[str, Any]
    weights: dict[str, torch.Tensor]
    record: dict[str, Any]

    @classmethod
    def of(cls, domain: Domain, init: str | Path, overrides: Mapping[str, Any]) -> FineTuneStart:
        """``init``: a run directory, or a domain name for its bundled model. A network the
        weights do not fit is refused here, before any work."""
        source = open_run(resolve_run_path(init), domain)
        config = fine_tune_config(source, overrides)
        network = build_vae(domain, config, source.codec, source.condition, source.predict)
        try:
            load_weights(network, source.run.weights_path)
        except RunError as error:
            raise UserError(
                f"cannot fine-tune {source.run.path}: {error} (the network's options must stay "
                "as that run's)"
            ) from None
        summary = source.meta.get("summary", {})
        record = {
            "given": str(init),
            "run": str(source.run.path.resolve()),
            "created": source.meta.get("created"),
            "data": source.meta["data"]["source"],
            "epochs": summary.get("epochs"),
            "weights_epoch": summary.get("best_epoch"),
        }
        return cls(source, config, network.state_dict(), record)


def fine_tune_config(source: LoadedRun, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The config of a fine-tune of ``source``: its own, but for the plan of its training
    (:data:`FINE_TUNE_FRESH_KEYS`), with ``overrides`` on top. The KL warm-up is off unless set:
    the latent was warmed up in ``source``, and a second warm-up would let it fill afresh."""
    schema = schema_for(source.domain.options)
    fixed = [
        key
        for key in FINE_TUNE_FIXED_KEYS
        if key in overrides
        and (key == "preset" or schema[key].coerce(overrides[key]) != source.config[key])
    ]
    if fixed:
        raise UserError(
            f"cannot set {', '.join(fixed)} when fine-tuning {source.run.path}: a fine-tune keeps "
            "its network and its property scalers"
        )
    carried = {
        key: value for key, value in source.config.items() if key not in FINE_TUNE_FRESH_KEYS
    }
    carried["beta_warmup_steps"] = 0
    return source.domain.resolve_config(carried, overrides)


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
        encoded: Batch | None = None,
    ) -> None:
        self.domain, self.run, self.config, self.meta, self.log = domain, run, config, meta, log
        self.engine = engine = EngineConfig.from_mapping(config)
        self.callbacks: list[Callback] = []
        self.stop_requested = False
        self.started = time.monotonic()
        # Under torchrun each rank trains on its share of every epoch; rank 0 alone writes files.
        self.place = place
        self.rank, self.world_size = place.rank, place.world_size
        self.device = training_device(resolve_device(engine.device), place)
        self.data = TrainingData(
            domain, items, codec, engine, condition, predict, self.device, encoded
        )
        self.data.shard(self.rank, self.world_size)
        if meta["data"].setdefault("fingerprint", self.data.fingerprint) != self.data.fingerprint:
            raise RunError(
                f"the data differs from the data {run.path} was trained on; resume with the same "
                "file, or start a new run"
            )
        if len(set(place.gather(self.data.fingerprint))) > 1:
            raise RunError(
                "the training processes read different data; every node needs the same --data"
            )
        torch.manual_seed(engine.seed)
        self.vae = build_vae(domain, config, codec, condition, predict).to(self.device)
        network: torch.nn.Module = self.vae
        if place.enabled:
            # Same initial weights on every rank (same seed), then each its own sampling noise.
            if self.rank:
                torch.manual_seed(rank_seed(engine.seed, self.rank))
            network = DistributedDataParallel(
                self.vae, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.forward = torch.compile(network) if engine.compile else network
        # The fused update reads and writes each parameter's state once: on one CPU core it takes
        # 1.6 ms for the text preset's 2.6M parameters against 6.0 ms, and 2.2 against 12-16 ms
        # while a second process contends for the shared cache.
        self.optimizer = torch.optim.AdamW(
            self.vae.parameters(),
            lr=engine.lr,
            weight_decay=engine.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )
        self.steps_per_epoch = self.data.batches_per_epoch()
        total = self.steps_per_epoch * engine.epochs
        self.total_steps = min(total, engine.max_steps) if engine.max_steps else total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(
                step, self.total_steps, engine.lr_warmup_steps, engine.lr_min_ratio
            ),
        )
        self.state = TrainState()
        # The epoch's posterior means so far, for the live active-units count.
        self.epoch_latent = LatentStatistics(engine.latent_dim, self.device, keep_mi_rows=False)
        # Var_x E_q[z_d] on the validation items at the last validation.
        self.latent_variance: list[float] | None = None

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
        init: str | Path | None = None,
    ) -> Trainer:
        """A new run on ``data``; with ``init`` (a run directory, or a domain name for its bundled
        model) a fine-tune of that run: its weights, vocabulary and recipe, on the new data."""
        if data is None:
            raise UserError("no training data: pass --data PATH")
        start = FineTuneStart.of(domain, init, overrides) if init is not None else None
        config = domain.resolve_config(overrides) if start is None else start.config
        engine = EngineConfig.from_mapping(config)
        training_device(resolve_device(engine.device), place)  # refused before any work
        use_threads(engine.threads)
        # Rank 0 names the folder (the default holds the time) and checks that it is free.
        run = RunDir(place.broadcast(str(out or default_run_dir(domain.name))))
        taken = run.exists() or (run.path.is_dir() and any(run.path.iterdir()))
        if place.broadcast(taken):
            raise UserError(
                f"{run.path} already holds files; resume it with --resume or pick --out"
            )
        check_property_names(domain, engine)
        items, report = training_items(domain, data, config)
        seed_everything(engine.seed)
        items, condition, predict = fit_properties(domain, items, engine, report, log)
        if start is not None:
            condition, predict = start.source.condition, start.source.predict
        with removed_on_failure(run, place):
            if place.is_main:
                run.path.mkdir(parents=True, exist_ok=True)
                if start is None:
                    codec = domain.fit_codec(items, config)
                else:
                    codec = domain.adapt_codec(start.source.codec, items, config)
                run.codec_dir.mkdir(exist_ok=True)
                codec.save(run.codec_dir)
            with tempfile.TemporaryDirectory(prefix="polyvae-codec-") as scratch:
                # The other ranks load rank 0's codec, sent over the process group.
                shared = share_folder(place, run.codec_dir, Path(scratch))
                if not place.is_main:
                    codec = domain.load_codec(shared, config)
            encoded: Batch | None = None
            if start is not None:
                # A fine-tune keeps the run's vocabulary: items it cannot write are skipped.
                items, encoded = encodable_items(domain, codec, items, report)
            if place.is_main:
                if report.skipped:
                    atomic_write_text(run.read_report_path, "\n".join(report.log_lines()) + "\n")
                    log(f"{report.summary()} (details in {run.read_report_path})")
                else:
                    log(report.summary())
            meta: dict[str, Any] = {
                "format": RUN_FORMAT,
                "format_version": RUN_FORMAT_VERSION,
                "domain": domain.name,
                "versions": versions_record(domain),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "config": config,
                "data": {
                    "source": source_name(data),
                    "items": len(items),
                    "read": report.to_dict(),
                },
                "condition": condition.to_dict() if condition else None,
                "predict": predict.to_dict() if predict else None,
                "status": "training",
                "summary": {},
            }
            if start is not None:
                meta["init"] = start.record
            trainer = cls(
                domain,
                run,
                config,
                meta,
                items,
                codec,
                condition,
                predict,
                log,
                place,
                encoded,
            )
            if start is not None:
                trainer.vae.load_state_dict(start.weights)
                log(f"starting from the weights of {start.source.run.path}")
            meta["data"].update(
                train=len(trainer.data.train_index), val=len(trainer.data.val_index)
            )
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
        engine = EngineConfig.from_mapping(config)
        use_threads(engine.threads)
        source = data if data is not None else loaded.meta["data"]["source"]
        if source == IN_MEMORY:
            raise UserError(f"{path} was trained on in-memory items: pass them again to resume")
        items, _ = training_items(domain, source, config)
        items, _, _ = fit_properties(domain, items, engine, None, log)
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
        engine = self.engine
        status = "complete"
        self.started = time.monotonic()
        lock = self.run.lock() if self.place.is_main else contextlib.nullcontext()
        with lock, self._stop_on_signals():
            self.meta["status"] = "training"
            self._write_meta()
            while self.state.epoch < engine.epochs and not self._out_of_steps():
                status = self._train_epoch()
                if status != "epoch_done":
                    break
                record = self._end_epoch()
                for callback in self.callbacks:
                    callback.on_epoch_end(self, record)
                if self._should_stop_early():
                    status = "early_stopped"
                    self.log(
                        f"stopping early: no better validation {self.state.selected_by} for "
                        f"{engine.patience} epochs"
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
        state = self.state
        by_reconstruction = state.selected_by == "reconstruction"
        return TrainResult(
            self.run.path,
            status,
            state.epoch,
            state.step,
            state.best_val_elbo,
            state.best_epoch,
            state.best_in_warmup,
            state.selected_by,
            -state.best_score if by_reconstruction and math.isfinite(state.best_score) else None,
        )

    def fit_prior(self) -> None:
        """Fit the configured prior to the codes of the training items under the best weights
        (``fit_prior``), so that sampling draws from where the codes are."""
        kind = self.engine.fit_prior
        if kind == "none":
            return
        train_items = [self.data.items[i] for i in self.data.train_index.tolist()]
        if len(train_items) < MIN_PRIOR_ITEMS:
            self.log(f"no prior fitted: {len(train_items)} training items are too few")
            return
        model = Model(open_run(self.run.path, self.domain), device=str(self.device))
        record = fit_model_prior(
            model, train_items, kind, self.engine.prior_components, seed=self.engine.seed
        )
        self.log(describe_fit(kind, record))

    def _weights_finite(self) -> bool:
        checks = [torch.isfinite(parameter).all() for parameter in self.vae.parameters()]
        return bool(torch.stack(checks).all())  # one device sync a step, not one a tensor

    def _train_epoch(self) -> str:
        """Run the rest of the current epoch; 'epoch_done', 'interrupted' or 'diverged'."""
        state = self.state
        batches = self.data.epoch_batches(state.epoch)
        self.data.start_epoch(state.epoch, batches)
        self.vae.train()
        for callback in self.callbacks:
            callback.on_epoch_begin(self, len(batches))
        started = time.perf_counter()
        try:
            for index in batches[state.step_in_epoch :]:
                if self._out_of_steps():
                    break
                logs = self._train_step(index)
                state.step_in_epoch += 1
                if logs is None:
                    state.bad_steps += 1
                    for callback in self.callbacks:
                        callback.on_step_skipped(self)
                    if state.bad_steps >= MAX_BAD_STEPS:
                        self.log(
                            f"stopping: {MAX_BAD_STEPS} steps in a row gave a non-finite loss "
                            "(lower lr or raise grad_clip); the last good checkpoint is kept"
                        )
                        return "diverged"
                    continue
                state.bad_steps = 0
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
                    return "interrupted"
            return "epoch_done"
        finally:
            state.seconds += time.perf_counter() - started

    def _train_step(self, index: torch.Tensor) -> dict[str, float] | None:
        engine, state, data = self.engine, self.state, self.data
        beta = self._beta()
        with fast_autocast(self.device, engine.precision):
            terms: Terms = self.forward(data.batch(index), data.condition(index))
        loss = training_loss(
            terms,
            beta,
            engine.free_bits,
            data.predict_target(index),
            engine.property_weight,
        )
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        # Ranks skip a step together: a backward pass on some ranks only would hang DDP.
        if self.place.any(not bool(torch.isfinite(loss.total)), self.device):
            self._skip_scheduler_step()
            return None
        loss.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.vae.parameters(), engine.grad_clip if engine.grad_clip > 0 else math.inf
        )
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._skip_scheduler_step()
            return None
        self.optimizer.step()
        self.scheduler.step()
        if engine.kl_target:
            self._control_beta(loss.kl)
        logs = {
            "loss": loss.total.item(),
            "recon": loss.recon.item(),
            "kl": loss.kl.item(),
            "property_loss": loss.property.item(),
            "grad_norm": float(grad_norm),
        }
        if loss.auxiliary is not None:
            logs["auxiliary_loss"] = loss.auxiliary.item()
        items = len(index)
        sums = state.epoch_sums
        for name, value in logs.items():
            sums[name] = sums.get(name, 0.0) + value * items
        sums["items"] = sums.get("items", 0.0) + items
        sums["beta"] = beta
        self.epoch_latent.add_posterior(terms.mu, terms.logvar)
        del logs["property_loss"]
        logs.pop("auxiliary_loss", None)
        return logs | {"beta": beta}

    def _beta(self) -> float:
        """This step's KL weight: the controller's under ``kl_target``, else the schedule's."""
        if not self.engine.kl_target:
            return beta_at(self.state.step, self.total_steps, self.engine)
        if self.state.beta is None:
            self.state.kl_integral = initial_kl_integral(self.engine)
            self.state.beta = math.exp(self.state.kl_integral)
        return self.state.beta

    def _control_beta(self, kl: torch.Tensor) -> None:
        """Move beta toward holding the KL at ``kl_target``, from the step's KL averaged over
        all ranks so that every rank keeps the same beta."""
        mean_kl = self.place.sum_(kl.detach().double().reshape(1)) / self.world_size
        assert self.state.kl_integral is not None
        self.state.beta, self.state.kl_integral = controlled_beta(
            self.state.kl_integral, float(mean_kl), self.engine.kl_target
        )

    def _skip_scheduler_step(self) -> None:
        """Keep the schedule in step past a skipped step, without PyTorch's warning about a
        scheduler step before any optimizer step (a skipped first step is just that)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
            self.scheduler.step()

    def running_postfix(self) -> dict[str, str]:
        """The epoch's running numbers, for the progress bar."""
        sums = self.state.epoch_sums
        items = max(sums.get("items", 0.0), 1.0)
        return {
            "loss": f"{sums.get('loss', 0.0) / items:.3f}",
            "recon": f"{sums.get('recon', 0.0) / items:.3f}",
            "kl": f"{sums.get('kl', 0.0) / items:.2f}",
            "beta": f"{sums.get('beta', 0.0):.3f}",
            "au": str(self.epoch_latent.active_units()),
        }

    def _end_epoch(self) -> dict[str, Any]:
        state = self.state
        if self.place.enabled:
            # The epoch's numbers over all ranks' items.
            state.epoch_sums = self._rank_sums()
            self.epoch_latent.reduce(self.place)
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
            "active_units": self.epoch_latent.active_units(),
        }
        if self.engine.kl_target:
            record["kl_target"] = self.engine.kl_target
        if self.data.predict_values is not None:
            record["property_loss"] = sums.get("property_loss", math.nan) / items
        if "auxiliary_loss" in sums:
            record["auxiliary_loss"] = sums["auxiliary_loss"] / items
        record.update({f"val_{key}": value for key, value in self.validate().items()})
        record["items_per_second"] = sums.get("items", 0.0) / max(state.seconds, 1e-9)
        record["seconds"] = state.seconds
        state.epoch += 1
        state.step_in_epoch = 0
        state.epoch_sums = {}
        state.seconds = 0.0
        self.epoch_latent = LatentStatistics(
            self.engine.latent_dim, self.device, keep_mi_rows=False
        )
        selected_by, score = self._selection_score(record)
        if selected_by != state.selected_by:
            # A checkpoint from before selection under kl_target compared ELBOs; their scale is
            # not the reconstruction's, so comparing starts afresh with this epoch.
            if math.isfinite(state.best_score):
                self.log(f"choosing the best weights by {selected_by} from epoch {state.epoch} on")
            state.selected_by, state.best_score = selected_by, -math.inf
        # While beta still rises the ELBO falls as the latent comes into use, so during warm-up
        # the latest weights are kept and model selection and early stopping wait.
        warming = self._beta_warming_up()
        improved = warming or state.best_in_warmup or score > state.best_score
        if improved:
            state.best_score, state.best_epoch = score, state.epoch
            state.best_val_elbo = record.get("val_elbo", -record["loss"])
            state.best_in_warmup = warming
            state.epochs_without_improvement = 0
            if self.rank == 0:
                save_tensors(self.run.weights_path, self.vae.state_dict())
            # Var_x E_q[z_d] of the best weights: which dimensions carry information.
            self.meta["latent_variance"] = self.latent_variance
        else:
            state.epochs_without_improvement += 1
        if self.rank == 0:
            self.run.append_metrics(record)
        self._save_checkpoint()
        self.meta["summary"] = {
            "epochs": state.epoch,
            "steps": state.step,
            "best_epoch": state.best_epoch,
            "best_val_elbo": state.best_val_elbo,
            "selected_by": state.selected_by,
            # True: the run ended in the KL warm-up, so its best is the latest epoch, uncompared.
            "best_in_warmup": state.best_in_warmup,
            "last": {key: value for key, value in record.items() if key != "epoch"},
        }
        self._write_meta()
        return record

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """True ELBO (beta 1, no free bits), KL, active units and MI on the validation items,
        with fixed noise so epochs compare fairly and training's RNG stream is untouched. Under
        DDP each rank scores its share and the sums are added, so that model selection and
        early stopping agree. Past the MI estimate's items (the first, in random order) the
        batches are sorted by length, which only changes how little they pad."""
        val_index = self.data.val_index
        if len(val_index) == 0:
            return {}
        self.vae.eval()
        statistics = LatentStatistics(self.engine.latent_dim, self.device)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(rank_seed(self.engine.seed, self.rank))
            for index in self.data.validation_batches(keep_order=MI_ITEMS):
                with fast_autocast(self.device, self.engine.precision):
                    statistics.add(self.vae(self.data.batch(index), self.data.condition(index)))
            statistics.reduce(self.place)
            results = statistics.results()
        variance = statistics.latent_variance()
        self.vae.train()
        # Every rank has the same sums, but its own noise for the MI estimate: rank 0's counts.
        results, self.latent_variance = self.place.broadcast(
            (results, None if variance is None else variance.tolist())
        )
        return results

    def _rank_sums(self) -> dict[str, float]:
        """The epoch's running sums added over all ranks (a copy; the ranks' own stay)."""
        sums = dict(self.state.epoch_sums)
        keys = [key for key in RANK_SUMS if key in sums]
        if keys:  # the same keys on every rank: the ranks skip steps together
            values = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.device)
            self.place.sum_(values)
            sums.update(zip(keys, values.tolist(), strict=True))
        return sums

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
            "batch_size_per_process": self.engine.batch_size,
            "weights_sha256_per_rank": hashes,
        }

    # --- checkpoints ---------------------------------------------------------------------------

    def _save_checkpoint(self) -> None:
        """Rank 0 writes the checkpoint, with the running sums over all ranks and every rank's
        RNG state gathered from the others (all ranks call this)."""
        tensors = rng_tensors(self.device)
        epoch_sums, latent = self.state.epoch_sums, self.epoch_latent
        if self.place.enabled:
            ranks = self.place.gather(tensors)
            for rank, states in enumerate(ranks[1:], start=1):
                tensors.update({f"{name}.rank{rank}": tensor for name, tensor in states.items()})
            epoch_sums = self._rank_sums()
            latent = LatentStatistics(self.engine.latent_dim, self.device, keep_mi_rows=False)
            latent.mu_sum.copy_(self.epoch_latent.mu_sum)
            latent.mu_sq_sum.copy_(self.epoch_latent.mu_sq_sum)
            latent.reduce(self.place)
        if not self.place.is_main:
            return
        tensors |= {"epoch.mu_sum": latent.mu_sum, "epoch.mu_sq_sum": latent.mu_sq_sum}
        state = dataclasses.replace(self.state, epoch_sums=epoch_sums)
        save_checkpoint(
            self.run, self.vae, self.optimizer, self.scheduler, state, self.world_size, tensors
        )

    def _load_checkpoint(self) -> None:
        checkpoint = load_checkpoint(self.run, self.vae, self.optimizer, self.scheduler)
        self.state = checkpoint.state
        if checkpoint.world_size != self.world_size and self.state.step_in_epoch:
            raise UserError(
                f"{self.run.path} was checkpointed in the middle of an epoch by "
                f"{checkpoint.world_size} processes; resume it with {checkpoint.world_size} "
                f"(--nproc {checkpoint.world_size})"
            )
        restore_rng(
            checkpoint,
            self.rank,
            self.device,
            rank_seed(self.engine.seed, self.rank) + self.state.step,
        )
        if self.place.is_main:  # the checkpoint holds the sums over all ranks
            latent = self.epoch_latent
            latent.mu_sum.copy_(checkpoint.tensors["epoch.mu_sum"])
            latent.mu_sq_sum.copy_(checkpoint.tensors["epoch.mu_sq_sum"])
            latent.totals[2] = self.state.epoch_sums.get("items", 0.0)
        else:
            self.state.epoch_sums = {}

    # --- stop control --------------------------------------------------------------------------

    def _beta_warming_up(self) -> bool:
        if self.engine.kl_target:
            return False
        schedule = self.engine.beta_schedule
        warmup = self.engine.beta_warmup_steps
        return schedule in ("linear", "logistic") and self.state.step < warmup

    def _out_of_steps(self) -> bool:
        """Past max_steps or the time limit: the current epoch ends early and the run ends."""
        if self.engine.max_steps and self.state.step >= self.engine.max_steps:
            return True
        limit = self.engine.time_limit * 60
        if not limit:
            return False
        # Every rank ends at the same step, or DDP would wait for the ones still training.
        return self.place.any(time.monotonic() - self.started > limit, self.device)

    def _selection_score(self, record: Mapping[str, float]) -> tuple[str, float]:
        """What picks the best weights and drives early stopping, and this epoch's score (higher
        is better): the validation ELBO, or under ``kl_target`` the validation reconstruction
        term. The controller holds the rate, so the ELBO there moves with the KL's swings around
        the target (several nats between epochs) more than with the model, and could keep an
        early epoch or stop a run that still improves."""
        if self.engine.kl_target:
            return "reconstruction", -record.get("val_recon", record["recon"])
        return "elbo", record.get("val_elbo", -record["loss"])

    def _should_stop_early(self) -> bool:
        patience = self.engine.patience
        return bool(patience) and self.state.epochs_without_improvement >= patience

    def _write_meta(self) -> None:
        if self.rank == 0:
            self.run.write_meta(self.meta)

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
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
