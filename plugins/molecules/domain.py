"""The molecules domain: SMILES (or SELFIES) strings through GRU networks, scored with RDKit."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polyvae.config import Option
from polyvae.domain import Batch, Domain, Panel, ReadReport
from polyvae.errors import UserError
from polyvae.plugins.sequence_options import network_options
from polyvae.plugins.shared import bundled_run

# The pieces below import torch and RDKit: each method imports what it uses, so that listing the
# plugins (which creates the domain) loads neither.
if TYPE_CHECKING:
    from torch import Tensor

    from polyvae.plugins.molecules.codec import MoleculeCodec
    from polyvae.plugins.sequence import SequenceDecoder, SequenceEncoder

# The MOSES VAE (Polykovskiy et al. 2020), as configured in molsets 0.3.1 (moses/vae/config.py,
# trainer.py): a one-layer 256-unit GRU encoder (one direction), a 3-layer 512-unit GRU decoder,
# z of 128, Adam at a constant 3e-4 (its SGDR restarts between equal rates), gradients clipped at
# 50, batches of 512, 100 epochs with the KL weight rising linearly from 0 to 0.05 over all of them.
# MOSES averages the reconstruction loss over tokens, where polyvae's ELBO sums it over each
# molecule; so its KL weight and clipping norm are scaled by its mean tokens per molecule here.
MOSES_TOKENS_PER_MOLECULE = 36.86  # mean SMILES characters of the MOSES training set, plus <eos>
MOSES_PRESET: dict[str, Any] = {
    "latent_dim": 128,
    "encoder_hidden": 256,
    "encoder_layers": 1,
    "encoder_bidirectional": False,
    "decoder_hidden": 512,
    "decoder_layers": 3,
    # MOSES embeds one-hot characters (about 30); 32 learned dimensions for the atom tokens.
    "embedding_dim": 32,
    "word_dropout": 0.0,
    "max_length": 100,  # MOSES samples up to 100 tokens
    "batch_size": 512,
    "epochs": 100,
    "lr": 3e-4,
    "lr_warmup_steps": 0,
    "lr_min_ratio": 1.0,
    "weight_decay": 0.0,
    "grad_clip": 50 * MOSES_TOKENS_PER_MOLECULE,
    "beta_schedule": "linear",
    "beta_min": 0.0,
    "beta_max": 0.05 * MOSES_TOKENS_PER_MOLECULE,
    # 100 epochs of the 1.58M MOSES training molecules less the 10% validation share, at 512 a
    # batch: 2,785 steps an epoch.
    "beta_warmup_steps": 278_500,
    "patience": 0,
}

# Share of molecules that must match the bundled test set, in order, to use its shipped
# statistics (RDKit releases canonicalise a few SMILES differently: 1 in 3,000 here).
BUNDLED_MATCH = 0.995

# Report gallery: molecules drawn from the prior, drawings a row, interpolation steps.
GALLERY_SAMPLES = 20
GALLERY_PER_ROW = 5
INTERPOLATION_STEPS = 6

# The MOSES paper's VAE and CharRNN rows (Polykovskiy et al. 2020, Table 2 and the molsets
# README: means over three runs, 30,000 samples each, against the MOSES test set).
MOSES_PAPER_RESULTS: dict[str, dict[str, float]] = {
    "MOSES VAE (paper)": {
        "validity": 0.977,
        "unique@1k": 1.0,
        "unique@10k": 0.998,
        "FCD/Test": 0.099,
        "SNN/Test": 0.626,
        "Frag/Test": 0.999,
        "Scaf/Test": 0.939,
        "IntDiv1": 0.856,
        "IntDiv2": 0.850,
        "Filters": 0.997,
        "novelty": 0.695,
    },
    "MOSES CharRNN (paper)": {
        "validity": 0.975,
        "unique@1k": 1.0,
        "unique@10k": 0.999,
        "FCD/Test": 0.073,
        "SNN/Test": 0.601,
        "Frag/Test": 1.000,
        "Scaf/Test": 0.924,
        "IntDiv1": 0.856,
        "IntDiv2": 0.850,
        "Filters": 0.994,
        "novelty": 0.842,
    },
}

# Sized for a 2-core CPU (about 800 molecules a second on one core). SMILES with a KL weight
# that rises to 0.3 over 1,000 steps: measured, it reached FCD/Test 1.38 after 1.28M MOSES
# molecules where SELFIES with the weight rising to 1 stayed at 7.7, and kept 22 nats in z
# against 2 (docs/molecules.md). `polyvae sample` writes only the valid SMILES.
SMALL_PRESET: dict[str, Any] = {
    "representation": "smiles",
    "latent_dim": 64,
    "embedding_dim": 32,
    "encoder_hidden": 128,
    "encoder_layers": 1,
    "encoder_bidirectional": True,
    "decoder_hidden": 256,
    "decoder_layers": 2,
    "batch_size": 256,
    "lr": 1e-3,
    "epochs": 4,
    "beta_max": 0.3,
    "beta_warmup_steps": 1000,
}
# The small preset with a decoder twice as wide (2 x 512 units, 2.6M parameters against 0.7M):
# after the same 1.28M MOSES molecules it reached FCD/Test 0.98 against 1.38 and raw validity
# 0.82 against 0.69 (docs/molecules.md), for about 1.5 times the time a step.
MEDIUM_PRESET: dict[str, Any] = SMALL_PRESET | {"decoder_hidden": 512}


class MoleculesDomain(Domain):
    """Items are canonical SMILES strings; see the module docstrings of the reader, codec,
    chemistry and writers for each piece."""

    name = "molecules"
    description = "small molecules as SMILES or SELFIES, GRU encoder and decoder, RDKit scoring"
    default_suffix = ".csv"
    likelihood_unit = "token"
    reference_results = MOSES_PAPER_RESULTS
    options = (
        Option(
            "representation",
            "smiles",
            "token strings the networks see: atom-level SMILES, Kekulé SMILES (aromatic rings as "
            "alternating single and double bonds), or SELFIES",
            choices=("smiles", "kekule", "selfies"),
        ),
        Option(
            "column",
            "smiles",
            "CSV column of the SMILES; the default also finds one named like Canonical_SMILES",
        ),
        Option(
            "stereo",
            True,
            "keep stereochemistry and isotopes as read; false drops them (as MOSES has none), so "
            "that a model without their tokens, such as the bundled one, can learn from such "
            "molecules",
        ),
        *network_options(
            max_length=100,
            max_length_help="most tokens per molecule; longer ones are skipped",
            embedding_dim=64,
            encoder_hidden=256,
            decoder_hidden=256,
            decoder_layers=2,
        ),
        Option("augment", False, "train on a fresh randomised SMILES of each molecule each epoch"),
    )
    presets = {"small": SMALL_PRESET, "medium": MEDIUM_PRESET, "moses": MOSES_PRESET}
    read_options = ("representation", "column", "stereo", "max_length")
    write_options = (
        Option(
            "jobs",
            0,
            "processes for the RDKit work on .csv, .smi and .sdf rows (0: the CPU count, at most "
            "4; 1: none besides this one, which saves about 770 MiB a worker)",
            minimum=0,
        ),
    )
    generate_options = (
        Option("top_k", 0, "sample only among the k most likely tokens (0: all)", minimum=0),
        Option(
            "top_p",
            1.0,
            "sample only among the most likely tokens that hold this probability",
            minimum=0.0,
            maximum=1.0,
        ),
        Option("max_length", 0, "most tokens per molecule (0: the run's max_length)", minimum=0),
    )

    # --- data ----------------------------------------------------------------------------------

    def read(self, source: str | Path, config: Mapping[str, Any]) -> tuple[list[str], ReadReport]:
        from polyvae.plugins.molecules.codec import sequence_problem
        from polyvae.plugins.molecules.reader import read_smiles

        check = functools.partial(
            sequence_problem,
            representation=config["representation"],
            max_length=config["max_length"],
        )
        return read_smiles(source, config["column"], check, config["stereo"])

    def parse_item(self, text: str) -> str:
        from polyvae.plugins.molecules import chemistry

        smiles = chemistry.canonical_smiles(text)
        if smiles is None:
            raise UserError(f"'{text}': {chemistry.diagnose(text)}")
        return smiles

    def is_valid(self, item: str) -> bool:
        from polyvae.plugins.molecules import chemistry

        return chemistry.parse(item) is not None

    def write(  # type: ignore[override]  # its codec, and jobs
        self,
        items: Sequence[str],
        path: Path,
        codec: MoleculeCodec | None = None,
        jobs: int = 0,
    ) -> None:
        """See :func:`writers.write`; with the run's ``codec``, molecules are flagged novel when
        they were not in its training data. ``jobs``: processes for the RDKit work (0: the
        writer's default)."""
        from polyvae.plugins.molecules import writers

        novel = None if codec is None else codec.novel
        writers.write(items, path, novel=novel, n_jobs=jobs or None)

    def write_stream(
        self,
        chunks: Iterable[Sequence[str]],
        path: Path,
        codec: MoleculeCodec | None = None,  # type: ignore[override]  # the domain's own codec
        jobs: int = 0,
    ) -> None:
        """:meth:`write`, one chunk in memory at a time (see :func:`writers.write_stream`)."""
        from polyvae.plugins.molecules import writers

        novel = None if codec is None else codec.novel
        writers.write_stream(chunks, path, novel=novel, n_jobs=jobs or None)

    # --- model ---------------------------------------------------------------------------------

    def fit_codec(self, items: Sequence[str], config: Mapping[str, Any]) -> MoleculeCodec:
        from polyvae.plugins.molecules.codec import MoleculeCodec

        return MoleculeCodec.fit(items, config["representation"], config["augment"], config["seed"])

    def adapt_codec(
        self,
        codec: MoleculeCodec,  # type: ignore[override]  # the domain's own codec
        items: Sequence[str],
        config: Mapping[str, Any],
    ) -> MoleculeCodec:
        return codec.adapted(items, config["representation"], config["augment"])

    def load_codec(self, directory: Path, config: Mapping[str, Any]) -> MoleculeCodec:
        from polyvae.plugins.molecules.codec import MoleculeCodec

        return MoleculeCodec.load(directory)

    def build(
        self,
        config: Mapping[str, Any],
        codec: MoleculeCodec,  # type: ignore[override]  # the domain's own codec
        latent_dim: int,
    ) -> tuple[SequenceEncoder, SequenceDecoder]:
        from polyvae.plugins.sequence import build_networks

        return build_networks(config, codec.vocab_size, latent_dim, config["max_length"])

    # --- quality and properties ----------------------------------------------------------------

    def metrics(
        self, generated: Sequence[str], reference: Sequence[str], training: Sequence[str]
    ) -> dict[str, float]:
        """The MOSES suite, its "/Test" metrics against ``reference``; novelty is NaN without
        the training items."""
        # Imported here: the suite pulls in scipy and ChemNet, which reading and training skip.
        from polyvae.plugins.molecules.metrics import moses_metrics

        results = moses_metrics(generated, training, reference_stats(reference))
        if not training:
            results["novelty"] = math.nan
        return results

    def reconstruction_metrics(
        self, originals: Sequence[str], reconstructions: Sequence[str]
    ) -> dict[str, float]:
        """``reconstruction_exact``: share decoded back to the same canonical SMILES."""
        from polyvae.plugins.molecules import chemistry

        if not originals:
            return {}
        same = sum(
            chemistry.canonical_smiles(rebuilt) == chemistry.canonical_smiles(original)
            for original, rebuilt in zip(originals, reconstructions, strict=True)
        )
        return {"reconstruction_exact": same / len(originals)}

    def unit_counts(self, batch: Batch) -> Tensor:
        from polyvae.plugins.sequence import predicted_tokens

        return predicted_tokens(batch)

    def property_names(self) -> list[str]:
        from polyvae.plugins.molecules import chemistry

        return chemistry.property_names()

    def properties(self, items: Sequence[str], names: Sequence[str]) -> np.ndarray:
        from polyvae.plugins.molecules import chemistry

        return chemistry.properties(items, names)

    def pretrained(self) -> Path | None:
        return bundled_run("molecules")

    def gallery(self, model: Any, items: Sequence[str], seed: int) -> list[Panel]:
        """Drawings of sampled molecules with their properties, and of the interpolation
        between two held-out molecules."""
        from polyvae.plugins.molecules import chemistry, writers

        sampled = model.sample(GALLERY_SAMPLES, seed=seed)
        valid = sum(chemistry.parse(text) is not None for text in sampled)
        path = model.interpolate(items[0], items[1], steps=INTERPOLATION_STEPS)
        ends = [items[0], *path, items[1]]
        return [
            Panel(
                "Samples",
                writers.grid_png(sampled, _legends(sampled), GALLERY_PER_ROW),
                caption=f"{GALLERY_SAMPLES} molecules sampled from the prior at temperature 1 "
                f"({valid} valid), with molecular weight, logP, QED and SA score.",
            ),
            Panel(
                "Interpolation",
                writers.grid_png(ends, ["start", *_legends(path), "end"], len(ends) // 2),
                caption="Two held-out molecules (first and last) and the greedy decodings along "
                "the spherical path between their posterior means.",
            ),
        ]


def _legends(smiles: Sequence[str]) -> list[str]:
    from polyvae.plugins.molecules import chemistry

    values = chemistry.properties(smiles, ["mw", "logp", "qed", "sa"])
    return [
        "invalid"
        if np.isnan(row).all()
        else f"MW {row[0]:.0f}  logP {row[1]:.2f}\nQED {row[2]:.2f}  SA {row[3]:.2f}"
        for row in values
    ]


def reference_stats(reference: Sequence[str]):
    """The shipped statistics when ``reference`` is the bundled MOSES test set (as the reader
    returns it: the same molecules in the same order, up to the few that another RDKit version
    canonicalises differently); otherwise computed from ``reference`` (a ChemNet pass)."""
    from polyvae.plugins.molecules.metrics import (
        bundled_smiles,
        compute_reference_stats,
        load_reference_stats,
    )

    bundled = bundled_smiles("test")
    if len(reference) == len(bundled):
        same = sum(a == b for a, b in zip(reference, bundled, strict=True))
        if same >= BUNDLED_MATCH * len(bundled):
            return load_reference_stats()
    return compute_reference_stats(reference)
