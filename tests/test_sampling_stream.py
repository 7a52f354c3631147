"""Sampling streamed in chunks: the same items as sample(), flat memory, atomic files."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
from conftest import gaussmix_only
from polyvae_gaussmix import mixture

import polyvae
from polyvae.errors import UserError
from polyvae.plugins.molecules import metrics, writers
from polyvae.plugins.molecules.codec import MoleculeCodec
from polyvae.plugins.molecules.domain import MoleculesDomain
from polyvae.plugins.shared import bundled_run


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    with gaussmix_only():
        out = tmp_path_factory.mktemp("stream") / "run"
        config = {"epochs": 1, "batch_size": 32, "latent_dim": 3, "threads": 1}
        polyvae.train("gaussmix", data=list(mixture(200)), config=config, out=out, progress=False)
        yield polyvae.load(out)


def test_chunks_hold_the_items_sample_returns(model):
    chunks = list(model.sample_chunks(10, seed=4, chunk_size=3))
    assert [len(chunk) for chunk in chunks] == [3, 3, 3, 1]
    again = [item for chunk in model.sample_chunks(10, seed=4, chunk_size=3) for item in chunk]
    assert np.array_equal(np.stack([i for c in chunks for i in c]), np.stack(again))
    # With the default chunk size, the stream is sample() itself.
    streamed = [item for chunk in model.sample_chunks(50, seed=2) for item in chunk]
    assert np.array_equal(np.stack(streamed), np.stack(model.sample(50, seed=2)))
    assert list(model.sample_chunks(0)) == []


def test_unique_filter_applies_across_chunks(model):
    # The filter remembers what earlier chunks kept.
    items = [i for c in model.sample_chunks(5, seed=1, unique=True, chunk_size=2) for i in c]
    assert len({model.domain.format_item(item) for item in items}) == len(items) == 5
    with pytest.raises(UserError, match="not trained with a condition"):
        model.sample_chunks(5, condition={"first": 1.0})  # raised at once, not on iteration


def test_molecule_rows_are_numbered_across_chunks(tmp_path):
    path = tmp_path / "mols.csv"
    chunks = iter([["CCO", "C1CC1"], ["c1ccccc1", "C1CC"]])
    count = writers.write_stream(chunks, path, novel=lambda chunk: [t == "CCO" for t in chunk])
    assert count == 4
    rows = list(csv.DictReader(path.open()))
    assert [row["id"] for row in rows] == ["1", "2", "3", "4"]
    assert [row["valid"] for row in rows] == ["true", "true", "true", "false"]
    assert [row["novel"] for row in rows] == ["true", "false", "false", "false"]
    assert rows[0]["mw"] == "46.069"
    # Many chunks, in order.
    smiles = ["C" * length for length in range(1, 12)]
    writers.write_stream(([text] for text in smiles), path)
    rows = list(csv.DictReader(path.open()))
    assert [(row["smiles"], row["id"]) for row in rows] == [
        (text, str(number)) for number, text in enumerate(smiles, 1)
    ]
    sdf = tmp_path / "mols.sdf"
    writers.write_stream(iter([["CCO"], ["C1CC", "CCN"]]), sdf)
    names = [line for line in sdf.read_text().splitlines() if line.startswith("molecule ")]
    assert names == ["molecule 1", "molecule 3"]  # the invalid second molecule leaves a gap


def test_a_failed_stream_leaves_no_file(tmp_path):
    def failing():
        yield ["CCO"]
        raise RuntimeError("decoder crashed")

    for name in ("out.csv", "out.txt", "out.sdf"):
        with pytest.raises(RuntimeError):
            writers.write_stream(failing(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def molecule_chunks():
    smiles = [*metrics.bundled_smiles("test")[:56], "C1CC", "not a molecule", "CC(", "N#N#N"]
    return [smiles[start : start + 10] for start in range(0, len(smiles), 10)]


def test_large_streams_are_rendered_in_worker_processes(tmp_path, monkeypatch, molecule_chunks):
    novel = MoleculeCodec.load(bundled_run("molecules") / "codec").novel
    in_main = []
    render = writers.ChunkRenderer.__call__
    monkeypatch.setattr(
        writers.ChunkRenderer, "__call__", lambda *args: in_main.append(1) or render(*args)
    )
    for suffix in (".csv", ".sdf"):
        one = tmp_path / f"one{suffix}"
        writers.write_stream(iter(molecule_chunks), one, novel=novel, n_jobs=1)
        assert len(in_main) == len(molecule_chunks)
        in_main.clear()
        # Small chunks that add up to a large file are worth the workers' start-up.
        monkeypatch.setattr(writers, "PARALLEL_FROM", 25)
        two = tmp_path / f"two{suffix}"
        assert writers.write_stream(iter(molecule_chunks), two, novel=novel, n_jobs=2) == 60
        assert in_main == []  # the workers did the rendering
        assert two.read_bytes() == one.read_bytes()
    # A small file stays in the main process; a large list is shared among the workers.
    writers.write_stream(iter(molecule_chunks[:2]), tmp_path / "small.csv", novel=novel, n_jobs=2)
    assert in_main == [1, 1]
    in_main.clear()
    whole = [text for chunk in molecule_chunks for text in chunk]
    listed = tmp_path / "list.csv"
    writers.write(whole, listed, novel, n_jobs=2)
    assert in_main == [] and listed.read_bytes() == (tmp_path / "one.csv").read_bytes()
    rows = list(csv.DictReader((tmp_path / "two.csv").open()))
    assert [row["id"] for row in rows] == [str(number) for number in range(1, 61)]
    assert [row["valid"] for row in rows[-4:]] == ["false"] * 4


def test_workers_stay_a_bounded_number_of_chunks_ahead(tmp_path, monkeypatch, molecule_chunks):
    monkeypatch.setattr(writers, "PARALLEL_FROM", 5)
    pulled = 0

    def chunks():
        nonlocal pulled
        for chunk in molecule_chunks:
            pulled += 1
            yield chunk

    threads = torch.get_num_threads()
    ahead, threads_while_rendering = [], []
    rendered = writers._rendered(chunks(), writers.ChunkRenderer(".csv", None), n_jobs=2)
    for written, _ in enumerate(rendered, 1):
        ahead.append(pulled - written)
        threads_while_rendering.append(torch.get_num_threads())
    assert len(ahead) == len(molecule_chunks) and max(ahead) <= 2
    # The decoder leaves the workers their cores, and gets its threads back at the end.
    cores_left = max(1, os.cpu_count() - 2)
    assert set(threads_while_rendering) == {min(threads, cores_left)}
    assert torch.get_num_threads() == threads

    def failing():
        yield from molecule_chunks[:4]
        raise RuntimeError("decoder crashed")

    with pytest.raises(RuntimeError, match="decoder crashed"):
        writers.write_stream(failing(), tmp_path / "out.csv", n_jobs=2)
    assert list(tmp_path.iterdir()) == []


def test_the_jobs_write_option_reaches_the_writer(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(
        writers, "write_stream", lambda chunks, path, novel=None, n_jobs=None: asked.append(n_jobs)
    )
    domain = MoleculesDomain()
    domain.write_stream([["CCO"]], tmp_path / "a.csv", jobs=1)
    domain.write_stream([["CCO"]], tmp_path / "a.csv")  # 0: the writer's default
    domain.write(["CCO"], tmp_path / "a.csv", jobs=3)
    assert asked == [1, None, 3]
