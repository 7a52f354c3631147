"""``--nproc N``: the same command in N processes through torchrun.

The workers' command line is rebuilt from what click parsed (the command's own parameters and
values), never listed by hand, so an option added to a command reaches the workers too.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

NPROC = "nproc"


def nproc_option(help: str = "Spread the work over N processes on this machine, through torchrun."):
    return click.option(
        "--" + NPROC, type=click.IntRange(min=1), default=1, show_default=True, help=help
    )


def relaunch(ctx: click.Context, nproc: int) -> NoReturn:
    """Run ``ctx``'s command again in ``nproc`` processes and exit with the group's status."""
    from polyvae.distributed import launch

    command = ctx.command_path.split()[1:]  # without the program's name
    sys.exit(launch(nproc, [*command, *parameters_of(ctx)]))


def parameters_of(ctx: click.Context) -> list[str]:
    """Arguments that make ``ctx.command`` parse to ``ctx.params`` again, without ``--nproc``
    (each worker runs the command once), followed by the arguments click left to the command."""
    arguments: list[str] = []
    options: list[str] = []
    for param in ctx.command.params:
        value = ctx.params[param.name]
        if param.name == NPROC or value is None:
            continue
        if isinstance(param, click.Argument):
            arguments += [str(item) for item in value] if param.nargs != 1 else [str(value)]
        else:
            assert isinstance(param, click.Option)  # click commands hold arguments and options
            options += _option_tokens(param, value)
    return [*arguments, *options, *ctx.args]


def _option_tokens(option: click.Option, value: Any) -> list[str]:
    if option.is_bool_flag:
        if value:
            return [option.opts[0]]
        return [option.secondary_opts[0]] if option.secondary_opts else []
    flag = max(option.opts, key=len)  # the long form where there is one
    values = value if option.multiple else (value,)
    # "--name=value" and "-nvalue" hold a value that starts with "-" too.
    separator = "=" if flag.startswith("--") else ""
    return [f"{flag}{separator}{item}" for item in values]
