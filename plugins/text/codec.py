"""Texts <-> token ids with a `tokenizers` tokenizer learned from the training texts.

Three tokenizers, each lossless (decoding a text's tokens gives the text back):

- ``bpe`` (default): byte-level BPE, as in GPT-2. Any text can be encoded; there are no unknown
  tokens.
- ``word``: one token per word or punctuation run, split as GPT-2 splits before merging (a word
  keeps its leading space), so spacing survives a round trip. The text's first word gets a space
  too (dropped again when decoding), so that each word has one token wherever it stands: with two
  forms, a decoder could put "eyes" after "the" and write "theeyes". Words outside the
  ``vocab_size`` most frequent ones become ``<unk>``.
- ``char``: one token per character; characters outside the vocabulary become ``<unk>``.

The special tokens of :mod:`polyvae.plugins.sequence` come first, so their ids match the networks'.

The codec also keeps the fitted texts as a :class:`TrainingSet` of hashes, so that ``polyvae
sample`` can say how many generated texts are novel. Runs saved before it did have no such file:
their codec's ``novel`` is None, and no novelty is reported for them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from polyvae.domain import Batch
from polyvae.errors import UserError
from polyvae.files import atomic_write_json, atomic_write_text, read_json
from polyvae.plugins.sequence import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, padded_token_ids
from polyvae.plugins.text.choices import TOKENIZERS
from polyvae.plugins.training_set import TrainingSet

FORMAT_VERSION = 1
CODEC_FILE = "codec.json"
TOKENIZER_FILE = "tokenizer.json"


def _untrained(kind: str, vocab_size: int) -> tuple[Tokenizer, trainers.Trainer]:
    specials = list(SPECIAL_TOKENS)
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer: trainers.Trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        return tokenizer, trainer
    tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS[UNK]))
    if kind == "word":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False
    )
    return tokenizer, trainer


class TextCodec:
    """Encodes texts to ``{"tokens", "lengths"}`` batches for the sequence networks and back.

    ``max_tokens`` is the most tokens of any fitted text (``<bos>``/``<eos>`` not counted): the
    decoder generates at most that many by default. ``training_set`` holds the fitted texts'
    hashes (None for runs saved without them).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        kind: str,
        max_tokens: int,
        training_set: TrainingSet | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.kind = kind
        self.max_tokens = max_tokens
        self.training_set = training_set

    @classmethod
    def fit(cls, texts: Sequence[str], kind: str = "bpe", vocab_size: int = 8000) -> TextCodec:
        if kind not in TOKENIZERS:
            raise UserError(f"tokenizer {kind!r} is not one of: {', '.join(TOKENIZERS)}")
        tokenizer, trainer = _untrained(kind, vocab_size)
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.train_from_iterator(texts, trainer)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{SPECIAL_TOKENS[BOS]} $A {SPECIAL_TOKENS[EOS]}",
            special_tokens=[(SPECIAL_TOKENS[BOS], BOS), (SPECIAL_TOKENS[EOS], EOS)],
        )
        tokenizer.enable_padding(pad_id=PAD, pad_token=SPECIAL_TOKENS[PAD])
        codec = cls(tokenizer, kind, 0, TrainingSet.of([normal_form(text) for text in texts]))
        codec.max_tokens = max((len(row) for row in codec.token_ids(texts)), default=0)
        return codec

    @classmethod
    def load(cls, directory: Path) -> TextCodec:
        meta = read_json(directory / CODEC_FILE)
        if meta.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{directory / CODEC_FILE}: unsupported text codec format")
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        training_set = TrainingSet.load(directory) if TrainingSet.saved_in(directory) else None
        return cls(tokenizer, meta["tokenizer"], meta["max_tokens"], training_set)

    def save(self, directory: Path) -> None:
        atomic_write_text(directory / TOKENIZER_FILE, self.tokenizer.to_str(pretty=True))
        if self.training_set is not None:
            self.training_set.save(directory)
        atomic_write_json(
            directory / CODEC_FILE,
            {
                "format_version": FORMAT_VERSION,
                "tokenizer": self.kind,
                "max_tokens": self.max_tokens,
                "special_tokens": list(SPECIAL_TOKENS),
            },
        )

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, without ``<bos>``, ``<eos>`` or padding."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def encode(self, items: Sequence[str]) -> Batch:
        """Texts -> token ids padded to the longest, each row ``<bos> ... <eos>``."""
        if not items:
            return {
                "tokens": torch.zeros(0, 2, dtype=torch.long),
                "lengths": torch.zeros(0, dtype=torch.long),
            }
        tokens = padded_token_ids(self.tokenizer, [str(item) for item in items])
        return {"tokens": tokens, "lengths": (tokens != PAD).sum(dim=1)}

    def decode(self, batch: Batch) -> list[str]:
        """Token ids -> texts. Everything from a row's first ``<eos>`` on is dropped; ``<unk>``
        stays visible as ``<unk>``. Texts are stripped, as the reader strips them (and as the
        word tokenizer's added first space needs)."""
        rows = []
        for row in batch["tokens"].cpu().tolist():
            end = row.index(EOS) if EOS in row else len(row)
            rows.append([token for token in row[:end] if token not in (PAD, BOS)])
        texts = self.tokenizer.decode_batch(rows, skip_special_tokens=False)
        return [text.strip() for text in texts]

    @property
    def novel(self) -> Callable[[Sequence[str]], np.ndarray] | None:
        """``novel(texts)``: for each text, whether its normal form was absent from the fitted
        texts; None when the run kept no training set (so callers report no novelty)."""
        training_set = self.training_set
        if training_set is None:
            return None
        return lambda texts: training_set.novel([normal_form(text) for text in texts])


def normal_form(text: str) -> str:
    """A text as the reader gives it (Unicode NFC, stripped): how texts are compared."""
    return unicodedata.normalize("NFC", str(text)).strip()
