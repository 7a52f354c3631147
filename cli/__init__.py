"""The ``polyvae`` command line: thin commands over the Python API (each in cli/commands/)."""

from __future__ import annotations

import signal
import warnings
from collections.abc import Sequence
from typing import Any

import click

from polyvae.cli.commands.evaluate import evaluate_command, report_command
from polyvae.cli.commands.fit_prior import fit_prior_command
from polyvae.cli.commands.per_item import (
    encode_command,
    interpolate_command,
    reconstruct_command,
    score_command,
)
from polyvae.cli.commands.plugins import new_plugin_command, plugins_command
from polyvae.cli.commands.runs import compare_command, runs_command
from polyvae.cli.commands.sample import sample_command
from polyvae.cli.commands.train import train_command
from polyvae.errors import UserError
from polyvae.registry import get_registry
from polyvae.version import __version__

EXIT_USER_ERROR = 2
COMMANDS = (
    plugins_command,
    train_command,
    fit_prior_command,
    sample_command,
    evaluate_command,
    reconstruct_command,
    interpolate_command,
    encode_command,
    score_command,
    runs_command,
    compare_command,
    new_plugin_command,
    report_command,
)


class UserFacingError(click.ClickException):
    exit_code = EXIT_USER_ERROR


class PolyvaeGroup(click.Group):
    """Turns :class:`UserError` into one ``Error: ...`` line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise UserFacingError(str(error)) from None


def build_cli() -> click.Group:
    """The click application with every loaded plugin's commands added."""

    @click.group(cls=PolyvaeGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="polyvae")
    def cli() -> None:
        """Train and sample variational autoencoders on molecules, texts, images and more."""

    for command in COMMANDS:
        cli.add_command(command)
    get_registry().add_commands(cli)
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    # A SIGTERM (kill, a scheduler's time limit, torchrun passing one on) unwinds like Ctrl-C, so
    # temporary files are removed and worker processes stopped rather than left behind.
    # Training installs its own handler (checkpoint, then exit) and puts this one back.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    warnings.showwarning = _show_warning_as_note
    build_cli().main(args=argv, prog_name="polyvae")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _show_warning_as_note(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    """A warning is news for the person at the terminal: one line, without the warning's class
    or the library's source line that raised it."""
    click.echo(f"note: {' '.join(str(message).split())}", err=True)
