"""Write molecules to the files chemists use: .csv and .smi tables, .sdf, a .png grid, .txt.

Rows are numbered from 1 (the ``id`` column); the same number names the molecule in the SDF and
labels it in the PNG grid, so one can be found in the others.
"""

from __future__ import annotations

import collections
import csv
import io
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import cast

import numpy as np
from rdkit import Chem
from rdkit.Chem import Draw, rdDepictor

from polyvae.errors import UserError
from polyvae.files import atomic_output
from polyvae.plugins.molecules.chemistry import (
    STANDARD_PROPERTIES,
    default_n_jobs,
    mol_properties,
    parse,
)
from polyvae.plugins.shared import worker_pool

COLUMNS = ("smiles", "id", "valid", "novel", *STANDARD_PROPERTIES)
GRID_LIMIT = 100  # a bigger grid is too large an image to look at
GRID_PER_ROW = 5
GRID_CELL = (300, 300)
# A file of fewer molecules is rendered here: starting the workers costs more than sharing the
# RDKit work saves (each imports torch and RDKit, about 3 s on 2 cores). Measured on one chunk,
# 1 process against 2 workers: 2,000 molecules 4.2 s vs 6.7 s, 4,000 9.1 s vs 8.9 s. Counted over
# the opening chunks, not the first alone: sampling only valid molecules makes chunks of ~3,000.
PARALLEL_FROM = 4000
# How SD records travel from the workers: every property, and coordinates to full precision.
WHOLE_MOLECULE = Chem.PropertyPickleOptions.AllProps | Chem.PropertyPickleOptions.CoordsAsDouble


def write(
    smiles: Sequence[str],
    path: Path,
    novel: Callable[[Sequence[str]], Sequence[bool] | np.ndarray] | None = None,
    n_jobs: int | None = None,
) -> None:
    """Write ``smiles`` to ``path``, the format chosen by its suffix. ``novel`` flags the
    molecules of a list that are absent from the training data (``MoleculeCodec.novel``);
    without it the ``novel`` column is left empty. ``n_jobs`` as for :func:`write_stream`.

    - ``.csv``: a table of the :data:`COLUMNS`; ``.smi``: the same table, tab-separated, which
      RDKit reads with ``SmilesMolSupplier(path, delimiter="\\t", titleLine=True)``.
    - ``.sdf``: the valid molecules with 2D coordinates, their properties as SD fields.
    - ``.png``: a grid of the first 100 molecules.
    - ``.txt``: one SMILES per line.
    """
    write_stream([list(smiles)], path, novel, n_jobs)


def write_stream(
    chunks: Iterable[Sequence[str]],
    path: Path,
    novel: Callable[[Sequence[str]], Sequence[bool] | np.ndarray] | None = None,
    n_jobs: int | None = None,
) -> int:
    """:func:`write` for molecules that arrive in chunks, one chunk in memory at a time: the
    rows of ``.csv``, ``.smi``, ``.txt`` and ``.sdf`` files are written as the chunks come (to a
    temporary file, renamed at the end); a ``.png`` grid keeps the first 100. ``novel`` flags
    each chunk's novel molecules. Returns the number of molecules written.

    The RDKit work on a chunk (parsing, properties, novelty, 2D coordinates: about 2 ms a
    molecule) runs in up to ``n_jobs`` worker processes (default: the CPU count, at most 4; 1:
    in this process) while the chunks after it are being made, at most ``n_jobs + 1`` chunks
    ahead of the file; ``novel`` must then be picklable."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".smi", ".sdf", ".png", ".txt"):
        raise UserError(
            f"molecules are written to .csv, .smi, .sdf, .png or .txt files, not '{path.name}'"
        )
    if suffix == ".png":
        shown: list[str] = []
        count = 0
        for chunk in chunks:
            shown += list(chunk[: GRID_LIMIT - len(shown)])
            count += len(chunk)
        _write_grid(shown, path)
        return count
    count = 0
    with (
        atomic_output(path) as temporary,
        open(temporary, "w", encoding="utf-8", newline="") as handle,
    ):
        if suffix == ".txt":
            for chunk in chunks:
                handle.writelines(f"{text}\n" for text in chunk)
                count += len(chunk)
            return count
        render = ChunkRenderer(suffix, novel)
        rendered = _rendered(chunks, render, default_n_jobs() if n_jobs is None else n_jobs)
        if suffix == ".sdf":
            # The SD writer numbers its records, so it stays here and the workers send it
            # finished molecules.
            with Chem.SDWriter(handle) as writer:
                for molecules, size in rendered:
                    for molecule in cast(list[bytes], molecules):  # .sdf chunks: binary Mols
                        writer.write(Chem.Mol(molecule))  # type: ignore[call-overload]  # binary too
                    count += size
            return count
        handle.write(render.header())
        for texts, size in rendered:
            handle.writelines(cast(list[str], texts))  # other formats render text
            count += size
    return count


class ChunkRenderer:
    """What a chunk of molecules puts in a file: for ``.csv`` and ``.smi`` the text of its rows
    (one string), for ``.sdf`` its valid molecules with 2D coordinates and properties (as RDKit
    binaries, which keep both). Ids count on from ``start``, the molecules before the chunk.
    Picklable, so that worker processes can hold one."""

    def __init__(
        self, suffix: str, novel: Callable[[Sequence[str]], Sequence[bool] | np.ndarray] | None
    ) -> None:
        self.suffix = suffix
        self.novel = novel
        self.delimiter = "," if suffix == ".csv" else "\t"

    def header(self) -> str:
        return self.delimiter.join(COLUMNS) + "\n"

    def __call__(self, smiles: list[str], start: int) -> list[str] | list[bytes]:
        mols = [parse(text) for text in smiles]
        rows = _rows(mols, smiles, None if self.novel is None else self.novel(smiles), start)
        if self.suffix == ".sdf":
            return _sdf_records(mols, rows)
        buffer = io.StringIO()
        table = csv.DictWriter(buffer, COLUMNS, delimiter=self.delimiter, lineterminator="\n")
        table.writerows(rows)
        return [buffer.getvalue()]


def _rendered(
    chunks: Iterable[Sequence[str]], render: ChunkRenderer, n_jobs: int
) -> Iterator[tuple[list[str] | list[bytes], int]]:
    """(what ``render`` made, number of molecules) of each chunk, in order."""
    chunks = iter(chunks)
    opening: list[Sequence[str]] = []
    held = 0
    # Held until the file is known to be large enough for the workers, or has ended.
    while held < PARALLEL_FROM and (chunk := next(chunks, None)) is not None:
        opening.append(chunk)
        held += len(chunk)
    small = held < PARALLEL_FROM
    chunks = itertools.chain(opening, chunks)
    start = 0
    if n_jobs < 2 or small:  # a worker's start-up would cost more
        for chunk in chunks:
            yield render(list(chunk), start), len(chunk)
            start += len(chunk)
        return
    # The workers hold the renderer (and its novelty set) from their start, so that the pieces
    # carry only their molecules.
    with worker_pool(
        n_jobs, preload=__name__, initializer=_hold_renderer, initargs=(render,)
    ) as pool:
        waiting: collections.deque[tuple[list[AsyncResult], int]] = collections.deque()
        for chunk in chunks:
            chunk = list(chunk)
            # Each worker takes a share of every chunk, so that a sample of one chunk is shared.
            share = -(-len(chunk) // n_jobs)
            pieces = [
                pool.apply_async(_render_held, (chunk[offset : offset + share], start + offset))
                for offset in range(0, len(chunk), share)
            ]
            waiting.append((pieces, len(chunk)))
            start += len(chunk)
            # A bounded queue: when RDKit is the slower side, making chunks waits for it.
            while len(waiting) > n_jobs:
                yield _collected(*waiting.popleft())
        while waiting:
            yield _collected(*waiting.popleft())


_held_renderer: ChunkRenderer | None = None


def _hold_renderer(render: ChunkRenderer) -> None:
    global _held_renderer
    _held_renderer = render


def _render_held(smiles: list[str], start: int) -> list[str] | list[bytes]:
    assert _held_renderer is not None, "the pool's initializer holds the renderer"
    return _held_renderer(smiles, start)


def _collected(pieces: list[AsyncResult], size: int) -> tuple[list[str] | list[bytes], int]:
    return [part for piece in pieces for part in piece.get()], size


def _rows(
    mols: Sequence[Chem.Mol | None],
    smiles: Sequence[str],
    novel: Sequence[bool] | np.ndarray | None,
    start: int = 0,
) -> list[dict[str, str]]:
    """Table rows; ids count on from ``start`` (the molecules already written)."""
    values = mol_properties(mols, list(STANDARD_PROPERTIES))
    rows = []
    for index, text in enumerate(smiles):
        row = {
            "smiles": text,
            "id": str(start + index + 1),
            "valid": _flag(mols[index] is not None),
            "novel": "" if novel is None else _flag(novel[index]),
        }
        row.update(zip(STANDARD_PROPERTIES, map(_number, values[index]), strict=True))
        rows.append(row)
    return rows


def _flag(value: bool | np.bool_) -> str:
    return "true" if value else "false"


def _number(value: float) -> str:
    if math.isnan(value):
        return ""
    return str(int(value)) if value.is_integer() else f"{value:.3f}"


def _sdf_records(mols: Sequence[Chem.Mol | None], rows: Sequence[dict[str, str]]) -> list[bytes]:
    records = []
    for mol, row in zip(mols, rows, strict=True):
        if mol is None:
            continue  # an invalid string has no structure to write; the id gap shows it
        rdDepictor.Compute2DCoords(mol)
        mol.SetProp("_Name", f"molecule {row['id']}")
        for name, value in row.items():
            if name not in ("id", "valid") and value:
                mol.SetProp(name, value)
        records.append(mol.ToBinary(WHOLE_MOLECULE))
    return records


def _write_grid(smiles: Sequence[str], path: Path) -> None:
    if not smiles:
        raise UserError(f"no molecules to draw in {path.name}")
    shown = smiles[:GRID_LIMIT]
    legends = [
        str(index + 1) if parse(text) is not None else f"{index + 1} (invalid)"
        for index, text in enumerate(shown)
    ]
    with atomic_output(path) as temporary:
        Path(temporary).write_bytes(grid_png(shown, legends))


def grid_png(smiles: Sequence[str], legends: Sequence[str], per_row: int = GRID_PER_ROW) -> bytes:
    """RDKit drawings of ``smiles`` in a grid, each over its legend (lines split at newlines)."""
    image = Draw.MolsToGridImage(
        [parse(text) for text in smiles],
        molsPerRow=per_row,
        subImgSize=GRID_CELL,
        legends=list(legends),
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
