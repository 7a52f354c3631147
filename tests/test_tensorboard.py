"""`polyvae train --tensorboard`: event files with every epoch number, continued on resume."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from polyvae_gaussmix import mixture

import polyvae
from polyvae.callbacks import Callback
from polyvae.cli import build_cli
from polyvae.tensorboard import TensorBoardLogger, epoch_tag

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is not installed (pip install tensorboard)",
)

# 1,200 items: the 120 validation items are enough for a mutual-information estimate (100).
TINY = ["--set=batch_size=64", "--set=latent_dim=3", "--set=max_items=1200", "--quiet"]


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a run's event files: (step, value) in order."""
    events = event_accumulator.EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={event_accumulator.SCALARS: 0}
    )
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def epoch_records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_logs_every_epoch_number_and_the_steps(tmp_path, registry, mixture_csv):
    run_dir = tmp_path / "run"
    args = ["train", "gaussmix", "--data", mixture_csv, "--out", run_dir, "--epochs", 3]
    result = CliRunner().invoke(build_cli(), [*map(str, args), "--tensorboard", *TINY])
    assert result.exit_code == 0, result.output

    logged = scalars(run_dir)
    records = epoch_records(run_dir)  # metrics.jsonl is written as always
    assert {"train/loss", "train/kl", "val/elbo", "val/kl", "latent/active_units"} <= set(logged)
    assert {"latent/val_active_units", "latent/val_mutual_info", "train/lr"} <= set(logged)
    numeric = [key for key, value in records[0].items() if key not in ("epoch", "step")]
    assert {epoch_tag(key) for key in numeric} <= set(logged)
    for key in numeric:  # one value per epoch, at the step the epoch ended
        expected = [(record["step"], record[key]) for record in records]
        assert [step for step, _ in logged[epoch_tag(key)]] == [step for step, _ in expected]
        assert [value for _, value in logged[epoch_tag(key)]] == pytest.approx(
            [value for _, value in expected], rel=1e-5, abs=1e-6
        )
    # Step losses every 10 optimizer steps.
    last_step = records[-1]["step"]
    assert [step for step, _ in logged["step/loss"]] == list(range(10, last_step + 1, 10))
    assert {"step/recon", "step/kl", "step/beta"} <= set(logged)


class CrashAt(Callback):
    """Fails in the middle of training, as a crash would, after the first epoch's checkpoint."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, logs) -> None:
        if trainer.state.step == self.step:
            raise RuntimeError("simulated crash")


def test_resume_after_a_crash_hides_the_steps_logged_past_the_checkpoint(tmp_path, registry):
    data = list(mixture(400, seed=1))
    config = {"epochs": 2, "batch_size": 32, "latent_dim": 3}
    logger = TensorBoardLogger(every_steps=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        polyvae.train(
            "gaussmix",
            data=data,
            config=config,
            out=tmp_path / "run",
            progress=False,
            callbacks=[logger, CrashAt(15)],
            log=print,
        )
    assert logger.writer is None  # closed, its events on disk, although training failed
    first_epoch_end = epoch_records(tmp_path / "run")[0]["step"]
    assert first_epoch_end < 15
    assert [step for step, _ in scalars(tmp_path / "run")["step/loss"]][-1] == 15

    resumed = polyvae.train(
        "gaussmix",
        data=data,
        resume=tmp_path / "run",
        progress=False,
        callbacks=[TensorBoardLogger(every_steps=1)],
        log=print,
    )
    logged = scalars(tmp_path / "run")
    # Steps after the checkpoint were logged twice; TensorBoard shows only the resumed ones.
    assert [step for step, _ in logged["step/loss"]] == list(range(1, resumed.steps + 1))
    assert len(logged["val/elbo"]) == 2


def test_missing_tensorboard_is_one_line_before_any_work(tmp_path, registry, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    args = ["train", "gaussmix", "--data", "missing.csv", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(build_cli(), [*args, "--tensorboard"])
    assert result.exit_code == 2
    assert result.output == (
        "Error: --tensorboard needs the tensorboard package: pip install tensorboard\n"
    )
    assert not (tmp_path / "run").exists()


def test_nproc_passes_tensorboard_to_the_workers(tmp_path, registry, mixture_csv, monkeypatch):
    launched = []

    def fake_launch(nproc, argv):
        launched.append((nproc, argv))
        return 0

    monkeypatch.setattr("polyvae.distributed.launch", fake_launch)
    args = ["train", "gaussmix", "--data", str(mixture_csv), "--nproc", "2", "--tensorboard"]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 0, result.output
    [(nproc, argv)] = launched
    assert nproc == 2 and "--tensorboard" in argv
