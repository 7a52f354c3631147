"""The text domain: reader, codec, decoding strategies, metrics, and the conformance kit."""

from __future__ import annotations

import gzip
import json
import math
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from polyvae.cli.commands.sample import Summary
from polyvae.errors import ConfigError, UserError
from polyvae.plugins.sequence import BOS, EOS, PAD
from polyvae.plugins.text.codec import TextCodec
from polyvae.plugins.text.decoding import TextDecoder
from polyvae.plugins.text.domain import TextDomain
from polyvae.plugins.text.metrics import (
    distinct_n,
    novelty,
    reconstruction_metrics,
    self_bleu,
    text_metrics,
    uniqueness,
    word_validity,
)
from polyvae.plugins.text.reader import LabelledText, TextFormat, read_texts
from polyvae.testing import check_domain

torch.set_num_threads(1)

SENTENCES = [
    "the cat sat on the mat",
    "a dog barked at the mailman",
    "she sells sea shells by the shore",
    "he ran all the way home",
    "the rain in Spain stays mainly in the plain",
    "they painted the fence white",
    "we visited a small walled town",
    "it was full of rackets, balls and other objects",
    "the team is a unit",
    "how big is that part compared to the whole?",
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """~50 bundled WordNet example sentences."""
    path = resources.files("polyvae.data") / "text" / "valid.txt.gz"
    with gzip.open(str(path), "rt", encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(50)]


# --- reader --------------------------------------------------------------------------------------


def test_reads_txt_with_nfc_and_counts_empty_lines(tmp_path):
    decomposed = "Cafe\u0301 au lait"  # "e" + combining acute accent
    path = tmp_path / "texts.txt"
    path.write_text(f"{decomposed}\n\n   \nsecond text  \n", encoding="utf-8")
    items, report = read_texts(path, TextFormat())
    assert items == ["Caf\u00e9 au lait", "second text"]
    assert report.kept == 2 and not report.skipped
    assert "2 empty texts dropped" in report.notes


def test_reads_gzip_csv_column_and_labels(tmp_path):
    path = tmp_path / "texts.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write('id,Text,topic\n1,"hello, world",greeting\n2,,x\n3,bye now,\n')
    items, report = read_texts(path, TextFormat(column="text", label_column="topic"))
    assert items == ["hello, world", "bye now"]
    assert isinstance(items[0], LabelledText)
    assert [item.label for item in items] == ["greeting", None]
    assert "1 empty texts dropped" in report.notes


def test_reads_jsonl_and_reports_bad_records(tmp_path):
    path = tmp_path / "texts.jsonl"
    lines = [{"text": "one"}, "not json", {"body": "no text"}, {"text": "two"}]
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )
    items, report = read_texts(path, TextFormat())
    assert items == ["one", "two"]
    reasons = [reason for _, reason in report.skipped]
    assert reasons[0].startswith("not valid JSON") and reasons[1] == "no text field 'text'"
    assert report.skipped[0][0].endswith("texts.jsonl:2")


def test_too_long_texts_are_skipped_or_truncated(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("one two three four, five\nshort one\n")
    items, report = read_texts(path, TextFormat(max_length=3))
    assert items == ["short one"]
    assert report.skipped == [(f"{path}:1", "6 tokens, more than max_length=3")]
    items, report = read_texts(path, TextFormat(max_length=3, too_long="truncate"))
    assert items == ["one two three", "short one"]
    assert "1 texts truncated to max_length=3" in report.notes
    items, _ = read_texts(path, TextFormat(max_length=4, unit="char", too_long="truncate"))
    assert items == ["one", "shor"]  # cut at 4 characters, then stripped


def test_reader_errors_are_user_errors(tmp_path):
    (tmp_path / "texts.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match=r"has no column 'text'.*--set column=NAME"):
        read_texts(tmp_path / "texts.csv", TextFormat())
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(UserError, match="no texts in"):
        read_texts(tmp_path / "blank.txt", TextFormat())
    (tmp_path / "notes.pdf").write_text("x")
    with pytest.raises(UserError, match=r"not notes\.pdf"):
        read_texts(tmp_path / "notes.pdf", TextFormat())
    with pytest.raises(FileNotFoundError):
        read_texts(tmp_path / "missing.txt", TextFormat())


# --- codec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bpe", "word", "char"])
def test_codec_round_trips_and_reloads(kind, tmp_path):
    texts = [*SENTENCES, "Caf\u00e9 \u201cquoted\u201d  two  spaces"]
    codec = TextCodec.fit(texts, kind, vocab_size=300)
    batch = codec.encode(texts)
    assert (batch["tokens"][:, 0] == BOS).all()
    assert codec.decode(batch) == texts
    assert codec.max_tokens == int(batch["lengths"].max()) - 2
    codec.save(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "codec.json",
        "tokenizer.json",
        "training_set.safetensors",
    ]
    assert torch.equal(TextCodec.load(tmp_path).encode(texts)["tokens"], batch["tokens"])


def test_codec_tells_novel_texts_in_their_normal_form(tmp_path):
    codec = TextCodec.fit(SENTENCES, "char")
    decomposed = "Cafe\u0301 au lait"  # NFD: the reader would have stored it as NFC
    codec.save(tmp_path)
    for known in (codec, TextCodec.load(tmp_path)):
        novel = known.novel([SENTENCES[0], f"  {SENTENCES[1]} ", "the cat sat", decomposed])
        assert novel.tolist() == [False, False, True, True]
    with_cafe = TextCodec.fit([*SENTENCES, "Caf\u00e9 au lait"], "char")
    assert with_cafe.novel([decomposed]).tolist() == [False]

    summary = Summary(SimpleNamespace(domain=TextDomain(), codec=codec))
    summary.add([SENTENCES[0], SENTENCES[0], "a new text", "another new text"])
    assert summary.line() == "sampled 4 items: 75.0% unique, 50.0% novel"


def test_runs_saved_without_their_training_texts_report_no_novelty(tmp_path):
    TextCodec.fit(SENTENCES, "word").save(tmp_path)
    (tmp_path / "training_set.safetensors").unlink()  # as codecs were saved before it was kept
    older = TextCodec.load(tmp_path)
    assert older.novel is None
    summary = Summary(SimpleNamespace(domain=TextDomain(), codec=older))
    summary.add(["a text", "a text"])
    assert summary.line() == "sampled 2 items: 50.0% unique"


def test_word_tokens_have_one_form_wherever_the_word_stands():
    codec = TextCodec.fit(["eyes of the cat", "the eyes"], "word")
    first, inner = (codec.token_ids([text])[0] for text in ("eyes", "the eyes"))
    assert first == inner[1:]  # no space-less "eyes" for the start of a text
    # So no sequence of tokens glues two words together.
    assert codec.decode({"tokens": torch.tensor([[BOS, *inner, EOS]])}) == ["the eyes"]


def test_unknown_words_become_unk_and_bpe_has_none():
    words = TextCodec.fit(SENTENCES, "word")
    assert words.decode(words.encode(["the zebra"])) == ["the<unk>"]
    bpe = TextCodec.fit(SENTENCES, "bpe", vocab_size=300)
    assert bpe.decode(bpe.encode(["zebra \u00fc\u00df"])) == ["zebra \u00fc\u00df"]


def test_decode_stops_at_the_first_eos():
    codec = TextCodec.fit(SENTENCES, "char")
    tokens = codec.encode(["ab"])["tokens"][0].tolist()  # <bos> a b <eos>
    batch = {"tokens": torch.tensor([[*tokens, tokens[1], EOS]]), "lengths": torch.tensor([6])}
    assert codec.decode(batch) == ["ab"]


# --- decoding strategies -------------------------------------------------------------------------

A, B = 4, 5  # token ids after the four special tokens


class TableDecoder(TextDecoder):
    """Next-token probabilities depend only on the previous token: from <bos>, A 0.6 / B 0.4;
    after A, A 0.35 / B 0.35 / <eos> 0.3; after B, <eos> 1.0 (and never B twice in a row).
    The most likely text is "B" (0.4), while greedy decoding starts with A."""

    def __init__(self):
        super().__init__(6, 2, 2, 1, latent_dim=1, max_length=5)
        table = torch.full((6, 6), 1e-9)
        table[BOS, [A, B]] = torch.tensor([0.6, 0.4])
        table[A, [A, B, EOS]] = torch.tensor([0.35, 0.35, 0.3])
        table[B, EOS] = 1.0
        self.table_logits = table.log()

    def token_steps(self, z):
        return TableSteps(self.table_logits)


class TableSteps:
    def __init__(self, table_logits):
        self.table_logits = table_logits

    def next(self, tokens):
        return self.table_logits[tokens]

    def keep(self, rows):
        pass  # the next logits depend on the previous token alone


def test_beam_search_finds_the_most_likely_text():
    decoder, z = TableDecoder(), torch.zeros(2, 1)
    beam = decoder.generate(z, strategy="beam", beam_size=2)
    assert beam["tokens"].tolist() == [[BOS, B, EOS]] * 2
    greedy = decoder.generate(z, strategy="greedy")["tokens"][0].tolist()
    assert greedy[:2] == [BOS, A]  # greedy misses it
    # Beam size 1 is greedy search over the same scores.
    one_beam = decoder.generate(z, strategy="beam", beam_size=1)["tokens"][0].tolist()
    assert one_beam[:2] == [BOS, A]


@pytest.fixture(scope="module")
def text_decoder() -> TextDecoder:
    torch.manual_seed(0)
    return TextDecoder(40, 8, 16, 1, latent_dim=4, max_length=12).eval()


def test_greedy_is_deterministic_and_equals_temperature_zero(text_decoder):
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    greedy = text_decoder.generate(z, temperature=1.0, strategy="greedy")["tokens"]
    assert torch.equal(greedy, text_decoder.generate(z, strategy="greedy")["tokens"])
    assert torch.equal(greedy, text_decoder.generate(z, temperature=0.0)["tokens"])


@pytest.mark.parametrize("options", [{}, {"top_k": 3}, {"top_p": 0.5}])
def test_sampling_repeats_with_the_seed(text_decoder, options):
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))

    def draw(seed):
        torch.manual_seed(seed)
        return text_decoder.generate(z, temperature=1.5, **options)["tokens"]

    first = draw(3)
    assert torch.equal(first, draw(3))
    assert (first[:, 1:] != PAD).any()


def test_unknown_strategy_is_rejected(text_decoder):
    with pytest.raises(ValueError, match="not one of: sample, greedy, beam"):
        text_decoder.generate(torch.zeros(1, 4), strategy="nucleus")


# --- metrics -------------------------------------------------------------------------------------


def test_diversity_metrics_on_known_texts():
    texts = ["a b a", "a c", "a c"]
    assert uniqueness(texts) == pytest.approx(2 / 3)
    assert novelty(texts, ["a c", "x"]) == pytest.approx(1 / 2)
    # unigrams a b a a c a c: 3 distinct of 7; bigrams (a b)(b a)(a c)(a c): 3 of 4
    assert distinct_n(texts, 1) == pytest.approx(3 / 7)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert math.isnan(distinct_n(["one"], 2))


def test_bleu_scale_is_zero_to_hundred():
    same = ["the cat sat on the mat today"] * 4
    assert self_bleu(same) == pytest.approx(100.0)
    assert self_bleu(["alpha beta gamma delta", "one two three four"]) == pytest.approx(0.0)
    assert reconstruction_metrics(SENTENCES, SENTENCES)["reconstruction_bleu"] == pytest.approx(100)
    assert reconstruction_metrics(SENTENCES, SENTENCES[::-1])["reconstruction_bleu"] < 10
    with pytest.raises(ValueError):
        reconstruction_metrics(SENTENCES, SENTENCES[:2])
    assert reconstruction_metrics([], []) == {}


def test_chrf_credits_one_word_reconstructions_that_bleu_scores_zero():
    # BLEU needs word 4-grams: a model of surnames scores 0 however many it rebuilds.
    surnames = ["smith", "jones", "brown", "garcia", "miller", "davis"]
    rebuilt = ["smith", "jonas", "bruin", "garcia", "muller", "dave"]
    results = reconstruction_metrics(surnames, rebuilt)
    assert results["reconstruction_bleu"] == 0.0
    assert results["reconstruction_exact"] == pytest.approx(2 / 6)
    assert results["reconstruction_chrf"] == pytest.approx(55.87, abs=0.01)  # sacrebleu 2.x
    assert reconstruction_metrics(surnames, surnames)["reconstruction_chrf"] == pytest.approx(100)
    assert reconstruction_metrics(surnames, ["x"] * 6)["reconstruction_chrf"] == 0.0


def test_metrics_without_training_texts_leave_novelty_nan():
    results = text_metrics(SENTENCES, [])
    assert math.isnan(results["novelty"]) and results["uniqueness"] == 1.0
    assert math.isnan(results["word_validity"])


def test_word_validity_counts_generated_words_the_training_texts_use():
    training = ["The cat sat.", "A dog ran home"]
    # 13a splits off the full stop; case is folded: "the", "dog", "." known, "blouered" not.
    assert word_validity(["the dog blouered."], training) == pytest.approx(3 / 4)
    assert word_validity(["THE CAT"], training) == 1.0
    assert math.isnan(word_validity([""], training))


# --- domain --------------------------------------------------------------------------------------


def test_label_properties():
    items = [LabelledText("a", "sports"), LabelledText("b", "2.5"), "generated"]
    values = TextDomain().properties(items, ["label:sports", "label"])
    np.testing.assert_array_equal(values[:2], [[1.0, math.nan], [0.0, 2.5]])
    assert np.isnan(values[2]).all()
    with pytest.raises(UserError, match="unknown property 'length'"):
        TextDomain().properties(items, ["length"])


def test_reconstruction_metrics_compare_texts_with_their_decodings():
    rebuilt = [*SENTENCES[:-1], "something else entirely"]
    results = TextDomain().reconstruction_metrics(SENTENCES, rebuilt)
    assert results["reconstruction_exact"] == pytest.approx(0.9)
    assert 50 < results["reconstruction_bleu"] < 100
    assert 50 < results["reconstruction_chrf"] < 100
    perfect = TextDomain().reconstruction_metrics(SENTENCES, SENTENCES)
    assert perfect["reconstruction_bleu"] == pytest.approx(100)
    assert perfect["reconstruction_chrf"] == pytest.approx(100)


def test_word_keep_of_runs_written_before_reads_as_word_dropout():
    domain = TextDomain()
    # The previous bundled run's config said word_keep = 1.0.
    assert domain.resolve_config({"word_keep": 1.0})["word_dropout"] == 0.0
    assert domain.resolve_config({"word_keep": "0.7"})["word_dropout"] == 1.0 - 0.7
    assert domain.resolve_config({"word_dropout": 0.3})["word_dropout"] == 0.3
    with pytest.raises(ConfigError, match="one setting"):
        domain.resolve_config({"word_keep": 0.7, "word_dropout": 0.3})
    with pytest.raises(ConfigError, match="word_keep"):
        domain.resolve_config({"word_keep": 1.5})


def test_small_preset_holds_a_rate_and_makes_the_decoder_read_z():
    config = TextDomain().resolve_config({"preset": "small"})
    assert config["kl_target"] > 0 and config["word_dropout"] > 0 and config["tokenizer"] == "word"


def test_text_domain_passes_the_conformance_kit(corpus, tmp_path: Path):
    model = check_domain(TextDomain(), corpus, tmp_path, {"threads": 1, "vocab_size": 300})
    beams = model.sample(2, seed=1, strategy="beam", beam_size=2, max_length=6)
    assert len(beams) == 2 and all(isinstance(text, str) for text in beams)
    texts = corpus[:20]
    results = model.evaluate(texts, k=2, samples=0)
    predicted = float(model.codec.encode(texts)["lengths"].sum()) - len(texts)  # no <bos>
    assert results["nll_per_token"] == pytest.approx(results["iwae_nll"] * len(texts) / predicted)
    assert results["bits_per_token"] == pytest.approx(results["nll_per_token"] / math.log(2))
    assert results["perplexity"] == pytest.approx(math.exp(results["nll_per_token"]))
    assert 0 <= results["reconstruction_exact"] <= 1 and 0 <= results["reconstruction_bleu"] <= 100


def test_bag_of_words_joins_the_training_objective_and_is_recorded(corpus, tmp_path: Path):
    import polyvae
    from polyvae.files import load_tensors

    config = {
        "threads": 1,
        "vocab_size": 300,
        "epochs": 1,
        "steps_per_epoch": 5,
        "batch_size": 16,
        "fit_prior": "none",
    }
    runs = {}
    for weight in (0.0, 1.0):
        out = tmp_path / f"bow{weight}"
        polyvae.train(
            TextDomain(),
            corpus,
            config | {"bag_of_words": weight},
            out=out,
            progress=False,
            log=print,
        )
        record = json.loads((out / "metrics.jsonl").read_text())
        runs[weight] = load_tensors(out / "model.safetensors")
        assert ("auxiliary_loss" in record) == (weight > 0)
        # In the objective: beta is still near 0 in the KL warm-up, so the loss is the rest.
        expected = record["recon"] + record.get("auxiliary_loss", 0.0)
        assert record["loss"] == pytest.approx(expected, abs=1.0)
    assert runs[1.0].keys() - runs[0.0].keys() == {
        "decoder.bag_of_words_head.weight",
        "decoder.bag_of_words_head.bias",
    }
    model = polyvae.load(tmp_path / "bow1.0")
    assert len(model.reconstruct(corpus[:3])) == 3
