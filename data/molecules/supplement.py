"""Build a fine-tuning mix of MOSES and small drug-like molecules for the molecules model.

MOSES keeps molecules of 250-350 Da, so a model trained on it alone never learns to stop a
SMILES early: paracetamol (151 Da) and aspirin (180 Da) came back with a halogen or an aryl ester
added. The supplement is the first 5,000 compounds of the NCI open database as RDKit ships them
(rdkit/Data/NCI/first_5K.smi, in the RDKit wheel; NCI structures are public domain), kept when
they are one neutral molecule of MOSES's atoms (C, N, O, S, F, Cl, Br) with no ring over 8 atoms.
Paracetamol and aspirin are left out, so that reconstructing them tests generalisation rather
than memory.

    python data/molecules/supplement.py MIX [--repeats 4]

writes the fine-tuning mix to MIX (.gz: gzipped): a seeded random 200,000 of the MOSES training set
(--moses, by default the moses_train.smi.gz build.py writes here) and --repeats copies of the
supplement (canonical SMILES), shuffled with the same seed; byte-for-byte reproducible for a
given RDKit version. With the default 4 copies (7.3% of the mix) it is moses_nci_mix.smi.gz, the
last training data of the bundled model; docs/molecules.md ("Small drugs") has what fine-tuning
on each share measured.
"""

from __future__ import annotations

import argparse
import gzip
import random
from pathlib import Path

from rdkit import Chem, RDConfig, RDLogger

HERE = Path(__file__).parent
MOSES_ATOMS = {"C", "N", "O", "S", "F", "Cl", "Br"}
LARGEST_RING = 8
# The reconstruction checks of the bundled model (benchmarks/molecules_default.py).
HELD_OUT = ["CC(=O)Nc1ccc(O)cc1", "CC(=O)Oc1ccccc1C(=O)O"]
MOSES_MOLECULES = 200_000
REPEATS = 4
SEED = 1


def canonical(smiles: str) -> str | None:
    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None or len(Chem.GetMolFrags(molecule)) > 1:
        return None
    if any(a.GetSymbol() not in MOSES_ATOMS or a.GetFormalCharge() for a in molecule.GetAtoms()):
        return None
    rings = molecule.GetRingInfo().AtomRings()
    if rings and max(len(ring) for ring in rings) > LARGEST_RING:
        return None
    return Chem.MolToSmiles(molecule)


def supplement(source: Path) -> list[str]:
    held_out = {Chem.MolToSmiles(Chem.MolFromSmiles(smiles)) for smiles in HELD_OUT}
    kept = {canonical(line.split()[0]) for line in source.read_text().splitlines() if line}
    return sorted(kept - held_out - {None})


def write_smiles(path: Path, smiles: list[str]) -> None:
    text = ("\n".join(smiles) + "\n").encode()
    # mtime=0 keeps the gzip header, and so the file, identical from one build to the next.
    path.write_bytes(gzip.compress(text, mtime=0) if path.suffix == ".gz" else text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mix", type=Path, help="where to write the mix")
    parser.add_argument(
        "--source", type=Path, default=Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"
    )
    parser.add_argument("--moses", type=Path, default=HERE / "moses_train.smi.gz")
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help="copies of the supplement in the mix"
    )
    args = parser.parse_args()
    RDLogger.DisableLog("rdApp.*")

    molecules = supplement(args.source)
    with gzip.open(args.moses, "rt") as lines:
        moses = [line.strip() for line in lines if line.strip()]
    rng = random.Random(SEED)
    mix = rng.sample(moses, MOSES_MOLECULES) + molecules * args.repeats
    rng.shuffle(mix)
    write_smiles(args.mix, mix)
    small = f"{args.repeats} x {len(molecules):,} small ones"
    print(f"{args.mix}: {MOSES_MOLECULES:,} MOSES molecules and {small}")


if __name__ == "__main__":
    main()
