"""Sample-quality metrics for texts. BLEU comes from sacrebleu, on its 0-100 scale.

- uniqueness: share of distinct texts among the generated ones.
- novelty: share of the distinct generated texts that are not in the training texts.
- word validity: the share of generated words (``13a`` tokens, case-folded) that occur in the
  training texts; invented words ("blouered", "recognestablating") lower it.
- distinct-n (Li et al. 2016): distinct n-grams over all n-grams of all generated texts, words
  split with sacrebleu's ``13a`` tokenizer (the one BLEU uses).
- self-BLEU (Zhu et al. 2018, Texygen): the mean sentence BLEU of each generated text against all
  the others as references; high means the texts resemble each other (less diverse). Identical
  texts score 100.
- reconstruction BLEU: corpus BLEU of reconstructions against their inputs.
- reconstruction chrF (Popović 2015): corpus chrF, the F-score of character n-grams (up to 6),
  on the same 0-100 scale. BLEU needs word 4-grams, so it is 0 for texts of fewer than four
  words however well they are rebuilt (a model of surnames); chrF credits every shared character
  n-gram.
- reconstruction exact: the share of inputs rebuilt character for character.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF
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
        "word_validity": word_validity(generated, training) if training else math.nan,
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


def words(text: str) -> list[str]:
    """A text's words as BLEU sees them (sacrebleu's ``13a`` tokenizer), case-folded."""
    return Tokenizer13a()(text).casefold().split()


def word_validity(texts: Sequence[str], training: Sequence[str]) -> float:
    """Share of the generated words found in the training texts' vocabulary; NaN for no words."""
    vocabulary = {word for text in training for word in words(text)}
    generated = [word for text in texts for word in words(text)]
    if not generated:
        return math.nan
    return sum(word in vocabulary for word in generated) / len(generated)


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


def reconstruction_metrics(
    originals: Sequence[str], reconstructions: Sequence[str]
) -> dict[str, float]:
    """Corpus BLEU and chrF (0-100) of ``reconstructions`` against ``originals``, and the share
    rebuilt exactly; empty for no texts."""
    if len(originals) != len(reconstructions):
        raise ValueError(f"{len(originals)} texts but {len(reconstructions)} reconstructions")
    if not originals:
        return {}
    originals, reconstructions = list(originals), list(reconstructions)
    exact = sum(a == b for a, b in zip(originals, reconstructions, strict=True))
    return {
        "reconstruction_bleu": BLEU().corpus_score(reconstructions, [originals]).score,
        "reconstruction_chrf": CHRF().corpus_score(reconstructions, [originals]).score,
        "reconstruction_exact": exact / len(originals),
    }
