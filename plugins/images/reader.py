"""Read images from a folder of PNG/JPEG files, IDX files, NumPy arrays or torchvision data sets.

Every reader yields :class:`Image` items: ``pixels`` is a ``(height, width, channels)`` uint8 array
(1 channel for grey, 3 for RGB) and ``label`` an optional class name. What each source holds:

- a folder (searched recursively) or a glob of ``.png``/``.jpg``/``.jpeg`` files (also ``.bmp``,
  ``.gif``, ``.webp``, ``.tif``): an image's label is the name of its sub-folder of the root
  (``root/cat/1.png`` is a ``cat``), as in torchvision's ``ImageFolder``; images at the root have
  none. A file that cannot be decoded (empty, truncated, not an image) is skipped and reported;
- an IDX file (the MNIST format, ``.gz`` too: MNIST, Fashion-MNIST, KMNIST): labels come from the
  sibling ``...-labels-idx1-ubyte`` file when there is one. A truncated file keeps its complete
  images and reports the missing ones;
- ``.npy`` (an array of images) or ``.npz`` (images under ``x``/``images``/``arr_0`` and optional
  labels under ``y``/``labels``/``targets``): ``(n, h, w)``, ``(n, h, w, c)`` or ``(n, c, h, w)``;
  uint8 as it is, floats in [0, 1] scaled to 0-255, booleans to 0/255. Images holding NaN or values
  out of range are skipped and reported;
- ``torchvision:NAME`` (``torchvision:FashionMNIST``): a torchvision data set stored under the
  ``torchvision_root`` folder, ``split`` train or test; downloaded there only with
  ``download=true``.

:func:`conform` then gives every image the same channels and size (:class:`ImageFormat`).
"""

from __future__ import annotations

import collections
import glob
import hashlib
import inspect
import math
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from polyvae.domain import ReadReport
from polyvae.errors import UserError
from polyvae.plugins.shared import require_usable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_KEYS = ("x", "images", "image", "data", "arr_0")
LABEL_KEYS = ("y", "labels", "label", "targets")
TORCHVISION_PREFIX = "torchvision:"
ACCEPTED = (
    "a folder or glob of PNG/JPEG images, an IDX file (.gz too), a .npy/.npz array, "
    "or torchvision:NAME"
)
# IDX element types (the third byte of the magic number) -> NumPy big-endian dtypes.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# A file cut short has each missing image reported; beyond this many, a damaged header is likelier
# (and a report line for each of the 4 billion images a header can announce would not fit).
MAX_MISSING_IMAGES = 1_000_000


@dataclass(eq=False)
class Image:
    """One image: ``pixels`` of shape ``(height, width, channels)``, uint8, channels 1 or 3."""

    pixels: np.ndarray
    label: str | None = None

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or pixels.dtype != np.uint8:
            raise ValueError(
                f"an image is a (height, width, 1 or 3) uint8 array, got {pixels.dtype} "
                f"{pixels.shape}"
            )
        self.pixels = pixels

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.pixels if dtype is None else self.pixels.astype(dtype)

    def to_pil(self) -> PILImage.Image:
        if self.channels == 1:
            return PILImage.fromarray(self.pixels[:, :, 0], mode="L")
        return PILImage.fromarray(self.pixels, mode="RGB")

    def digest(self) -> str:
        """A short content hash: equal pixels give equal digests."""
        return hashlib.sha1(self.pixels.tobytes() + bytes(self.pixels.shape)).hexdigest()[:10]


@dataclass(frozen=True)
class ImageFormat:
    """The shape every image is brought to. 0 means: as the data is (the most common size; grey
    if every image is grey, else RGB)."""

    size: int = 0  # side of the square images; 0: keep the most common height x width
    channels: int = 0  # 1 (grey), 3 (RGB) or 0 (from the data)
    crop: bool = True  # centre-crop to the target's aspect ratio before resizing


@dataclass(frozen=True)
class TorchvisionSource:
    root: str = "~/.cache/polyvae/torchvision"
    split: str = "train"
    download: bool = False


def read_images(
    source: str | Path,
    form: ImageFormat = ImageFormat(),
    torchvision: TorchvisionSource = TorchvisionSource(),
) -> tuple[list[Image], ReadReport]:
    report = ReadReport(str(source))
    text = str(source)
    if text.startswith(TORCHVISION_PREFIX):
        images = list(_torchvision_images(text[len(TORCHVISION_PREFIX) :], torchvision))
    else:
        images = []
        for path, root in _files(source):
            images.extend(_file_images(path, root, report))
    require_usable(images, report, "images")
    height, width, channels = _target(images, form)
    conformed, changed = [], 0
    for image in images:
        fitted = conform(image, height, width, channels, form.crop)
        changed += fitted.pixels.shape[:2] != image.pixels.shape[:2]
        conformed.append(fitted)
    if changed:
        how = "cropped and resized" if form.crop else "resized"
        report.notes.append(f"{changed:,} images {how} to {height}x{width}")
    report.kept = len(conformed)
    return conformed, report


def read_image_file(path: str | Path) -> Image:
    """One image file (``polyvae images interpolate RUN a.png b.png``); a UserError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no image file {path}")
    image, error = _decode(path)
    if image is None:
        raise UserError(f"cannot read {path}: {error}")
    return image


def conform(image: Image, height: int, width: int, channels: int, crop: bool = True) -> Image:
    """``image`` with ``channels`` channels (grey <-> RGB) at ``height`` x ``width``: centre-cropped
    to that aspect ratio first when ``crop``, then resized (Lanczos)."""
    if image.pixels.shape == (height, width, channels):
        return image
    picture = image.to_pil().convert("L" if channels == 1 else "RGB")
    if picture.size != (width, height):
        if crop:
            picture = _centre_crop(picture, width / height)
        picture = picture.resize((width, height), PILImage.Resampling.LANCZOS)
    return Image(np.asarray(picture, dtype=np.uint8), image.label)


def _centre_crop(picture: PILImage.Image, aspect: float) -> PILImage.Image:
    w, h = picture.size
    if w / h > aspect:  # too wide
        new_w = max(1, round(h * aspect))
        left = (w - new_w) // 2
        return picture.crop((left, 0, left + new_w, h))
    new_h = max(1, round(w / aspect))
    top = (h - new_h) // 2
    return picture.crop((0, top, w, top + new_h))


def _target(images: list[Image], form: ImageFormat) -> tuple[int, int, int]:
    channels = form.channels or (1 if all(image.channels == 1 for image in images) else 3)
    if form.size:
        return form.size, form.size, channels
    sizes = collections.Counter(image.pixels.shape[:2] for image in images)
    (height, width), _ = sizes.most_common(1)[0]
    return height, width, channels


# --- files ---------------------------------------------------------------------------------------


def _kind(path: Path) -> str | None:
    suffixes = [suffix.lower() for suffix in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in IMAGE_SUFFIXES:
        return "image"
    if suffixes and suffixes[-1] in ARRAY_SUFFIXES:
        return "array"
    name = path.name.lower().removesuffix(".gz")
    if "-idx" in name or name.endswith((".idx", "ubyte")):
        return "idx"
    return None


def _files(source: str | Path) -> list[tuple[Path, Path]]:
    """(file, root folder for labels) pairs. Labels files of IDX sets are read with their images,
    so they are not listed."""
    path = Path(source)
    if path.is_dir():
        found = sorted(child for child in path.rglob("*") if child.is_file() and _kind(child))
        root = path
    elif path.is_file():
        if not _kind(path):
            raise UserError(f"images are read from {ACCEPTED}; not {path.name}")
        found, root = [path], path.parent
    elif glob.has_magic(str(source)):
        found = sorted(Path(name) for name in glob.glob(str(source)) if _kind(Path(name)))
        root = Path(str(source).split("*")[0].split("?")[0].split("[")[0] or ".")
        if not root.is_dir():
            root = root.parent
    else:
        raise FileNotFoundError(2, "no such file or folder", str(source))
    found = [file for file in found if not _is_idx_labels(file)]
    if not found:
        raise UserError(f"no images in {source}: expected {ACCEPTED}")
    return [(file, root) for file in found]


def _is_idx_labels(path: Path) -> bool:
    return _kind(path) == "idx" and "labels" in path.name.lower()


def _file_images(path: Path, root: Path, report: ReadReport) -> Iterator[Image]:
    kind = _kind(path)
    if kind == "idx":
        yield from _idx_images(path, report)
    elif kind == "array":
        yield from _array_images(path, report)
    else:
        image, error = _decode(path)
        if image is None:
            report.skip(str(path), error)
            return
        relative = path.relative_to(root).parts if path.is_relative_to(root) else (path.name,)
        image.label = relative[0] if len(relative) > 1 else None
        yield image


def _decode(path: Path) -> tuple[Image | None, str]:
    try:
        with PILImage.open(path) as picture:
            picture.load()  # decodes everything: truncated files fail here
            # Any 16-bit grey layout (I;16, I;16B, ...) is scaled like I, not clipped at 255.
            wide = picture.mode in ("I", "F") or picture.mode.startswith("I;16")
            mode = "L" if wide or picture.mode in ("1", "L") else "RGB"
            if wide:
                array = np.asarray(picture, dtype=np.float64)
                top = max(float(array.max()), 1.0)
                pixels = np.clip(array / (255.0 if top <= 255 else 65535.0) * 255, 0, 255)
                return Image(pixels.round().astype(np.uint8)), ""
            if picture.mode in ("RGBA", "LA") or (
                picture.mode == "P" and "transparency" in picture.info
            ):
                # Transparent pixels are shown over white, as an image viewer shows them.
                rgba = picture.convert("RGBA")
                canvas = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
                picture = PILImage.alpha_composite(canvas, rgba)
                mode = "RGB"
            return Image(np.asarray(picture.convert(mode), dtype=np.uint8)), ""
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        return None, "empty file" if size == 0 else "not a readable image"
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt data
        return None, f"unreadable image: {error}"


# --- IDX -----------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """The (decompressed) bytes of ``path`` and whether a gzip stream ended early."""
    raw = path.read_bytes()
    if path.suffix.lower() != ".gz":
        return raw, False
    decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        data = decompressor.decompress(raw)
    except zlib.error as error:
        raise UserError(f"cannot read {path}: not a gzip file ({error})") from None
    return data, not decompressor.eof


def _parse_idx(path: Path) -> tuple[np.ndarray, int, bool]:
    """(the complete records, how many the header announced, whether the file was cut short)."""
    data, cut = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(data) < header:
        raise UserError(f"{path} is not an IDX file (bad header)")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(IDX_TYPES[data[2]])
    per_record = math.prod(dims[1:]) * dtype.itemsize  # Python ints: a damaged header overflows
    if ndim > 1 and not per_record:  # records of no pixels: nothing to read, however many
        raise UserError(f"{path}: IDX records of shape {tuple(dims[1:])} hold no values")
    complete = min(dims[0], (len(data) - header) // per_record)
    body = np.frombuffer(
        data, dtype=dtype, count=complete * per_record // dtype.itemsize, offset=header
    )
    try:
        records = body.reshape(complete, *dims[1:])
    except ValueError:  # dimensions too large for any array: a damaged header
        raise UserError(f"{path} is not an IDX file (dimensions {dims})") from None
    return records, dims[0], cut or complete < dims[0]


def _idx_images(path: Path, report: ReadReport) -> Iterator[Image]:
    records, announced, cut = _parse_idx(path)
    if records.ndim not in (3, 4) or (records.ndim == 4 and records.shape[3] not in (1, 3)):
        raise UserError(f"{path}: IDX images are (n, rows, columns[, 1 or 3]), got {records.shape}")
    if announced - len(records) > MAX_MISSING_IMAGES:
        raise UserError(
            f"{path}: the header announces {announced:,} images but the file holds "
            f"{len(records):,}; is the header damaged?"
        )
    labels = _idx_labels(path, report)
    for index in range(len(records), announced):
        report.skip(f"{path}#{index}", "missing: the file ends before this image")
    if cut and len(records) == announced:
        report.notes.append(f"{path} ends without the gzip trailer")
    pixels = _to_uint8(records, path, report)
    for index, image in pixels:
        label = labels[index] if labels is not None and index < len(labels) else None
        yield Image(image, label)


def _idx_labels(path: Path, report: ReadReport) -> list[str] | None:
    name = path.name
    for images_part, labels_part in (("images-idx3", "labels-idx1"), ("images", "labels")):
        if images_part in name:
            sibling = path.with_name(name.replace(images_part, labels_part))
            if sibling.is_file():
                records, _, _ = _parse_idx(sibling)
                report.notes.append(f"labels from {sibling.name}")
                return [str(value) for value in records.reshape(len(records), -1)[:, 0].tolist()]
    return None


# --- arrays --------------------------------------------------------------------------------------


def _array_images(path: Path, report: ReadReport) -> Iterator[Image]:
    labels = None
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                image_key = next((key for key in IMAGE_KEYS if key in archive.files), None)
                if image_key is None:
                    raise UserError(
                        f"{path} has no image array: expected one of {', '.join(IMAGE_KEYS)}, "
                        f"found {', '.join(archive.files) or 'none'}"
                    )
                member = f"{image_key}.npy"
                if member in archive.zip.namelist():
                    with archive.zip.open(member) as handle:
                        _refuse_cut_short(handle, archive.zip.getinfo(member).file_size, path)
                array = archive[image_key]
                label_key = next((key for key in LABEL_KEYS if key in archive.files), None)
                if label_key is not None:
                    labels = [_label_text(value) for value in archive[label_key].reshape(-1)]
        else:
            with path.open("rb") as handle:
                _refuse_cut_short(handle, path.stat().st_size, path)
            array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    # A damaged header reaches numpy's parser of Python literals; a damaged archive, zipfile.
    except (SyntaxError, tokenize.TokenError, zipfile.BadZipFile, zlib.error):
        raise UserError(f"cannot read {path}: not a valid NumPy {path.suffix} file") from None
    if array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[3] not in (1, 3):
        array = array.transpose(0, 2, 3, 1)  # channels first -> channels last
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[3] not in (1, 3)):
        raise UserError(
            f"{path}: an image array is (n, h, w), (n, h, w, c) or (n, c, h, w) with c 1 or 3; "
            f"got {array.shape}"
        )
    if labels is not None and len(labels) != len(array):
        raise UserError(f"{path}: {len(array)} images but {len(labels)} labels")
    for index, image in _to_uint8(array, path, report):
        yield Image(image, labels[index] if labels is not None else None)


def _refuse_cut_short(handle: IO[bytes], size: int, path: Path) -> None:
    """A UserError when the array's header announces more bytes than its ``size`` bytes hold:
    numpy allocates what the header says before reading, so a damaged 100-byte file could ask
    for terabytes."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    announced = math.prod(shape) * dtype.itemsize
    if handle.tell() + announced > size:
        raise UserError(
            f"cannot read {path}: its header announces {announced:,} bytes of {shape} "
            f"{dtype}, more than the file holds"
        )


def _label_text(value: object) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if hasattr(value, "item") else value)


def _to_uint8(
    array: np.ndarray, path: Path, report: ReadReport
) -> Iterator[tuple[int, np.ndarray]]:
    """Each image as uint8, with its index; images that cannot be (NaN, out of range) are
    reported."""
    if array.dtype == np.uint8:
        for index in range(len(array)):
            yield index, array[index]
        return
    if array.dtype == np.bool_:
        for index in range(len(array)):
            yield index, array[index].astype(np.uint8) * 255
        return
    if not np.issubdtype(array.dtype, np.number):
        raise UserError(f"{path}: images must be numbers, got {array.dtype}")
    floating = np.issubdtype(array.dtype, np.floating)
    finite_max = float(np.nanmax(array)) if array.size else 0.0
    # Floats in [0, 1] are intensities; anything else is taken as 0-255 values.
    scale = 255.0 if floating and finite_max <= 1.0 else 1.0
    for index in range(len(array)):
        image = array[index].astype(np.float64) * scale
        if not np.isfinite(image).all():
            report.skip(f"{path}#{index}", "holds NaN or infinite values")
            continue
        if image.min() < 0 or image.max() > 255:
            report.skip(
                f"{path}#{index}", f"values outside 0-255 ({image.min():g}..{image.max():g})"
            )
            continue
        yield index, image.round().astype(np.uint8)


# --- torchvision ---------------------------------------------------------------------------------


def _torchvision_images(name: str, source: TorchvisionSource) -> Iterator[Image]:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torchvision.datasets.VisionDataset)):
        known = ", ".join(
            sorted(
                n
                for n in ("MNIST", "FashionMNIST", "KMNIST", "EMNIST", "CIFAR10", "SVHN")
                if hasattr(torchvision.datasets, n)
            )
        )
        raise UserError(f"torchvision has no data set '{name}' (for example: {known})")
    root = Path(source.root).expanduser()
    parameters = inspect.signature(cls).parameters
    kwargs: dict[str, object] = {"download": source.download}
    if "train" in parameters:
        kwargs["train"] = source.split == "train"
    elif "split" in parameters:
        kwargs["split"] = source.split
    try:
        dataset = cls(str(root), **kwargs)
    except (RuntimeError, OSError, ValueError) as error:
        if not source.download:
            raise UserError(
                f"torchvision data set {name} ({source.split}) is not in {root}; download it "
                "with --set download=true, or point torchvision_root at a copy"
            ) from None
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"torchvision data set {name}: {first}") from None
    targets = getattr(dataset, "targets", None)
    data = getattr(dataset, "data", None)
    if data is not None and targets is not None and len(data) == len(targets):
        array = np.asarray(data)
        if array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[3] not in (1, 3):
            array = array.transpose(0, 2, 3, 1)
        if array.dtype == np.uint8 and array.ndim in (3, 4):
            for pixels, target in zip(array, np.asarray(targets).tolist(), strict=True):
                yield Image(pixels, str(target))
            return
    for index in range(len(dataset)):
        picture, target = dataset[index]
        mode = "L" if picture.mode in ("1", "L") else "RGB"
        yield Image(np.asarray(picture.convert(mode), dtype=np.uint8), str(target))
