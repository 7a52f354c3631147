"""The options that size the sequence domains' GRU networks (:mod:`polyvae.plugins.sequence`),
apart from the networks so that declaring a domain's options imports no torch."""

from __future__ import annotations

from polyvae.config import Option


def network_options(
    *,
    max_length: int,
    max_length_help: str,
    embedding_dim: int,
    encoder_hidden: int,
    decoder_hidden: int,
    decoder_layers: int,
) -> tuple[Option, ...]:
    """The options :func:`polyvae.plugins.sequence.build_networks` reads, with a domain's
    defaults. ``max_length`` counts what the domain's reader counts (tokens, words), so the domain
    words its help."""
    return (
        Option("max_length", max_length, max_length_help, minimum=1),
        Option("embedding_dim", embedding_dim, "size of the token embeddings", minimum=1),
        Option(
            "encoder_hidden",
            encoder_hidden,
            "units per direction of each encoder GRU layer",
            minimum=1,
        ),
        Option("encoder_layers", 1, "encoder GRU layers", minimum=1),
        Option("encoder_bidirectional", True, "read the tokens in both directions"),
        Option("decoder_hidden", decoder_hidden, "units of each decoder GRU layer", minimum=1),
        Option("decoder_layers", decoder_layers, "decoder GRU layers", minimum=1),
        Option(
            "word_dropout",
            0.0,
            "share of decoder input tokens replaced by <unk> in training (Bowman et al. 2016)",
            minimum=0.0,
            maximum=1.0,
        ),
        Option(
            "dropout",
            0.0,
            "dropout on the token embeddings and the decoder's outputs in training, against "
            "memorising a small corpus",
            minimum=0.0,
            maximum=0.9,
        ),
        Option(
            "bag_of_words",
            0.0,
            "weight of a bag-of-words loss in training (Zhao et al. 2017): z alone must predict "
            "the item's tokens, so it holds them for reconstruction (0: off)",
            minimum=0.0,
        ),
        Option(
            "tie_embeddings",
            False,
            "the decoder's output layer reuses its token embedding (Press and Wolf 2017): far "
            "fewer weights for a large vocabulary",
        ),
    )
