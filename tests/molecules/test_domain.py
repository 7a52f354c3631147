"""The molecules domain: reading, tokenising, chemistry, the GRU networks, writers, conformance."""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import math
import subprocess
import sys

import pytest
import selfies
import torch
from PIL import Image
from rdkit import Chem

import polyvae
import polyvae.plugins.molecules as molecules_plugin
from polyvae.device import int8_products
from polyvae.errors import UnencodableItem, UserError
from polyvae.plugins import shared
from polyvae.plugins.molecules import chemistry
from polyvae.plugins.molecules.codec import MoleculeCodec, to_sequence
from polyvae.plugins.molecules.domain import MoleculesDomain
from polyvae.plugins.sequence import (
    BOS,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    UNK,
    SequenceDecoder,
    SequenceEncoder,
    choose_tokens,
)
from polyvae.registry import Registry

DRUGS = [
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin
    "CC(=O)Nc1ccc(O)cc1",  # paracetamol
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",  # ibuprofen
    "Cn1c(=O)c2c(ncn2C)n(C)c1=O",  # caffeine
    "COc1ccc2cc(C(C)C(=O)O)ccc2c1",  # naproxen
    "CN1CCC[C@H]1c1cccnc1",  # nicotine
    "OC(=O)Cc1ccccc1Nc1c(Cl)cccc1Cl",  # diclofenac
    "CN(C)C(=N)NC(=N)N",  # metformin
    "CC(C)NCC(O)COc1cccc2ccccc12",  # propranolol
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",  # diazepam
    "Clc1ccc(cc1)C(c1ccccc1)N1CCN(CC1)CCOCC(=O)O",  # cetirizine
    "CNCCC(Oc1ccc(cc1)C(F)(F)F)c1ccccc1",  # fluoxetine
    "CN1CCN(CC1)c1c(F)cc2c(c1)n(cc(C(=O)O)c2=O)C1CC1",
    "COc1ccc2[nH]cc(CCNC(C)=O)c2c1",  # melatonin
    "NC(=O)N1c2ccccc2C=Cc2ccccc21",  # carbamazepine
    "CC(=O)N[C@@H](CS)C(=O)O",  # acetylcysteine
    "C[C@@H](C(=O)O)c1ccc(c(F)c1)-c1ccccc1",  # flurbiprofen
    "OC(=O)c1ccccc1O",  # salicylic acid
    "c1ccc2c(c1)ccc1ccccc12",  # phenanthrene
    "Brc1ccc(cc1)C(=O)N",  # 4-bromobenzamide
    "CCN(CC)CC(=O)Nc1c(C)cccc1C",  # lidocaine
    "CC1(C)S[C@@H]2[C@H](NC(=O)Cc3ccccc3)C(=O)N2[C@H]1C(=O)O",  # penicillin G
    "NS(=O)(=O)c1cc(C(=O)O)c(NCc2ccco2)cc1Cl",  # furosemide
    "CC(C)(C)NC[C@H](O)c1ccc(O)c(CO)c1",  # salbutamol
    "COC(=O)C1=C(C)NC(C)=C(C1c1ccccc1[N+](=O)[O-])C(=O)OC",  # nifedipine
    "CN1CCC23c4c5ccc(O)c4OC2C(O)C=CC3C1C5",  # morphine
    "Nc1ccc(cc1)S(=O)(=O)Nc1ccncn1",
    "O=C(O)CCCc1ccc(N(CCCl)CCCl)cc1",  # chlorambucil
    "Cc1onc(c1C(=O)N[C@@H]1C(=O)N2[C@@H]1SC(C)(C)[C@@H]2C(=O)O)-c1ccccc1",  # oxacillin
    "CC12CCC3c4ccc(O)cc4CCC3C1CCC2O",  # estradiol
    "C1CCC(CC1)NC(=O)Nc1ccccc1",
    "c1ccc(cc1)-c1nc2ccccc2[nH]1",
    "OCC1OC(O)C(O)C(O)C1O",  # glucose
    "CSCC[C@H](N)C(=O)O",  # methionine
    "N[C@@H](Cc1c[nH]c2ccccc12)C(=O)O",  # tryptophan
    "N[C@@H](Cc1c[nH]cn1)C(=O)O",  # histidine
    "CC(C)C[C@H](N)C(=O)O",  # leucine
    "O=C1CCCN1",  # pyrrolidone
    "ClC(Cl)(Cl)Cl",  # carbon tetrachloride
    "FC(F)(F)c1ccc(Oc2ccc(cc2)[N+](=O)[O-])cc1",
    "CCOC(=O)c1ccc(N)cc1",  # benzocaine
    "CC(C)Oc1ccc(cc1)C(=O)c1ccc(Cl)cc1",
    "c1ccc2[nH]ccc2c1",  # indole
    "O=c1[nH]cnc2[nH]ncc12",  # allopurinol
    "Cc1ncc([N+](=O)[O-])n1CCO",  # metronidazole
    "CCCCC1=NC2(CCCC2)C(=O)N1Cc1ccc(cc1)-c1ccccc1-c1nn[nH]n1",  # irbesartan
    "COc1cc2c(cc1OC)C(=O)C(CC1CCN(Cc3ccccc3)CC1)C2",  # donepezil
    "Oc1ccc(cc1)C1(OC(=O)c2ccccc12)c1ccc(O)cc1",  # phenolphthalein
    "C1CC2CCC3CCC4CCC5CCC6CCC7CCC8CCC9CCC%10CC%10C9C8C7C6C5C4C3C2C1",  # ring closure %10
    "[Na+].[Cl-]",
]
MOLECULES = [chemistry.canonical_smiles(smiles) for smiles in DRUGS]  # what read() returns
TINY_NETWORKS = {
    "embedding_dim": 16,
    "encoder_hidden": 32,
    "decoder_hidden": 32,
    "decoder_layers": 1,
    "max_length": 60,  # the longest test molecule; an untrained decoder runs to the limit
}


@pytest.fixture(scope="module")
def domain() -> MoleculesDomain:
    return MoleculesDomain()


def config_of(domain: MoleculesDomain, **overrides) -> dict:
    return domain.resolve_config(overrides)


# --- reading -------------------------------------------------------------------------------------


def test_reader_skips_bad_lines_and_reports_them_with_line_numbers(tmp_path, domain):
    path = tmp_path / "mols.smi"
    path.write_text(
        "SMILES Name\n"
        "c1ccccc1 benzene\n"
        "C1CC ring-left-open\n"
        "\n"
        "C(C)(C)(C)(C)C pentavalent-carbon\n"
        "OC(=O)C acetic-acid\n"
    )
    items, report = domain.read(path, config_of(domain))
    assert items == ["c1ccccc1", "CC(=O)O"]  # canonical
    assert report.kept == 2
    assert [location for location, _ in report.skipped] == [f"{path}:3", f"{path}:5"]
    assert "syntax error" in report.skipped[0][1]
    assert "valence" in report.skipped[1][1]
    assert any("header" in note for note in report.notes)


def test_reader_takes_the_chosen_csv_column_from_gzip(tmp_path, domain):
    path = tmp_path / "mols.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("id,structure,smiles\n1,OCC,x\n2,not-a-molecule,y\n3,c1ccncc1,z\n")
    items, report = domain.read(path, config_of(domain, column="structure"))
    assert items == ["CCO", "c1ccncc1"]
    assert report.skipped == [(f"{path}:3", "invalid SMILES: syntax error")]


def test_reader_falls_back_to_a_smiles_named_column_and_says_so(tmp_path, domain):
    path = tmp_path / "mols.csv"
    path.write_text("name,Canonical_SMILES\nethanol,CCO\n")
    items, report = domain.read(path, config_of(domain))
    assert items == ["CCO"]
    assert "used 'Canonical_SMILES'" in report.summary()
    with pytest.raises(UserError, match=r"no column 'structure' \(columns: name, Canonical_SMILES"):
        domain.read(tmp_path / "mols.csv", config_of(domain, column="structure"))


def test_reader_reads_folders_and_globs(tmp_path, domain):
    (tmp_path / "a.smi").write_text("CCO\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as handle:
        handle.write("CCN\n")
    (tmp_path / "notes.md").write_text("not molecules\n")
    assert domain.read(tmp_path, config_of(domain))[0] == ["CCO", "CCN"]
    assert domain.read(str(tmp_path / "*.smi"), config_of(domain))[0] == ["CCO"]


def test_reader_errors_are_one_clear_line(tmp_path, domain):
    with pytest.raises(FileNotFoundError):  # the engine turns it into one line naming the path
        domain.read(tmp_path / "missing.smi", config_of(domain))
    (tmp_path / "bad.smi").write_text("xyz\nC1CC\n")
    with pytest.raises(UserError, match=r"all 2 were skipped \(first: .*bad.smi:1"):
        domain.read(tmp_path / "bad.smi", config_of(domain))
    (tmp_path / "mols.sdf").write_text("")
    with pytest.raises(UserError, match=r"not mols\.sdf"):
        domain.read(tmp_path / "mols.sdf", config_of(domain))


def test_reader_can_drop_stereochemistry_and_isotopes_and_counts_the_molecules(tmp_path, domain):
    path = tmp_path / "mols.smi"
    path.write_text("C[C@H](N)C(=O)O\n[2H]C([2H])([2H])O\nC/C=C/C\nCCO\n")
    items, report = domain.read(path, config_of(domain))
    assert items == ["C[C@H](N)C(=O)O", "[2H]C([2H])([2H])O", "C/C=C/C", "CCO"]
    assert report.notes == []
    items, report = domain.read(path, config_of(domain, stereo=False))
    assert items == ["CC(N)C(=O)O", "CO", "CC=CC", "CCO"]
    assert report.notes == ["stereochemistry or isotopes dropped from 3 molecules"]


def test_reader_skips_molecules_too_long_or_without_selfies(tmp_path, domain):
    path = tmp_path / "mols.smi"
    path.write_text("CCO\nCCCCCCCC\nFI(F)F\n")  # iodine trifluoride: valid, not in SELFIES
    items, report = domain.read(path, config_of(domain, max_length=6))
    assert items == ["CCO", "FI(F)F"]
    assert report.skipped == [(f"{path}:2", "8 tokens, more than max_length=6")]
    items, report = domain.read(path, config_of(domain, representation="selfies"))
    assert items == ["CCO", "CCCCCCCC"]
    assert report.skipped[0][0] == f"{path}:3"
    assert report.skipped[0][1].startswith("cannot be written as SELFIES")


# --- codec ---------------------------------------------------------------------------------------


def test_smiles_tokens_are_atoms_and_round_trip(tmp_path):
    codec = MoleculeCodec.fit(MOLECULES, "smiles")
    tokens = codec.tokenizer.encode("BrC[C@@H](Cl)c1cc[nH]c1C%10CC%10").tokens
    assert tokens == [
        "<bos>", "Br", "C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "[nH]", "c", "1",
        "C", "%10", "C", "C", "%10", "<eos>",
    ]  # fmt: skip
    assert [codec.tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == [PAD, BOS, EOS, UNK]
    batch = codec.encode(MOLECULES)
    assert batch["tokens"].shape == (len(MOLECULES), int(batch["lengths"].max()))
    assert (batch["tokens"][:, 0] == BOS).all()
    assert codec.decode(batch) == MOLECULES

    codec.save(tmp_path)
    assert {file.name for file in tmp_path.iterdir()} == {
        "codec.json",
        "tokenizer.json",
        "training_set.safetensors",
    }
    loaded = MoleculeCodec.load(tmp_path)
    assert torch.equal(loaded.encode(MOLECULES)["tokens"], batch["tokens"])
    assert loaded.novel(["c1ccccc1", "OC(=O)c1ccccc1O"]).tolist() == [True, False]


def test_selfies_codec_round_trips():
    codec = MoleculeCodec.fit(MOLECULES, "selfies")
    assert codec.tokenizer.encode(selfies.encoder("CCO")).tokens == [
        "<bos>", "[C]", "[C]", "[O]", "<eos>",
    ]  # fmt: skip
    assert codec.decode(codec.encode(MOLECULES)) == MOLECULES


def test_kekule_codec_writes_no_aromatic_tokens_and_round_trips():
    codec = MoleculeCodec.fit(MOLECULES, "kekule")
    vocabulary = set(codec.tokenizer.get_vocab())
    assert not vocabulary & {"c", "n", "o", "s", "[nH]"}
    assert codec.tokenizer.encode(to_sequence("Oc1ccccc1", "kekule")).tokens == [
        "<bos>", "O", "C", "1", "=", "C", "C", "=", "C", "C", "=", "C", "1", "<eos>",
    ]  # fmt: skip
    # Decoded molecules come back as canonical aromatic SMILES, like the other representations.
    assert codec.decode(codec.encode(MOLECULES)) == MOLECULES
    # A random atom order survives the rewriting, so augmentation still varies the strings.
    augmented = codec.encode_augmented(MOLECULES, seed=1)
    assert codec.decode(augmented) == MOLECULES
    assert not torch.equal(augmented["tokens"], codec.encode(MOLECULES)["tokens"])


def test_rdkit_conversions_in_worker_processes_match_one_process(tmp_path, domain, monkeypatch):
    # Reading and Kekulé-writing 1.6M MOSES molecules go to worker processes; force that path.
    path = tmp_path / "mols.smi"
    path.write_text("\n".join([*DRUGS, "xyz", "C1CC"]) + "\n")
    config = config_of(domain, representation="kekule")
    serial_items, serial_report = domain.read(path, config)
    serial = MoleculeCodec.fit(serial_items, "kekule").encode(serial_items)
    monkeypatch.setattr(shared, "PARALLEL_FROM", 2)
    items, report = domain.read(path, config)
    assert (items, report.skipped) == (serial_items, serial_report.skipped)
    assert torch.equal(MoleculeCodec.fit(items, "kekule").encode(items)["tokens"], serial["tokens"])


def test_fine_tuning_as_kekule_keeps_the_vocabulary_and_skips_what_it_cannot_write(
    tmp_path, domain
):
    config = TINY_NETWORKS | {"epochs": 1, "batch_size": 16, "representation": "smiles"}
    source = tmp_path / "source"
    flat = [smiles for smiles in MOLECULES if "@" not in smiles]
    polyvae.train(domain, data=flat * 4, config=config, out=source, progress=False)
    # No [Si] and no stereo tokens in the source's vocabulary: the stereocentre can go.
    focused = tmp_path / "focused.smi"
    focused.write_text("\n".join([*flat[:5], "C[Si](C)(C)c1ccccc1", "C[C@H](N)C(=O)O"]))
    tuned = tmp_path / "tuned"
    overrides = {"representation": "kekule", "stereo": False, "epochs": 1}
    polyvae.train(domain, data=focused, config=overrides, out=tuned, init=source, progress=False)
    read = json.loads((tuned / "run.json").read_text())["data"]["read"]
    assert (read["kept"], read["skipped"]) == (6, 1)
    assert read["notes"] == ["stereochemistry or isotopes dropped from 1 molecule"]
    assert (
        (tuned / "read_report.tsv")
        .read_text()
        .startswith(
            "item 6 (C[Si](C)(C)c1ccccc1)\thas the token '[Si]', which is not in the vocabulary"
        )
    )
    codec = MoleculeCodec.load(tuned / "codec")
    assert codec.representation == "kekule"
    assert codec.tokenizer.get_vocab() == MoleculeCodec.load(source / "codec").tokenizer.get_vocab()
    # Novelty counts the molecules of both trainings as seen.
    assert not codec.novel([flat[-1], "CC(N)C(=O)O"]).any()
    # Commands that read the run's data again (evaluate, fit-prior) see the items it trained on.
    model = polyvae.load(tuned)
    training, validation = model.data_splits()
    assert "C[Si](C)(C)c1ccccc1" not in training + validation
    assert len(training) == json.loads((tuned / "run.json").read_text())["data"]["train"]
    with pytest.raises(UserError, match="cannot fine-tune a smiles model on selfies"):
        polyvae.train(
            domain,
            data=focused,
            config={"representation": "selfies", "stereo": False},
            out=tmp_path / "selfies",
            init=source,
            progress=False,
        )


def test_a_token_outside_the_vocabulary_is_a_user_error_naming_it():
    codec = MoleculeCodec.fit(["CCO", "c1ccccc1"], "smiles")
    with pytest.raises(UserError, match=r"molecule 2 'C\[Se\]C' has the token '\[Se\]'"):
        codec.encode(["CCO", "C[Se]C"])


# A MOSES test molecule written with an explicit hydrogen, which RDKit's canonical form drops.
EXPLICIT_HYDROGEN = "[H]N=c1n(CCCOc2ccccc2)c2ccccc2n1CC(C)C"


@pytest.mark.parametrize("representation", ["smiles", "selfies"])
def test_a_molecule_is_encoded_in_the_form_the_vocabulary_was_learned_on(representation):
    canonical = chemistry.canonical_smiles(EXPLICIT_HYDROGEN)
    assert "[H]" not in canonical
    codec = MoleculeCodec.fit([canonical, "CCO"], representation)
    plain = codec.encode(["CCO", canonical])
    assert torch.equal(codec.encode(["CCO", EXPLICIT_HYDROGEN])["tokens"], plain["tokens"])
    # A molecule that encodes as given keeps its own form, though it is not the canonical one.
    as_given = codec.tokenizer.encode(to_sequence("OCC", representation)).ids
    assert codec.encode(["OCC"])["tokens"][0].tolist() == as_given


def test_kekule_form_drops_an_explicit_hydrogen_while_rewriting_the_molecule():
    # RDKit removes the [H] as it parses the molecule for its Kekulé form, so no token is unknown.
    canonical = chemistry.canonical_smiles(EXPLICIT_HYDROGEN)
    codec = MoleculeCodec.fit([canonical, "CCO"], "kekule")
    assert "[H]" not in to_sequence(EXPLICIT_HYDROGEN, "kekule")
    assert codec.decode(codec.encode([EXPLICIT_HYDROGEN, "OCC"])) == [canonical, "CCO"]


def test_molecules_no_form_can_encode_are_all_named_by_position():
    codec = MoleculeCodec.fit(["CCO", "c1ccccc1"], "smiles")
    with pytest.raises(UnencodableItem) as caught:
        codec.encode(["CCO", "C[Se]C", "c1ccccc1", "[2H]C", "O[Se]c1ccccc1"])
    error = caught.value
    assert (error.index, error.item) == (1, "C[Se]C")
    assert list(error.reasons) == [1, 3, 4]
    assert "'[2H]'" in error.reasons[3]  # an isotope is kept: dropping it changes the molecule
    assert str(error).endswith("(and 2 others that cannot be encoded)")


def test_augmented_encoding_writes_the_same_molecules_differently():
    codec = MoleculeCodec.fit(MOLECULES, "smiles", augment=True)
    plain, augmented = codec.encode(MOLECULES), codec.encode_augmented(MOLECULES, seed=1)
    assert codec.decode(augmented) == MOLECULES  # decode canonicalises
    assert not torch.equal(plain["tokens"], augmented["tokens"][:, : plain["tokens"].shape[1]])
    assert torch.equal(
        codec.encode_augmented(MOLECULES, seed=1)["tokens"], augmented["tokens"]
    )  # repeatable


# --- chemistry -----------------------------------------------------------------------------------


def test_properties_of_known_molecules(domain):
    names = ["mw", "logp", "qed", "sa", "tpsa", "hbd", "hba", "rotatable_bonds", "lipinski"]
    big = "C" * 40 + "C(=O)O"  # MW over 500 and logP over 5: two violations
    values = domain.properties(["c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", big, "C1CC"], names)
    benzene, aspirin, fatty_acid, invalid = (dict(zip(names, row, strict=True)) for row in values)
    assert benzene["mw"] == pytest.approx(78.114, abs=1e-3)
    assert benzene["tpsa"] == 0 and benzene["sa"] == pytest.approx(1.0, abs=0.01)
    assert aspirin["mw"] == pytest.approx(180.159, abs=1e-3)
    assert aspirin["logp"] == pytest.approx(1.310, abs=1e-3)
    assert aspirin["qed"] == pytest.approx(0.550, abs=1e-3)
    assert aspirin["sa"] == pytest.approx(1.58, abs=0.01)
    assert aspirin["tpsa"] == pytest.approx(63.6, abs=0.01)
    assert (aspirin["hbd"], aspirin["hba"], aspirin["rotatable_bonds"]) == (1, 3, 2)
    assert (aspirin["lipinski"], fatty_acid["lipinski"]) == (1.0, 0.0)
    assert all(math.isnan(value) for value in invalid.values())


def test_any_rdkit_descriptor_is_a_property(domain):
    assert {"qed", "logp", "MolLogP", "FractionCSP3"} <= set(domain.property_names())
    value = domain.properties(["CC(=O)Oc1ccccc1C(=O)O"], ["FractionCSP3"])
    assert value[0, 0] == pytest.approx(1 / 9)
    with pytest.raises(UserError, match="did you mean 'MolLogP'"):
        domain.properties(["CCO"], ["MolLogp"])


# --- networks ------------------------------------------------------------------------------------

VOCAB, EMBED, HIDDEN, LATENT = 9, 5, 7, 3
TOKENS = torch.tensor(
    [[BOS, 4, 5, 6, EOS, PAD, PAD], [BOS, 7, EOS, PAD, PAD, PAD, PAD]]
)  # padded past the longest row: the networks must trim
LENGTHS = torch.tensor([5, 3])


def manual_log_prob(decoder, z, inputs=TOKENS):
    """Teacher forcing one token at a time: the definition log_prob must match."""
    totals = []
    for row in range(len(TOKENS)):
        hidden = decoder.initial_state(z[row]).view(1, 1, -1).repeat(decoder.gru.num_layers, 1, 1)
        total = torch.tensor(0.0)
        for step in range(int(LENGTHS[row]) - 1):
            embedded = decoder.embedding(inputs[row, step])
            output, hidden = decoder.gru(torch.cat([embedded, z[row]]).view(1, 1, -1), hidden)
            log_probs = decoder.output(output[0, 0]).log_softmax(-1)
            total = total + log_probs[TOKENS[row, step + 1]]
        totals.append(total)
    return torch.stack(totals)


@pytest.mark.parametrize("tied", [False, True])
def test_decoder_log_prob_is_teacher_forced_sum_up_to_eos(tied):
    torch.manual_seed(0)
    decoder = SequenceDecoder(
        VOCAB, EMBED, HIDDEN, 2, LATENT, max_length=10, tie_embeddings=tied
    ).eval()
    z = torch.randn(2, LATENT)
    log_prob = decoder.log_prob({"tokens": TOKENS, "lengths": LENGTHS}, z)
    assert torch.allclose(log_prob, manual_log_prob(decoder, z), atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("tied", [False, True])
def test_generation_steps_compute_the_trained_network(tied):
    """Generation unrolls the GRU by hand; its logits are nn.GRU's (teacher forcing over the
    same tokens): to float32 rounding, and within bf16's or int8's rounding where asked."""
    torch.manual_seed(0)
    decoder = SequenceDecoder(
        VOCAB, EMBED, HIDDEN, 3, LATENT, max_length=10, tie_embeddings=tied
    ).eval()
    z = torch.randn(2, LATENT)
    expected, _ = decoder._step(TOKENS, z, decoder._start(z))  # (rows, positions, vocab)

    def unrolled(steps, tokens):
        return torch.stack([steps.next(tokens[:, i]) for i in range(tokens.shape[1])], dim=1)

    assert torch.allclose(unrolled(decoder.token_steps(z), TOKENS), expected, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = unrolled(decoder.token_steps(z), TOKENS)
    assert bf16.dtype == torch.bfloat16
    assert torch.allclose(bf16.float(), expected, atol=0.05)
    with int8_products():
        int8 = unrolled(decoder.token_steps(z), TOKENS)
    assert int8.dtype == torch.float32
    assert torch.allclose(int8, expected, atol=0.05) and not torch.allclose(int8, expected)
    # keep() goes on with the rows asked for, in that order, repeats included.
    order = torch.tensor([1, 1, 0])
    for arithmetic, tolerance in ((contextlib.nullcontext(), 1e-5), (int8_products(), 0.05)):
        with arithmetic:
            steps = decoder.token_steps(z)
            steps.next(TOKENS[:, 0])
            steps.keep(order)
            kept = unrolled(steps, TOKENS[order, 1:])
        assert torch.allclose(kept, expected[order, 1:], atol=tolerance)


def test_tied_embeddings_score_tokens_by_the_input_embedding():
    torch.manual_seed(0)
    decoder = SequenceDecoder(VOCAB, EMBED, HIDDEN, 1, LATENT, max_length=10, tie_embeddings=True)
    names = set(decoder.state_dict())
    assert {"output.projection.weight", "output.projection.bias", "output.token_bias"} <= names
    assert not any(name.startswith("output.shared") for name in names)  # saved once, as embedding
    hidden = torch.randn(4, HIDDEN)
    expected = decoder.output.projection(hidden) @ decoder.embedding.weight.t()
    assert torch.allclose(decoder.output(hidden), expected + decoder.output.token_bias)
    # Training the output layer moves the embedding: one matrix.
    decoder.output(hidden).sum().backward()
    assert decoder.embedding.weight.grad is not None
    vocab, embed, hidden_size = 16000, 256, 512  # the text preset's sizes
    untied = SequenceDecoder(vocab, embed, hidden_size, 1, 64, max_length=10)
    tied = SequenceDecoder(vocab, embed, hidden_size, 1, 64, max_length=10, tie_embeddings=True)
    untied_count, tied_count = (
        sum(parameter.numel() for parameter in decoder.parameters()) for decoder in (untied, tied)
    )
    assert untied_count - tied_count == hidden_size * vocab - hidden_size * embed - embed


def test_word_dropout_replaces_inputs_by_unk_in_training_only():
    torch.manual_seed(0)
    decoder = SequenceDecoder(VOCAB, EMBED, HIDDEN, 1, LATENT, max_length=10, word_dropout=1.0)
    z = torch.randn(2, LATENT)
    batch = {"tokens": TOKENS, "lengths": LENGTHS}
    all_unknown = TOKENS.masked_fill((TOKENS != BOS) & (TOKENS != PAD), UNK)
    assert torch.allclose(
        decoder.train().log_prob(batch, z), manual_log_prob(decoder, z, all_unknown)
    )
    assert torch.allclose(decoder.eval().log_prob(batch, z), manual_log_prob(decoder, z))


def test_dropout_acts_in_training_only_and_adds_no_weights():
    torch.manual_seed(0)
    plain = SequenceDecoder(VOCAB, EMBED, HIDDEN, 1, LATENT, max_length=10)
    dropped = SequenceDecoder(VOCAB, EMBED, HIDDEN, 1, LATENT, max_length=10, dropout=0.5)
    dropped.load_state_dict(plain.state_dict())  # the same keys: runs trained without it load
    z = torch.randn(2, LATENT)
    batch = {"tokens": TOKENS, "lengths": LENGTHS}
    assert torch.allclose(dropped.eval().log_prob(batch, z), plain.eval().log_prob(batch, z))
    dropped.train()
    assert not torch.allclose(dropped.log_prob(batch, z), dropped.log_prob(batch, z))

    encoder = SequenceEncoder(VOCAB, EMBED, HIDDEN, dropout=0.5)
    assert not torch.allclose(encoder.train()(batch), encoder(batch))
    assert torch.allclose(encoder.eval()(batch), encoder(batch))


def test_bag_of_words_loss_scores_each_token_from_z_alone():
    torch.manual_seed(0)
    plain = SequenceDecoder(VOCAB, EMBED, HIDDEN, 1, LATENT, max_length=10)
    assert (
        plain.auxiliary_loss({"tokens": TOKENS, "lengths": LENGTHS}, torch.zeros(2, LATENT)) is None
    )
    decoder = SequenceDecoder(VOCAB, EMBED, HIDDEN, 1, LATENT, max_length=10, bag_of_words=0.5)
    # Its own head only: runs trained without the option keep every weight name.
    assert set(decoder.state_dict()) - set(plain.state_dict()) == {
        "bag_of_words_head.weight",
        "bag_of_words_head.bias",
    }
    z = torch.randn(2, LATENT)
    log_probs = decoder.bag_of_words_head(z).log_softmax(dim=-1)
    expected = -0.5 * torch.stack(
        [log_probs[0, [4, 5, 6]].sum(), log_probs[1, [7]].sum()]
    )  # <eos> and padding not counted, order ignored
    batch = {"tokens": TOKENS, "lengths": LENGTHS}
    assert torch.allclose(decoder.auxiliary_loss(batch, z), expected)
    shuffled = {"tokens": TOKENS[:, [0, 3, 1, 2, 4, 5, 6]], "lengths": LENGTHS}
    assert torch.allclose(decoder.auxiliary_loss(shuffled, z), expected)


def test_generate_stops_as_soon_as_every_row_has_ended():
    torch.manual_seed(0)
    decoder = SequenceDecoder(VOCAB, EMBED, HIDDEN, 2, LATENT, max_length=40)
    with torch.no_grad():
        decoder.output.bias[EOS] = 2.0  # rows end after a few tokens, at different steps
    out = decoder.generate(torch.randn(64, LATENT), temperature=1.0)
    tokens, lengths = out["tokens"], out["lengths"]
    assert (tokens[:, 0] == BOS).all() and (tokens == EOS).any(dim=1).all()
    eos_at = (tokens == EOS).int().argmax(dim=1)
    assert torch.equal(lengths, eos_at + 1)
    assert (tokens[torch.arange(tokens.shape[1]) > eos_at[:, None]] == PAD).all()
    assert tokens.shape[1] == int(lengths.max()) < 42  # stopped with the last row to end
    assert not torch.isin(tokens[:, 1:], torch.tensor([BOS, UNK])).any()

    with torch.no_grad():
        decoder.output.bias[EOS] = -100.0  # never ends: max_length tokens, then it stops
    assert decoder.generate(torch.randn(3, LATENT), max_length=6)["tokens"].shape == (3, 8)


def test_greedy_and_truncated_sampling_pick_the_best_token():
    logits = torch.tensor([[0.0, 0.0, 1.0, 0.0, 3.0, 2.9], [0.0, 0.0, 5.0, 0.0, 1.0, 1.0]])
    best = torch.tensor([4, 2])
    assert torch.equal(choose_tokens(logits, temperature=0.0), best)
    assert torch.equal(choose_tokens(logits, temperature=1.0, top_k=1), best)
    assert torch.equal(choose_tokens(logits, temperature=1.0, top_p=0.01), best)


def test_encoder_features_ignore_padding():
    torch.manual_seed(0)
    encoder = SequenceEncoder(VOCAB, EMBED, HIDDEN, num_layers=2, bidirectional=True)
    features = encoder({"tokens": TOKENS, "lengths": LENGTHS})
    assert features.shape == (2, encoder.feature_dim) and encoder.feature_dim == 2 * HIDDEN
    alone = encoder({"tokens": TOKENS[1:, :3], "lengths": LENGTHS[1:]})
    assert torch.allclose(features[1:], alone, atol=1e-6)


# --- domain --------------------------------------------------------------------------------------


def test_the_domain_leaves_the_metric_suite_unimported_until_metrics_are_asked_for():
    """Reading, training and writing skip the MOSES suite's imports (scipy, ChemNet)."""
    code = "import sys, polyvae.plugins.molecules.domain; print(sorted(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "'polyvae.plugins.molecules.domain'" in result.stdout
    assert "'polyvae.plugins.molecules.metrics'" not in result.stdout


def test_the_plugin_registers_the_domain():
    registry = Registry()
    registry.add_plugin(molecules_plugin, "molecules")
    assert isinstance(registry.get_domain("molecules"), MoleculesDomain)


def test_moses_preset_builds_the_moses_networks(domain):
    config = config_of(domain, preset="moses")
    assert (config["latent_dim"], config["lr"], config["batch_size"]) == (128, 3e-4, 512)
    # MOSES's KL weight 0.05 is on a loss averaged over tokens; the ELBO here sums them.
    assert config["beta_max"] == pytest.approx(0.05 * 36.86)
    encoder, decoder = domain.build(config, MoleculeCodec.fit(MOLECULES, "smiles"), 128)
    assert (encoder.gru.hidden_size, encoder.gru.num_layers, encoder.feature_dim) == (256, 1, 256)
    assert (decoder.gru.hidden_size, decoder.gru.num_layers) == (512, 3)


def test_medium_preset_is_the_small_one_with_a_wider_decoder(domain):
    small, medium = config_of(domain, preset="small"), config_of(domain, preset="medium")
    assert {key for key in small if small[key] != medium[key]} == {"decoder_hidden", "preset"}
    encoder, decoder = domain.build(medium, MoleculeCodec.fit(MOLECULES, "smiles"), 64)
    assert (decoder.gru.hidden_size, decoder.gru.num_layers) == (512, 2)
    assert encoder.feature_dim == 2 * 128


def test_writers_produce_files_other_tools_read(tmp_path, domain):
    items = ["CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1", "C1CC"]  # the last is no molecule
    codec = MoleculeCodec.fit(["c1ccccc1", "CCO"], "smiles")

    domain.write(items, tmp_path / "out.csv", codec=codec)
    with open(tmp_path / "out.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["valid"] for row in rows] == ["true", "true", "false"]
    assert [row["novel"] for row in rows] == ["true", "false", "true"]
    assert (rows[0]["mw"], rows[0]["hbd"], rows[0]["lipinski"], rows[2]["qed"]) == (
        "180.159",
        "1",
        "1",
        "",
    )

    domain.write(items, tmp_path / "out.smi")
    supplier = Chem.SmilesMolSupplier(str(tmp_path / "out.smi"), delimiter="\t", titleLine=True)
    mols = [mol for mol in supplier]  # list(supplier) comes back empty (an RDKit quirk)
    assert mols[0].GetProp("_Name") == "1" and mols[0].GetProp("novel") == ""
    assert mols[2] is None

    domain.write(items, tmp_path / "out.sdf", codec=codec)
    mols = list(Chem.SDMolSupplier(str(tmp_path / "out.sdf")))
    assert [mol.GetProp("_Name") for mol in mols] == ["molecule 1", "molecule 2"]
    assert float(mols[0].GetProp("qed")) == pytest.approx(0.550, abs=1e-3)
    assert Chem.MolToSmiles(mols[1]) == "c1ccccc1"

    domain.write(items, tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as image:
        assert image.format == "PNG" and image.width > 0

    domain.write(items, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text().splitlines() == items
    with pytest.raises(UserError, match=r"not 'out\.xyz'"):
        domain.write(items, tmp_path / "out.xyz")
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "grid.png",
        "out.csv",
        "out.sdf",
        "out.smi",
        "out.txt",
    ]  # no temporary files left behind


def test_reconstruction_counts_the_same_molecule_however_written(domain):
    results = domain.reconstruction_metrics(["CCO", "c1ccccc1", "CCN"], ["OCC", "C1=CC=CC=C1", "C"])
    assert results == {"reconstruction_exact": pytest.approx(2 / 3)}


def test_conformance_kit(tmp_path, domain):
    from polyvae.testing import check_domain

    model = check_domain(domain, MOLECULES, tmp_path, config=TINY_NETWORKS)
    samples = model.sample(5, seed=0)
    assert len(samples) == 5 and all(isinstance(smiles, str) for smiles in samples)
    results = model.evaluate(MOLECULES[:8], k=2, samples=0)
    assert results["perplexity"] == pytest.approx(math.exp(results["nll_per_token"]))
    assert 0 <= results["reconstruction_exact"] <= 1


def test_selfies_model_conditioned_on_properties_trains_and_samples(tmp_path, domain):
    from polyvae.model import load
    from polyvae.trainer import train

    config = TINY_NETWORKS | {
        "representation": "selfies",
        "condition": ["qed", "logp"],
        "max_steps": 2,
        "epochs": 1,
        "batch_size": 8,
        "device": "cpu",
    }
    result = train(domain, MOLECULES, config, out=tmp_path / "run", progress=False, log=print)
    model = load(result.run_dir, device="cpu", domain=domain)
    assert model.condition_names == ["qed", "logp"]
    samples = model.sample(4, seed=0, condition={"qed": 0.6, "logp": 2.0})
    assert len(samples) == 4 and all(isinstance(smiles, str) for smiles in samples)
