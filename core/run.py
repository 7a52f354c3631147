"""The run directory: one folder per trained model, safe to share (JSON, safetensors, no pickle).

run.json            domain, versions, resolved config, data fingerprint, summary
model.safetensors   best weights (by validation ELBO)
codec/              the domain's codec files
checkpoint/         last weights, optimizer, scheduler, RNG and step state for exact resume
metrics.jsonl       one line per epoch
read_report.tsv     records the reader skipped, with where and why (only if any were)
evaluation.json     the last ``polyvae evaluate``: when, the weights' size and mtime, the
                    settings and the results (ignored once model.safetensors changes)
tensorboard/        TensorBoard event files (only with ``polyvae train --tensorboard``)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from polyvae.config import EngineConfig
from polyvae.domain import Codec, Domain
from polyvae.errors import RunError, UserError
from polyvae.files import (
    atomic_write_json,
    atomic_write_text,
    load_tensors,
    read_json,
)
from polyvae.registry import get_registry
from polyvae.vae import VAE
from polyvae.version import __version__
from polyvae.wording import article

RUN_FORMAT = "polyvae-run"
RUN_FORMAT_VERSION = 1
# Files a run never contains: loading one would execute code. Their presence means tampering.
UNSAFE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".joblib", ".dill"}


@dataclass
class PropertyScaler:
    """Standardises item properties; remembers the trained range for sanity checks."""

    names: list[str]
    mean: list[float]
    std: list[float]
    minimum: list[float]
    maximum: list[float]

    @classmethod
    def fit(cls, names: Sequence[str], values: np.ndarray) -> PropertyScaler:
        std = values.std(axis=0)
        std = np.where(std > 1e-8, std, 1.0)
        return cls(
            list(names),
            values.mean(axis=0).tolist(),
            std.tolist(),
            values.min(axis=0).tolist(),
            values.max(axis=0).tolist(),
        )

    def normalise(self, values: np.ndarray) -> torch.Tensor:
        scaled = (np.asarray(values, dtype=np.float64) - self.mean) / self.std
        return torch.as_tensor(scaled, dtype=torch.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "mean": self.mean,
            "std": self.std,
            "min": self.minimum,
            "max": self.maximum,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PropertyScaler | None:
        if not data:
            return None
        return cls(data["names"], data["mean"], data["std"], data["min"], data["max"])


class RunDir:
    """Paths and small helpers of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    @property
    def weights_path(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def codec_dir(self) -> Path:
        return self.path / "codec"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def read_report_path(self) -> Path:
        return self.path / "read_report.tsv"

    @property
    def evaluation_path(self) -> Path:
        return self.path / "evaluation.json"

    @property
    def prior_dir(self) -> Path:
        return self.path / "prior"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    def exists(self) -> bool:
        return self.meta_path.is_file()

    def read_meta(self) -> dict[str, Any]:
        if not self.path.is_dir():
            raise RunError(f"no run directory at {self.path}")
        self.refuse_unsafe_files()
        meta = read_json(self.meta_path)
        if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
            raise RunError(f"{self.meta_path} is not a polyvae run file")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > RUN_FORMAT_VERSION:
            raise RunError(
                f"{self.path} has run format {version!r}; this polyvae {__version__} reads up to "
                f"{RUN_FORMAT_VERSION} (upgrade polyvae)"
            )
        for key in ("domain", "config"):
            if key not in meta:
                raise RunError(f"{self.meta_path} has no '{key}'")
        return meta

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        atomic_write_json(self.meta_path, dict(meta))

    def refuse_unsafe_files(self) -> None:
        for file in self.path.rglob("*"):
            if file.suffix.lower() in UNSAFE_SUFFIXES:
                raise RunError(
                    f"refusing to load {self.path}: it contains {file.relative_to(self.path)}, a "
                    "file type that can execute code when loaded; runs hold only JSON and "
                    "safetensors"
                )

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        lines = self.metrics_path.read_text().splitlines() if self.metrics_path.exists() else []
        lines.append(json.dumps(dict(record)))
        atomic_write_text(self.metrics_path, "\n".join(lines) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        records = []
        for number, line in enumerate(self.metrics_path.read_text().splitlines(), 1):
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise RunError(f"{self.metrics_path} line {number} is not JSON") from None
        return records

    def truncate_metrics(self, last_epoch: int) -> None:
        """Drop epoch lines written after the checkpoint we resume from."""
        kept = [record for record in self.read_metrics() if record["epoch"] <= last_epoch]
        atomic_write_text(self.metrics_path, "".join(json.dumps(record) + "\n" for record in kept))

    def parameter_count(self) -> int | None:
        """How many numbers model.safetensors holds, from its header alone (no weights are
        loaded); None when the run has no weights yet."""
        if not self.weights_path.is_file():
            return None
        try:
            with safe_open(str(self.weights_path), framework="pt") as weights:
                names = weights.keys()  # safe_open is no mapping: it has keys() but no __iter__
                shapes = [weights.get_slice(name).get_shape() for name in names]
        except (SafetensorError, OSError) as error:
            raise RunError(
                f"{self.weights_path} is not a readable safetensors file: {error}"
            ) from None
        return sum(math.prod(shape) for shape in shapes)

    def weights_signature(self) -> dict[str, int] | None:
        """Size and modification time of model.safetensors: they change whenever training
        writes new best weights, so they tell whether an evaluation still describes them."""
        try:
            stat = self.weights_path.stat()
        except FileNotFoundError:
            return None
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def write_evaluation(
        self,
        results: Mapping[str, Any],
        settings: Mapping[str, Any],
        weights: Mapping[str, int] | None = None,
    ) -> None:
        """Record an evaluation of this run's weights (``weights``: their signature when the
        model was loaded, by default now). Raises OSError when the directory is read-only."""
        record = {
            "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "weights": dict(weights) if weights is not None else self.weights_signature(),
            "settings": dict(settings),
            "results": dict(results),
        }
        atomic_write_json(self.evaluation_path, record)

    def read_evaluation(self) -> dict[str, Any] | None:
        """The recorded evaluation, or None when there is none, it cannot be read, or the
        weights have changed since (a stale record describes another model)."""
        try:
            record = json.loads(self.evaluation_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not isinstance(record.get("results"), dict):
            return None
        if record.get("weights") != self.weights_signature():
            return None
        return record

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock so that two trainings never write one run at once."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = open(self.path / ".lock", "w")  # noqa: SIM115 - held for the whole block
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(f"{self.path} is in use by another polyvae process") from None
            yield
        finally:
            handle.close()

    def refuse_if_locked(self) -> None:
        """Fail now, before touching any file, if another process holds :meth:`lock`."""
        with self.lock():
            pass

    def replace_checkpoint(self, write: Any) -> None:
        """Write a new checkpoint folder beside the old one, then swap them, so a crash leaves
        either the old or the new checkpoint whole."""
        fresh = self.path / "checkpoint.new"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
        write(fresh)
        old = self.path / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.checkpoint_dir.exists():
            os.replace(self.checkpoint_dir, old)
        os.replace(fresh, self.checkpoint_dir)
        shutil.rmtree(old, ignore_errors=True)

    def recover_checkpoint(self) -> None:
        """After a crash in the middle of :meth:`replace_checkpoint`, keep the whole one; and
        remove the temporary files of atomic writes the crash cut short (training holds the
        run's lock, so no live writer owns them)."""
        old = self.path / "checkpoint.old"
        if not self.checkpoint_dir.exists() and old.exists():
            os.replace(old, self.checkpoint_dir)
        shutil.rmtree(self.path / "checkpoint.new", ignore_errors=True)
        for leftover in self.path.rglob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def build_vae(
    domain: Domain,
    config: Mapping[str, Any],
    codec: Codec,
    condition: PropertyScaler | None,
    predict: PropertyScaler | None,
) -> VAE:
    condition_dim = len(condition.names) if condition else 0
    latent_dim = EngineConfig.from_mapping(config).latent_dim
    encoder, decoder = domain.build(config, codec, latent_dim + condition_dim)
    feature_dim = getattr(encoder, "feature_dim", None)
    if not isinstance(feature_dim, int) or feature_dim < 1:
        raise TypeError(
            f"domain '{domain.name}': build() returned an encoder without a positive integer "
            f"'feature_dim' attribute (got {feature_dim!r})"
        )
    return VAE(
        encoder,
        decoder,
        latent_dim=latent_dim,
        condition_dim=condition_dim,
        property_dim=len(predict.names) if predict else 0,
    )


HALF_PRECISIONS = (torch.float16, torch.bfloat16)
# A bundled model may store its large matrices as int8 with one scale per row (quantized_rows):
# a quarter of float32's bytes, to keep the wheel small. The scale of matrix NAME is NAME + this.
ROW_SCALE_SUFFIX = ".int8_row_scale"
# Matrices with fewer elements stay floating: their bytes do not matter, their precision might.
QUANTIZED_MIN_ELEMENTS = 65_536


def quantized_rows(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each float32 matrix of at least QUANTIZED_MIN_ELEMENTS elements stored as
    int8 values and a float32 scale per row (symmetric: the row's largest magnitude maps to
    127), and every other float32 tensor as float16. Loading undoes it (dequantized_rows)."""
    stored: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if tensor.dtype != torch.float32:
            stored[name] = tensor
        elif tensor.dim() == 2 and tensor.numel() >= QUANTIZED_MIN_ELEMENTS:
            scale = tensor.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
            stored[name] = (tensor / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
            stored[name + ROW_SCALE_SUFFIX] = scale
        else:
            stored[name] = tensor.half()
    return stored


WEIGHT_STORAGES = ("float32", "float16", "int8")


def narrowed_weights(state: Mapping[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    """``state`` as ``storage`` (one of WEIGHT_STORAGES) keeps it: float32 as it is, float16
    every float32 tensor halved, int8 as quantized_rows stores it."""
    if storage == "int8":
        return quantized_rows(state)
    if storage == "float16":
        return {n: t.half() if t.dtype == torch.float32 else t for n, t in state.items()}
    return dict(state)


def dequantized_rows(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """``state`` with each int8 matrix that has a row scale widened to float32 (see
    quantized_rows); a scale that does not fit its matrix is refused."""
    widened = dict(state)
    for scale_name in [name for name in state if name.endswith(ROW_SCALE_SUFFIX)]:
        name = scale_name.removesuffix(ROW_SCALE_SUFFIX)
        values, scale = widened.pop(name, None), widened.pop(scale_name)
        if not (
            values is not None
            and values.dtype == torch.int8
            and values.dim() == 2
            and scale.dtype == torch.float32
            and tuple(scale.shape) == (values.shape[0],)
        ):
            raise RunError(f"{path}: '{scale_name}' is not the row scale of an int8 matrix")
        widened[name] = values.float() * scale[:, None]
    return widened


def load_weights(vae: torch.nn.Module, path: Path) -> None:
    state = dequantized_rows(load_tensors(path), path)
    expected = vae.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise RunError(
            f"{path} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for name, tensor in state.items():
        want = expected[name]
        # Floating weights may be stored narrower (a bundled model's in float16, to keep the
        # wheel small): load_state_dict widens them. Anything else must match exactly.
        narrower = tensor.dtype in HALF_PRECISIONS and want.dtype == torch.float32
        if tensor.shape != want.shape or (tensor.dtype != want.dtype and not narrower):
            raise RunError(
                f"{path}: '{name}' is {tuple(tensor.shape)} {tensor.dtype}, the model expects "
                f"{tuple(want.shape)} {want.dtype}"
            )
    vae.load_state_dict(state)


@dataclass
class LoadedRun:
    run: RunDir
    meta: dict[str, Any]
    domain: Domain
    config: dict[str, Any]
    codec: Codec
    condition: PropertyScaler | None
    predict: PropertyScaler | None

    @property
    def engine(self) -> EngineConfig:
        return EngineConfig.from_mapping(self.config)


def open_run(path: str | Path, domain: Domain | None = None) -> LoadedRun:
    """Validate a run directory and load its domain, config and codec (not yet its weights).
    ``domain`` overrides the registry's (for domains used without installing them)."""
    run = RunDir(path)
    meta = run.read_meta()
    if domain is None:
        domain = get_registry().get_domain(meta["domain"])
    elif domain.name != meta["domain"]:
        kind = meta["domain"]
        raise RunError(f"{run.path} is {article(kind)} '{kind}' run, not '{domain.name}'")
    try:
        # The stored config names every key, so this validates it and nothing else changes.
        config = domain.resolve_config(meta["config"])
    except UserError as error:
        raise RunError(f"{run.meta_path}: {error}") from None
    if not run.codec_dir.is_dir():
        raise RunError(f"{run.path} has no codec/ folder")
    try:
        codec = domain.load_codec(run.codec_dir, config)
    except (OSError, ValueError, KeyError, TypeError) as error:
        # A damaged or planted codec file: one clear error, not the plugin's traceback.
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RunError(f"{run.codec_dir} cannot be read: {detail}") from None
    return LoadedRun(
        run,
        meta,
        domain,
        config,
        codec,
        PropertyScaler.from_dict(meta.get("condition")),
        PropertyScaler.from_dict(meta.get("predict")),
    )


def resolve_run_path(name_or_path: str | Path) -> Path:
    """A run directory, or a domain name standing for that domain's bundled pretrained run."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    registry = get_registry()
    if str(name_or_path) in registry.domains or str(name_or_path) in registry.conflicts:
        domain = registry.get_domain(str(name_or_path))
        pretrained = domain.pretrained()
        if pretrained is None:
            raise UserError(
                f"domain '{domain.name}' ships no pretrained run; train one with "
                f"'polyvae train {domain.name} --data PATH' and pass its directory"
            )
        return Path(pretrained)
    raise UserError(f"'{name_or_path}' is neither a run directory nor an installed domain")


def versions_record(domain: Domain) -> dict[str, Any]:
    plugin = (
        get_registry().plugin_of(domain.name) if domain.name in get_registry().domains else None
    )
    return {
        "polyvae": __version__,
        "torch": torch.__version__,
        "plugin": {"name": plugin.name, "version": plugin.version} if plugin else None,
    }
