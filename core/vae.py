"""The domain-agnostic VAE: posterior head, prior, ELBO, IWAE bound and latent diagnostics."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from polyvae.domain import Batch, Decoder, Encoder

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per dimension, shape of ``mu``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def standard_normal_log_density(z: Tensor) -> Tensor:
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def kl_penalty(kl_per_dim: Tensor, free_bits: float) -> Tensor:
    """Batch-mean KL summed over dimensions, each dimension floored at ``free_bits`` nats
    (Kingma et al. 2016): dimensions under the floor get no gradient pushing them to the prior."""
    per_dim = kl_per_dim.mean(0)
    if free_bits > 0:
        per_dim = per_dim.clamp(min=free_bits)
    return per_dim.sum()


def repeat_batch(batch: Batch, times: int) -> Batch:
    """Each tensor repeated ``times`` along the item dimension, in blocks of all items."""
    return {
        name: tensor.repeat(times, *([1] * (tensor.dim() - 1))) for name, tensor in batch.items()
    }


class VAE(nn.Module):
    """Gaussian posterior over z on top of a domain's encoder; the domain's decoder gives p(x|z).

    With ``condition_dim > 0`` a condition vector c joins the encoder features (q(z|x,c)) and z
    (p(x|z,c)). With ``property_dim > 0`` a small head predicts item properties from z.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        latent_dim: int,
        condition_dim: int = 0,
        property_dim: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.condition_dim = condition_dim
        self.property_dim = property_dim
        self.posterior = nn.Linear(encoder.feature_dim + condition_dim, 2 * latent_dim)
        self.property_head = (
            nn.Sequential(nn.Linear(latent_dim, 128), nn.SiLU(), nn.Linear(128, property_dim))
            if property_dim
            else None
        )

    def posterior_params(
        self, batch: Batch, condition: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        features = self.encoder(batch)
        if self.condition_dim:
            features = torch.cat([features, condition.to(features.dtype)], dim=-1)
        mu, logvar = self.posterior(features).float().chunk(2, dim=-1)
        return mu, logvar

    def decoder_input(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        if self.condition_dim:
            return torch.cat([z, condition.to(z.dtype)], dim=-1)
        return z

    def forward(self, batch: Batch, condition: Tensor | None = None) -> dict[str, Tensor]:
        """One reparameterised sample per item: the per-item terms the trainer combines."""
        mu, logvar = self.posterior_params(batch, condition)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        log_px = self.decoder.log_prob(batch, self.decoder_input(z, condition)).float()
        terms = {
            "log_px": log_px,
            "kl_per_dim": gaussian_kl(mu, logvar),
            "mu": mu,
            "logvar": logvar,
        }
        if self.property_head is not None:
            terms["property_pred"] = self.property_head(z).float()
        return terms

    @torch.no_grad()
    def iwae_log_likelihood(
        self, batch: Batch, condition: Tensor | None = None, samples: int = 50, chunk: int = 10
    ) -> Tensor:
        """Importance-weighted estimate of log p(x) per item with ``samples`` draws (Burda et al.
        2016); exact in the limit and never above log p(x) in expectation."""
        mu, logvar = self.posterior_params(batch, condition)
        items = mu.shape[0]
        log_weights = []
        for start in range(0, samples, chunk):
            draws = min(chunk, samples - start)
            z = mu + torch.randn(draws, *mu.shape, device=mu.device) * (0.5 * logvar).exp()
            flat_z = z.reshape(draws * items, -1)
            flat_condition = condition.repeat(draws, 1) if self.condition_dim else None
            log_px = self.decoder.log_prob(
                repeat_batch(batch, draws), self.decoder_input(flat_z, flat_condition)
            ).float()
            log_pz = standard_normal_log_density(z)
            log_qz = gaussian_log_density(z, mu, logvar)
            log_weights.append(log_px.reshape(draws, items) + log_pz - log_qz)
        stacked = torch.cat(log_weights, dim=0)
        return torch.logsumexp(stacked, dim=0) - math.log(samples)


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """Dimensions whose posterior mean varies across items: Var_x E_q[z_d] > threshold
    (Burda et al. 2016)."""
    if mu.shape[0] < 2:
        return 0
    return int((mu.float().var(dim=0) > threshold).sum())


def mutual_information(mu: Tensor, logvar: Tensor) -> float:
    """Estimate of I(x; z) under q: E[log q(z|x)] - E[log q(z)], with the aggregate posterior q(z)
    approximated by the mixture of the given items' posteriors (Hoffman & Johnson 2016)."""
    items, dims = mu.shape
    if items < 2:
        return 0.0
    mu, logvar = mu.double(), logvar.double()
    neg_entropy = (-0.5 * dims * LOG_2PI - 0.5 * (1 + logvar).sum(-1)).mean()
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    # log q(z_i | x_j) for every pair, then log of the mixture over j.
    pairwise = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    log_qz = torch.logsumexp(pairwise, dim=1) - math.log(items)
    return float(neg_entropy - log_qz.mean())
