"""Molecules <-> token ids: a `tokenizers` WordLevel vocabulary over atom-level SMILES or SELFIES.

Items are SMILES strings. With ``representation="selfies"`` each is written as SELFIES (any
sequence of SELFIES symbols decodes to a molecule within SELFIES's valence rules) before
tokenising, and decoded back to SMILES.

A molecule holding a token outside the vocabulary cannot be encoded: :meth:`MoleculeCodec.encode`
raises :class:`UserError` naming it, rather than mapping the token to ``<unk>`` and quietly
scoring or reconstructing a different molecule.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import selfies
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from polyvae.domain import Batch
from polyvae.errors import UserError
from polyvae.files import (
    atomic_write_json,
    atomic_write_text,
    load_tensors,
    read_json,
    save_tensors,
)
from polyvae.plugins.molecules.chemistry import canonical_smiles, randomized_smiles
from polyvae.plugins.sequence import BOS, EOS, PAD, SPECIAL_TOKENS, UNK

# Atom-level SMILES tokens (Schwaller et al. 2019, Molecular Transformer): bracket atoms such as
# [nH] or [C@@H] whole, the two-letter organic atoms Br and Cl, two-digit ring closures (%10).
SMILES_PATTERN = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$"
    r"|%[0-9]{2}|[0-9])"
)
SELFIES_PATTERN = r"\[[^\]]+]|\."  # one SELFIES symbol, or the dot between fragments
PATTERNS = {"smiles": SMILES_PATTERN, "selfies": SELFIES_PATTERN}

FORMAT_VERSION = 1
CODEC_FILE = "codec.json"
TOKENIZER_FILE = "tokenizer.json"
TRAINING_SET_FILE = "training_set.safetensors"


def to_sequence(smiles: str, representation: str) -> str:
    """The string that is tokenised: ``smiles`` itself, or its SELFIES. Raises ValueError when
    SELFIES cannot express the molecule (e.g. an atom over its default valence)."""
    if representation == "smiles":
        return smiles
    try:
        return selfies.encoder(smiles, strict=True)
    except selfies.EncoderError as error:
        raise ValueError(str(error).strip().splitlines()[-1].strip()) from None


def sequence_problem(smiles: str, representation: str, max_length: int) -> str | None:
    """Why a valid molecule cannot be used for training (too long, no SELFIES), or None."""
    try:
        text = to_sequence(smiles, representation)
    except ValueError as error:
        return f"cannot be written as SELFIES: {error}"
    count = len(_pre_tokenizer(representation).pre_tokenize_str(text))
    if count > max_length:
        return f"{count} tokens, more than max_length={max_length}"
    return None


@functools.cache
def _pre_tokenizer(representation: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(PATTERNS[representation]), behavior="isolated")


class MoleculeCodec:
    """Encodes SMILES to ``{"tokens", "lengths"}`` batches for the sequence networks and back.

    It also remembers which molecules it was fitted on (as 64-bit hashes of their canonical
    SMILES), so that generated molecules can be flagged as novel without shipping the data.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        representation: str,
        augment: bool,
        training_hashes: np.ndarray,
    ) -> None:
        self.tokenizer = tokenizer
        self.representation = representation
        self.augment = augment
        self.training_hashes = training_hashes

    @classmethod
    def fit(
        cls, smiles: Sequence[str], representation: str, augment: bool = False, seed: int = 0
    ) -> MoleculeCodec:
        """Learn the vocabulary of ``smiles`` (canonical, as the reader returns them). With
        ``augment``, one randomised SMILES per molecule joins the corpus, so the ring-closure
        digits and chirality marks of other atom orders are known too."""
        sequences = _sequences(smiles, representation)
        if augment:
            sequences += _sequences(randomized_smiles(smiles, seed), representation)
        tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS[UNK]))
        tokenizer.pre_tokenizer = _pre_tokenizer(representation)
        tokenizer.decoder = decoders.Fuse()
        tokenizer.train_from_iterator(
            sequences,
            trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), show_progress=False),
        )
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{SPECIAL_TOKENS[BOS]} $A {SPECIAL_TOKENS[EOS]}",
            special_tokens=[(SPECIAL_TOKENS[BOS], BOS), (SPECIAL_TOKENS[EOS], EOS)],
        )
        tokenizer.enable_padding(pad_id=PAD, pad_token=SPECIAL_TOKENS[PAD])
        return cls(tokenizer, representation, augment, np.unique(_hashes(smiles)))

    @classmethod
    def load(cls, directory: Path) -> MoleculeCodec:
        meta = read_json(directory / CODEC_FILE)
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{directory / CODEC_FILE}: unsupported molecule codec format")
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        hashes = load_tensors(directory / TRAINING_SET_FILE)["hashes"].numpy()
        return cls(tokenizer, meta["representation"], meta["augment"], hashes)

    def save(self, directory: Path) -> None:
        atomic_write_text(directory / TOKENIZER_FILE, self.tokenizer.to_str(pretty=True))
        save_tensors(
            directory / TRAINING_SET_FILE, {"hashes": torch.from_numpy(self.training_hashes)}
        )
        atomic_write_json(
            directory / CODEC_FILE,
            {
                "format_version": FORMAT_VERSION,
                "representation": self.representation,
                "augment": self.augment,
                "special_tokens": list(SPECIAL_TOKENS),
            },
        )

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, items: Sequence[str]) -> Batch:
        """SMILES -> token ids padded to the longest, each row ``<bos> ... <eos>``."""
        if not items:
            return {
                "tokens": torch.zeros(0, 2, dtype=torch.long),
                "lengths": torch.zeros(0, dtype=torch.long),
            }
        sequences = _sequences(items, self.representation)
        encodings = self.tokenizer.encode_batch(sequences)
        tokens = torch.tensor([encoding.ids for encoding in encodings], dtype=torch.long)
        unknown = (tokens == UNK).nonzero()
        if len(unknown):
            row, column = unknown[0].tolist()
            start, end = encodings[row].offsets[column]
            raise UserError(
                f"molecule {row + 1} '{items[row]}' has the token '{sequences[row][start:end]}', "
                "which is not in the vocabulary learned from the training data"
            )
        return {"tokens": tokens, "lengths": (tokens != PAD).sum(dim=1)}

    def encode_augmented(self, items: Sequence[str], seed: int) -> Batch:
        """The items as random SMILES (a new atom order for each ``seed``); a molecule whose
        random form needs a token outside the vocabulary keeps its given form."""
        variants = randomized_smiles(items, seed)
        encodings = self.tokenizer.encode_batch(_sequences(variants, self.representation))
        chosen = [
            item if UNK in encoding.ids else variant
            for item, variant, encoding in zip(items, variants, encodings, strict=True)
        ]
        return self.encode(chosen)

    def decode(self, batch: Batch) -> list[str]:
        """Token ids -> canonical SMILES; a string that is no valid molecule is kept as decoded."""
        tokens = batch["tokens"].cpu()
        # Everything from a row's first <eos> on is not part of the molecule.
        tokens = tokens.masked_fill((tokens == EOS).cumsum(dim=1) > 0, PAD)
        texts = self.tokenizer.decode_batch(tokens.tolist(), skip_special_tokens=True)
        if self.representation == "selfies":
            texts = [_selfies_to_smiles(text) for text in texts]
        return [canonical_smiles(text) or text for text in texts]

    def novel(self, smiles: Sequence[str]) -> np.ndarray:
        """For each molecule, whether its canonical SMILES was absent from the fitted data."""
        canonical = [canonical_smiles(text) or text for text in smiles]
        return ~np.isin(_hashes(canonical), self.training_hashes)


def _sequences(smiles: Sequence[str], representation: str) -> list[str]:
    sequences = []
    for index, item in enumerate(smiles):
        try:
            sequences.append(to_sequence(item, representation))
        except ValueError as error:
            raise UserError(
                f"molecule {index + 1} '{item}' cannot be written as SELFIES: {error}"
            ) from None
    return sequences


def _selfies_to_smiles(text: str) -> str:
    try:
        return selfies.decoder(text)
    except selfies.DecoderError:
        return text


def _hashes(smiles: Sequence[str]) -> np.ndarray:
    """One 64-bit hash per string. Stored for the 1.6M MOSES molecules they take 13 MB, and a
    novel molecule is taken for a known one with a chance under 1e-13."""
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True
            )
            for text in smiles
        ],
        dtype=np.int64,
    )
