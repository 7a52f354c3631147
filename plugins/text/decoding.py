"""The text decoder: the shared GRU decoder, with a choice of decoding strategy and beam search.

Strategies (``generate(z, temperature, strategy=...)``):

- ``sample`` (default): draw each token from the softmax at ``temperature``, optionally restricted
  to the ``top_k`` most likely tokens and/or the nucleus of probability ``top_p``;
  ``temperature=0`` takes the most likely token, as ``greedy`` does.
- ``greedy``: the most likely token at every step, whatever the temperature.
- ``beam``: beam search with ``beam_size`` beams per z; returns the sequence with the highest
  total log-probability (no length normalisation) among the beams kept at the end. It ignores
  the temperature and draws no random numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polyvae.domain import Batch
from polyvae.plugins.sequence import BOS, EOS, PAD, UNK, SequenceDecoder
from polyvae.plugins.text.choices import STRATEGIES


class TextDecoder(SequenceDecoder):
    @torch.no_grad()
    def generate(  # type: ignore[override]  # names the options it takes
        self,
        z: Tensor,
        temperature: float = 1.0,
        max_length: int | None = None,
        top_k: int = 0,
        top_p: float = 1.0,
        strategy: str = "sample",
        beam_size: int = 4,
    ) -> Batch:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r} is not one of: {', '.join(STRATEGIES)}")
        if strategy == "beam":
            return self.beam_search(z, beam_size, max_length)
        if strategy == "greedy":
            temperature = 0.0
        return super().generate(z, temperature, max_length, top_k, top_p)

    @torch.no_grad()
    def beam_search(self, z: Tensor, beam_size: int, max_length: int | None = None) -> Batch:
        """The most likely sequence found with ``beam_size`` beams for each row of ``z``."""
        steps = (max_length or self.max_length) + 1  # the text's tokens, then <eos>
        count, width = z.shape[0], beam_size
        # Row i * width + b is beam b of z[i].
        beams = self.token_steps(z.repeat_interleave(width, dim=0))
        token = torch.full((count * width,), BOS, dtype=torch.long, device=z.device)
        # Only the first beam is live at the start, so the first step fills the beams with
        # different tokens rather than with copies of one.
        scores = torch.full((count, width), float("-inf"), device=z.device)
        scores[:, 0] = 0.0
        finished = torch.zeros(count, width, dtype=torch.bool, device=z.device)
        history = torch.zeros(count, width, 0, dtype=torch.long, device=z.device)
        offsets = torch.arange(count, device=z.device).unsqueeze(1) * width
        for _ in range(steps):
            log_probs = beams.next(token).float().log_softmax(dim=-1)
            log_probs[:, [PAD, BOS, UNK]] = float("-inf")  # as in sampling: no text holds them
            vocab = log_probs.shape[-1]
            log_probs = log_probs.view(count, width, vocab)
            # A finished beam goes on with padding only, at no cost, so it keeps its score.
            padding = torch.full((vocab,), float("-inf"), device=z.device)
            padding[PAD] = 0.0
            log_probs = torch.where(finished.unsqueeze(-1), padding, log_probs)
            candidates = (scores.unsqueeze(-1) + log_probs).view(count, width * vocab)
            scores, chosen = candidates.topk(width, dim=-1)  # sorted: beam 0 is the best
            parent, new_token = chosen // vocab, chosen % vocab
            history = torch.cat(
                [
                    history.gather(1, parent.unsqueeze(-1).expand(-1, -1, history.shape[-1])),
                    new_token.unsqueeze(-1),
                ],
                dim=-1,
            )
            finished = finished.gather(1, parent) | (new_token == EOS)
            beams.keep((parent + offsets).view(-1))
            token = new_token.view(-1)
            if bool(finished.all()):
                break
        start = torch.full((count, 1), BOS, dtype=torch.long, device=z.device)
        tokens = torch.cat([start, history[:, 0]], dim=1)
        lengths = (tokens != PAD).sum(dim=1)
        # Other beams may have run on after the best ones ended: drop the columns of padding.
        return {"tokens": tokens[:, : int(lengths.max())], "lengths": lengths}
