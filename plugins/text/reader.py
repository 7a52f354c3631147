"""Read texts from .txt, .csv or .jsonl files (each optionally .gz), a folder of them, or a glob.

A .txt file holds one text per line; a .csv file (with a header row) or a .jsonl file (one JSON
object per line) holds them in a named column or field. Every text is normalised to Unicode NFC
and stripped. Empty texts are dropped and counted; texts longer than ``max_length`` tokens are
skipped (each reported with its location) or truncated (counted), as asked. Records holding NUL
bytes (binary data) or more than ``MAX_RECORD_CHARS`` characters are skipped and reported.

With a ``label_column``, each text comes back as a :class:`LabelledText`: a ``str`` that also
carries that column's value, so that everything which handles texts handles it unchanged, while
the domain's ``properties`` can turn the label into numbers for a conditional model.
"""

from __future__ import annotations

import csv
import functools
import json
import re
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tokenizers import pre_tokenizers

from polyvae.domain import ReadReport
from polyvae.errors import UserError
from polyvae.plugins.shared import MAX_RECORD_CHARS, TextFiles, require_usable, undecodable

FILES = TextFiles((".txt", ".csv", ".jsonl"), "texts")


class LabelledText(str):
    """A text with the value of its label column (``None`` where the record had none)."""

    label: str | None

    def __new__(cls, text: str, label: str | None) -> LabelledText:
        item = super().__new__(cls, text)
        item.label = label
        return item


@dataclass(frozen=True)
class TextFormat:
    """Where the texts are and how long they may be."""

    column: str = "text"  # CSV column or JSON field of the texts
    label_column: str = ""  # CSV column or JSON field of a label; "" for none
    max_length: int = 0  # most tokens per text (0: no limit)
    unit: str = "word"  # what max_length counts: "word" (words and punctuation) or "char"
    too_long: str = "skip"  # "skip" or "truncate"


def read_texts(source: str | Path, form: TextFormat) -> tuple[list[str], ReadReport]:
    report = ReadReport(str(source))
    items: list[str] = []
    empty = truncated = 0
    for path in FILES.files(source):
        for location, raw, label in _records(path, form, report):
            text = unicodedata.normalize("NFC", raw).strip()
            if not text:
                empty += 1
                continue
            problem = _problem(text)
            if problem:
                report.skip(location, problem)
                continue
            if form.max_length:
                count, cut = _length(text, form.unit, form.max_length)
                if count > form.max_length:
                    if form.too_long == "skip":
                        report.skip(
                            location, f"{count} tokens, more than max_length={form.max_length}"
                        )
                        continue
                    text, truncated = text[:cut].rstrip(), truncated + 1
            items.append(LabelledText(text, label) if form.label_column else text)
    if empty:
        report.notes.append(f"{empty:,} empty texts dropped")
    if truncated:
        report.notes.append(f"{truncated:,} texts truncated to max_length={form.max_length}")
    report.kept = len(items)
    require_usable(items, report, "texts")
    return items, report


# C0 controls other than tab and line ends: what binary data decoded as text is full of.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _problem(text: str) -> str | None:
    """Why a text is no text at all (binary data, a huge blob), or None."""
    problem = undecodable(text)
    if problem:
        return problem
    if "\x00" in text:
        return "holds NUL bytes: binary data, not text"
    if CONTROL_CHARACTERS.search(text):
        return "holds control characters: binary data, not text"
    if len(text) > MAX_RECORD_CHARS:
        return f"{len(text):,} characters, more than the {MAX_RECORD_CHARS:,} a text may have"
    return None


@functools.cache
def _word_splitter() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Whitespace()  # runs of word characters, and of punctuation


def _length(text: str, unit: str, limit: int) -> tuple[int, int]:
    """(tokens in ``text``, the character offset where its first ``limit`` tokens end)."""
    if unit == "char":
        return len(text), limit
    words = _word_splitter().pre_tokenize_str(text)
    if len(words) <= limit:
        return len(words), len(text)
    return len(words), words[limit - 1][1][1]


Record = tuple[str, str, str | None]  # (location, text, label)


def _records(path: Path, form: TextFormat, report: ReadReport) -> Iterator[Record]:
    try:
        with FILES.open(path) as handle:
            kind = FILES.kind(path)
            if kind == ".csv":
                yield from _csv_records(handle, path, form)
            elif kind == ".jsonl":
                yield from _jsonl_records(handle, path, form, report)
            else:
                for number, line in enumerate(handle, start=1):
                    yield f"{path}:{number}", line, None
    except csv.Error as error:
        raise UserError(f"{path} is not a readable CSV file: {error}") from None
    # OSError includes gzip.BadGzipFile; EOFError is a truncated archive, zlib.error a damaged one
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"cannot read {path}: {error}") from None


def _csv_records(handle: IO[str], path: Path, form: TextFormat) -> Iterator[Record]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        return
    # Without this check a binary file fails on its column names, which show its bytes.
    problem = undecodable(",".join(header))
    if problem:
        raise UserError(f"{path} cannot be read as CSV: its header row is {problem}")
    text_index = _column_index(header, form.column, path, "column")
    label_index = (
        _column_index(header, form.label_column, path, "label_column")
        if form.label_column
        else None
    )
    for row in reader:
        location = f"{path}:{reader.line_num}"
        text = row[text_index] if text_index < len(row) else ""
        label = None
        if label_index is not None and label_index < len(row):
            label = row[label_index].strip() or None
        yield location, text, label


def _jsonl_records(
    handle: IO[str], path: Path, form: TextFormat, report: ReadReport
) -> Iterator[Record]:
    for number, line in enumerate(handle, start=1):
        location = f"{path}:{number}"
        if not line.strip():
            yield location, "", None  # counted with the empty texts
            continue
        problem = undecodable(line)  # said before JSON's own complaint about the same bytes
        if problem:
            report.skip(location, problem)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            report.skip(location, f"not valid JSON: {error.msg}")
            continue
        if not isinstance(record, dict) or not isinstance(record.get(form.column), str):
            report.skip(location, f"no text field '{form.column}'")
            continue
        label = record.get(form.label_column) if form.label_column else None
        yield location, record[form.column], None if label in (None, "") else str(label)


def _column_index(header: list[str], column: str, path: Path, key: str) -> int:
    """The named column, matched exactly, then ignoring case."""
    names = [name.strip() for name in header]
    if column in names:
        return names.index(column)
    lowered = [name.lower() for name in names]
    if column.lower() in lowered:
        return lowered.index(column.lower())
    raise UserError(
        f"{path} has no column '{column}' (columns: {', '.join(names)}); choose one with "
        f"--set {key}=NAME"
    )
