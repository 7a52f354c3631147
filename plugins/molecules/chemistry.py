"""RDKit chemistry: parsing and canonical SMILES, randomised SMILES, molecular properties, and
how many processes share per-molecule work."""

from __future__ import annotations

import difflib
import functools
import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
from rdkit import Chem, RDConfig, rdBase
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors

from polyvae.errors import UserError
from polyvae.plugins.shared import MAX_RECORD_CHARS


def default_n_jobs() -> int:
    """Processes used for per-molecule work unless told otherwise: the CPU count, at most 4."""
    return min(os.cpu_count() or 1, 4)


def parse(smiles: str) -> Chem.Mol | None:
    """The sanitised molecule, or None; RDKit's error log is silenced (see :func:`diagnose`)."""
    if len(smiles) > MAX_RECORD_CHARS:  # RDKit would overflow the C stack (a segfault)
        return None
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    # An empty string parses to a molecule without atoms; that is no molecule.
    return mol if mol is not None and mol.GetNumAtoms() else None


def canonical_smiles(smiles: str, isomeric: bool = True) -> str | None:
    """RDKit's canonical isomeric SMILES, or None when ``smiles`` is not a valid molecule.
    Explicit hydrogens are dropped (``[H]N=C`` becomes ``N=C``) where RDKit can drop them
    without changing the molecule; isotopes such as ``[2H]`` stay. ``isomeric=False`` drops
    stereochemistry and isotopes too."""
    mol = parse(smiles)
    if mol is None:
        return None
    if not isomeric:
        Chem.RemoveStereochemistry(mol)
        for atom in mol.GetAtoms():
            atom.SetIsotope(0)
        mol = Chem.RemoveHs(mol)  # a deuterium is now a plain hydrogen
    return Chem.MolToSmiles(mol)


def kekule_smiles(smiles: str) -> str:
    """``smiles`` with its aromatic rings written as alternating single and double bonds, atoms
    in the order given (so a random SMILES stays random). Raises ValueError when RDKit cannot
    parse or kekulize it."""
    mol = parse(smiles)
    if mol is None:
        raise ValueError(f"cannot be written as Kekulé SMILES: {diagnose(smiles)}")
    Chem.Kekulize(mol, clearAromaticFlags=True)
    return Chem.MolToSmiles(mol, kekuleSmiles=True, canonical=False)


def diagnose(smiles: str) -> str:
    """Why ``smiles`` is not a valid molecule, in one line (for read reports)."""
    if not smiles.strip():
        return "empty SMILES"
    if len(smiles) > MAX_RECORD_CHARS:
        return f"{len(smiles):,} characters, more than the {MAX_RECORD_CHARS:,} a SMILES may have"
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        if mol is None:
            return "invalid SMILES: syntax error"
        if not mol.GetNumAtoms():
            return "invalid SMILES: no atoms"
        problems = Chem.DetectChemistryProblems(mol)
    if problems:
        return "invalid SMILES: " + problems[0].Message()
    return "invalid SMILES"


def randomized_smiles(smiles: Sequence[str], seed: int) -> list[str]:
    """One random valid SMILES per molecule (atom order shuffled; Bjerrum 2017, Arús-Pous et al.
    2019); strings RDKit cannot parse are returned unchanged. Repeatable for a given ``seed``."""
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=len(smiles))
    randomized = []
    for text, item_seed in zip(smiles, seeds, strict=True):
        mol = parse(text)
        if mol is None:
            randomized.append(text)
        else:
            randomized.append(Chem.MolToRandomSmilesVect(mol, 1, randomSeed=int(item_seed))[0])
    return randomized


# --- properties --------------------------------------------------------------------------------


@functools.cache
def _sascorer() -> ModuleType:
    # RDKit ships the SA score as a Contrib script, not a module of the rdkit package (conda puts
    # Contrib outside it), so it is loaded from the folder RDConfig names.
    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    if not path.is_file():
        raise UserError(f"RDKit's SA score script is missing: {path}")
    spec = importlib.util.spec_from_file_location("sascorer", path)
    assert spec is not None and spec.loader is not None  # a .py file always has both
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility, from 1 (easy to make) to 10 (hard) (Ertl & Schuffenhauer 2009)."""
    return _sascorer().calculateScore(mol)


def lipinski_pass(mol: Chem.Mol) -> float:
    """1.0 when the molecule breaks at most one of Lipinski's rules of five (MW <= 500, logP <= 5,
    H-bond donors <= 5, acceptors <= 10), as Lipinski et al. (1997) state the rule; else 0.0."""
    violations = (
        (Descriptors.MolWt(mol) > 500)
        + (Crippen.MolLogP(mol) > 5)
        + (Lipinski.NumHDonors(mol) > 5)
        + (Lipinski.NumHAcceptors(mol) > 10)
    )
    return float(violations <= 1)


# The columns of written molecules, in order. H-bond counts are RDKit's standard definitions, the
# ones the rule of five above applies.
STANDARD_PROPERTIES: dict[str, Callable[[Chem.Mol], float]] = {
    "mw": Descriptors.MolWt,
    "logp": Crippen.MolLogP,
    "qed": QED.qed,
    "sa": sa_score,
    "tpsa": rdMolDescriptors.CalcTPSA,
    "hbd": Lipinski.NumHDonors,
    "hba": Lipinski.NumHAcceptors,
    "rotatable_bonds": Lipinski.NumRotatableBonds,
    "lipinski": lipinski_pass,
}
_DESCRIPTORS = dict(Descriptors.descList)


def penalized_logp(mol: Chem.Mol) -> float:
    """logP minus the SA score minus the ring excess over six atoms (the unnormalised form of
    the latent-optimisation benchmark of Gómez-Bombarelli et al. 2018 and You et al. 2018)."""
    largest_ring = max((len(ring) for ring in mol.GetRingInfo().AtomRings()), default=0)
    return Crippen.MolLogP(mol) - sa_score(mol) - max(0, largest_ring - 6)


# Objectives for latent optimisation; not written as columns.
OBJECTIVES: dict[str, Callable[[Chem.Mol], float]] = {"penalized_logp": penalized_logp}


def property_names() -> list[str]:
    """The standard properties, then every ``rdkit.Chem.Descriptors`` name (spelled as RDKit
    does: MolLogP, FractionCSP3, ...)."""
    return [
        *STANDARD_PROPERTIES,
        *OBJECTIVES,
        *(name for name in _DESCRIPTORS if name not in STANDARD_PROPERTIES),
    ]


def property_function(name: str) -> Callable[[Chem.Mol], float]:
    function = STANDARD_PROPERTIES.get(name) or OBJECTIVES.get(name) or _DESCRIPTORS.get(name)
    if function is None:
        close = difflib.get_close_matches(name, property_names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(
            f"unknown molecular property '{name}'{hint}; use {', '.join(STANDARD_PROPERTIES)} or "
            "any rdkit.Chem.Descriptors name"
        )
    return function


def properties(smiles: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """``(len(smiles), len(names))`` floats; NaN for invalid molecules or failed descriptors."""
    return mol_properties([parse(text) for text in smiles], names)


def mol_properties(mols: Sequence[Chem.Mol | None], names: Sequence[str]) -> np.ndarray:
    """As :func:`properties`, for molecules already parsed (None where invalid)."""
    functions = [property_function(name) for name in names]
    values = np.full((len(mols), len(functions)), np.nan)
    for row, mol in enumerate(mols):
        if mol is not None:
            values[row] = [_safe(function, mol) for function in functions]
    return values


def _safe(function: Callable[[Chem.Mol], float], mol: Chem.Mol) -> float:
    # Some descriptors fail on exotic molecules (e.g. charges the Gasteiger model lacks); one
    # missing value must not end a whole evaluation.
    try:
        value = float(function(mol))
    except (ValueError, RuntimeError, ZeroDivisionError, OverflowError):
        return float("nan")
    return value if np.isfinite(value) else float("nan")
