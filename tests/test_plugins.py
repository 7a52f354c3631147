"""Plugin discovery through entry points: isolation of broken plugins, filtering, conflicts."""

from __future__ import annotations

import json

import pytest
from conftest import install_fake_plugin, run_polyvae

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
WRONG_ARGUMENT = """
from polyvae.hookspecs import hookimpl

@hookimpl
def register_domains(register, settings):
    pass
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


def test_plugins_table_shows_a_validation_error_whole_on_one_line(plugin_site):
    install_fake_plugin(plugin_site, "wrong_argument", "wrong_argument", WRONG_ARGUMENT)
    result = run_polyvae(["plugins"], site=plugin_site, plugins="gaussmix,wrong_argument")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("wrong_argument"))
    assert row.endswith(
        "error: PluginValidationError: Plugin 'wrong_argument' for hook 'register_domains'; "
        "hookimpl definition: register_domains(register, settings); Argument(s) {'settings'} "
        "are declared in the hookimpl but can not be found in the hookspec"
    )
    assert len(result.stdout.strip().splitlines()) == 4  # header, rule, two plugins


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


def test_plugins_command_json_and_table(plugin_site):
    install_fake_plugin(plugin_site, "broken_import", "broken_import", BROKEN_ON_IMPORT)
    install_fake_plugin(plugin_site, "other", "other_plugin", WITH_COMMAND)
    result = run_polyvae(
        ["plugins", "--json"], site=plugin_site, plugins="gaussmix,broken_import,other"
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    by_name = {plugin["name"]: plugin for plugin in payload["plugins"]}
    assert by_name["gaussmix"]["domains"] == ["gaussmix"]
    assert by_name["gaussmix"]["version"] == "0.1"
    assert by_name["other"]["hooks"] == ["register_commands"]
    assert by_name["broken_import"]["error"] == "RuntimeError: missing native library"
    assert payload["domains"] == {
        "gaussmix": {"plugin": "gaussmix", "description": "real-valued vectors (test domain)"}
    }
    table = run_polyvae(["plugins"], site=plugin_site, plugins="gaussmix,broken_import,other")
    assert (
        "gaussmix" in table.stdout and "error: RuntimeError: missing native library" in table.stdout
    )
    # register_commands: the plugin's command is part of the CLI.
    hello = run_polyvae(["hello"], site=plugin_site, plugins="other")
    assert hello.returncode == 0 and hello.stdout.strip() == "hello from a plugin"
