"""The latent's two tools: the KL-target controller and fitted priors (issue: rate control and
fitted priors for every domain)."""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import StopAt, gaussmix_only

import polyvae
from polyvae.checkpoint import TrainState
from polyvae.cli import build_cli
from polyvae.errors import RunError, UserError
from polyvae.files import load_tensors
from polyvae.priors import GaussianMixture, fit_prior, load_prior, save_prior
from polyvae.schedules import KL_GAIN_INTEGRAL, controlled_beta

QUICK = {"batch_size": 64, "latent_dim": 4, "lr_warmup_steps": 10, "beta_warmup_steps": 50}


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory, mixture_csv):
    """A gaussmix run trained with the default fit_prior (a Gaussian mixture)."""
    out = tmp_path_factory.mktemp("latent") / "run"
    with gaussmix_only():
        polyvae.train(
            "gaussmix",
            data=mixture_csv,
            config=QUICK | {"epochs": 3, "prior_components": 3},
            out=out,
            progress=False,
            log=lambda message: None,
        )
    return out


def test_controller_raises_beta_above_the_target_and_lowers_it_below():
    integral = np.log(0.1)
    above, _ = controlled_beta(integral, kl=20.0, target=10.0)
    below, _ = controlled_beta(integral, kl=5.0, target=10.0)
    assert below < 0.1 < above
    # One wild step moves beta by at most the clipped error's share: a factor e^(1 + Ki).
    wild, _ = controlled_beta(integral, kl=1e6, target=10.0)
    assert wild == pytest.approx(0.1 * np.exp(1 + KL_GAIN_INTEGRAL))


def test_kl_target_holds_the_validation_kl_near_the_target(tmp_path, mixture_csv, registry):
    target = 3.0
    polyvae.train(
        "gaussmix",
        data=mixture_csv,
        config=QUICK | {"epochs": 25, "kl_target": target, "fit_prior": "none", "patience": 0},
        out=tmp_path / "run",
        progress=False,
        log=lambda message: None,
    )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    last = records[-1]
    assert last["kl_target"] == target
    assert last["val_kl"] == pytest.approx(target, rel=0.15)
    # Beta is the controller's: it moves with the KL rather than following a schedule.
    betas = [record["beta"] for record in records]
    assert len(set(betas)) > 1


def test_kl_target_resumes_exactly(tmp_path, mixture_csv, registry):
    config = QUICK | {"epochs": 4, "kl_target": 2.0, "fit_prior": "none"}
    polyvae.train("gaussmix", mixture_csv, config, out=tmp_path / "a", progress=False, log=print)
    stopped = polyvae.train(
        "gaussmix",
        mixture_csv,
        config,
        out=tmp_path / "b",
        progress=False,
        callbacks=[StopAt(40)],  # mid-epoch, with the controller well under way
        log=print,
    )
    assert stopped.status == "interrupted"
    polyvae.train("gaussmix", resume=tmp_path / "b", progress=False, log=print)

    def weights(run):
        return load_tensors(run / "checkpoint" / "model.safetensors")

    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_under_kl_target_the_best_weights_are_the_best_reconstruction(
    tmp_path, mixture_csv, registry
):
    # The controller holds the rate, so the ELBO would follow the KL's swings around the target.
    config = QUICK | {"epochs": 8, "kl_target": 3.0, "fit_prior": "none", "patience": 0}
    result = polyvae.train(
        "gaussmix", mixture_csv, config, out=tmp_path / "run", progress=False, log=print
    )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    best = min(records, key=lambda record: record["val_recon"])
    summary = json.loads((tmp_path / "run" / "run.json").read_text())["summary"]
    assert summary["selected_by"] == "reconstruction"
    assert summary["best_epoch"] == best["epoch"] == result.best_epoch
    assert summary["best_val_elbo"] == best["val_elbo"] == result.best_val_elbo
    assert result.best_val_recon == best["val_recon"]
    assert "by reconstruction under kl_target" in result.best_line()


def test_without_kl_target_the_best_weights_are_the_best_elbo(tmp_path, mixture_csv, registry):
    config = QUICK | {"epochs": 6, "beta_schedule": "constant", "fit_prior": "none"}
    result = polyvae.train(
        "gaussmix", mixture_csv, config, out=tmp_path / "run", progress=False, log=print
    )
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    best = max(records, key=lambda record: record["val_elbo"])
    assert (result.best_epoch, result.best_val_elbo) == (best["epoch"], best["val_elbo"])
    assert result.selected_by == "elbo" and result.best_val_recon is None


def test_a_checkpoint_from_before_selected_by_keeps_its_best_elbo():
    saved = asdict(TrainState(best_score=-12.5, best_epoch=3))
    del saved["selected_by"], saved["best_val_elbo"]
    state = TrainState(**saved)
    assert (state.selected_by, state.best_val_elbo) == ("elbo", -12.5)
    assert TrainState().best_val_elbo is None


def test_a_kl_target_run_checkpointed_before_selection_by_reconstruction_resumes(
    tmp_path, mixture_csv, registry
):
    config = QUICK | {"epochs": 4, "kl_target": 3.0, "fit_prior": "none", "patience": 1}
    polyvae.train(
        "gaussmix",
        mixture_csv,
        config | {"epochs": 2},
        out=tmp_path / "run",
        progress=False,
        log=print,
    )
    # As such a checkpoint was written: no selected_by, and the best score an ELBO, which no
    # negated reconstruction term could beat.
    state_path = tmp_path / "run" / "checkpoint" / "state.json"
    saved = json.loads(state_path.read_text())
    del saved["train"]["selected_by"]
    saved["train"]["best_score"] = 0.0
    state_path.write_text(json.dumps(saved))
    messages: list[str] = []
    result = polyvae.train(
        "gaussmix",
        resume=tmp_path / "run",
        config={"epochs": 4},
        progress=False,
        log=messages.append,
    )
    assert "choosing the best weights by reconstruction from epoch 3 on" in messages
    assert result.selected_by == "reconstruction" and result.best_epoch >= 3


def test_sampling_from_the_fitted_prior_is_seeded_and_differs_from_the_standard(
    fitted_run, registry
):
    model = polyvae.load(fitted_run)
    again = polyvae.load(fitted_run)
    first = np.array(model.sample(20, seed=3))
    assert np.array_equal(first, np.array(again.sample(20, seed=3)))
    standard = np.array(model.sample(20, seed=3, prior="standard"))
    assert not np.allclose(first, standard)
    assert model.prior("standard").kind == "standard"


def test_a_run_without_a_prior_samples_from_the_standard_normal(tmp_path, mixture_csv, registry):
    polyvae.train(
        "gaussmix",
        mixture_csv,
        QUICK | {"epochs": 1, "fit_prior": "none"},
        out=tmp_path / "run",
        progress=False,
        log=print,
    )
    model = polyvae.load(tmp_path / "run")
    assert model.prior().kind == "standard"
    with pytest.raises(UserError, match="no fitted prior"):
        model.prior("fitted")


def test_a_planted_pickle_in_place_of_the_prior_is_refused(tmp_path):
    codes = np.random.default_rng(0).standard_normal((200, 3))
    prior, record = fit_prior(codes, "gmm", 2)
    save_prior(tmp_path, prior, record)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "prior.safetensors").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(RunError, match="not a readable safetensors file"):
        load_prior(tmp_path, 3)
    assert not marker.exists()


def test_both_prior_kinds_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    # Codes on a narrow, shifted, tilted ellipse: far likelier under a fitted density.
    codes = rng.standard_normal((1000, 2)) @ np.array([[1.0, 0.9], [0.0, 0.2]]) + 1.5
    for kind in ("gmm", "flow"):
        prior, record = fit_prior(codes, kind, components=2, seed=1)
        held_out = record["held_out_log_likelihood"]
        assert held_out > record["standard_normal_held_out_log_likelihood"] + 1.0
        save_prior(tmp_path / kind, prior, record)
        loaded, meta = load_prior(tmp_path / kind, 2)
        assert meta["kind"] == kind
        draws = loaded.sample(4, torch.Generator().manual_seed(0))
        assert torch.allclose(draws, prior.sample(4, torch.Generator().manual_seed(0)))
    assert isinstance(load_prior(tmp_path / "gmm", 2)[0], GaussianMixture)
    with pytest.raises(RunError, match="2-dimensional"):
        load_prior(tmp_path / "gmm", 3)


def test_fit_prior_command_and_evaluate_report_both_priors(fitted_run, registry):
    runner = CliRunner()
    result = runner.invoke(
        build_cli(), ["fit-prior", str(fitted_run), "--components", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["items"] > 0
    result = runner.invoke(build_cli(), ["evaluate", str(fitted_run), "-n", "50", "--json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.output)
    assert "fitted_prior_log_likelihood" in results
    assert any(name.startswith("standard_prior/") for name in results)
    record = json.loads((fitted_run / "evaluation.json").read_text())
    assert record["settings"]["prior"] == "fitted"
    refused = runner.invoke(build_cli(), ["fit-prior", "gaussmix"])
    assert refused.exit_code == 2 and "run directory" in refused.output


def test_fit_prior_on_other_items_samples_where_their_codes_lie(
    fitted_run, mixture_csv, tmp_path, registry
):
    run = tmp_path / "run"
    shutil.copytree(fitted_run, run)
    points = np.loadtxt(mixture_csv, delimiter=",")
    # One end of the data: its codes lie off the centre of the training codes.
    part = points[points[:, 0] > np.quantile(points[:, 0], 0.8)]
    part_csv = tmp_path / "part.csv"
    np.savetxt(part_csv, part, delimiter=",", fmt="%.6f")
    runner = CliRunner()
    result = runner.invoke(
        build_cli(), ["fit-prior", str(run), "--data", str(part_csv), "--components", "1"]
    )
    assert result.exit_code == 0, result.output
    assert f"codes of {part_csv.resolve()}" in result.output
    model = polyvae.load(run)
    assert model.fitted_prior_record["fit"]["data"] == str(part_csv.resolve())
    part_centre = torch.as_tensor(model.encode(list(part)).mean(axis=0), dtype=torch.float32)
    training_centre = polyvae.load(fitted_run).prior().centre()
    assert (model.prior().centre() - part_centre).norm() < 0.5 * (
        training_centre - part_centre
    ).norm()
    missing = runner.invoke(build_cli(), ["fit-prior", str(run), "--data", "nowhere.csv"])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_a_mixture_keeps_the_number_of_components_the_held_out_codes_favour():
    rng = np.random.default_rng(0)
    # Few codes in many dimensions: 20 full covariances overfit them, one Gaussian does not.
    few = rng.standard_normal((300, 32))
    prior, record = fit_prior(few, "gmm", components=20, seed=0)
    by_components = record["held_out_log_likelihood_by_components"]
    assert list(by_components) == ["20", "10", "5", "2", "1"]
    assert record["components"] == 1 and prior.settings() == {"components": 1}
    assert record["held_out_log_likelihood"] == max(by_components.values())
    assert by_components["20"] < by_components["1"] - 10
    # Plenty of codes in three far-apart clusters: more than one component wins.
    centres = np.array([[-6.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    clustered = centres[rng.integers(0, 3, 3000)] + rng.standard_normal((3000, 2))
    _, record = fit_prior(clustered, "gmm", components=8, seed=0)
    assert list(record["held_out_log_likelihood_by_components"]) == ["8", "4", "2", "1"]
    assert record["components"] >= 2
