"""The installed `polyvae` command in its own process: warnings and errors reach the terminal as
one line each, without a traceback."""

from __future__ import annotations

from conftest import install_fake_plugin, run_polyvae

WARNS = """
import warnings
import click
from polyvae.hookspecs import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command("warn")
    def warn():
        warnings.warn("unique@1000 is computed on 10 samples")
        click.echo("done")
"""


def test_warnings_reach_the_terminal_as_one_line_notes(plugin_site):
    install_fake_plugin(plugin_site, "warner", "warner_plugin", WARNS)
    result = run_polyvae(["warn"], site=plugin_site, plugins="warner")
    assert result.returncode == 0 and result.stdout == "done\n"
    assert result.stderr == "note: unique@1000 is computed on 10 samples\n"


def test_installed_command_reports_errors_without_traceback(plugin_site, tmp_path):
    result = run_polyvae(
        ["train", "gaussmix", "--data", tmp_path / "missing.csv"], site=plugin_site
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: data not found: {tmp_path / 'missing.csv'}"
