"""Atomic file writes, safetensors state, and nested-state flattening (no pickle anywhere)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from polyvae.errors import RunError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with _atomic_target(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """For writers that insist on a file name (RDKit, torchvision): write to the yielded path."""
    with _atomic_target(Path(path)) as temporary:
        yield temporary


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    contiguous = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    atomic_write_bytes(path, save(contiguous))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise RunError(f"missing weights file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise RunError(f"{path} is not a readable safetensors file: {error}") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"missing file: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{path} is not valid JSON: {error}") from None


def flatten_state(state: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (optimizer, scheduler) into a JSON skeleton and a tensor dict.

    Tensors are replaced by ``{"__tensor__": key}``; dict keys are stored with their type so that
    integer keys (optimizer parameter ids) survive the JSON round trip.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value
            return {"__tensor__": path}
        if isinstance(value, Mapping):
            return {
                "__dict__": [
                    [type(key).__name__, key, walk(item, f"{path}.{key}")]
                    for key, item in value.items()
                ]
            }
        if isinstance(value, (list, tuple)):
            return {
                "__seq__": type(value).__name__,
                "items": [walk(item, f"{path}.{index}") for index, item in enumerate(value)],
            }
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store {type(value).__name__} at {path} without pickle")

    return walk(state, prefix or "state"), tensors


def unflatten_state(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            key_types = {"int": int, "str": str, "float": float}
            return {
                key_types[kind](key): unflatten_state(item, tensors)
                for kind, key, item in skeleton["__dict__"]
            }
        if "__seq__" in skeleton:
            items = [unflatten_state(item, tensors) for item in skeleton["items"]]
            return tuple(items) if skeleton["__seq__"] == "tuple" else items
    return skeleton


def fingerprint_batch(batch: Mapping[str, torch.Tensor]) -> str:
    """A content hash of encoded data: the same items encoded the same way hash the same."""
    digest = hashlib.sha256()
    for name in sorted(batch):
        tensor = batch[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return "sha256:" + digest.hexdigest()
