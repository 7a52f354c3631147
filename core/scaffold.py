"""``polyvae new-plugin``: write a ready-to-install domain plugin package from templates.

The templates are package data (``polyvae/templates/plugin``): files ending in ``.tmpl`` are
rendered with :class:`string.Template` (``${name}``, ``${package}``, ``${cls}``, ...), other files
are copied byte for byte. The package is written to a hidden folder beside the destination and
renamed into place in one step, so a failure never leaves half a plugin behind.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from polyvae.errors import UserError
from polyvae.files import atomic_write_bytes

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

TEMPLATE_ROOT = ("templates", "plugin")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
MAX_NAME_LENGTH = 40
# Template paths whose names change: the package folder and the test module.
RENAMES = {"package": "${package}", "test_plugin.py": "test_${name}.py"}


def plugin_names(name: str) -> dict[str, str]:
    """The names a plugin called ``name`` uses: distribution, import package, class prefix."""
    from polyvae.version import __version__

    major_minor = ".".join(__version__.split(".")[:2])
    return {
        "name": name,
        "package": f"polyvae_{name}",
        "distribution": "polyvae-" + name.replace("_", "-"),
        "cls": "".join(part.capitalize() for part in name.split("_") if part),
        "polyvae_requirement": f"polyvae>={major_minor}",
    }


def validate_name(name: str, taken: Iterable[str] = ()) -> None:
    """Raise :class:`UserError` unless ``name`` can name a domain, a module and a command."""
    if not NAME_PATTERN.fullmatch(name) or name.endswith("_") or "__" in name:
        raise UserError(
            f"invalid plugin name {name!r}: use lowercase letters, digits and single underscores, "
            "starting with a letter (e.g. 'sensors' or 'time_series')"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise UserError(f"plugin name {name!r} is longer than {MAX_NAME_LENGTH} characters")
    if keyword.iskeyword(name):
        raise UserError(f"invalid plugin name {name!r}: it is a Python keyword")
    if name in set(taken):
        raise UserError(
            f"plugin name {name!r} is taken by an installed domain or a polyvae command; "
            "choose another"
        )


def create_plugin(
    name: str, directory: str | Path | None = None, taken: Iterable[str] = ()
) -> Path:
    """Write the plugin package for ``name`` into ``directory`` (default ``./polyvae-NAME``),
    which must not exist or be empty. Returns the folder written."""
    validate_name(name, taken)
    names = plugin_names(name)
    target = Path(directory) if directory is not None else Path(names["distribution"])
    target = target.expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        raise UserError(f"{target} is not empty; refusing to overwrite it (choose --dir)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for relative, data in render_templates(names):
            atomic_write_bytes(staging / relative, data)
        staging.chmod(0o777 & ~_umask())
        os.replace(staging, target)  # also replaces an existing empty folder
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def render_templates(names: dict[str, str]) -> Iterator[tuple[Path, bytes]]:
    """``(relative path, contents)`` of every file of the plugin package."""
    root = resources.files("polyvae").joinpath("/".join(TEMPLATE_ROOT))
    if not root.is_dir():
        raise UserError("polyvae's plugin templates are missing; reinstall polyvae")
    for parts, source in _walk(root, ()):
        data = source.read_bytes()
        if parts[-1].endswith(".tmpl"):
            parts = (*parts[:-1], parts[-1].removesuffix(".tmpl"))
            data = Template(data.decode("utf-8")).substitute(names).encode("utf-8")
        renamed = [Template(RENAMES.get(part, part)).substitute(names) for part in parts]
        yield Path(*renamed), data


def _walk(
    folder: Traversable, parts: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], Traversable]]:
    for child in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if child.name == "__pycache__" or child.name.startswith("."):
            continue
        if child.is_dir():
            yield from _walk(child, (*parts, child.name))
        else:
            yield (*parts, child.name), child


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
