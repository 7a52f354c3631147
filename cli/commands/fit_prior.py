"""``polyvae fit-prior``: fit a density to a run's training codes to sample from."""

from __future__ import annotations

import json
from pathlib import Path

import click

from polyvae.cli.options import device_option, json_option, seed_option
from polyvae.config import PRIOR_COMPONENTS, PRIOR_FIT_ITEMS
from polyvae.errors import UserError


@click.command("fit-prior")
@click.argument("run")
@click.option(
    "--kind",
    type=click.Choice(("gmm", "flow")),
    default="gmm",
    show_default=True,
    help="A Gaussian mixture with full covariances, or a masked autoregressive flow.",
)
@click.option(
    "--components",
    type=click.IntRange(min=1),
    default=PRIOR_COMPONENTS,
    show_default=True,
    help="Most components of the Gaussian mixture: half as many and so on down to 1 are tried "
    "too, and the count the held-out codes favour is kept.",
)
@click.option(
    "--items",
    "max_items",
    type=click.IntRange(min=0),
    default=PRIOR_FIT_ITEMS,
    show_default=True,
    help="Training items whose codes are fitted, a seeded random subset (0: all).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Fit the codes of the items in this file instead of the training items, so that "
    "samples come from the part of the latent space they occupy.",
)
@seed_option(default=0)
@json_option
@device_option()
def fit_prior_command(
    run: str,
    kind: str,
    components: int,
    max_items: int,
    data: Path | None,
    seed: int,
    as_json: bool,
    device: str,
) -> None:
    """Fit a prior to the codes of RUN's training items (or of --data) and store it in
    RUN/prior/.

    sample, neighbours, optimize and evaluate then draw latent points from it by default
    (--prior standard goes back to N(0, I)). Training fits one when it ends (config key
    fit_prior); this refits, with other settings, after training more, or to the items of
    --data: after fine-tuning on a mix, say, to sample like one part of it."""
    from polyvae.cli.items import read
    from polyvae.model import load
    from polyvae.priors import describe_fit, fit_model_prior

    if not Path(run).is_dir():
        raise UserError(f"fit-prior needs a run directory, not {run!r}")
    model = load(run, device=device)
    if data is None:
        items, source = model.data_splits()[0], None
    else:
        items, source = read(model, data), str(data.resolve())
    record = fit_model_prior(model, items, kind, components, max_items, seed, source)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(describe_fit(kind, record))
