"""Long commands say how far they are (a Progress hook the CLI draws with tqdm), and what their
numbers mean: a best epoch picked in the KL warm-up, a mutual information too few items
support (issue 17 items 3, 5 and 9)."""

from __future__ import annotations

import io
import json
import math
import time

import pytest
import torch
from click.testing import CliRunner

import polyvae
from polyvae.cli import build_cli
from polyvae.cli import progress as progress_module
from polyvae.cli.progress import progress_bars
from polyvae.registry import get_domain
from polyvae.vae import MI_MIN_ITEMS, mutual_information


@pytest.fixture
def trained_run(tmp_path, registry, mixture_csv):
    config = {"epochs": 1, "batch_size": 64, "latent_dim": 3, "max_items": 600}
    result = polyvae.train(
        "gaussmix", data=mixture_csv, config=config, out=tmp_path / "run", progress=False
    )
    return result.run_dir


def invoke(*args):
    return CliRunner().invoke(build_cli(), [str(arg) for arg in args], catch_exceptions=False)


def test_evaluate_and_score_tell_the_progress_hook_each_stage(trained_run):
    model = polyvae.load(trained_run)
    items = model.data_splits()[1]
    calls = []

    def record(stage, done, total, **numbers):
        calls.append((stage, done, total, numbers))

    model.evaluate(items, k=2, samples=30, progress=record)
    stages = list(dict.fromkeys(stage for stage, *_ in calls))
    assert stages == ["likelihood", "reconstruction", "sampling", "sample metrics (gaussmix)"]
    last = {stage: (done, total, numbers) for stage, done, total, numbers in calls}
    assert last["likelihood"][:2] == (len(items), len(items))
    assert set(last["likelihood"][2]) == {"elbo", "iwae_nll"}
    assert last["reconstruction"][:2] == (len(items), len(items))
    assert last["sampling"] == (30, 30, {"kept": 30})

    calls.clear()
    model.score(items, progress=record)
    assert calls[-1][:3] == ("scoring", len(items), len(items)) and "mean_score" in calls[-1][3]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_draw_on_a_terminal_only_and_not_when_quiet(monkeypatch):
    monkeypatch.setattr(progress_module, "BAR_DELAY", 0)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with progress_bars(quiet=True) as progress:
        assert progress is None
    with progress_bars(quiet=False) as progress:
        progress("likelihood", 5, 10, elbo=-3.25)
        time.sleep(0.15)  # past tqdm's shortest interval between redraws
        progress("likelihood", 10, 10, elbo=-3.5)
    assert "likelihood" in terminal.getvalue() and "elbo=-3.5" in terminal.getvalue()
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a pipe or a log file
    with progress_bars(quiet=False) as progress:
        assert progress is None


@pytest.mark.parametrize("command", ["evaluate", "score", "report", "sample"])
def test_long_commands_take_quiet(command):
    assert "--quiet" in invoke(command, "--help").output


def test_the_help_names_the_images_evaluate_defaults():
    domain = get_domain("images")
    help_text = " ".join(invoke("evaluate", "--help").output.split())
    assert f"images {domain.importance_samples}," in help_text
    assert f"images {domain.likelihood_items})" in help_text


def test_mutual_information_is_nan_under_its_minimum_item_count():
    torch.manual_seed(0)
    mu, logvar = torch.randn(MI_MIN_ITEMS, 4), torch.full((MI_MIN_ITEMS, 4), -2.0)
    assert math.isnan(mutual_information(mu[:10], logvar[:10]))
    assert math.isnan(mutual_information(mu[: MI_MIN_ITEMS - 1], logvar[: MI_MIN_ITEMS - 1]))
    assert 0 < mutual_information(mu, logvar) <= math.log(MI_MIN_ITEMS)


@pytest.mark.parametrize("schedule, in_warmup", [("linear", True), ("constant", False)])
def test_train_says_when_the_best_epoch_was_picked_in_the_kl_warmup(
    tmp_path, registry, mixture_csv, schedule, in_warmup
):
    out = tmp_path / "run"
    result = invoke(
        "train", "gaussmix", "--data", mixture_csv, "--out", out, "--quiet",
        "--set", "epochs=2", "--set", "max_items=300", "--set", f"beta_schedule={schedule}",
        "--set", "beta_warmup_steps=100000",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    line = result.stdout.splitlines()[-1]
    summary = json.loads((out / "run.json").read_text())["summary"]
    assert summary["best_in_warmup"] is in_warmup
    epoch = summary["best_epoch"]
    warmup = ", in the KL warm-up: the latest epoch, not compared with earlier ones"
    assert f"(epoch {epoch}{warmup if in_warmup else ''});" in line
