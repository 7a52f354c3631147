"""Items the codec cannot encode are skipped one by one, not the whole batch (issue 17 item 16):
the bundled molecules model and molecules with elements outside its vocabulary."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from importlib import resources

import numpy as np
import pytest
from click.testing import CliRunner

import polyvae
from polyvae.cli import build_cli
from polyvae.errors import UnencodableItem
from polyvae.registry import reset_registry

VALID = ["CCOc1ccccc1C(=O)N", "Cc1ccc(S(=O)(=O)N2CCCC2)cc1", "O=C(O)c1ccccc1O"]
SELENOPHENE, SILANE = "[Se]1C=CC=C1", "C[Si](C)(C)C"
MIXED = [VALID[0], SELENOPHENE, VALID[1], SILANE, VALID[2]]
KEPT, SKIPPED = [0, 2, 4], [1, 3]


@pytest.fixture(scope="module")
def model():
    reset_registry(None)
    return polyvae.load("molecules")


def test_encode_reconstruct_and_score_skip_only_what_cannot_be_encoded(model):
    skipped: dict[int, str] = {}
    codes = model.encode(MIXED, skipped=skipped)
    assert sorted(skipped) == SKIPPED
    # The token as the model's vocabulary spells it: aromatic '[se]' once canonicalised.
    assert "'[se]'" in skipped[1].lower() and "'[si]'" in skipped[3].lower()
    assert np.isnan(codes[SKIPPED]).all()
    # The others are encoded exactly as they are alone.
    np.testing.assert_allclose(codes[KEPT], model.encode(VALID), rtol=1e-5, atol=1e-6)

    rebuilt = model.reconstruct(MIXED, seed=0)
    assert [rebuilt[i] for i in SKIPPED] == [None, None]
    assert [rebuilt[i] for i in KEPT] == model.reconstruct(VALID, seed=0)
    refined = model.encode(MIXED, refine=5)
    assert np.isnan(refined[SKIPPED]).all()
    np.testing.assert_allclose(refined[KEPT], model.encode(VALID, refine=5), rtol=1e-4, atol=1e-5)

    scored: dict[int, str] = {}
    scores = model.score(MIXED, seed=0, skipped=scored)
    assert scored == skipped
    assert np.isnan(scores[SKIPPED]).all()
    np.testing.assert_allclose(scores[KEPT], model.score(VALID, seed=0), rtol=1e-4)


def test_evaluate_leaves_out_what_cannot_be_encoded_and_says_which(model):
    skipped: dict[int, str] = {}
    results = model.evaluate(MIXED, k=2, samples=0, likelihood_items=0, skipped=skipped)
    assert sorted(skipped) == SKIPPED
    assert results["items"] == len(VALID)
    assert np.isfinite(results["elbo"]) and np.isfinite(results["iwae_nll"])


def test_the_posterior_and_paths_through_one_item_still_refuse_it(model):
    with pytest.raises(UnencodableItem, match="Se"):
        model.posterior(MIXED)
    with pytest.raises(UnencodableItem, match="Si"):
        model.interpolate(VALID[0], SILANE, steps=3)


def test_cli_counts_and_lists_the_skipped_items(model, tmp_path):
    data = tmp_path / "mixed.smi"
    data.write_text("\n".join(MIXED) + "\n")
    runner = CliRunner()
    scores = tmp_path / "scores.csv"
    result = runner.invoke(
        build_cli(), ["score", "molecules", "--data", str(data), "-o", str(scores)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "skipped 2 items the model cannot encode:"
    # The reader writes molecules in its own form ('c1cc[se]c1'): the positions name them.
    assert lines[1].startswith("  item 2 '") and "' has the token '[se]'" in lines[1].lower()
    assert lines[2].startswith("  item 4 '") and "' has the token '[si]'" in lines[2].lower()
    rows = list(csv.DictReader(scores.open()))
    assert [row["score"] == "" for row in rows] == [False, True, False, True, False]

    rebuilt = runner.invoke(build_cli(), ["reconstruct", "molecules", *MIXED])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert len(rebuilt.stdout.splitlines()) == len(VALID)
    assert "skipped 2 items the model cannot encode:" in rebuilt.stderr


def test_cli_evaluate_lists_the_skipped_items_and_says_why_mutual_info_is_missing(tmp_path):
    reset_registry(None)
    data = tmp_path / "mixed.smi"
    data.write_text("\n".join(MIXED) + "\n")
    result = CliRunner().invoke(
        build_cli(), ["evaluate", "molecules", "--data", str(data), "-n", "0", "-k", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "skipped 2 items the model cannot encode:" in result.stderr
    rows = dict(line.split() for line in result.stdout.splitlines()[2:])
    assert rows["items"] == "3.0000" and rows["mutual_info"] == "n/a"
    assert (
        "note: mutual_info is n/a: its estimate needs at least 100 items, and 3 were evaluated"
        in result.stderr
    )


def test_fit_prior_on_a_file_leaves_out_what_cannot_be_encoded(model, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(model.run_dir, run)
    data = tmp_path / "mixed.smi"
    test_smiles = resources.files("polyvae.data") / "molecules" / "test.smi.gz"
    with gzip.open(str(test_smiles), "rt") as test_set:
        molecules = [next(test_set).split()[0] for _ in range(40)]
    data.write_text("\n".join([*molecules, SELENOPHENE, SILANE]) + "\n")
    result = CliRunner().invoke(build_cli(), ["fit-prior", str(run), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "2 items the run's codec cannot encode left out" in result.output
    fit = json.loads((run / "prior" / "prior.json").read_text())["fit"]
    assert fit["data"] == str(data.resolve()) and fit["unencodable_items"] == 2
    assert fit["items"] + fit["held_out_items"] == len(molecules)
