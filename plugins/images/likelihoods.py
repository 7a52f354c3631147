"""Pixel likelihoods p(x | decoder output) for 8-bit images, summed per image, in nats.

Each likelihood turns the decoder's raw output (``parameters_per_channel`` maps per image
channel) into a log-probability of the uint8 pixels, a mean image and a sampled image:

- ``bernoulli``: one logit per pixel. The target is the intensity x / 255 (the usual
  cross-entropy on grey data, not a normalised likelihood of 8-bit values), or a binarised image:
  ``binarize=dynamic`` draws a fresh binarisation (pixel on with probability x / 255) at every
  training step (Salakhutdinov & Murray 2008) and thresholds at 0.5 in evaluation, so that the
  IWAE bound's repeated copies of an image agree; ``binarize=threshold`` always thresholds.
- ``gaussian``: a mean per pixel on [-1, 1] and either a learned standard deviation per pixel
  (floored at one 8-bit level) or a fixed one (``gaussian_std``). The density is taken over pixel
  values in 8-bit units (the density on [-1, 1] divided by 127.5 per dimension), so it
  approximates the probability of each 8-bit value and its bits/dim compare with the others'.
- ``logistic``: the discretised logistic of PixelCNN++ (Salimans et al. 2017), one component: the
  probability mass of each of the 256 bins of width 2/255 on [-1, 1], the edge bins taking the
  tails. A proper distribution over 8-bit values: its masses sum to 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from polyvae.plugins.images.choices import LIKELIHOODS

HALF_BIN = 1.0 / 255.0  # half the width of an 8-bit bin on [-1, 1]
LOG_HALF_RANGE = math.log(127.5)  # [-1, 1] -> 0..255 units
MIN_LOG_SCALE = -7.0
GAUSSIAN_MIN_STD = 1.0 / 127.5  # one 8-bit level on [-1, 1]


def to_unit(pixels: Tensor) -> Tensor:
    """uint8 0..255 -> float [0, 1]."""
    return pixels.float() / 255.0


def to_symmetric(pixels: Tensor) -> Tensor:
    """uint8 0..255 -> float [-1, 1]."""
    return pixels.float() / 127.5 - 1.0


def from_unit(values: Tensor) -> Tensor:
    return (values.float().clamp(0, 1) * 255.0).round().to(torch.uint8)


def from_symmetric(values: Tensor) -> Tensor:
    return ((values.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def binarize(pixels: Tensor, mode: str, training: bool) -> Tensor:
    """The Bernoulli target in [0, 1] for ``pixels`` (uint8)."""
    intensity = to_unit(pixels)
    if mode == "none":
        return intensity
    if mode == "dynamic" and training:
        return torch.bernoulli(intensity)
    return (intensity >= 0.5).float()


class Likelihood:
    """Base: ``log_prob(pixels, output)`` per image; ``mean`` and ``sample`` give uint8 images."""

    parameters_per_channel = 1

    def log_prob(self, pixels: Tensor, output: Tensor, training: bool = False) -> Tensor:
        return self.log_prob_per_pixel(pixels, output, training).flatten(1).sum(-1)

    def log_prob_per_pixel(self, pixels: Tensor, output: Tensor, training: bool) -> Tensor:
        raise NotImplementedError

    def mean(self, output: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, output: Tensor, temperature: float) -> Tensor:
        raise NotImplementedError


class Bernoulli(Likelihood):
    def __init__(self, binarize: str = "none") -> None:
        self.binarize = binarize

    def log_prob_per_pixel(self, pixels: Tensor, output: Tensor, training: bool) -> Tensor:
        target = binarize(pixels, self.binarize, training)
        return -F.binary_cross_entropy_with_logits(output.float(), target, reduction="none")

    def mean(self, output: Tensor) -> Tensor:
        return from_unit(torch.sigmoid(output.float()))

    def sample(self, output: Tensor, temperature: float) -> Tensor:
        if temperature == 0:
            return from_unit((output.float() > 0).float())
        return from_unit(torch.bernoulli(torch.sigmoid(output.float() / temperature)))


class Gaussian(Likelihood):
    """Learned per-pixel standard deviation when ``std`` is 0, else that fixed value on [-1, 1]."""

    def __init__(self, std: float = 0.0) -> None:
        self.std = std
        self.parameters_per_channel = 1 if std else 2

    def _split(self, output: Tensor) -> tuple[Tensor, Tensor]:
        output = output.float()
        if self.std:
            return output, torch.full_like(output, math.log(self.std))
        mu, log_std = output.chunk(2, dim=1)
        return mu, log_std.clamp(min=math.log(GAUSSIAN_MIN_STD))

    def log_prob_per_pixel(self, pixels: Tensor, output: Tensor, training: bool) -> Tensor:
        mu, log_std = self._split(output)
        value = to_symmetric(pixels)
        density = (
            -0.5 * math.log(2 * math.pi) - log_std - 0.5 * ((value - mu) / log_std.exp()).pow(2)
        )
        return density - LOG_HALF_RANGE

    def mean(self, output: Tensor) -> Tensor:
        return from_symmetric(self._split(output)[0])

    def sample(self, output: Tensor, temperature: float) -> Tensor:
        mu, log_std = self._split(output)
        return from_symmetric(mu + temperature * log_std.exp() * torch.randn_like(mu))


class DiscretizedLogistic(Likelihood):
    parameters_per_channel = 2

    def _split(self, output: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_scale = output.float().chunk(2, dim=1)
        return mu, log_scale.clamp(min=MIN_LOG_SCALE)

    def log_prob_per_pixel(self, pixels: Tensor, output: Tensor, training: bool) -> Tensor:
        mu, log_scale = self._split(output)
        return discretized_logistic_log_prob(to_symmetric(pixels), mu, log_scale)

    def mean(self, output: Tensor) -> Tensor:
        return from_symmetric(self._split(output)[0])

    def sample(self, output: Tensor, temperature: float) -> Tensor:
        mu, log_scale = self._split(output)
        uniform = torch.rand_like(mu).clamp(1e-5, 1 - 1e-5)
        noise = torch.log(uniform) - torch.log1p(-uniform)
        return from_symmetric(mu + temperature * log_scale.exp() * noise)


def discretized_logistic_log_prob(value: Tensor, mu: Tensor, log_scale: Tensor) -> Tensor:
    """log P(x) of 8-bit values ``value`` (on [-1, 1]) under a logistic(mu, exp(log_scale))
    discretised into 256 bins; the bins of 0 and 255 take the tails."""
    centred = value - mu
    inv_scale = torch.exp(-log_scale)
    plus = inv_scale * (centred + HALF_BIN)
    minus = inv_scale * (centred - HALF_BIN)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus), for the 0 bin
    log_one_minus_cdf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)), for the 255 bin
    mass = torch.sigmoid(plus) - torch.sigmoid(minus)
    # Where the mass underflows, the density at the bin centre times the bin width.
    middle = inv_scale * centred
    log_density = middle - log_scale - 2.0 * F.softplus(middle) + math.log(2 * HALF_BIN)
    log_mass = torch.where(mass > 1e-5, torch.log(mass.clamp(min=1e-12)), log_density)
    return torch.where(
        value < -0.999,
        log_cdf_plus,
        torch.where(value > 0.999, log_one_minus_cdf_minus, log_mass),
    )


def make_likelihood(name: str, binarize: str = "none", gaussian_std: float = 0.0) -> Likelihood:
    if name == "bernoulli":
        return Bernoulli(binarize)
    if name == "gaussian":
        return Gaussian(gaussian_std)
    if name == "logistic":
        return DiscretizedLogistic()
    raise ValueError(f"likelihood {name!r} is not one of: {', '.join(LIKELIHOODS)}")
