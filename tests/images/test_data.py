"""The images domain's data side: readers (folders, IDX, arrays, torchvision), conforming,
the codec and the writers."""

from __future__ import annotations

import gzip
import io
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from polyvae.errors import UserError
from polyvae.plugins.images.codec import ImageCodec
from polyvae.plugins.images.domain import ImagesDomain
from polyvae.plugins.images.reader import (
    Image,
    ImageFormat,
    TorchvisionSource,
    read_image_file,
    read_images,
)
from polyvae.plugins.images.writers import grid, write_array, write_each, write_grid

torch.set_num_threads(1)


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)
    return path


def idx(array: np.ndarray, gz: bool = True) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    return gzip.compress(data, mtime=0) if gz else data


def bundled(name: str) -> Path:
    return Path(str(resources.files("polyvae.data") / "images" / name))


# --- image folders -------------------------------------------------------------------------------


def test_folder_labels_bad_files_and_mixed_sizes(tmp_path):
    rng = np.random.default_rng(0)
    png(tmp_path / "shirts" / "a.png", rng.integers(0, 256, (28, 28), dtype=np.uint8))
    png(tmp_path / "shirts" / "deep" / "b.png", rng.integers(0, 256, (28, 28), dtype=np.uint8))
    PILImage.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(
        tmp_path / "shoes" / "c.jpg" if (tmp_path / "shoes").mkdir() is None else None
    )
    png(tmp_path / "root.png", rng.integers(0, 256, (40, 20), dtype=np.uint8))  # another size
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "shirts" / "notes.png").write_text("not an image")
    whole = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(whole, format="PNG")
    (tmp_path / "cut.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (tmp_path / "readme.txt").write_text("ignored: not an image suffix")

    images, report = read_images(tmp_path)
    assert report.kept == len(images) == 4
    reasons = dict(report.skipped)
    assert reasons[str(tmp_path / "empty.png")] == "empty file"
    assert reasons[str(tmp_path / "shirts" / "notes.png")] == "not a readable image"
    assert reasons[str(tmp_path / "cut.png")].startswith("unreadable image")
    # The most common size wins; the colour JPEG makes the set RGB.
    assert {image.pixels.shape for image in images} == {(28, 28, 3)}
    assert "1 images cropped and resized to 28x28" in report.notes
    labels = sorted(str(image.label) for image in images)
    assert labels == ["None", "shirts", "shirts", "shoes"]


def test_all_bad_images_is_one_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(UserError, match=r"no usable images .*all 2 were skipped"):
        read_images(tmp_path)
    (tmp_path / "a.png").unlink()
    (tmp_path / "b.jpg").unlink()
    with pytest.raises(UserError, match="no images in"):
        read_images(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_images(tmp_path / "missing")
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(UserError, match=r"not table\.csv"):
        read_images(tmp_path / "table.csv")


def test_size_channels_and_centre_crop(tmp_path):
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, 10:30] = 255  # the centre square is white, the sides black
    png(tmp_path / "wide.png", wide)
    cropped, _ = read_images(tmp_path, ImageFormat(size=8, channels=1, crop=True))
    assert cropped[0].pixels.shape == (8, 8, 1) and cropped[0].pixels.min() == 255
    squashed, _ = read_images(tmp_path, ImageFormat(size=8, channels=3, crop=False))
    assert squashed[0].pixels.shape == (8, 8, 3)
    assert squashed[0].pixels[:, 0].max() < 50 and squashed[0].pixels[:, 4].min() > 200


def test_transparent_png_is_shown_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    path = png(tmp_path / "clear.png", rgba)
    assert read_image_file(path).pixels.min() == 255
    with pytest.raises(UserError, match="no image file"):
        read_image_file(tmp_path / "nope.png")


# --- IDX -----------------------------------------------------------------------------------------


def test_idx_with_labels_and_a_truncated_file(tmp_path):
    images = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(idx(images))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(idx(np.array([3, 1, 4, 1, 5])))
    items, report = read_images(tmp_path / "train-images-idx3-ubyte.gz")
    assert [item.label for item in items] == ["3", "1", "4", "1", "5"]
    np.testing.assert_array_equal(items[2].pixels[:, :, 0], images[2])
    # A folder holding the pair reads the images once, with their labels.
    assert len(read_images(tmp_path)[0]) == 5

    raw = idx(images, gz=False)
    cut = tmp_path / "cut-images-idx3-ubyte"
    cut.write_bytes(raw[: 16 + 3 * 16 + 5])  # three whole images and a bit of the fourth
    items, report = read_images(cut)
    assert len(items) == 3 and report.kept == 3
    assert [location for location, _ in report.skipped] == [f"{cut}#3", f"{cut}#4"]
    gz_cut = tmp_path / "gzcut-images-idx3-ubyte.gz"
    gz_cut.write_bytes(idx(images)[:-20])  # a gzip stream that ends early
    items, report = read_images(gz_cut)
    assert 0 < len(items) <= 5 and len(items) + len(report.skipped) == 5

    (tmp_path / "bad-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(UserError, match="bad magic number"):
        read_images(tmp_path / "bad-images-idx3-ubyte")


def test_bundled_fashion_mnist_sample():
    items, report = read_images(bundled("t10k-images-idx3-ubyte.gz"))
    assert len(items) == 2000 and not report.skipped
    assert items[0].pixels.shape == (28, 28, 1)
    labels = [item.label for item in items]
    assert sorted(set(labels)) == [str(n) for n in range(10)]
    assert all(labels.count(str(n)) == 200 for n in range(10))


# --- arrays --------------------------------------------------------------------------------------


def test_npy_floats_nan_and_channels_first(tmp_path):
    floats = np.random.default_rng(1).random((4, 8, 8))
    floats[2, 0, 0] = np.nan
    np.save(tmp_path / "x.npy", floats)
    items, report = read_images(tmp_path / "x.npy")
    assert len(items) == 3 and report.skipped == [
        (f"{tmp_path / 'x.npy'}#2", "holds NaN or infinite values")
    ]
    np.testing.assert_array_equal(items[0].pixels[:, :, 0], np.round(floats[0] * 255))

    chw = np.random.default_rng(2).integers(0, 256, (3, 3, 8, 12), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", images=chw, labels=np.array([0.0, 1.0, 2.0]))
    items, _ = read_images(tmp_path / "rgb.npz")
    assert items[1].pixels.shape == (8, 12, 3) and items[1].label == "1"
    np.testing.assert_array_equal(items[1].pixels, chw[1].transpose(1, 2, 0))

    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(UserError, match=r"no image array.*found weights"):
        read_images(tmp_path / "other.npz")
    np.save(tmp_path / "loud.npy", np.full((2, 4, 4), 300.0))
    with pytest.raises(UserError, match="values outside 0-255"):
        read_images(tmp_path / "loud.npy")


# --- torchvision ---------------------------------------------------------------------------------


def test_torchvision_dataset_missing_locally_is_one_line(tmp_path):
    source = TorchvisionSource(root=str(tmp_path))
    with pytest.raises(UserError, match=r"FashionMNIST \(train\) is not in .*--set download=true"):
        read_images("torchvision:FashionMNIST", torchvision=source)
    with pytest.raises(UserError, match="torchvision has no data set 'Fashion'"):
        read_images("torchvision:Fashion", torchvision=source)


def test_torchvision_dataset_read_from_a_local_copy(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.default_rng(3).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    for split in ("train", "t10k"):  # torchvision checks that both splits are there
        (raw / f"{split}-images-idx3-ubyte").write_bytes(idx(images, gz=False))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(idx(np.arange(6), gz=False))
    items, _ = read_images(
        "torchvision:FashionMNIST", torchvision=TorchvisionSource(root=str(tmp_path), split="test")
    )
    assert [item.label for item in items] == [str(n) for n in range(6)]
    np.testing.assert_array_equal(items[5].pixels[:, :, 0], images[5])


# --- codec ---------------------------------------------------------------------------------------


def test_codec_round_trip_conform_and_reload(tmp_path):
    rng = np.random.default_rng(4)
    items = [Image(rng.integers(0, 256, (12, 8, 3), dtype=np.uint8)) for _ in range(3)]
    codec = ImageCodec.fit(items)
    batch = codec.encode(items)
    assert batch["pixels"].shape == (3, 3, 12, 8) and batch["pixels"].dtype == torch.uint8
    decoded = codec.decode(batch)
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(items, decoded, strict=True))
    # Another image is brought to the codec's shape, as the reader did for training.
    odd = codec.encode([Image(rng.integers(0, 256, (30, 30), dtype=np.uint8))])
    assert odd["pixels"].shape == (1, 3, 12, 8)
    codec.save(tmp_path)
    assert torch.equal(ImageCodec.load(tmp_path).encode(items)["pixels"], batch["pixels"])
    with pytest.raises(UserError, match=r"multiples of 4: set size \(e\.g\. --set size=8\)"):
        ImageCodec.fit([Image(np.zeros((7, 7), dtype=np.uint8))])


# --- writers -------------------------------------------------------------------------------------


def test_grid_each_and_array_writers(tmp_path):
    images = [Image(np.full((28, 28, 1), 40 * n, dtype=np.uint8)) for n in range(5)]
    write_grid(images, tmp_path / "grid.png")
    with PILImage.open(tmp_path / "grid.png") as picture:
        assert picture.size == (3 * 28 + 4 * 2, 2 * 28 + 3 * 2)  # 3 a row, 2-pixel padding
        assert picture.getpixel((2 + 28 + 2 + 5, 7))[0] == 40  # the second image's grey
    assert tuple(grid(images, nrow=5).shape) == (3, 28 + 4, 5 * 28 + 6 * 2)

    folder = write_each(images, tmp_path / "each.png")
    assert folder == tmp_path / "each"
    assert sorted(path.name for path in folder.iterdir()) == [f"000{n}.png" for n in range(5)]
    assert read_image_file(folder / "0003.png").pixels.max() == 120
    write_each(images[:2], tmp_path / "each.png")  # fewer images: no stale files from before
    assert sorted(path.name for path in folder.iterdir()) == ["0000.png", "0001.png"]
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files other than numbered \.png images"):
        write_each(images, tmp_path / "each.png")
    assert (folder / "notes.txt").read_text() == "mine"

    write_array(images, tmp_path / "images.npy")
    assert np.load(tmp_path / "images.npy").shape == (5, 28, 28, 1)
    with pytest.raises(UserError, match=r"not grid\.gif"):
        write_grid(images, tmp_path / "grid.gif")
    domain = ImagesDomain()
    with pytest.raises(UserError, match="each writes image files"):
        domain.write(images, tmp_path / "x.npy", each=True)
    assert domain.write(images, tmp_path / "via.png", each=True) == tmp_path / "via"
