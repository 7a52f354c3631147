"""The torch side of the domain contract: the encoder and decoder bases that
:meth:`polyvae.domain.Domain.build` returns.

They live apart from :mod:`polyvae.domain` so that what only lists or configures domains
(``polyvae plugins``, reading options and presets) imports no torch; ``polyvae.domain.Encoder``
and ``polyvae.domain.Decoder`` still name these classes, loaded on first use.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from polyvae.domain import Batch


class Encoder(nn.Module):
    """Maps a batch to features of shape ``(batch, feature_dim)``; the engine adds the posterior."""

    feature_dim: int

    def forward(self, batch: Batch) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Decoder(nn.Module):
    """Owns the likelihood p(x | z). ``z`` has the size given to :meth:`Domain.build`."""

    def log_prob(self, batch: Batch, z: Tensor) -> Tensor:  # pragma: no cover - interface
        """log p(x | z) per item, shape ``(batch,)``, summed over the item's dimensions/tokens."""
        raise NotImplementedError

    def auxiliary_loss(self, batch: Batch, z: Tensor) -> Tensor | None:
        """An extra training loss per item, shape ``(batch,)``, that shapes what z holds (e.g. a
        bag-of-words term), or None (the default). Training adds it to the objective; it is no
        part of log p(x|z), the ELBO or any likelihood."""
        return None

    def generate(
        self, z: Tensor, temperature: float = 1.0, **options: Any
    ) -> Batch:  # pragma: no cover - interface
        """Decode ``z`` into a batch the codec can decode. ``temperature=0`` is the most likely
        output (greedy tokens, the mean image); higher values sample more freely."""
        raise NotImplementedError
