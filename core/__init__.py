"""polyvae: variational autoencoders for any modality, one engine and domain plugins."""

from __future__ import annotations

import importlib
from typing import Any

from polyvae.errors import ConfigError, RunError, UserError
from polyvae.registry import get_domain, list_domains
from polyvae.version import __version__

# The model and the trainer import torch: they load on first use, so that `polyvae --help` and
# anything else that needs only part of the package start without it.
_DEFERRED = {"Model": "polyvae.model", "load": "polyvae.model", "train": "polyvae.trainer"}

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


def __getattr__(name: str) -> Any:
    if name not in _DEFERRED:
        raise AttributeError(f"module 'polyvae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_DEFERRED[name]), name)
    globals()[name] = value
    return value
