"""``polyvae evaluate`` prints a run's metrics; ``polyvae report`` lays them out as a web page."""

from __future__ import annotations

import json
from pathlib import Path

import click

from polyvae.cli.commands.per_item import report_skipped
from polyvae.cli.items import held_out
from polyvae.cli.options import (
    device_option,
    evaluation_options,
    json_option,
    prior_option,
    quiet_option,
    seed_option,
    temperature_option,
)
from polyvae.cli.progress import progress_bars
from polyvae.cli.tables import format_value, table
from polyvae.wording import plural


@click.command("evaluate")
@click.argument("run")
@evaluation_options
@temperature_option(default=1.0)
@prior_option
@seed_option(default=0)
@json_option
@device_option()
@quiet_option
def evaluate_command(
    run: str,
    data: Path | None,
    samples: int | None,
    importance_samples: int | None,
    likelihood_items: int | None,
    temperature: float,
    prior: str | None,
    seed: int,
    as_json: bool,
    device: str,
    quiet: bool,
) -> None:
    """ELBO, IWAE NLL, KL, active units, mutual information, reconstruction, how well each prior
    covers the codes, and the domain's sample metrics (under the other prior too, prefixed, when
    the run has a fitted prior).

    For a run directory the results are also saved in RUN/evaluation.json (`polyvae runs` and
    `polyvae compare` show them)."""
    from polyvae.evaluation import EvaluationSettings, mutual_information_note, run_evaluation
    from polyvae.model import load
    from polyvae.run import RunDir

    # A bundled model named by its domain is shared: only a run directory gets the record.
    record_in = RunDir(run) if Path(run).is_dir() else None
    weights = record_in.weights_signature() if record_in else None
    model = load(run, device=device)
    training, reference = held_out(model, data)
    asked = EvaluationSettings(
        k=importance_samples,
        likelihood_items=likelihood_items,
        samples=samples,
        temperature=temperature,
        seed=seed,
        data=str(data.resolve()) if data is not None else None,
        prior=prior,
    )
    skipped: dict[int, str] = {}
    with progress_bars(quiet) as progress:
        results, settings = run_evaluation(model, reference, training, asked, skipped, progress)
    report_skipped(model, reference, skipped)
    if record_in is not None:
        try:
            record_in.write_evaluation(results, settings.to_dict(), weights=weights)
        except OSError as error:
            reason = error.strerror or type(error).__name__
            click.echo(
                f"note: results not saved to {record_in.evaluation_path}: {reason}", err=True
            )
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        rows = [(key, format_value(value)) for key, value in results.items()]
        click.echo(table([("metric", "value"), *rows]))
        note = mutual_information_note(results)
        if note:
            click.echo(f"note: {note}", err=True)


@click.command("report")
@click.argument("run")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The HTML file (default: RUN/report.html, or DOMAIN-report.html for a bundled model).",
)
@click.option(
    "--png",
    "png_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also write every plot and gallery picture as a PNG file in this folder.",
)
@evaluation_options
@click.option("--colour-by", help="Property that colours the latent map (default: labels).")
@seed_option(default=0)
@device_option()
@quiet_option
def report_command(
    run: str,
    output: Path | None,
    png_dir: Path | None,
    data: Path | None,
    samples: int | None,
    importance_samples: int | None,
    likelihood_items: int | None,
    colour_by: str | None,
    seed: int,
    device: str,
    quiet: bool,
) -> None:
    """Write a self-contained HTML report of RUN: training curves, KL per latent dimension, a
    map of the latent space, the domain's gallery and its metrics beside published results."""
    from polyvae.evaluation import EvaluationSettings
    from polyvae.model import load
    from polyvae.report import build_report, write_html, write_pngs
    from polyvae.run import RunDir

    model = load(run, device=device)
    training, held = held_out(model, data)
    # The last `polyvae evaluate` of these weights, unless other evaluation settings are asked.
    asked = (data, samples, importance_samples, likelihood_items) != (None,) * 4
    evaluation = None if asked or not Path(run).is_dir() else RunDir(run).read_evaluation()
    if evaluation is not None:
        click.echo(
            f"metrics from {RunDir(run).evaluation_path} ({evaluation['evaluated_at']})", err=True
        )
    with progress_bars(quiet) as progress:
        report = build_report(
            model,
            held,
            training,
            EvaluationSettings(
                k=importance_samples,
                likelihood_items=likelihood_items,
                samples=samples,
                seed=seed,
            ),
            colour_by=colour_by,
            evaluation=evaluation,
            log=lambda message: click.echo(message, err=True),
            progress=progress,
        )
    if output is None:
        output = Path(run) / "report.html" if Path(run).is_dir() else Path(f"{run}-report.html")
    write_html(report, output)
    click.echo(f"wrote {output}", err=True)
    if png_dir is not None:
        written = write_pngs(report, png_dir)
        click.echo(f"wrote {plural(len(written), 'PNG file')} to {png_dir}", err=True)
