"""Bad input through the real command line, per domain: each case ends either in one clear line
(exit status 2, "Error: ...", no traceback) or in a run whose read report counts and names every
skipped record; never a crash and never a silent loss."""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image as PILImage

import polyvae
from polyvae.cli import build_cli
from polyvae.registry import reset_registry

torch.set_num_threads(1)

TINY = {
    "text": {"embedding_dim": 8, "encoder_hidden": 8, "decoder_hidden": 8, "vocab_size": 300},
    "molecules": {"embedding_dim": 8, "encoder_hidden": 8, "decoder_hidden": 8},
    "images": {"width": 4, "depth": 1, "size": 8},
}
ENGINE = {"latent_dim": 2, "batch_size": 4, "epochs": 1, "max_steps": 1, "threads": 1}
ENGINE |= {"device": "cpu"}
TEXTS = ["the cat sat on the mat", "a dog barked at the mailman", "he ran home", "she sang"]
SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "CC(C)O", "c1ccncc1"]
HUGE = 12_000  # characters: over the readers' 10,000
NOT_UTF8 = b"caf\xe9 au lait\n"  # Latin-1
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x08\xff\xfe\x00\x01"
RANDOM_BYTES = np.random.default_rng(0).bytes(4096)  # its first line is not UTF-8


def invoke(*args: object):
    reset_registry(None)  # the installed plugins, as a user has them
    return CliRunner().invoke(build_cli(), [str(arg) for arg in args])


def assert_one_line_error(result, pattern: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def train(domain: str, data: Path, out: Path, *settings: str):
    config = TINY[domain] | ENGINE
    args = ["train", domain, "--data", data, "--out", out, "--quiet"]
    args += [f"--set={key}={value}" for key, value in config.items()]
    return invoke(*args, *[f"--set={setting}" for setting in settings])


def lines_file(path: Path, lines: list[str], raw: bytes = b"") -> Path:
    path.write_bytes("".join(line + "\n" for line in lines).encode() + raw)
    return path


# --- the cases -----------------------------------------------------------------------------------
# Each builds its input under a folder and returns (path, settings); the expectation is either
# ("error", pattern of the one line) or ("skip", how many records the report names, reason).

Case = Callable[[Path], tuple[Path, list[str]]]


def text_case(name: str, lines: list[str], raw: bytes = b"", *settings: str) -> Case:
    return lambda folder: (lines_file(folder / name, lines, raw), list(settings))


def image_folder(folder: Path, extra: dict[str, Callable[[Path], None]]) -> Path:
    """Four good 8x8 RGB images plus ``extra`` files, made by their functions."""
    root = folder / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        PILImage.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
            root / f"good{index}.png"
        )
    for name, make in extra.items():
        make(root / name)
    return root


def truncated_png(path: Path) -> None:
    good = path.with_name("good0.png").read_bytes()
    path.write_bytes(good[: len(good) // 2])


def picture(mode: str, size=(8, 8)) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        rgb = PILImage.fromarray(np.full((size[1], size[0], 3), 120, dtype=np.uint8))
        rgb.convert(mode).save(path)

    return make


def sixteen_bit(path: Path) -> None:
    ramp = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)
    PILImage.frombytes("I;16B", (8, 8), ramp.astype(">u2").tobytes()).save(path)


def broken_folder(folder: Path) -> Path:
    root = folder / "broken"
    root.mkdir()
    (root / "a.png").write_bytes(b"")
    (root / "b.png").write_bytes(b"\x89PNG broken")
    return root


def array_announcing(path: Path, shape: tuple[int, ...]) -> Path:
    """A 100-byte .npy file whose header claims ``shape``: numpy would allocate all of it."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 4, 4), dtype=np.uint8))
    header = buffer.getvalue().replace(b"(2, 4, 4)", repr(shape).encode())
    path.write_bytes(header[: header.index(b"\n") + 1] + bytes(32))
    return path


def archive_announcing(path: Path, shape: tuple[int, ...]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", array_announcing(path.with_suffix(".npy"), shape).read_bytes())
    return path


def idx_file(path: Path, dims: tuple[int, ...]) -> Path:
    path.write_bytes(bytes([0, 0, 8, len(dims)]) + b"".join(n.to_bytes(4, "big") for n in dims))
    return path


def make_dir(folder: Path) -> tuple[Path, list[str]]:
    (folder / "empty").mkdir()
    return folder / "empty", []


CASES = {
    # texts
    "text-empty-and-blank-lines": (
        "text",
        text_case("t.txt", ["", "   ", *TEXTS, "\t"]),
        ("skip", 0, None),
    ),
    "text-huge-line": (
        "text",
        text_case("t.txt", [*TEXTS, "x" * HUGE, "y " * HUGE]),
        ("skip", 2, r"(characters, more than the 10,000|tokens, more than max_length)"),
    ),
    "text-huge-csv-field": (
        "text",
        text_case("t.csv", ["text", *TEXTS, "z" * 200_000]),
        ("skip", 1, r"200,000 characters, more than the 10,000 a text may have"),
    ),
    "text-nul-bytes-line": (
        "text",
        text_case("t.txt", TEXTS, b"ab\x00\x00cd\n"),
        ("skip", 1, "holds NUL bytes"),
    ),
    "text-invalid-jsonl-records": (
        "text",
        text_case("t.jsonl", [json.dumps({"text": t}) for t in TEXTS] + ["{oops", "[1]"]),
        ("skip", 2, r"not valid JSON|no text field"),
    ),
    "text-non-utf8-line": (
        "text",
        text_case("t.txt", TEXTS, NOT_UTF8),
        ("skip", 1, r"not UTF-8 text \(byte 0x"),
    ),
    "text-binary-file": (
        "text",
        text_case("t.txt", [], PNG_BYTES),
        ("error", r"no usable texts .* not UTF-8 text \(byte 0x89 at character 1\)"),
    ),
    "text-zeros-file": (
        "text",
        text_case("t.txt", [], bytes(4096)),
        ("error", r"no usable texts .* holds NUL bytes"),
    ),
    "text-random-bytes-csv": (
        "text",
        text_case("t.csv", [], RANDOM_BYTES),
        ("error", r"t\.csv cannot be read as CSV: its header row is not UTF-8 text \(byte 0x"),
    ),
    "text-random-bytes-jsonl": (
        "text",
        text_case("t.jsonl", [], RANDOM_BYTES),
        ("error", r"no usable texts .* not UTF-8 text \(byte 0x"),
    ),
    "text-gzip-not-gzip": ("text", text_case("t.txt.gz", TEXTS), ("error", "cannot read")),
    "text-empty-file": ("text", text_case("t.txt", []), ("error", "no texts in")),
    "text-empty-csv": ("text", text_case("t.csv", ["text"]), ("error", "no texts in")),
    "text-empty-folder": ("text", make_dir, ("error", r"no \.txt, \.csv or \.jsonl files")),
    "text-csv-without-the-column": (
        "text",
        text_case("t.csv", ["title,body", *[f"{t},x" for t in TEXTS]], b"", "column=text"),
        ("error", r"has no column 'text' \(columns: title, body\); choose one with --set column"),
    ),
    # molecules
    "molecules-invalid-lines": (
        "molecules",
        text_case("m.smi", [*SMILES, "C1CC", "not a molecule", "C(C)(C)(C)(C)C", "[Xx]"]),
        ("skip", 4, "invalid SMILES"),
    ),
    "molecules-huge-line": (
        "molecules",
        text_case("m.smi", [*SMILES, "C" * 20_000]),
        ("skip", 1, r"20,000 characters, more than the 10,000 a SMILES may have"),
    ),
    "molecules-huge-csv-field": (
        "molecules",
        text_case("m.csv", ["smiles", *SMILES, "C" * 200_000]),
        ("skip", 1, r"200,000 characters"),
    ),
    "molecules-non-utf8-line": (
        "molecules",
        text_case("m.smi", SMILES, NOT_UTF8),
        ("skip", 1, r"not UTF-8 text \(byte 0x"),
    ),
    "molecules-binary-file": (
        "molecules",
        text_case("m.smi", [], PNG_BYTES),
        ("error", r"no usable molecules .* not UTF-8 text \(byte 0x89 at character 1\)"),
    ),
    "molecules-one-molecule": (
        "molecules",
        text_case("m.smi", ["CCO", "C1CC"]),
        ("error", r"m\.smi: need at least 2 usable items to train, found 1"),
    ),
    "molecules-random-bytes-csv": (
        "molecules",
        text_case("m.csv", [], RANDOM_BYTES),
        ("error", r"m\.csv cannot be read as CSV: its header row is not UTF-8 text \(byte 0x"),
    ),
    "molecules-empty-file": ("molecules", text_case("m.smi", []), ("error", "no molecules in")),
    "molecules-empty-folder": ("molecules", make_dir, ("error", r"no \.smi, \.txt or \.csv")),
    "molecules-csv-without-the-column": (
        "molecules",
        text_case("m.csv", ["id,structure", *SMILES], b"", "column=mol"),
        ("error", r"has no column 'mol' .*--set column=NAME"),
    ),
    # images
    "images-truncated-zero-byte-and-fake": (
        "images",
        lambda folder: (
            image_folder(
                folder,
                {
                    "cut.png": truncated_png,
                    "zero.png": lambda path: path.write_bytes(b""),
                    "fake.jpg": lambda path: path.write_text("not an image"),
                },
            ),
            [],
        ),
        ("skip", 3, r"unreadable image: image file is truncated|empty file|not a readable image"),
    ),
    "images-modes-and-mixed-sizes": (
        "images",
        lambda folder: (
            image_folder(
                folder,
                {
                    "cmyk.jpg": picture("CMYK"),
                    "palette.png": picture("P"),
                    "grey-alpha.png": picture("LA"),
                    "bilevel.png": picture("1"),
                    "sixteen.tif": sixteen_bit,
                    "wide.png": picture("RGB", size=(20, 12)),
                },
            ),
            [],
        ),
        ("skip", 0, None),
    ),
    "images-only-broken-files": (
        "images",
        lambda folder: (broken_folder(folder), []),
        ("error", r"no usable images .* all 2 were skipped"),
    ),
    "images-zero-byte-file": (
        "images",
        text_case("x.png", []),
        ("error", r"no usable images .*empty file"),
    ),
    "images-zero-byte-array": ("images", text_case("x.npy", []), ("error", "cannot read")),
    "images-array-announcing-terabytes": (
        "images",
        lambda folder: (array_announcing(folder / "x.npy", (10**6, 10**3, 10**3)), []),
        ("error", r"header announces 1,000,000,000,000 bytes .* more than the file holds"),
    ),
    "images-archive-announcing-terabytes": (
        "images",
        lambda folder: (archive_announcing(folder / "x.npz", (10**6, 10**3, 10**3)), []),
        ("error", r"header announces 1,000,000,000,000 bytes .* more than the file holds"),
    ),
    "images-idx-of-empty-records": (
        "images",
        lambda folder: (idx_file(folder / "x-images-idx3-ubyte", (4_000_000_000, 0, 28)), []),
        ("error", r"IDX records of shape \(0, 28\) hold no values"),
    ),
    "images-idx-announcing-billions": (
        "images",
        lambda folder: (idx_file(folder / "x-images-idx3-ubyte", (4_000_000_000, 28, 28)), []),
        ("error", r"header announces 4,000,000,000 images but the file holds 0; is the header"),
    ),
    "images-empty-folder": ("images", make_dir, ("error", "no images in")),
    "images-not-an-image-file": (
        "images",
        text_case("x.txt", TEXTS),
        ("error", "images are read from"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_training_input_is_an_error_or_a_counted_skip(name, tmp_path):
    domain, build, (outcome, *expected) = CASES[name]
    data, settings = build(tmp_path)
    out = tmp_path / "run"
    result = train(domain, data, out, *settings)
    if outcome == "error":
        assert_one_line_error(result, expected[0])
        assert not (out / "model.safetensors").exists()
        return
    count, reason = expected
    assert result.exit_code == 0, result.output
    read = json.loads((out / "run.json").read_text())["data"]["read"]
    assert read["skipped"] == count
    report = out / "read_report.tsv"
    if count:
        rows = [line.split("\t") for line in report.read_text().splitlines()]
        assert len(rows) == count
        for location, why in rows:
            assert location.startswith(str(data)) and re.search(reason, why), (location, why)
    else:
        assert not report.exists()
    if name == "text-empty-and-blank-lines":
        assert read["kept"] == len(TEXTS) and "3 empty texts dropped" in read["notes"]
    if name == "images-modes-and-mixed-sizes":
        assert read["kept"] == 10 and "1 images cropped and resized to 8x8" in read["notes"]


def test_a_sixteen_bit_image_is_scaled_not_clipped(tmp_path):
    from polyvae.plugins.images.reader import read_image_file

    sixteen_bit(tmp_path / "ramp.tif")
    image = read_image_file(tmp_path / "ramp.tif")
    assert image.channels == 1
    assert image.pixels.ravel().tolist()[:4] == [0, 4, 8, 12]  # 1000/65535 of 255 per step


def test_a_gzip_cut_short_is_one_line(tmp_path):
    whole = gzip.compress("".join(line + "\n" for line in TEXTS * 50).encode())
    (tmp_path / "t.txt.gz").write_bytes(whole[: len(whole) // 2])
    result = train("text", tmp_path / "t.txt.gz", tmp_path / "run")
    assert_one_line_error(result, "cannot read")


# --- a trained molecules run: unknown tokens and conditions outside the trained range -----------


@pytest.fixture(scope="module")
def molecules_run(tmp_path_factory) -> Path:
    from polyvae.plugins.molecules.metrics import bundled_smiles

    reset_registry(None)
    folder = tmp_path_factory.mktemp("molecules")
    data = folder / "train.smi"
    data.write_text("\n".join(bundled_smiles("train")[:200]) + "\n")
    config = TINY["molecules"] | ENGINE | {"max_steps": 2, "representation": "smiles"}
    config |= {"condition": ["qed"]}
    polyvae.train("molecules", data=data, config=config, out=folder / "run", progress=False)
    return folder / "run"


OUTSIDE_VOCABULARY = ["[Te]", "C[Se]C", "[Cu+2]", "CC[N+](C)(C)C", "C[Si](C)(C)C"]


@pytest.mark.parametrize("command", ["encode", "score"])
def test_molecules_outside_the_vocabulary_are_skipped_and_named(molecules_run, tmp_path, command):
    data = lines_file(tmp_path / "m.smi", ["CCO", *OUTSIDE_VOCABULARY])
    out = tmp_path / ("z.npy" if command == "encode" else "scores.csv")
    result = invoke(command, molecules_run, "--data", data, "-o", out)
    # The one encodable molecule is handled; each other is named with its token, once.
    assert result.exit_code == 0, result.output
    assert "skipped 5 items the model cannot encode" in result.stderr
    assert "item 2 '[Te]' has the token '[Te]', which is not in" in result.stderr
    assert "Traceback" not in result.output
    assert out.exists()


@pytest.mark.parametrize("item", OUTSIDE_VOCABULARY[:3])
def test_reconstructing_a_molecule_outside_the_vocabulary_skips_it(molecules_run, item):
    result = invoke("reconstruct", molecules_run, "CCO", item)
    assert result.exit_code == 0, result.output
    assert "is not in the vocabulary learned from the training data" in result.stderr
    assert "Traceback" not in result.output


def test_a_file_of_one_molecule_is_enough_to_reconstruct(molecules_run, tmp_path):
    # Only training needs two items (a training and a validation split).
    data = lines_file(tmp_path / "one.smi", ["CC(=O)Nc1ccc(O)cc1"])
    result = invoke("reconstruct", molecules_run, "--data", data)
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert line.split("\t")[0] == "CC(=O)Nc1ccc(O)cc1"


def test_encoding_invalid_and_huge_smiles_is_a_counted_skip(molecules_run, tmp_path):
    data = lines_file(tmp_path / "m.smi", ["CCO", "C1CC", "C" * 20_000, "CCN"])
    result = invoke("encode", molecules_run, "--data", data, "-o", tmp_path / "z.npy")
    assert result.exit_code == 0, result.output
    assert "read 2 items" in result.stderr and "skipped 2" in result.stderr
    assert np.load(tmp_path / "z.npy").shape[0] == 2


@pytest.mark.parametrize("condition", ["qed=50", "qed=-3", "qed=nan"])
def test_sampling_a_condition_outside_the_trained_range_is_one_line(molecules_run, condition):
    result = invoke("sample", molecules_run, "-n", 2, "--condition", condition)
    assert_one_line_error(result, r"condition qed=\S+ is outside the trained range \[")


def test_sampling_an_unknown_condition_is_one_line(molecules_run):
    result = invoke("sample", molecules_run, "-n", 2, "--condition", "logp=1")
    assert_one_line_error(result, "unknown condition logp; this model is conditioned on qed")
