"""Errors a user can cause. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from polyvae.wording import plural


class UserError(Exception):
    """A problem with input, configuration or files that the user can fix."""


class ConfigError(UserError):
    """An unknown configuration key or a value outside its valid choices."""


class RunError(UserError):
    """A run directory that is missing, incomplete, locked or not safe to load."""


class UnencodableItem(UserError):
    """Items a run's codec cannot turn into tensors (a token outside its vocabulary, a molecule
    SELFIES cannot write). ``index``, ``item`` and ``reason`` name the first; ``reasons`` maps the
    position of every such item in the encoded sequence to why, so a caller can encode the rest.
    """

    def __init__(
        self, reasons: Mapping[int, str], items: Sequence[object], noun: str = "item"
    ) -> None:
        self.reasons = dict(sorted(reasons.items()))
        self.index, self.reason = next(iter(self.reasons.items()))
        self.item = items[self.index]
        message = f"{noun} {self.index + 1} '{self.item}' {self.reason}"
        if len(self.reasons) > 1:
            message += f" (and {plural(len(self.reasons) - 1, 'other')} that cannot be encoded)"
        super().__init__(message)
