"""The images domain's model side: likelihoods against hand-checked values and
torch.distributions, network shapes, metrics, properties and the conformance kit."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import distributions as D

from polyvae.errors import UserError
from polyvae.plugins.images.codec import ImageCodec
from polyvae.plugins.images.domain import ImagesDomain
from polyvae.plugins.images.likelihoods import (
    Bernoulli,
    DiscretizedLogistic,
    Gaussian,
    discretized_logistic_log_prob,
)
from polyvae.plugins.images.metrics import (
    InceptionFeatures,
    fid_from_features,
    frechet_distance,
    kid_from_features,
    polynomial_mmd2,
    reconstruction_errors,
)
from polyvae.plugins.images.reader import Image, read_images
from polyvae.testing import check_domain, check_read

torch.set_num_threads(1)
TINY = {"threads": 1, "width": 4, "depth": 1}


@pytest.fixture(scope="module")
def fashion() -> list[Image]:
    """64 bundled Fashion-MNIST test images."""
    path = resources.files("polyvae.data") / "images" / "t10k-images-idx3-ubyte.gz"
    return read_images(str(path))[0][:64]


# --- likelihoods ---------------------------------------------------------------------------------


def test_discretized_logistic_masses_sum_to_one_and_match_the_cdf():
    values = torch.arange(256, dtype=torch.float64) / 127.5 - 1  # every 8-bit value on [-1, 1]
    for mu, log_scale in ((0.0, -2.0), (0.9, -4.0), (-1.2, 0.5), (0.3, -6.9)):
        mus = torch.full_like(values, mu)
        log_scales = torch.full_like(values, log_scale)
        log_p = discretized_logistic_log_prob(values, mus, log_scales)
        assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
        # Interior bins: the logistic CDF (torch.distributions) across the bin.
        logistic = D.TransformedDistribution(
            D.Uniform(
                torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
            ),
            [D.SigmoidTransform().inv, D.AffineTransform(mu, math.exp(log_scale))],
        )
        inner = values[1:-1]
        mass = logistic.cdf(inner + 1 / 255) - logistic.cdf(inner - 1 / 255)
        big = mass > 1e-5
        torch.testing.assert_close(log_p[1:-1][big], mass[big].log())
        torch.testing.assert_close(log_p[0].exp(), logistic.cdf(values[0] + 1 / 255))


def test_discretized_logistic_on_pixels_by_hand():
    pixels = torch.tensor([[[[0, 255], [128, 64]]]], dtype=torch.uint8)  # (1, 1, 2, 2)
    output = torch.zeros(1, 2, 2, 2)  # mu 0, log-scale 0
    total = DiscretizedLogistic().log_prob(pixels, output)
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = math.log(sigmoid(-1 + 1 / 255)) + math.log(1 - sigmoid(1 - 1 / 255))
    for value in (128, 64):
        y = value / 127.5 - 1
        expected += math.log(sigmoid(y + 1 / 255) - sigmoid(y - 1 / 255))
    assert total.shape == (1,) and total.item() == pytest.approx(expected, rel=1e-5)


def test_bernoulli_log_prob_binarisation_and_sampling():
    logits = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    binary = (torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(1)) > 0.5) * 255
    binary = binary.to(torch.uint8)
    expected = D.Bernoulli(logits=logits).log_prob(binary.float() / 255).flatten(1).sum(1)
    torch.testing.assert_close(Bernoulli().log_prob(binary, logits), expected)
    # Grey targets: logit 0 gives log 0.5 per pixel whatever the intensity.
    grey = torch.full((1, 1, 2, 2), 77, dtype=torch.uint8)
    assert Bernoulli().log_prob(grey, torch.zeros(1, 1, 2, 2)).item() == pytest.approx(
        4 * math.log(0.5)
    )
    # Dynamic binarisation: fresh draws in training (mean x / 255), a 0.5 threshold otherwise.
    dynamic = Bernoulli("dynamic")
    quarter = torch.full((1, 1, 100, 100), 64, dtype=torch.uint8)
    strong = torch.full((1, 1, 100, 100), 10.0)  # p(on) ~ 1: log p ~ 0 for on, -10 for off
    torch.manual_seed(0)
    off_share = -dynamic.log_prob(quarter, strong, training=True).item() / 10 / 10_000
    assert off_share == pytest.approx(1 - 64 / 255, abs=0.02)
    assert dynamic.log_prob(quarter, strong, training=False).item() == pytest.approx(
        10_000 * -F_softplus(10.0), rel=1e-5
    )
    assert torch.equal(Bernoulli().mean(torch.zeros(1, 1, 1, 1)), torch.tensor([[[[128]]]]).byte())
    assert Bernoulli().sample(torch.tensor([[[[3.0, -3.0]]]]), 0.0).tolist() == [[[[255, 0]]]]


def F_softplus(value: float) -> float:
    return math.log1p(math.exp(value))


@pytest.mark.parametrize("std", [0.0, 0.2])
def test_gaussian_log_prob_against_torch_normal(std):
    torch.manual_seed(2)
    pixels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    likelihood = Gaussian(std)
    output = torch.randn(2, 3 * likelihood.parameters_per_channel, 4, 4)
    if std:
        mu, sigma = output, torch.full_like(output, std)
    else:
        mu, log_std = output.chunk(2, dim=1)
        sigma = log_std.clamp(min=math.log(1 / 127.5)).exp()
    normal = D.Normal(mu, sigma).log_prob(pixels.float() / 127.5 - 1) - math.log(127.5)
    torch.testing.assert_close(likelihood.log_prob(pixels, output), normal.flatten(1).sum(1))
    assert torch.equal(likelihood.sample(output, 0.0), likelihood.mean(output))


def test_learned_gaussian_std_is_floored_at_one_level():
    likelihood = Gaussian()
    pixels = torch.zeros(1, 1, 1, 1, dtype=torch.uint8)
    collapsed = torch.tensor([[[[-1.0]], [[-50.0]]]])  # mu on the pixel, a vanishing std
    best = -0.5 * math.log(2 * math.pi) - math.log(1 / 127.5) - math.log(127.5)
    assert likelihood.log_prob(pixels, collapsed).item() == pytest.approx(best)


# --- networks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "likelihood", "out_channels"),
    [((28, 28, 1), "bernoulli", 1), ((28, 28, 1), "logistic", 2), ((64, 64, 3), "gaussian", 6)],
)
def test_network_shapes(shape, likelihood, out_channels):
    domain = ImagesDomain()
    config = domain.resolve_config({"width": 8, "depth": 2, "likelihood": likelihood})
    rng = np.random.default_rng(0)
    items = [Image(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(3)]
    codec = domain.fit_codec(items, config)
    encoder, decoder = domain.build(config, codec, 10)
    batch = codec.encode(items)
    features = encoder(batch)
    assert features.shape == (3, encoder.feature_dim)
    assert encoder.feature_dim == 16 * (shape[0] // 4) * (shape[1] // 4)
    z = torch.randn(3, 10)
    assert decoder(z).shape == (3, out_channels, shape[0], shape[1])
    assert decoder.log_prob(batch, z).shape == (3,)
    for pixels in ("mean", "sample"):
        generated = decoder.generate(z, temperature=1.0, pixels=pixels)["pixels"]
        assert generated.shape == (3, shape[2], shape[0], shape[1])
        assert generated.dtype == torch.uint8
    assert domain.unit_counts(batch).tolist() == [float(np.prod(shape))] * 3


def test_binarize_needs_bernoulli():
    domain = ImagesDomain()
    config = domain.resolve_config({"binarize": "dynamic"})  # likelihood stays logistic
    codec = ImageCodec(28, 28, 1)
    with pytest.raises(UserError, match="binarize applies to likelihood=bernoulli"):
        domain.build(config, codec, 8)


# --- metrics -------------------------------------------------------------------------------------


def test_frechet_distance_by_hand():
    # Diagonal covariances: |mu1 - mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)).
    mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, 1.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([4.0, 1.0])
    expected = 9.0 + (1 + 4 - 2 * 2) + (4 + 1 - 2 * 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected)
    features = np.random.default_rng(0).normal(size=(50, 3))
    assert fid_from_features(features, features) == pytest.approx(0.0, abs=1e-6)
    shifted = features + np.array([1.0, 0.0, 0.0])
    assert fid_from_features(shifted, features) == pytest.approx(1.0, rel=1e-6)


def test_kid_by_hand():
    # d = 1, k(a, b) = (ab + 1)^3. X = {0, 1}: k(0, 1) = 1. Y = {1, 2}: k(1, 2) = 27.
    # Cross terms 1, 1, 8, 27 (mean 9.25): MMD^2 = 1 + 27 - 2 * 9.25 = 9.5.
    assert polynomial_mmd2(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])) == pytest.approx(9.5)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    same, same_std = kid_from_features(x, y, subsets=10, subset_size=100)
    apart, _ = kid_from_features(x, y + 1.0, subsets=10, subset_size=100)
    assert abs(same) < 3 * same_std + 0.05 < apart
    # One subset holding everything is the plain unbiased MMD^2, with no spread.
    whole, spread = kid_from_features(x, y, subsets=3, subset_size=300)
    assert whole == pytest.approx(polynomial_mmd2(x, y)) and spread == pytest.approx(0, abs=1e-12)


def test_fid_without_inception_weights_says_so(tmp_path, monkeypatch, capsys, fashion):
    monkeypatch.setenv("POLYVAE_INCEPTION_WEIGHTS", str(tmp_path / "inception.pth"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UserError, match=r"no Inception-v3 weights at .*inception\.pth"):
        InceptionFeatures(tmp_path / "inception.pth")
    assert ImagesDomain().metrics(fashion[:4], fashion[4:8], []) == {}
    note = capsys.readouterr().err
    assert note.startswith("note: FID/KID not computed: no Inception-v3 weights")
    assert "inception_v3_google-0cc3c7bd.pth" in note and note.count("\n") == 1


def test_fid_and_kid_run_through_a_local_inception_file(tmp_path, monkeypatch, fashion):
    # The real weights cannot be downloaded here: a seeded random Inception-v3 saved as
    # torchvision saves its checkpoint exercises the same file, network and statistics.
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    weights = tmp_path / "inception_v3_google-0cc3c7bd.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=True).state_dict(), weights)
    monkeypatch.setenv("POLYVAE_INCEPTION_WEIGHTS", str(weights))
    shirts, others = fashion[:6], fashion[6:12]
    same = ImagesDomain().metrics(shirts, shirts, [])
    apart = ImagesDomain().metrics(shirts, others, [])
    assert set(same) == set(apart) == {"fid", "kid", "kid_std"}
    assert same["fid"] == pytest.approx(0.0, abs=1e-3)
    assert apart["fid"] > 1e-3 and math.isfinite(apart["kid"])
    wrong = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(UserError, match="does not hold Inception-v3 weights"):
        InceptionFeatures(wrong)


def test_reconstruction_errors_by_hand():
    black = Image(np.zeros((2, 2, 1), dtype=np.uint8))
    white = Image(np.full((2, 2, 1), 255, dtype=np.uint8))
    grey = Image(np.full((2, 2, 1), 51, dtype=np.uint8))  # 0.2
    errors = reconstruction_errors([black, black], [white, grey])
    assert errors["reconstruction_mse"] == pytest.approx((1 + 0.04) / 2)
    assert errors["reconstruction_mae"] == pytest.approx((1 + 0.2) / 2)
    assert errors["reconstruction_psnr"] == pytest.approx(10 * math.log10(1 / 0.52))
    assert reconstruction_errors([grey], [grey])["reconstruction_psnr"] == pytest.approx(100.0)


# --- domain --------------------------------------------------------------------------------------


def test_label_properties_and_item_text():
    items = [Image(np.zeros((4, 4), np.uint8), "3"), Image(np.zeros((4, 4), np.uint8), "coat")]
    values = ImagesDomain().properties(
        [*items, Image(np.zeros((4, 4), np.uint8))], ["label:3", "label"]
    )
    np.testing.assert_array_equal(values[:2], [[1.0, 3.0], [0.0, math.nan]])
    assert np.isnan(values[2]).all()
    with pytest.raises(UserError, match="unknown property 'size'"):
        ImagesDomain().properties(items, ["size"])
    text = ImagesDomain().format_item(items[0])
    assert text.startswith("4x4 grey image ") and text.endswith(" label=3")
    assert ImagesDomain().format_item(items[1]).split()[3] == items[0].digest()  # same pixels


def test_images_domain_passes_the_conformance_kit(fashion, tmp_path: Path):
    labelled = tmp_path / "folder" / "coat"
    labelled.mkdir(parents=True)
    for index, image in enumerate(fashion[:3]):
        image.to_pil().save(labelled / f"{index}.png")
    read = check_read(ImagesDomain(), tmp_path / "folder")
    assert [image.label for image in read] == ["coat"] * 3
    model = check_domain(ImagesDomain(), fashion[:16], tmp_path, TINY)
    results = model.evaluate(fashion[:8], k=2, samples=0)
    assert results["nll_per_dim"] == pytest.approx(results["iwae_nll"] / 784)
    assert results["bits_per_dim"] == pytest.approx(results["nll_per_dim"] / math.log(2))
    assert 0 <= results["reconstruction_mse"] <= 1 and results["reconstruction_psnr"] > 0
    noisy = model.sample(2, seed=3, pixels="sample", temperature=1.0)
    assert noisy[0].pixels.shape == (28, 28, 1)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_other_likelihoods_train(fashion, tmp_path, likelihood):
    config = {**TINY, "likelihood": likelihood}
    if likelihood == "bernoulli":
        config["binarize"] = "dynamic"
    check_domain(ImagesDomain(), fashion[:12], tmp_path, config)


def test_class_conditional_model_follows_the_label(fashion, tmp_path):
    import polyvae

    config = {
        **TINY,
        "condition": ["label:0", "label:1"],
        "max_steps": 2,
        "epochs": 1,
        "batch_size": 8,
        "latent_dim": 4,
        "device": "cpu",
    }
    result = polyvae.train(
        ImagesDomain(),
        data=fashion[:32],
        config=config,
        out=tmp_path / "run",
        progress=False,
        log=lambda message: None,
    )
    model = polyvae.load(result.run_dir, domain=ImagesDomain())
    assert model.condition_names == ["label:0", "label:1"]
    first = model.sample(2, seed=0, condition={"label:0": 1.0, "label:1": 0.0})
    second = model.sample(2, seed=0, condition={"label:0": 0.0, "label:1": 1.0})
    assert not np.array_equal(first[0].pixels, second[0].pixels)
    with pytest.raises(UserError, match="unknown condition label:7"):
        model.sample(1, condition={"label:7": 1.0})


def test_a_torchvision_run_reads_its_data_again(tmp_path):
    import polyvae

    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(5).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    header = bytes([0, 0, 8, 3, 0, 0, 0, 12, 0, 0, 0, 28, 0, 0, 0, 28])
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 8, 1, 0, 0, 0, 12]) + bytes(range(12))
        )
    config = {**TINY, "torchvision_root": str(tmp_path / "tv"), "split": "test", "max_steps": 1}
    config.update(epochs=1, batch_size=4, latent_dim=4, device="cpu", val_fraction=0.25)
    result = polyvae.train(
        ImagesDomain(),
        data="torchvision:FashionMNIST",
        config=config,
        out=tmp_path / "run",
        progress=False,
        log=lambda message: None,
    )
    model = polyvae.load(result.run_dir, domain=ImagesDomain())
    assert model.meta["data"]["source"] == "torchvision:FashionMNIST"
    training, validation = model.data_splits()
    assert (len(training), len(validation)) == (9, 3)
    assert validation[0].label is not None
