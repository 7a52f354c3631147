"""The one line ``polyvae sample`` ends with on stderr: the count, and what the domain can tell of
the items (molecules: valid, unique, novel; texts: unique; images: the count alone)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

import polyvae
from polyvae.cli import build_cli
from polyvae.cli.commands.sample import Summary
from polyvae.domain import Domain
from polyvae.plugins.molecules.chemistry import parse
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
        (
            "molecules",
            r"sampled 5 items: \d+\.\d% of [\d,]+ decoded were valid, 100\.0% unique, "
            r"\d+\.\d% novel",
        ),
        ("text", r"sampled 5 items: \d+\.\d% unique, \d+\.\d% novel"),
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


def test_molecules_sample_writes_only_valid_ones_unless_told_to_keep_the_rest(tmp_path):
    reset_registry(None)
    data = Path(__file__).resolve().parent.parent / "data" / "molecules" / "train.smi.gz"
    config = {"representation": "smiles", "max_items": 300, "epochs": 1, "fit_prior": "none"}
    polyvae.train("molecules", data, config, out=tmp_path / "run", progress=False, log=print)
    sample = ["sample", str(tmp_path / "run"), "-n", "50", "--seed", "1"]
    kept = CliRunner().invoke(build_cli(), sample)
    everything = CliRunner().invoke(build_cli(), [*sample, "--keep-invalid"])
    assert kept.exit_code == everything.exit_code == 0, kept.output + everything.output
    # A SMILES model one epoch old writes mostly broken strings: the default drops them.
    assert sum(parse(smiles) is None for smiles in everything.stdout.split()) > 0
    written = kept.stdout.split()
    assert written and all(parse(smiles) is not None for smiles in written)
    drawn = re.search(r"of ([\d,]+) decoded were valid", kept.stderr)
    assert drawn and int(drawn.group(1).replace(",", "")) > len(written), kept.stderr
