"""The conformance kit passes a good domain and names exactly what a broken one did wrong."""

from __future__ import annotations

import pytest
import torch
from polyvae_gaussmix import GaussianDecoder, GaussMixDomain, mixture

from polyvae.testing import ConformanceError, check_domain


def test_gaussmix_passes_the_kit(tmp_path, registry):
    model = check_domain(GaussMixDomain(), list(mixture(32)), tmp_path)
    assert model.latent_dim == 4


class ShortLogProb(GaussianDecoder):
    def log_prob(self, batch, z):
        return super().log_prob(batch, z).unsqueeze(1)


class WrongShapeDomain(GaussMixDomain):
    def build(self, config, codec, latent_dim):
        encoder, _ = super().build(config, codec, latent_dim)
        return encoder, ShortLogProb(latent_dim, len(codec.mean), config["hidden"])


class LossyCodecDomain(GaussMixDomain):
    def fit_codec(self, items, config):
        codec = super().fit_codec(items, config)
        codec.decode = lambda batch: [row[:-1] for row in batch["x"].numpy()]
        return codec


def test_kit_names_the_method_and_shapes(tmp_path):
    with pytest.raises(ConformanceError) as error:
        check_domain(WrongShapeDomain(), list(mixture(16)), tmp_path / "a")
    assert str(error.value) == (
        "decoder.log_prob(batch, z): expected a tensor of shape (4,) (one log-likelihood per "
        "item), got Tensor of shape (4, 1)"
    )
    lossy = r"Codec.encode\(Codec.decode\(batch\)\) raised UserError: items have 5 values"
    with pytest.raises(ConformanceError, match=lossy):
        check_domain(LossyCodecDomain(), list(mixture(16)), tmp_path / "b")
    with pytest.raises(ConformanceError, match="at least 8 items"):
        check_domain(GaussMixDomain(), [torch.zeros(3)], tmp_path / "c")
