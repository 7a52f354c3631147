"""Training through the installed `polyvae` command: it learns, and a Ctrl-C or SIGTERM saves a
checkpoint that `--resume` finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from conftest import polyvae_command, run_polyvae
from test_train import FAST

import polyvae
from polyvae.run import build_vae


def test_cli_training_learns(tmp_path, plugin_site, mixture_csv, registry):
    run_dir = tmp_path / "run"
    result = run_polyvae(
        ["train", "gaussmix", "--data", mixture_csv, "--out", run_dir, "--epochs", 10, "--quiet"]
        + [f"--set={key}={value}" for key, value in FAST.items()],
        site=plugin_site,
    )
    assert result.returncode == 0, result.stderr
    assert "complete: 10 epochs" in result.stdout
    assert sorted(path.name for path in run_dir.iterdir() if not path.name.startswith(".")) == [
        "checkpoint",
        "codec",
        "metrics.jsonl",
        "model.safetensors",
        "prior",
        "run.json",
    ]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["domain"] == "gaussmix" and meta["status"] == "complete"
    assert meta["config"]["epochs"] == 10 and meta["config"]["latent_dim"] == 4
    assert meta["data"]["fingerprint"].startswith("sha256:") and meta["data"]["items"] == 2000
    assert meta["versions"]["plugin"] == {"name": "gaussmix", "version": "0.1"}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == list(range(1, 11))
    assert {"loss", "recon", "kl", "beta", "active_units", "val_elbo", "val_mutual_info"} <= set(
        records[0]
    )

    model = polyvae.load(run_dir)
    _, validation = model.data_splits()
    trained = model.likelihood(validation, k=50)["iwae_nll"]
    torch.manual_seed(0)
    model.vae = build_vae(model.domain, model.config, model.codec, None, None).eval()
    initial = model.likelihood(validation, k=50)["iwae_nll"]
    # Eight nats of a 6-D standardised mixture at initialisation; training must remove most.
    assert trained < initial - 2.0, (initial, trained)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_signal_saves_a_checkpoint_and_resume_finishes(
    tmp_path, plugin_site, mixture_csv, stop
):
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(plugin_site), POLYVAE_LOAD_PLUGINS="gaussmix")
    process = subprocess.Popen(
        [
            polyvae_command(),
            "train",
            "gaussmix",
            "--data",
            str(mixture_csv),
            "--out",
            str(run_dir),
            "--epochs",
            "500",
            "--set",
            "batch_size=16",
            "--set",
            "max_items=400",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.time() + 120
        while not (run_dir / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, "training ended before it could be stopped"
        process.send_signal(stop)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr  # the documented status of an interrupted run
    assert "Traceback" not in stderr
    assert "interrupted at epoch" in stdout and "checkpoint saved" in stdout
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted"
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())["train"]
    assert state["step"] > 0
    resumed = run_polyvae(
        ["train", "gaussmix", "--resume", run_dir, "--epochs", state["epoch"] + 1, "--quiet"],
        site=plugin_site,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"complete: {state['epoch'] + 1} epochs" in resumed.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
