"""Commands over given items: ``reconstruct``, ``interpolate``, ``encode`` and ``score``."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from polyvae.cli.items import emit, inputs, read
from polyvae.cli.options import (
    device_option,
    output_option,
    quiet_option,
    refine_option,
    refine_steps,
    seed_option,
    temperature_option,
)
from polyvae.cli.progress import progress_bars
from polyvae.cli.relaunch import nproc_option, relaunch
from polyvae.errors import UserError
from polyvae.wording import plural

# Items that cannot be encoded listed one a line on stderr; beyond this many, only counted.
LISTED_SKIPS = 20


@click.command("reconstruct")
@click.argument("run")
@click.argument("items", nargs=-1)
@click.option("--data", type=click.Path(path_type=Path), help="Read the items from a file.")
@click.option("-n", "limit", type=click.IntRange(min=1), help="Only the first N items.")
@temperature_option(default=0.0)
@refine_option(default=None)
@seed_option()
@device_option()
def reconstruct_command(run, items, data, limit, temperature, refine, seed, device) -> None:
    """Encode and decode items; print each input beside its reconstruction."""
    from polyvae.model import load

    model = load(run, device=device)
    originals = inputs(model, items, data)[:limit]
    skipped: dict[int, str] = {}
    outputs = model.reconstruct(
        originals,
        temperature=temperature,
        seed=seed,
        skipped=skipped,
        refine=refine_steps(model, refine),
    )
    for original, rebuilt in zip(originals, outputs, strict=True):
        if rebuilt is not None:
            click.echo(f"{model.domain.format_item(original)}\t{model.domain.format_item(rebuilt)}")
    report_skipped(model, originals, skipped)


@click.command("interpolate")
@click.argument("run")
@click.argument("start")
@click.argument("end")
@click.option("--steps", type=click.IntRange(min=2), default=8, show_default=True)
@click.option(
    "--method", type=click.Choice(["slerp", "linear"]), default="slerp", show_default=True
)
@temperature_option(default=0.0)
@refine_option(default=None)
@output_option()
@device_option()
def interpolate_command(
    run, start, end, steps, method, temperature, refine, output, device
) -> None:
    """Decode the latent path between items START and END."""
    from polyvae.model import load

    model = load(run, device=device)
    parse = model.domain.parse_item
    items = model.interpolate(
        parse(start),
        parse(end),
        steps=steps,
        method=method,
        temperature=temperature,
        refine=refine_steps(model, refine),
    )
    emit(model, items, output)


@click.command("encode")
@click.argument("run")
@click.option("--data", type=click.Path(path_type=Path), required=True)
@output_option(help="A .npy file.", required=True)
@click.option("--sample", is_flag=True, help="One posterior sample per item instead of the mean.")
@refine_option(default=0)
@seed_option()
@device_option()
def encode_command(run, data, output, sample, refine, seed, device) -> None:
    """Write the latent codes of --data to a .npy file (items x latent_dim)."""
    from polyvae.files import atomic_write_bytes
    from polyvae.model import load

    if output.suffix != ".npy":
        raise UserError(f"encode writes .npy files, not {output.suffix or 'no suffix'}")
    model = load(run, device=device)
    items = read(model, data)
    skipped: dict[int, str] = {}
    codes = model.encode(items, sample=sample, seed=seed, skipped=skipped, refine=refine)
    buffer = io.BytesIO()
    np.save(buffer, codes.astype(np.float32), allow_pickle=False)
    atomic_write_bytes(output, buffer.getvalue())
    report_skipped(model, items, skipped)
    nan_rows = f" (NaN rows for the {plural(len(skipped), 'skipped item')})" if skipped else ""
    click.echo(f"wrote {codes.shape[0]:,} x {codes.shape[1]} latent codes to {output}{nan_rows}")


@click.command("score")
@click.argument("run")
@click.option("--data", type=click.Path(path_type=Path), required=True)
@output_option(help="A .csv file.", required=True)
@click.option(
    "-k",
    "importance_samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="1: negative ELBO; more: IWAE NLL.",
)
@seed_option(default=0)
@device_option()
@nproc_option()
@quiet_option
@click.pass_context
def score_command(ctx, run, data, output, importance_samples, seed, device, nproc, quiet) -> None:
    """Anomaly scores (nats; higher is more unusual) of --data, written to a CSV file. Items
    the model cannot encode are listed on stderr and get an empty score.

    With --nproc N (or launched by torchrun) each process scores a share of the items and
    rank 0 writes all the scores, in input order."""
    from polyvae.dataset import read_items
    from polyvae.distributed import session, worker_device
    from polyvae.model import load

    with session() as place:
        if nproc > 1:  # checked here once, then every worker reads --data itself
            load(run, device="cpu")
            if not data.exists():
                raise UserError(f"no such file or folder: {data}")
            relaunch(ctx, nproc)
        model = load(run, device=worker_device(device, place))
        if place.is_main:
            items = read(model, data)
        else:  # the same items; rank 0 reports what was skipped
            items = read_items(model.domain, data, model.config | {"max_items": 0})[0]
        skipped: dict[int, str] = {}
        with progress_bars(quiet or not place.is_main) as progress:
            scores = model.score(
                items,
                k=importance_samples,
                seed=seed,
                place=place,
                skipped=skipped,
                progress=progress,
            )
        if place.is_main:
            report_skipped(model, items, skipped)
            _write_scores(model, items, scores, output)


def _write_scores(model: Any, items: Sequence[Any], scores: np.ndarray, output: Path) -> None:
    from polyvae.files import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["index", "item", "score"])
    for index, (item, value) in enumerate(zip(items, scores, strict=True)):
        # An item that could not be scored gets an empty cell: CSV's usual missing value.
        score = "" if np.isnan(value) else f"{value:.6f}"
        writer.writerow([index, model.domain.format_item(item), score])
    atomic_write_text(output, buffer.getvalue())
    click.echo(f"wrote {plural(len(items), 'score')} to {output}")


def report_skipped(model: Any, items: Sequence[Any], skipped: Mapping[int, str]) -> None:
    """Count and list on stderr the items the model could not encode (``skipped``: position in
    ``items`` -> why), the first LISTED_SKIPS of them one a line."""
    if not skipped:
        return
    click.echo(f"skipped {plural(len(skipped), 'item')} the model cannot encode:", err=True)
    for position, reason in list(skipped.items())[:LISTED_SKIPS]:
        text = model.domain.format_item(items[position])
        click.echo(f"  item {position + 1:,} '{text}' {reason}", err=True)
    if len(skipped) > LISTED_SKIPS:
        click.echo(f"  and {len(skipped) - LISTED_SKIPS:,} more", err=True)
