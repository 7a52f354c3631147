"""Property-based tests of every codec and reader: encoding then decoding gives the items back
(text BPE and word tokenizers, molecules as SMILES and SELFIES, images), and no file content
crashes a domain's reader: it returns items with a report, or raises one UserError line."""

from __future__ import annotations

import gzip
import io
import json
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from polyvae.errors import UserError
from polyvae.plugins import sequence
from polyvae.plugins.images.codec import ImageCodec
from polyvae.plugins.images.domain import ImagesDomain
from polyvae.plugins.images.reader import Image
from polyvae.plugins.molecules.chemistry import canonical_smiles
from polyvae.plugins.molecules.codec import MoleculeCodec, to_sequence
from polyvae.plugins.molecules.domain import MoleculesDomain
from polyvae.plugins.text.codec import TextCodec
from polyvae.plugins.text.domain import TextDomain

FAST = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# What the text reader hands the codec: NFC, stripped, one line, not empty.
PRINTABLE = st.characters(
    exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="\r\n\x85"
)
READ_TEXT = (
    st.text(PRINTABLE, min_size=1, max_size=40)
    .map(lambda text: unicodedata.normalize("NFC", text).strip())
    .filter(bool)
)
CORPUS = ["the cat sat on the mat", "a dog barked at the mailman", "he ran all the way home"]


@FAST
@given(texts=st.lists(READ_TEXT, min_size=1, max_size=6), kind=st.sampled_from(["bpe", "word"]))
def test_text_codec_round_trips_the_texts_it_was_fitted_on(texts, kind):
    codec = TextCodec.fit(texts, kind=kind, vocab_size=100_000)
    assert codec.decode(codec.encode(texts)) == texts


@FAST
@given(texts=st.lists(READ_TEXT, min_size=1, max_size=6))
def test_byte_level_bpe_round_trips_any_text_even_unseen(texts):
    codec = TextCodec.fit(CORPUS, kind="bpe", vocab_size=300)
    assert codec.decode(codec.encode(texts)) == texts


# Pieces that join into a valid molecule in any order: chains, branches, rings, aromatics,
# charges, stereo centres, ring-closure numbers above 9.
FRAGMENTS = [
    "C",
    "N",
    "O",
    "S",
    "C(C)",
    "C(=O)",
    "c1ccccc1",
    "C1CC1",
    "[NH2+]",
    "[C@@H](F)",
    "c1ccncc1",
    "C%10CC%10",
]
MOLECULES = (
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=10)
    .map("".join)
    .map(canonical_smiles)
    .filter(lambda smiles: smiles is not None)
)


@FAST
@given(
    molecules=st.lists(MOLECULES, min_size=1, max_size=6),
    representation=st.sampled_from(["smiles", "kekule", "selfies"]),
    augment=st.booleans(),
)
def test_molecule_codec_round_trips_canonical_smiles(molecules, representation, augment):
    for smiles in molecules:
        try:
            to_sequence(smiles, representation)
        except ValueError:  # SELFIES cannot write it: the reader skips such molecules
            assume(False)
    codec = MoleculeCodec.fit(molecules, representation, augment=augment, seed=0)
    assert codec.decode(codec.encode(molecules)) == molecules
    assert not codec.novel(molecules).any()


@pytest.mark.parametrize(
    "fit, items",
    [
        (
            lambda items: TextCodec.fit(items, kind="word"),
            [*CORPUS, "hi", "the cat sat all the way home"],
        ),
        (
            lambda items: MoleculeCodec.fit(items, "smiles"),
            ["C", "CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1"],
        ),
    ],
)
def test_a_data_set_encoded_in_chunks_is_padded_to_its_longest_row(fit, items, monkeypatch):
    codec = fit(items)
    at_once = codec.encode(items)
    monkeypatch.setattr(sequence, "ENCODE_CHUNK", 3)  # the longest row is in the last chunk
    in_chunks = codec.encode(items)
    assert torch.equal(in_chunks["tokens"], at_once["tokens"])
    assert torch.equal(in_chunks["lengths"], at_once["lengths"])
    assert codec.decode(in_chunks) == items


@st.composite
def images(draw):
    height, width = draw(st.integers(1, 4)) * 4, draw(st.integers(1, 4)) * 4
    channels = draw(st.sampled_from([1, 3]))
    count = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (count, height, width, channels))
    return [Image(array.astype(np.uint8)) for array in pixels]


@FAST
@given(items=images())
def test_image_codec_round_trips_pixels_exactly(items, tmp_path_factory):
    codec = ImageCodec.fit(items)
    folder = tmp_path_factory.mktemp("codec")
    codec.save(folder)
    reloaded = ImageCodec.load(folder)
    decoded = reloaded.decode(reloaded.encode(items))
    assert [image.pixels.tolist() for image in decoded] == [item.pixels.tolist() for item in items]


# --- no file content crashes a reader ------------------------------------------------------------


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 4, 4), dtype=np.uint8))
    return buffer.getvalue()


def npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((2, 4, 4), dtype=np.uint8), y=np.array([1, 2]))
    return buffer.getvalue()


def idx_bytes() -> bytes:
    return bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (2, 4, 4)) + bytes(32)


def zip_of_text() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY garbage")
    return buffer.getvalue()


# (domain, file name, a valid file of that kind: the arbitrary content is often a cut or damaged
# copy of it, which reaches deeper into the parser than random bytes).
READERS = [
    ("text", "data.txt", b"the cat\nsat on\nthe mat\n"),
    ("text", "data.csv", b'text,label\n"the cat",1\n"a, dog",2\n'),
    ("text", "data.jsonl", json.dumps({"text": "a cat"}).encode() + b"\n{}\n"),
    ("text", "data.txt.gz", gzip.compress(b"the cat\nthe dog\n")),
    ("molecules", "data.smi", b"CCO ethanol\nc1ccccc1\n"),
    ("molecules", "data.csv", b"id,smiles\n1,CCO\n2,CC(=O)O\n"),
    ("molecules", "data.smi.gz", gzip.compress(b"CCO\nCCN\n")),
    ("images", "image.png", png_bytes()),
    ("images", "images.npy", npy_bytes()),
    ("images", "images.npz", npz_bytes()),
    ("images", "zipped.npz", zip_of_text()),
    ("images", "train-images-idx3-ubyte", idx_bytes()),
]
DOMAINS = {"text": TextDomain(), "molecules": MoleculesDomain(), "images": ImagesDomain()}


def contents(valid: bytes):
    damaged = st.tuples(
        st.integers(0, len(valid)), st.binary(max_size=40), st.integers(0, len(valid))
    ).map(lambda cut: valid[: cut[0]] + cut[1] + valid[cut[2] :])
    return st.one_of(st.binary(max_size=300), damaged, st.just(valid[: len(valid) // 2]))


@pytest.mark.parametrize(
    "domain_name, name, valid", READERS, ids=[f"{d}-{n}" for d, n, _ in READERS]
)
def test_no_file_content_crashes_a_reader(domain_name, name, valid, tmp_path_factory):
    domain = DOMAINS[domain_name]
    config = domain.resolve_config({})

    @FAST
    @given(data=contents(valid))
    def check(data):
        path = Path(tmp_path_factory.mktemp("reader")) / name
        path.write_bytes(data)
        try:
            items, report = domain.read(path, config)
        except UserError as error:
            assert str(error) and "\n" not in str(error)
            return
        assert items and report.kept == len(items)
        assert all(location for location, _ in report.skipped)

    check()
