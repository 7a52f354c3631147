"""Training data: reading (through the read cache), property scalers, encoding once, the seeded
train/validation split, and each epoch's batches (shuffled, length-bucketed, sharded over ranks).

The CLI, :class:`polyvae.Model` and plugins read data through this module, never the trainer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from polyvae.cache import load_read, read_key, store_read
from polyvae.config import EngineConfig
from polyvae.domain import Batch, Domain, ReadReport, require_property
from polyvae.errors import UnencodableItem, UserError
from polyvae.files import fingerprint_batch
from polyvae.run import LoadedRun, PropertyScaler

# How run.json names data that was passed as a list of items rather than a path.
IN_MEMORY = "<in-memory items>"


def read_items(
    domain: Domain, data: str | Path | Sequence[Any], config: Mapping[str, Any]
) -> tuple[list[Any], ReadReport]:
    """Items from a path (read by the domain) or an in-memory sequence of items."""
    if isinstance(data, (str, Path)):
        key = read_key(domain, Path(data), config)
        cached = load_read(key, str(data)) if key else None
        if cached:
            items, report = cached
        else:
            try:
                items, report = domain.read(data, config)
            except FileNotFoundError as error:
                raise UserError(f"data not found: {error.filename or data}") from None
            if key:
                store_read(key, items, report)
    else:
        items = list(data)
        report = ReadReport(IN_MEMORY, kept=len(items))
    max_items = EngineConfig.from_mapping(config).max_items
    if max_items:
        items = items[:max_items]
        report.kept = len(items)
    if not items:
        raise UserError(f"{report.source}: no usable items")
    return items, report


def training_items(
    domain: Domain, data: str | Path | Sequence[Any], config: Mapping[str, Any]
) -> tuple[list[Any], ReadReport]:
    """:func:`read_items`, for training: a split into training and validation items needs two."""
    items, report = read_items(domain, data, config)
    if len(items) < 2:
        raise UserError(f"{report.source}: need at least 2 usable items to train, found 1")
    return items, report


def source_name(data: str | Path | Sequence[Any]) -> str:
    """How run.json names the data: an absolute path (or glob), or as given a source named
    ``scheme:name`` that is no file (``torchvision:FashionMNIST``)."""
    if not isinstance(data, (str, Path)):
        return IN_MEMORY
    scheme, colon, _ = str(data).partition(":")
    if colon and len(scheme) > 1 and scheme.isidentifier() and not Path(data).exists():
        return str(data)
    return str(Path(data).resolve())


def read_run_data(loaded: LoadedRun) -> tuple[list[Any], list[Any]]:
    """A run's training and validation items, read from its source exactly as training did."""
    source = loaded.meta["data"]["source"]
    if source == IN_MEMORY:
        raise UserError(f"{loaded.run.path} was trained on in-memory items: pass --data")
    bundled = Path(str(resources.files("polyvae.data"))) / source
    if not Path(source).is_absolute() and bundled.exists():
        # Bundled runs name their data relative to the installed polyvae.data package.
        source = bundled
    items, report = read_items(loaded.domain, source, loaded.config)
    engine = loaded.engine
    items, _, _ = fit_properties(loaded.domain, items, engine, None, lambda message: None)
    if "init" in loaded.meta:  # a fine-tune trained on the items its vocabulary could write
        items, _ = encodable_items(loaded.domain, loaded.codec, items, report)
    train_index, val_index = split_indices(len(items), engine.val_fraction, engine.seed)
    return [items[i] for i in train_index.tolist()], [items[i] for i in val_index.tolist()]


def encode_encodable(
    codec: Any, items: Sequence[Any], skipped: dict[int, str] | None = None
) -> tuple[list[int], Batch]:
    """The positions of the ``items`` ``codec`` can encode, and their batch. Without ``skipped``
    an item it cannot encode raises :class:`UnencodableItem`; with it, each such item's position
    in ``items`` and the reason go into it and the rest are encoded."""
    items = list(items)
    try:
        return list(range(len(items))), codec.encode(items)
    except UnencodableItem as error:
        if skipped is None:
            raise
        reasons = error.reasons
    skipped.update(reasons)
    kept = [position for position in range(len(items)) if position not in reasons]
    return kept, codec.encode([items[position] for position in kept]) if kept else {}


def encodable_items(
    domain: Domain, codec: Any, items: list[Any], report: ReadReport
) -> tuple[list[Any], Batch]:
    """The items ``codec`` can encode, and their encoding; the others are skipped in ``report``,
    named and with the reason (a fine-tune's data may hold tokens the run's vocabulary lacks)."""
    reasons: dict[int, str] = {}
    kept, encoded = encode_encodable(codec, items, reasons)
    if not reasons:
        return items, encoded
    for position, reason in reasons.items():
        report.skip(f"item {position + 1} ({domain.format_item(items[position])})", reason)
    report.kept = len(kept)
    if len(kept) < 2:
        raise UserError(
            f"{report.source}: need at least 2 items the run's vocabulary can write, found "
            f"{len(kept)}"
        )
    return [items[position] for position in kept], encoded


def check_property_names(domain: Domain, engine: EngineConfig) -> None:
    for key, names in (("condition", engine.condition), ("predict", engine.predict)):
        for name in names:
            require_property(domain, name, f"config key '{key}'")


def fit_properties(
    domain: Domain,
    items: list[Any],
    engine: EngineConfig,
    report: ReadReport | None,
    log: Callable[[str], None],
) -> tuple[list[Any], PropertyScaler | None, PropertyScaler | None]:
    """Drop items whose conditioning or predicted properties cannot be computed (counted), and
    fit the condition and prediction scalers on the rest."""
    names = list(dict.fromkeys([*engine.condition, *engine.predict]))
    if not names:
        return items, None, None
    values = np.asarray(domain.properties(items, names), dtype=np.float64)
    keep = np.isfinite(values).all(axis=1)
    if not keep.all():
        dropped = int((~keep).sum())
        if report is not None:
            for position in np.flatnonzero(~keep):
                report.skip(f"item {position + 1}", f"properties {', '.join(names)} not computable")
        log(f"dropped {dropped:,} items whose properties could not be computed")
        items = [items[position] for position in np.flatnonzero(keep)]
        values = values[keep]
    if report is not None:
        report.kept = len(items)
    columns = {name: values[:, position] for position, name in enumerate(names)}

    def scaler(selected: Sequence[str]) -> PropertyScaler | None:
        if not selected:
            return None
        return PropertyScaler.fit(selected, np.stack([columns[n] for n in selected], axis=1))

    return items, scaler(engine.condition), scaler(engine.predict)


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded train/validation split of ``count`` items."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(count, generator=generator)
    val_count = min(count - 1, max(1, round(count * val_fraction))) if val_fraction > 0 else 0
    return order[val_count:].sort().values, order[:val_count].sort().values


def take(data: Batch, index: torch.Tensor) -> Batch:
    index = index.to(next(iter(data.values())).device)
    return {name: tensor[index] for name, tensor in data.items()}


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s sampling noise (rank 0 keeps the run's own)."""
    return seed + 1_000_003 * rank


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrainingData:
    """A run's items encoded once onto the training device, split into training and validation
    items, with normalised properties; and every epoch's batches for one rank."""

    def __init__(
        self,
        domain: Domain,
        items: list[Any],
        codec: Any,
        engine: EngineConfig,
        condition: PropertyScaler | None,
        predict: PropertyScaler | None,
        device: torch.device,
        encoded: Batch | None = None,
    ) -> None:
        """``encoded``: ``codec.encode(items)``, when the caller has it already."""
        self.domain, self.items, self.codec, self.engine = domain, items, codec, engine
        self.rank, self.world_size = 0, 1
        if encoded is None:
            encoded = codec.encode(items)
        self.fingerprint = fingerprint_batch(encoded)
        self.condition_values = (
            condition.normalise(domain.properties(items, condition.names)) if condition else None
        )
        self.predict_values = (
            predict.normalise(domain.properties(items, predict.names)) if predict else None
        )
        self.train_index, self.val_index = split_indices(
            len(items), engine.val_fraction, engine.seed
        )
        self.device = device
        self.tensors = {name: tensor.to(device) for name, tensor in encoded.items()}
        self.sizes = self._item_sizes(encoded)
        # Codecs that augment (e.g. random SMILES) re-encode the training items every epoch.
        self.augmenting = bool(getattr(codec, "augment", False)) and callable(
            getattr(codec, "encode_augmented", None)
        )
        self.epoch_tensors: Batch = {}
        self.epoch_row = torch.zeros(0, dtype=torch.long)

    # --- what a step reads ---------------------------------------------------------------------

    def batch(self, index: torch.Tensor) -> Batch:
        """The encoded items at ``index``: when augmenting, this epoch's random forms of the
        training items it visits; the items as given otherwise, validation items always."""
        if self.augmenting:
            rows = self.epoch_row[index]
            if len(rows) and bool((rows >= 0).all()):
                return take(self.epoch_tensors, rows)
        return take(self.tensors, index)

    def condition(self, index: torch.Tensor) -> torch.Tensor | None:
        if self.condition_values is None:
            return None
        return self.condition_values[index].to(self.device)

    def predict_target(self, index: torch.Tensor) -> torch.Tensor | None:
        if self.predict_values is None:
            return None
        return self.predict_values[index].to(self.device)

    def start_epoch(self, epoch: int, batches: list[torch.Tensor]) -> None:
        """Prepare an epoch of ``batches`` (from :meth:`epoch_batches`): with an augmenting
        codec, this epoch's encoding of the items those batches visit, from a seed fixed by
        (seed, epoch) so that a resumed run sees the same variants. Only the visited items are
        re-encoded: with ``steps_per_epoch`` an epoch may visit a small share of a large data
        set (on all of MOSES, 128k of 1.55M molecules), and random SMILES cost RDKit work each."""
        if not self.augmenting:
            return
        visited = torch.cat(batches).unique() if batches else torch.zeros(0, dtype=torch.long)
        seed = self.engine.seed * 1_000_003 + epoch
        encoded = self.codec.encode_augmented([self.items[i] for i in visited.tolist()], seed)
        self.epoch_tensors = {name: tensor.to(self.device) for name, tensor in encoded.items()}
        self.epoch_row = torch.full((len(self.items),), -1, dtype=torch.long)
        self.epoch_row[visited] = torch.arange(len(visited))

    # --- batches -------------------------------------------------------------------------------

    def shard(self, rank: int, world_size: int) -> None:
        """Give this process rank ``rank`` of ``world_size``'s share of every epoch."""
        self.rank, self.world_size = rank, world_size

    def batches_per_epoch(self) -> int:
        return self.engine.steps_per_epoch or len(self._pass_batches(0))

    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches of an epoch: a full pass, or with ``steps_per_epoch`` the next
        that many batches of the endless run of passes, so an epoch may end mid-pass."""
        per_epoch = self.engine.steps_per_epoch
        if not per_epoch:
            return self._pass_batches(epoch)
        batches: list[torch.Tensor] = []
        position = epoch * per_epoch  # batches of earlier epochs
        pass_length = len(self._pass_batches(0))
        while len(batches) < per_epoch:
            number, offset = divmod(position, pass_length)
            taken = self._pass_batches(number)[offset : offset + per_epoch - len(batches)]
            batches += taken
            position += len(taken)
        return batches

    def validation_batches(self, keep_order: int) -> list[torch.Tensor]:
        """This rank's share of the validation items in batches. Its first ``keep_order`` items
        keep their random order (a caller may read them as a random sample); the rest are sorted
        by length when batches are bucketed, so that a batch pads little: batches of 256 random
        MOSES molecules pad to 1.29 times their tokens, sorted ones to 1.02."""
        share = self.val_index[self.rank :: self.world_size]
        head, rest = share[:keep_order], share[keep_order:]
        if self.sizes is not None:
            rest = rest[torch.argsort(self.sizes[rest], stable=True)]
        size = self.engine.batch_size
        # An empty tensor splits into one empty batch, which the model cannot score.
        return [batch for part in (head, rest) if len(part) for batch in part.split(size)]

    def _pass_batches(self, number: int) -> list[torch.Tensor]:
        """This rank's batches of one pass over the training items: a shuffled order fixed by
        (seed, pass), so a resumed run sees exactly the batches the interrupted one would have."""
        sampler: DistributedSampler[int] = DistributedSampler(
            range(len(self.train_index)),  # type: ignore[arg-type]  # it reads only len()
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=self.engine.seed,
        )
        sampler.set_epoch(number)
        order = self.train_index[torch.tensor(list(sampler), dtype=torch.long)]
        size = self.engine.batch_size
        batches = list(order.split(size))
        if len(batches) > 1 and len(batches[-1]) < size:
            batches.pop()  # a tiny last batch only adds noise
        if self.sizes is not None:
            batches = self._bucketed(batches, number)
        return batches

    def _item_sizes(self, encoded: Batch) -> torch.Tensor | None:
        """Each item's length (the domain's ``unit_counts``) when batches are to be bucketed and
        the lengths differ; None otherwise."""
        if not self.engine.length_buckets:
            return None
        try:
            sizes = torch.as_tensor(self.domain.unit_counts(encoded)).reshape(-1).cpu()
        except NotImplementedError:  # a domain without units: nothing to bucket by
            return None
        if len(sizes) != len(self.items) or len(sizes) == 0 or bool((sizes == sizes[0]).all()):
            return None
        return sizes

    def _bucketed(self, batches: list[torch.Tensor], number: int) -> list[torch.Tensor]:
        """The same items in batches of similar length: each window of ``length_buckets``
        shuffled batches is sorted by length and cut again, then all batches are shuffled.
        Padding, and with it most of a sequence model's wasted work, shrinks; the order is
        fixed by (seed, pass, rank), so resume and the other ranks stay exact."""
        assert self.sizes is not None
        size, window = self.engine.batch_size, self.engine.length_buckets
        generator = torch.Generator().manual_seed(
            rank_seed(self.engine.seed, self.rank) * 1_000_003 + number
        )
        regrouped: list[torch.Tensor] = []
        for start in range(0, len(batches), window):
            items = torch.cat(batches[start : start + window])
            ordered = items[torch.argsort(self.sizes[items], stable=True)]
            regrouped += list(ordered.split(size))
        return [regrouped[i] for i in torch.randperm(len(regrouped), generator=generator)]
