"""``polyvae new-plugin``: the package it writes, its checks, and a generated plugin installed,
tested, trained and sampled from end to end."""

from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import polyvae
from polyvae import hookspecs, scaffold
from polyvae.cli import build_cli
from polyvae.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HOOKS = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "polyvae_spec"))
FILES = [
    "README.md",
    "data/sample.csv",
    "polyvae_{name}/__init__.py",
    "polyvae_{name}/commands.py",
    "polyvae_{name}/domain.py",
    "polyvae_{name}/metrics.py",
    "pyproject.toml",
    "tests/test_{name}.py",
]


def new_plugin(*args: str):
    return CliRunner().invoke(build_cli(), ["new-plugin", *args])


def test_writes_a_complete_installable_package(tmp_path, registry):
    result = new_plugin("sensor_rows", "--dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out"
    assert f"wrote plugin 'sensor_rows' to {folder}" in result.output
    written = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    assert written == sorted(name.format(name="sensor_rows") for name in FILES)
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project["project"]["name"] == "polyvae-sensor-rows"
    assert project["project"]["entry-points"]["polyvae"] == {"sensor_rows": "polyvae_sensor_rows"}
    assert project["tool"]["setuptools"]["packages"] == ["polyvae_sensor_rows"]
    major_minor = ".".join(polyvae.__version__.split(".")[:2])
    assert project["project"]["dependencies"] == [f"polyvae>={major_minor}"]
    for path in folder.rglob("*.py"):
        source = path.read_text()
        ast.parse(source, filename=str(path))  # rendered into valid Python
        assert "${" not in source and "$name" not in source, path
    domain = (folder / "polyvae_sensor_rows" / "domain.py").read_text()
    assert "class SensorRowsDomain(Domain):" in domain and 'name = "sensor_rows"' in domain
    assert "polyvae sample runs/sensor_rows" in (folder / "README.md").read_text()
    with open(folder / "data" / "sample.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["temperature_c", "humidity_pct", "pressure_hpa", "wind_speed_ms"]
    assert len(rows) == 241 and all(len(row) == 4 for row in rows)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_the_scaffold_implements_every_hook(tmp_path):
    """A new hook spec must reach the template, so that new plugins show every hook."""
    folder = scaffold.create_plugin("hooked", tmp_path / "p")
    module = ast.parse((folder / "polyvae_hooked" / "__init__.py").read_text())
    implemented = sorted(
        node.name
        for node in module.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(decorator) == "hookimpl" for decorator in node.decorator_list)
    )
    assert implemented == HOOKS
    assert f"info.hooks == {json.dumps(HOOKS)}" in (folder / "tests" / "test_hooked.py").read_text()


def test_default_folder_is_named_after_the_distribution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert scaffold.create_plugin("tabular") == tmp_path / "polyvae-tabular"
    assert (tmp_path / "polyvae-tabular" / "polyvae_tabular" / "domain.py").is_file()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Sensors", "invalid plugin name 'Sensors': use lowercase letters"),
        ("2d", "invalid plugin name '2d'"),
        ("time-series", "invalid plugin name 'time-series'"),
        ("a__b", "invalid plugin name 'a__b'"),
        ("rows_", "invalid plugin name 'rows_'"),
        ("class", "invalid plugin name 'class': it is a Python keyword"),
        ("x" * 41, f"plugin name '{'x' * 41}' is longer than 40 characters"),
        ("train", "plugin name 'train' is taken by an installed domain or a polyvae command"),
        ("gaussmix", "plugin name 'gaussmix' is taken"),
    ],
)
def test_bad_names_end_with_one_clear_line(tmp_path, registry, name, message):
    result = new_plugin(name, "--dir", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {message}")
    assert result.output.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_refuses_to_overwrite_a_folder_with_files(tmp_path, registry):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    result = new_plugin("rows", "--dir", str(folder))
    assert result.exit_code == 2
    assert (
        result.output == f"Error: {folder} is not empty; refusing to overwrite it (choose --dir)\n"
    )
    assert [path.name for path in folder.iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    assert new_plugin("rows", "--dir", str(tmp_path / "empty")).exit_code == 0
    assert (tmp_path / "empty" / "pyproject.toml").is_file()
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="exists and is not a folder"):
        scaffold.create_plugin("rows", tmp_path / "file")


def test_a_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(names):
        yield Path("pyproject.toml"), b"[project]\n"
        raise OSError("disk full")

    monkeypatch.setattr(scaffold, "render_templates", broken)
    with pytest.raises(OSError, match="disk full"):
        scaffold.create_plugin("rows", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
