"""A small real-valued domain for engine tests: vectors from a Gaussian mixture.

It lives in the tests to prove the plugin contract end to end without any built-in plugin.
Data files are CSV, one vector per line (comma-separated floats), or .npy arrays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polyvae.config import Option
from polyvae.domain import Batch, Decoder, Domain, Encoder, ReadReport
from polyvae.errors import UserError
from polyvae.files import atomic_write_text
from polyvae.hookspecs import hookimpl


def mixture(count: int, dim: int = 6, seed: int = 0) -> np.ndarray:
    """Points on three noisy 2-D blobs embedded non-linearly in ``dim`` dimensions."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.5]])
    plane = centres[rng.integers(0, 3, count)] + 0.35 * rng.standard_normal((count, 2))
    mixing = rng.standard_normal((2, dim))
    return np.tanh(plane @ mixing) + 0.05 * rng.standard_normal((count, dim))


class Standardiser:
    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean, self.std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)

    def encode(self, items: Sequence[Any]) -> Batch:
        array = np.asarray(items, dtype=np.float64).reshape(len(items), -1)
        if array.shape[1] != len(self.mean):
            raise UserError(
                f"items have {array.shape[1]} values, this model expects {len(self.mean)}"
            )
        return {"x": torch.as_tensor((array - self.mean) / self.std, dtype=torch.float32)}

    def decode(self, batch: Batch) -> list[np.ndarray]:
        values = batch["x"].double().numpy() * self.std + self.mean
        return list(values)

    def save(self, directory: Path) -> None:
        data = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        atomic_write_text(directory / "standardiser.json", json.dumps(data))


class MLPEncoder(Encoder):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.feature_dim = hidden
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.net(batch["x"])


class GaussianDecoder(Decoder):
    """p(x|z) = N(mean(z), diag(sigma^2)) with a learned per-dimension sigma."""

    def __init__(self, latent_dim: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))
        self.log_sigma = nn.Parameter(torch.zeros(dim))

    def log_prob(self, batch: Batch, z: torch.Tensor) -> torch.Tensor:
        mean = self.net(z)
        distribution = torch.distributions.Normal(mean, self.log_sigma.exp())
        return distribution.log_prob(batch["x"]).sum(-1)

    def generate(self, z: torch.Tensor, temperature: float = 1.0, **options: Any) -> Batch:
        mean = self.net(z)
        return {"x": mean + temperature * self.log_sigma.exp() * torch.randn_like(mean)}


class GaussMixDomain(Domain):
    name = "gaussmix"
    description = "real-valued vectors (test domain)"
    default_suffix = ".csv"
    options = (Option("hidden", 64, "width of the encoder and decoder MLPs", minimum=1),)
    presets = {"small": {"hidden": 32, "latent_dim": 4}}

    def read(self, source: str | Path, config: Mapping[str, Any]) -> tuple[list[Any], ReadReport]:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(2, "No such file", str(path))
        report = ReadReport(str(path))
        if path.suffix == ".npy":
            items = list(np.load(path, allow_pickle=False).astype(np.float64))
        else:
            items, width = [], None
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    row = np.array([float(part) for part in line.split(",")])
                except ValueError:
                    report.skip(f"line {number}", "not a list of numbers")
                    continue
                width = width or len(row)
                if len(row) != width or not np.isfinite(row).all():
                    report.skip(f"line {number}", f"expected {width} finite numbers")
                    continue
                items.append(row)
        report.kept = len(items)
        if not items:
            raise UserError(f"{path}: no usable vectors")
        return items, report

    def parse_item(self, text: str) -> np.ndarray:
        try:
            return np.array([float(part) for part in text.split(",")])
        except ValueError:
            raise UserError(f"not a comma-separated vector: {text!r}") from None

    def format_item(self, item: Any) -> str:
        return ",".join(f"{value:.5g}" for value in item)

    def write(self, items: Sequence[Any], path: Path, codec: Standardiser | None = None) -> None:
        if path.suffix not in (".csv", ".txt"):
            raise UserError(f"gaussmix writes .csv or .txt, not {path.suffix}")
        atomic_write_text(path, "".join(self.format_item(item) + "\n" for item in items))

    def fit_codec(self, items: Sequence[Any], config: Mapping[str, Any]) -> Standardiser:
        array = np.asarray(items, dtype=np.float64)
        return Standardiser(array.mean(0), np.where(array.std(0) > 1e-8, array.std(0), 1.0))

    def load_codec(self, directory: Path, config: Mapping[str, Any]) -> Standardiser:
        data = json.loads((directory / "standardiser.json").read_text())
        return Standardiser(data["mean"], data["std"])

    def build(self, config: Mapping[str, Any], codec: Standardiser, latent_dim: int):
        dim = len(codec.mean)
        return MLPEncoder(dim, config["hidden"]), GaussianDecoder(latent_dim, dim, config["hidden"])

    def metrics(
        self, generated: Sequence[Any], reference: Sequence[Any], training: Sequence[Any]
    ) -> dict[str, float]:
        generated, reference = np.asarray(generated), np.asarray(reference)
        return {
            "mean_error": float(np.abs(generated.mean(0) - reference.mean(0)).mean()),
            "std_error": float(np.abs(generated.std(0) - reference.std(0)).mean()),
        }

    def property_names(self) -> Sequence[str]:
        return ("first", "norm")

    def properties(self, items: Sequence[Any], names: Sequence[str]) -> np.ndarray:
        array = np.asarray(items, dtype=np.float64)
        columns = {"first": array[:, 0], "norm": np.linalg.norm(array, axis=1)}
        return np.stack([columns[name] for name in names], axis=1)


@hookimpl
def register_domains(register):
    register(GaussMixDomain())
