"""Sampling and scoring spread over two torchrun processes on the CPU (Gloo): the same output as
one process, written once by rank 0 (the `run_dir` fixture is test_distributed_sampling's,
through tests/e2e/conftest.py)."""

from __future__ import annotations

import csv

import numpy as np
from click.testing import CliRunner
from conftest import run_polyvae
from polyvae_gaussmix import mixture

from polyvae.cli import build_cli
from polyvae.model import SAMPLE_CHUNK

from .test_distributed import torchrun

# Three chunks (4,096 + 4,096 + 808): rank 0 decodes the first and third, rank 1 the second.
COUNT = 2 * SAMPLE_CHUNK + 808


def in_one_process(*args):
    result = CliRunner().invoke(build_cli(), [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_two_ranks_write_the_file_one_process_writes(run_dir, tmp_path, plugin_site):
    sample = ["sample", run_dir, "-n", COUNT, "--seed", 5, "--condition", "first=0.3"]
    in_one_process(*sample, "-o", tmp_path / "one.csv")
    folder = tmp_path / "two"
    folder.mkdir()
    spread = run_polyvae([*sample, "-o", "out.csv", "--nproc", 2], site=plugin_site, cwd=folder)
    assert spread.returncode == 0, spread.stderr[-3000:]
    # Rank 0 alone wrote the file (no temporary left beside it) and reported on it.
    assert [path.name for path in folder.iterdir()] == ["out.csv"]
    assert spread.stderr.count(f"wrote {COUNT:,} items to out.csv") == 1, spread.stderr
    assert spread.stderr.count("first: target 0.3, generated") == 1, spread.stderr
    written = (folder / "out.csv").read_text()
    assert len(written.splitlines()) == COUNT
    assert written == (tmp_path / "one.csv").read_text()


def test_torchrun_prints_unique_items_once_in_chunk_order(run_dir, tmp_path, plugin_site):
    sample = ["sample", run_dir, "-n", COUNT, "--seed", 2, "--unique"]
    expected = in_one_process(*sample, "--condition", "first=-0.5").stdout
    spread = torchrun(
        ["-m", "polyvae.cli", *sample, "--condition=first=-0.5"], site=plugin_site, cwd=tmp_path
    )
    assert spread.returncode == 0, spread.stderr[-3000:]
    assert len(spread.stdout.splitlines()) == COUNT
    assert spread.stdout == expected
    # Without --seed the ranks share one fresh stream, so chunks are not repeated across ranks.
    unseeded = torchrun(["-m", "polyvae.cli", "sample", run_dir, "-n", COUNT], site=plugin_site)
    assert unseeded.returncode == 0, unseeded.stderr[-3000:]
    lines = unseeded.stdout.splitlines()
    assert len(lines) == len(set(lines)) == COUNT


def test_scores_over_two_ranks_equal_one_process_in_input_order(run_dir, tmp_path, plugin_site):
    data = tmp_path / "items.csv"
    np.savetxt(data, mixture(1000, seed=3), delimiter=",", fmt="%.6f")  # 16 batches of 64
    score = ["score", run_dir, "--data", data, "-k", 20, "--seed", 1]
    in_one_process(*score, "-o", tmp_path / "one.csv")
    spread = torchrun(
        ["-m", "polyvae.cli", *score, "-o", tmp_path / "two.csv"], site=plugin_site, cwd=tmp_path
    )
    assert spread.returncode == 0, spread.stderr[-3000:]
    assert spread.stdout.count("wrote 1,000 scores") == 1, spread.stdout
    one = list(csv.DictReader((tmp_path / "one.csv").open()))
    two = list(csv.DictReader((tmp_path / "two.csv").open()))
    assert [row["index"] for row in two] == [str(index) for index in range(1000)]
    assert [row["item"] for row in two] == [row["item"] for row in one]
    np.testing.assert_allclose(
        [float(row["score"]) for row in two], [float(row["score"]) for row in one], atol=1e-5
    )
    # One batch for two ranks: rank 0 scores nothing, rank 1 everything.
    few = tmp_path / "few.csv"
    np.savetxt(few, mixture(10, seed=3), delimiter=",", fmt="%.6f")
    spread = torchrun(
        ["-m", "polyvae.cli", "score", run_dir, "--data", few, "-o", tmp_path / "few_scores.csv"],
        site=plugin_site,
    )
    assert spread.returncode == 0, spread.stderr[-3000:]
    assert len((tmp_path / "few_scores.csv").read_text().splitlines()) == 11
