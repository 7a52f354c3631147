"""``polyvae runs`` lists run directories; ``polyvae compare`` puts runs' metrics side by side.

Both read only run.json, metrics.jsonl, evaluation.json and the header of model.safetensors: no
model is loaded, so listing a folder of large runs is instant.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from polyvae.cli.options import json_option
from polyvae.cli.tables import table
from polyvae.errors import UserError
from polyvae.registry import get_registry

if TYPE_CHECKING:  # polyvae.run imports torch, which building the command line does without
    from polyvae.run import RunDir

# How many folder levels below DIR `polyvae runs` looks (runs/project/sweep/run).
MAX_DEPTH = 3
# The widest status cell of the table: an error message is cut to this (--json has it whole).
MAX_CELL = 60
# Metrics every domain's evaluation has, shown by `polyvae runs`: (column, evaluation.json key,
# run.json's last-epoch key used while there is no fresh evaluation).
KEY_METRICS = (
    ("IWAE NLL", "iwae_nll", None),
    ("KL", "kl", "val_kl"),
    ("AU", "active_units", "val_active_units"),
)
# Training rows of `polyvae compare`, before the evaluation's.
TRAINING_ROWS = (
    "parameters",
    "epochs",
    "best_val_elbo",
    "val_kl",
    "val_active_units",
    "training_seconds",
)
# Rows of `polyvae compare` that say what the numbers were measured on: the training data's
# fingerprint, and the evaluation's held-out data, importance samples k and generated samples.
# Runs that differ in one are flagged: their metrics are not like for like.
MEASURED_ON_ROWS = (
    ("data", "were trained on different data"),
    ("eval_data", "were evaluated on different data"),
    ("eval_k", "were evaluated with different k (importance samples)"),
    ("eval_samples", "generated different numbers of samples for the metrics"),
)
# Hex digits of a data fingerprint that `polyvae compare` shows.
FINGERPRINT_DIGITS = 12


@click.command("runs")
@click.argument("directory", default="runs", type=click.Path(path_type=Path))
@json_option
def runs_command(directory: Path, as_json: bool) -> None:
    """List the runs under DIRECTORY (default: ./runs): domain, status, size, data, epochs, best
    validation ELBO and key metrics (from evaluation.json when it describes the current weights,
    else from the last epoch)."""
    summaries = [summarise_run(path) for path in find_runs(directory)]
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
        return
    header = ("run", "domain", "status", "params", "latent", "items", "epochs", "best val ELBO")
    rows = [header + tuple(column for column, _, _ in KEY_METRICS) + ("metrics from",)]
    for summary in summaries:
        metrics = summary["metrics"]
        rows.append(
            (
                summary["path"],
                summary["domain"] or "-",
                _shorten(summary["status"]),
                _cell(summary["parameters"]),
                _cell(summary["latent_dim"]),
                _cell(summary["training_items"]),
                _cell(summary["epochs"]),
                _cell(summary["best_val_elbo"]),
                *(_cell(metrics.get(key)) for _, key, _ in KEY_METRICS),
                summary["metrics_from"] or "-",
            )
        )
    click.echo(table(rows))


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option
def compare_command(runs: tuple[Path, ...], as_json: bool) -> None:
    """Put the metrics of RUNS side by side: training summary, what they were measured on (data
    fingerprint, the evaluation's data, k and samples; differences are flagged), then `polyvae
    evaluate`'s results (evaluation.json, when it describes the current weights). Runs of one
    domain are shown beside the domain's published results, if it has any."""
    from polyvae.run import RunDir

    runs = tuple(dict.fromkeys(runs))  # a run named twice is one column
    columns: dict[str, dict[str, Any]] = {}
    domains = set()
    for path in runs:
        run = RunDir(path)
        if not run.exists():
            raise UserError(f"{path} is not a run directory: it has no run.json")
        meta = run.read_meta()
        domains.add(meta["domain"])
        evaluation = run.read_evaluation()
        if evaluation is None and run.evaluation_path.exists():
            click.echo(
                f"note: ignoring {run.evaluation_path}: it is unreadable or older than the "
                f"weights; run 'polyvae evaluate {path}' again",
                err=True,
            )
        columns[str(path)] = (
            training_metrics(run, meta)
            | measured_on(meta, evaluation)
            | (evaluation or {}).get("results", {})
        )
    for note in mismatches(list(columns.values())):
        click.echo(note, err=True)
    references = _reference_results(domains.pop()) if len(domains) == 1 else {}
    columns.update(references)
    names = [*TRAINING_ROWS, *(row for row, _ in MEASURED_ON_ROWS)]
    for values in columns.values():
        names += [name for name in values if name not in names]
    if as_json:
        payload = {
            "runs": [str(path) for path in runs],
            "references": list(references),
            "metrics": {
                name: {column: values.get(name) for column, values in columns.items()}
                for name in names
            },
        }
        click.echo(json.dumps(payload, indent=2))
        return
    rows = [("metric", *columns)]
    rows += [(name, *(_cell(values.get(name)) for values in columns.values())) for name in names]
    click.echo(table(rows))


# --- reading runs -------------------------------------------------------------------------------


def find_runs(directory: Path) -> list[Path]:
    """Run directories (holding run.json) at or below ``directory``, at most :data:`MAX_DEPTH`
    levels down, sorted; a run's own sub-folders are not searched."""
    if not directory.is_dir():
        raise UserError(f"no folder {directory}: name the folder that holds your runs")
    found = sorted(_walk(directory, 0))
    if not found:
        raise UserError(f"no runs under {directory} (a run directory holds run.json)")
    return found


def _walk(folder: Path, depth: int) -> Iterator[Path]:
    from polyvae.run import RunDir

    if RunDir(folder).exists():
        yield folder
        return
    if depth == MAX_DEPTH:
        return
    try:
        children = [child for child in folder.iterdir() if child.is_dir()]
    except OSError:  # a folder we may not read holds no runs we could list
        return
    for child in children:
        if not child.name.startswith("."):
            yield from _walk(child, depth + 1)


def summarise_run(path: Path) -> dict[str, Any]:
    """One row of ``polyvae runs``; a run that cannot be read gets status ``error: ...``."""
    from polyvae.run import RunDir

    summary: dict[str, Any] = {
        "path": str(path),
        "domain": None,
        "status": None,
        "parameters": None,
        "latent_dim": None,
        "training_items": None,
        "epochs": None,
        "best_val_elbo": None,
        "metrics": {},
        "metrics_from": None,
        "evaluated_at": None,
    }
    run = RunDir(path)
    try:
        meta = run.read_meta()
        data, trained = meta.get("data") or {}, meta.get("summary") or {}
        last = trained.get("last") or {}
        summary.update(
            domain=meta["domain"],
            status=meta.get("status", "unknown"),
            latent_dim=meta["config"].get("latent_dim"),
            training_items=data.get("train", data.get("items")),
            epochs=trained.get("epochs"),
            best_val_elbo=_finite(trained.get("best_val_elbo")),
        )
        evaluation = run.read_evaluation()
        if evaluation is not None:
            results = evaluation["results"]
            summary["metrics"] = {key: results.get(key) for _, key, _ in KEY_METRICS}
            summary.update(metrics_from="evaluation", evaluated_at=evaluation.get("evaluated_at"))
        elif last:
            summary["metrics"] = {key: last.get(epoch_key) for _, key, epoch_key in KEY_METRICS}
            summary["metrics_from"] = "last epoch"
        summary["parameters"] = run.parameter_count()
    except (UserError, OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        # A damaged run is listed with what went wrong; the other runs still show. The row names
        # the run already, so the message names its files relative to it.
        detail = _first_line(error).replace(f"{path}{os.sep}", "")
        summary["status"] = f"error: {detail}"
    return summary


def training_metrics(run: RunDir, meta: dict[str, Any]) -> dict[str, Any]:
    """The rows of ``polyvae compare`` that training recorded: size, epochs, best validation
    ELBO, the last epoch's KL and active units, and the seconds spent training."""
    summary = meta.get("summary") or {}
    last = summary.get("last") or {}
    epochs = run.read_metrics()  # a damaged line is a RunError naming it
    seconds = sum(record.get("seconds", 0.0) for record in epochs) if epochs else None
    return {
        "parameters": run.parameter_count(),
        "epochs": summary.get("epochs"),
        "best_val_elbo": _finite(summary.get("best_val_elbo")),
        "val_kl": last.get("val_kl"),
        "val_active_units": last.get("val_active_units"),
        "training_seconds": seconds,
    }


def measured_on(meta: dict[str, Any], evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """The :data:`MEASURED_ON_ROWS` of one run; the evaluation's are None without one."""
    fingerprint = (meta.get("data") or {}).get("fingerprint")
    settings = (evaluation or {}).get("settings") or {}
    return {
        "data": fingerprint.partition(":")[2][:FINGERPRINT_DIGITS] if fingerprint else None,
        "eval_data": (settings.get("data") or "validation split") if evaluation else None,
        "eval_k": settings.get("k"),
        "eval_samples": settings.get("samples"),
    }


def mismatches(runs: list[dict[str, Any]]) -> list[str]:
    """A note for each :data:`MEASURED_ON_ROWS` row in which the runs that have it differ."""
    notes = []
    for row, differ in MEASURED_ON_ROWS:
        values = sorted({str(run[row]) for run in runs if run.get(row) is not None})
        if len(values) > 1:
            notes.append(
                f"note: these runs {differ} ({', '.join(values)}); "
                "their metrics are not like for like"
            )
    return notes


def _reference_results(domain_name: str) -> dict[str, dict[str, float]]:
    """The domain's published results (label -> metric -> value), if its plugin is installed."""
    try:
        domain = get_registry().get_domain(domain_name)
    except UserError:
        return {}
    return {label: dict(values) for label, values in domain.reference_results.items()}


# --- formatting ---------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    """A number JSON can carry; the -inf of a run that never finished an epoch is no ELBO."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer()):
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10_000 else f"{value:.4f}"


def _shorten(text: str) -> str:
    """A table cell of at most :data:`MAX_CELL` characters (``--json`` has the whole text)."""
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
