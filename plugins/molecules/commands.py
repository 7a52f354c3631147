"""``polyvae molecules ...``: analogue search and latent optimisation, added through the
``register_commands`` hook."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from polyvae.cli.options import device_option, prior_option, temperature_option
from polyvae.errors import UserError
from polyvae.plugins.molecules import chemistry, molecules_group
from polyvae.plugins.molecules.metrics import analogues_by_similarity, morgan_fingerprint, tanimoto
from polyvae.wording import plural

# By measurement on the bundled model (benchmarks/molecules_analogues.py, in docs/molecules.md):
# of the settings that give MOSES test molecules at least 20 distinct analogues, greedy decoding
# of points at radius 0.1 gives the most similar ones.
ANALOGUE_RADIUS = 0.1
ANALOGUE_TEMPERATURE = 0.0


@molecules_group.command("neighbours")
@click.argument("run")
@click.argument("smiles")
@click.option("-n", "count", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--radius", type=click.FloatRange(min=0.0), default=ANALOGUE_RADIUS, show_default=True
)
@temperature_option(ANALOGUE_TEMPERATURE)
@click.option("--seed", type=int)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the analogues.")
@prior_option
@device_option()
def neighbours_command(
    run, smiles, count, radius, temperature, seed, output, prior, device
) -> None:
    """Sample around SMILES's latent point; list distinct valid analogues by Tanimoto similarity
    (Morgan radius 2, 1024 bits) to the seed. --radius is in units of each latent dimension's
    spread under the prior; --temperature 0 decodes each point greedily."""
    from polyvae.model import load

    model = load(run, device=device)
    seed_smiles = model.domain.parse_item(smiles)
    decoded = model.neighbours(
        seed_smiles, n=count, radius=radius, temperature=temperature, seed=seed, prior=prior
    )
    ranked = analogues_by_similarity(seed_smiles, decoded)
    similarities = np.array([value for _, value in ranked])
    click.echo(
        f"{plural(len(decoded), 'sample')} at radius {radius}: "
        f"{plural(len(ranked), 'distinct valid molecule')}"
        + (
            f", Tanimoto to the seed mean {similarities.mean():.3f}, max {similarities.max():.3f}"
            if len(ranked)
            else ""
        ),
        err=True,
    )
    _report(model, ranked, "tanimoto", output)


@molecules_group.command("optimize")
@click.argument("run")
@click.option(
    "--objective",
    required=True,
    help="qed, logp, penalized_logp, any property name, or similarity:SMILES.",
)
@click.option("-n", "count", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--radius", type=click.FloatRange(min=0.0), default=1.0, show_default=True)
@click.option("--seed", type=int)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the top molecules.")
@prior_option
@device_option()
def optimize_command(run, objective, count, steps, radius, seed, output, prior, device) -> None:
    """Search the latent space for molecules scoring high on --objective, scored by RDKit.

    A property the run's head predicts (trained with --set predict=NAME) is climbed by gradient
    ascent on the head; anything else (similarity:SMILES included) by the cross-entropy method.
    """
    from polyvae.model import load

    model = load(run, device=device)
    start = None
    if objective.startswith("similarity:"):
        target = model.domain.parse_item(objective.partition(":")[2])
        target_fingerprint = morgan_fingerprint(target)
        start = target

        def goal(items):
            return np.array(
                [
                    tanimoto(target_fingerprint, fingerprint)
                    if (fingerprint := morgan_fingerprint(item)) is not None
                    else np.nan
                    for item in items
                ]
            )

        label = "similarity"
    else:
        chemistry.property_function(objective)  # a clear error for an unknown name
        label = objective
        head = model.loaded.predict
        if head is not None and objective in head.names:
            goal = objective
        else:

            def goal(items):
                return chemistry.properties(items, [objective])[:, 0]

    ranked = model.optimize(
        goal, n=count, steps=steps, start=start, radius=radius, seed=seed, prior=prior
    )
    if not ranked:
        raise UserError("the search found no valid molecule; try more --steps or a larger --radius")
    scores = np.array([value for _, value in ranked])
    click.echo(
        f"{plural(len(ranked), 'molecule')}; {label} best {scores[0]:.3f}, "
        f"mean of these {scores.mean():.3f}",
        err=True,
    )
    _report(model, ranked, label, output)


def _report(model, ranked, label: str, output: Path | None) -> None:
    if output is not None:
        model.domain.write([item for item, _ in ranked], output, codec=model.codec)
        click.echo(f"wrote {plural(len(ranked), 'molecule')} to {output}", err=True)
        return
    click.echo(f"{label}\tsmiles")
    for item, value in ranked:
        click.echo(f"{value:.3f}\t{item}")
