"""polyvae: variational autoencoders for any modality, one engine and domain plugins."""

from __future__ import annotations

from polyvae.errors import ConfigError, RunError, UserError
from polyvae.model import Model, load
from polyvae.registry import get_domain, list_domains
from polyvae.trainer import train
from polyvae.version import __version__

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
