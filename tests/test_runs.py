"""Evaluation records, per-domain evaluation defaults, `polyvae runs` and `polyvae compare`."""

from __future__ import annotations

import errno
import json
import os

import pytest
from click.testing import CliRunner

import polyvae
from polyvae.cli import build_cli
from polyvae.domain import Domain
from polyvae.plugins.images.domain import ImagesDomain
from polyvae.run import RunDir

TINY = {"epochs": 2, "batch_size": 64, "latent_dim": 3, "max_items": 600}


@pytest.fixture
def runs_folder(tmp_path, registry, mixture_csv):
    """runs/a and runs/group/b: two tiny gaussmix runs, b with a larger latent."""
    for name, latent_dim in (("a", 3), ("group/b", 5)):
        polyvae.train(
            "gaussmix",
            data=mixture_csv,
            config=TINY | {"latent_dim": latent_dim},
            out=tmp_path / "runs" / name,
            progress=False,
            log=print,
        )
    return tmp_path / "runs"


def invoke(*args):
    return CliRunner().invoke(build_cli(), [str(arg) for arg in args])


def test_evaluation_defaults_are_the_domains():
    assert (Domain.importance_samples, Domain.likelihood_items) == (50, 1000)
    assert (ImagesDomain.importance_samples, ImagesDomain.likelihood_items) == (100, 200)


def test_evaluate_uses_the_domains_defaults_and_records_them(runs_folder, domain, monkeypatch):
    monkeypatch.setattr(type(domain), "importance_samples", 3)
    monkeypatch.setattr(type(domain), "likelihood_items", 7)
    run = runs_folder / "a"
    result = invoke("evaluate", run, "-n", 20, "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["items"] == 7.0  # the likelihood metrics saw the domain's number of items

    record = RunDir(run).read_evaluation()
    assert record["settings"] == {
        "data": None,
        "k": 3,
        "samples": 20,
        "likelihood_items": 7,
        "temperature": 1.0,
        "seed": 0,
        "prior": "fitted",  # training fitted one, and evaluate samples from it by default
    }
    assert record["results"] == printed
    weights = (run / "model.safetensors").stat()
    assert record["weights"] == {"size": weights.st_size, "mtime_ns": weights.st_mtime_ns}
    assert record["evaluated_at"].endswith("+00:00")

    overridden = invoke("evaluate", run, "-n", 0, "-k", 2, "--likelihood-items", 5, "--json")
    assert overridden.exit_code == 0, overridden.output
    assert RunDir(run).read_evaluation()["settings"]["k"] == 2
    assert json.loads(overridden.output)["items"] == 5.0


def test_an_evaluation_goes_stale_when_the_weights_change(runs_folder):
    run = RunDir(runs_folder / "a")
    assert run.read_evaluation() is None  # none yet
    run.write_evaluation({"iwae_nll": 1.5}, {"k": 2})
    assert run.read_evaluation()["results"] == {"iwae_nll": 1.5}
    weights = run.weights_path.stat()
    os.utime(run.weights_path, ns=(weights.st_atime_ns, weights.st_mtime_ns + 1_000_000_000))
    assert run.read_evaluation() is None


def test_evaluate_notes_a_read_only_run_and_still_reports(runs_folder, monkeypatch):
    def refuse(self, results, settings, weights=None):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(RunDir, "write_evaluation", refuse)
    result = CliRunner().invoke(build_cli(), ["evaluate", str(runs_folder / "a"), "-n", "0"])
    assert result.exit_code == 0, result.output
    assert "note: results not saved to" in result.stderr and "Permission denied" in result.stderr
    assert "iwae_nll" in result.stdout


def test_runs_lists_runs_their_metrics_and_broken_ones(runs_folder):
    assert invoke("evaluate", runs_folder / "a", "-n", 0, "-k", 2).exit_code == 0
    broken = runs_folder / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    (runs_folder / "notes").mkdir()  # a folder without run.json is no run

    result = invoke("runs", runs_folder, "--json")
    assert result.exit_code == 0, result.output
    listed = {entry["path"]: entry for entry in json.loads(result.output)}
    a, b = listed[str(runs_folder / "a")], listed[str(runs_folder / "group" / "b")]
    assert set(listed) == {str(runs_folder / name) for name in ("a", "broken", "group/b")}
    assert (
        listed[str(broken)]["status"].startswith("error: ")
        and "not valid JSON" in (listed[str(broken)]["status"])
    )

    model = polyvae.load(runs_folder / "a")
    assert a["parameters"] == sum(tensor.numel() for tensor in model.vae.state_dict().values())
    meta = json.loads((runs_folder / "a" / "run.json").read_text())
    assert (a["domain"], a["status"], a["epochs"], a["latent_dim"]) == (
        "gaussmix",
        "complete",
        2,
        3,
    )
    assert a["training_items"] == meta["data"]["train"] < 600
    assert a["best_val_elbo"] == meta["summary"]["best_val_elbo"]
    evaluation = RunDir(runs_folder / "a").read_evaluation()["results"]
    assert a["metrics_from"] == "evaluation"
    assert a["metrics"] == {key: evaluation[key] for key in ("iwae_nll", "kl", "active_units")}
    # Not evaluated: the last epoch's validation numbers, and no IWAE NLL.
    last = json.loads((runs_folder / "group" / "b" / "run.json").read_text())["summary"]["last"]
    assert b["metrics_from"] == "last epoch" and b["latent_dim"] == 5
    assert b["metrics"] == {
        "iwae_nll": None,
        "kl": last["val_kl"],
        "active_units": last["val_active_units"],
    }

    table = invoke("runs", runs_folder)
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["run", "domain", "status"] and len(lines) == 2 + 3
    assert any("error: " in line and "broken" in line for line in lines)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "no folder"),
        (lambda root: root, "no runs under"),
    ],
)
def test_runs_without_runs_is_one_line_error(tmp_path, registry, make, message):
    result = invoke("runs", make(tmp_path))
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_compare_puts_runs_and_the_domains_references_side_by_side(
    runs_folder, domain, monkeypatch
):
    a, b = runs_folder / "a", runs_folder / "group" / "b"
    assert invoke("evaluate", a, "-n", 0, "-k", 2).exit_code == 0
    monkeypatch.setattr(
        type(domain), "reference_results", {"Paper VAE": {"iwae_nll": 1.25, "paper_only": 0.5}}
    )
    result = invoke("compare", a, b, "--json")
    assert result.exit_code == 0, result.output
    compared = json.loads(result.output)
    assert compared["runs"] == [str(a), str(b)] and compared["references"] == ["Paper VAE"]
    metrics = compared["metrics"]
    assert list(metrics)[:6] == [
        "parameters",
        "epochs",
        "best_val_elbo",
        "val_kl",
        "val_active_units",
        "training_seconds",
    ]
    evaluation = RunDir(a).read_evaluation()["results"]
    assert metrics["iwae_nll"] == {str(a): evaluation["iwae_nll"], str(b): None, "Paper VAE": 1.25}
    assert metrics["paper_only"] == {str(a): None, str(b): None, "Paper VAE": 0.5}
    assert metrics["epochs"] == {str(a): 2, str(b): 2, "Paper VAE": None}
    seconds = sum(json.loads(line)["seconds"] for line in (a / "metrics.jsonl").open())
    assert metrics["training_seconds"][str(a)] == pytest.approx(seconds)

    table = invoke("compare", a, b).output.splitlines()
    assert table[0].split() == ["metric", str(a), str(b), "Paper", "VAE"]
    assert table[0].index("Paper VAE") > 0
    iwae_row = next(line for line in table if line.startswith("iwae_nll"))
    assert iwae_row.split()[2:] == ["-", "1.2500"]


def test_compare_shows_what_runs_were_measured_on_and_flags_differences(runs_folder, mixture_csv):
    a, b, c = runs_folder / "a", runs_folder / "group" / "b", runs_folder / "c"
    polyvae.train(
        "gaussmix",
        data=mixture_csv,
        config=TINY | {"max_items": 500},  # other data than a and b
        out=c,
        progress=False,
        log=print,
    )
    assert invoke("evaluate", a, "-n", 0, "-k", 2).exit_code == 0
    assert invoke("evaluate", b, "-n", 0, "-k", 3, "--data", mixture_csv).exit_code == 0
    result = invoke("compare", a, b, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    fingerprint = json.loads((a / "run.json").read_text())["data"]["fingerprint"]
    assert fingerprint.startswith("sha256:")
    assert metrics["data"] == {str(a): fingerprint[7:19], str(b): fingerprint[7:19]}
    assert metrics["eval_data"] == {str(a): "validation split", str(b): str(mixture_csv)}
    assert metrics["eval_k"] == {str(a): 2, str(b): 3}
    assert metrics["eval_samples"] == {str(a): 0, str(b): 0}
    assert result.stderr.splitlines() == [
        f"note: these runs were evaluated on different data ({mixture_csv}, validation split); "
        "their metrics are not like for like",
        "note: these runs were evaluated with different k (importance samples) (2, 3); "
        "their metrics are not like for like",
    ]
    table = invoke("compare", a, c)
    assert "their metrics are not like for like" in table.stderr
    assert table.stderr.splitlines()[0].startswith(
        "note: these runs were trained on different data"
    )
    data_row = next(line for line in table.stdout.splitlines() if line.startswith("data "))
    assert len(data_row.split()) == 3 and fingerprint[7:19] in data_row
    eval_row = next(line for line in table.stdout.splitlines() if line.startswith("eval_k "))
    assert eval_row.split() == ["eval_k", "2", "-"]  # c has no evaluation


def test_compare_refuses_a_path_that_is_not_a_run(runs_folder):
    result = invoke("compare", runs_folder / "a", runs_folder)
    assert result.exit_code == 2
    assert result.output == f"Error: {runs_folder} is not a run directory: it has no run.json\n"
