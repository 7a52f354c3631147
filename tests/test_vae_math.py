"""The engine's mathematics against known values."""

from __future__ import annotations

import math

import pytest
import torch

from polyvae.config import EngineConfig
from polyvae.schedules import beta_at, lr_factor
from polyvae.vae import (
    MI_ITEMS,
    LatentStatistics,
    gaussian_kl,
    gaussian_log_density,
    kl_penalty,
    mutual_information,
    pairwise_gaussian_log_density,
)


def test_kl_of_known_gaussians():
    mu = torch.tensor([[0.0, 1.0, -2.0]])
    logvar = torch.log(torch.tensor([[1.0, 4.0, 0.25]]))
    # KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1 - ln s^2) / 2
    expected = [0.0, (4 + 1 - 1 - math.log(4)) / 2, (0.25 + 4 - 1 - math.log(0.25)) / 2]
    assert gaussian_kl(mu, logvar)[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu = torch.tensor([0.7, -1.3, 0.1, 2.0])
    logvar = torch.tensor([-0.5, 0.3, -2.0, 0.0])
    z = mu + torch.randn(400_000, 4) * (0.5 * logvar).exp()
    log_q = gaussian_log_density(z, mu, logvar)
    log_p = gaussian_log_density(z, torch.zeros(4), torch.zeros(4))
    monte_carlo = (log_q - log_p).mean().item()
    assert gaussian_kl(mu, logvar).sum().item() == pytest.approx(monte_carlo, abs=0.02)


def test_free_bits_floor_each_dimension():
    kl = torch.tensor([[0.05, 2.0, 0.3], [0.15, 1.0, 0.1]])  # batch means 0.1, 1.5, 0.2
    assert kl_penalty(kl, 0.0).item() == pytest.approx(1.8)
    assert kl_penalty(kl, 0.25).item() == pytest.approx(0.25 + 1.5 + 0.25)
    floored = kl.clone().requires_grad_()
    kl_penalty(floored, 0.25).backward()
    # Dimensions under the floor get no gradient; the one above it does.
    assert floored.grad[:, 0].abs().sum() == 0 and floored.grad[:, 1].abs().sum() > 0


@pytest.mark.parametrize(
    ("schedule", "extra", "expected"),
    [
        ("constant", {}, {0: 1.0, 500: 1.0, 5000: 1.0}),
        ("linear", {}, {0: 0.0, 250: 0.25, 1000: 1.0, 5000: 1.0}),
        ("logistic", {}, {0: 1 / (1 + math.exp(5)), 500: 0.5, 1000: 1 / (1 + math.exp(-5))}),
        # 4 cycles over 4000 steps, rising over the first half of each cycle.
        ("cyclical", {}, {0: 0.0, 250: 0.5, 500: 1.0, 999: 1.0, 1000: 0.0, 1250: 0.5}),
    ],
)
def test_beta_schedules(schedule, extra, expected):
    config = EngineConfig(beta_schedule=schedule, beta_warmup_steps=1000, **extra)
    for step, value in expected.items():
        assert beta_at(step, 4000, config) == pytest.approx(value), (schedule, step)


def test_beta_schedule_respects_min_and_max():
    config = EngineConfig(beta_schedule="linear", beta_min=0.1, beta_max=0.05 + 0.1)
    assert beta_at(0, 100, config) == pytest.approx(0.1)
    assert beta_at(10_000, 100_000, config) == pytest.approx(0.15)


def test_learning_rate_warmup_then_cosine():
    assert lr_factor(0, 1000, 100, 0.1) == pytest.approx(0.01)
    assert lr_factor(99, 1000, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(550, 1000, 100, 0.1) == pytest.approx(0.55)
    assert lr_factor(1000, 1000, 100, 0.1) == pytest.approx(0.1)


def latent_statistics(mu, logvar, batch=64):
    statistics = LatentStatistics(mu.shape[1])
    for part_mu, part_logvar in zip(mu.split(batch), logvar.split(batch), strict=True):
        statistics.add_posterior(part_mu, part_logvar)
    return statistics


def test_active_units_counts_varying_means():
    torch.manual_seed(0)
    mu = torch.cat([torch.randn(500, 3), 0.01 * torch.randn(500, 2)], dim=1)
    statistics = latent_statistics(mu, torch.zeros_like(mu))
    assert statistics.active_units() == 3
    # The float64 sums give torch.var's unbiased variance, batch by batch.
    assert statistics.latent_variance().float() == pytest.approx(mu.var(dim=0), rel=1e-4)


def test_latent_statistics_keep_the_first_items_for_mutual_information():
    torch.manual_seed(0)
    mu, logvar = torch.randn(2500, 2), torch.full((2500, 2), -1.0)
    statistics = latent_statistics(mu, logvar)
    assert statistics.count == 2500
    torch.manual_seed(1)
    expected = mutual_information(mu[:MI_ITEMS], logvar[:MI_ITEMS])
    torch.manual_seed(1)
    assert statistics.mutual_information() == pytest.approx(expected)


def test_pairwise_density_matches_each_pair_computed_alone():
    torch.manual_seed(0)
    z, mu, logvar = (
        torch.randn(5, 3).double(),
        torch.randn(4, 3).double(),
        torch.randn(4, 3).double(),
    )
    expected = torch.stack([gaussian_log_density(row, mu, logvar) for row in z])
    assert torch.allclose(pairwise_gaussian_log_density(z, mu, logvar), expected, atol=1e-10)


def test_mutual_information_bounds():
    torch.manual_seed(0)
    # Posterior equal to the prior for every x: the code carries no information.
    assert mutual_information(torch.zeros(1000, 2), torch.zeros(1000, 2)) == pytest.approx(
        0, abs=0.05
    )
    # Far-apart narrow posteriors: I(x; z) approaches log(number of items).
    mu = torch.arange(200, dtype=torch.float32).unsqueeze(1) * 10
    assert mutual_information(mu, torch.full((200, 1), -4.0)) == pytest.approx(
        math.log(200), rel=0.01
    )
