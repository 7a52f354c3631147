"""The conformance kit passes a good domain and names exactly what a broken one did wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from polyvae_gaussmix import GaussianDecoder, GaussMixDomain, mixture

from polyvae.testing import ConformanceError, check_domain, check_read


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


# --- what the kit says about other mistakes ------------------------------------------------------


class SampledGreedyDecoder(GaussianDecoder):
    def generate(self, z, temperature=1.0, **options):
        return super().generate(z, temperature=1.0)


class NoisyGreedyDomain(GaussMixDomain):
    def build(self, config, codec, latent_dim):
        encoder, _ = super().build(config, codec, latent_dim)
        return encoder, SampledGreedyDecoder(latent_dim, len(codec.mean), config["hidden"])


class OneModuleDomain(GaussMixDomain):
    def build(self, config, codec, latent_dim):
        return super().build(config, codec, latent_dim)[0]


class BadUnitsDomain(GaussMixDomain):
    likelihood_unit = "dim"

    def unit_counts(self, batch):
        return torch.full((len(batch["x"]), 1), 6.0)


class TextMetricDomain(GaussMixDomain):
    def metrics(self, generated, reference, training):
        return {"quality": "good"}


class ListReaderDomain(GaussMixDomain):
    def read(self, source, config):
        return super().read(source, config)[0]


class ForgivingReaderDomain(GaussMixDomain):
    def read(self, source, config):
        return super().read(source if Path(source).exists() else self.good, config)


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        (
            NoisyGreedyDomain(),
            r"^decoder\.generate\(z, temperature=0\.0\)\['x'\]: expected the same batch on every "
            r"call \(temperature 0 is the most likely output\) \(shape \(4, 6\)\), got a tensor of "
            r"that shape differing by up to [0-9.e+-]+ \(most in row \d; 24 of 24 values differ\)$",
        ),
        (
            OneModuleDomain(),
            r"^gaussmix\.build\(\): expected a pair \(encoder, decoder\), got a single MLPEncoder "
            r"module$",
        ),
        (
            BadUnitsDomain(),
            r"^gaussmix\.unit_counts\(batch\) \(likelihood_unit 'dim'\): expected a tensor of "
            r"shape \(4,\) \(units per item\), got Tensor of shape \(4, 1\)$",
        ),
        (
            TextMetricDomain(),
            r"^gaussmix\.metrics\(generated, reference, training\)\['quality'\]: expected a "
            r"float, got str 'good'$",
        ),
    ],
)
def test_kit_names_each_broken_method(tmp_path, domain, message):
    with pytest.raises(ConformanceError, match=message):
        check_domain(domain, list(mixture(16)), tmp_path)


def test_read_check_passes_a_good_reader_and_names_a_bad_one(tmp_path, mixture_csv):
    items = check_read(GaussMixDomain(), mixture_csv)
    assert len(items) == 2000 and items[0].shape == (6,)
    with pytest.raises(
        ConformanceError,
        match=r"^gaussmix\.read\('mixture\.csv', config\): expected a pair \(items, ReadReport\), "
        r"got list of length 2000$",
    ):
        check_read(ListReaderDomain(), mixture_csv)
    forgiving = ForgivingReaderDomain()
    forgiving.good = mixture_csv
    with pytest.raises(
        ConformanceError,
        match=r"^gaussmix\.read\(a missing path\): expected FileNotFoundError \(or a UserError "
        r"naming the path\), got items$",
    ):
        check_read(forgiving, mixture_csv)
