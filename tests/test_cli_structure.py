"""How the command line is put together: --nproc relaunches exactly what click parsed, plugins'
command groups load lazily, and building the command line imports no torch."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from polyvae.cli import COMMANDS, build_cli
from polyvae.cli.relaunch import NPROC, parameters_of


def _given_value(option: click.Option) -> list[str]:
    """Command-line arguments that set ``option`` to a value other than its default."""
    flag = option.opts[0]
    if option.is_bool_flag:
        return [flag]
    if isinstance(option.type, click.Choice):
        value = next(choice for choice in option.type.choices if choice != option.default)
    elif isinstance(option.type, (click.types.IntParamType, click.types.FloatParamType)):
        value = 7 if option.default != 7 else 8
    else:
        value = "some value=with -dashes"
    given = [flag, str(value)]
    return given * 2 if option.multiple else given


@pytest.mark.parametrize("name", ["train", "sample", "score"])
def test_every_option_survives_the_relaunch_under_nproc(name):
    command = next(command for command in COMMANDS if command.name == name)
    args = [
        f"{param.name}-argument" for param in command.params if param.param_type_name == "argument"
    ]
    for option in command.params:
        if isinstance(option, click.Option):
            args += _given_value(option)
    if name == "sample":
        args += ["--strategy", "beam"]  # a domain's decoding option, left to the command
    parsed = command.make_context(name, list(args))
    for option in command.params:  # every option was given, so a dropped one would show
        assert parsed.params[option.name] != option.default, option.name

    relaunched = command.make_context(name, parameters_of(parsed))

    assert parsed.params[NPROC] == 7 and relaunched.params[NPROC] == 1  # workers run it once
    assert relaunched.params == parsed.params | {NPROC: 1}
    assert relaunched.args == parsed.args


def test_plugin_groups_load_their_commands_on_first_use():
    cli = build_cli()
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from polyvae.cli import build_cli; build_cli();"
            " print(sorted(name for name in sys.modules if name.startswith(('torch', 'rdkit'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.strip() == "[]"
    for group in ("images", "molecules"):
        assert cli.commands[group].list_commands(click.Context(cli))  # imported on use


def test_python_m_polyvae_is_the_polyvae_command():
    result = subprocess.run(
        [sys.executable, "-m", "polyvae", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("polyvae, version ")


def test_listing_plugins_registers_every_domain_without_torch_rdkit_or_torchvision():
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from polyvae.cli import build_cli;"
            " build_cli().main(['plugins'], standalone_mode=False);"
            " print(sorted({name.split('.')[0] for name in sys.modules}"
            " & {'torch', 'torchvision', 'rdkit'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    *table, heavy = listed.stdout.strip().splitlines()
    assert heavy == "[]"
    statuses = {row.split()[0]: row.split()[-1] for row in table[2:]}  # under the header
    assert {statuses.get(name) for name in ("images", "molecules", "text")} == {"ok"}
