"""A command group whose commands are imported on first use, so that ``polyvae --help`` lists a
plugin's group (its name and help) without importing what its commands need (torch, RDKit...)."""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    """``@click.group("name", cls=LazyGroup, commands_module="package.commands")``: the module
    adds the commands with ``@group.command(...)`` when it is imported, which happens the first
    time the group's commands are listed or looked up."""

    def __init__(self, *args: Any, commands_module: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands_module = commands_module

    def list_commands(self, ctx: click.Context) -> list[str]:
        importlib.import_module(self.commands_module)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        importlib.import_module(self.commands_module)
        return super().get_command(ctx, cmd_name)
