"""`polyvae molecules neighbours / optimize` and conditioned sampling through the CLI."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

import polyvae
from polyvae.cli import build_cli
from polyvae.plugins.molecules.metrics import bundled_smiles
from polyvae.registry import reset_registry

TINY = {
    "representation": "selfies",
    "embedding_dim": 16,
    "encoder_hidden": 32,
    "decoder_hidden": 64,
    "decoder_layers": 1,
    "latent_dim": 8,
    "batch_size": 32,
    "epochs": 2,
    "beta_warmup_steps": 10,
    "predict": ["qed"],
    "condition": ["logp"],
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    reset_registry(None)  # the real entry points: the molecules plugin and its commands
    data = tmp_path_factory.mktemp("mol") / "train.smi"
    data.write_text("\n".join(bundled_smiles("train")[:300]) + "\n")
    out = tmp_path_factory.mktemp("mol") / "run"
    polyvae.train("molecules", data=data, config=TINY, out=out, progress=False, log=print)
    return out


def invoke(*args):
    return CliRunner().invoke(build_cli(), [str(arg) for arg in args])


def test_neighbours_lists_analogues_by_similarity(run_dir):
    result = invoke("molecules", "neighbours", run_dir, "CC(=O)Nc1ccc(O)cc1", "-n", 20, "--seed", 0)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "tanimoto\tsmiles" and len(lines) > 1
    values = [float(line.split("\t")[0]) for line in lines[1:]]
    assert values == sorted(values, reverse=True) and all(0 <= v <= 1 for v in values)
    # No radius and greedy decoding: every sample is the seed's one greedy reconstruction.
    args = ("molecules", "neighbours", run_dir, "CC(=O)Nc1ccc(O)cc1", "-n", 20, "--seed", 0)
    greedy = invoke(*args, "--radius", 0, "--temperature", 0)
    assert greedy.exit_code == 0, greedy.output
    assert "20 samples at radius 0.0: " in greedy.stderr
    assert len(greedy.stdout.splitlines()) <= 2


def test_optimize_with_the_head_and_with_a_similarity_objective(run_dir, tmp_path):
    out = tmp_path / "best.csv"
    result = invoke(
        "molecules",
        "optimize",
        run_dir,
        "--objective",
        "qed",
        "-n",
        5,
        "--steps",
        10,
        "--seed",
        0,
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert 1 <= len(rows) <= 5 and all(row["valid"] == "true" for row in rows)
    qed = [float(row["qed"]) for row in rows]
    assert qed == sorted(qed, reverse=True)
    similar = invoke(
        "molecules",
        "optimize",
        run_dir,
        "--objective",
        "similarity:c1ccccc1O",
        "-n",
        3,
        "--steps",
        20,
        "--seed",
        0,
    )
    assert similar.exit_code == 0, similar.output
    assert similar.stdout.splitlines()[0] == "similarity\tsmiles"


def test_conditioned_sampling_reports_how_close_it_lands(run_dir):
    result = invoke("sample", run_dir, "-n", 20, "--condition", "logp=2.5", "--seed", 1)
    assert result.exit_code == 0, result.output
    assert "logp: target 2.5, generated" in result.stderr


def test_errors(run_dir):
    bad = invoke("molecules", "optimize", run_dir, "--objective", "potency")
    assert bad.exit_code == 2 and "unknown molecular property 'potency'" in bad.output
    bad = invoke("molecules", "neighbours", run_dir, "C1CC")
    assert bad.exit_code == 2 and "'C1CC'" in bad.output
    bad = invoke("sample", run_dir, "--condition", "logp=99")
    assert bad.exit_code == 2 and "outside the trained range" in bad.output


def test_randomised_smiles_augmentation_trains(tmp_path):
    reset_registry(None)
    data = tmp_path / "train.smi"
    data.write_text("\n".join(bundled_smiles("train")[:120]) + "\n")
    config = TINY | {"representation": "smiles", "augment": True, "epochs": 2}
    config = {k: v for k, v in config.items() if k not in ("predict", "condition")}
    result = polyvae.train(
        "molecules", data=data, config=config, out=tmp_path / "aug", progress=False, log=print
    )
    assert result.status == "complete" and result.epochs == 2
    model = polyvae.load(result.run_dir)
    assert model.codec.augment
    # Two epochs saw different atom orders of the same molecules.
    first = model.codec.encode_augmented(model.data_splits()[0][:20], seed=0)["tokens"]
    second = model.codec.encode_augmented(model.data_splits()[0][:20], seed=1)["tokens"]
    assert first.shape != second.shape or not bool((first == second).all())
