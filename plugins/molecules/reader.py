"""Read molecules from .smi, .txt or .csv files (each optionally .gz), a folder of them, or a glob.

Every molecule is canonicalised with RDKit (without its stereochemistry and isotopes, if asked).
Records that are not valid molecules, or that the caller's ``check`` rejects, are skipped and
reported with their file, line number and reason.
"""

from __future__ import annotations

import csv
import functools
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from polyvae.domain import ReadReport
from polyvae.errors import UserError
from polyvae.plugins.molecules.chemistry import canonical_smiles, diagnose
from polyvae.plugins.shared import TextFiles, parallel_map, require_usable, undecodable
from polyvae.wording import plural

FILES = TextFiles((".smi", ".txt", ".csv"), "molecules")


def read_smiles(
    source: str | Path,
    column: str = "smiles",
    check: Callable[[str], str | None] | None = None,
    stereo: bool = True,
) -> tuple[list[str], ReadReport]:
    """Canonical SMILES of every valid record in ``source``. In CSV files the SMILES are taken
    from ``column``; ``check(smiles)`` (picklable: it may run in other processes) may return a
    reason to skip a valid molecule. ``stereo=False`` drops stereochemistry and isotopes (the
    report notes how many molecules had any)."""
    report = ReadReport(str(source))
    records = [record for path in FILES.files(source) for record in _records(path, column, report)]
    examine = functools.partial(_examine, check=check, stereo=stereo)
    examined = parallel_map(examine, [text for _, text in records], preload=__name__)
    items: list[str] = []
    flattened = 0
    for (location, _), (smiles, problem, flat) in zip(records, examined, strict=True):
        if problem:
            report.skip(location, problem)
        else:
            items.append(smiles)
            flattened += flat
    if flattened:
        report.notes.append(
            f"stereochemistry or isotopes dropped from {plural(flattened, 'molecule')}"
        )
    report.kept = len(items)
    require_usable(items, report, "molecules")
    return items, report


def _examine(
    text: str, check: Callable[[str], str | None] | None, stereo: bool
) -> tuple[str, str | None, bool]:
    """(canonical SMILES, None, whether stereochemistry or isotopes were dropped from it), or
    (text, why it is skipped, False)."""
    smiles = canonical_smiles(text)
    if smiles is None:
        return text, diagnose(text), False
    flat = smiles if stereo else canonical_smiles(smiles, isomeric=False)
    assert flat is not None  # a valid molecule stays valid without its stereochemistry
    return flat, check(flat) if check else None, flat != smiles


def _records(path: Path, column: str, report: ReadReport) -> Iterator[tuple[str, str]]:
    """(location, SMILES text) for every record of one file."""
    try:
        with FILES.open(path) as handle:
            if FILES.kind(path) == ".csv":
                records = _csv_records(handle, path, column, report)
            else:
                records = _line_records(handle, path, report)
            for location, text in records:
                problem = undecodable(text)
                if problem:
                    report.skip(location, problem)
                else:
                    yield location, text
    except csv.Error as error:
        raise UserError(f"{path} is not a readable CSV file: {error}") from None
    # OSError includes gzip.BadGzipFile; EOFError is a truncated archive, zlib.error a damaged one
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"cannot read {path}: {error}") from None


def _line_records(handle: IO[str], path: Path, report: ReadReport) -> Iterator[tuple[str, str]]:
    """One molecule per line: SMILES, then optionally whitespace and a name (the .smi layout)."""
    for number, line in enumerate(handle, start=1):
        fields = line.split(maxsplit=1)
        if not fields or fields[0].startswith("#"):
            continue
        # "smiles" cannot be a SMILES string (no element m), so it marks a header.
        if number == 1 and "smiles" in fields[0].lower():
            report.notes.append(f"{path}: header line skipped")
            continue
        yield f"{path}:{number}", fields[0]


def _csv_records(
    handle: IO[str], path: Path, column: str, report: ReadReport
) -> Iterator[tuple[str, str]]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        return
    # Without this check a binary file fails on its column names, which show its bytes.
    problem = undecodable(",".join(header))
    if problem:
        raise UserError(f"{path} cannot be read as CSV: its header row is {problem}")
    index = _column_index(header, column, path, report)
    for row in reader:
        if not any(field.strip() for field in row):
            continue
        location = f"{path}:{reader.line_num}"
        if index >= len(row):
            report.skip(location, f"row has {len(row)} fields, no '{header[index]}'")
        else:
            yield location, row[index].strip()


def _column_index(header: list[str], column: str, path: Path, report: ReadReport) -> int:
    """The asked-for column, matched exactly, then ignoring case. Asked for "smiles" (the default),
    a file without one gives its first column whose name contains "smiles" (noted in the report,
    as it is a guess)."""
    names = [name.strip() for name in header]
    if column in names:
        return names.index(column)
    lowered = [name.lower() for name in names]
    if column.lower() in lowered:
        return lowered.index(column.lower())
    if column.lower() == "smiles":
        for index, name in enumerate(lowered):
            if "smiles" in name:
                report.notes.append(f"{path}: no column '{column}', used '{names[index]}'")
                return index
    raise UserError(
        f"{path} has no column '{column}' (columns: {', '.join(names)}); choose one with "
        "--set column=NAME"
    )
