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


def refine_option(default: int | None) -> Any:
    """``--refine STEPS``; ``default`` None: the domain's ``refine_steps`` (:func:`refine_steps`).
    encode passes 0: codes feed other tools, and those that look around a code (analogues) do
    better with the encoder's."""
    return click.option(
        "--refine",
        type=click.IntRange(min=0),
        default=default,
        show_default=default is not None,
        metavar="STEPS",
        help="Gradient steps from the encoder's code towards the code that makes the decoder "
        "most likely to write the item (0: the encoder's)"
        + (" [default: the domain's; molecules and text 25, images 0]" if default is None else "."),
    )


def refine_steps(model: Any, refine: int | None) -> int:
    """``--refine``'s value, or the model's domain's default when it was not given."""
    return model.domain.refine_steps if refine is None else refine


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
