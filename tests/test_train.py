"""Training end to end: the CLI, learning, exact resume, interruption and the run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import StopAt
from polyvae_gaussmix import mixture

import polyvae
from polyvae.files import load_tensors
from polyvae.vae import Terms, training_loss

FAST = {"batch_size": 32, "latent_dim": 4, "beta_warmup_steps": 50, "lr_warmup_steps": 10}


@pytest.mark.parametrize("stop_step", [7, 24])  # mid-epoch, and at an epoch boundary
def test_interrupt_and_resume_matches_uninterrupted_run(tmp_path, registry, stop_step):
    data = mixture(400, seed=1)
    config = FAST | {"epochs": 3, "free_bits": 0.05}
    straight = polyvae.train(
        "gaussmix", data=list(data), config=config, out=tmp_path / "a", progress=False, log=print
    )
    stopped = polyvae.train(
        "gaussmix",
        data=list(data),
        config=config,
        out=tmp_path / "b",
        progress=False,
        callbacks=[StopAt(stop_step)],
        log=print,
    )
    assert stopped.status == "interrupted" and stopped.steps == stop_step
    resumed = polyvae.train(
        "gaussmix", data=list(data), resume=tmp_path / "b", progress=False, log=print
    )
    assert resumed.status == "complete" and resumed.steps == straight.steps
    for name in (
        "checkpoint/model.safetensors",
        "model.safetensors",
        "checkpoint/optimizer.safetensors",
    ):
        expected, actual = load_tensors(tmp_path / "a" / name), load_tensors(tmp_path / "b" / name)
        assert expected.keys() == actual.keys()
        for key in expected:
            assert torch.equal(expected[key], actual[key]), (name, key)
    lines_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lines_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()

    def strip(line):  # timings differ between runs; everything else must not
        record = json.loads(line)
        return {k: v for k, v in record.items() if k not in ("seconds", "items_per_second")}

    assert [strip(line) for line in lines_a] == [strip(line) for line in lines_b]


def test_run_directory_holds_no_pickle(tmp_path, registry):
    data = list(mixture(64))
    polyvae.train(
        "gaussmix",
        data=data,
        config=FAST | {"epochs": 1},
        out=tmp_path / "r",
        progress=False,
        log=print,
    )
    for path in (tmp_path / "r").rglob("*"):
        if path.is_file() and path.suffix not in (".json", ".jsonl", ".safetensors", ".lock", ""):
            pytest.fail(f"unexpected file in a run: {path.name}")
        if path.is_file() and path.suffix != ".safetensors":
            assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"


def test_conditioning_and_property_head(tmp_path, registry):
    data = list(mixture(600, seed=2))
    config = FAST | {"epochs": 12, "condition": ["first"], "predict": ["norm"]}
    result = polyvae.train(
        "gaussmix", data=data, config=config, out=tmp_path / "c", progress=False, log=print
    )
    model = polyvae.load(result.run_dir)
    assert model.condition_names == ["first"]
    high = np.mean(
        [item[0] for item in model.sample(300, seed=0, condition={"first": 0.9}, temperature=0.0)]
    )
    low = np.mean(
        [item[0] for item in model.sample(300, seed=0, condition={"first": -0.5}, temperature=0.0)]
    )
    assert high > low + 0.5, (high, low)
    with pytest.raises(polyvae.UserError, match="outside the trained range"):
        model.sample(2, condition={"first": 50.0})
    with pytest.raises(polyvae.UserError, match="unknown condition norm"):
        model.sample(2, condition={"norm": 1.0})
    record = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["property_loss"] < 1.0  # standardised target: 1.0 is predicting the mean


def test_early_stopping_and_best_weights(tmp_path, registry):
    data = list(mixture(200, seed=3))
    # A learning rate too small to move a float32 weight never improves on the first epoch's
    # validation ELBO (zero itself is refused: it would train on a flat loss).
    config = FAST | {"epochs": 10, "patience": 2, "lr": 1e-30, "beta_schedule": "constant"}
    result = polyvae.train(
        "gaussmix", data=data, config=config, out=tmp_path / "e", progress=False, log=print
    )
    assert result.status == "early_stopped" and result.epochs == 3


def test_model_selection_waits_for_the_kl_warm_up(tmp_path, registry):
    data = list(mixture(300, seed=3))
    # 8 steps an epoch: the warm-up ends during epoch 4; best weights can only come after it.
    config = FAST | {"epochs": 6, "beta_warmup_steps": 30, "patience": 1}
    result = polyvae.train(
        "gaussmix", data=data, config=config, out=tmp_path / "w", progress=False, log=print
    )
    meta = json.loads((tmp_path / "w" / "run.json").read_text())
    assert meta["summary"]["best_epoch"] >= 4
    assert result.epochs >= 5  # no early stop while beta was rising


def test_refuses_existing_run_and_missing_data(tmp_path, registry, mixture_csv):
    data = list(mixture(64))
    polyvae.train(
        "gaussmix",
        data=data,
        config=FAST | {"epochs": 1},
        out=tmp_path / "r",
        progress=False,
        log=print,
    )
    with pytest.raises(polyvae.UserError, match="already holds files"):
        polyvae.train(
            "gaussmix", data=data, config=FAST, out=tmp_path / "r", progress=False, log=print
        )
    with pytest.raises(polyvae.UserError, match="data not found"):
        polyvae.train(
            "gaussmix", data=tmp_path / "none.csv", out=tmp_path / "s", progress=False, log=print
        )
    with pytest.raises(polyvae.UserError, match="cannot change lr when resuming"):
        polyvae.train(
            "gaussmix",
            data=data,
            config={"lr": 1.0},
            resume=tmp_path / "r",
            progress=False,
            log=print,
        )
    other = list(mixture(64, seed=9))
    with pytest.raises(polyvae.RunError, match="data differs"):
        polyvae.train("gaussmix", data=other, resume=tmp_path / "r", progress=False, log=print)


def test_a_decoders_auxiliary_loss_joins_the_objective_not_the_elbo_terms():
    kl = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    terms = Terms(torch.tensor([-4.0, -6.0]), kl, torch.zeros(2, 2), torch.zeros(2, 2))
    plain = training_loss(terms, beta=0.5)
    assert plain.auxiliary is None and float(plain.total) == pytest.approx(5.0 + 0.5 * 3.0)
    helped = training_loss(terms._replace(auxiliary=torch.tensor([1.0, 3.0])), beta=0.5)
    assert float(helped.auxiliary) == 2.0
    assert float(helped.total) == pytest.approx(float(plain.total) + 2.0)
    assert (helped.recon, helped.kl) == (plain.recon, plain.kl)
