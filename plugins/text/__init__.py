"""The built-in text domain plugin (entry point ``text`` in the ``polyvae`` group)."""

from __future__ import annotations

from collections.abc import Callable

from polyvae.domain import Domain
from polyvae.hookspecs import hookimpl
from polyvae.plugins.text.domain import TextDomain


@hookimpl
def register_domains(register: Callable[[Domain], None]) -> None:
    register(TextDomain())
