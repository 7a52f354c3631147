"""Fine-tuning (``polyvae train --init RUN``): a new run that starts from a trained one."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import StopAt
from polyvae_gaussmix import mixture

import polyvae
from polyvae.cli import build_cli
from polyvae.errors import UserError
from polyvae.files import load_tensors
from polyvae.trainer import Trainer

SOURCE = {
    "batch_size": 32,
    "latent_dim": 3,
    "hidden": 24,
    "epochs": 2,
    "beta_warmup_steps": 40,
    "seed": 5,
    "lr": 2e-3,
}


@pytest.fixture
def source_run(tmp_path, registry):
    polyvae.train(
        "gaussmix",
        data=list(mixture(300, seed=1)),
        config=SOURCE,
        out=tmp_path / "source",
        progress=False,
        log=print,
    )
    return tmp_path / "source"


def test_fine_tune_starts_from_the_runs_weights_with_its_recipe_and_a_new_plan(
    tmp_path, domain, source_run
):
    trainer = Trainer.fresh(
        domain,
        list(mixture(200, seed=2)),
        {"epochs": 1, "lr": 5e-4},
        tmp_path / "tuned",
        print,
        init=source_run,
    )
    source_weights = load_tensors(source_run / "model.safetensors")
    for name, tensor in trainer.vae.state_dict().items():
        assert torch.equal(tensor, source_weights[name]), name
    config = trainer.config
    # The network and recipe carry over; the plan is the user's or the defaults; no new warm-up.
    assert (config["latent_dim"], config["hidden"], config["seed"]) == (3, 24, 5)
    assert (config["epochs"], config["lr"], config["beta_warmup_steps"]) == (1, 5e-4, 0)
    meta = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert meta["init"]["run"] == str(source_run.resolve())
    assert meta["init"]["given"] == str(source_run)
    assert meta["init"]["epochs"] == 2 and meta["init"]["weights_epoch"] in (1, 2)


def test_a_fine_tuned_run_trains_resumes_and_loads(tmp_path, registry, source_run):
    data = list(mixture(200, seed=2))
    stopped = polyvae.train(
        "gaussmix",
        data=data,
        config={"epochs": 2},
        out=tmp_path / "tuned",
        init=source_run,
        progress=False,
        callbacks=[StopAt(3)],
        log=print,
    )
    assert stopped.status == "interrupted"
    resumed = polyvae.train(
        "gaussmix", data=data, resume=tmp_path / "tuned", progress=False, log=print
    )
    assert resumed.status == "complete" and resumed.epochs == 2
    assert len(polyvae.load(tmp_path / "tuned").sample(4, seed=0)) == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"latent_dim": 4}, "cannot fine-tune"),  # the weights do not fit
        ({"hidden": 32}, "cannot fine-tune"),
        ({"preset": "small"}, "cannot set preset when fine-tuning"),
        ({"condition": ["first"]}, "cannot set condition when fine-tuning"),
    ],
)
def test_fine_tune_refuses_another_network_before_any_work(
    tmp_path, domain, source_run, overrides, message
):
    with pytest.raises(UserError, match=message):
        Trainer.fresh(
            domain, list(mixture(50)), overrides, tmp_path / "tuned", print, init=source_run
        )
    assert not (tmp_path / "tuned").exists()


def test_a_resumed_run_cannot_be_given_another_start(tmp_path, registry, source_run):
    with pytest.raises(UserError, match="--init starts a new run"):
        polyvae.train("gaussmix", data=list(mixture(50)), resume=source_run, init=source_run)


def test_a_fine_tuned_runs_report_names_its_source(tmp_path, registry, source_run, mixture_csv):
    tuned = tmp_path / "tuned"
    config = {"epochs": 1, "max_items": 300}
    polyvae.train("gaussmix", data=mixture_csv, config=config, out=tuned, init=source_run)
    page = tmp_path / "report.html"
    result = CliRunner().invoke(
        build_cli(), ["report", str(tuned), "-n", "0", "-k", "2", "-o", str(page)]
    )
    assert result.exit_code == 0, result.output
    assert f"{source_run}: 2 epochs on &lt;in-memory items&gt;, the weights of its epoch" in (
        page.read_text()
    )
