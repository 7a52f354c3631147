"""The images domain from the command line, in process: the grid helpers, the bundled pretrained
model samples clothing, a folder of photos trains class-conditionally (the installed command's
runs are in tests/e2e/test_images_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image as PILImage

import polyvae
from polyvae.cli import build_cli
from polyvae.plugins.images.commands import side_by_side, traversal_points
from polyvae.registry import reset_registry

torch.set_num_threads(1)


def invoke(*args):
    reset_registry(None)
    return CliRunner().invoke(build_cli(), [str(arg) for arg in args])


def picture_size(path: Path) -> tuple[int, int]:
    with PILImage.open(path) as picture:
        return picture.size


def test_grid_helpers():
    assert side_by_side([1, 2, 3], ["a", "b", "c"], 2) == [1, 2, "a", "b", 3, "c"]
    points = traversal_points(torch.tensor([5.0, 6.0, 7.0]), [2, 0], steps=3, span=1.0)
    assert points.tolist() == [
        [5, 6, -1], [5, 6, 0], [5, 6, 1], [-1, 6, 7], [0, 6, 7], [1, 6, 7],
    ]  # fmt: skip


# --- the bundled pretrained model ----------------------------------------------------------------


def test_pretrained_model_samples_fashion_mnist_sized_images():
    reset_registry(None)
    model = polyvae.load("images")
    assert model.meta["status"] in ("complete", "early_stopped")
    images = model.sample(16, seed=0)
    assert {image.pixels.shape for image in images} == {(28, 28, 1)}
    spread = np.std([image.pixels.mean() for image in images])
    assert spread > 5  # different garments, not one image over and over
    # Mostly dark backgrounds with a bright garment in the middle, as in Fashion-MNIST.
    mean = np.mean([image.pixels[:, :, 0] for image in images], axis=0)
    assert mean[10:18, 10:18].mean() > 2 * mean[:, :3].mean()


def test_grids_decode_the_encoders_code_unless_asked_to_refine(tmp_path):
    # Refining raises the bundled model's likelihood and worsens its pictures to the eye
    # (benchmarks/latent_refinement.py --parts images), so the images domain does not by default.
    def picture(command: str, *options) -> bytes:
        out = tmp_path / f"{command}{len(list(tmp_path.iterdir()))}.png"
        result = invoke("images", command, "images", "--seed", 3, *options, "-o", out)
        assert result.exit_code == 0, result.output
        return np.asarray(PILImage.open(out)).tobytes()

    for command, size in (("reconstruct", ("-n", 4)), ("interpolate", ("--pairs", 1))):
        default = picture(command, *size)
        assert default == picture(command, *size, "--refine", 0)
        assert default != picture(command, *size, "--refine", 5)


def test_a_folder_of_64px_rgb_photos_trains_class_conditionally_and_samples(tmp_path):
    # Two classes of coloured pictures in sub-folders, in three sizes and one odd aspect ratio:
    # the reader resizes (centre-cropped) to 64x64 RGB, the labels condition the model.
    rng = np.random.default_rng(0)
    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for index, (width, height) in enumerate([(64, 64), (96, 96), (80, 60)] * 4):
            pixels = np.clip(rng.normal(colour, 20, (height, width, 3)), 0, 255).astype(np.uint8)
            PILImage.fromarray(pixels).save(tmp_path / "photos" / label / f"{index}.png")
    run = tmp_path / "run"
    trained = invoke(
        "train", "images", "--data", tmp_path / "photos", "--out", run, "--quiet",
        "--set", "size=64", "--set", "condition=label:red", "--set", "width=4",
        "--set", "depth=1", "--set", "latent_dim=4", "--set", "epochs=2",
        "--set", "batch_size=8", "--set", "threads=1", "--set", "device=cpu",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    meta = json.loads((run / "run.json").read_text())
    assert meta["data"]["items"] == 24 and meta["status"] == "complete"
    grid = tmp_path / "red.png"
    sampled = invoke("sample", run, "-n", 4, "--condition", "label:red=1", "-o", grid, "--seed", 0)
    assert sampled.exit_code == 0, sampled.output
    assert picture_size(grid) == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)
    with PILImage.open(grid) as picture:
        assert picture.mode == "RGB"
