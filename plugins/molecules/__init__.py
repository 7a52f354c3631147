"""The built-in molecules domain plugin (entry point ``molecules`` in the ``polyvae`` group)."""

from __future__ import annotations

from collections.abc import Callable

import click

from polyvae.domain import Domain
from polyvae.hookspecs import hookimpl
from polyvae.plugins.molecules.domain import MoleculesDomain


@hookimpl
def register_domains(register: Callable[[Domain], None]) -> None:
    register(MoleculesDomain())


@hookimpl
def register_commands(cli: click.Group) -> None:
    from polyvae.plugins.molecules.commands import molecules_group

    cli.add_command(molecules_group)
