"""Training callbacks: hooks into the loop, and the built-in ones that show what training does
(the progress bar, the epoch line, the loss-spike and non-finite-step monitor). TensorBoard
logging is one too (``polyvae.tensorboard``). The trainer itself only steps, validates, selects
and stops."""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

if TYPE_CHECKING:
    from polyvae.trainer import Trainer

# A step whose loss or gradient norm rises above its median over the last SPIKE_WINDOW steps by
# more than SPIKE_FACTOR times that median's size is logged as a spike (the loss can be negative,
# so not "a multiple of the median"); at most one line of each kind every QUIET_STEPS steps.
SPIKE_WINDOW = 50
SPIKE_FACTOR = 10.0
QUIET_STEPS = 100
# The numbers of an epoch record the epoch line shows, in order.
EPOCH_LINE_KEYS = (
    "loss",
    "recon",
    "kl",
    "beta",
    "active_units",
    "val_elbo",
    "val_kl",
    "val_active_units",
)


class Callback:
    """Hooks into the loop; ``trainer.request_stop()`` ends it cleanly with a checkpoint. Every
    rank calls them; ``trainer.place.is_main`` is true on the one that writes files."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first step; ``trainer.state`` is the resumed one when resuming."""

    def on_epoch_begin(self, trainer: Trainer, batches: int) -> None:
        """Before an epoch's first remaining step; it has ``batches`` steps in all."""

    def on_step_end(self, trainer: Trainer, logs: Mapping[str, float]) -> None:
        """After an optimizer step, with its loss, recon, kl, beta and grad_norm."""

    def on_step_skipped(self, trainer: Trainer) -> None:
        """After a step skipped for a non-finite loss or gradient."""

    def on_epoch_end(self, trainer: Trainer, record: Mapping[str, Any]) -> None:
        """After validation, with the epoch's line of metrics.jsonl."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last step, however training ended (also on an error or a second Ctrl-C);
        ``trainer.meta["status"]`` says how."""


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss, reconstruction, KL, beta and active units."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_epoch_begin(self, trainer: Trainer, batches: int) -> None:
        self.bar = tqdm(
            total=batches,
            initial=trainer.state.step_in_epoch,
            desc=f"epoch {trainer.state.epoch + 1}/{trainer.engine.epochs}",
            leave=False,
            dynamic_ncols=True,
        )

    def on_step_end(self, trainer: Trainer, logs: Mapping[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(trainer.running_postfix(), refresh=False)

    def on_epoch_end(self, trainer: Trainer, record: Mapping[str, Any]) -> None:
        self._close()

    def on_train_end(self, trainer: Trainer) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochLine(Callback):
    """One line per epoch: its loss terms and the validation ELBO, KL and active units."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log

    def on_epoch_end(self, trainer: Trainer, record: Mapping[str, Any]) -> None:
        self.log(format_record(record))


class StepMonitor(Callback):
    """Logs loss and gradient-norm spikes against the recent steps (see SPIKE_FACTOR) and
    skipped non-finite steps, each kind at most once every QUIET_STEPS steps."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        # Logging only: neither the window nor the last lines are checkpointed.
        self.recent: dict[str, deque[float]] = {
            name: deque(maxlen=SPIKE_WINDOW) for name in ("loss", "grad_norm")
        }
        self.last_logged: dict[str, int] = {}

    def on_step_end(self, trainer: Trainer, logs: Mapping[str, float]) -> None:
        step = trainer.state.step
        for name in ("loss", "grad_norm"):
            value, recent = logs[name], self.recent[name]
            if len(recent) >= SPIKE_WINDOW // 5:
                median = statistics.median(recent)
                if value - median > SPIKE_FACTOR * max(abs(median), 1e-12):
                    self._rarely(
                        name,
                        step,
                        f"{name.replace('_', ' ')} spike at step {step}: {value:.4g}, "
                        f"against a median of {median:.4g} over the last {len(recent)} steps",
                    )
            recent.append(value)

    def on_step_skipped(self, trainer: Trainer) -> None:
        step = trainer.state.step
        self._rarely("skipped", step, f"step {step}: non-finite loss or gradient; step skipped")

    def _rarely(self, kind: str, step: int, message: str) -> None:
        last = self.last_logged.get(kind)
        if last is None or step - last >= QUIET_STEPS:
            self.last_logged[kind] = step
            self.log(message)


def format_record(record: Mapping[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}"]
    for key in EPOCH_LINE_KEYS:
        if key in record:
            value = record[key]
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " | ".join(parts)
