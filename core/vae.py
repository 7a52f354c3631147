"""The domain-agnostic VAE: posterior head, prior, ELBO, IWAE bound and latent diagnostics."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from polyvae.domain import Batch, Decoder, Encoder

LOG_2PI = math.log(2 * math.pi)
# Var_x E_q[z_d] above this marks dimension d as an active unit (Burda et al. 2016).
ACTIVE_UNIT_THRESHOLD = 0.01
# Mutual information compares every pair of items: its estimate uses the first this many.
MI_ITEMS = 2000
# Fewer items give no mutual information estimate (NaN): measured over 20 random subsets, it
# spread by 1-1.5 nats at 10 items (and went negative), 0.3-0.5 at 100 (docs/configuration.md).
MI_MIN_ITEMS = 100


class Terms(NamedTuple):
    """Per-item terms of one reparameterised pass (a tuple, so DDP and torch.compile see its
    tensors): log p(x|z), KL per latent dimension, the posterior, property predictions, and the
    decoder's auxiliary loss (in training, when it has one)."""

    log_px: Tensor
    kl_per_dim: Tensor
    mu: Tensor
    logvar: Tensor
    property_pred: Tensor | None = None
    auxiliary: Tensor | None = None


class Loss(NamedTuple):
    """The training objective and its parts, batch means in nats."""

    total: Tensor
    recon: Tensor
    kl: Tensor
    property: Tensor
    auxiliary: Tensor | None = None


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per dimension, shape of ``mu``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def pairwise_gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``[i, j] = log N(z_i; mu_j, diag(exp(logvar_j)))`` for z (N, D) and mu, logvar (M, D).
    The square is expanded into matrix products, so no (N, M, D) tensor is built: for the
    2,000 x 2,000 pairs of a 64-dimensional latent, broadcasting held 7 GB with its temporaries."""
    precision = (-logvar).exp()
    per_component = LOG_2PI * mu.shape[1] + logvar.sum(-1) + (mu.pow(2) * precision).sum(-1)
    quadratic = z.pow(2) @ precision.T - 2 * z @ (mu * precision).T
    return -0.5 * (quadratic + per_component)


def standard_normal_log_density(z: Tensor) -> Tensor:
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def kl_penalty(kl_per_dim: Tensor, free_bits: float) -> Tensor:
    """Batch-mean KL summed over dimensions, each dimension floored at ``free_bits`` nats
    (Kingma et al. 2016): dimensions under the floor get no gradient pushing them to the prior."""
    per_dim = kl_per_dim.mean(0)
    if free_bits > 0:
        per_dim = per_dim.clamp(min=free_bits)
    return per_dim.sum()


def training_loss(
    terms: Terms,
    beta: float,
    free_bits: float = 0.0,
    property_target: Tensor | None = None,
    property_weight: float = 1.0,
) -> Loss:
    """The beta-weighted negative ELBO with free bits, plus the property head's squared error
    when it has a target and the decoder's auxiliary loss when it has one: what training
    minimises. ``recon`` and ``kl`` are the plain terms."""
    recon = -terms.log_px.mean()
    kl = terms.kl_per_dim.sum(-1).mean()
    total = recon + beta * kl_penalty(terms.kl_per_dim, free_bits)
    property_loss = torch.zeros(())
    if property_target is not None and terms.property_pred is not None:
        property_loss = nn.functional.mse_loss(terms.property_pred, property_target)
        total = total + property_weight * property_loss
    auxiliary = None
    if terms.auxiliary is not None:
        auxiliary = terms.auxiliary.mean()
        total = total + auxiliary
    return Loss(total, recon, kl, property_loss, auxiliary)


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
            assert condition is not None, "a conditioned model needs its condition"
            features = torch.cat([features, condition.to(features.dtype)], dim=-1)
        mu, logvar = self.posterior(features).float().chunk(2, dim=-1)
        return mu, logvar

    def decoder_input(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        if self.condition_dim:
            assert condition is not None, "a conditioned model needs its condition"
            return torch.cat([z, condition.to(z.dtype)], dim=-1)
        return z

    def forward(self, batch: Batch, condition: Tensor | None = None) -> Terms:
        """One reparameterised sample per item: the per-item terms the loss combines."""
        mu, logvar = self.posterior_params(batch, condition)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        decoder_z = self.decoder_input(z, condition)
        log_px = self.decoder.log_prob(batch, decoder_z).float()
        prediction = self.property_head(z).float() if self.property_head is not None else None
        auxiliary = self.decoder.auxiliary_loss(batch, decoder_z) if self.training else None
        if auxiliary is not None:
            auxiliary = auxiliary.float()
        return Terms(log_px, gaussian_kl(mu, logvar), mu, logvar, prediction, auxiliary)

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
            flat_condition = (
                condition.repeat(draws, 1) if self.condition_dim and condition is not None else None
            )
            log_px = self.decoder.log_prob(
                repeat_batch(batch, draws), self.decoder_input(flat_z, flat_condition)
            ).float()
            log_pz = standard_normal_log_density(z)
            log_qz = gaussian_log_density(z, mu, logvar)
            log_weights.append(log_px.reshape(draws, items) + log_pz - log_qz)
        stacked = torch.cat(log_weights, dim=0)
        return torch.logsumexp(stacked, dim=0) - math.log(samples)


def mutual_information(mu: Tensor, logvar: Tensor) -> float:
    """Estimate of I(x; z) under q: E[log q(z|x)] - E[log q(z)], with the aggregate posterior q(z)
    approximated by the mixture of the given items' posteriors (Hoffman & Johnson 2016). It
    cannot exceed log(items) and its noise shrinks with the items: NaN under MI_MIN_ITEMS. Not
    clamped at 0: a negative value is noise around a collapsed latent's true 0, and clamping
    would bias such a latent's estimate upwards."""
    items, dims = mu.shape
    if items < MI_MIN_ITEMS:
        return math.nan
    mu, logvar = mu.double(), logvar.double()
    neg_entropy = (-0.5 * dims * LOG_2PI - 0.5 * (1 + logvar).sum(-1)).mean()
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    # log q(z_i | x_j) for every pair, then log of the mixture over j.
    log_qz = torch.logsumexp(pairwise_gaussian_log_density(z, mu, logvar), dim=1) - math.log(items)
    return float(neg_entropy - log_qz.mean())


class LatentStatistics:
    """Sums over items of the ELBO's terms and of the posterior means, in float64, from which the
    per-item means, Var_x E_q[z_d] (active units) and the mutual information follow. Validation,
    likelihood, scoring and training's live count all use it; under DDP each rank adds its own
    items and :meth:`reduce` adds the ranks' sums. ``keep_mi_rows=False`` skips the copies the
    mutual information needs, for training's live count, which never reports it."""

    def __init__(
        self, latent_dim: int, device: torch.device | str = "cpu", keep_mi_rows: bool = True
    ) -> None:
        def zeros(*shape: int) -> Tensor:
            return torch.zeros(*shape, dtype=torch.float64, device=device)

        self.totals = zeros(3)  # log p(x|z), KL, item count
        self.mu_sum = zeros(latent_dim)
        self.mu_sq_sum = zeros(latent_dim)
        self.kl_dim_sum = zeros(latent_dim)
        self.keep_mi_rows = keep_mi_rows
        self.mi_rows: list[tuple[Tensor, Tensor]] = []  # the first MI_ITEMS posteriors

    @property
    def count(self) -> int:
        return round(float(self.totals[2]))

    def add(self, terms: Terms) -> None:
        self.add_posterior(terms.mu, terms.logvar, terms.kl_per_dim)
        log_px = terms.log_px.detach().double()
        kl = terms.kl_per_dim.detach().double().sum(-1)
        self.totals[:2] += torch.stack([log_px.sum(), kl.sum()])

    def add_posterior(self, mu: Tensor, logvar: Tensor, kl_per_dim: Tensor | None = None) -> None:
        """The posterior part alone (training's live active-unit count needs no more)."""
        mu = mu.detach()
        wide = mu.double()
        self.totals[2] += len(mu)
        self.mu_sum += wide.sum(0)
        self.mu_sq_sum += wide.pow(2).sum(0)
        if kl_per_dim is not None:
            self.kl_dim_sum += kl_per_dim.detach().double().sum(0)
        kept = sum(len(part) for part, _ in self.mi_rows)
        if self.keep_mi_rows and kept < MI_ITEMS:
            rows = slice(0, MI_ITEMS - kept)
            self.mi_rows.append((mu[rows].float().cpu(), logvar.detach()[rows].float().cpu()))

    def reduce(self, place) -> None:
        """Add every rank's sums (``place`` is a ``polyvae.distributed.Context``); each rank then
        holds the totals, and the MI rows of the lowest ranks up to MI_ITEMS."""
        if not place.enabled:
            return
        for tensor in (self.totals, self.mu_sum, self.mu_sq_sum, self.kl_dim_sum):
            place.sum_(tensor)
        if not self.keep_mi_rows:
            return
        parts = place.gather(self._mi_tensors())
        rows = [part for part in parts if part is not None]
        mu = torch.cat([mu for mu, _ in rows])[:MI_ITEMS] if rows else torch.zeros(0)
        logvar = torch.cat([lv for _, lv in rows])[:MI_ITEMS] if rows else torch.zeros(0)
        self.mi_rows = [(mu, logvar)] if rows else []

    def _mi_tensors(self) -> tuple[Tensor, Tensor] | None:
        if not self.mi_rows:
            return None
        return torch.cat([mu for mu, _ in self.mi_rows]), torch.cat([lv for _, lv in self.mi_rows])

    def latent_variance(self) -> Tensor | None:
        """Var_x E_q[z_d] (unbiased, as torch.var), or None under two items."""
        count = self.count
        if count < 2:
            return None
        return (self.mu_sq_sum - self.mu_sum.pow(2) / count) / (count - 1)

    def active_units(self) -> int:
        variance = self.latent_variance()
        return 0 if variance is None else int((variance > ACTIVE_UNIT_THRESHOLD).sum())

    def mutual_information(self) -> float:
        rows = self._mi_tensors()
        return math.nan if rows is None else mutual_information(*rows)

    def results(self) -> dict[str, float]:
        """Per-item ELBO, reconstruction and KL in nats, active units and mutual information."""
        count = max(self.count, 1)
        log_px, kl = (self.totals[:2] / count).tolist()
        return {
            "elbo": log_px - kl,
            "recon": -log_px,
            "kl": kl,
            "active_units": self.active_units(),
            "mutual_info": self.mutual_information(),
        }

    def kl_per_dim_max(self) -> float:
        return float((self.kl_dim_sum / max(self.count, 1)).max())
