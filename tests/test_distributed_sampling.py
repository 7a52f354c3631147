"""Sampling and scoring spread over two torchrun processes on the CPU (Gloo): the same output as
one process, written once by rank 0."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import gaussmix_only, run_polyvae
from polyvae_gaussmix import mixture
from test_distributed import torchrun

import polyvae
from polyvae.cli import build_cli
from polyvae.distributed import Context, share
from polyvae.model import SAMPLE_CHUNK

# Three chunks (4,096 + 4,096 + 808): rank 0 decodes the first and third, rank 1 the second.
COUNT = 2 * SAMPLE_CHUNK + 808


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    with gaussmix_only():
        out = tmp_path_factory.mktemp("spread") / "run"
        config = {
            "epochs": 1,
            "batch_size": 64,
            "latent_dim": 3,
            "threads": 1,
            "condition": "first",
        }
        polyvae.train("gaussmix", data=list(mixture(300)), config=config, out=out, progress=False)
        yield out


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


def test_a_chunk_depends_only_on_the_seed_and_its_number(run_dir):
    model = polyvae.load(run_dir)
    longer = list(model.sample_chunks(10, seed=7, chunk_size=3))
    shorter = list(model.sample_chunks(7, seed=7, chunk_size=3))
    assert [len(chunk) for chunk in shorter] == [3, 3, 1]
    for a, b in zip(longer[:2], shorter[:2], strict=True):
        assert np.array_equal(np.stack(a), np.stack(b))
    assert not np.array_equal(np.stack(longer[0]), np.stack(longer[1]))


def test_shares_cover_the_range_in_rank_order():
    shares = [share(5, Context(rank, 3)) for rank in range(3)]
    assert shares == [range(0, 1), range(1, 3), range(3, 5)]
    assert share(1, Context(0, 2)) == range(0, 0)  # a rank may get nothing


def test_nproc_checks_the_arguments_once_before_launching(run_dir, tmp_path):
    runner = CliRunner()
    bad_condition = ["sample", run_dir, "-n", 5, "--nproc", 2, "--condition", "last=1"]
    result = runner.invoke(build_cli(), [str(arg) for arg in bad_condition])
    assert result.exit_code == 2 and "unknown condition last" in result.output
    missing = ["score", run_dir, "--data", tmp_path / "none.csv", "-o", tmp_path / "s.csv"]
    result = runner.invoke(build_cli(), [str(arg) for arg in [*missing, "--nproc", 2]])
    assert result.exit_code == 2 and "no such file or folder" in result.output
