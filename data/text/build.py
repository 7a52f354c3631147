"""Rebuild the bundled text corpus from WordNet 3.0's example sentences.

WordNet glosses end with usage examples in double quotes ("she choked with emotion ..."); this
script collects them from the installed database files (Debian package ``wordnet-base``:
``/usr/share/wordnet/data.{noun,verb,adj,adv}``), cleans and de-duplicates them, shuffles them
with a fixed seed and writes ``train.txt.gz``, ``valid.txt.gz`` and ``test.txt.gz`` (one sentence a
line, UTF-8, NFC) beside this file, plus ``LICENSE.wordnet``, the licence that heads every WordNet
database file. The output is byte-identical from run to run (gzip headers carry no time stamp).

``--definitions FILE`` also writes a larger training file: the training examples and every
gloss's definition (the text before the examples, "a domesticated carnivorous mammal ..."), less
any text in the validation or test split, shuffled together. The splits stay the examples, so
models trained on either file are measured on the same sentences.

    apt-get install wordnet-base
    python data/text/build.py            # --help for the options
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import unicodedata
from pathlib import Path

from polyvae.files import atomic_write_bytes, atomic_write_text

PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
EXAMPLE = re.compile(r'"([^"]+)"')
# The licence lines that open each data file: "  1 This software ...", numbered, two spaces wide.
LICENCE_LINE = re.compile(r"^\s+\d+ ?(.*?)\s*$")
HERE = Path(__file__).resolve().parent


def licence(data_file: Path) -> str:
    lines = []
    with open(data_file, encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith(" "):  # the first synset line ends the header
                break
            lines.append(LICENCE_LINE.match(line).group(1))
    return "\n".join(lines).strip() + "\n"


def examples(data_file: Path) -> list[str]:
    """The quoted examples of every gloss in one data file, in file order."""
    found = []
    with open(data_file, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(" ") or "|" not in line:
                continue
            gloss = line.split("|", 1)[1]
            found.extend(EXAMPLE.findall(gloss))
    return found


def definitions(data_file: Path) -> list[str]:
    """The definition of every gloss in one data file (up to the first ';' once the quoted
    examples are taken out), in file order."""
    found = []
    with open(data_file, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(" ") or "|" not in line:
                continue
            gloss = EXAMPLE.sub("", line.split("|", 1)[1])
            found.append(gloss.split(";", 1)[0])
    return found


def clean(sentence: str, min_words: int) -> str | None:
    """NFC, single spaces, no dangling punctuation; None for fragments too short to be a text."""
    sentence = " ".join(unicodedata.normalize("NFC", sentence).split()).strip(" ;,")
    if len(sentence.split()) < min_words or not any(char.isalpha() for char in sentence):
        return None
    return sentence


def write_lines(path: Path, lines: list[str]) -> None:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    # mtime=0 and no file name in the header: the same sentences give the same bytes.
    atomic_write_bytes(path, gzip.compress(data, compresslevel=9, mtime=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--wordnet",
        type=Path,
        default=Path("/usr/share/wordnet"),
        help="folder of WordNet 3.0's data.noun, data.verb, data.adj, data.adv",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle before splitting")
    parser.add_argument("--valid", type=float, default=0.05, help="share for validation")
    parser.add_argument("--test", type=float, default=0.05, help="share for the test set")
    parser.add_argument("--min-words", type=int, default=3, help="drop shorter examples")
    parser.add_argument(
        "--definitions",
        type=Path,
        help="also write this training file: the training examples and the glosses' definitions",
    )
    args = parser.parse_args()

    files = [args.wordnet / f"data.{pos}" for pos in PARTS_OF_SPEECH]
    missing = [str(file) for file in files if not file.is_file()]
    if missing:
        parser.error(f"missing {', '.join(missing)}: install the Debian package wordnet-base")

    found = [sentence for file in files for sentence in examples(file)]
    kept = (clean(sentence, args.min_words) for sentence in found)
    # Sorted before shuffling, so the split depends on the seed alone, not on file order.
    unique = sorted({sentence for sentence in kept if sentence})
    random.Random(args.seed).shuffle(unique)
    n_valid, n_test = round(args.valid * len(unique)), round(args.test * len(unique))
    splits = {
        "valid": unique[:n_valid],
        "test": unique[n_valid : n_valid + n_test],
        "train": unique[n_valid + n_test :],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, lines in splits.items():
        write_lines(args.out / f"{name}.txt.gz", lines)
    atomic_write_text(args.out / "LICENSE.wordnet", licence(files[0]))
    counts = ", ".join(f"{name} {len(lines):,}" for name, lines in splits.items())
    print(f"{len(found):,} examples, {len(unique):,} after cleaning and de-duplication: {counts}")
    if args.definitions:
        kept = (clean(text, args.min_words) for file in files for text in definitions(file))
        held_out = set(splits["valid"]) | set(splits["test"])
        added = sorted({text for text in kept if text} - held_out - set(splits["train"]))
        random.Random(args.seed).shuffle(added)
        joined = splits["train"] + added
        random.Random(args.seed + 1).shuffle(joined)
        write_lines(args.definitions, joined)
        print(f"{args.definitions}: {len(joined):,} texts ({len(added):,} definitions added)")


if __name__ == "__main__":
    main()
