"""GRU networks over token sequences, shared by the sequence domains (molecules, texts): the
encoder and decoder built (:func:`build_networks`) from the options that size them
(:func:`polyvae.plugins.sequence_options.network_options`).

A batch is ``{"tokens": LongTensor (N, L), "lengths": LongTensor (N,)}``: each row starts with
``<bos>``, ends with ``<eos>`` and is padded with ``<pad>`` up to the batch's width; ``lengths``
counts the tokens of a row including ``<bos>`` and ``<eos>``. Codecs build their vocabularies with
:data:`SPECIAL_TOKENS` first, so the ids below hold in every vocabulary, and encode data sets
with :func:`padded_token_ids`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from polyvae.device import int8_products_enabled
from polyvae.domain import Batch, Decoder, Encoder

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")  # position = id


# Sequences per tokenizer call when encoding a data set. A `tokenizers` Encoding keeps offsets,
# token strings and masks beside the ids, several kilobytes for a 50-token row, and the
# allocator keeps that memory after it is freed: all of MOSES in one call held 12 GB.
ENCODE_CHUNK = 16_384


def padded_token_ids(tokenizer: Tokenizer, sequences: Sequence[str]) -> Tensor:
    """Token ids of ``sequences`` (with the tokenizer's special tokens), each row padded with
    ``<pad>`` to the longest row, encoded :data:`ENCODE_CHUNK` sequences at a time."""
    chunks = []
    for start in range(0, len(sequences), ENCODE_CHUNK):
        encodings = tokenizer.encode_batch(list(sequences[start : start + ENCODE_CHUNK]))
        chunks.append(torch.tensor([encoding.ids for encoding in encodings], dtype=torch.long))
    width = max(chunk.shape[1] for chunk in chunks)
    return torch.cat([F.pad(chunk, (0, width - chunk.shape[1]), value=PAD) for chunk in chunks])


def trimmed(batch: Batch) -> tuple[Tensor, Tensor]:
    """Tokens cut to the batch's longest row (rows were padded to the whole data set's longest),
    and the lengths."""
    lengths = batch["lengths"]
    return batch["tokens"][:, : int(lengths.max())], lengths


def predicted_tokens(batch: Batch) -> Tensor:
    """Tokens per row that the decoder predicts: all after ``<bos>``, ``<eos>`` included."""
    return batch["lengths"] - 1


class SequenceEncoder(Encoder):
    """Token embedding and a multi-layer GRU; the features are the last layer's final states of
    both directions, concatenated."""

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            embedding_dim, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional
        )
        self.directions = 2 if bidirectional else 1
        self.feature_dim = hidden_size * self.directions

    def forward(self, batch: Batch) -> Tensor:
        tokens, lengths = trimmed(batch)
        # Packing makes the backward direction start at each row's own <eos>, not at padding.
        packed = pack_padded_sequence(
            self.dropout(self.embedding(tokens)),
            lengths.cpu(),
            batch_first=True,
            enforce_sorted=False,
        )
        _, hidden = self.gru(packed)  # (layers * directions, N, hidden)
        return hidden[-self.directions :].transpose(0, 1).reshape(tokens.shape[0], -1)


class SequenceDecoder(Decoder):
    """GRU language model conditioned on z twice, as in the MOSES VAE: a linear map of z is the
    initial state of every layer, and z joins the token embedding at every input step.

    ``max_length`` bounds generation: the most tokens of an item, ``<bos>`` and ``<eos>`` not
    counted. ``word_dropout`` (Bowman et al. 2016) replaces input tokens by ``<unk>`` with that
    probability while training, so the decoder must lean on z rather than on the previous tokens.
    ``dropout`` drops embedding and output units while training (generation, which unrolls the
    GRU in :class:`GruSteps`, runs without it, as evaluation does). ``bag_of_words`` > 0 adds a
    training loss with that weight (Zhao et al. 2017): a linear map of z alone must predict every
    token of the item, order ignored, so z has to hold the item's tokens rather than only what
    helps a decoder that also reads the previous ones. ``tie_embeddings`` makes the output layer
    reuse the input embedding (:class:`TiedOutput`).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        latent_dim: int,
        max_length: int,
        word_dropout: float = 0.0,
        dropout: float = 0.0,
        bag_of_words: float = 0.0,
        tie_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.dropout = nn.Dropout(dropout)
        self.initial_state = nn.Linear(latent_dim, hidden_size)
        self.gru = nn.GRU(embedding_dim + latent_dim, hidden_size, num_layers, batch_first=True)
        self.output: nn.Linear | TiedOutput = (
            TiedOutput(hidden_size, self.embedding)
            if tie_embeddings
            else nn.Linear(hidden_size, vocab_size)
        )
        self.max_length = max_length
        self.word_dropout = word_dropout
        self.bag_of_words = bag_of_words
        # Only with the option, so that runs without it keep their weights' names.
        self.bag_of_words_head = nn.Linear(latent_dim, vocab_size) if bag_of_words > 0 else None

    def _start(self, z: Tensor) -> Tensor:
        state = self.initial_state(z)
        return state.unsqueeze(0).expand(self.gru.num_layers, -1, -1).contiguous()

    def _step(self, inputs: Tensor, z: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        embedded = self.dropout(self.embedding(inputs))
        latent = z.to(embedded.dtype).unsqueeze(1).expand(-1, inputs.shape[1], -1)
        outputs, hidden = self.gru(torch.cat([embedded, latent], dim=-1), hidden)
        return self.output(self.dropout(outputs)), hidden

    def log_prob(self, batch: Batch, z: Tensor) -> Tensor:
        """Teacher forcing: sum over each row of log p(token | earlier tokens, z), from the first
        token after ``<bos>`` to ``<eos>``."""
        tokens, _ = trimmed(batch)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        if self.training and self.word_dropout > 0:
            dropped = torch.rand(inputs.shape, device=inputs.device) < self.word_dropout
            inputs = inputs.masked_fill(dropped & (inputs != BOS) & (inputs != PAD), UNK)
        logits, _ = self._step(inputs, z, self._start(z))
        # The GRU is causal, so outputs past a row's end never reach its earlier positions; the
        # padded targets are simply ignored.
        token_nll = F.cross_entropy(
            logits.float().transpose(1, 2), targets, ignore_index=PAD, reduction="none"
        )
        return -token_nll.sum(dim=1)

    def auxiliary_loss(self, batch: Batch, z: Tensor) -> Tensor | None:
        """``bag_of_words`` times the negative log-likelihood of the item's tokens (after
        ``<bos>``, ``<eos>`` not counted) under one softmax over the vocabulary from z."""
        if self.bag_of_words_head is None:
            return None
        tokens, _ = trimmed(batch)
        targets = tokens[:, 1:]
        log_probs = self.bag_of_words_head(z).float().log_softmax(dim=-1)
        token_log_probs = log_probs.gather(1, targets)
        counted = (targets != PAD) & (targets != EOS)
        return -self.bag_of_words * (token_log_probs * counted).sum(dim=1)

    def token_steps(self, z: Tensor) -> TokenSteps:
        """The decoder run one token at a time from z, for generation: see :class:`GruSteps`."""
        return GruSteps(self, z)

    @torch.no_grad()
    def generate(  # type: ignore[override]  # names the options it takes
        self,
        z: Tensor,
        temperature: float = 1.0,
        max_length: int | None = None,
        top_k: int = 0,
        top_p: float = 1.0,
    ) -> Batch:
        """Decode every row of ``z`` at once, stopping when all rows have produced ``<eos>``.
        ``temperature=0`` takes the most likely token; ``top_k`` and ``top_p`` (nucleus) restrict
        sampling to the most likely tokens. Rows are padded after their ``<eos>``.

        A row that has ended leaves the batch: each step runs the GRU on the rows still going
        only, so the work follows the items' own lengths, not the longest one's."""
        steps = (max_length or self.max_length) + 1  # the item's tokens, then <eos>
        count = z.shape[0]
        tokens = torch.full((count, steps + 1), PAD, dtype=torch.long, device=z.device)
        tokens[:, 0] = BOS
        rows = torch.arange(count, device=z.device)  # the rows still going
        steps_from_z, token, width = self.token_steps(z), tokens[:, 0], 1
        for position in range(1, steps + 1):
            chosen = choose_tokens(steps_from_z.next(token).float(), temperature, top_k, top_p)
            tokens[rows, position] = chosen
            width = position + 1
            going = chosen != EOS
            if not bool(going.all()):
                if not bool(going.any()):
                    break
                rows, chosen = rows[going], chosen[going]
                steps_from_z.keep(going.nonzero().squeeze(1))
            token = chosen
        tokens = tokens[:, :width]
        return {"tokens": tokens, "lengths": (tokens != PAD).sum(dim=1)}


class TiedOutput(nn.Module):
    """An output layer that shares the input embedding's weights (Press and Wolf 2017): the GRU's
    output is projected into the embedding space and scored against every token's embedding, plus
    a bias per token. For a large vocabulary it replaces the biggest matrix of the model (hidden x
    vocabulary) by a hidden x embedding one. ``weight`` and ``bias`` are the equivalent linear
    layer's, for code that takes the output layer as one (generation)."""

    def __init__(self, hidden_size: int, embedding: nn.Embedding) -> None:
        super().__init__()
        self.projection = nn.Linear(hidden_size, embedding.embedding_dim)
        self.token_bias = nn.Parameter(torch.zeros(embedding.num_embeddings))
        # In a list, so that the embedding is not registered (and saved) a second time here.
        self.shared = [embedding]

    def forward(self, outputs: Tensor) -> Tensor:
        return F.linear(self.projection(outputs), self.shared[0].weight, self.token_bias)

    @property
    def weight(self) -> Tensor:
        return self.shared[0].weight @ self.projection.weight

    @property
    def bias(self) -> Tensor:
        return self.shared[0].weight @ self.projection.bias + self.token_bias


class TokenSteps(Protocol):
    """A decoder's state for a batch of rows, advanced one token at a time."""

    def next(self, tokens: Tensor) -> Tensor:
        """Logits ``(rows, vocab)`` for the token after ``tokens`` (one id per row)."""

    def keep(self, rows: Tensor) -> None:
        """Go on with these rows only, in this order (indices; a row may repeat)."""


class GruSteps:
    """:class:`SequenceDecoder`'s GRU unrolled by hand for generation, with its weights prepared
    once per batch instead of at every step. A step of the ``moses`` preset (512 rows, one CPU
    thread) takes 28.6 ms through ``nn.GRU`` under bf16 autocast, 24.8 ms here in bf16, and
    16.8 ms with int8 products:

    - the weights are cast once, which ``nn.GRU`` under autocast redoes at every step;
    - the first layer's input gates, a linear map of [embedding(token), z], become a lookup in a
      table of one row per vocabulary entry plus a term for z computed once;
    - the new gate's tanh is evaluated as 2 sigmoid(2a) - 1, its weights doubled: PyTorch's
      bf16 tanh takes 3x as long as its sigmoid on the CPU;
    - under :func:`polyvae.device.int8_products` the matrix products are int8 (:class:`Int8Linear`)
      and the rest float32; otherwise everything is in the autocast dtype, if any."""

    def __init__(self, decoder: SequenceDecoder, z: Tensor) -> None:
        device, gru = z.device.type, decoder.gru
        kind: type[Int8Linear] | type[FloatLinear]
        linear: Callable[..., Int8Linear | FloatLinear]
        if int8_products_enabled():
            dtype, kind = torch.float32, Int8Linear
            linear = functools.partial(Int8Linear, rows=len(z))
        else:
            autocast = torch.is_autocast_enabled(device)
            # The embedding's dtype is the output layer's; a tied one's weight is a product.
            dtype = torch.get_autocast_dtype(device) if autocast else decoder.embedding.weight.dtype
            kind, linear = FloatLinear, functools.partial(FloatLinear, dtype=dtype)
        self.prepare = kind.prepare  # a hidden state, as the products take it
        doubling = torch.ones(3 * gru.hidden_size, device=z.device)
        doubling[2 * gru.hidden_size :] = 2.0

        def new_gate_doubled(name: str, layer: int) -> Tensor:
            tensor = getattr(gru, f"{name}_l{layer}").detach().float()
            return tensor * (doubling if tensor.dim() == 1 else doubling.unsqueeze(1))

        def product(side: str, layer: int):  # side: ih (input) or hh (hidden)
            weight, bias = (
                new_gate_doubled(f"{name}_{side}", layer) for name in ("weight", "bias")
            )
            return linear(weight, bias)

        with torch.no_grad(), torch.autocast(device, enabled=False):
            first_ih, split = new_gate_doubled("weight_ih", 0), decoder.embedding.embedding_dim
            token_gates = decoder.embedding.weight.float() @ first_ih[:, :split].t()
            latent_gates = F.linear(z.float(), first_ih[:, split:], new_gate_doubled("bias_ih", 0))
            self.token_gates, self.latent_gates = token_gates.to(dtype), latent_gates.to(dtype)
            # The first layer's input products are the two gate terms above.
            self.layers = [
                (product("ih", layer) if layer else None, product("hh", layer))
                for layer in range(gru.num_layers)
            ]
            self.output = linear(decoder.output.weight.detach(), decoder.output.bias.detach())
            self.hidden = [state.to(dtype) for state in decoder._start(z.float())]
        self.inputs = [self.prepare(state) for state in self.hidden]

    def next(self, tokens: Tensor) -> Tensor:
        with torch.no_grad(), torch.autocast(tokens.device.type, enabled=False):
            gates = self.token_gates[tokens] + self.latent_gates
            for layer, (input_product, hidden_product) in enumerate(self.layers):
                if input_product is not None:  # layers after the first
                    gates = input_product(self.inputs[layer - 1])
                hidden = _gru_cell(gates, hidden_product(self.inputs[layer]), self.hidden[layer])
                self.hidden[layer], self.inputs[layer] = hidden, self.prepare(hidden)
            # self.inputs hold what this kind's prepare made, as its products take.
            output = self.output(self.inputs[-1])  # type: ignore[arg-type]
            return output.clone()  # the product's buffer is reused

    def keep(self, rows: Tensor) -> None:
        self.latent_gates = self.latent_gates[rows]
        self.hidden = [state[rows] for state in self.hidden]
        self.inputs = [inputs[rows] for inputs in self.inputs]


class FloatLinear:
    """``x W^T + b`` in ``dtype``."""

    def __init__(self, weight: Tensor, bias: Tensor, dtype: torch.dtype) -> None:
        self.weight, self.bias = weight.to(dtype), bias.to(dtype)

    @staticmethod
    def prepare(x: Tensor) -> Tensor:
        return x

    def __call__(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class QuantizedRows:
    """Rows of a float matrix as int8, with one scale per row (symmetric, absmax)."""

    def __init__(self, values: Tensor, scale: Tensor) -> None:
        self.values, self.scale = values, scale

    @classmethod
    def of(cls, x: Tensor) -> QuantizedRows:
        scale = x.abs().amax(dim=1, keepdim=True).clamp_min_(1e-12).div_(127)
        return cls(torch.div(x, scale).round_().to(torch.int8), scale)

    def __getitem__(self, rows: Tensor) -> QuantizedRows:
        return QuantizedRows(self.values[rows], self.scale[rows])


class Int8Linear:
    """``x W^T + b`` from int8 products: W is quantised once, one scale per output, and x one
    row at a time (:class:`QuantizedRows`). The result lives in a buffer that the next call
    overwrites: fresh multi-megabyte results cost more in page faults than the int8 products
    save."""

    prepare = QuantizedRows.of

    def __init__(self, weight: Tensor, bias: Tensor, rows: int) -> None:
        weight = weight.float()
        self.scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127
        self.weight = torch.round(weight / self.scale.unsqueeze(1)).to(torch.int8).t().contiguous()
        self.bias = bias.float()
        self._products = torch.empty(rows, len(weight), dtype=torch.int32, device=weight.device)
        self._result = torch.empty(rows, len(weight), device=weight.device)

    def __call__(self, x: QuantizedRows) -> Tensor:
        rows = len(x.values)
        if rows > len(self._result):
            self._products = self._products.new_empty(rows, self._products.shape[1])
            self._result = self._result.new_empty(rows, self._result.shape[1])
        products = torch._int_mm(x.values, self.weight, out=self._products[:rows])
        result = torch.mul(products, self.scale, out=self._result[:rows])
        return result.mul_(x.scale).add_(self.bias)


def _gru_cell(input_gates: Tensor, hidden_gates: Tensor, hidden: Tensor) -> Tensor:
    """``nn.GRU``'s update from the gates (reset, update, new: PyTorch's order), the new gate's
    rows doubled."""
    size = hidden.shape[1]
    reset, update = torch.sigmoid(input_gates[:, : 2 * size] + hidden_gates[:, : 2 * size]).chunk(
        2, dim=1
    )
    doubled = torch.addcmul(input_gates[:, 2 * size :], reset, hidden_gates[:, 2 * size :])
    new = torch.sigmoid(doubled).mul_(2).sub_(1)  # tanh of the undoubled value
    return torch.lerp(new, hidden, update)  # (1 - update) * new + update * hidden


def choose_tokens(logits: Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """One token id per row of ``logits`` (N, vocab); never <pad>, <bos> or <unk>, which no item
    holds after its start."""
    logits = logits.clone()
    logits[:, [PAD, BOS, UNK]] = float("-inf")
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth_best = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        probabilities = ordered.softmax(dim=-1)
        # Keep the smallest set of best tokens whose probabilities reach top_p, and always the best.
        outside = probabilities.cumsum(dim=-1) - probabilities >= top_p
        outside[:, 0] = False
        ordered = ordered.masked_fill(outside, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    return torch.multinomial(logits.softmax(dim=-1), 1).squeeze(1)


# --- the networks' construction from their options (polyvae.plugins.sequence_options) ------------


def build_networks(
    config: Mapping[str, Any],
    vocab_size: int,
    latent_dim: int,
    max_tokens: int,
    decoder_class: type[SequenceDecoder] = SequenceDecoder,
) -> tuple[SequenceEncoder, SequenceDecoder]:
    """The encoder and a ``decoder_class`` decoder, sized by the options of
    :func:`~polyvae.plugins.sequence_options.network_options` in ``config``; the decoder generates
    at most ``max_tokens`` tokens an item."""
    encoder = SequenceEncoder(
        vocab_size,
        config["embedding_dim"],
        config["encoder_hidden"],
        config["encoder_layers"],
        config["encoder_bidirectional"],
        config["dropout"],
    )
    decoder = decoder_class(
        vocab_size,
        config["embedding_dim"],
        config["decoder_hidden"],
        config["decoder_layers"],
        latent_dim,
        max_tokens,
        config["word_dropout"],
        config["dropout"],
        config["bag_of_words"],
        config["tie_embeddings"],
    )
    return encoder, decoder
