"""The text domain: short texts through a learned tokenizer and GRU networks (Bowman et al. 2016).

Items are ``str``. With ``label_column`` set, the reader returns :class:`LabelledText` items (a
``str`` carrying its label), and the properties ``label`` (a numeric label's value) and
``label:VALUE`` (1 for texts labelled VALUE, else 0) let the engine condition on the label, e.g.
``--set label_column=topic --set condition=label:sports,label:music``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polyvae.config import Option
from polyvae.domain import Batch, Domain, ReadReport
from polyvae.errors import ConfigError, UserError
from polyvae.plugins.sequence_options import network_options
from polyvae.plugins.shared import bundled_run, label_properties
from polyvae.plugins.text.choices import STRATEGIES, TOKENIZERS

# The pieces below import torch, tokenizers and sacrebleu: each method imports what it uses, so
# that listing the plugins (which creates the domain) loads none of them.
if TYPE_CHECKING:
    from torch import Tensor

    from polyvae.plugins.sequence import SequenceDecoder, SequenceEncoder
    from polyvae.plugins.text.codec import TextCodec

# Against posterior collapse, where the decoder learns to ignore z (Bowman et al. 2016): a KL
# warm-up, and free bits (Kingma et al. 2016), which stop penalising a latent dimension's KL below
# 0.2 nats so that every dimension is worth using. That keeps z in use but holds little in it;
# the ``small`` preset below holds a KL target and adds word dropout, for a z that carries the
# sentence (docs/text.md).
TRAINING_DEFAULTS: dict[str, Any] = {
    "beta_schedule": "linear",
    "beta_warmup_steps": 3000,
    "free_bits": 0.2,
    "batch_size": 64,
}

# The bundled model's recipe (docs/text.md has the curves it was chosen from): whole words, so
# that samples hold no invented words; a KL target of 60 nats, above the 40 nats a test sentence
# costs the same decoder as a plain language model, so that z can hold all of it; word dropout,
# so that the decoder leans on z instead of on the words it wrote. Up to 10,000 steps of 64 texts
# (17 passes over the 38k training sentences); early stopping ended the bundled run after 7,500,
# 37 minutes on one core of this 2-core CPU.
SMALL_PRESET: dict[str, Any] = {
    **TRAINING_DEFAULTS,
    "tokenizer": "word",
    "vocab_size": 16000,
    "latent_dim": 64,
    "kl_target": 60.0,
    "word_dropout": 0.3,
    "steps_per_epoch": 500,
    "epochs": 20,
    "time_limit": 120.0,
}


class TextDomain(Domain):
    """See the module docstrings of the reader, codec, decoding and metrics for each piece."""

    name = "text"
    description = "short texts: a learned tokenizer (byte-level BPE, words or characters), GRUs"
    likelihood_unit = "token"
    options = (
        Option(
            "tokenizer",
            "bpe",
            "byte-level BPE, whole words, or characters",
            choices=TOKENIZERS,
        ),
        Option("vocab_size", 8000, "largest vocabulary the tokenizer learns", minimum=16),
        Option("column", "text", "CSV column or JSON Lines field of the texts"),
        Option("label_column", "", "CSV column or JSON Lines field of a label to condition on"),
        Option(
            "too_long",
            "skip",
            "what to do with texts over max_length (each is counted in the read report)",
            choices=("skip", "truncate"),
        ),
        *network_options(
            max_length=64,
            max_length_help="most words and punctuation marks per text (characters with "
            "tokenizer=char)",
            embedding_dim=256,
            encoder_hidden=256,
            decoder_hidden=512,
            decoder_layers=1,
        ),
    )
    presets = {"small": SMALL_PRESET}
    read_options = ("tokenizer", "column", "label_column", "max_length", "too_long")
    # The engine keys this domain wants by default (see TRAINING_DEFAULTS).
    engine_defaults = TRAINING_DEFAULTS
    generate_options = (
        Option(
            "strategy",
            "sample",
            "sample (at --temperature, with --top-k/--top-p), greedy, or beam",
            choices=STRATEGIES,
        ),
        Option("top_k", 0, "sample only among the k most likely tokens (0: all)", minimum=0),
        Option(
            "top_p",
            1.0,
            "sample only among the most likely tokens that hold this probability",
            minimum=0.0,
            maximum=1.0,
        ),
        Option("beam_size", 4, "beams per text with --strategy beam", minimum=1),
        Option("max_length", 0, "most tokens per text (0: the longest training text)", minimum=0),
    )

    def resolve_config(self, *layers: Mapping[str, Any]) -> dict[str, Any]:
        """As the engine resolves it, reading the old ``word_keep`` (in runs and config files
        written before) as ``word_dropout``."""
        return super().resolve_config(*map(_word_keep_as_dropout, layers))

    # --- data ----------------------------------------------------------------------------------

    def read(self, source: str | Path, config: Mapping[str, Any]) -> tuple[list[str], ReadReport]:
        from polyvae.plugins.text.reader import TextFormat, read_texts

        form = TextFormat(
            column=config["column"],
            label_column=config["label_column"],
            max_length=config["max_length"],
            unit="char" if config["tokenizer"] == "char" else "word",
            too_long=config["too_long"],
        )
        return read_texts(source, form)

    def parse_item(self, text: str) -> str:
        text = unicodedata.normalize("NFC", text).strip()
        if not text:
            raise UserError("an empty text cannot be encoded")
        return text

    def format_item(self, item: str) -> str:
        return " ".join(str(item).splitlines())  # one text, one line

    # --- model ---------------------------------------------------------------------------------

    def fit_codec(self, items: Sequence[str], config: Mapping[str, Any]) -> TextCodec:
        from polyvae.plugins.text.codec import TextCodec

        return TextCodec.fit(items, config["tokenizer"], config["vocab_size"])

    def load_codec(self, directory: Path, config: Mapping[str, Any]) -> TextCodec:
        from polyvae.plugins.text.codec import TextCodec

        return TextCodec.load(directory)

    def build(
        self,
        config: Mapping[str, Any],
        codec: TextCodec,  # type: ignore[override]  # the domain's own codec
        latent_dim: int,
    ) -> tuple[SequenceEncoder, SequenceDecoder]:
        from polyvae.plugins.sequence import build_networks
        from polyvae.plugins.text.decoding import TextDecoder

        # max_length counts words, the decoder tokens: it generates up to the longest training
        # text's.
        max_tokens = max(codec.max_tokens, 1)
        return build_networks(config, codec.vocab_size, latent_dim, max_tokens, TextDecoder)

    # --- quality and properties ----------------------------------------------------------------

    def metrics(
        self, generated: Sequence[str], reference: Sequence[str], training: Sequence[str]
    ) -> dict[str, float]:
        """Diversity and novelty (see :mod:`polyvae.plugins.text.metrics`); the held-out
        reference texts are not needed."""
        from polyvae.plugins.text.metrics import text_metrics

        return text_metrics([str(text) for text in generated], [str(text) for text in training])

    def reconstruction_metrics(
        self, originals: Sequence[str], reconstructions: Sequence[str]
    ) -> dict[str, float]:
        """Corpus BLEU and chrF (sacrebleu, 0-100) of the reconstructions and the share rebuilt
        exactly (see :mod:`polyvae.plugins.text.metrics`)."""
        from polyvae.plugins.text.metrics import reconstruction_metrics

        return reconstruction_metrics(
            [str(text) for text in originals], [str(text) for text in reconstructions]
        )

    def unit_counts(self, batch: Batch) -> Tensor:
        from polyvae.plugins.sequence import predicted_tokens

        return predicted_tokens(batch)

    def properties(self, items: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """``label``: the label as a number; ``label:VALUE``: 1.0 or 0.0. NaN for texts without
        a label (generated ones, say) and for non-numeric labels under ``label``."""
        return label_properties(items, names, "with --set label_column=NAME")

    def pretrained(self) -> Path | None:
        return bundled_run("text")


# Word dropout's name in this domain before molecules and texts shared their options: the share
# of decoder input tokens kept, so word_dropout = 1 - word_keep.
OLD_WORD_KEEP = Option("word_keep", 1.0, "1 - word_dropout", minimum=0.0, maximum=1.0)


def _word_keep_as_dropout(layer: Mapping[str, Any]) -> Mapping[str, Any]:
    if OLD_WORD_KEEP.name not in layer:
        return layer
    if "word_dropout" in layer:
        raise ConfigError("config keys 'word_keep' and 'word_dropout' are one setting: give one")
    renamed = {key: value for key, value in layer.items() if key != OLD_WORD_KEEP.name}
    renamed["word_dropout"] = 1.0 - OLD_WORD_KEEP.coerce(layer[OLD_WORD_KEEP.name])
    return renamed
