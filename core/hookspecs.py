"""Hook specifications for polyvae plugins (pluggy project name ``polyvae``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from polyvae.domain import Domain

hookspec = pluggy.HookspecMarker("polyvae")
hookimpl = pluggy.HookimplMarker("polyvae")


# --- domains ---------------------------------------------------------------------------------


@hookspec
def register_domains(register: Callable[[Domain], None]) -> None:
    """Call ``register(domain)`` once for each :class:`polyvae.domain.Domain` the plugin has."""


# --- command line ----------------------------------------------------------------------------


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``polyvae`` command line (``cli.add_command(...)``)."""


# --- evaluation ------------------------------------------------------------------------------


@hookspec
def register_metrics(
    domain_name: str,
    register: Callable[[str, Callable[[list[Any], list[Any], list[Any]], dict[str, float]]], None],
) -> None:
    """Add sample-quality metrics to a domain, yours or another plugin's.

    Call ``register(name, fn)`` where ``fn(generated, reference, training)`` takes the generated,
    held-out reference and training items and returns ``{metric_name: value}``;
    ``polyvae evaluate`` reports them beside the domain's own metrics.
    """
