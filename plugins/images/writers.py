"""Images to files: a grid (torchvision's ``make_grid``/``save_image``), one file per image, or
a NumPy array. Every file is written atomically."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid, save_image

from polyvae.errors import UserError
from polyvae.files import atomic_output, atomic_write_bytes
from polyvae.plugins.images.reader import Image

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
SUFFIXES = (*FORMATS, ".npy")


def to_tensor(images: Sequence[Image]) -> torch.Tensor:
    """Images of one shape -> float ``(n, channels, height, width)`` in [0, 1]."""
    shapes = {image.pixels.shape for image in images}
    if len(shapes) > 1:
        raise UserError(f"cannot put images of different shapes in one grid: {sorted(shapes)[:3]}")
    array = np.stack([image.pixels for image in images]).transpose(0, 3, 1, 2)
    return torch.from_numpy(array).float() / 255.0


def grid(images: Sequence[Image], nrow: int = 0, padding: int = 2) -> torch.Tensor:
    """The grid ``save_image`` writes: ``nrow`` images a row (0: as square as possible)."""
    if not images:
        raise UserError("no images to write")
    nrow = nrow or math.ceil(math.sqrt(len(images)))
    return make_grid(to_tensor(images), nrow=nrow, padding=padding, pad_value=1.0)


def write_grid(images: Sequence[Image], path: Path, nrow: int = 0) -> None:
    image_format = _format(path)
    with atomic_output(path) as temporary:
        save_image(grid(images, nrow), temporary, format=image_format)


def write_each(images: Sequence[Image], path: Path) -> Path:
    """One file per image, ``0000.png``, ``0001.png``, ... in the folder ``path`` without its
    suffix (``samples.png`` -> ``samples/``); returns the folder."""
    image_format = _format(path)
    folder = path.with_suffix("")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(len(images) - 1)))
    for index, image in enumerate(images):
        buffer = io.BytesIO()
        image.to_pil().save(buffer, format=image_format)
        atomic_write_bytes(folder / f"{index:0{digits}d}{path.suffix.lower()}", buffer.getvalue())
    return folder


def write_array(images: Sequence[Image], path: Path) -> None:
    """A ``(n, height, width, channels)`` uint8 array, readable with ``numpy.load``."""
    buffer = io.BytesIO()
    array = np.stack([image.pixels for image in images]) if images else np.zeros((0, 0, 0, 0))
    np.save(buffer, array.astype(np.uint8), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"images are written to {', '.join(SUFFIXES)} files, not {path.name}")
    return FORMATS[suffix]
