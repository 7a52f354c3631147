"""The one line ``polyvae sample`` ends with on stderr: the count, and what the domain can tell of
the items (molecules: valid, unique, novel; texts: unique; images: the count alone)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from polyvae.cli import build_cli
from polyvae.cli.commands.sample import Summary
from polyvae.domain import Domain
from polyvae.registry import reset_registry


class Letters(Domain):
    """Items are strings; a lower-case one is invalid."""

    name = "letters"

    def is_valid(self, item: str) -> bool:
        return item.isupper()

    read = fit_codec = load_codec = build = None  # not used here


class KnowsTraining:
    training = {"A", "B"}

    def novel(self, items):
        return np.array([item not in self.training for item in items])


def test_summary_counts_valid_unique_and_novel_items():
    summary = Summary(SimpleNamespace(domain=Letters(), codec=KnowsTraining()))
    for chunk in summary.watch([["A", "C", "C", "x"], ["D", "y"]]):
        assert chunk
    # 4 of 6 valid; 5 distinct (C twice); of the 4 valid, C, C and D are absent from training.
    assert summary.line() == "sampled 6 items: 66.7% valid, 83.3% unique, 75.0% novel"


def test_summary_without_a_codec_that_knows_the_training_items_says_no_novelty():
    summary = Summary(SimpleNamespace(domain=Letters(), codec=object()))
    summary.add(["A", "b"])
    assert summary.line() == "sampled 2 items: 50.0% valid, 100.0% unique"


@pytest.mark.parametrize(
    ("domain", "line"),
    [
        ("molecules", r"sampled 5 items: \d+\.\d% valid, \d+\.\d% unique, \d+\.\d% novel"),
        ("text", r"sampled 5 items: \d+\.\d% unique"),
        ("images", r"sampled 5 items"),
    ],
)
def test_sampling_a_bundled_model_ends_with_its_summary(domain, line):
    reset_registry(None)  # the installed plugins, as a user has them
    result = CliRunner().invoke(build_cli(), ["sample", domain, "-n", "5", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 5
    summaries = [text for text in result.stderr.splitlines() if text.startswith("sampled ")]
    assert len(summaries) == 1 and re.fullmatch(line, summaries[0]), result.stderr
