"""Sampling and scoring shared among ranks: a chunk depends only on the seed and its number, each
rank's share, and `--nproc` checking its arguments before launching (the torchrun runs themselves
are in tests/e2e/test_torchrun_sampling.py)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import gaussmix_only
from polyvae_gaussmix import mixture

import polyvae
from polyvae.cli import build_cli
from polyvae.distributed import Context, share


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
