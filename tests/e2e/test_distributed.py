"""Distributed data-parallel training through torchrun, on the CPU (Gloo), two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import SUPPORT, run_polyvae

from polyvae.files import fingerprint_batch, load_tensors

FAST = {
    "batch_size": 32,
    "latent_dim": 4,
    "beta_warmup_steps": 50,
    "lr_warmup_steps": 10,
    "threads": 1,
}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]


def torchrun(args, site: Path | None = None, cwd: Path | None = None):
    env = dict(os.environ, POLYVAE_LOAD_PLUGINS="gaussmix", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(site or ""), str(SUPPORT), env.get("PYTHONPATH")])
    )
    return subprocess.run(
        [*TORCHRUN, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def epochs_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_torchrun_two_processes_train_one_model(tmp_path, plugin_site, mixture_csv):
    settings = [f"--set={key}={value}" for key, value in FAST.items()]
    command = ["-m", "polyvae.cli", "train", "gaussmix", "--data", mixture_csv, "--out", "run"]
    trained = torchrun(
        [*command, "--epochs", "2", "--quiet", *settings],
        site=plugin_site,
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    # Printed once (rank 0), and exactly one run directory came into being.
    assert trained.stdout.count("complete: 2 epochs, 56 steps") == 1, trained.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run", "site"]
    run_dir = tmp_path / "run"
    # 1,800 training items, 900 a rank, 28 steps of 32 per epoch: each rank took its half.
    assert [record["step"] for record in epochs_of(run_dir)] == [28, 56]

    # Extend the run by a third epoch through `polyvae train --nproc 2`, which runs torchrun.
    resumed = run_polyvae(
        ["train", "gaussmix", "--resume", run_dir, "--epochs", 3, "--nproc", 2, "--quiet"],
        site=plugin_site,
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("complete: 3 epochs, 84 steps") == 1, resumed.stdout
    records = epochs_of(run_dir)
    assert [record["epoch"] for record in records] == [1, 2, 3]  # each line written once
    # The loss rises with beta in the KL warm-up; its reconstruction part and the validation
    # ELBO (beta 1) show the learning.
    assert records[-1]["recon"] < records[0]["recon"] - 0.5, records
    assert records[-1]["val_elbo"] > records[0]["val_elbo"] + 0.2, records

    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete"
    spread = meta["distributed"]
    assert spread["world_size"] == 2 and spread["backend"] == "gloo"
    # Both ranks ended with the same weights, and they are the ones rank 0 saved.
    saved = fingerprint_batch(load_tensors(run_dir / "checkpoint" / "model.safetensors"))
    assert spread["weights_sha256_per_rank"] == [saved, saved]
    leftovers = [path.name for path in run_dir.iterdir() if path.name.startswith("checkpoint.")]
    assert leftovers == []


def test_torchrun_fine_tunes_a_run_from_its_weights(tmp_path, plugin_site, mixture_csv):
    settings = [f"--set={key}={value}" for key, value in FAST.items()]
    command = ["-m", "polyvae.cli", "train", "gaussmix", "--data", mixture_csv, "--quiet"]
    source = torchrun(
        [*command, "--out", "source", "--epochs", "3", *settings], site=plugin_site, cwd=tmp_path
    )
    assert source.returncode == 0, source.stderr[-3000:]
    tuned = torchrun(
        [*command, "--out", "tuned", "--init", "source", "--epochs", "1", "--set=threads=1"],
        site=plugin_site,
        cwd=tmp_path,
    )
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert tuned.stdout.count("complete: 1 epoch, 28 steps") == 1, tuned.stdout
    meta = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert meta["init"]["given"] == "source" and meta["config"]["latent_dim"] == 4
    # It went on from the source's weights: its first epoch is as good as the source's last,
    # where a fresh start's first epoch is far worse.
    (first,) = epochs_of(tmp_path / "tuned")
    fresh, *_, last = epochs_of(tmp_path / "source")
    # (Measured: the source's epochs -8.34, -7.87, -7.72 nats; the fine-tune's -7.39.)
    assert first["val_elbo"] > fresh["val_elbo"] + 0.5
    assert first["val_elbo"] > last["val_elbo"] - 0.2, (first, last)


def test_resume_under_ddp_matches_the_uninterrupted_run(tmp_path):
    worker = SUPPORT / "ddp_resume_worker.py"
    result = torchrun([worker, tmp_path])
    assert result.returncode == 0, result.stderr[-3000:]
    straight, resumed = tmp_path / "a", tmp_path / "b"
    for name in ("checkpoint/model.safetensors", "checkpoint/optimizer.safetensors"):
        expected, actual = load_tensors(straight / name), load_tensors(resumed / name)
        assert expected.keys() == actual.keys()
        for key in expected:
            assert torch.equal(expected[key], actual[key]), (name, key)
    # Rank 1's own noise stream is kept too, and differs from rank 0's.
    states = load_tensors(resumed / "checkpoint" / "optimizer.safetensors")
    assert not torch.equal(states["rng.torch"], states["rng.torch.rank1"])

    def strip(record):  # timings differ between runs; everything else must not
        return {k: v for k, v in record.items() if k not in ("seconds", "items_per_second")}

    assert [strip(r) for r in epochs_of(straight)] == [strip(r) for r in epochs_of(resumed)]
    assert len(epochs_of(straight)) == 3


def test_nproc_checks_the_config_before_launching(tmp_path, plugin_site, mixture_csv):
    result = run_polyvae(
        ["train", "gaussmix", "--data", mixture_csv, "--nproc", 2, "--set", "laten_dim=4"],
        site=plugin_site,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: unknown config key")
    assert "torch.distributed" not in result.stderr


def test_python_m_polyvae_cli_runs():  # what `torchrun -m polyvae.cli` starts in each process
    result = subprocess.run(
        [sys.executable, "-m", "polyvae.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("polyvae, version")
