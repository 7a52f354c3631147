"""Conformance kit for domain plugins.

``check_domain(domain, items, tmp_path)`` exercises the whole contract on a few items: the codec
round trip and its saved form, the networks' shapes, two training steps through the real trainer,
then reload, sample, encode, decode, reconstruct, interpolate, score and write. Each failure says
which method misbehaved, what was expected and what came back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyvae.domain import Codec, Domain
from polyvae.model import Model, load
from polyvae.trainer import train

# Small and fast: a check, not a benchmark.
KIT_CONFIG = {
    "epochs": 1,
    "max_steps": 2,
    "batch_size": 4,
    "latent_dim": 4,
    "val_fraction": 0.25,
    "lr_warmup_steps": 0,
    "device": "cpu",
    "patience": 0,
}


class ConformanceError(AssertionError):
    """A domain broke the plugin contract; the message names the method and the mismatch."""


def check_domain(
    domain: Domain,
    items: Sequence[Any],
    tmp_path: str | Path,
    config: Mapping[str, Any] | None = None,
) -> Model:
    """Run every conformance check on ``domain`` with ``items`` (8 or more); return the trained
    model for further domain-specific checks."""
    items = list(items)
    if len(items) < 8:
        raise ConformanceError(f"check_domain needs at least 8 items, got {len(items)}")
    tmp_path = Path(tmp_path)
    overrides = {**KIT_CONFIG, **(config or {})}
    resolved = domain.resolve_config(overrides)
    _check_identity(domain)
    codec = _call(f"{domain.name}.fit_codec(items, config)", domain.fit_codec, items, resolved)
    batch = _check_codec(domain, codec, items, resolved, tmp_path / "codec")
    _check_networks(domain, codec, batch, resolved)
    result = _call(
        "polyvae.train() for two steps",
        train,
        domain,
        data=items,
        config=overrides,
        out=tmp_path / "run",
        progress=False,
        log=_quiet,
    )
    _expect(
        result.steps == overrides["max_steps"],
        "trainer",
        f"{overrides['max_steps']} steps",
        result.steps,
    )
    model = _call("polyvae.load(run)", load, result.run_dir, device="cpu", domain=domain)
    _check_model(domain, model, items, tmp_path)
    return model


def _check_identity(domain: Domain) -> None:
    _expect(
        isinstance(getattr(domain, "name", None), str) and domain.name,
        "Domain.name",
        "a non-empty str",
        getattr(domain, "name", None),
    )
    _expect(
        isinstance(domain.default_config(), dict),
        "Domain.default_config()",
        "a dict",
        type(domain.default_config()).__name__,
    )


def _check_codec(domain: Domain, codec: Codec, items: list, config: Mapping, folder: Path) -> dict:
    _expect(
        isinstance(codec, Codec),
        f"{domain.name}.fit_codec()",
        "an object with encode, decode and save",
        type(codec).__name__,
    )
    batch = _call("Codec.encode(items)", codec.encode, items)
    _check_batch(batch, len(items), "Codec.encode(items)")
    decoded = _call("Codec.decode(batch)", codec.decode, batch)
    _expect(
        isinstance(decoded, list) and len(decoded) == len(items),
        "Codec.decode(batch)",
        f"a list of {len(items)} items",
        _describe(decoded),
    )
    _same_batch(
        _call("Codec.encode(Codec.decode(batch))", codec.encode, decoded),
        batch,
        "Codec.encode(Codec.decode(batch))",
        "the batch it started from",
    )
    folder.mkdir(parents=True, exist_ok=True)
    _call("Codec.save(directory)", codec.save, folder)
    saved = list(folder.iterdir())
    _expect(bool(saved), "Codec.save(directory)", "at least one file", "an empty directory")
    for file in saved:
        _expect(
            file.suffix not in (".pkl", ".pickle", ".pt", ".pth", ".bin"),
            "Codec.save(directory)",
            "JSON or safetensors files",
            file.name,
        )
    reloaded = _call(f"{domain.name}.load_codec(directory)", domain.load_codec, folder, config)
    _same_batch(
        reloaded.encode(items),
        batch,
        "load_codec(saved).encode(items)",
        "the original codec's batch",
    )
    return batch


def _check_networks(domain: Domain, codec: Codec, batch: dict, config: Mapping) -> None:
    latent_dim = config["latent_dim"]
    encoder, decoder = _call(f"{domain.name}.build()", domain.build, config, codec, latent_dim)
    for module, role in ((encoder, "encoder"), (decoder, "decoder")):
        _expect(
            isinstance(module, torch.nn.Module),
            f"{domain.name}.build() {role}",
            "a torch.nn.Module",
            type(module).__name__,
        )
    feature_dim = getattr(encoder, "feature_dim", None)
    _expect(
        isinstance(feature_dim, int) and feature_dim > 0,
        "encoder.feature_dim",
        "a positive int",
        feature_dim,
    )
    part = {name: tensor[:4] for name, tensor in batch.items()}
    count = len(next(iter(part.values())))
    features = _call("encoder(batch)", encoder, part)
    _expect(
        isinstance(features, torch.Tensor) and tuple(features.shape) == (count, feature_dim),
        "encoder(batch)",
        f"a tensor of shape ({count}, {feature_dim})",
        _describe(features),
    )
    z = torch.randn(count, latent_dim)
    log_prob = _call("decoder.log_prob(batch, z)", decoder.log_prob, part, z)
    _expect(
        isinstance(log_prob, torch.Tensor) and tuple(log_prob.shape) == (count,),
        "decoder.log_prob(batch, z)",
        f"a tensor of shape ({count},) (one log-likelihood per item)",
        _describe(log_prob),
    )
    _expect(
        bool(torch.isfinite(log_prob).all()),
        "decoder.log_prob(batch, z)",
        "finite values",
        log_prob.tolist(),
    )
    log_prob.sum().backward()
    has_grad = any(p.grad is not None for p in decoder.parameters())
    _expect(
        has_grad,
        "decoder.log_prob(batch, z)",
        "a value differentiable in the decoder's parameters",
        "no gradient reached them",
    )
    with torch.no_grad():
        for temperature in (0.0, 1.0):
            where = f"decoder.generate(z, temperature={temperature})"
            generated = _call(where, decoder.generate, z, temperature=temperature)
            _check_batch(generated, count, f"decoder.generate(z, temperature={temperature})")
            decoded = _call("Codec.decode(decoder.generate(z))", codec.decode, generated)
            _expect(
                isinstance(decoded, list) and len(decoded) == count,
                "Codec.decode(decoder.generate(z))",
                f"a list of {count} items",
                _describe(decoded),
            )


def _check_model(domain: Domain, model: Model, items: list, tmp_path: Path) -> None:
    latent_dim = model.latent_dim
    samples = _call("Model.sample(3)", model.sample, 3, seed=7)
    _expect(len(samples) == 3, "Model.sample(3)", "3 items", len(samples))
    again = model.sample(3, seed=7)
    _expect(
        [domain.format_item(s) for s in samples] == [domain.format_item(s) for s in again],
        "Model.sample(3, seed=7)",
        "the same items for the same seed",
        "different items (is generate() using a random source other than torch's?)",
    )
    codes = _call("Model.encode(4 items)", model.encode, items[:4])
    _expect(
        isinstance(codes, np.ndarray) and codes.shape == (4, latent_dim),
        "Model.encode(4 items)",
        f"an array of shape (4, {latent_dim})",
        _describe(codes),
    )
    decoded = _call("Model.decode(z)", model.decode, codes)
    _expect(len(decoded) == 4, "Model.decode(z)", "4 items", len(decoded))
    rebuilt = _call("Model.reconstruct(4 items)", model.reconstruct, items[:4])
    _expect(len(rebuilt) == 4, "Model.reconstruct(4 items)", "4 items", len(rebuilt))
    path = _call("Model.interpolate(a, b)", model.interpolate, items[0], items[1], steps=3)
    _expect(len(path) == 3, "Model.interpolate(a, b, steps=3)", "3 items", len(path))
    for k in (1, 3):
        scores = _call(f"Model.score(4 items, k={k})", model.score, items[:4], k=k)
        _expect(
            scores.shape == (4,) and np.isfinite(scores).all(),
            f"Model.score(4 items, k={k})",
            "4 finite scores",
            _describe(scores),
        )
    text = domain.format_item(samples[0])
    _expect(isinstance(text, str), f"{domain.name}.format_item(item)", "a str", type(text).__name__)
    output = tmp_path / f"samples{domain.default_suffix}"
    _call(
        f"{domain.name}.write(items, {output.name})",
        domain.write,
        samples,
        output,
        codec=model.codec,
    )
    _expect(
        output.exists() and output.stat().st_size > 0,
        f"{domain.name}.write(items, {output.name})",
        "a non-empty file",
        "no file or an empty one",
    )
    metrics = _call(f"{domain.name}.metrics()", domain.metrics, samples, items[:4], items[4:])
    _expect(
        isinstance(metrics, dict),
        f"{domain.name}.metrics()",
        "a dict of floats",
        type(metrics).__name__,
    )


def _check_batch(batch: Any, count: int, where: str) -> None:
    _expect(
        isinstance(batch, dict)
        and batch
        and all(isinstance(v, torch.Tensor) for v in batch.values()),
        where,
        "a non-empty dict of tensors",
        _describe(batch),
    )
    for name, tensor in batch.items():
        _expect(
            tensor.dim() >= 1 and tensor.shape[0] == count,
            f"{where}['{name}']",
            f"first dimension {count} (one row per item)",
            f"shape {tuple(tensor.shape)}",
        )


def _same_batch(actual: dict, expected: dict, where: str, what: str) -> None:
    _expect(set(actual) == set(expected), where, f"keys {sorted(expected)}", sorted(actual))
    for name in expected:
        a, b = actual[name], expected[name]
        same = a.shape == b.shape and (
            torch.allclose(a.float(), b.float(), atol=1e-4, rtol=1e-4)
            if b.is_floating_point()
            else torch.equal(a, b)
        )
        _expect(
            same,
            f"{where}['{name}']",
            f"{what} (shape {tuple(b.shape)})",
            f"a different tensor of shape {tuple(a.shape)}",
        )


def _call(where: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except ConformanceError:
        raise
    except Exception as error:
        raise ConformanceError(f"{where} raised {type(error).__name__}: {error}") from error


def _expect(condition: bool, where: str, expected: str, got: Any) -> None:
    if not condition:
        raise ConformanceError(f"{where}: expected {expected}, got {got}")


def _describe(value: Any) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of length {len(value)}"
    return repr(value) if not isinstance(value, dict) else f"dict with keys {sorted(value)}"


def _quiet(message: str) -> None:
    pass
