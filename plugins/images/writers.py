"""Images to files: a grid (torchvision's ``make_grid``/``save_image``), one file per image, or
a NumPy array. Every file is written atomically."""

from __future__ import annotations

import io
import math
import os
import shutil
import tempfile
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


def grid_png(images: Sequence[Image], nrow: int = 0, min_side: int = 64) -> bytes:
    """The grid as PNG bytes, small images enlarged (nearest neighbour, whole factors) to at
    least ``min_side`` pixels a side so that a report shows them at a visible size."""
    tensor = grid(images, nrow)
    side = min(images[0].pixels.shape[:2])
    factor = max(1, -(-min_side // side))
    if factor > 1:
        tensor = torch.nn.functional.interpolate(tensor[None], scale_factor=factor)[0]
    buffer = io.BytesIO()
    save_image(tensor, buffer, format="PNG")
    return buffer.getvalue()


def write_grid(images: Sequence[Image], path: Path, nrow: int = 0) -> None:
    image_format = _format(path)
    with atomic_output(path) as temporary:
        save_image(grid(images, nrow), temporary, format=image_format)


def write_each(images: Sequence[Image], path: Path) -> Path:
    """One file per image, ``0000.png``, ``0001.png``, ... in the folder ``path`` without its
    suffix (``samples.png`` -> ``samples/``); returns the folder. The folder is filled beside
    and swapped in whole, so it never mixes these images with an earlier run's, and a crash
    leaves the old folder as it was."""
    image_format = _format(path)
    suffix = path.suffix.lower()
    folder = path.with_suffix("")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder")
    if folder.is_dir():
        foreign = [file.name for file in folder.iterdir() if not _numbered(file.name, suffix)]
        if foreign:
            raise UserError(
                f"{folder} holds files other than numbered {suffix} images ({foreign[0]}); "
                "choose another -o or empty it"
            )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    digits = max(4, len(str(len(images) - 1)))
    try:
        for index, image in enumerate(images):
            image.to_pil().save(staging / f"{index:0{digits}d}{suffix}", format=image_format)
        retired = staging.with_name(staging.name + ".old")
        if folder.is_dir():
            os.replace(folder, retired)
        os.replace(staging, folder)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _numbered(name: str, suffix: str) -> bool:
    stem, _, extension = name.rpartition(".")
    return stem.isdigit() and f".{extension.lower()}" == suffix


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
