"""The images domain through the installed `polyvae` command: it trains, samples grids and files,
and evaluates; on that run `polyvae images ...` draws reconstruction, interpolation and traversal
grids; the bundled pretrained model samples right after install."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from conftest import run_polyvae
from images.test_cli import invoke, picture_size
from PIL import Image as PILImage

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


def test_installed_command_samples_the_bundled_model(tmp_path):
    out = tmp_path / "grid.png"
    result = run_polyvae(["sample", "images", "-n", 64, "-o", out], plugins="images")
    assert result.returncode == 0, result.stderr
    assert picture_size(out) == (8 * 28 + 9 * 2, 8 * 28 + 9 * 2)
