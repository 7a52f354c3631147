"""The built-in molecules domain plugin (entry point ``molecules`` in the ``polyvae`` group).

The domain and the commands are imported when first used, not with the plugin: listing the
command line's commands needs none of what they import (torch, RDKit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from polyvae.cli.lazy import LazyGroup
from polyvae.hookspecs import hookimpl

if TYPE_CHECKING:
    from polyvae.domain import Domain


@hookimpl
def register_domains(register: Callable[[Domain], None]) -> None:
    from polyvae.plugins.molecules.domain import MoleculesDomain

    register(MoleculesDomain())


@click.group("molecules", cls=LazyGroup, commands_module="polyvae.plugins.molecules.commands")
def molecules_group() -> None:
    """Molecule-specific tools: analogues of a seed molecule and latent optimisation."""


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(molecules_group)
