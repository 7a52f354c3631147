"""Interrupted work: SIGKILL loses at most the work since the last checkpoint and --resume then
ends exactly where an uninterrupted run ends; a second process on a run in use is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from conftest import polyvae_command, run_polyvae
from polyvae_gaussmix import mixture

import polyvae
from polyvae.files import load_tensors
from polyvae.run import RunDir

SETTINGS = ["batch_size=16", "latent_dim=3", "hidden=16", "threads=1", "lr_warmup_steps=5"]
EPOCHS = 6


def train_args(data, out):
    args = ["train", "gaussmix", "--data", data, "--out", out, "--epochs", EPOCHS, "--quiet"]
    return [str(arg) for arg in args] + [f"--set={setting}" for setting in SETTINGS]


def assert_same_tensors(first, second):
    expected, actual = load_tensors(first), load_tensors(second)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), (first.name, key)


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path, plugin_site):
    data = tmp_path / "data.csv"
    data.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in mixture(320)))
    straight = run_polyvae(train_args(data, tmp_path / "a"), site=plugin_site)
    assert straight.returncode == 0, straight.stderr

    run_dir = tmp_path / "b"
    env = dict(os.environ, PYTHONPATH=str(plugin_site), POLYVAE_LOAD_PLUGINS="gaussmix")
    process = subprocess.Popen(
        [polyvae_command(), *train_args(data, run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.time() + 60
        while not (run_dir / "checkpoint" / "state.json").exists() and time.time() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "training ended before it could be killed; raise EPOCHS"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "training"
    killed_at = json.loads((run_dir / "checkpoint" / "state.json").read_text())["train"]
    assert 1 <= killed_at["epoch"] < EPOCHS
    # No half-written file that looks valid: only atomic temporaries (dot-named, .tmp) may be
    # left, and every file under a real name parses.
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            if path.suffix == ".safetensors":
                load_tensors(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".jsonl":
                [json.loads(line) for line in path.read_text().splitlines()]

    resumed = run_polyvae(["train", "gaussmix", "--resume", run_dir, "--quiet"], site=plugin_site)
    assert resumed.returncode == 0, resumed.stderr
    assert f"complete: {EPOCHS} epochs" in resumed.stdout
    assert not list(run_dir.rglob(".*.tmp")) and not (run_dir / "checkpoint.new").exists()
    for name in (
        "model.safetensors",
        "checkpoint/model.safetensors",
        "checkpoint/optimizer.safetensors",
    ):
        assert_same_tensors(tmp_path / "a" / name, run_dir / name)
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").open()]
    assert epochs == list(range(1, EPOCHS + 1))


def test_resume_of_a_run_in_use_is_refused_before_touching_it(tmp_path, registry, plugin_site):
    data = list(mixture(64))
    config = {"batch_size": 32, "latent_dim": 3, "hidden": 16, "threads": 1, "epochs": 1}
    polyvae.train("gaussmix", data=data, config=config, out=tmp_path / "r", progress=False)
    run = RunDir(tmp_path / "r")
    # The state a crash in the middle of writing a checkpoint leaves, and that the owner of
    # the lock may be writing right now.
    (run.path / "checkpoint.new").mkdir()
    metrics = run.metrics_path.read_text()
    with run.lock():
        with pytest.raises(polyvae.RunError, match="in use by another polyvae process"):
            polyvae.train("gaussmix", data=data, resume=run.path, progress=False)
        with pytest.raises(polyvae.RunError, match="in use by another polyvae process"):
            polyvae.train(
                "gaussmix", data=data, config={"epochs": 2}, resume=run.path, progress=False
            )
        # Another process (the installed command) is refused the same way, in one line.
        second = run_polyvae(["train", "gaussmix", "--resume", run.path], site=plugin_site)
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
        assert second.stderr.strip() == f"Error: {run.path} is in use by another polyvae process"
    assert (run.path / "checkpoint.new").is_dir() and run.metrics_path.read_text() == metrics
    result = polyvae.train(
        "gaussmix", data=data, config={"epochs": 2}, resume=run.path, progress=False
    )
    assert result.status == "complete" and result.epochs == 2
    assert not (run.path / "checkpoint.new").exists()
