"""The built-in text domain plugin (entry point ``text`` in the ``polyvae`` group).

The domain is imported when first used, not with the plugin: listing the command line's commands
needs neither tokenizers nor torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from polyvae.hookspecs import hookimpl

if TYPE_CHECKING:
    from polyvae.domain import Domain


@hookimpl
def register_domains(register: Callable[[Domain], None]) -> None:
    from polyvae.plugins.text.domain import TextDomain

    register(TextDomain())
