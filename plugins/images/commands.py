"""``polyvae images ...``: reconstruction grids, interpolation strips and latent traversals, added
through the ``register_commands`` hook. Each is a few lines over the ``Model`` API."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import click
import numpy as np
import torch

from polyvae.cli.options import device_option, output_option, refine_option, refine_steps
from polyvae.errors import UserError
from polyvae.plugins.images import images_group
from polyvae.plugins.images.codec import ImageCodec
from polyvae.plugins.images.reader import Image
from polyvae.plugins.images.writers import write_grid
from polyvae.wording import plural

MAX_TRAVERSED = 10  # latent dimensions shown by default


PICTURE = output_option(help="A .png/.jpg file.", required=True)


@images_group.command("reconstruct")
@click.argument("run")
@click.option("--data", type=click.Path(path_type=Path), help="Images (default: validation).")
@click.option("-n", "count", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--per-row", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Which images are drawn.")
@refine_option(default=None)
@PICTURE
@device_option()
def reconstruct_command(run, data, count, per_row, seed, refine, output, device) -> None:
    """A grid of N images, each row of originals followed by a row of their reconstructions
    (the mean image decoded from the posterior mean, or from the code --refine finds)."""
    from polyvae.model import load

    model = load(run, device=device)
    originals = _pick(_images(model, data), count, seed)
    rebuilt = model.reconstruct(originals, refine=refine_steps(model, refine))
    originals = [cast(ImageCodec, model.codec).conform(image) for image in originals]
    write_grid(side_by_side(originals, rebuilt, per_row), output, nrow=per_row)
    count = plural(len(originals), "image")
    click.echo(f"wrote {count} and their reconstructions to {output}", err=True)


@images_group.command("interpolate")
@click.argument("run")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), help="Draw pairs from these images.")
@click.option("--pairs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--steps", type=click.IntRange(min=2), default=10, show_default=True)
@click.option(
    "--method", type=click.Choice(["slerp", "linear"]), default="slerp", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True, help="Which images are drawn.")
@refine_option(default=None)
@PICTURE
@device_option()
def interpolate_command(
    run, files, data, pairs, steps, method, seed, refine, output, device
) -> None:
    """Interpolation strips: one row per pair of images, the first image, STEPS images decoded
    along the latent path between their posterior means, then the second image. Give pairs of
    image FILES, or draw --pairs pairs from --data (default: the run's validation images)."""
    from polyvae.model import load

    model = load(run, device=device)
    if files:
        if len(files) % 2:
            raise UserError(f"give image files in pairs, got {len(files)}")
        chosen = [model.domain.parse_item(str(path)) for path in files]
    else:
        chosen = _pick(_images(model, data), 2 * pairs, seed)
    refine = refine_steps(model, refine)
    rows: list[Image] = []
    for start, end in zip(chosen[::2], chosen[1::2], strict=True):
        path = model.interpolate(start, end, steps=steps, method=method, refine=refine)
        codec = cast(ImageCodec, model.codec)
        rows += [codec.conform(start), *path, codec.conform(end)]
    write_grid(rows, output, nrow=steps + 2)
    click.echo(f"wrote {plural(len(chosen) // 2, 'interpolation strip')} to {output}", err=True)


@images_group.command("traverse")
@click.argument("run")
@click.option("--dims", help="Comma-separated latent dimensions (default: the most active).")
@click.option("--steps", type=click.IntRange(min=2), default=9, show_default=True)
@click.option("--span", type=click.FloatRange(min=0.0), default=3.0, show_default=True)
@click.option(
    "--image", type=click.Path(path_type=Path), help="Start at this image's latent point."
)
@PICTURE
@device_option()
def traverse_command(run, dims, steps, span, image, output, device) -> None:
    """Latent traversals: one row per latent dimension, set to STEPS values from -SPAN to +SPAN
    while the others stay at the starting point (z = 0, or --image's posterior mean). By
    default the dimensions whose posterior means vary most on validation data, up to 10."""
    from polyvae.model import load

    model = load(run, device=device)
    chosen = _dimensions(model, dims)
    start = model.domain.parse_item(str(image)) if image is not None else None
    write_grid(traversals(model, chosen, steps, span, start), output, nrow=steps)
    click.echo(
        f"wrote traversals of latent dimensions {', '.join(map(str, chosen))} to {output}",
        err=True,
    )


# --- helpers -------------------------------------------------------------------------------------


def side_by_side(originals: Sequence[Image], rebuilt: Sequence[Image], per_row: int) -> list[Image]:
    """Rows of ``per_row`` originals, each followed by the row of their reconstructions."""
    ordered: list[Image] = []
    for start in range(0, len(originals), per_row):
        ordered += [*originals[start : start + per_row], *rebuilt[start : start + per_row]]
    return ordered


def traversals(
    model, dims: Sequence[int], steps: int, span: float, start: Image | None = None
) -> list[Image]:
    """Images decoded along each of ``dims`` in turn, ``steps`` a dimension, from z = 0 or from
    ``start``'s posterior mean."""
    base = (
        torch.as_tensor(model.encode([start]))[0]
        if start is not None
        else torch.zeros(model.latent_dim)
    )
    return model.decode(traversal_points(base, dims, steps, span))


def traversal_points(base: torch.Tensor, dims: Sequence[int], steps: int, span: float):
    """``(len(dims) * steps, latent_dim)``: for each dimension, ``base`` with that coordinate
    set to ``steps`` evenly spaced values from -span to +span."""
    values = torch.linspace(-span, span, steps)
    rows = base.repeat(len(dims) * steps, 1)
    for position, dim in enumerate(dims):
        rows[position * steps : (position + 1) * steps, dim] = values
    return rows


def _dimensions(model, text: str | None) -> list[int]:
    if text:
        try:
            chosen = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise UserError(f"--dims takes comma-separated integers, got {text!r}") from None
        bad = [dim for dim in chosen if not 0 <= dim < model.latent_dim]
        if bad or not chosen:
            raise UserError(f"latent dimensions run from 0 to {model.latent_dim - 1}, got {text}")
        return chosen
    return strongest_dimensions(model)


def strongest_dimensions(model, limit: int = MAX_TRAVERSED) -> list[int]:
    """Up to ``limit`` latent dimensions, those whose posterior means vary most on validation
    data first."""
    variance = model.meta.get("latent_variance")
    if not variance:
        return list(range(min(limit, model.latent_dim)))
    order = np.argsort(-np.asarray(variance, dtype=np.float64), kind="stable")
    return [int(dim) for dim in order[:limit]]


def _images(model, data: Path | None) -> list[Image]:
    if data is None:
        return model.data_splits()[1]
    from polyvae.dataset import read_items

    items, report = read_items(model.domain, data, model.config | {"max_items": 0})
    if report.skipped:
        click.echo(report.summary(), err=True)
    return items


def _pick(images: Sequence[Image], count: int, seed: int) -> list[Image]:
    if len(images) < count:
        raise UserError(f"asked for {count} images, there are {len(images)}")
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    return [images[index] for index in chosen.tolist()]
