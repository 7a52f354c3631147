"""Convolutional encoder and decoder with residual blocks, for images with sides a multiple of 4.

The encoder works at three resolutions (full, 1/2, 1/4) with ``width``, ``2 width`` and
``2 width`` channels, ``depth`` residual blocks at each, and strided 3x3 convolutions between
them; a 1x1 convolution then narrows the 1/4-resolution map to ``BOTTLENECK`` channels, flattened
into the features the engine's posterior head reads. The decoder mirrors it: a linear layer from
z to that map, then residual blocks and nearest-neighbour upsampling followed by a 3x3
convolution (resize-convolution, free of the checkerboard artefacts of transposed convolutions),
ending in the likelihood's parameters per pixel.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from polyvae.domain import Batch, Decoder, Encoder
from polyvae.plugins.images.likelihoods import Likelihood, to_symmetric

BOTTLENECK = 16  # channels of the flattened 1/4-resolution map


class ResidualBlock(nn.Module):
    """x + conv(act(conv(act(x)))); the second convolution starts at zero, so each block begins
    as the identity and deep stacks train from the first step."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        last = self.body[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _stage(channels: int, depth: int) -> list[nn.Module]:
    return [ResidualBlock(channels) for _ in range(depth)]


class ConvEncoder(Encoder):
    def __init__(self, channels: int, height: int, width_px: int, width: int, depth: int) -> None:
        super().__init__()
        wide = 2 * width
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            *_stage(width, depth),
            nn.SiLU(),
            nn.Conv2d(width, wide, 3, stride=2, padding=1),
            *_stage(wide, depth),
            nn.SiLU(),
            nn.Conv2d(wide, wide, 3, stride=2, padding=1),
            *_stage(wide, depth),
            nn.SiLU(),
            nn.Conv2d(wide, BOTTLENECK, 1),
            nn.SiLU(),
            nn.Flatten(),
        )
        self.feature_dim = BOTTLENECK * (height // 4) * (width_px // 4)

    def forward(self, batch: Batch) -> Tensor:
        return self.net(to_symmetric(batch["pixels"]))


class ConvDecoder(Decoder):
    def __init__(
        self,
        latent_dim: int,
        channels: int,
        height: int,
        width_px: int,
        width: int,
        depth: int,
        likelihood: Likelihood,
    ) -> None:
        super().__init__()
        wide = 2 * width
        self.likelihood = likelihood
        self.shape = (BOTTLENECK, height // 4, width_px // 4)
        self.project = nn.Linear(latent_dim, BOTTLENECK * (height // 4) * (width_px // 4))
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.Conv2d(BOTTLENECK, wide, 1),
            *_stage(wide, depth),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(wide, wide, 3, padding=1),
            *_stage(wide, depth),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(wide, width, 3, padding=1),
            *_stage(width, depth),
            nn.SiLU(),
            nn.Conv2d(width, channels * likelihood.parameters_per_channel, 3, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        """The likelihood's parameters: ``(batch, channels * parameters_per_channel, h, w)``."""
        return self.net(self.project(z).view(-1, *self.shape))

    def log_prob(self, batch: Batch, z: Tensor) -> Tensor:
        return self.likelihood.log_prob(batch["pixels"], self(z), training=self.training)

    def generate(
        self, z: Tensor, temperature: float = 1.0, pixels: str = "mean", **options: Any
    ) -> Batch:
        """``pixels="mean"``: the mean image of p(x | z) (how VAE samples are usually shown; the
        temperature does not apply). ``pixels="sample"``: every pixel drawn from p(x | z) with its
        noise scaled by ``temperature`` (0: the most likely value)."""
        if pixels not in ("mean", "sample"):
            raise ValueError(f"pixels {pixels!r} is not one of: mean, sample")
        output = self(z)
        if pixels == "mean":
            return {"pixels": self.likelihood.mean(output)}
        return {"pixels": self.likelihood.sample(output, temperature)}
