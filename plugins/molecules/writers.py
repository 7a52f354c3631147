"""Write molecules to the files chemists use: .csv and .smi tables, .sdf, a .png grid, .txt.

Rows are numbered from 1 (the ``id`` column); the same number names the molecule in the SDF and
labels it in the PNG grid, so one can be found in the others.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import Draw, rdDepictor

from polyvae.errors import UserError
from polyvae.files import atomic_output
from polyvae.plugins.molecules.chemistry import STANDARD_PROPERTIES, mol_properties, parse

COLUMNS = ("smiles", "id", "valid", "novel", *STANDARD_PROPERTIES)
GRID_LIMIT = 100  # a bigger grid is too large an image to look at
GRID_PER_ROW = 5
GRID_CELL = (300, 300)


def write(smiles: Sequence[str], path: Path, novel: Sequence[bool] | None = None) -> None:
    """Write ``smiles`` to ``path``, the format chosen by its suffix. ``novel`` flags molecules
    absent from the training data; without it the ``novel`` column is left empty.

    - ``.csv``: a table of the :data:`COLUMNS`; ``.smi``: the same table, tab-separated, which
      RDKit reads with ``SmilesMolSupplier(path, delimiter="\\t", titleLine=True)``.
    - ``.sdf``: the valid molecules with 2D coordinates, their properties as SD fields.
    - ``.png``: a grid of the first 100 molecules.
    - ``.txt``: one SMILES per line.
    """
    flags = None if novel is None else list(novel)
    write_stream([list(smiles)], path, None if flags is None else lambda chunk: flags)


def write_stream(
    chunks: Iterable[Sequence[str]],
    path: Path,
    novel: Callable[[Sequence[str]], Sequence[bool]] | None = None,
) -> int:
    """:func:`write` for molecules that arrive in chunks, one chunk in memory at a time: the
    rows of ``.csv``, ``.smi``, ``.txt`` and ``.sdf`` files are written as the chunks come (to a
    temporary file, renamed at the end); a ``.png`` grid keeps the first 100. ``novel`` flags
    each chunk's novel molecules. Returns the number of molecules written."""
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
    with atomic_output(path) as temporary:
        if suffix == ".sdf":
            writer = Chem.SDWriter(str(temporary))
            for chunk in chunks:
                _sdf_records(writer, chunk, None if novel is None else novel(chunk), count)
                count += len(chunk)
            writer.close()
            return count
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            if suffix == ".txt":
                for chunk in chunks:
                    handle.writelines(f"{text}\n" for text in chunk)
                    count += len(chunk)
                return count
            delimiter = "," if suffix == ".csv" else "\t"
            csv.writer(handle, delimiter=delimiter, lineterminator="\n").writerow(COLUMNS)
            return _write_rows(chunks, handle, novel, delimiter)
    return count


def _write_rows(
    chunks: Iterable[Sequence[str]],
    handle: io.TextIOBase,
    novel: Callable[[Sequence[str]], Sequence[bool]] | None,
    delimiter: str,
) -> int:
    """Table rows of every chunk, in order; the number of molecules."""
    count = 0
    for chunk in chunks:
        chunk = list(chunk)
        handle.write(_table_text(chunk, None if novel is None else novel(chunk), count, delimiter))
        count += len(chunk)
    return count


def _table_text(smiles: list[str], novel: Sequence[bool] | None, start: int, delimiter: str) -> str:
    buffer = io.StringIO()
    table = csv.DictWriter(buffer, COLUMNS, delimiter=delimiter, lineterminator="\n")
    table.writerows(_rows([parse(text) for text in smiles], smiles, novel, start))
    return buffer.getvalue()


def _rows(
    mols: Sequence[Chem.Mol | None],
    smiles: Sequence[str],
    novel: Sequence[bool] | None,
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


def _sdf_records(
    writer: Chem.SDWriter, smiles: Sequence[str], novel: Sequence[bool] | None, start: int
) -> None:
    mols = [parse(text) for text in smiles]
    for mol, row in zip(mols, _rows(mols, smiles, novel, start), strict=True):
        if mol is None:
            continue  # an invalid string has no structure to write; the id gap shows it
        rdDepictor.Compute2DCoords(mol)
        mol.SetProp("_Name", f"molecule {row['id']}")
        for name, value in row.items():
            if name not in ("id", "valid") and value:
                mol.SetProp(name, value)
        writer.write(mol)


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
