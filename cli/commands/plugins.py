"""``polyvae plugins`` lists what is installed; ``polyvae new-plugin`` starts a new one."""

from __future__ import annotations

import json
from pathlib import Path

import click

from polyvae.cli.options import json_option
from polyvae.cli.tables import table
from polyvae.registry import get_registry


@click.command("plugins")
@json_option
def plugins_command(as_json: bool) -> None:
    """List installed plugins, their versions, domains and hooks."""
    registry = get_registry()
    plugins = [info.to_dict() for info in sorted(registry.plugins.values(), key=lambda p: p.name)]
    domains = {
        name: {"plugin": plugin, "description": domain.description}
        for name, (domain, plugin) in sorted(registry.domains.items())
    }
    if as_json:
        payload = {"plugins": plugins, "domains": domains, "conflicts": registry.conflicts}
        click.echo(json.dumps(payload, indent=2))
        return
    if not plugins:
        click.echo("no plugins installed")
        return
    rows = [("plugin", "version", "domains", "hooks", "status")]
    for plugin in plugins:
        rows.append(
            (
                plugin["name"],
                plugin["version"] or "-",
                ", ".join(plugin["domains"]) or "-",
                ", ".join(plugin["hooks"]) or "-",
                f"error: {plugin['error']}" if plugin["error"] else "ok",
            )
        )
    click.echo(table(rows))
    for name, owners in registry.conflicts.items():
        click.echo(f"conflict: domain '{name}' is registered by {' and '.join(owners)}", err=True)


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder to create (default: ./polyvae-NAME); must not exist or be empty.",
)
@click.pass_context
def new_plugin_command(ctx: click.Context, name: str, directory: Path | None) -> None:
    """Write a ready-to-install plugin package for a new domain NAME (rows of numeric CSV
    columns, a Gaussian VAE), with sample data and tests that use polyvae.testing."""
    from polyvae.scaffold import create_plugin

    root = ctx.find_root().command
    assert isinstance(root, click.Group)
    taken = {*root.commands, *get_registry().domains}
    folder = create_plugin(name, directory, taken=taken)
    click.echo(f"wrote plugin '{name}' to {folder}")
    click.echo(f'next: pip install -e "{folder}[test]" && pytest {folder}', err=True)
