"""Images <-> ``{"pixels": uint8 (n, channels, height, width)}`` batches.

The codec fixes the shape the model works on and brings any image to it (``conform``), so an
image given later (``polyvae images interpolate RUN a.png b.png``) is cropped, resized and
converted exactly as the training images were. Pixels stay uint8 in the batch (a quarter of the
memory of floats, for the engine's cached copy of the data); the networks scale them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from polyvae.domain import Batch
from polyvae.errors import UserError
from polyvae.files import atomic_write_json, read_json
from polyvae.plugins.images.reader import Image, conform

FORMAT_VERSION = 1
CODEC_FILE = "codec.json"


class ImageCodec:
    def __init__(self, height: int, width: int, channels: int, crop: bool = True) -> None:
        self.height, self.width, self.channels, self.crop = height, width, channels, crop

    @classmethod
    def fit(cls, items: Sequence[Image], crop: bool = True) -> ImageCodec:
        """The shape of the (already conformed) items; sides must be multiples of 4."""
        if not items:
            raise UserError("no images to fit the image codec on")
        shapes = {item.pixels.shape for item in items}
        if len(shapes) != 1:
            raise UserError(f"images of several shapes: {sorted(shapes)[:3]}; read them together")
        height, width, channels = shapes.pop()
        if height % 4 or width % 4:
            raise UserError(
                f"images are {height}x{width}; the networks need sides that are multiples of 4: "
                f"set size (e.g. --set size={max(4, round(max(height, width) / 4) * 4)})"
            )
        return cls(height, width, channels, crop)

    @classmethod
    def load(cls, directory: Path) -> ImageCodec:
        meta = read_json(directory / CODEC_FILE)
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{directory / CODEC_FILE}: unsupported image codec format")
        return cls(meta["height"], meta["width"], meta["channels"], meta["crop"])

    def save(self, directory: Path) -> None:
        atomic_write_json(
            directory / CODEC_FILE,
            {
                "format_version": FORMAT_VERSION,
                "height": self.height,
                "width": self.width,
                "channels": self.channels,
                "crop": self.crop,
            },
        )

    @property
    def dimensions(self) -> int:
        """Numbers per image: channels x height x width."""
        return self.channels * self.height * self.width

    def conform(self, image: Image) -> Image:
        return conform(image, self.height, self.width, self.channels, self.crop)

    def encode(self, items: Sequence[Image]) -> Batch:
        pixels = np.empty((len(items), self.channels, self.height, self.width), dtype=np.uint8)
        for row, item in enumerate(items):
            if not isinstance(item, Image):
                raise UserError(f"image {row + 1} is a {type(item).__name__}, not an Image")
            pixels[row] = self.conform(item).pixels.transpose(2, 0, 1)
        return {"pixels": torch.from_numpy(pixels)}

    def decode(self, batch: Batch) -> list[Image]:
        pixels = batch["pixels"].detach().cpu()
        if pixels.dtype != torch.uint8:
            pixels = (pixels.float().clamp(0, 255)).round().to(torch.uint8)
        return [Image(np.ascontiguousarray(row.permute(1, 2, 0).numpy())) for row in pixels]
