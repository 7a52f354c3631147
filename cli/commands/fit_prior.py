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
@seed_option(default=0)
@json_option
@device_option()
def fit_prior_command(
    run: str, kind: str, components: int, max_items: int, seed: int, as_json: bool, device: str
) -> None:
    """Fit a prior to the codes of RUN's training items and store it in RUN/prior/.

    sample, neighbours, optimize and evaluate then draw latent points from it by default
    (--prior standard goes back to N(0, I)). Training fits one when it ends (config key
    fit_prior); this refits, with other settings or after training more."""
    from polyvae.model import load
    from polyvae.priors import describe_fit, fit_model_prior

    if not Path(run).is_dir():
        raise UserError(f"fit-prior needs a run directory, not {run!r}")
    model = load(run, device=device)
    training, _ = model.data_splits()
    record = fit_model_prior(model, training, kind, components, max_items, seed)
    if as_json:
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(describe_fit(kind, record))
