"""Progress bars on stderr for long commands: the library's ``Progress`` hook drawn with tqdm."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

# Seconds before a stage's bar appears: quick stages draw nothing.
BAR_DELAY = 0.5


@contextlib.contextmanager
def progress_bars(quiet: bool) -> Iterator[ProgressBars | None]:
    """A ``polyvae.evaluation.Progress`` hook that draws one bar per stage on stderr and clears
    it when the stage ends; None (no progress at all) with ``--quiet`` or when stderr is not a
    terminal, so logs and pipes get no bars."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    bars = ProgressBars()
    try:
        yield bars
    finally:
        bars.close()


class ProgressBars:
    def __init__(self) -> None:
        self.bar: Any = None
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int, **numbers: float) -> None:
        from tqdm import tqdm

        # A stage that starts again (evaluate samples under each prior) gets a fresh bar.
        if self.bar is None or stage != self.stage or done < self.bar.n:
            self.close()
            self.stage = stage
            # A stage that cannot count (the domain's metrics) has no updates to appear with
            # after a delay: it shows from the start how long it has taken.
            shape = (
                {"total": total, "delay": BAR_DELAY}
                if total
                else {"bar_format": "{desc}: {elapsed}"}
            )
            self.bar = tqdm(desc=stage, leave=False, dynamic_ncols=True, file=sys.stderr, **shape)
        if total and total != self.bar.total:  # sampling plans more draws as it filters
            self.bar.total = total
        self.bar.set_postfix(
            {name: f"{value:.4g}" for name, value in numbers.items()}, refresh=False
        )
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
