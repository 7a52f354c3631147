"""TensorBoard logging of training (``polyvae train --tensorboard``): event files in the run's
``tensorboard/`` folder, written beside metrics.jsonl, which is always written.

``polyvae.train(..., callbacks=[TensorBoardLogger()])`` does the same from Python; view the curves
with ``tensorboard --logdir runs/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from polyvae.callbacks import Callback
from polyvae.errors import UserError

if TYPE_CHECKING:
    from polyvae.trainer import Trainer

MISSING_PACKAGE = "--tensorboard needs the tensorboard package: pip install tensorboard"
# Epoch-record keys that describe the latent rather than a loss; they go under "latent/".
LATENT_KEYS = {"active_units", "val_active_units", "val_mutual_info"}
# Epoch-record keys that are the x-axis, not a measurement.
AXIS_KEYS = {"epoch", "step"}


def epoch_tag(key: str) -> str:
    """The TensorBoard tag of an epoch-record key: ``loss`` -> ``train/loss``, ``val_elbo`` ->
    ``val/elbo``, ``active_units`` -> ``latent/active_units``."""
    if key in LATENT_KEYS:
        return f"latent/{key}"
    if key.startswith("val_"):
        return f"val/{key.removeprefix('val_')}"
    return f"train/{key}"


class TensorBoardLogger(Callback):
    """Logs the step's loss, reconstruction, KL and beta every ``every_steps`` optimizer steps
    (tags ``step/...``) and every number of each epoch record once per epoch (see
    :func:`epoch_tag`), both against the global step, from the rank that writes files only."""

    def __init__(self, every_steps: int = 10) -> None:
        if every_steps < 1:
            raise UserError(f"every_steps must be at least 1, not {every_steps}")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises it when the tensorboard package is missing
            raise UserError(MISSING_PACKAGE) from None
        self.summary_writer = SummaryWriter
        self.every_steps = every_steps
        self.writer: Any = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if not trainer.place.is_main:
            return
        resumed_at = trainer.state.step
        # Steps logged after the checkpoint we resume from are run again: hide the old ones.
        self.writer = self.summary_writer(
            log_dir=str(trainer.run.tensorboard_dir),
            purge_step=resumed_at + 1 if resumed_at else None,
        )

    def on_step_end(self, trainer: Trainer, logs: Mapping[str, float]) -> None:
        if self.writer is None or trainer.state.step % self.every_steps:
            return
        for key, value in logs.items():
            self.writer.add_scalar(f"step/{key}", value, trainer.state.step)

    def on_epoch_end(self, trainer: Trainer, record: Mapping[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if key in AXIS_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):  # a NaN (no property head, say) would only draw a gap
                self.writer.add_scalar(epoch_tag(key), value, record["step"])
        self.writer.flush()  # a TensorBoard watching the run sees each epoch as it ends

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
