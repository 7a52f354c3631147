"""``polyvae report``: every section and picture of the page, the PNG files, the built-in domains'
galleries, and the page opened in headless Chromium."""

from __future__ import annotations

import base64
import gzip
import io
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import polyvae
from polyvae.cli import build_cli
from polyvae.evaluation import EvaluationSettings
from polyvae.report import build_report

SECTIONS = ("summary", "curves", "kl", "latent", "gallery", "metrics")
DATA = Path(__file__).parent.parent / "data"


@pytest.fixture
def trained_run(tmp_path, registry, mixture_csv):
    config = {"epochs": 3, "batch_size": 64, "latent_dim": 4, "max_items": 600}
    result = polyvae.train(
        "gaussmix", data=mixture_csv, config=config, out=tmp_path / "run", progress=False
    )
    return result.run_dir


@pytest.fixture
def report_page(trained_run, tmp_path):
    page, pictures = tmp_path / "report.html", tmp_path / "pngs"
    result = invoke("report", trained_run, "-o", page, "--png", pictures, "-n", 100, "-k", 5)
    assert result.exit_code == 0, result.output
    return page, pictures


def invoke(*args):
    return CliRunner().invoke(build_cli(), [str(arg) for arg in args])


class Page(HTMLParser):
    """The section ids, embedded pictures and external references of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "section":
            self.sections.append(attributes["id"])
        if tag == "img":
            self.images.append(attributes["src"])
        for name in ("src", "href"):
            if attributes.get(name, "").startswith(("http:", "https:", "//", "file:")):
                self.external.append(attributes[name])


def bundled_molecules(count: int) -> list[str]:
    with gzip.open(DATA / "molecules" / "test.smi.gz", "rt") as lines:
        return [next(lines).strip() for _ in range(count)]


def decode_png(source: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(source[len(prefix) :])))


def test_report_has_every_section_and_embeds_its_pictures(report_page):
    page, pictures = report_page
    text = page.read_text()
    parsed = Page(text)
    assert parsed.sections == list(SECTIONS)
    assert not parsed.external, "the page must load nothing from elsewhere"
    # curves, KL per dimension and the latent map; the gaussmix gallery is tables only
    assert len(parsed.images) == 3
    for source in parsed.images:
        image = decode_png(source)
        assert image.format == "PNG" and min(image.size) > 200
    for heading in ("Training curves", "KL per latent dimension", "Latent space", "Metrics"):
        assert heading in text
    assert "Samples" in text and "Interpolation" in text  # the default gallery's tables
    assert "iwae_nll" in text and "mean_error" in text  # engine and domain metrics
    assert sorted(path.name for path in pictures.iterdir()) == [
        "curves.png",
        "kl_per_dimension.png",
        "latent_pca.png",
    ]


def test_report_defaults_beside_the_run_and_colours_by_a_named_property(trained_run):
    result = invoke("report", trained_run, "-n", 0, "-k", 2, "--colour-by", "norm")
    assert result.exit_code == 0, result.output
    text = (trained_run / "report.html").read_text()
    assert "coloured by norm" in text


def test_report_reuses_the_last_evaluation_of_the_same_weights(trained_run, tmp_path):
    evaluated = invoke("evaluate", trained_run, "-n", 50, "-k", 3)
    assert evaluated.exit_code == 0, evaluated.output
    page = tmp_path / "report.html"
    reused = invoke("report", trained_run, "-o", page)
    assert "metrics from" in reused.output
    assert "Computed by polyvae evaluate" in page.read_text()
    assert "k 3, samples 50" in page.read_text()
    fresh = invoke("report", trained_run, "-o", page, "-k", 2, "-n", 0)
    assert "metrics from" not in fresh.output
    assert "Computed by this report: k 2, samples 0" in page.read_text()


def test_report_errors_are_one_line(trained_run, tmp_path):
    unknown = invoke("report", trained_run, "-n", 0, "-k", 2, "--colour-by", "mass")
    assert unknown.exit_code == 2
    assert unknown.output.startswith("Error:") and len(unknown.output.splitlines()) == 1
    missing = invoke("report", tmp_path / "nothing")
    assert missing.exit_code == 2 and missing.output.startswith("Error:")


def test_a_broken_metrics_file_costs_only_the_curves(trained_run, tmp_path):
    with open(trained_run / "metrics.jsonl", "a") as metrics:
        metrics.write('{"epoch": 4, "loss": \n')
    page = tmp_path / "report.html"
    result = invoke("report", trained_run, "-o", page, "-n", 0, "-k", 2)
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "line 4 is not JSON" in text
    assert len(Page(text).images) == 2


@pytest.mark.parametrize(
    ("domain", "titles"),
    [
        ("molecules", ["Samples", "Interpolation"]),
        ("images", ["Samples", "Reconstructions", "Interpolations", "Latent traversals"]),
        ("text", ["Samples", "Interpolation"]),
    ],
)
def test_builtin_galleries(domain, titles):
    model = polyvae.load(domain, device="cpu")
    # Molecules: the bundled test set, as re-reading the run's 250k training molecules is slow.
    held_out = bundled_molecules(30) if domain == "molecules" else model.data_splits()[1][:30]
    panels = model.domain.gallery(model, held_out, seed=0)
    assert [panel.title for panel in panels] == titles
    for panel in panels:
        assert panel.caption
        if domain == "text":
            assert panel.png is None and len(panel.rows) > 2
        else:
            assert Image.open(io.BytesIO(panel.png)).format == "PNG"


def test_molecule_metrics_sit_beside_the_moses_paper_rows():
    model = polyvae.load("molecules", device="cpu")
    molecules = bundled_molecules(400)
    report = build_report(
        model, molecules[:200], molecules[200:], EvaluationSettings(samples=100, k=2)
    )
    assert report.metrics_header[2:] == ["MOSES VAE (paper)", "MOSES CharRNN (paper)"]
    rows = {row[0]: row for row in report.metrics_rows}
    assert rows["FCD/Test"][2] == "0.099" and rows["novelty"][3] == "0.842"
    assert float(rows["validity"][1]) > 0.5
