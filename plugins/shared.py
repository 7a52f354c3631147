"""Pieces the built-in domains share: label properties and the bundled pretrained runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from polyvae.errors import UserError


def label_properties(items: Sequence[Any], names: Sequence[str], hint: str) -> np.ndarray:
    """``label``: an item's ``.label`` as a number; ``label:VALUE``: 1.0 for items labelled VALUE,
    else 0.0. NaN for items without a label (generated ones) and non-numeric labels under
    ``label``. ``hint`` says where the domain's labels come from, for the error on other names."""
    for name in names:
        if name != "label" and not name.startswith("label:"):
            raise UserError(
                f"unknown property '{name}': use 'label' for numeric labels or 'label:VALUE' for "
                f"each class ({hint})"
            )
    values = np.full((len(items), len(names)), math.nan)
    for row, item in enumerate(items):
        label = getattr(item, "label", None)
        if label is None:
            continue
        for column, name in enumerate(names):
            values[row, column] = _label_value(label, name)
    return values


def _label_value(label: str, name: str) -> float:
    if name != "label":
        return float(label == name.removeprefix("label:"))
    try:
        return float(label)
    except ValueError:
        return math.nan


def bundled_run(folder: str) -> Path | None:
    """``polyvae.data/FOLDER/pretrained`` if this install ships it."""
    try:
        path = resources.files("polyvae.data") / folder / "pretrained"
    except ModuleNotFoundError:  # an install without the bundled data
        return None
    return Path(str(path)) if path.is_dir() else None
