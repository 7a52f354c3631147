"""data/text/build.py on a miniature WordNet: the example splits, and the larger training file with
the glosses' definitions, which must never hold a validation or test text."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

BUILD = Path(__file__).resolve().parents[2] / "data" / "text" / "build.py"
HEADER = "  1 This software and database is being provided to you, the LICENSEE.\n"


def synset(offset: int, definition: str, examples: list[str]) -> str:
    quoted = "; ".join(f'"{example}"' for example in examples)
    return f"{offset:08d} 03 n 01 word 0 000 | {definition}; {quoted}\n"


def lines(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()


def test_definitions_join_the_training_examples_and_never_the_held_out_ones(tmp_path):
    wordnet = tmp_path / "wordnet"
    wordnet.mkdir()
    for pos in ("noun", "verb", "adj", "adv"):
        rows = [
            synset(
                index,
                f"a {pos} definition number {index}",
                [f"the {pos} example number {index} here"],
            )
            for index in range(10)
        ]
        # A definition that is also an example: it must not reach training if it is held out.
        rows.append(synset(99, f"the {pos} example number 3 here", []))
        (wordnet / f"data.{pos}").write_text(HEADER + "".join(rows))
    out, extra = tmp_path / "out", tmp_path / "with_definitions.txt.gz"
    command = [sys.executable, str(BUILD), "--wordnet", str(wordnet), "--out", str(out)]
    command += ["--valid", "0.1", "--test", "0.1", "--definitions", str(extra)]
    subprocess.run(command, check=True, capture_output=True)

    train, valid, test = (lines(out / f"{name}.txt.gz") for name in ("train", "valid", "test"))
    assert (len(train), len(valid), len(test)) == (32, 4, 4)
    joined = lines(extra)
    held_out = set(valid) | set(test)
    assert set(train) <= set(joined) and not held_out & set(joined)
    definitions = set(joined) - set(train)
    assert len(definitions) == 40 and all("definition number" in text for text in definitions)
    first = extra.read_bytes()
    subprocess.run(command, check=True, capture_output=True)
    assert extra.read_bytes() == first  # the same WordNet gives the same bytes
