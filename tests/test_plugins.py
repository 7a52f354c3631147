"""Plugin discovery through entry points: isolation of broken plugins, filtering, conflicts."""

from __future__ import annotations

import pytest
from conftest import install_fake_plugin

from polyvae.errors import UserError
from polyvae.registry import get_registry

BROKEN_ON_IMPORT = "raise RuntimeError('missing native library')\n"
BROKEN_ON_REGISTER = """
from polyvae.hookspecs import hookimpl

@hookimpl
def register_domains(register):
    raise ValueError('bad config file')
"""
DUPLICATE_DOMAIN = """
from polyvae.hookspecs import hookimpl
from polyvae_gaussmix import GaussMixDomain

@hookimpl
def register_domains(register):
    register(GaussMixDomain())
"""
WITH_COMMAND = """
import click
from polyvae.hookspecs import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command("hello")
    def hello():
        click.echo("hello from a plugin")
"""
MISSPELT_HOOK = """
from polyvae.hookspecs import hookimpl

@hookimpl
def register_metric(domain_name, register):
    register("never", lambda generated, reference, training: {})
"""
WITH_METRIC = """
from polyvae.hookspecs import hookimpl

@hookimpl
def register_metrics(domain_name, register):
    if domain_name == "gaussmix":
        register("count", lambda generated, reference, training: {"n": float(len(generated))})
"""


def test_entry_point_plugin_loads_with_version_domains_and_hooks(entry_point_path):
    registry = get_registry()
    info = registry.plugins["gaussmix"]
    assert info.version == "0.1" and info.error is None
    assert info.domains == ["gaussmix"] and info.hooks == ["register_domains"]
    assert registry.get_domain("gaussmix").name == "gaussmix"


def test_broken_plugins_are_reported_and_others_keep_working(entry_point_path):
    install_fake_plugin(entry_point_path, "broken_import", "broken_import", BROKEN_ON_IMPORT)
    install_fake_plugin(entry_point_path, "broken_register", "broken_register", BROKEN_ON_REGISTER)
    registry = get_registry()
    assert registry.plugins["broken_import"].error == "RuntimeError: missing native library"
    assert registry.plugins["broken_register"].error == "ValueError: bad config file"
    assert registry.get_domain("gaussmix").name == "gaussmix"


def test_a_hook_no_spec_names_fails_its_plugin_and_names_the_hooks(entry_point_path):
    install_fake_plugin(entry_point_path, "misspelt", "misspelt_plugin", MISSPELT_HOOK)
    registry = get_registry()
    info = registry.plugins["misspelt"]
    assert info.error.startswith("PluginValidationError: unknown hook 'register_metric'")
    assert info.error.endswith(
        "polyvae's hooks are register_commands, register_domains, register_metrics"
    )
    assert info.hooks == []
    assert registry.get_domain("gaussmix").name == "gaussmix"
    assert registry.plugins["gaussmix"].error is None


def test_environment_variable_limits_plugins(entry_point_path, monkeypatch):
    install_fake_plugin(entry_point_path, "other", "other_plugin", WITH_COMMAND)
    monkeypatch.setenv("POLYVAE_LOAD_PLUGINS", "other")
    registry = get_registry()
    assert set(registry.plugins) == {"other"}
    with pytest.raises(UserError, match="unknown domain 'gaussmix'; installed domains: none"):
        registry.get_domain("gaussmix")


def test_empty_environment_variable_loads_nothing(entry_point_path, monkeypatch):
    monkeypatch.setenv("POLYVAE_LOAD_PLUGINS", "")
    assert get_registry().plugins == {}


def test_two_domains_with_one_name_is_a_clear_error(entry_point_path):
    install_fake_plugin(entry_point_path, "copycat", "copycat_plugin", DUPLICATE_DOMAIN)
    registry = get_registry()
    assert registry.conflicts["gaussmix"] == ["copycat", "gaussmix"] or registry.conflicts[
        "gaussmix"
    ] == ["gaussmix", "copycat"]
    with pytest.raises(UserError, match="domain 'gaussmix' is registered by both"):
        registry.get_domain("gaussmix")


def test_register_metrics_hook_adds_metrics(entry_point_path):
    install_fake_plugin(entry_point_path, "counter", "counter_plugin", WITH_METRIC)
    metrics = get_registry().extra_metrics("gaussmix")
    assert metrics["count"]([1, 2, 3], [], []) == {"n": 3.0}
    assert get_registry().extra_metrics("molecules") == {}
