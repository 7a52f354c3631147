"""The text domain's choices of tokenizer and decoding strategy, apart from the codec and the
decoder (which import tokenizers and torch) so that the domain's options can name them without
importing either."""

TOKENIZERS = ("bpe", "word", "char")
STRATEGIES = ("sample", "greedy", "beam")
