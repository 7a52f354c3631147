"""Options that several commands take, declared once (built-in plugins' commands use them too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")

quiet_option = click.option(
    "--quiet",
    is_flag=True,
    help="No progress bars on stderr (they are shown only when stderr is a terminal).",
)


def device_option(default: str | None = "auto") -> Any:
    """``--device``; ``default=None`` leaves the device to the run's configuration."""
    return click.option(
        "--device",
        default=default,
        show_default=default is not None,
        help="auto, cpu, cuda, cuda:N or mps.",
    )


def temperature_option(default: float) -> Any:
    return click.option(
        "--temperature", type=click.FloatRange(min=0.0), default=default, show_default=True
    )


# Refinement steps reconstruct and interpolate take by default: on the bundled molecules model,
# 25 steps bring exact reconstruction of test molecules from 0.68 to 0.91 and the ends of an
# interpolation back from 0.60 to 0.975 (benchmarks/latent_refinement.py). encode refines only
# when asked: codes feed other tools, and those that look around a code (analogues) do better
# with the encoder's.
REFINE_STEPS = 25


def refine_option(default: int) -> Any:
    return click.option(
        "--refine",
        type=click.IntRange(min=0),
        default=default,
        show_default=True,
        metavar="STEPS",
        help="Gradient steps from the encoder's code towards the code that makes the decoder "
        "most likely to write the item (0: the encoder's).",
    )


def seed_option(default: int | None = None, help: str | None = None) -> Any:
    return click.option(
        "--seed", type=int, default=default, show_default=default is not None, help=help
    )


def output_option(help: str = "Write to this file.", required: bool = False) -> Any:
    return click.option(
        "-o", "--output", type=click.Path(path_type=Path), required=required, help=help
    )


prior_option = click.option(
    "--prior",
    type=click.Choice(("standard", "fitted")),
    help="Where latent points come from: N(0, I), or the density fitted to the training codes "
    "(polyvae fit-prior). Default: fitted when the run has one.",
)


def evaluation_options(function: Any) -> Any:
    """--data, -n, -k and --likelihood-items, as evaluate and report take them."""
    for option in reversed(
        (
            click.option(
                "--data",
                type=click.Path(path_type=Path),
                help="Held-out items (default: the run's validation split).",
            ),
            click.option(
                "-n",
                "samples",
                type=click.IntRange(min=0),
                help="Samples for the domain's metrics, 0: likelihood metrics only (default 1000).",
            ),
            click.option(
                "-k",
                "importance_samples",
                type=click.IntRange(min=1),
                help="Importance samples of the IWAE bound (default: the domain's, 50; images "
                "100, about a minute on 2 CPU cores; more gives a tighter bound, k times the "
                "cost).",
            ),
            click.option(
                "--likelihood-items",
                type=click.IntRange(min=0),
                help="Random held-out items for ELBO/IWAE/KL/AU/MI, 0: all (default: the "
                "domain's, 1000; images 200).",
            ),
        )
    ):
        function = option(function)
    return function
