"""Shared fixtures: the Gaussian-mixture test domain, installed for real through an entry point."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from polyvae.callbacks import Callback
from polyvae.registry import Registry, reset_registry

SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))

import polyvae_gaussmix  # noqa: E402


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "soak: long-running loops that look for leaks (test_soak)")


def install_fake_plugin(site: Path, entry_name: str, module_name: str, source: str, version="0.1"):
    """Make ``module_name`` an installed distribution with a ``polyvae`` entry point, as pip
    would: a module plus a .dist-info folder that importlib.metadata finds on the path."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module_name}.py").write_text(source)
    dist_info = site / f"{module_name}-{version}.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module_name}\nVersion: {version}\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[polyvae]\n{entry_name} = {module_name}\n")


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    """A site folder holding the gaussmix test plugin, installed through an entry point."""
    site = tmp_path / "site"
    install_fake_plugin(
        site, "gaussmix", "polyvae_gaussmix", (SUPPORT / "polyvae_gaussmix.py").read_text()
    )
    return site


@contextlib.contextmanager
def gaussmix_only() -> Iterator[Registry]:
    """The process-wide registry with only the gaussmix domain loaded, for the block."""
    loaded = Registry()
    loaded.add_plugin(polyvae_gaussmix, "gaussmix", "0.1")
    reset_registry(loaded)
    try:
        yield loaded
    finally:
        reset_registry(None)


@pytest.fixture
def registry():
    """The process-wide registry with only the gaussmix domain loaded."""
    with gaussmix_only() as loaded:
        yield loaded


@pytest.fixture
def domain(registry):
    return registry.get_domain("gaussmix")


@pytest.fixture(scope="session")
def mixture_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "mixture.csv"
    np.savetxt(path, polyvae_gaussmix.mixture(2000, seed=0), delimiter=",", fmt="%.6f")
    return path


def polyvae_command() -> str:
    """The installed console script, so CLI tests run what a user runs."""
    script = Path(sys.executable).with_name("polyvae")
    return str(script) if script.exists() else shutil.which("polyvae")


def processes(parent: int | None = None, group: int | None = None) -> list[int]:
    """Ids of the live processes with this parent, or in this process group (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            # After the parenthesised command name: state, parent id, process group.
            _, parent_id, group_id = stat.rsplit(")", 1)[1].split()[:3]
            if (parent is not None and int(parent_id) == parent) or (
                group is not None and int(group_id) == group
            ):
                found.append(int(entry.name))
    return found


def run_polyvae(args, site: Path | None = None, plugins: str | None = "gaussmix", **kwargs):
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    if plugins is not None:
        env["POLYVAE_LOAD_PLUGINS"] = plugins
    return subprocess.run(
        [polyvae_command(), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=kwargs.pop("timeout", 300),
        **kwargs,
    )


@pytest.fixture
def entry_point_path(plugin_site, monkeypatch):
    """Put the fake installed plugins on sys.path for in-process entry-point discovery."""
    monkeypatch.syspath_prepend(str(plugin_site))
    importlib.invalidate_caches()
    reset_registry(None)
    yield plugin_site
    reset_registry(None)


@pytest.fixture(scope="session", autouse=True)
def isolated_read_cache(tmp_path_factory):
    """Cached reads go to a fresh folder, never the user's ~/.cache (subprocesses inherit it)."""
    os.environ["POLYVAE_CACHE_DIR"] = str(tmp_path_factory.mktemp("read-cache"))


class StopAt(Callback):
    """Asks the trainer to stop, as Ctrl-C does, after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, logs) -> None:
        if trainer.state.step == self.step:
            trainer.request_stop()
