"""`polyvae plugins` and a plugin's own command, run as the installed command with plugins
installed through entry points."""

from __future__ import annotations

import json

from conftest import install_fake_plugin, run_polyvae
from test_plugins import BROKEN_ON_IMPORT, WITH_COMMAND

WRONG_ARGUMENT = """
from polyvae.hookspecs import hookimpl

@hookimpl
def register_domains(register, settings):
    pass
"""


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
