"""``train`` checks what it can before any work, and a start that fails leaves nothing behind:
no run folder, no codec, so that a retry with the mistake fixed just works."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import polyvae
import polyvae.trainer
from polyvae.cli import build_cli
from polyvae.errors import UserError

TINY = {"epochs": 1, "max_steps": 1, "batch_size": 64, "latent_dim": 2, "max_items": 200}
NO_GPU = not (torch.cuda.is_available() or torch.backends.mps.is_available())


@pytest.fixture
def reading_fails(monkeypatch):
    """Reading the data is the first piece of work; a check that comes too late trips this."""

    def training_items(*args, **kwargs):
        raise AssertionError("the data was read before the device was checked")

    monkeypatch.setattr(polyvae.trainer, "training_items", training_items)


@pytest.mark.skipif(not NO_GPU, reason="the devices refused here exist on this machine")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cuda"], "device 'cuda' asked for, but CUDA is not available here"),
        (["--device", "mps"], "device 'mps' asked for, but MPS is not available here"),
        (["--device", "cuda:7"], "device 'cuda:7' asked for, but CUDA is not available here"),
        (["--device", "tpu"], "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
        (["--set", "device=tpu"], "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_cli_refuses_a_missing_device_before_any_work(
    args, message, registry, mixture_csv, tmp_path, reading_fails
):
    out = tmp_path / "run"
    command = ["train", "gaussmix", "--data", str(mixture_csv), "--out", str(out), *args]
    result = CliRunner().invoke(build_cli(), command)
    assert result.exit_code == 2, result.output
    assert result.output == f"Error: {message}\n"
    assert not out.exists()


@pytest.mark.skipif(not NO_GPU, reason="CUDA exists on this machine")
def test_api_refuses_a_missing_device_before_any_work(
    registry, mixture_csv, tmp_path, reading_fails
):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="CUDA is not available here"):
        polyvae.train("gaussmix", data=mixture_csv, config={"device": "cuda"}, out=out)
    assert not out.exists()


def fail_fitting(monkeypatch, domain, error: BaseException) -> None:
    def fit_codec(items, config):
        raise error

    monkeypatch.setattr(domain, "fit_codec", fit_codec)


@pytest.mark.parametrize("error", [ValueError("no codec today"), KeyboardInterrupt()])
def test_a_failed_start_removes_the_run_folder_it_made(
    error, domain, mixture_csv, tmp_path, monkeypatch
):
    out = tmp_path / "runs" / "first"
    fail_fitting(monkeypatch, domain, error)
    with pytest.raises(type(error)):
        polyvae.train("gaussmix", data=mixture_csv, config=TINY, out=out, progress=False)
    assert not out.exists()
    monkeypatch.undo()  # the retry, with the cause fixed, starts where the first try did
    polyvae.train("gaussmix", data=mixture_csv, config=TINY, out=out, progress=False)
    assert (out / "run.json").exists()


def test_a_failed_start_in_a_given_empty_folder_leaves_it_empty(
    domain, mixture_csv, tmp_path, monkeypatch
):
    out = tmp_path / "empty"
    out.mkdir()
    fail_fitting(monkeypatch, domain, ValueError("no codec today"))
    with pytest.raises(ValueError, match="no codec today"):
        polyvae.train("gaussmix", data=mixture_csv, config=TINY, out=out, progress=False)
    assert out.is_dir() and list(out.iterdir()) == []
