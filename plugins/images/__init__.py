"""The built-in images domain plugin (entry point ``images`` in the ``polyvae`` group)."""

from __future__ import annotations

from collections.abc import Callable

import click

from polyvae.domain import Domain
from polyvae.hookspecs import hookimpl
from polyvae.plugins.images.domain import ImagesDomain


@hookimpl
def register_domains(register: Callable[[Domain], None]) -> None:
    register(ImagesDomain())


@hookimpl
def register_commands(cli: click.Group) -> None:
    from polyvae.plugins.images.commands import images_group

    cli.add_command(images_group)
