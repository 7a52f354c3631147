"""The built-in images domain plugin (entry point ``images`` in the ``polyvae`` group).

The domain and the commands are imported when first used, not with the plugin: listing the
command line's commands needs none of what they import (torch, torchvision)."""

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
    from polyvae.plugins.images.domain import ImagesDomain

    register(ImagesDomain())


@click.group("images", cls=LazyGroup, commands_module="polyvae.plugins.images.commands")
def images_group() -> None:
    """Image grids: reconstructions, interpolations and latent traversals."""


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(images_group)
