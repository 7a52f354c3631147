"""Sample-quality metrics for texts. BLEU comes from sacrebleu, on its 0-100 scale.

- uniqueness: share of distinct texts among the generated ones.
- novelty: share of the distinct generated texts that are not in the training texts.
- distinct-n (Li et al. 2016): distinct n-grams over all n-grams of all generated texts, words
  split with sacrebleu's ``13a`` tokenizer (the one BLEU uses).
- self-BLEU (Zhu et al. 2018, Texygen): the mean sentence BLEU of each generated text against all
  the others as references; high means the texts resemble each other (less diverse). Identical
  texts score 100.
- reconstruction BLEU: corpus BLEU of reconstructions against their inputs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

# Self-BLEU compares each text with every other, so its cost is quadratic: a random sample of this
# many texts takes about 5 s on one CPU core.
SELF_BLEU_SAMPLE = 300


def text_metrics(
    generated: Sequence[str], training: Sequence[str], seed: int = 0
) -> dict[str, float]:
    """All sample metrics; novelty is NaN without training texts, the others NaN without
    generated ones."""
    return {
        "uniqueness": uniqueness(generated),
        "novelty": novelty(generated, training) if training else math.nan,
        "distinct_1": distinct_n(generated, 1),
        "distinct_2": distinct_n(generated, 2),
        "self_bleu": self_bleu(generated, seed=seed),
    }


def uniqueness(texts: Sequence[str]) -> float:
    return len(set(texts)) / len(texts) if texts else math.nan


def novelty(texts: Sequence[str], training: Sequence[str]) -> float:
    distinct = set(texts)
    if not distinct:
        return math.nan
    return len(distinct - set(training)) / len(distinct)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams; NaN when no text has ``n`` words."""
    tokenize = Tokenizer13a()
    ngrams = [
        tuple(words[i : i + n])
        for words in (tokenize(text).split() for text in texts)
        for i in range(len(words) - n + 1)
    ]
    return len(set(ngrams)) / len(ngrams) if ngrams else math.nan


def self_bleu(texts: Sequence[str], sample: int = SELF_BLEU_SAMPLE, seed: int = 0) -> float:
    """Mean BLEU (0-100) of each of up to ``sample`` texts (a seeded random choice) against the
    others; NaN for fewer than two texts."""
    texts = list(texts)
    if len(texts) < 2:
        return math.nan
    if len(texts) > sample:
        texts = random.Random(seed).sample(texts, sample)
    bleu = BLEU(effective_order=True)  # sentence-level BLEU, as sacrebleu recommends
    scores = [
        bleu.sentence_score(text, texts[:i] + texts[i + 1 :]).score for i, text in enumerate(texts)
    ]
    return sum(scores) / len(scores)


def reconstruction_bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of ``hypotheses`` (reconstructions) against ``references`` (inputs)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} reconstructions")
    if not references:
        return math.nan
    return BLEU().corpus_score(list(hypotheses), [list(references)]).score
