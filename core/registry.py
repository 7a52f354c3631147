"""Plugin discovery and the one registry of domains.

Plugins come from the ``polyvae`` entry-point group; the built-in domains are registered there too,
exactly like third-party plugins. ``POLYVAE_LOAD_PLUGINS`` (comma-separated entry-point names)
limits which load; an empty value loads none. A plugin that fails to import or register is
recorded with its error and the others keep working.

Plugins' domains are registered the first time anything asks about plugins or domains, not when
the plugins load: building the command line (``polyvae --help``) then imports no domain module,
and with it no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from polyvae import hookspecs
from polyvae.errors import UserError

if TYPE_CHECKING:
    from polyvae.domain import Domain

ENTRY_POINT_GROUP = "polyvae"
LOAD_PLUGINS_ENV = "POLYVAE_LOAD_PLUGINS"


@dataclass
class PluginInfo:
    name: str
    version: str | None
    module: str
    hooks: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "hooks": self.hooks,
            "domains": self.domains,
            "error": self.error,
        }


class Registry:
    """Loaded plugins, their domains and their extra metrics."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        self._plugins: dict[str, PluginInfo] = {}
        self._domains: dict[str, tuple[Domain, str]] = {}
        self._conflicts: dict[str, list[str]] = {}
        self._unregistered: list[str] = []  # plugins whose register_domains has not run yet

    @property
    def plugins(self) -> dict[str, PluginInfo]:
        self._register_domains()
        return self._plugins

    @property
    def domains(self) -> dict[str, tuple[Domain, str]]:
        self._register_domains()
        return self._domains

    @property
    def conflicts(self) -> dict[str, list[str]]:
        self._register_domains()
        return self._conflicts

    # --- loading -------------------------------------------------------------------------------

    def load_entry_points(self) -> None:
        allowed = _allowed_plugin_names()
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allowed is not None and entry_point.name not in allowed:
                continue
            version = entry_point.dist.version if entry_point.dist else None
            try:
                plugin = entry_point.load()
            except Exception as error:  # a broken plugin must not take the others down
                self._plugins[entry_point.name] = PluginInfo(
                    entry_point.name, version, entry_point.value, error=_describe(error)
                )
                continue
            self.add_plugin(plugin, entry_point.name, version)

    def add_plugin(self, plugin: Any, name: str, version: str | None = None) -> None:
        """Register one plugin object (a module or class with hook implementations)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name, version, module)
        self._plugins[name] = info
        try:
            self.manager.register(plugin, name=name)
        except Exception as error:
            info.error = _describe(error)
            return
        try:
            # A hook implementation no spec names (``register_metric``) would never be called.
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            self.manager.unregister(plugin)
            specified = (caller for caller in vars(self.manager.hook).values() if caller.has_spec())
            hooks = ", ".join(sorted(caller.name for caller in specified))
            info.error = f"{_describe(error)}; polyvae's hooks are {hooks}"
            return
        info.hooks = sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or [])
        self._unregistered.append(name)

    def _register_domains(self) -> None:
        """Run the register_domains hook of each plugin added since the last call, in order."""
        while self._unregistered:
            self._register_domains_of(self._unregistered.pop(0))

    def _register_domains_of(self, name: str) -> None:
        from polyvae.domain import Domain

        info = self._plugins[name]
        impl = _own_impl(self.manager.hook.register_domains, name)
        if impl is None:
            return
        registered: list[Domain] = []
        try:
            impl.function(register=registered.append)
            for domain in registered:
                if not isinstance(domain, Domain):
                    raise TypeError(
                        f"register() expects a polyvae Domain, got {type(domain).__name__}"
                    )
        except Exception as error:
            info.error = _describe(error)
            return
        for domain in registered:
            self._add_domain(domain, name)

    def _add_domain(self, domain: Domain, plugin_name: str) -> None:
        if domain.name in self._conflicts:
            self._conflicts[domain.name].append(plugin_name)
        elif domain.name in self._domains:
            first_plugin = self._domains.pop(domain.name)[1]
            self._conflicts[domain.name] = [first_plugin, plugin_name]
        else:
            self._domains[domain.name] = (domain, plugin_name)
        self._plugins[plugin_name].domains.append(domain.name)

    # --- queries -------------------------------------------------------------------------------

    def get_domain(self, name: str) -> Domain:
        if name in self.conflicts:
            owners = " and ".join(f"'{plugin}'" for plugin in self.conflicts[name])
            raise UserError(
                f"domain '{name}' is registered by both {owners}; uninstall one or choose "
                f"plugins with {LOAD_PLUGINS_ENV}"
            )
        if name not in self.domains:
            known = ", ".join(sorted(self.domains)) or "none (no plugin is loaded)"
            raise UserError(f"unknown domain '{name}'; installed domains: {known}")
        return self.domains[name][0]

    def plugin_of(self, domain_name: str) -> PluginInfo:
        return self.plugins[self.domains[domain_name][1]]

    def extra_metrics(
        self, domain_name: str
    ) -> dict[str, Callable[[list, list, list], dict[str, float]]]:
        metrics: dict[str, Callable] = {}
        self.manager.hook.register_metrics(
            domain_name=domain_name, register=lambda name, fn: metrics.__setitem__(name, fn)
        )
        return metrics

    def add_commands(self, cli: Any) -> None:
        for impl in self.manager.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as error:
                self._plugins[impl.plugin_name].error = _describe(error)


def _own_impl(caller: Any, plugin_name: str) -> Any:
    for impl in caller.get_hookimpls():
        if impl.plugin_name == plugin_name:
            return impl
    return None


def _allowed_plugin_names() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _describe(error: BaseException) -> str:
    """The error on one line (pluggy's validation messages span several), for a table cell."""
    message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{type(error).__name__}: {message}"


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _registry
    if _registry is None:
        _registry = Registry()
        _registry.load_entry_points()
    return _registry


def reset_registry(registry: Registry | None = None) -> None:
    """Replace (or drop, to reload on next use) the process-wide registry; used by tests."""
    global _registry
    _registry = registry


def get_domain(name: str) -> Domain:
    return get_registry().get_domain(name)


def list_domains() -> list[str]:
    return sorted(get_registry().domains)
