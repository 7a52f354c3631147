"""Property-based tests: the text codec round-trips any printable text as the reader gives it,
and the text and molecule readers never crash on arbitrary lines; they keep or report every
record, or fail in one line."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from polyvae.errors import UserError
from polyvae.plugins.molecules.reader import read_smiles
from polyvae.plugins.text.codec import TextCodec, normal_form
from polyvae.plugins.text.reader import CONTROL_CHARACTERS as CONTROL
from polyvae.plugins.text.reader import TextFormat, read_texts

# Printable: no control characters, no surrogates, no line breaks (one text is one line).
PRINTABLE = st.characters(
    exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="\r\n\x85"
)
TEXTS = st.lists(st.text(PRINTABLE, min_size=1, max_size=40), min_size=1, max_size=5)
LINES = st.lists(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=60),
    max_size=8,
)
FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FAST
@given(texts=TEXTS)
def test_char_codec_round_trips_printable_text(texts):
    # Texts as the reader and parse_item give them (NFC, stripped, not blank): decoding strips,
    # so a text with outer spaces comes back without them.
    texts = [normal_form(text) for text in texts if normal_form(text)]
    assume(texts)
    codec = TextCodec.fit(texts, kind="char", vocab_size=100_000)
    assert codec.decode(codec.encode(texts)) == texts


@FAST
@given(lines=LINES, max_length=st.sampled_from([0, 5]))
def test_text_reader_keeps_or_reports_every_line(tmp_path_factory, lines, max_length):
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    blank = sum(not unicodedata.normalize("NFC", line).strip() for line in lines)
    form = TextFormat(max_length=max_length)
    try:
        items, report = read_texts(path, form)
    except UserError as error:  # nothing usable: one line saying so
        assert "\n" not in str(error)
        # Nothing kept: every line blank, or some skipped (too long, or control characters:
        # binary data).
        assert blank == len(lines) or max_length or any(CONTROL.search(line) for line in lines)
        return
    assert len(items) + len(report.skipped) + blank == len(lines)
    assert report.kept == len(items)


@FAST
@given(lines=LINES)
def test_smiles_reader_keeps_or_reports_every_line(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("smiles") / "molecules.smi"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    try:
        items, report = read_smiles(path)
    except UserError as error:
        assert "\n" not in str(error)
        return
    records = [
        line.split(maxsplit=1)[0]
        for number, line in enumerate(lines, 1)
        if line.split()
        and not line.split()[0].startswith("#")
        and not (number == 1 and "smiles" in line.split()[0].lower())
    ]
    assert len(items) + len(report.skipped) == len(records)


@FAST
@given(data=st.binary(max_size=200))
@pytest.mark.parametrize("suffix", [".txt", ".smi"])
def test_readers_give_binary_files_a_one_line_error(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("binary") / f"data{suffix}"
    path.write_bytes(data)
    try:
        if suffix == ".txt":
            read_texts(path, TextFormat())
        else:
            read_smiles(path)
    except UserError as error:
        assert "\n" not in str(error)
