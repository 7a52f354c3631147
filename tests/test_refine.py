"""Refined codes (``refine``): gradient steps from the encoder's mean up
log p(x | z) + log N(z; 0, I), through the engine and the CLI, on the Gaussian-mixture domain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import gaussmix_only
from polyvae_gaussmix import GaussMixDomain, mixture

import polyvae
from polyvae.cli import build_cli
from polyvae.errors import UserError
from polyvae.vae import standard_normal_log_density


@pytest.fixture(scope="module")
def model(tmp_path_factory, mixture_csv):
    out = tmp_path_factory.mktemp("refine") / "run"
    with gaussmix_only():
        polyvae.train(
            "gaussmix",
            data=mixture_csv,
            config={"epochs": 2, "batch_size": 64, "latent_dim": 3, "max_items": 600},
            out=out,
            progress=False,
            log=lambda message: None,
        )
        yield polyvae.load(out)


def invoke(*args):
    return CliRunner().invoke(build_cli(), [str(arg) for arg in args], catch_exceptions=False)


def objective(model, items, codes: torch.Tensor) -> torch.Tensor:
    """log p(x | z) + log N(z; 0, I) of each item at its code."""
    _, batch = model.encodable(items)
    with torch.no_grad():
        return model.vae.decoder.log_prob(batch, codes) + standard_normal_log_density(codes)


def test_refined_codes_are_more_probable_for_every_item_and_start_from_the_encoders(model):
    items = list(mixture(40, seed=7))
    means, logvars = model.posterior(items)
    unrefined, same_logvars = model.posterior(items, refine=0)
    assert torch.equal(unrefined, means) and torch.equal(same_logvars, logvars)

    refined, refined_logvars = model.posterior(items, refine=30)
    assert torch.equal(refined_logvars, logvars)  # only the means move
    gain = objective(model, items, refined) - objective(model, items, means)
    assert (gain > 0).all(), gain
    # Steps go on climbing: more of them reach at least as high, bar rounding.
    further = objective(model, items, model.posterior(items, refine=60)[0])
    assert (further >= objective(model, items, refined) - 1e-3).all()


def test_each_item_is_refined_as_if_alone(model, monkeypatch):
    items = list(mixture(6, seed=3))
    monkeypatch.setattr(model, "batch_size", 4)  # two batches, one of them short
    together = model.encode(items, refine=10)
    alone = np.concatenate([model.encode([item], refine=10) for item in items])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)


def test_refining_takes_a_number_of_steps_and_is_no_posterior_sample(model):
    items = list(mixture(3, seed=1))
    with pytest.raises(UserError, match="refining takes a number of steps >= 0, got -1"):
        model.reconstruct(items, refine=-1)
    with pytest.raises(UserError, match="not a posterior sample"):
        model.encode(items, sample=True, refine=5)


def test_reconstruct_interpolate_and_encode_take_refine_on_the_command_line(model, tmp_path):
    run = str(model.run_dir)
    points = mixture(2, seed=5)
    a, b = (",".join(f"{v:.4f}" for v in row) for row in points)

    refined = invoke("reconstruct", run, "--", a, b)
    plain = invoke("reconstruct", run, "--refine", 0, "--", a, b)
    assert refined.exit_code == 0 and plain.exit_code == 0
    # The default refines: the decoded items differ from the encoder's.
    assert refined.output != plain.output
    assert refined.output == invoke("reconstruct", run, "--refine", 25, "--", a, b).output
    path = invoke("interpolate", run, "--steps", 3, "--", a, b)
    assert path.exit_code == 0 and len(path.output.splitlines()) == 3

    data = tmp_path / "items.csv"
    np.savetxt(data, points, delimiter=",", fmt="%.6f")
    for steps in (0, 5):
        result = invoke(
            "encode", run, "--data", data, "-o", tmp_path / f"{steps}.npy", "--refine", steps
        )
        assert result.exit_code == 0, result.output
    expected = model.encode(list(np.loadtxt(data, delimiter=",")), refine=5)
    np.testing.assert_allclose(np.load(tmp_path / "5.npy"), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.load(tmp_path / "0.npy"), np.load(tmp_path / "5.npy"))
    refused = invoke("reconstruct", run, "--refine", -2, "--", a)
    assert refused.exit_code == 2 and "--refine" in refused.output


def test_the_command_lines_default_is_the_domains(model, monkeypatch):
    run = str(model.run_dir)
    a, b = (",".join(f"{v:.4f}" for v in row) for row in mixture(2, seed=5))

    monkeypatch.setattr(GaussMixDomain, "refine_steps", 3)
    for command in ("reconstruct", "interpolate"):
        default = invoke(command, run, "--", a, b)
        assert default.exit_code == 0, default.output
        assert default.output == invoke(command, run, "--refine", 3, "--", a, b).output
        assert default.output != invoke(command, run, "--refine", 0, "--", a, b).output
