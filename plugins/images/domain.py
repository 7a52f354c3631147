"""The images domain: a convolutional VAE with residual blocks and a choice of pixel likelihoods.

Items are :class:`~polyvae.plugins.images.reader.Image` objects (uint8 pixels and an optional
label). Labels become the properties ``label`` (a numeric label's value) and ``label:VALUE``
(1 for images labelled VALUE, else 0), so the engine's ``condition`` gives a class-conditional
VAE: ``--set condition=label:0,label:1,...``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polyvae.config import Option
from polyvae.domain import Batch, Domain, Panel, ReadReport
from polyvae.errors import UserError
from polyvae.plugins.images.choices import BINARIZE, LIKELIHOODS
from polyvae.plugins.shared import bundled_run, label_properties

# The pieces below import torch and torchvision: each method imports what it uses, so that
# listing the plugins (which creates the domain) loads neither.
if TYPE_CHECKING:
    from torch import Tensor

    from polyvae.plugins.images.codec import ImageCodec
    from polyvae.plugins.images.networks import ConvDecoder, ConvEncoder
    from polyvae.plugins.images.reader import Image

# Sized for one CPU core: 28x28 Fashion-MNIST at about 180 images a second on one thread, so
# 24 epochs of 16k images fit the 40-minute limit.
SMALL_PRESET: dict[str, Any] = {
    "width": 16,
    "depth": 1,
    "latent_dim": 16,
    "batch_size": 64,
    "lr": 2e-3,
    "beta_warmup_steps": 2000,
    "epochs": 24,
    "patience": 6,
    "time_limit": 40.0,
}
# For 64x64 RGB and up, on a GPU.
LARGE_PRESET: dict[str, Any] = {
    "width": 64,
    "depth": 2,
    "latent_dim": 128,
    "batch_size": 128,
    "epochs": 100,
    "patience": 10,
}


class ImagesDomain(Domain):
    """See the module docstrings of the reader, codec, networks, likelihoods and metrics."""

    name = "images"
    description = "images: a convolutional VAE with residual blocks (grey or RGB, sides of 4k)"
    likelihood_unit = "dim"
    # Each item costs k decoder passes: k=100 on 200 items keeps `polyvae evaluate images` near
    # a minute on 2 CPU cores (k=1000 on 500 items took over 10); -k 1000 tightens the bound.
    importance_samples = 100
    likelihood_items = 200
    # Refining raises the likelihood the bundled model was trained on (Bernoulli cross-entropy on
    # grey pixels: 200 validation images, -149 to -102 nats a picture after 25 steps) and makes
    # the picture worse to the eye: brighter, squared error 0.012 -> 0.021
    # (benchmarks/latent_refinement.py --parts images). So the grids decode the encoder's code.
    refine_steps = 0
    default_suffix = ".png"
    options = (
        Option(
            "size", 0, "side of the square images (0: the images' own most common size)", minimum=0
        ),
        Option("channels", 0, "1 (grey) or 3 (RGB); 0: grey if every image is", choices=(0, 1, 3)),
        Option("crop", True, "centre-crop to the target's aspect ratio before resizing"),
        Option(
            "likelihood",
            "logistic",
            "pixel likelihood: discretised logistic, Bernoulli or Gaussian",
            choices=LIKELIHOODS,
        ),
        Option(
            "binarize",
            "none",
            "Bernoulli targets: intensities, binarised afresh each step (dynamic), or at 0.5",
            choices=BINARIZE,
        ),
        Option(
            "gaussian_std",
            0.0,
            "fixed standard deviation of the Gaussian likelihood on [-1, 1] (0: learned)",
            minimum=0.0,
        ),
        Option("width", 64, "channels at full resolution (twice that at 1/2 and 1/4)", minimum=1),
        Option("depth", 2, "residual blocks at each of the three resolutions", minimum=0),
        Option("split", "train", "torchvision:NAME data: which split", choices=("train", "test")),
        Option(
            "torchvision_root",
            "~/.cache/polyvae/torchvision",
            "folder holding torchvision data sets",
        ),
        Option("download", False, "let torchvision:NAME download a missing data set"),
    )
    presets = {"small": SMALL_PRESET, "large": LARGE_PRESET}
    generate_options = (
        Option(
            "pixels",
            "mean",
            "mean: the decoder's mean image; sample: draw pixels at --temperature",
            choices=("mean", "sample"),
        ),
    )
    write_options = (
        Option("each", False, "one image file per item, in the folder named by -o without suffix"),
        Option("nrow", 0, "images per row of a grid (0: as square as possible)", minimum=0),
    )

    # --- data ----------------------------------------------------------------------------------

    def read(self, source: str | Path, config: Mapping[str, Any]) -> tuple[list[Image], ReadReport]:
        from polyvae.plugins.images.reader import ImageFormat, TorchvisionSource, read_images

        form = ImageFormat(size=config["size"], channels=config["channels"], crop=config["crop"])
        torchvision = TorchvisionSource(
            root=config["torchvision_root"], split=config["split"], download=config["download"]
        )
        return read_images(source, form, torchvision)

    def parse_item(self, text: str) -> Image:
        """A path to an image file."""
        from polyvae.plugins.images.reader import read_image_file

        return read_image_file(text)

    def format_item(self, item: Image) -> str:
        kind = "grey" if item.channels == 1 else "RGB"
        label = f" label={item.label}" if item.label is not None else ""
        return f"{item.height}x{item.width} {kind} image {item.digest()}{label}"

    def write(  # type: ignore[override]  # its codec and write_options
        self,
        items: Sequence[Image],
        path: Path,
        codec: ImageCodec | None = None,
        each: bool = False,
        nrow: int = 0,
    ) -> Path:
        """A grid (``.png``/``.jpg``), one file per image (``each``: ``0000.png``, ... in the
        folder ``path`` names without its suffix) or an array (``.npy``); returns what it wrote."""
        from polyvae.plugins.images.writers import write_array, write_each, write_grid

        path = Path(path)
        if path.suffix.lower() == ".npy":
            if each:
                raise UserError("each writes image files (.png, .jpg), not .npy")
            write_array(items, path)
        elif each:
            return write_each(items, path)
        else:
            write_grid(items, path, nrow)
        return path

    # --- model ---------------------------------------------------------------------------------

    def fit_codec(self, items: Sequence[Image], config: Mapping[str, Any]) -> ImageCodec:
        from polyvae.plugins.images.codec import ImageCodec

        return ImageCodec.fit(items, config["crop"])

    def load_codec(self, directory: Path, config: Mapping[str, Any]) -> ImageCodec:
        from polyvae.plugins.images.codec import ImageCodec

        return ImageCodec.load(directory)

    def build(
        self,
        config: Mapping[str, Any],
        codec: ImageCodec,  # type: ignore[override]  # the domain's own codec
        latent_dim: int,
    ) -> tuple[ConvEncoder, ConvDecoder]:
        from polyvae.plugins.images.likelihoods import make_likelihood
        from polyvae.plugins.images.networks import ConvDecoder, ConvEncoder

        if config["binarize"] != "none" and config["likelihood"] != "bernoulli":
            raise UserError("binarize applies to likelihood=bernoulli only")
        likelihood = make_likelihood(
            config["likelihood"], config["binarize"], config["gaussian_std"]
        )
        shape = (codec.channels, codec.height, codec.width)
        encoder = ConvEncoder(*shape, config["width"], config["depth"])
        decoder = ConvDecoder(latent_dim, *shape, config["width"], config["depth"], likelihood)
        return encoder, decoder

    # --- quality and properties ----------------------------------------------------------------

    def metrics(
        self, generated: Sequence[Image], reference: Sequence[Image], training: Sequence[Image]
    ) -> dict[str, float]:
        """FID and KID against the reference images when Inception-v3's weights are on disk
        (see :mod:`polyvae.plugins.images.metrics`); otherwise a note on stderr and nothing."""
        from polyvae.plugins.images.metrics import (
            fid_kid,
            inception_weights_path,
            missing_weights_message,
        )

        if not generated or len(reference) < 2:
            return {}
        if inception_weights_path() is None:
            print(f"note: {missing_weights_message()}", file=sys.stderr)
            return {}
        reference = list(reference)
        shape = reference[0].pixels.shape
        generated = [
            image if image.pixels.shape == shape else _like(image, shape) for image in generated
        ]
        return fid_kid(generated, reference)

    def reconstruction_metrics(
        self, originals: Sequence[Image], reconstructions: Sequence[Image]
    ) -> dict[str, float]:
        """Per-pixel squared and absolute error (on [0, 1]) and PSNR of the mean images decoded
        from the posterior means."""
        from polyvae.plugins.images.metrics import reconstruction_errors

        if not originals:
            return {}
        shape = reconstructions[0].pixels.shape if reconstructions else None
        originals = [_like(image, shape) for image in originals]
        return reconstruction_errors(originals, list(reconstructions))

    def unit_counts(self, batch: Batch) -> Tensor:
        import torch

        pixels = batch["pixels"]
        return torch.full((len(pixels),), float(pixels[0].numel() if len(pixels) else 0))

    def properties(self, items: Sequence[Image], names: Sequence[str]) -> np.ndarray:
        """``label``: the label as a number; ``label:VALUE``: 1.0 or 0.0. NaN for images without
        a label (generated ones, say) and for non-numeric labels under ``label``."""
        return label_properties(items, names, "labels come from sub-folders or IDX/npz files")

    def pretrained(self) -> Path | None:
        return bundled_run("images")

    def gallery(self, model: Any, items: Sequence[Image], seed: int) -> list[Panel]:
        """Prior samples, reconstructions, interpolation strips and latent traversals: the grids
        of ``polyvae sample`` and ``polyvae images ...``."""
        from polyvae.plugins.images.commands import side_by_side, strongest_dimensions, traversals
        from polyvae.plugins.images.writers import grid_png

        per_row = 8
        originals = [model.codec.conform(image) for image in items[:16]]
        pairs = [model.codec.conform(image) for image in items[16:24]] or originals[:2]
        strips: list[Image] = []
        for start, end in zip(pairs[::2], pairs[1::2], strict=False):
            strips += [start, *model.interpolate(start, end, steps=8), end]
        dims = strongest_dimensions(model)
        return [
            Panel(
                "Samples",
                grid_png(model.sample(64, seed=seed), per_row),
                caption="64 mean images decoded from z drawn from the prior.",
            ),
            Panel(
                "Reconstructions",
                grid_png(side_by_side(originals, model.reconstruct(originals), per_row), per_row),
                caption="Rows of held-out images, each followed by the row of their "
                "reconstructions (the mean image decoded from the posterior mean).",
            ),
            Panel(
                "Interpolations",
                grid_png(strips, 10),
                caption="Each row: a held-out image, eight images decoded along the spherical "
                "path between the two posterior means, the other image.",
            ),
            Panel(
                "Latent traversals",
                grid_png(traversals(model, dims, steps=9, span=3.0), 9),
                caption=f"Rows: latent dimensions {', '.join(map(str, dims))} (most active "
                "first) swept from -3 to +3 with the others at 0.",
            ),
        ]


def _like(image: Image, shape: tuple[int, ...] | None) -> Image:
    if shape is None or image.pixels.shape == shape:
        return image
    from polyvae.plugins.images.reader import conform

    return conform(image, shape[0], shape[1], shape[2])
