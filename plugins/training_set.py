"""Which items a codec was fitted on, kept with the codec as 64-bit hashes of their text, so that
a run can flag generated items as novel without shipping its training data.

Stored for the 1.6M MOSES molecules the hashes take 13 MB, and a novel item is taken for a known
one with a chance under 1e-13.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from polyvae.files import load_tensors, save_tensors

TRAINING_SET_FILE = "training_set.safetensors"


class TrainingSet:
    """The distinct hashes of the fitted items' texts (each already in the codec's normal form),
    sorted: a look-up is a binary search, where ``np.isin`` would sort the 1.6M hashes again at
    every call."""

    def __init__(self, hashes: np.ndarray) -> None:
        self.hashes = np.sort(hashes)  # already sorted when made by ``of``: then a quick pass

    @classmethod
    def of(cls, texts: Sequence[str]) -> TrainingSet:
        return cls(np.unique(text_hashes(texts)))

    @classmethod
    def load(cls, directory: Path) -> TrainingSet:
        return cls(load_tensors(directory / TRAINING_SET_FILE)["hashes"].numpy())

    @classmethod
    def saved_in(cls, directory: Path) -> bool:
        return (directory / TRAINING_SET_FILE).is_file()

    def save(self, directory: Path) -> None:
        save_tensors(directory / TRAINING_SET_FILE, {"hashes": torch.from_numpy(self.hashes)})

    def joined(self, texts: Sequence[str]) -> TrainingSet:
        """This set with ``texts`` added: what a fine-tuned model has seen."""
        return TrainingSet(np.union1d(self.hashes, text_hashes(texts)))

    def novel(self, texts: Sequence[str]) -> np.ndarray:
        """For each text (in the same normal form), whether it was absent from the fitted ones."""
        hashes = text_hashes(texts)
        if not len(self.hashes):
            return np.ones(len(hashes), dtype=bool)
        found = np.searchsorted(self.hashes, hashes).clip(max=len(self.hashes) - 1)
        return self.hashes[found] != hashes


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """One signed 64-bit BLAKE2b hash per text (of its UTF-8 bytes)."""
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True
            )
            for text in texts
        ],
        dtype=np.int64,
    )
