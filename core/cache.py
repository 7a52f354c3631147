"""A cache of read items keyed by the data file's content, so a large file is parsed once.

Reading is the slow part of getting data in: RDKit parses and canonicalises every SMILES
(80 s for 50,000 molecules on a busy 2-core CPU), where fitting and running the codec take about
10 s each. ``evaluate``, ``report``, ``--resume`` and a second training run on the same file read
it again; from the cache the bundled 250,000 molecules take 0.08 s instead of 28 s
(``benchmarks/read_cache.py``). Only items that are plain strings (molecules, unlabelled texts)
are cached, as gzipped JSON: nothing is pickled, so a planted cache file cannot run code.

The key is the SHA-256 of the file's bytes, the domain, the polyvae and plugin versions and the
domain's option values (a reader may depend on any of them, e.g. ``max_length``). The folder is
``$POLYVAE_CACHE_DIR``, else ``$XDG_CACHE_HOME/polyvae/items`` or ``~/.cache/polyvae/items``;
``POLYVAE_CACHE_DIR=off`` turns the cache off. Deleting the folder is always safe.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polyvae.domain import Domain, ReadReport
from polyvae.files import atomic_write_bytes
from polyvae.registry import get_registry
from polyvae.version import __version__

CACHE_ENV = "POLYVAE_CACHE_DIR"
CACHE_FORMAT = 1


def cache_folder() -> Path | None:
    """Where cached reads live; None when the cache is off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen in ("", "off") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "polyvae" / "items"


def read_key(domain: Domain, source: Path, config: Mapping[str, Any]) -> str | None:
    """The cache key of reading the file ``source``; None for what is not one file (folders,
    globs, named data sets) or when the cache is off."""
    if cache_folder() is None or not source.is_file():
        return None
    registry = get_registry()
    plugin = registry.plugin_of(domain.name) if domain.name in registry.domains else None
    shaping = {
        "format": CACHE_FORMAT,
        "polyvae": __version__,
        "domain": domain.name,
        "plugin": [plugin.name, plugin.version] if plugin else None,
        "options": {name: config.get(name) for name in read_option_names(domain)},
    }
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode())
    with open(source, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_option_names(domain: Domain) -> list[str]:
    if domain.read_options is None:
        return [option.name for option in domain.options]
    return sorted(domain.read_options)


def load_read(key: str, source: str) -> tuple[list[str], ReadReport] | None:
    """The items and report stored under ``key`` (read from ``source``, which may be another
    path to the same bytes); None when absent or unreadable."""
    folder = cache_folder()
    if folder is None:
        return None
    try:
        with gzip.open(folder / f"{key}.json.gz", "rt", encoding="utf-8") as stored:
            record = json.load(stored)
        report = ReadReport(source, record["kept"])
        report.skipped = [(location, reason) for location, reason in record["skipped"]]
        report.notes = list(record["notes"])
        items = record["items"]
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    if not all(isinstance(item, str) for item in items):
        return None
    report.notes.append("from the read cache")
    return items, report


def store_read(key: str, items: list[Any], report: ReadReport) -> None:
    """Keep a read for next time, when its items are strings; a cache that cannot be written
    (read-only home, full disk) is skipped, as it only saves time."""
    folder = cache_folder()
    if folder is None or not all(isinstance(item, str) for item in items):
        return
    record = {
        "kept": report.kept,
        "skipped": report.skipped,
        "notes": report.notes,
        "items": items,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        payload = gzip.compress(json.dumps(record).encode("utf-8"), compresslevel=3)
        atomic_write_bytes(folder / f"{key}.json.gz", payload)
    except OSError:
        pass
