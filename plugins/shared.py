"""Pieces the built-in domains share: label properties, the bundled pretrained runs, finding and
opening the text files a reader accepts, a reader's error when nothing was usable, and the pool
of worker processes for work that holds the GIL."""

from __future__ import annotations

import contextlib
import csv
import glob
import gzip
import math
import multiprocessing
import multiprocessing.pool
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from polyvae.errors import UserError

if TYPE_CHECKING:
    from polyvae.domain import ReadReport

# Longest text record (a SMILES, a text) a reader keeps; longer ones are skipped and reported.
# Beyond this, RDKit's canonicalisation recurses deep enough to overflow the C stack (a segfault
# at about 20,000 chained atoms), and one huge text pads every row of the encoded data to it.
MAX_RECORD_CHARS = 10_000
# csv's default field limit (128 KiB) would stop a whole file at one huge field; a field that
# long is one record, skipped by the length check like a huge line of a .txt file.
csv.field_size_limit(2**31 - 1)


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


def require_usable(items: Sequence[Any], report: ReadReport, what: str) -> None:
    """A reader's error when it read no ``items`` (``what``: "molecules", "texts"): there were
    none in its source, or all were skipped, the first one's location and reason given."""
    if items:
        return
    if not report.skipped:
        raise UserError(f"no {what} in {report.source}")
    location, reason = report.skipped[0]
    raise UserError(
        f"no usable {what} in {report.source}: all {len(report.skipped):,} were skipped "
        f"(first: {location}: {reason})"
    )


def bundled_run(folder: str) -> Path | None:
    """``polyvae.data/FOLDER/pretrained`` if this install ships it."""
    try:
        path = resources.files("polyvae.data") / folder / "pretrained"
    except ModuleNotFoundError:  # an install without the bundled data
        return None
    return Path(str(path)) if path.is_dir() else None


class TextFiles:
    """The text files a reader accepts (by suffix, each optionally gzipped): which kind a file
    is, which files a source names (a file, a folder or a glob), and opening one."""

    def __init__(self, suffixes: tuple[str, ...], what: str) -> None:
        self.suffixes = suffixes
        self.what = what  # "molecules", "texts": for the error messages
        self.accepted = f"{', '.join(suffixes[:-1])} or {suffixes[-1]} files (optionally .gz)"

    def kind(self, path: Path) -> str | None:
        suffixes = [suffix.lower() for suffix in path.suffixes[-2:]]
        if suffixes and suffixes[-1] == ".gz":
            suffixes.pop()
        return suffixes[-1] if suffixes and suffixes[-1] in self.suffixes else None

    def files(self, source: str | Path) -> list[Path]:
        path = Path(source)
        if path.is_dir():
            found = sorted(file for file in path.iterdir() if file.is_file() and self.kind(file))
        elif path.is_file():
            if not self.kind(path):
                raise UserError(f"{self.what} are read from {self.accepted}, not {path.name}")
            found = [path]
        elif glob.has_magic(str(source)):
            found = sorted(Path(name) for name in glob.glob(str(source)) if self.kind(Path(name)))
        else:
            raise FileNotFoundError(2, "no such file or folder", str(source))
        if not found:
            raise UserError(f"no {self.accepted} in {source}")
        return found

    @staticmethod
    def open(path: Path) -> IO[str]:
        """The file as text. Bytes that are not UTF-8 become lone surrogates (Python's
        ``surrogateescape``) rather than failing the whole file: :func:`undecodable` then names
        the records that hold them, so one bad line is a counted skip."""
        if path.suffix.lower() == ".gz":
            return gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape", newline="")
        return open(path, encoding="utf-8", errors="surrogateescape", newline="")


def undecodable(text: str) -> str | None:
    """Why a record read through :meth:`TextFiles.open` is not text, or None."""
    for position, character in enumerate(text):
        if "\udc80" <= character <= "\udcff":
            byte = ord(character) - 0xDC00
            return f"not UTF-8 text (byte 0x{byte:02x} at character {position + 1})"
    return None


# --- worker processes --------------------------------------------------------------------------


@contextlib.contextmanager
def worker_pool(
    processes: int,
    preload: str,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Iterator[multiprocessing.pool.Pool]:
    """A :class:`multiprocessing.pool.Pool` of ``processes`` workers, for work that holds the GIL
    (RDKit). Closed and joined when the block ends, terminated only when it raises.

    - The workers are forked by a fork server: forking this process, whose torch threads may be
      running, is not safe, and a forked worker would inherit the CLI's signal handlers. The
      fork server lasts the process; the first pool starts it with the module ``preload`` (the
      one whose functions the workers run) imported, so that no later worker imports torch and
      RDKit again (about 4 s a pool on a busy 2-core machine).
    - Ctrl-C reaches every process of a terminal's command; the workers ignore it and this
      process stops them, so that none prints a traceback of its own. SIGTERM keeps its default
      action in the workers, which is how :meth:`~multiprocessing.pool.Pool.terminate` stops them.
    - While the pool is open, this process runs torch on the cores the workers leave (at least
      one): with more busy threads than cores both sides slow down (writing molecules on 2 cores
      with 2 workers: 418 molecules/s with torch's 2 threads, 570 with 1).
    """
    import torch  # the caller's; imported here to keep this module light

    threads = torch.get_num_threads()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([preload])  # read when the fork server starts, only
    with _signals_deferred():  # starting the workers sends each its start-up data
        pool = context.Pool(processes, _start_worker, (initializer, initargs))
    torch.set_num_threads(min(threads, max(1, (os.cpu_count() or 1) - processes)))
    try:
        yield pool
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        torch.set_num_threads(threads)


# Below this many items starting worker processes (seconds each) costs more than it saves.
PARALLEL_FROM = 100_000
MAX_WORKERS = 8
MAP_CHUNK = 2_000


def parallel_map(
    function: Callable[[Any], Any],
    items: Sequence[Any],
    preload: str,
    processes: int | None = None,
    chunksize: int = MAP_CHUNK,
) -> list[Any]:
    """``[function(item) for item in items]``, spread over ``processes`` :func:`worker_pool`
    workers (fewer than 2: none), in chunks of ``chunksize`` items: RDKit holds the GIL, and
    parsing the 1.6M MOSES molecules takes minutes in one process. By default every core, up to
    :data:`MAX_WORKERS`, once there are :data:`PARALLEL_FROM` items. ``function`` must be
    picklable (module level, or a partial of one) and defined in the module ``preload``."""
    if processes is None:
        many = len(items) >= PARALLEL_FROM
        processes = min(len(os.sched_getaffinity(0)), MAX_WORKERS) if many else 1
    if processes < 2:
        return [function(item) for item in items]
    with worker_pool(processes, preload=preload) as pool:
        return pool.map(function, items, chunksize=chunksize)


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block has run: a KeyboardInterrupt half-way through
    sending a worker its start-up data leaves it a truncated pickle to print a traceback about."""
    caught: list[int] = []
    try:
        previous = {
            stop: signal.signal(stop, lambda signum, frame: caught.append(signum))
            for stop in (signal.SIGINT, signal.SIGTERM)
        }
    except ValueError:  # not the main thread, which alone receives signals in Python
        previous = None
    if previous is None:
        yield
        return
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
        if caught:
            signal.raise_signal(caught[0])  # now handled as it would have been
