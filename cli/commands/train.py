"""``polyvae train``: a run directory from a domain and data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from polyvae.cli.options import device_option
from polyvae.cli.relaunch import nproc_option, relaunch
from polyvae.config import load_config_file, parse_assignments
from polyvae.wording import plural

EXIT_INTERRUPTED = 130


@click.command("train")
@click.argument("domain")
@click.option("--data", type=click.Path(path_type=Path), help="Training data (file or folder).")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML/YAML/JSON.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Config value.")
@click.option("--out", type=click.Path(path_type=Path), help="Run directory to create.")
@click.option("--epochs", type=int, help="Number of epochs (also extends a resumed run).")
@device_option(default=None)
@click.option("--resume", type=click.Path(path_type=Path), help="Continue this run directory.")
@click.option(
    "--init",
    metavar="RUN",
    help="Fine-tune: start from this run's weights, vocabulary and recipe (a run directory, or a "
    "domain name for its bundled model); --set changes the recipe, not the network.",
)
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
@nproc_option(
    help="Train data-parallel in N processes on this machine (one per GPU), through torchrun."
)
@click.option(
    "--tensorboard",
    is_flag=True,
    help="Also log to RUN/tensorboard/ for TensorBoard (needs the tensorboard package).",
)
@click.pass_context
def train_command(
    ctx: click.Context,
    domain: str,
    data: Path | None,
    config_file: Path | None,
    assignments: tuple[str, ...],
    out: Path | None,
    epochs: int | None,
    device: str | None,
    resume: Path | None,
    init: str | None,
    quiet: bool,
    nproc: int,
    tensorboard: bool,
) -> None:
    """Train a VAE for DOMAIN on --data, writing a run directory.

    Launched by torchrun (e.g. `torchrun --nproc-per-node 4 -m polyvae.cli train ...`), or with
    --nproc N, it trains data-parallel: --set batch_size is per process."""
    from polyvae.device import resolve_device
    from polyvae.distributed import is_main_process
    from polyvae.trainer import train

    callbacks = []
    if tensorboard:  # checked here so that a missing package is one error, not one per worker
        from polyvae.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger())
    config: dict[str, Any] = load_config_file(config_file) if config_file else {}
    config.update(parse_assignments(assignments))
    if epochs is not None:
        config["epochs"] = epochs
    if device is not None:
        config["device"] = device
    # Checked before any work (and with --nproc once, not in every process): a device this
    # machine lacks would otherwise stop the run after its data is read and its codec fitted.
    if "device" in config:
        resolve_device(config["device"])
    if nproc > 1:
        if resume is None and init is None:
            from polyvae.registry import get_domain

            get_domain(domain).resolve_config(config)
        relaunch(ctx, nproc)
    result = train(
        domain,
        data=data,
        config=config,
        out=out,
        resume=resume,
        init=init,
        progress=not quiet,
        callbacks=callbacks,
        log=(lambda message: None) if quiet else click.echo,
    )
    if is_main_process():
        click.echo(
            f"{result.status}: {plural(result.epochs, 'epoch')}, {plural(result.steps, 'step')}, "
            f"{result.best_line()}; run saved in {result.run_dir}"
        )
    if result.status == "interrupted":
        sys.exit(EXIT_INTERRUPTED)
    if result.status == "diverged":
        sys.exit(1)
