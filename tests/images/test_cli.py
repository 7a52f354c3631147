"""The images domain from the command line: the installed `polyvae` command trains, samples and
evaluates; `polyvae images ...` draws reconstruction, interpolation and traversal grids; the
bundled pretrained model samples clothing right after install."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import run_polyvae
from PIL import Image as PILImage

import polyvae
from polyvae.cli import build_cli
from polyvae.plugins.images.commands import side_by_side, traversal_points
from polyvae.registry import reset_registry

torch.set_num_threads(1)
TEST_IMAGES = Path(str(resources.files("polyvae.data") / "images" / "t10k-images-idx3-ubyte.gz"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A two-step run trained by the installed command on 64 bundled images."""
    out = tmp_path_factory.mktemp("images") / "run"
    result = run_polyvae(
        [
            "train", "images", "--data", TEST_IMAGES, "--out", out, "--quiet",
            "--set", "max_items=64", "--set", "max_steps=2", "--set", "epochs=1",
            "--set", "batch_size=16", "--set", "width=4", "--set", "depth=1",
            "--set", "latent_dim=4", "--set", "threads=1", "--set", "device=cpu",
        ],
        plugins="images",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "complete: 1 epoch, 2 steps" in result.stdout
    return out


def invoke(*args):
    reset_registry(None)
    return CliRunner().invoke(build_cli(), [str(arg) for arg in args])


def picture_size(path: Path) -> tuple[int, int]:
    with PILImage.open(path) as picture:
        return picture.size


def test_installed_command_samples_grids_and_files_and_evaluates(trained, tmp_path):
    grid = tmp_path / "grid.png"
    result = run_polyvae(
        ["sample", trained, "-n", 6, "--seed", 1, "-o", grid, "--nrow", 3], plugins="images"
    )
    assert result.returncode == 0, result.stderr
    assert picture_size(grid) == (3 * 28 + 4 * 2, 2 * 28 + 3 * 2)
    result = invoke(
        "sample", trained, "-n", 3, "-o", tmp_path / "each.png", "--each", "--pixels", "sample"
    )
    assert result.exit_code == 0, result.output
    assert f"wrote 3 items to {tmp_path / 'each'}" in result.output
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == [
        "0000.png",
        "0001.png",
        "0002.png",
    ]
    result = run_polyvae(
        ["evaluate", trained, "-n", 0, "-k", 2, "--likelihood-items", 8, "--json"],
        plugins="images",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["bits_per_dim"] == pytest.approx(metrics["iwae_nll"] / 784 / np.log(2))
    assert {"reconstruction_mse", "reconstruction_psnr", "kl", "active_units"} <= set(metrics)


def test_user_errors_are_one_line(trained, tmp_path):
    result = invoke("sample", trained, "-n", 2, "--each")
    assert (
        result.exit_code == 2 and "Error: --each apply to the file written with -o" in result.output
    )
    result = invoke("sample", trained, "-n", 2, "-o", tmp_path / "x.gif")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("Error: images are written to")
    result = invoke("train", "images", "--data", "torchvision:FashionMNIST", "--out",
                    tmp_path / "tv", "--set", f"torchvision_root={tmp_path}")  # fmt: skip
    assert result.exit_code == 2
    assert "FashionMNIST (train) is not in" in result.output.splitlines()[-1]


def test_reconstruction_interpolation_and_traversal_grids(trained, tmp_path):
    out = tmp_path / "recon.png"
    result = invoke("images", "reconstruct", trained, "-n", 6, "--per-row", 3, "-o", out)
    assert result.exit_code == 0, result.output
    assert picture_size(out) == (3 * 28 + 4 * 2, 4 * 28 + 5 * 2)  # 2 pairs of rows
    out = tmp_path / "strips.png"
    result = invoke(
        "images", "interpolate", trained, "--data", TEST_IMAGES, "--pairs", 2, "--steps", 4,
        "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert picture_size(out) == (6 * 28 + 7 * 2, 2 * 28 + 3 * 2)  # ends + 4 steps, 2 rows
    ends = tmp_path / "a.png"
    PILImage.fromarray(np.zeros((28, 28), np.uint8)).save(ends)
    result = invoke("images", "interpolate", trained, ends, ends, "--steps", 2, "-o", out)
    assert result.exit_code == 0, result.output
    result = invoke("images", "interpolate", trained, ends, "-o", out)
    assert result.exit_code == 2 and "in pairs" in result.output
    out = tmp_path / "traverse.png"
    result = invoke("images", "traverse", trained, "--dims", "0,3", "--steps", 5, "-o", out)
    assert result.exit_code == 0, result.output
    assert picture_size(out) == (5 * 28 + 6 * 2, 2 * 28 + 3 * 2)
    result = invoke("images", "traverse", trained, "--dims", "9", "-o", out)
    assert result.exit_code == 2 and "from 0 to 3" in result.output


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


def test_installed_command_samples_the_bundled_model(tmp_path):
    out = tmp_path / "grid.png"
    result = run_polyvae(["sample", "images", "-n", 64, "-o", out], plugins="images")
    assert result.returncode == 0, result.stderr
    assert picture_size(out) == (8 * 28 + 9 * 2, 8 * 28 + 9 * 2)


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
