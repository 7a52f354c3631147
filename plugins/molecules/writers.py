"""Write molecules to the files chemists use: .csv and .smi tables, .sdf, a .png grid, .txt.

Rows are numbered from 1 (the ``id`` column); the same number names the molecule in the SDF and
labels it in the PNG grid, so one can be found in the others.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import Draw, rdDepictor

from polyvae.errors import UserError
from polyvae.files import atomic_output, atomic_write_text
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
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".smi"):
        _write_table(smiles, path, novel, delimiter="," if suffix == ".csv" else "\t")
    elif suffix == ".sdf":
        _write_sdf(smiles, path, novel)
    elif suffix == ".png":
        _write_grid(smiles, path)
    elif suffix == ".txt":
        atomic_write_text(path, "".join(f"{text}\n" for text in smiles))
    else:
        raise UserError(
            f"molecules are written to .csv, .smi, .sdf, .png or .txt files, not '{path.name}'"
        )


def _rows(
    mols: Sequence[Chem.Mol | None], smiles: Sequence[str], novel: Sequence[bool] | None
) -> list[dict[str, str]]:
    values = mol_properties(mols, list(STANDARD_PROPERTIES))
    rows = []
    for index, text in enumerate(smiles):
        row = {
            "smiles": text,
            "id": str(index + 1),
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


def _write_table(
    smiles: Sequence[str], path: Path, novel: Sequence[bool] | None, delimiter: str
) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_rows([parse(text) for text in smiles], smiles, novel))
    atomic_write_text(path, buffer.getvalue())


def _write_sdf(smiles: Sequence[str], path: Path, novel: Sequence[bool] | None) -> None:
    with atomic_output(path) as temporary:
        writer = Chem.SDWriter(str(temporary))
        mols = [parse(text) for text in smiles]
        for mol, row in zip(mols, _rows(mols, smiles, novel), strict=True):
            if mol is None:
                continue  # an invalid string has no structure to write; the id gap shows it
            rdDepictor.Compute2DCoords(mol)
            mol.SetProp("_Name", f"molecule {row['id']}")
            for name, value in row.items():
                if name not in ("id", "valid") and value:
                    mol.SetProp(name, value)
            writer.write(mol)
        writer.close()


def _write_grid(smiles: Sequence[str], path: Path) -> None:
    if not smiles:
        raise UserError(f"no molecules to draw in {path.name}")
    shown = smiles[:GRID_LIMIT]
    mols = [parse(text) for text in shown]
    legends = [
        str(index + 1) if mol is not None else f"{index + 1} (invalid)"
        for index, mol in enumerate(mols)
    ]
    image = Draw.MolsToGridImage(
        mols, molsPerRow=GRID_PER_ROW, subImgSize=GRID_CELL, legends=legends
    )
    with atomic_output(path) as temporary:
        image.save(temporary, format="PNG")
