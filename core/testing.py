"""Conformance kit for domain plugins.

``check_domain(domain, items, tmp_path)`` exercises the whole contract on a few items: the domain's
declarations (options, ``generate_options``, ``likelihood_unit``, ``pretrained()``), the codec
round trip and its saved form, the networks' shapes and gradients, two training steps through the
real trainer, then reload, sample, encode, decode, reconstruct, interpolate, score, the domain's
metrics and write. ``check_read(domain, source)`` checks a reader on a real file. Each failure
says which method misbehaved, what was expected and what came back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyvae.config import EngineConfig, Option
from polyvae.domain import Codec, Domain, Panel, ReadReport
from polyvae.errors import UserError
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
    _check_declarations(domain)
    codec = _call(f"{domain.name}.fit_codec(items, config)", domain.fit_codec, items, resolved)
    batch = _check_codec(domain, codec, items, resolved, tmp_path / "codec")
    _check_networks(domain, codec, batch, resolved)
    _check_units(domain, batch)
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


def check_read(
    domain: Domain, source: str | Path, config: Mapping[str, Any] | None = None
) -> list[Any]:
    """Check ``domain.read`` on a real file or folder: it returns ``(items, ReadReport)`` with a
    report that counts what it kept, and a missing path raises ``FileNotFoundError`` (or a
    ``UserError`` naming it). Returns the items."""
    resolved = domain.resolve_config(config or {})
    where = f"{domain.name}.read({Path(source).name!r}, config)"
    result = _call(where, domain.read, source, resolved)
    _expect(
        isinstance(result, tuple) and len(result) == 2,
        where,
        "a pair (items, ReadReport)",
        _describe(result),
    )
    items, report = result
    _expect(isinstance(items, list) and items, where, "a non-empty list of items", _describe(items))
    _expect(
        isinstance(report, ReadReport),
        f"{where}[1]",
        "a polyvae.domain.ReadReport",
        type(report).__name__,
    )
    _expect(
        report.kept == len(items),
        f"{where}[1].kept",
        f"{len(items)} (the number of items returned)",
        report.kept,
    )
    missing = Path(source).with_name(f"{Path(source).name}.polyvae-missing")
    expected = "FileNotFoundError (or a UserError naming the path)"
    try:
        domain.read(missing, resolved)
    except FileNotFoundError:
        pass
    except UserError as error:
        _expect(missing.name in str(error), f"{domain.name}.read(a missing path)", expected, error)
    except Exception as error:
        raise ConformanceError(
            f"{domain.name}.read(a missing path): expected {expected}, got "
            f"{type(error).__name__}: {error}"
        ) from error
    else:
        raise ConformanceError(
            f"{domain.name}.read(a missing path): expected {expected}, got items"
        )
    return items


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


def _check_declarations(domain: Domain) -> None:
    for option in domain.options:
        _expect(
            isinstance(option, Option),
            f"{domain.name}.options",
            "polyvae.config.Option entries",
            repr(option),
        )
    for option in domain.generate_options:
        _expect(
            isinstance(option, Option) and option.name.isidentifier(),
            f"{domain.name}.generate_options",
            "polyvae.config.Option entries whose names are Python identifiers",
            repr(option),
        )
        _call(
            f"{domain.name}.generate_options['{option.name}'].coerce(default)",
            option.coerce,
            option.default,
        )
    unit = domain.likelihood_unit
    _expect(
        isinstance(unit, str) and (unit == "" or unit.isidentifier()),
        f"{domain.name}.likelihood_unit",
        "'' or a unit name such as 'token' or 'dim'",
        repr(unit),
    )
    pretrained = _call(f"{domain.name}.pretrained()", domain.pretrained)
    if pretrained is not None:
        _expect(
            isinstance(pretrained, (str, Path)) and (Path(pretrained) / "run.json").is_file(),
            f"{domain.name}.pretrained()",
            "None or a run directory holding run.json",
            repr(pretrained),
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
        _call("load_codec(saved).encode(items)", reloaded.encode, items),
        batch,
        "load_codec(saved).encode(items)",
        "the original codec's batch",
    )
    # A fine-tune under the run's own config must encode exactly as the run did.
    adapted = _call(f"{domain.name}.adapt_codec()", domain.adapt_codec, codec, items, config)
    _same_batch(
        _call("adapt_codec(codec).encode(items)", adapted.encode, items),
        batch,
        "adapt_codec(codec, items, config).encode(items)",
        "the original codec's batch",
    )
    return batch


def _check_networks(domain: Domain, codec: Codec, batch: dict, config: Mapping) -> None:
    latent_dim = EngineConfig.from_mapping(config).latent_dim
    built = _call(f"{domain.name}.build()", domain.build, config, codec, latent_dim)
    _expect(
        isinstance(built, (tuple, list)) and len(built) == 2,
        f"{domain.name}.build()",
        "a pair (encoder, decoder)",
        _describe(built),
    )
    encoder, decoder = built
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
    _check_gradient(encoder, features, "encoder(batch)", "the encoder's")
    _check_gradient(decoder, log_prob, "decoder.log_prob(batch, z)", "the decoder's")
    encoder.eval()
    decoder.eval()  # as the engine generates: no dropout
    defaults = {option.name: option.default for option in domain.generate_options}
    shown = ", ".join(f"{name}={value!r}" for name, value in defaults.items())
    greedy = None
    with torch.no_grad():
        for temperature in (0.0, 0.0, 1.0):
            where = f"decoder.generate(z, temperature={temperature}{', ' if shown else ''}{shown})"
            generated = _call(where, decoder.generate, z, temperature=temperature, **defaults)
            _check_batch(generated, count, where)
            if temperature == 0.0 and greedy is not None:
                _same_batch(
                    generated,
                    greedy,
                    where,
                    "the same batch on every call (temperature 0 is the most likely output)",
                )
            greedy = generated if temperature == 0.0 else greedy
            decoded = _call(f"Codec.decode({where})", codec.decode, generated)
            _expect(
                isinstance(decoded, list) and len(decoded) == count,
                f"Codec.decode({where})",
                f"a list of {count} items",
                _describe(decoded),
            )


def _check_gradient(module: torch.nn.Module, value: torch.Tensor, where: str, whose: str) -> None:
    try:
        value.sum().backward()
    except RuntimeError as error:
        raise ConformanceError(
            f"{where}: expected a value differentiable in {whose} parameters, got one that "
            f"cannot be back-propagated ({error})"
        ) from error
    _expect(
        any(p.grad is not None for p in module.parameters()),
        where,
        f"a value differentiable in {whose} parameters",
        "no gradient reached them",
    )


def _check_units(domain: Domain, batch: dict) -> None:
    if not domain.likelihood_unit:
        return
    part = {name: tensor[:4] for name, tensor in batch.items()}
    count = len(next(iter(part.values())))
    where = f"{domain.name}.unit_counts(batch) (likelihood_unit '{domain.likelihood_unit}')"
    counts = _call(where, domain.unit_counts, part)
    _expect(
        isinstance(counts, torch.Tensor) and tuple(counts.shape) == (count,),
        where,
        f"a tensor of shape ({count},) (units per item)",
        _describe(counts),
    )
    _expect(bool((counts > 0).all()), where, "positive counts", counts.tolist())


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
    where = f"{domain.name}.reconstruction_metrics(originals, reconstructions)"
    _check_numbers(_call(where, domain.reconstruction_metrics, items[:4], rebuilt), where)
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
    text = _call(f"{domain.name}.format_item(item)", domain.format_item, samples[0])
    _expect(isinstance(text, str), f"{domain.name}.format_item(item)", "a str", type(text).__name__)
    valid = _call(f"{domain.name}.is_valid(item)", domain.is_valid, samples[0])
    _expect(
        isinstance(valid, (bool, np.bool_)),
        f"{domain.name}.is_valid(item)",
        "a bool",
        type(valid).__name__,
    )
    names = list(_call(f"{domain.name}.property_names()", domain.property_names))
    if names:
        where = f"{domain.name}.properties(4 items, {names[:2]})"
        values = _call(where, domain.properties, items[:4], names[:2])
        _expect(
            isinstance(values, np.ndarray)
            and values.shape == (4, len(names[:2]))
            and np.issubdtype(values.dtype, np.floating),
            where,
            f"a float array of shape (4, {len(names[:2])})",
            _describe(values) + (f" of {values.dtype}" if isinstance(values, np.ndarray) else ""),
        )
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
    where = f"{domain.name}.metrics(generated, reference, training)"
    _check_numbers(_call(where, domain.metrics, samples, items[:4], items[4:]), where)
    _check_gallery(domain, model, items)


def _check_gallery(domain: Domain, model: Model, items: list) -> None:
    """What ``polyvae report`` shows: panels with a title and a PNG or a table; published rows
    keyed like metrics."""
    where = f"{domain.name}.gallery(model, items, seed)"
    panels = _call(where, domain.gallery, model, items[:8], 0)
    _expect(isinstance(panels, list) and panels, where, "a non-empty list of Panels", panels)
    for panel in panels:
        _expect(isinstance(panel, Panel), where, "Panel objects", _describe(panel))
        _expect(bool(panel.title), where, "a title on every panel", repr(panel.title))
        _expect(panel.png is not None or bool(panel.rows), where, "a PNG or rows", panel.title)
        if panel.png is not None:
            _expect(
                isinstance(panel.png, bytes) and panel.png.startswith(b"\x89PNG\r\n\x1a\n"),
                f"{where} panel {panel.title!r}",
                "PNG bytes",
                _describe(panel.png),
            )
        _expect(
            all(isinstance(cell, str) for row in panel.rows for cell in row),
            f"{where} panel {panel.title!r}",
            "rows of strings",
            _describe(panel.rows),
        )
    for label, row in domain.reference_results.items():
        _check_numbers(dict(row), f"{domain.name}.reference_results[{label!r}]")


def _check_numbers(values: Any, where: str) -> None:
    _expect(isinstance(values, dict), where, "a dict of floats", _describe(values))
    for key, value in values.items():
        _expect(
            isinstance(key, str)
            and isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool),
            f"{where}[{key!r}]",
            "a float",
            f"{type(value).__name__} {value!r}",
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
        _expect(same, f"{where}['{name}']", f"{what} (shape {tuple(b.shape)})", _difference(a, b))


def _difference(actual: torch.Tensor, expected: torch.Tensor) -> str:
    if actual.shape != expected.shape:
        return f"a tensor of shape {tuple(actual.shape)}"
    gap = (actual.double() - expected.double()).abs()
    flat = int(gap.flatten().argmax())
    row = flat // max(1, gap[0].numel()) if gap.dim() > 1 else flat
    return (
        f"a tensor of that shape differing by up to {float(gap.max()):.4g} "
        f"(most in row {row}; {int((gap > 0).sum())} of {gap.numel()} values differ)"
    )


def _call(where: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except ConformanceError:
        raise
    except Exception as error:
        raise ConformanceError(f"{where} raised {type(error).__name__}: {error}") from error


def _expect(condition: object, where: str, expected: str, got: Any) -> None:
    if not condition:
        raise ConformanceError(f"{where}: expected {expected}, got {got}")


def _describe(value: Any) -> str:
    if isinstance(value, torch.nn.Module):
        return f"a single {type(value).__name__} module"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of length {len(value)}"
    return repr(value) if not isinstance(value, dict) else f"dict with keys {sorted(value)}"


def _quiet(message: str) -> None:
    pass
