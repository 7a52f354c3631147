"""The read cache: a file parsed once is loaded back by content, and anything that could change
the result (the bytes, an option the reader uses) is a miss."""

from __future__ import annotations

import gzip

import pytest

from polyvae.cache import cache_folder
from polyvae.dataset import read_items
from polyvae.errors import UserError
from polyvae.registry import get_domain

SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "not a molecule", "CCN", "C1CC1"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYVAE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def molecules():
    domain = get_domain("molecules")
    return domain, domain.resolve_config({})


def write_smiles(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def counting_reads(domain, monkeypatch):
    calls = []
    original = type(domain).read

    def read(self, source, config):
        calls.append(source)
        return original(self, source, config)

    monkeypatch.setattr(type(domain), "read", read)
    return calls


def test_a_second_read_of_the_same_bytes_comes_from_the_cache(
    cache, molecules, tmp_path, monkeypatch
):
    domain, config = molecules
    calls = counting_reads(domain, monkeypatch)
    first_path = write_smiles(tmp_path / "a.smi", SMILES)
    items, report = read_items(domain, first_path, config)
    assert len(calls) == 1 and len(list(cache.iterdir())) == 1
    # Another path to the same bytes: a hit, reported under its own name.
    copy = write_smiles(tmp_path / "copy.smi", SMILES)
    again, cached = read_items(domain, copy, config)
    assert len(calls) == 1
    assert again == items and cached.kept == report.kept
    assert cached.skipped == report.skipped and len(cached.skipped) == 1
    assert cached.source == str(copy) and "from the read cache" in cached.summary()


def test_changed_bytes_or_options_are_read_again(cache, molecules, tmp_path, monkeypatch):
    domain, config = molecules
    calls = counting_reads(domain, monkeypatch)
    path = write_smiles(tmp_path / "a.smi", SMILES)
    read_items(domain, path, config)
    write_smiles(path, [*SMILES, "CCCC"])
    items, _ = read_items(domain, path, config)
    assert len(calls) == 2 and "CCCC" in items
    read_items(domain, path, domain.resolve_config({"max_length": 3}))
    assert len(calls) == 3
    # Options the reader does not use (network sizes) leave the cached read usable.
    read_items(domain, path, domain.resolve_config({"max_length": 3, "decoder_hidden": 32}))
    assert len(calls) == 3


@pytest.mark.parametrize("name", ["molecules", "text"])
def test_every_option_a_reader_uses_keys_the_cache(name):
    domain = get_domain(name)
    used = []

    class Recording(dict):
        def __getitem__(self, key):
            used.append(key)
            return super().__getitem__(key)

    with pytest.raises(FileNotFoundError):
        domain.read("/nonexistent/data.txt", Recording(domain.resolve_config({})))
    assert used and set(used) <= set(domain.read_options)


def test_a_damaged_cache_file_is_ignored(cache, molecules, tmp_path, monkeypatch):
    domain, config = molecules
    path = write_smiles(tmp_path / "a.smi", SMILES)
    items, _ = read_items(domain, path, config)
    (stored,) = cache.iterdir()
    stored.write_bytes(gzip.compress(b'{"kept": 2, "items": [1, 2]'))
    calls = counting_reads(domain, monkeypatch)
    assert read_items(domain, path, config)[0] == items and len(calls) == 1


def test_off_writes_nothing_and_missing_data_is_still_one_error(molecules, tmp_path, monkeypatch):
    domain, config = molecules
    monkeypatch.setenv("POLYVAE_CACHE_DIR", "off")
    assert cache_folder() is None
    read_items(domain, write_smiles(tmp_path / "a.smi", SMILES), config)
    assert not (tmp_path / "off").exists()
    with pytest.raises(UserError, match="data not found"):
        read_items(domain, tmp_path / "missing.smi", config)


def test_only_string_items_are_cached(cache, tmp_path):
    import numpy as np

    domain = get_domain("images")
    np.save(tmp_path / "images.npy", np.zeros((4, 8, 8), dtype=np.uint8))
    items, _ = read_items(domain, tmp_path / "images.npy", domain.resolve_config({}))
    assert len(items) == 4 and not cache.exists()
