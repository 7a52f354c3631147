"""The installed polyvae's version, in a module of its own so that any module can import it
without importing the package's public API (and with it the model and the trainer)."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("polyvae")
except metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0.0.0"
