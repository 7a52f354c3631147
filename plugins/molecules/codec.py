"""Molecules <-> token ids: a `tokenizers` WordLevel vocabulary over atom-level SMILES or SELFIES.

Items are SMILES strings. With ``representation="selfies"`` each is written as SELFIES (any
sequence of SELFIES symbols decodes to a molecule within SELFIES's valence rules) before
tokenising, and decoded back to SMILES. With ``representation="kekule"`` each is written as
Kekulé SMILES: aromatic rings as alternating single and double bonds (``C1=CC=CC=C1``, not
``c1ccccc1``), in the molecule's given atom order, so a decoder never writes an aromatic ring
RDKit cannot kekulize.

A molecule is tokenised as it is given. When one of its tokens is outside the vocabulary (say
the explicit hydrogen of ``[H]N=c1...``, a form some data sets keep), it is tokenised instead in
the form the vocabulary was learned on: RDKit's canonical SMILES, explicit hydrogens removed,
which is the same molecule. A molecule that cannot be encoded either way makes
:meth:`MoleculeCodec.encode` raise :class:`UnencodableItem` naming it and its token, rather than
mapping the token to ``<unk>`` and quietly scoring or reconstructing a different molecule.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import selfies
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from polyvae.domain import Batch
from polyvae.errors import UnencodableItem, UserError
from polyvae.files import atomic_write_json, atomic_write_text, read_json
from polyvae.plugins.molecules.chemistry import canonical_smiles, kekule_smiles, randomized_smiles
from polyvae.plugins.sequence import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, padded_token_ids
from polyvae.plugins.shared import parallel_map
from polyvae.plugins.training_set import TrainingSet

# Atom-level SMILES tokens (Schwaller et al. 2019, Molecular Transformer): bracket atoms such as
# [nH] or [C@@H] whole, the two-letter organic atoms Br and Cl, two-digit ring closures (%10).
SMILES_PATTERN = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$"
    r"|%[0-9]{2}|[0-9])"
)
SELFIES_PATTERN = r"\[[^\]]+]|\."  # one SELFIES symbol, or the dot between fragments
PATTERNS = {"smiles": SMILES_PATTERN, "kekule": SMILES_PATTERN, "selfies": SELFIES_PATTERN}

FORMAT_VERSION = 1
CODEC_FILE = "codec.json"
TOKENIZER_FILE = "tokenizer.json"


def to_sequence(smiles: str, representation: str) -> str:
    """The string that is tokenised: ``smiles`` itself, its Kekulé form or its SELFIES. Raises
    ValueError saying why when the representation cannot express the molecule (e.g. SELFIES and
    an atom over its default valence)."""
    if representation == "smiles":
        return smiles
    if representation == "kekule":
        return kekule_smiles(smiles)
    try:
        return selfies.encoder(smiles, strict=True)
    except selfies.EncoderError as error:
        message = str(error).strip().splitlines()[-1].strip()
        raise ValueError(f"cannot be written as SELFIES: {message}") from None


def sequence_problem(smiles: str, representation: str, max_length: int) -> str | None:
    """Why a valid molecule cannot be used for training (too long, no SELFIES), or None."""
    try:
        text = to_sequence(smiles, representation)
    except ValueError as error:
        return str(error)
    count = len(_pre_tokenizer(representation).pre_tokenize_str(text))
    if count > max_length:
        return f"{count} tokens, more than max_length={max_length}"
    return None


@functools.cache
def _pre_tokenizer(representation: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(Regex(PATTERNS[representation]), behavior="isolated")


class MoleculeCodec:
    """Encodes SMILES to ``{"tokens", "lengths"}`` batches for the sequence networks and back.

    It also remembers which molecules it was fitted on (their canonical SMILES, as a
    :class:`TrainingSet` of hashes), so that generated molecules can be flagged as novel.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        representation: str,
        augment: bool,
        training_set: TrainingSet,
    ) -> None:
        self.tokenizer = tokenizer
        self.representation = representation
        self.augment = augment
        self.training_set = training_set

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
        return cls(tokenizer, representation, augment, TrainingSet.of(smiles))

    def adapted(self, smiles: Sequence[str], representation: str, augment: bool) -> MoleculeCodec:
        """This codec's vocabulary, for fine-tuning on ``smiles`` (canonical): in
        ``representation``, which must tokenise as this one's does (SMILES and Kekulé SMILES
        share their tokens; SELFIES has its own), and remembering ``smiles`` too as fitted."""
        if PATTERNS[representation] != PATTERNS[self.representation]:
            raise UserError(
                f"cannot fine-tune a {self.representation} model on {representation}: their "
                "tokens differ"
            )
        return MoleculeCodec(
            self.tokenizer, representation, augment, self.training_set.joined(smiles)
        )

    @classmethod
    def load(cls, directory: Path) -> MoleculeCodec:
        meta = read_json(directory / CODEC_FILE)
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{directory / CODEC_FILE}: unsupported molecule codec format")
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        training_set = TrainingSet.load(directory)
        return cls(tokenizer, meta["representation"], meta["augment"], training_set)

    def save(self, directory: Path) -> None:
        atomic_write_text(directory / TOKENIZER_FILE, self.tokenizer.to_str(pretty=True))
        self.training_set.save(directory)
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
        """SMILES -> token ids padded to the longest, each row ``<bos> ... <eos>``. Raises
        :class:`UnencodableItem` naming every molecule that has no form the vocabulary covers."""
        if not items:
            return {
                "tokens": torch.zeros(0, 2, dtype=torch.long),
                "lengths": torch.zeros(0, dtype=torch.long),
            }
        sequences, problems = _sequences_and_problems(items, self.representation)
        tokens = self._token_ids(sequences)
        for row in (tokens == UNK).any(dim=1).nonzero().flatten().tolist():
            problem = self._unknown_token_problem(sequences[row])
            assert problem is not None  # the row holds an unknown token
            problems[row] = problem
        if problems:
            self._normalise(items, sequences, problems)
            if problems:
                raise UnencodableItem(problems, items, noun="molecule")
            tokens = self._token_ids(sequences)
        return {"tokens": tokens, "lengths": (tokens != PAD).sum(dim=1)}

    def _token_ids(self, sequences: list[str]) -> torch.Tensor:
        return padded_token_ids(self.tokenizer, sequences)

    def _unknown_token_problem(self, sequence: str) -> str | None:
        """Why ``sequence`` cannot be tokenised (its first unknown token), or None."""
        encoding = self.tokenizer.encode(sequence)
        if UNK not in encoding.ids:
            return None
        start, end = encoding.offsets[encoding.ids.index(UNK)]
        return (
            f"has the token '{sequence[start:end]}', which is not in the vocabulary learned from "
            "the training data"
        )

    def _normalise(
        self, items: Sequence[str], sequences: list[str], problems: dict[int, str]
    ) -> None:
        """Give each molecule in ``problems`` its canonical form, the one the vocabulary was
        learned on, where that form can be tokenised: its sequence is replaced and its problem
        dropped. Molecules that encode as given keep their form, so their encodings (and the
        model's outputs for them) stay as they were."""
        for row in list(problems):
            canonical = canonical_smiles(items[row])
            if canonical is None or canonical == items[row]:
                continue
            try:
                sequence = to_sequence(canonical, self.representation)
            except ValueError as error:
                problems[row] = str(error)
                continue
            problem = self._unknown_token_problem(sequence)
            if problem:
                problems[row] = problem
            else:
                sequences[row] = sequence
                del problems[row]

    def encode_augmented(self, items: Sequence[str], seed: int) -> Batch:
        """The items as random SMILES (a new atom order for each ``seed``); a molecule whose
        random form needs a token outside the vocabulary keeps its given form."""
        if not items:
            return self.encode(items)
        variants = randomized_smiles(items, seed)
        unknown = (self._token_ids(_sequences(variants, self.representation)) == UNK).any(dim=1)
        chosen = [
            item if has_unknown else variant
            for item, variant, has_unknown in zip(items, variants, unknown.tolist(), strict=True)
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
        return self.training_set.novel(canonical)


def _sequences(smiles: Sequence[str], representation: str) -> list[str]:
    """What is tokenised for each molecule; raises UnencodableItem for those the representation
    cannot write."""
    sequences, problems = _sequences_and_problems(smiles, representation)
    if problems:
        raise UnencodableItem(problems, smiles, noun="molecule")
    return sequences


def _sequences_and_problems(
    smiles: Sequence[str], representation: str
) -> tuple[list[str], dict[int, str]]:
    """What is tokenised for each molecule ("" where the representation cannot write it), and
    why not, by position, for those."""
    if representation == "smiles":
        return list(smiles), {}
    # Each molecule goes through RDKit or SELFIES (0.1-0.3 ms), minutes for all of MOSES.
    convert = functools.partial(_sequence_or_problem, representation=representation)
    results = parallel_map(convert, smiles, preload=__name__)
    sequences = [sequence for sequence, _ in results]
    problems = {index: problem for index, (_, problem) in enumerate(results) if problem}
    return sequences, problems


def _sequence_or_problem(smiles: str, representation: str) -> tuple[str, str | None]:
    try:
        return to_sequence(smiles, representation), None
    except ValueError as error:
        return "", str(error)


def _selfies_to_smiles(text: str) -> str:
    try:
        return selfies.decoder(text)
    except selfies.DecoderError:
        return text
