"""The CLI over a trained run: every command, and one-line errors with exit status 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from polyvae_gaussmix import mixture

import polyvae
from polyvae.cli import build_cli


@pytest.fixture
def trained_run(tmp_path, registry, mixture_csv):
    config = {"epochs": 2, "batch_size": 64, "latent_dim": 3, "max_items": 600}
    result = polyvae.train(
        "gaussmix", data=mixture_csv, config=config, out=tmp_path / "run", progress=False, log=print
    )
    return result.run_dir


def invoke(*args):
    return CliRunner().invoke(build_cli(), [str(arg) for arg in args], catch_exceptions=False)


def test_sample_to_stdout_and_file_is_repeatable(trained_run, tmp_path):
    first = invoke("sample", trained_run, "-n", 5, "--seed", 3)
    second = invoke("sample", trained_run, "-n", 5, "--seed", 3)
    assert first.exit_code == 0 and first.stdout == second.stdout
    assert len(first.stdout.splitlines()) == 5
    assert all(len(line.split(",")) == 6 for line in first.stdout.splitlines())
    out = tmp_path / "samples"
    written = invoke("sample", trained_run, "-n", 4, "-o", out, "--unique")
    assert written.exit_code == 0
    assert len((tmp_path / "samples.csv").read_text().splitlines()) == 4


def test_sample_precision_replaces_the_runs_own(trained_run, monkeypatch):
    import polyvae.model

    used, real = [], polyvae.model.fast_decoding

    def recorded(device, precision):
        used.append(precision)
        return real(device, precision)

    monkeypatch.setattr(polyvae.model, "fast_decoding", recorded)
    assert invoke("sample", trained_run, "-n", 3, "--precision", "fp32").exit_code == 0
    assert invoke("sample", trained_run, "-n", 3).exit_code == 0
    assert used == ["fp32", "auto"]  # the run's own: the default
    refused = invoke("sample", trained_run, "--precision", "int8")
    assert (
        refused.exit_code == 2 and "'int8' is not one of 'auto', 'fp32', 'bf16'" in refused.output
    )
    with pytest.raises(
        polyvae.errors.UserError,
        match="config key 'precision': 'fp16' is not one of: auto, fp32, bf16",
    ):
        polyvae.load(trained_run, precision="fp16")


def test_evaluate_reports_likelihood_latent_and_domain_metrics(trained_run):
    result = invoke("evaluate", trained_run, "-n", 200, "-k", 10, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    for key in ("elbo", "iwae_nll", "recon", "kl", "active_units", "mutual_info", "mean_error"):
        assert key in metrics
    # The IWAE bound is tighter than the ELBO: -log p(x) estimate below -ELBO (same items).
    assert metrics["iwae_nll"] <= -metrics["elbo"] + 0.05
    table = invoke("evaluate", trained_run, "-n", 50, "-k", 2)
    assert "iwae_nll" in table.output and "metric" in table.output


def test_reconstruct_interpolate_encode_score(trained_run, tmp_path, mixture_csv):
    points = mixture(10, seed=5)
    a, b = (",".join(f"{v:.4f}" for v in row) for row in points[:2])
    # "--" ends the options: vectors may start with a minus sign.
    rebuilt = invoke("reconstruct", trained_run, "--", a, b)
    assert rebuilt.exit_code == 0 and len(rebuilt.output.splitlines()) == 2
    assert rebuilt.output.splitlines()[0].split("\t")[0] == polyvae.get_domain(
        "gaussmix"
    ).format_item(points[0].round(4))
    path = invoke("interpolate", trained_run, "--steps", 5, "--method", "linear", "--", a, b)
    assert path.exit_code == 0 and len(path.output.splitlines()) == 5

    codes = tmp_path / "z.npy"
    assert invoke("encode", trained_run, "--data", mixture_csv, "-o", codes).exit_code == 0
    array = np.load(codes, allow_pickle=False)
    assert array.shape == (2000, 3) and array.dtype == np.float32

    scores = tmp_path / "scores.csv"
    assert invoke("score", trained_run, "--data", mixture_csv, "-o", scores, "-k", 5).exit_code == 0
    rows = list(csv.DictReader(scores.open()))
    assert len(rows) == 2000 and all(np.isfinite(float(row["score"])) for row in rows)


def test_score_ranks_outliers_above_inliers(trained_run):
    model = polyvae.load(trained_run)
    inliers = mixture(50, seed=11)
    outliers = inliers + 4.0
    assert model.score(outliers).min() > np.median(model.score(inliers))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "nosuch", "--data", "x.csv"],
            "unknown domain 'nosuch'; installed domains: gaussmix",
        ),
        (["train", "gaussmix", "--data", "missing.csv"], "data not found: missing.csv"),
        (
            ["train", "gaussmix", "--data", "{csv}", "--set", "beta_schedule=cosine"],
            "config key 'beta_schedule': 'cosine' is not one of",
        ),
        (
            ["train", "gaussmix", "--data", "{csv}", "--set", "colour=red"],
            "unknown config key 'colour'",
        ),
        (
            ["sample", "no/such/run"],
            "'no/such/run' is neither a run directory nor an installed domain",
        ),
        (["sample", "gaussmix"], "domain 'gaussmix' ships no pretrained run"),
        (
            ["sample", "{run}", "--condition", "first=1"],
            "this model was not trained with a condition",
        ),
        (["sample", "{run}", "--beam", "4"], "unknown option --beam for domain 'gaussmix'"),
        (["encode", "{run}", "--data", "{csv}", "-o", "z.txt"], "encode writes .npy files"),
        (
            ["train", "gaussmix", "--data", "{csv}", "--set", "lr=0"],
            "config key 'lr': 0.0 must be above 0",  # it would train on a flat loss
        ),
        (["reconstruct", "{run}", "1,2"], "items have 2 values, this model expects 6"),
        (
            ["train", "gaussmix", "--data", "{csv}", "--init", "{run}", "--set", "latent_dim=5"],
            "cannot fine-tune",
        ),
        (
            ["train", "gaussmix", "--data", "{csv}", "--init", "{run}", "--resume", "{run}"],
            "--init starts a new run; a resumed run keeps its own start",
        ),
        (
            ["train", "gaussmix", "--data", "{csv}", "--init", "no/such/run"],
            "'no/such/run' is neither a run directory nor an installed domain",
        ),
    ],
)
def test_user_errors_are_one_line_with_status_2(
    args, message, trained_run, mixture_csv, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    args = [arg.format(run=trained_run, csv=mixture_csv) for arg in args]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {message}")
    assert len(result.output.strip().splitlines()) == 1


def test_sample_refuses_zero_items_and_writes_nothing(trained_run, tmp_path):
    output = tmp_path / "none.csv"
    result = CliRunner().invoke(build_cli(), ["sample", str(trained_run), "-n", "0", "-o", output])
    assert result.exit_code == 2
    assert "Invalid value for '-n': 0 is not in the range x>=1" in result.output
    assert not output.exists()


def test_sample_ends_with_a_summary_line(trained_run):
    result = invoke("sample", trained_run, "-n", 5, "--seed", 3)
    # Mixture samples are vectors: no validity, distinctness or novelty to tell, just the count.
    assert result.stderr.splitlines()[-1] == "sampled 5 items"


def test_corrupt_run_is_refused(trained_run):
    (trained_run / "model.safetensors").write_bytes(b"not really")
    result = CliRunner().invoke(build_cli(), ["sample", str(trained_run)])
    assert result.exit_code == 2 and "is not a readable safetensors file" in result.output
    (trained_run / "payload.pkl").write_bytes(b"\x80\x04")
    result = CliRunner().invoke(build_cli(), ["sample", str(trained_run)])
    assert result.exit_code == 2 and "refusing to load" in result.output
