"""Meta-test: every built-in plugin loads and every domain it registers passes the conformance
kit, read from a slice of polyvae's own bundled data.

The built-ins are found the way users' plugins are: entry points of the ``polyvae`` group whose
module lives in ``polyvae.plugins``. A new built-in domain is tested here automatically; it only
needs a line in ``CASES`` saying which bundled file to read and which small settings to use.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import pytest

from polyvae.registry import ENTRY_POINT_GROUP, Registry
from polyvae.testing import check_domain, check_read

BUILTIN_PACKAGE = "polyvae.plugins."


def builtin_entry_points() -> list[metadata.EntryPoint]:
    return sorted(
        (
            entry_point
            for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP)
            if entry_point.value.startswith(BUILTIN_PACKAGE)
        ),
        key=lambda entry_point: entry_point.name,
    )


BUILTINS = [entry_point.name for entry_point in builtin_entry_points()]


@pytest.fixture(scope="module")
def builtin_registry() -> Registry:
    """A registry of the built-in plugins alone (not the process-wide one)."""
    registry = Registry()
    for entry_point in builtin_entry_points():
        try:
            plugin = entry_point.load()
        except Exception as error:
            pytest.fail(f"built-in plugin '{entry_point.name}' fails to import: {error!r}")
        registry.add_plugin(plugin, entry_point.name, entry_point.dist.version)
    return registry


def bundled(name: str) -> Path:
    return Path(str(resources.files("polyvae.data").joinpath(*name.split("/"))))


def first_lines(name: str, count: int, suffix: str) -> Callable[[Path], Path]:
    """The first ``count`` lines of a bundled (gzipped) text file, as a file of ``suffix``."""

    def make(folder: Path) -> Path:
        with gzip.open(bundled(name), "rt", encoding="utf-8") as handle:
            lines = [next(handle) for _ in range(count)]
        path = folder / f"sample{suffix}"
        path.write_text("".join(lines), encoding="utf-8")
        return path

    return make


def copy_of(name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        return Path(shutil.copy(bundled(name), folder / Path(name).name))

    return make


@dataclass(frozen=True)
class Case:
    data: Callable[[Path], Path]  # writes the data file to read into a folder; returns its path
    config: dict[str, Any] = field(default_factory=dict)  # small networks: a check, not a model
    items: int = 32


CASES: dict[str, Case] = {
    "molecules": Case(
        first_lines("molecules/test.smi.gz", 32, ".smi"),
        {
            "embedding_dim": 16,
            "encoder_hidden": 32,
            "decoder_hidden": 32,
            "decoder_layers": 1,
            "max_length": 60,
        },
    ),
    "text": Case(first_lines("text/valid.txt.gz", 32, ".txt"), {"vocab_size": 300}),
    "images": Case(copy_of("images/t10k-images-idx3-ubyte.gz"), {"width": 8, "depth": 0}),
}


def test_the_builtins_are_registered_through_entry_points():
    assert {"molecules", "text"} <= set(BUILTINS)
    polyvae = metadata.distribution("polyvae").entry_points
    assert sorted(ep.name for ep in polyvae if ep.group == ENTRY_POINT_GROUP) == BUILTINS


@pytest.mark.parametrize("plugin_name", BUILTINS)
def test_builtin_plugin_loads_and_its_domains_pass_the_kit(plugin_name, builtin_registry, tmp_path):
    info = builtin_registry.plugins[plugin_name]
    assert info.error is None, f"built-in plugin '{plugin_name}' failed: {info.error}"
    assert info.domains, f"built-in plugin '{plugin_name}' registers no domain"
    for name in info.domains:
        case = CASES.get(name)
        assert case is not None, (
            f"built-in domain '{name}' has no conformance case; add one to CASES in {__file__}"
        )
        domain = builtin_registry.get_domain(name)
        folder = tmp_path / name
        folder.mkdir()
        config = {"threads": 1, **case.config}
        items = check_read(domain, case.data(folder), config)[: case.items]
        model = check_domain(domain, items, folder / "kit", config)
        assert model.domain is domain
