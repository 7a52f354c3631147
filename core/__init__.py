"""polyvae: variational autoencoders for any modality, one engine and domain plugins."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("polyvae")
except metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0.0.0"

from polyvae.errors import ConfigError, RunError, UserError
from polyvae.model import Model, load
from polyvae.registry import get_domain, list_domains
from polyvae.trainer import train

__all__ = [
    "ConfigError",
    "Model",
    "RunError",
    "UserError",
    "__version__",
    "get_domain",
    "list_domains",
    "load",
    "train",
]
