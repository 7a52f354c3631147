"""The bundled pretrained model: `polyvae sample molecules` works right after install."""

from __future__ import annotations

import torch

import polyvae
from polyvae.model import SamplingTally
from polyvae.plugins.molecules import chemistry
from polyvae.plugins.sequence import PAD
from polyvae.registry import reset_registry


def test_bundled_model_samples_valid_diverse_molecules():
    reset_registry(None)
    model = polyvae.load("molecules")
    assert model.meta["status"] in ("complete", "early_stopped")
    assert model.prior().kind == "gmm"  # it ships with the prior fitted to its training codes
    tally = SamplingTally()
    chunks = model.sample_chunks(300, temperature=1.0, seed=0, valid_only=True, tally=tally)
    valid = [smiles for chunk in chunks for smiles in chunk]
    assert len(valid) == 300 and all(chemistry.parse(smiles) is not None for smiles in valid)
    # A floor, well under the bar of 0.95 raw validity, that a broken model would miss.
    assert tally.valid / tally.drawn >= 0.5
    assert len(set(valid)) / len(valid) >= 0.95
    novel = model.codec.novel(valid)
    assert novel.mean() >= 0.8


def test_bundled_model_encodes_moses_test_molecules_written_with_explicit_hydrogens():
    from polyvae.plugins.molecules.codec import to_sequence
    from polyvae.plugins.molecules.metrics import bundled_smiles

    reset_registry(None)
    model = polyvae.load("molecules")
    written_with_hydrogen = "[H]N=c1n(CCCOc2ccccc2)c2ccccc2n1CC(C)C"
    canonical = chemistry.canonical_smiles(written_with_hydrogen)
    assert model.reconstruct([written_with_hydrogen]) == model.reconstruct([canonical])

    test_set = bundled_smiles("test")
    with_hydrogens = [smiles for smiles in test_set if "[H]" in smiles]
    molecules = test_set[:1000] + with_hydrogens
    batch = model.codec.encode(molecules)  # raised at the first '[H]' before
    assert model.encode(molecules).shape == (len(molecules), model.latent_dim)
    # Molecules that encoded as given still do, token for token: the model's outputs for them
    # stay as they were.
    as_given = model.codec.tokenizer.encode_batch(
        [to_sequence(smiles, model.codec.representation) for smiles in test_set[:1000]]
    )
    plain = torch.tensor([encoding.ids for encoding in as_given])
    assert torch.equal(batch["tokens"][:1000, : plain.shape[1]], plain)
    assert (batch["tokens"][:1000, plain.shape[1] :] == PAD).all()


def test_refined_codes_bring_back_test_molecules_the_encoders_codes_miss():
    from polyvae.plugins.molecules.metrics import bundled_smiles

    reset_registry(None)
    model = polyvae.load("molecules")
    molecules = bundled_smiles("test")[:40]

    def exact(rebuilt: list[str]) -> int:
        share = model.domain.reconstruction_metrics(molecules, rebuilt)["reconstruction_exact"]
        return round(share * len(molecules))

    unrefined, refined = (
        exact(model.reconstruct(molecules)),
        exact(model.reconstruct(molecules, refine=25)),
    )
    # 17 and 27 of these 40 when written; 0.68 and 0.91 of 1,000 random test molecules
    # (benchmarks/latent_refinement.py).
    assert refined >= unrefined + 6, (unrefined, refined)
