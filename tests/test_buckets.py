"""Length-bucketed batches: the same items each epoch, batches of similar length, a fixed order."""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

from polyvae.dataset import take
from polyvae.plugins.molecules.domain import MoleculesDomain
from polyvae.trainer import Trainer

DATA = Path(__file__).resolve().parent.parent / "data" / "molecules" / "train.smi.gz"


def molecules(count: int) -> list[str]:
    with gzip.open(DATA, "rt") as handle:
        return [line.split()[0] for _, line in zip(range(count), handle, strict=False)]


def trainer(tmp_path, name: str, **config) -> Trainer:
    settings = {"batch_size": 16, "val_fraction": 0.1, "threads": 1, "device": "cpu"} | config
    domain = MoleculesDomain()
    return Trainer.fresh(domain, molecules(400), settings, tmp_path / name, lambda message: None)


def spread(batches, sizes) -> float:
    """Mean over batches of (longest - shortest) item."""
    return sum(float(sizes[b].max() - sizes[b].min()) for b in batches) / len(batches)


def test_bucketed_batches_hold_the_same_items_with_less_padding(tmp_path):
    bucketed = trainer(tmp_path, "a", length_buckets=50)
    plain = trainer(tmp_path, "b", length_buckets=0)
    assert plain.data.sizes is None and bucketed.data.sizes is not None
    sizes = bucketed.data.sizes
    for epoch in (0, 1):
        with_buckets, without = bucketed.data.epoch_batches(epoch), plain.data.epoch_batches(epoch)
        assert len(with_buckets) == len(without) == 22  # 360 training items, 16 a batch
        assert all(len(batch) == 16 for batch in with_buckets)
        assert torch.equal(torch.cat(with_buckets).sort().values, torch.cat(without).sort().values)
        # Sorting windows of 50 batches holds the whole epoch here: nearly no padding is left.
        assert spread(with_buckets, sizes) < 0.25 * spread(without, sizes)
    # The order is fixed by (seed, epoch): resume and the other ranks see the same batches.
    again = trainer(tmp_path, "c", length_buckets=50)
    first = bucketed.data.epoch_batches(0)
    assert all(torch.equal(x, y) for x, y in zip(first, again.data.epoch_batches(0), strict=True))
    assert not all(
        torch.equal(x, y) for x, y in zip(first, bucketed.data.epoch_batches(1), strict=True)
    )
    # Batches are shuffled after sorting: lengths do not simply rise through the epoch.
    longest = [int(sizes[batch].max()) for batch in first]
    assert longest != sorted(longest)


def test_validation_batches_keep_the_first_items_in_order_and_sort_the_rest(tmp_path):
    data = trainer(tmp_path, "val", length_buckets=50).data
    sizes, val_index = data.sizes, data.val_index  # 40 items
    batches = data.validation_batches(keep_order=20)
    assert [len(batch) for batch in batches[:2]] == [16, 4]
    assert torch.equal(torch.cat(batches[:2]), val_index[:20])
    assert torch.equal(torch.cat(batches).sort().values, val_index.sort().values)
    rest = torch.cat(batches[2:])
    assert sizes[rest].tolist() == sorted(sizes[rest].tolist())
    assert spread(batches[2:], sizes) < spread(list(val_index[20:].split(16)), sizes)
    # Fewer items than are kept in order: no empty batch after them.
    assert [len(batch) for batch in data.validation_batches(keep_order=100)] == [16, 16, 8]
    # Without buckets, the items keep their random order.
    plain = trainer(tmp_path, "plain", length_buckets=0).data
    assert torch.equal(torch.cat(plain.validation_batches(keep_order=20)), plain.val_index)


def test_augmenting_re_encodes_only_the_items_an_epoch_visits(tmp_path):
    augmenting = trainer(tmp_path, "aug", augment=True, steps_per_epoch=3)
    data = augmenting.data
    assert data.augmenting
    encoded: list[list[str]] = []
    encode = data.codec.encode_augmented

    def counting(items, seed):
        encoded.append(list(items))
        return encode(items, seed)

    data.codec.encode_augmented = counting
    batches = data.epoch_batches(0)
    data.start_epoch(0, batches)
    visited = torch.cat(batches).unique()
    assert len(visited) == 48 < len(data.train_index)  # 3 batches of 16 out of 360 items
    assert encoded == [[data.items[i] for i in visited.tolist()]]
    for batch in batches:  # each batch reads this epoch's random SMILES of its own molecules
        augmented, plain = data.batch(batch), take(data.tensors, batch)
        assert data.codec.decode(augmented) == data.codec.decode(plain)
        assert not torch.equal(augmented["lengths"], plain["lengths"]) or not torch.equal(
            augmented["tokens"], plain["tokens"]
        )
    # Validation reads the molecules as given, not some training item's random form.
    validation = data.val_index[:16]
    assert torch.equal(data.batch(validation)["tokens"], take(data.tensors, validation)["tokens"])
