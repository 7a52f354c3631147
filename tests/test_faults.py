"""Faults during training: a non-finite loss skips its step, a run of them stops the run as
"diverged" with the last good weights kept, and so do weights that turn non-finite; loss and
gradient-norm spikes are logged. (SIGINT and SIGTERM: tests/test_train.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from polyvae_gaussmix import GaussianDecoder, mixture

import polyvae
from polyvae.callbacks import Callback
from polyvae.cli import build_cli
from polyvae.files import load_tensors
from polyvae.trainer import MAX_BAD_STEPS

FAST = {"batch_size": 16, "latent_dim": 3, "hidden": 16, "threads": 1, "lr_warmup_steps": 5}
STEPS_PER_EPOCH = 18  # 320 items, 32 held out, batches of 16


@pytest.fixture
def faulty_steps(monkeypatch):
    """{training step: what its log-likelihood becomes}. Validation and sampling stay clean."""
    faults: dict[int, float] = {}
    calls = {"training": 0}
    clean_log_prob = GaussianDecoder.log_prob

    def log_prob(self, batch, z):
        value = clean_log_prob(self, batch, z)
        if not self.training:
            return value
        calls["training"] += 1
        fault = faults.get(calls["training"])
        return value if fault is None else value * fault

    monkeypatch.setattr(GaussianDecoder, "log_prob", log_prob)
    return faults


class WeightsAt(Callback):
    """The model's weights right after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step, self.weights = step, None

    def on_step_end(self, trainer, logs) -> None:
        if trainer.state.step == self.step:
            self.weights = {k: v.clone() for k, v in trainer.vae.state_dict().items()}


def train_logged(tmp_path, config, callbacks=()):
    messages: list[str] = []
    result = polyvae.train(
        "gaussmix",
        data=list(mixture(320)),
        config=FAST | config,
        out=tmp_path / "run",
        progress=False,
        callbacks=callbacks,
        log=messages.append,
    )
    return result, messages


def all_finite(path) -> bool:
    return all(torch.isfinite(tensor).all() for tensor in load_tensors(path).values())


def test_a_non_finite_loss_skips_its_step_and_says_so(tmp_path, registry, faulty_steps):
    faulty_steps.update({3: float("nan"), 5: float("inf")})
    result, messages = train_logged(tmp_path, {"epochs": 1})
    assert result.status == "complete" and result.steps == STEPS_PER_EPOCH
    assert "step 3: non-finite loss or gradient; step skipped" in messages
    # Step 5 is as bad, but one line per QUIET_STEPS is enough to say what happens.
    assert not any(message.startswith("step 5:") for message in messages)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert all(
        isinstance(record[key], float) and torch.isfinite(torch.tensor(record[key]))
        for key in ("loss", "recon", "kl", "grad_norm", "val_elbo")
    )
    assert all_finite(tmp_path / "run" / "model.safetensors")


def test_a_run_of_non_finite_losses_stops_as_diverged_keeping_the_last_good_weights(
    tmp_path, registry, faulty_steps
):
    first_bad = STEPS_PER_EPOCH + 7  # in the second epoch, after a checkpoint
    faulty_steps.update({step: float("nan") for step in range(first_bad, 1000)})
    last_good = WeightsAt(first_bad - 1)
    result, messages = train_logged(tmp_path, {"epochs": 4}, callbacks=[last_good])
    assert result.status == "diverged"
    assert result.steps == first_bad - 1 + MAX_BAD_STEPS
    assert (
        f"stopping: {MAX_BAD_STEPS} steps in a row gave a non-finite loss (lower lr or raise "
        "grad_clip); the last good checkpoint is kept"
    ) in messages
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "diverged"
    # Skipped steps leave the weights alone: the checkpoint of epoch 2, taken amid the bad
    # steps, holds the weights of the last good step, and nothing saved is NaN.
    assert json.loads((run_dir / "checkpoint" / "state.json").read_text())["train"]["epoch"] == 2
    saved = load_tensors(run_dir / "checkpoint" / "model.safetensors")
    assert all(torch.equal(saved[key], last_good.weights[key]) for key in saved)
    assert all_finite(run_dir / "model.safetensors")
    polyvae.load(run_dir).sample(3, seed=0)  # the kept weights still work


class PoisonWeights(Callback):
    """A step with a finite loss that still leaves NaN in the weights (an overflowing update)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, logs) -> None:
        if trainer.state.step == self.step:
            with torch.no_grad():
                next(trainer.vae.parameters()).fill_(float("nan"))


def test_nan_weights_from_a_finite_loss_never_replace_the_last_good_checkpoint(tmp_path, registry):
    result, messages = train_logged(
        tmp_path, {"epochs": 4}, callbacks=[PoisonWeights(STEPS_PER_EPOCH + 3)]
    )
    assert result.status == "diverged" and result.epochs == 1
    stop = f"the weights became non-finite at step {STEPS_PER_EPOCH + 3}"
    assert any(stop in message for message in messages)
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "checkpoint" / "state.json").read_text())["train"]["epoch"] == 1
    assert all_finite(run_dir / "checkpoint" / "model.safetensors")
    assert all_finite(run_dir / "model.safetensors")


# A skipped first step must not surface PyTorch's warning about the scheduler stepping first.
@pytest.mark.filterwarnings("error::UserWarning")
def test_the_cli_reports_divergence_with_status_1(tmp_path, registry, faulty_steps):
    faulty_steps.update({step: float("nan") for step in range(1, 1000)})
    data = tmp_path / "data.csv"
    data.write_text("".join(",".join(map(str, row)) + "\n" for row in mixture(320)))
    args = ["train", "gaussmix", "--data", data, "--out", tmp_path / "run", "--epochs", 3]
    args += [f"--set={key}={value}" for key, value in FAST.items()]
    result = CliRunner().invoke(build_cli(), [str(arg) for arg in args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"stopping: {MAX_BAD_STEPS} steps in a row gave a non-finite loss" in result.output
    # The first epoch (18 steps, all skipped) ended; the second stopped at its second step.
    assert f"diverged: 1 epoch, {MAX_BAD_STEPS} steps" in result.output


def test_loss_and_gradient_spikes_are_logged_once_each(tmp_path, registry, faulty_steps):
    faulty_steps.update({30: 1000.0, 31: 1000.0})  # two steps a thousand times worse
    result, messages = train_logged(tmp_path, {"epochs": 2})
    assert result.status == "complete"
    spikes = [message for message in messages if "spike" in message]
    assert [message.split(":")[0] for message in spikes] == [
        "loss spike at step 30",
        "grad norm spike at step 30",
    ], spikes
    assert "against a median of" in spikes[0] and "over the last 29 steps" in spikes[0]
