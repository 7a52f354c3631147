"""data/molecules/supplement.py on a miniature source: what joins the small-molecule supplement,
that the reconstruction checks' molecules never do, and how the fine-tuning mix is made."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter
from pathlib import Path

SUPPLEMENT = Path(__file__).resolve().parents[2] / "data" / "molecules" / "supplement.py"
KEPT = ["OC1=CC=CC=C1", "CC(C)NC(=O)C1=CC=CC=C1Cl"]  # phenol; written in Kekulé form
LEFT_OUT = [
    "CC(=O)NC1=CC=C(O)C=C1",  # paracetamol: checked by reconstruction
    "CC(=O)OC1=CC=CC=C1C(O)=O",  # aspirin: checked by reconstruction
    "OC1=C(Cl)C=C(C=C1[N+]([O-])=O)[N+]([O-])=O",  # charged atoms
    "CCP(=O)(CC)CC",  # phosphorus is not a MOSES atom
    "C1CCCCCCCCC1",  # a ring over 8 atoms
    "CCO.Cl",  # two molecules
    "not a molecule",
]


def lines(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode().splitlines()


def test_supplement_keeps_moses_like_molecules_and_the_mix_holds_its_copies(tmp_path):
    source = tmp_path / "first_5K.smi"
    source.write_text("".join(f"{smiles}\t{i}\n" for i, smiles in enumerate(KEPT + LEFT_OUT)))
    moses = tmp_path / "moses.smi.gz"
    moses.write_bytes(
        gzip.compress("".join(f"{'C' * (i % 9 + 1)}O\n" for i in range(250_000)).encode())
    )
    mix = tmp_path / "mix.smi.gz"
    command = [sys.executable, str(SUPPLEMENT), str(mix), "--source", str(source)]
    command += ["--moses", str(moses), "--repeats", "3"]
    subprocess.run(command, check=True, capture_output=True)

    counts = Counter(lines(mix))
    assert counts["Oc1ccccc1"] == counts["CC(C)NC(=O)c1ccccc1Cl"] == 3  # canonical SMILES
    assert sum(counts.values()) == 200_000 + 6  # and nothing else of the source
    assert set(counts) - {"Oc1ccccc1", "CC(C)NC(=O)c1ccccc1Cl"} <= {
        f"{'C' * n}O" for n in range(1, 10)
    }
    first = lines(mix)
    subprocess.run(command, check=True, capture_output=True)
    assert lines(mix) == first  # seeded: the same mix every time
