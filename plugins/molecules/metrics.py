"""The MOSES metric suite over lists of SMILES strings.

Written from the definitions in Polykovskiy et al. (2020), "Molecular Sets (MOSES): A Benchmarking
Platform for Molecular Generation Models", Front. Pharmacol. 11:565644; where the paper leaves a
detail open (fingerprint size, which filters, which molecules each metric averages over) this
module does what the reference implementation (molsets 0.3.1) does, so that numbers compare.

Which molecules each metric is computed over:

- ``validity``: all generated strings (an empty string is invalid).
- ``unique@1k``, ``unique@10k``: the first k valid molecules. With fewer than k valid molecules all
  of them are used and a warning is issued, as MOSES does, so the value is never NaN.
- ``novelty``: the unique valid molecules, against the training set canonicalised with RDKit.
- every other metric: all valid molecules, duplicates included.

With no valid molecule at all, everything but ``validity`` is NaN.

``moses_metrics`` computes the whole suite against a :class:`ReferenceStats` (precomputed for the
bundled MOSES test set: :func:`load_reference_stats`). Parsing, fingerprints, fragments,
scaffolds, properties and filters run in ``n_jobs`` processes on large sets; the fingerprint
similarity matrices and ChemNet run with torch on ``device``.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.resources
import io
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

import numpy as np
import torch
from rdkit import Chem, DataStructs
from rdkit.Chem import QED, Crippen, Descriptors, rdFingerprintGenerator
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams
from rdkit.Chem.Scaffolds import MurckoScaffold
from scipy.stats import wasserstein_distance

from polyvae.errors import UserError
from polyvae.files import atomic_write_bytes
from polyvae.plugins.molecules.chemistry import canonical_smiles, default_n_jobs, parse, sa_score
from polyvae.plugins.shared import parallel_map

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    Folder: TypeAlias = str | os.PathLike | Traversable

__all__ = [
    "METRIC_NAMES",
    "PROPERTY_NAMES",
    "ReferenceStats",
    "bundled_smiles",
    "canonical_smiles",
    "chemnet_activations",
    "compute_reference_stats",
    "default_n_jobs",
    "fcd",
    "fingerprint_matrix",
    "fraction_passes_filters",
    "fraction_unique",
    "fraction_valid",
    "fragment_similarity",
    "frechet_distance",
    "internal_diversity",
    "load_reference_stats",
    "morgan_fingerprint",
    "moses_metrics",
    "novelty",
    "passes_filters",
    "property_distance",
    "scaffold_similarity",
    "snn",
    "tanimoto",
]

METRIC_NAMES = (
    "validity",
    "unique@1k",
    "unique@10k",
    "novelty",
    "FCD/Test",
    "SNN/Test",
    "Frag/Test",
    "Scaf/Test",
    "IntDiv1",
    "IntDiv2",
    "Filters",
    "logP",
    "SA",
    "QED",
    "weight",
)
PROPERTY_NAMES = ("logP", "SA", "QED", "weight")

FINGERPRINT_RADIUS = 2
FINGERPRINT_BITS = 1024
# MOSES's Filters: only these elements, no formal charges, no ring of 8 or more atoms, and no
# match of its MCF alerts or the PAINS alerts (Baell & Holloway 2010).
ALLOWED_ELEMENTS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
MAX_RING_SIZE = 7
# Bemis-Murcko scaffolds with fewer rings are not counted by Scaf (MOSES drops them too).
MIN_SCAFFOLD_RINGS = 2

DATA_PACKAGE = "polyvae.data"
DATA_FOLDER = "molecules"
MCF_FILE = "mcf.csv"
SMILES_FILES = {"train": "train.smi.gz", "test": "test.smi.gz"}

# Below this many items per process, starting processes costs more than it saves.
_MIN_ITEMS_PER_PROCESS = 500
# Rows of unpacked fingerprints per similarity block: 4096 x 1024 float32 is 16 MiB.
_SIMILARITY_BLOCK = 4096
_CHEMNET_BATCH = 256

_morgan = rdFingerprintGenerator.GetMorganGenerator(
    radius=FINGERPRINT_RADIUS, fpSize=FINGERPRINT_BITS
)


# --- helpers the rest of the plugin reuses ---------------------------------------------------


def morgan_fingerprint(molecule: str | Chem.Mol) -> DataStructs.ExplicitBitVect | None:
    """The Morgan fingerprint (radius 2, 1024 bits) MOSES uses, or None for an invalid SMILES."""
    mol = parse(molecule) if isinstance(molecule, str) else molecule
    return None if mol is None else _morgan.GetFingerprint(mol)


def tanimoto(a: DataStructs.ExplicitBitVect, b: DataStructs.ExplicitBitVect) -> float:
    """Tanimoto similarity of two fingerprints: shared bits over bits set in either."""
    return DataStructs.TanimotoSimilarity(a, b)


def analogues_by_similarity(seed: str, smiles: Iterable[str]) -> list[tuple[str, float]]:
    """The distinct valid molecules among ``smiles`` (in first-seen order for ties) with their
    Tanimoto similarity to the valid SMILES ``seed``, most similar first."""
    reference = morgan_fingerprint(seed)
    assert reference is not None, "the seed is a valid molecule"
    scored = []
    for item in dict.fromkeys(smiles):
        fingerprint = morgan_fingerprint(item)
        if fingerprint is not None:
            scored.append((item, tanimoto(reference, fingerprint)))
    return sorted(scored, key=lambda pair: -pair[1])


# --- per-molecule work (runs in worker processes) ----------------------------------------------


class _Molecule(NamedTuple):
    """What the suite needs of one valid molecule; cheap to send between processes."""

    canonical: str
    fingerprint: bytes  # FINGERPRINT_BITS bits, packed
    fragments: tuple[str, ...]
    scaffold: str | None
    properties: tuple[float, float, float, float]  # in PROPERTY_NAMES order
    passes_filters: bool | None  # None when not asked for


def _properties(mol: Chem.Mol) -> tuple[float, float, float, float]:
    return (
        Crippen.MolLogP(mol),
        sa_score(mol),
        QED.qed(mol),
        Descriptors.MolWt(mol),
    )


def _brics_fragments(mol: Chem.Mol) -> tuple[str, ...]:
    return tuple(Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split("."))


def _scaffold(mol: Chem.Mol) -> str | None:
    try:
        core = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    if core.GetRingInfo().NumRings() < MIN_SCAFFOLD_RINGS:
        return None
    return Chem.MolToSmiles(core) or None


@functools.cache
def _alerts() -> tuple[list[Chem.Mol], FilterCatalog]:
    """MOSES's MCF SMARTS (bundled) and RDKit's PAINS catalogue (A, B and C)."""
    text = (_data_dir() / MCF_FILE).read_text(encoding="utf-8")
    rows = [line.split(",", 1) for line in text.splitlines()[1:] if line.strip()]
    mcf = [Chem.MolFromSmarts(smarts.strip().strip('"')) for _, smarts in rows]
    params = FilterCatalogParams()
    params.AddCatalog(FilterCatalogParams.FilterCatalogs.PAINS)
    return mcf, FilterCatalog(params)


def passes_filters(molecule: str | Chem.Mol) -> bool:
    """Whether a molecule passes MOSES's filters (False for an invalid SMILES)."""
    mol = parse(molecule) if isinstance(molecule, str) else molecule
    if mol is None:
        return False
    if any(len(ring) > MAX_RING_SIZE for ring in mol.GetRingInfo().AtomRings()):
        return False
    atoms = mol.GetAtoms()
    if any(
        atom.GetFormalCharge() != 0 or atom.GetSymbol() not in ALLOWED_ELEMENTS for atom in atoms
    ):
        return False
    mcf, pains = _alerts()
    with_hydrogens = Chem.AddHs(mol)  # some MCF patterns name hydrogens explicitly
    if any(with_hydrogens.HasSubstructMatch(pattern) for pattern in mcf) or pains.HasMatch(mol):
        return False
    # As in MOSES: the SMILES without stereochemistry must parse back to a molecule.
    return parse(Chem.MolToSmiles(mol, isomericSmiles=False)) is not None


def _fingerprint_packed(mol: Chem.Mol) -> bytes:
    return np.packbits(_morgan.GetFingerprintAsNumPy(mol).astype(np.uint8)).tobytes()


def _describe(mol: Chem.Mol, with_filters: bool) -> _Molecule:
    return _Molecule(
        canonical=Chem.MolToSmiles(mol),
        fingerprint=_fingerprint_packed(mol),
        fragments=_brics_fragments(mol),
        scaffold=_scaffold(mol),
        properties=_properties(mol),
        passes_filters=passes_filters(mol) if with_filters else None,
    )


def _on_molecule(function: Callable[[Chem.Mol], object], smiles: str) -> object:
    mol = parse(smiles)
    return None if mol is None else function(mol)


def _map(function: Callable, items: Sequence, n_jobs: int) -> list:
    """``[function(item) for item in items]``, in up to ``n_jobs`` processes for large inputs."""
    processes = min(n_jobs, len(items) // _MIN_ITEMS_PER_PROCESS)
    chunksize = max(1, len(items) // (max(processes, 1) * 16))
    return parallel_map(function, items, __name__, processes, chunksize)


def _per_molecule(
    function: Callable[[Chem.Mol], object], smiles: Iterable[str], n_jobs: int
) -> list:
    """``function`` of each parsed SMILES, None where it is invalid."""
    return _map(functools.partial(_on_molecule, function), list(smiles), n_jobs)


def _check_n_jobs(n_jobs: int | None) -> int:
    if n_jobs is None:
        return default_n_jobs()
    if n_jobs < 1:
        raise UserError(f"n_jobs must be at least 1, not {n_jobs}")
    return n_jobs


def _packed(fingerprints: Iterable[bytes]) -> np.ndarray:
    """Packed fingerprints as one ``(n, FINGERPRINT_BITS // 8)`` uint8 array."""
    joined = b"".join(fingerprints)
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, FINGERPRINT_BITS // 8).copy()


def fingerprint_matrix(smiles: Sequence[str], n_jobs: int | None = None) -> np.ndarray:
    """Packed Morgan fingerprints of the valid molecules in ``smiles``, ``(n_valid, 128)`` uint8
    (``np.unpackbits(..., axis=1)`` gives the bits)."""
    found = _per_molecule(_fingerprint_packed, smiles, _check_n_jobs(n_jobs))
    return _packed(bits for bits in found if bits is not None)


# --- reference statistics -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReferenceStats:
    """What the suite needs of a reference set (MOSES: the test set), computed once by
    :func:`compute_reference_stats` and stored with :meth:`save` in pickle-free files."""

    fcd_mean: np.ndarray  # (512,) mean ChemNet activation
    fcd_cov: np.ndarray  # (512, 512) covariance of ChemNet activations
    fingerprints: np.ndarray  # (n, 128) uint8 packed Morgan fingerprints
    fragments: Mapping[str, int]  # BRICS fragment counts
    scaffolds: Mapping[str, int]  # Bemis-Murcko scaffold counts (two rings or more)
    properties: Mapping[str, np.ndarray]  # PROPERTY_NAMES -> one value per molecule

    def save(self, directory: str | os.PathLike, name: str = "test") -> None:
        """Write ``{name}_stats.npz`` (arrays) and ``{name}_counts.json.gz`` (counts)."""
        directory = Path(directory)
        arrays = io.BytesIO()
        np.savez_compressed(
            arrays,
            fcd_mean=self.fcd_mean,
            fcd_cov=self.fcd_cov,
            fingerprints=self.fingerprints,
            # numpy's stubs take the ** arrays for allow_pickle, a bool keyword.
            **{f"property_{key}": np.asarray(self.properties[key]) for key in PROPERTY_NAMES},  # type: ignore[arg-type]
        )
        atomic_write_bytes(directory / f"{name}_stats.npz", arrays.getvalue())
        counts = {"fragments": dict(self.fragments), "scaffolds": dict(self.scaffolds)}
        text = json.dumps(counts, sort_keys=True, separators=(",", ":")).encode()
        atomic_write_bytes(directory / f"{name}_counts.json.gz", gzip.compress(text, mtime=0))


def compute_reference_stats(
    smiles: Sequence[str], n_jobs: int | None = None, device: str = "cpu"
) -> ReferenceStats:
    """Reference statistics of a set of SMILES (invalid ones are skipped)."""
    describe = functools.partial(_describe, with_filters=False)
    molecules = [m for m in _per_molecule(describe, smiles, _check_n_jobs(n_jobs)) if m is not None]
    if len(molecules) < 2:
        raise UserError("a reference set needs at least two valid molecules")
    activations = chemnet_activations([m.canonical for m in molecules], device=device)
    values = np.array([m.properties for m in molecules])
    return ReferenceStats(
        fcd_mean=activations.mean(axis=0),
        fcd_cov=np.cov(activations, rowvar=False),
        fingerprints=_packed(m.fingerprint for m in molecules),
        fragments=Counter(fragment for m in molecules for fragment in m.fragments),
        scaffolds=Counter(m.scaffold for m in molecules if m.scaffold is not None),
        properties={key: values[:, column] for column, key in enumerate(PROPERTY_NAMES)},
    )


def _data_dir() -> Traversable:
    try:
        return importlib.resources.files(DATA_PACKAGE) / DATA_FOLDER
    except ModuleNotFoundError:
        raise UserError(
            f"polyvae's bundled data ({DATA_PACKAGE}) is not installed; reinstall polyvae"
        ) from None


def _resource(directory: Folder, filename: str) -> Traversable:
    path = (Path(directory) if isinstance(directory, (str, os.PathLike)) else directory) / filename
    if not path.is_file():
        raise UserError(f"missing MOSES data file: {path}")
    return path


def load_reference_stats(directory: Folder | None = None, name: str = "test") -> ReferenceStats:
    """The reference statistics saved in ``directory`` (default: the bundled MOSES test set)."""
    directory = _data_dir() if directory is None else directory
    counts_file = _resource(directory, f"{name}_counts.json.gz")
    counts = json.loads(gzip.decompress(counts_file.read_bytes()))
    arrays_file = _resource(directory, f"{name}_stats.npz")
    with np.load(io.BytesIO(arrays_file.read_bytes()), allow_pickle=False) as arrays:
        return ReferenceStats(
            fcd_mean=arrays["fcd_mean"],
            fcd_cov=arrays["fcd_cov"],
            fingerprints=arrays["fingerprints"],
            fragments=counts["fragments"],
            scaffolds=counts["scaffolds"],
            properties={key: arrays[f"property_{key}"] for key in PROPERTY_NAMES},
        )


def bundled_smiles(split: str, directory: Folder | None = None) -> list[str]:
    """The bundled MOSES SMILES: ``"train"`` (a 250,000-molecule sample of MOSES train, in random
    order, so any prefix is a random sample too) or ``"test"`` (the MOSES test set)."""
    if split not in SMILES_FILES:
        raise UserError(f"unknown MOSES split '{split}'; use one of {', '.join(SMILES_FILES)}")
    directory = _data_dir() if directory is None else directory
    text = gzip.decompress(_resource(directory, SMILES_FILES[split]).read_bytes()).decode()
    return text.splitlines()


# --- the metrics --------------------------------------------------------------------------------


def _is_valid(smiles: str) -> bool:
    return parse(smiles) is not None


def fraction_valid(smiles: Sequence[str], n_jobs: int | None = None) -> float:
    """Fraction of strings RDKit parses into a molecule."""
    if not smiles:
        raise UserError("no SMILES given")
    return sum(_map(_is_valid, list(smiles), _check_n_jobs(n_jobs))) / len(smiles)


def _fraction_unique_canonical(canonical: Sequence[str], k: int | None) -> float:
    if not canonical:
        return math.nan
    if k is not None:
        if len(canonical) < k:
            warnings.warn(
                f"unique@{k}: only {len(canonical)} valid molecules, so computed over all of them",
                stacklevel=3,
            )
        canonical = canonical[:k]
    return len(set(canonical)) / len(canonical)


def fraction_unique(
    smiles: Sequence[str], k: int | None = None, n_jobs: int | None = None
) -> float:
    """Fraction of distinct molecules among the first ``k`` valid ones (all valid ones when ``k``
    is None or larger than their number; see the module docstring)."""
    found = _map(canonical_smiles, list(smiles), _check_n_jobs(n_jobs))
    return _fraction_unique_canonical([c for c in found if c is not None], k)


def _canonical_set(smiles: Iterable[str], n_jobs: int) -> set[str]:
    return set(_map(canonical_smiles, list(smiles), n_jobs)) - {None}


def novelty(smiles: Sequence[str], train: Iterable[str], n_jobs: int | None = None) -> float:
    """Fraction of the unique valid molecules that are not in ``train`` (both canonicalised)."""
    n_jobs = _check_n_jobs(n_jobs)
    generated = _canonical_set(smiles, n_jobs)
    if not generated:
        return math.nan
    return len(generated - _canonical_set(train, n_jobs)) / len(generated)


def chemnet_activations(
    smiles: Sequence[str], device: str = "cpu", batch_size: int = _CHEMNET_BATCH
) -> np.ndarray:
    """ChemNet's penultimate activations (Preuer et al. 2018, weights shipped with fcd_torch),
    ``(len(smiles), 512)``; every SMILES must be valid."""
    from fcd_torch import FCD  # loads the ChemNet weights; only needed here
    from fcd_torch.utils import SmilesDataset

    chemnet = FCD(device=device, n_jobs=1, batch_size=batch_size).model.to(device).eval()
    loader = torch.utils.data.DataLoader(SmilesDataset(list(smiles)), batch_size=batch_size)
    chunks = []
    with torch.no_grad():
        for batch in loader:
            # ChemNet's output is the last step of its LSTM: a view that would keep the whole
            # (batch, 350, 512) sequence alive. Copy it out.
            chunks.append(chemnet(batch.transpose(1, 2).float().to(device)).cpu().numpy().copy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 512))


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    # A 512 x 512 eigensolver spends most of its time synchronising threads: on a busy machine
    # it takes seconds with two threads and tens of milliseconds with one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
    """Squared Fréchet distance of two Gaussians:
    ``|m1 - m2|^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2))``."""
    # tr((C1 C2)^(1/2)) = tr((C1^(1/2) C2 C1^(1/2))^(1/2)); the right side is symmetric PSD, so
    # it comes from eigenvalues rather than a general (and less stable) matrix square root.
    cov1, cov2 = (torch.as_tensor(np.asarray(c), dtype=torch.float64) for c in (cov1, cov2))
    with _one_torch_thread():
        values, vectors = torch.linalg.eigh(cov1)
        root1 = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
        trace_root = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0).sqrt().sum()
    difference = np.asarray(mean1, dtype=float) - np.asarray(mean2, dtype=float)
    traces = cov1.trace() + cov2.trace() - 2 * trace_root
    return float(difference @ difference + traces.item())


def _fcd_from_canonical(canonical: Sequence[str], reference: ReferenceStats, device: str) -> float:
    if len(canonical) < 2:
        return math.nan
    activations = chemnet_activations(canonical, device=device)
    return frechet_distance(
        activations.mean(axis=0),
        np.cov(activations, rowvar=False),
        reference.fcd_mean,
        reference.fcd_cov,
    )


def fcd(smiles: Sequence[str], reference: ReferenceStats, device: str = "cpu") -> float:
    """Fréchet ChemNet Distance of the valid molecules to the reference set (Preuer et al. 2018)."""
    return _fcd_from_canonical([c for c in map(canonical_smiles, smiles) if c], reference, device)


def _unpacked(packed: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(packed, axis=1)).to(device=device, dtype=torch.float32)


def _tanimoto_block(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    shared = a @ b.T  # exact: counts up to 1024 are integers in float32
    either = a.sum(1, keepdim=True) + b.sum(1) - shared
    return torch.where(either > 0, shared / either.clamp(min=1), 1.0)  # two empty fingerprints: 1


def _snn_packed(packed: np.ndarray, reference: np.ndarray, device: str) -> float:
    if len(packed) == 0:
        return math.nan
    nearest = torch.zeros(len(packed), device=device)
    for start in range(0, len(reference), _SIMILARITY_BLOCK):
        block = _unpacked(reference[start : start + _SIMILARITY_BLOCK], device)
        for row in range(0, len(packed), _SIMILARITY_BLOCK):
            queries = _unpacked(packed[row : row + _SIMILARITY_BLOCK], device)
            best = _tanimoto_block(queries, block).max(dim=1).values
            nearest[row : row + len(queries)] = torch.maximum(
                nearest[row : row + len(queries)], best
            )
    return nearest.mean().item()


def snn(
    smiles: Sequence[str], reference: ReferenceStats, n_jobs: int | None = None, device: str = "cpu"
) -> float:
    """Mean Tanimoto similarity of each valid molecule to its nearest neighbour in the reference."""
    return _snn_packed(fingerprint_matrix(smiles, n_jobs), reference.fingerprints, device)


def _internal_diversities(packed: np.ndarray, powers: Sequence[int], device: str) -> list[float]:
    """IntDiv_p for each p in ``powers``, from one pass over the similarity matrix."""
    # IntDiv_p = 1 - mean over x of (mean over y of T(x, y)^p)^(1/p), pairs x = y included. The
    # paper writes one p-th root over all pairs; MOSES (and its published numbers) take the root
    # per molecule first, as here. The two are identical for p = 1.
    n = len(packed)
    if n == 0:
        return [math.nan for _ in powers]
    sums = torch.zeros(len(powers), n, device=device)
    for start in range(0, n, _SIMILARITY_BLOCK):
        rows = _unpacked(packed[start : start + _SIMILARITY_BLOCK], device)
        for other in range(start, n, _SIMILARITY_BLOCK):  # upper block triangle: T is symmetric
            if other == start:
                columns = rows
            else:
                columns = _unpacked(packed[other : other + _SIMILARITY_BLOCK], device)
            similarity = _tanimoto_block(rows, columns)
            for index, p in enumerate(powers):
                powered = similarity**p
                sums[index, start : start + len(rows)] += powered.sum(dim=1)
                if other != start:
                    sums[index, other : other + len(columns)] += powered.sum(dim=0)
    return [1 - ((sums[i] / n) ** (1 / p)).mean().item() for i, p in enumerate(powers)]


def internal_diversity(
    smiles: Sequence[str], p: int = 1, n_jobs: int | None = None, device: str = "cpu"
) -> float:
    """IntDiv_p: one minus the mean pairwise Tanimoto similarity (its p-th power mean) of the valid
    molecules; 0 when all are the same molecule."""
    return _internal_diversities(fingerprint_matrix(smiles, n_jobs), [p], device)[0]


def _cosine_similarity(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    if not a or not b:
        return math.nan
    dot = sum(count * b.get(key, 0) for key, count in a.items())
    norms = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norms


def fragment_similarity(
    smiles: Sequence[str], reference: ReferenceStats, n_jobs: int | None = None
) -> float:
    """Cosine similarity of BRICS fragment counts, valid molecules vs the reference."""
    found = _per_molecule(_brics_fragments, smiles, _check_n_jobs(n_jobs))
    fragments = Counter(fragment for molecule in found if molecule for fragment in molecule)
    return _cosine_similarity(fragments, reference.fragments)


def scaffold_similarity(
    smiles: Sequence[str], reference: ReferenceStats, n_jobs: int | None = None
) -> float:
    """Cosine similarity of Bemis-Murcko scaffold counts (scaffolds of two or more rings)."""
    found = _per_molecule(_scaffold, smiles, _check_n_jobs(n_jobs))
    return _cosine_similarity(Counter(s for s in found if s is not None), reference.scaffolds)


def fraction_passes_filters(smiles: Sequence[str], n_jobs: int | None = None) -> float:
    """Fraction of the valid molecules that pass MOSES's filters (see :func:`passes_filters`)."""
    passed = [
        p for p in _per_molecule(passes_filters, smiles, _check_n_jobs(n_jobs)) if p is not None
    ]
    return float(np.mean(passed)) if passed else math.nan


def property_distance(
    smiles: Sequence[str], reference: ReferenceStats, name: str, n_jobs: int | None = None
) -> float:
    """Wasserstein-1 distance between a property's values (logP, SA, QED or weight) over the
    valid molecules and over the reference set."""
    if name not in PROPERTY_NAMES:
        raise UserError(f"unknown MOSES property '{name}'; use one of {', '.join(PROPERTY_NAMES)}")
    found = _per_molecule(_properties, smiles, _check_n_jobs(n_jobs))
    values = [v[PROPERTY_NAMES.index(name)] for v in found if v is not None]
    if not values:
        return math.nan
    return float(wasserstein_distance(values, reference.properties[name]))


def moses_metrics(
    generated: Sequence[str],
    train: Iterable[str],
    reference: ReferenceStats,
    n_jobs: int | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """The MOSES suite for ``generated`` SMILES, keyed as :data:`METRIC_NAMES`.

    ``train`` is the training set (any SMILES; canonicalised here) for novelty; ``reference``
    holds the test-set statistics (:func:`load_reference_stats` for the bundled MOSES test set).
    Per-molecule work runs in ``n_jobs`` processes (default :func:`default_n_jobs`); ChemNet and
    the similarity matrices on torch ``device``.
    """
    if not generated:
        raise UserError("no generated SMILES to score")
    n_jobs = _check_n_jobs(n_jobs)
    describe = functools.partial(_describe, with_filters=True)
    described = _per_molecule(describe, generated, n_jobs)
    molecules = [m for m in described if m is not None]
    metrics = dict.fromkeys(METRIC_NAMES, math.nan)
    metrics["validity"] = len(molecules) / len(described)
    if not molecules:
        return metrics
    canonical = [m.canonical for m in molecules]
    metrics["unique@1k"] = _fraction_unique_canonical(canonical, 1000)
    metrics["unique@10k"] = _fraction_unique_canonical(canonical, 10000)
    unique = set(canonical)
    metrics["novelty"] = len(unique - _canonical_set(train, n_jobs)) / len(unique)
    metrics["FCD/Test"] = _fcd_from_canonical(canonical, reference, device)
    fingerprints = _packed(m.fingerprint for m in molecules)
    metrics["SNN/Test"] = _snn_packed(fingerprints, reference.fingerprints, device)
    fragments = Counter(fragment for m in molecules for fragment in m.fragments)
    metrics["Frag/Test"] = _cosine_similarity(fragments, reference.fragments)
    scaffolds = Counter(m.scaffold for m in molecules if m.scaffold is not None)
    metrics["Scaf/Test"] = _cosine_similarity(scaffolds, reference.scaffolds)
    metrics["IntDiv1"], metrics["IntDiv2"] = _internal_diversities(fingerprints, [1, 2], device)
    metrics["Filters"] = float(np.mean([m.passes_filters for m in molecules]))
    for column, name in enumerate(PROPERTY_NAMES):
        values = [m.properties[column] for m in molecules]
        metrics[name] = float(wasserstein_distance(values, reference.properties[name]))
    return metrics
